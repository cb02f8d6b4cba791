//! One value of a valid config made invalid, and the key its problem must name.

use crate::gen::{bad_address, bad_backend_id, bad_domain, bad_tag, bad_weight};
use pingora_vhost::config::Problem;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use toml::{Table, Value};

/// Where the invalid value goes.
#[derive(Clone, Debug)]
pub(super) enum Target {
    /// A key of one `[[virtual_hosts]]` entry.
    Vhost(&'static str),
    /// A key of one `[[backends]]` entry.
    Backend(&'static str),
    /// One element of a backend's `tags`.
    BackendTag,
    /// A backend's first tag listed again.
    DuplicateTag,
    /// A copy of a backend (same id) appended.
    DuplicateBackend,
    /// A copy of a virtual host (its domain in upper case) appended.
    DuplicateVhost,
    /// A key of a section (created when the file lacks it).
    Key(&'static str, &'static str),
}

/// An invalid value for a target. `word`: for rules on several keys of one entry, the problem
/// may be about the entry as long as its message names the key.
#[derive(Clone, Debug)]
pub(super) struct Perturbation {
    target: Target,
    entry: Index,
    element: Index,
    value: Value,
    word: Option<&'static str>,
}

fn string(s: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Value> {
    s.prop_map(Value::String).boxed()
}

fn strs(v: Vec<&'static str>) -> BoxedStrategy<Value> {
    select(v).prop_map(Value::from).boxed()
}

fn ints(v: impl Strategy<Value = i64> + 'static) -> BoxedStrategy<Value> {
    v.prop_map(Value::Integer).boxed()
}

/// A list holding one entry that is not a CIDR.
fn cidr_list(v: Vec<&'static str>) -> BoxedStrategy<Value> {
    select(v)
        .prop_map(|bad| Value::Array(vec![Value::from("10.0.0.0/8"), Value::from(bad)]))
        .boxed()
}

/// A value of the wrong type for a string key.
fn not_a_string() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Integer(5)),
        Just(Value::Boolean(true)),
        Just(Value::Array(vec![])),
        Just(Value::Float(1.5)),
    ]
    .boxed()
}

/// A value of the wrong type or out of range for a whole-number key.
fn not_a_count() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Integer(0)),
        Just(Value::Integer(-1)),
        Just(Value::String("2".into())),
        Just(Value::Float(1.5)),
    ]
    .boxed()
}

pub(super) fn perturbation() -> impl Strategy<Value = Perturbation> {
    use Target::*;
    let none = None::<&'static str>;
    let cases: Vec<(Target, BoxedStrategy<Value>, Option<&'static str>)> = vec![
        (Vhost("domain"), string(bad_domain()), none),
        (Vhost("domain"), not_a_string(), none),
        (Vhost("enabled_backends_tag"), string(bad_tag()), none),
        (
            Vhost("enabled_backends_tag"),
            strs(vec!["carried-by-none"]),
            none,
        ),
        (Vhost("enabled_backends_tag"), not_a_string(), none),
        (Vhost("http_to_https"), strs(vec!["yes"]), none),
        (Vhost("lb_policy"), strs(vec!["random", ""]), none),
        (
            Vhost("lb_policy"),
            strs(vec!["header_hash"]),
            Some("lb_policy"),
        ),
        (
            Vhost("lb_hash_header"),
            strs(vec!["bad header", ""]),
            Some("lb_hash_header"),
        ),
        (Vhost("rate_limit_rps"), ints(Just(0)), none),
        (
            Vhost("rate_limit_burst"),
            ints(1_000_001i64..2_000_000),
            none,
        ),
        (
            Vhost("allow"),
            cidr_list(vec!["10.0.0.0/33", "nope", "10.0.0/8"]),
            none,
        ),
        (Vhost("deny"), cidr_list(vec!["::g", "example.com"]), none),
        (Vhost("allow"), Just(Value::Array(vec![])).boxed(), none),
        (Vhost("nonsense"), ints(Just(1)), Some("nonsense")),
        (Backend("id"), string(bad_backend_id()), none),
        (Backend("id"), not_a_string(), none),
        (Backend("address"), string(bad_address()), none),
        (
            Backend("address"),
            strs(vec!["127.0.0.1:8000", "127.0.0.1:8081"]),
            none,
        ),
        (Backend("address"), not_a_string(), none),
        (Backend("tags"), Just(Value::Array(vec![])).boxed(), none),
        (Backend("tags"), strs(vec!["a"]), none),
        (BackendTag, string(bad_tag()), none),
        (BackendTag, not_a_string(), none),
        (DuplicateTag, Just(Value::Boolean(true)).boxed(), none),
        (DuplicateBackend, Just(Value::Boolean(true)).boxed(), none),
        (DuplicateVhost, Just(Value::Boolean(true)).boxed(), none),
        (
            Backend("weight"),
            ints(bad_weight().prop_map(i64::from)),
            none,
        ),
        (
            Backend("weight"),
            ints(prop_oneof![i64::MIN..0, 1i64 << 32..=i64::MAX]),
            none,
        ),
        (Backend("weight"), not_a_count(), none),
        (Backend("max_connections"), strs(vec!["many"]), none),
        (Backend("protocol"), strs(vec!["h3", "HTTP1"]), none),
        (
            Backend("tls_server_name"),
            strs(vec!["*.x.test", "bad name", "x.test."]),
            Some("tls_server_name"),
        ),
        (
            Key("proxy", "listen_addr_http"),
            strs(vec!["nope", "127.0.0.1", "localhost:80"]),
            none,
        ),
        (
            Key("proxy", "management_api_addr"),
            strs(vec!["nope", "0.0.0.0:8081", "10.0.0.1:81"]),
            none,
        ),
        (Key("proxy", "admin_token"), strs(vec!["", "  "]), none),
        (
            Key("proxy", "threads"),
            ints(prop_oneof![Just(0), 1025i64..=i64::MAX]),
            none,
        ),
        (Key("proxy", "threads"), not_a_count(), none),
        (
            Key("proxy", "grace_period_secs"),
            ints(prop_oneof![Just(0), 3601i64..=i64::MAX]),
            none,
        ),
        (
            Key("proxy", "default_sni"),
            strs(vec!["unconfigured.test", "bad name"]),
            none,
        ),
        (Key("proxy", "h2c"), strs(vec!["true"]), none),
        (Key("health_check", "interval_secs"), not_a_count(), none),
        (Key("health_check", "timeout_secs"), not_a_count(), none),
        (
            Key("health_check", "unhealthy_threshold"),
            not_a_count(),
            none,
        ),
        (
            Key("health_check", "healthy_threshold"),
            not_a_count(),
            none,
        ),
        (
            Key("health_check", "path"),
            strs(vec!["health", "/a b", "/x#y", ""]),
            none,
        ),
        (Key("limits", "max_request_body_bytes"), not_a_count(), none),
        (Key("limits", "max_admin_body_bytes"), not_a_count(), none),
        (
            Key("limits", "upstream_connect_timeout_ms"),
            not_a_count(),
            none,
        ),
        (
            Key("limits", "upstream_read_timeout_secs"),
            not_a_count(),
            none,
        ),
        (
            Key("limits", "client_idle_timeout_secs"),
            not_a_count(),
            none,
        ),
        (
            Key("limits", "client_header_timeout_secs"),
            not_a_count(),
            none,
        ),
        (
            Key("limits", "client_send_timeout_secs"),
            not_a_count(),
            none,
        ),
        (
            Key("limits", "max_request_header_bytes"),
            not_a_count(),
            none,
        ),
        (
            Key("logging", "level"),
            strs(vec!["loud", "INFO", ""]),
            none,
        ),
        (Key("logging", "format"), strs(vec!["xml"]), none),
        (Key("logging", "output"), strs(vec!["printer"]), none),
        (
            Key("metrics", "listen_addr"),
            strs(vec!["nope", "9464"]),
            none,
        ),
        (Key("state", "backend"), strs(vec!["consul"]), none),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .map(|(target, value, word)| {
            (
                Just(target),
                value,
                Just(word),
                any::<Index>(),
                any::<Index>(),
            )
                .prop_map(|(target, value, word, entry, element)| Perturbation {
                    target,
                    entry,
                    element,
                    value,
                    word,
                })
                .boxed()
        })
        .collect();
    proptest::strategy::Union::new(cases)
}

fn entries<'a>(doc: &'a mut Table, array: &str) -> &'a mut Vec<Value> {
    doc.get_mut(array)
        .and_then(Value::as_array_mut)
        .expect("the valid file has it")
}

