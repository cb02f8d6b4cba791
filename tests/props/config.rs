//! `config::check`: total on any text, every problem worded; a config made of valid parts is
//! accepted, and one value made invalid is reported at its key.

use crate::gen::{address_text, backend_id_text, domain_text, random_case, tag_text, weight};
use pingora_vhost::config::{check, Env, Problem};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use toml::{Table, Value};

/// Checks `text` with nothing in the environment.
fn checked(text: &str) -> Result<pingora_vhost::config::Config, Vec<Problem>> {
    check(text, &Env::default())
}

/// Every problem says what is wrong, and points inside the text when it points anywhere.
fn well_formed(text: &str, problems: &[Problem]) -> Result<(), TestCaseError> {
    prop_assert!(!problems.is_empty(), "an error with no problem in it");
    let lines = text.split('\n').count();
    for p in problems {
        prop_assert!(!p.message.trim().is_empty(), "empty message: {:?}", p);
        if let Some(at) = p.place {
            prop_assert!(
                at.line >= 1 && at.line <= lines && at.column >= 1,
                "{:?}",
                p
            );
        }
    }
    Ok(())
}

// === random TOML ===

/// Keys of every known section, with a few unknown ones: random tables mostly hit real keys.
const KEYS: &[&str] = &[
    "listen_addr",
    "listen_addr_http",
    "management_api_addr",
    "threads",
    "admin_token",
    "grace_period_secs",
    "default_sni",
    "h2c",
    "path",
    "backend",
    "etcd",
    "endpoints",
    "prefix",
    "username",
    "ca_file",
    "email",
    "staging",
    "cache_dir",
    "directory_url",
    "renew_before_days",
    "domain",
    "cert_path",
    "key_path",
    "level",
    "format",
    "output",
    "file_path",
    "enabled",
    "interval_secs",
    "timeout_secs",
    "unhealthy_threshold",
    "healthy_threshold",
    "max_request_body_bytes",
    "max_admin_body_bytes",
    "upstream_connect_timeout_ms",
    "enabled_backends_tag",
    "http_to_https",
    "lb_policy",
    "lb_hash_header",
    "allow",
    "deny",
    "rate_limit_rps",
    "rate_limit_burst",
    "trusted_proxies",
    "id",
    "address",
    "tags",
    "weight",
    "max_connections",
    "protocol",
    "tls_server_name",
    "tls_verify",
    "tls_ca_file",
    "health_check",
    "bogus",
];

const SECTIONS: &[&str] = &[
    "proxy",
    "state",
    "lets_encrypt",
    "logging",
    "metrics",
    "health_check",
    "limits",
    "extra",
];