impl Perturbation {
    /// Puts the value in; returns the key a problem must name and the word that may name it
    /// in an entry's problem instead.
    pub(super) fn apply(&self, doc: &mut Table) -> (String, Option<&'static str>) {
        let entry = |array: &str, doc: &mut Table| {
            let list = entries(doc, array);
            let i = self.entry.index(list.len());
            (i, list[i].as_table_mut().unwrap().clone())
        };
        let set = |doc: &mut Table, array: &str, i: usize, t: Table| {
            entries(doc, array)[i] = Value::Table(t);
        };
        let key = match &self.target {
            Target::Vhost(key) | Target::Backend(key) => {
                let array = match self.target {
                    Target::Vhost(_) => "virtual_hosts",
                    _ => "backends",
                };
                let (i, mut t) = entry(array, doc);
                t.insert(key.to_string(), self.value.clone());
                set(doc, array, i, t);
                format!("{array}[{i}].{key}")
            }
            Target::BackendTag | Target::DuplicateTag => {
                let (i, mut t) = entry("backends", doc);
                let tags = t["tags"].as_array_mut().unwrap();
                match self.target {
                    Target::BackendTag => {
                        let j = self.element.index(tags.len());
                        tags[j] = self.value.clone();
                    }
                    _ => tags.push(tags[0].clone()),
                }
                set(doc, "backends", i, t);
                format!("backends[{i}].tags")
            }
            Target::DuplicateBackend | Target::DuplicateVhost => {
                let array = match self.target {
                    Target::DuplicateBackend => "backends",
                    _ => "virtual_hosts",
                };
                let (_, mut t) = entry(array, doc);
                let key = if array == "backends" { "id" } else { "domain" };
                if array == "virtual_hosts" {
                    let upper = t["domain"].as_str().unwrap().to_ascii_uppercase();
                    t.insert("domain".into(), upper.into());
                }
                let list = entries(doc, array);
                list.push(Value::Table(t));
                format!("{array}[{}].{key}", list.len() - 1)
            }
            Target::Key(section, key) => {
                let s = doc
                    .entry(section.to_string())
                    .or_insert_with(|| Value::Table(Table::new()));
                s.as_table_mut()
                    .unwrap()
                    .insert(key.to_string(), self.value.clone());
                format!("{section}.{key}")
            }
        };
        (key, self.word)
    }
}

/// Whether `p` is about `key` (or something under it), or about the entry holding `key` with
/// `word` in its message.
pub(super) fn names(p: &Problem, key: &str, word: Option<&str>) -> bool {
    let at = p.key.to_string();
    let under =
        at == key || at.starts_with(&format!("{key}.")) || at.starts_with(&format!("{key}["));
    let entry = key.rsplit_once('.').map(|(e, _)| e);
    under || word.is_some_and(|w| Some(at.as_str()) == entry && p.message.contains(w))
}