/// Strings that mean something to some key, and some that mean nothing.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "",
            "127.0.0.1:8000",
            "0.0.0.0:8081",
            "[::1]:80",
            "a",
            "etcd",
            "file",
            "json",
            "xml",
            "info",
            "header_hash",
            "round_robin",
            "h2c",
            "https",
            "grpc",
            "/health",
            "a@b.c",
            "http://127.0.0.1:2379",
            "*.example.com",
            "App.Example.COM.",
            "/nonexistent/x.pem",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_string().prop_map(Value::String),
        prop_oneof![any::<i64>(), -2i64..70_000].prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        Just(Value::Datetime("1979-05-27T07:32:00Z".parse().unwrap())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(select(KEYS), inner, 0..4).prop_map(|m| {
                Value::Table(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn table() -> impl Strategy<Value = Table> {
    let key = prop_oneof![9 => select(KEYS).prop_map(str::to_string), 1 => "[a-z_]{1,8}"];
    prop::collection::btree_map(key, value(), 0..6).prop_map(|m| m.into_iter().collect())
}

/// A file with the known sections (and an unknown one), their keys mostly known, the values
/// random; `[[virtual_hosts]]`, `[[backends]]` and `[[certificates]]` arrays of such tables.
fn random_document() -> impl Strategy<Value = Table> {
    let sections = prop::collection::btree_map(select(SECTIONS), table(), 0..6);
    let arrays = prop::collection::btree_map(
        select(vec!["virtual_hosts", "backends", "certificates"]),
        prop_oneof![
            4 => prop::collection::vec(table(), 0..4)
                .prop_map(|ts| Value::Array(ts.into_iter().map(Value::Table).collect())),
            1 => value(),
        ],
        0..3,
    );
    (sections, arrays).prop_map(|(sections, arrays)| {
        let mut doc = Table::new();
        for (name, t) in sections {
            doc.insert(name.to_string(), Value::Table(t));
        }
        for (name, v) in arrays {
            doc.insert(name.to_string(), v);
        }
        doc
    })
}

/// Text that is mostly TOML-shaped: headers, keys, values and stray characters.
fn tomlish_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        select(vec![
            "[proxy]",
            "[[backends]]",
            "[[virtual_hosts]]",
            "[state.etcd]",
            "[limits]",
            "[",
            "[[backends]",
            "threads = 2",
            "tags = [\"a\", 7]",
            "weight = -1",
            "x = {",
            "\"",
            "listen_addr_http = \"127.0.0.1:8000\"",
            "domain = \"a.test\"",
            "id = \"x\"",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,10} = [0-9\"\\[\\]{}a-z.,:=-]{0,12}",
        any::<String>(),
    ];
    prop::collection::vec(line, 0..12).prop_map(|ls| ls.join("\n"))
}

// === valid parts ===

/// A backend: its tags (1 to 3, distinct), address, weight, cap and protocol.
#[derive(Clone, Debug)]
struct BackendParts {
    tags: Vec<String>,
    address: String,
    weight: u32,
    max_connections: u32,
    h2c: bool,
}

fn backend_parts() -> impl Strategy<Value = BackendParts> {
    (
        prop::collection::btree_set(tag_text(), 1..=3),
        address_text(),
        weight(),
        prop_oneof![Just(0u32), any::<u32>()],
        any::<bool>(),
    )
        .prop_map(
            |(tags, address, weight, max_connections, h2c)| BackendParts {
                tags: tags.into_iter().collect(),
                address,
                weight,
                max_connections,
                h2c,
            },
        )
}

/// A valid file: backends with distinct ids, domains (distinct once normalised, in any case)
/// each served by a tag some backend carries, and optional sections with valid values.
fn valid_document() -> impl Strategy<Value = Table> {
    let backends = prop::collection::btree_map(backend_id_text(), backend_parts(), 1..5);
    let domains = prop::collection::btree_map(
        domain_text().prop_map(|d| d.to_ascii_lowercase()),
        (any::<Index>(), any::<bool>()),
        1..5,
    );
    let cased = domains.prop_flat_map(|ds| {
        ds.into_iter()
            .map(|(d, pick)| (random_case(d), Just(pick)))
            .collect::<Vec<_>>()
    });
    (backends, cased, extras()).prop_map(|(backends, domains, extras)| {
        let all_tags: Vec<&String> = backends.values().flat_map(|b| &b.tags).collect();
        let mut doc = extras;
        let proxy = doc
            .entry("proxy")
            .or_insert_with(|| Value::Table(Table::new()));
        let proxy = proxy.as_table_mut().unwrap();
        proxy.insert("listen_addr_http".into(), "127.0.0.1:8000".into());
        proxy.insert("management_api_addr".into(), "127.0.0.1:8081".into());
        let vhosts = domains.iter().map(|(domain, (tag, trailing_dot))| {
            let mut t = Table::new();
            let dot = if *trailing_dot { "." } else { "" };
            t.insert("domain".into(), format!("{domain}{dot}").into());
            t.insert(
                "enabled_backends_tag".into(),
                tag.get(&all_tags).as_str().into(),
            );
            Value::Table(t)
        });
        doc.insert("virtual_hosts".into(), Value::Array(vhosts.collect()));
        let backends = backends.into_iter().map(|(id, b)| {
            let mut t = Table::new();
            t.insert("id".into(), id.into());
            t.insert("address".into(), b.address.into());
            let tags = b.tags.into_iter().map(Value::from).collect::<Vec<_>>();
            t.insert("tags".into(), Value::Array(tags));
            t.insert("weight".into(), i64::from(b.weight).into());
            t.insert(
                "max_connections".into(),
                i64::from(b.max_connections).into(),
            );
            if b.h2c {
                t.insert("protocol".into(), "h2c".into());
                t.insert("health_check".into(), "grpc".into());
            }
            Value::Table(t)
        });
        doc.insert("backends".into(), Value::Array(backends.collect()));
        doc
    })
}

/// Optional `[proxy]`, `[health_check]`, `[limits]`, `[logging]` and `[metrics]` keys, valid.
fn extras() -> impl Strategy<Value = Table> {
    let section = |keys: Vec<(&'static str, BoxedStrategy<Value>)>| {
        let n = keys.len();
        (prop::collection::vec(any::<bool>(), n), keys).prop_map(|(on, keys)| {
            let t: Table = keys
                .into_iter()
                .zip(on)
                .filter(|(_, on)| *on)
                .map(|((k, v), _)| (k.to_string(), v))
                .collect();
            t
        })
    };
    let int = |lo: i64, hi: i64| (lo..=hi).prop_map(Value::Integer).boxed();
    let s = |v: Vec<&'static str>| select(v).prop_map(Value::from).boxed();
    (
        section(vec![
            ("threads", int(1, 1024)),
            ("grace_period_secs", int(1, 3600)),
            ("h2c", any::<bool>().prop_map(Value::from).boxed()),
        ]),
        section(vec![
            ("interval_secs", int(1, 600)),
            ("timeout_secs", int(1, 60)),
            ("unhealthy_threshold", int(1, 10)),
            ("healthy_threshold", int(1, 10)),
            (
                "path",
                "/[a-z0-9/?=&%._-]{0,20}".prop_map(Value::from).boxed(),
            ),
        ]),
        section(vec![
            ("max_request_body_bytes", int(1, i64::MAX)),
            ("max_admin_body_bytes", int(1, 1 << 30)),
            ("upstream_connect_timeout_ms", int(1, 60_000)),
            ("client_idle_timeout_secs", int(1, 3600)),
        ]),
        section(vec![
            ("level", s(vec!["trace", "debug", "info", "warn", "error"])),
            ("format", s(vec!["text", "json"])),
        ]),
        prop::option::of(section(vec![
            ("enabled", any::<bool>().prop_map(Value::from).boxed()),
            ("listen_addr", s(vec!["127.0.0.1:9464", "[::1]:9465"])),
        ])),
    )
        .prop_map(|(proxy, health, limits, logging, metrics)| {
            let mut doc = Table::new();
            for (name, t) in [
                ("proxy", proxy),
                ("health_check", health),
                ("limits", limits),
                ("logging", logging),
            ] {
                if !t.is_empty() {
                    doc.insert(name.into(), Value::Table(t));
                }
            }
            if let Some(m) = metrics {
                doc.insert("metrics".into(), Value::Table(m));
            }
            doc
        })
}

mod perturb;
use perturb::{names, perturbation};

proptest! {
    // 2048 cases: most texts stop at a syntax error, a few microseconds each.
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Any text: a config or problems, each with a message, never a panic.
    #[test]
    fn any_text_is_checked(text in prop_oneof![any::<String>(), tomlish_text()]) {
        if let Err(problems) = checked(&text) {
            well_formed(&text, &problems)?;
        }
    }
}

proptest! {
    // 1024 cases each: a parse and a validation of a short file, about 2 ms a case (a random
    // document is deserialised again for each entry refused).
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Random keys and values in the known sections: the same.
    #[test]
    fn random_documents_are_checked(doc in random_document()) {
        let text = toml::to_string(&doc);
        prop_assume!(text.is_ok());
        let text = text.unwrap();
        if let Err(problems) = checked(&text) {
            well_formed(&text, &problems)?;
        }
    }

    /// A file of valid parts is accepted, with every domain and backend in the seed.
    #[test]
    fn valid_parts_make_a_valid_config(doc in valid_document()) {
        let text = toml::to_string(&doc).unwrap();
        let config = match checked(&text) {
            Ok(c) => c,
            Err(ps) => {
                let lines: Vec<String> = ps.iter().map(Problem::to_string).collect();
                return Err(TestCaseError::fail(format!("{lines:#?}\nin\n{text}")));
            }
        };
        let count = |k: &str| doc[k].as_array().unwrap().len();
        prop_assert_eq!(config.seed.domains.len(), count("virtual_hosts"));
        prop_assert_eq!(config.seed.backends.len(), count("backends"));
    }

    /// One value of a valid file made invalid: at least one problem names its key.
    #[test]
    fn one_invalid_value_is_reported_at_its_key(
        (doc, bad) in (valid_document(), perturbation())
    ) {
        let mut doc = doc;
        let (key, also_in_message) = bad.apply(&mut doc);
        let text = toml::to_string(&doc).unwrap();
        let problems = match checked(&text) {
            Ok(_) => return Err(TestCaseError::fail(format!("{bad:?} accepted:\n{text}"))),
            Err(ps) => ps,
        };
        well_formed(&text, &problems)?;
        let named = problems.iter().any(|p| names(p, &key, also_in_message));
        let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
        prop_assert!(named, "{:?}: no problem at {} in {:#?}\n{}", bad, key, lines, text);
    }
}
