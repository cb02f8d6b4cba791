//! Field values of the admin API's bodies, mostly valid, sometimes invalid or of another
//! type, and any JSON at all.

use crate::gen::{bad_tag, pool_tag};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};

pub(super) const POLICIES: &[&str] = &["round_robin", "least_conn", "ip_hash", "header_hash"];

/// Any JSON value, its object keys mostly the API's field names.
pub(super) fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 5, |inner| {
        let key = prop_oneof![select(KEYS).prop_map(str::to_string), "[a-z_]{1,8}"];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

pub(super) const KEYS: &[&str] = &[
    "domain",
    "enabled_backends_tag",
    "http_to_https",
    "lb_policy",
    "lb_hash_header",
    "allow",
    "deny",
    "rate_limit_rps",
    "rate_limit_burst",
    "force",
    "new_tag",
    "weights",
    "sticky",
    "rollback",
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
    "max_error_rate",
    "min_requests",
    "window_secs",
    "a",
    "b",
];

pub(super) fn float(f: f64) -> Value {
    Value::Number(Number::from_f64(f).unwrap())
}

pub(super) fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        select(vec![0.0f64, 2.0, -1.0, 1e300, 0.5]).prop_map(float),
        any::<String>().prop_map(Value::from),
        select(vec!["a", "b", "app.test", "a1", "127.0.0.1:9", "true", "1"]).prop_map(Value::from),
    ]
}

/// Mostly `valid`, sometimes `invalid`, sometimes a value of any type: a body of a few fields
/// is valid about half the time.
pub(super) fn either(
    valid: impl Strategy<Value = Value> + 'static,
    invalid: impl Strategy<Value = Value> + 'static,
) -> BoxedStrategy<Value> {
    prop_oneof![14 => valid, 1 => invalid, 1 => json()].boxed()
}

pub(super) fn text(
    valid: impl Strategy<Value = String> + 'static,
    invalid: impl Strategy<Value = String> + 'static,
) -> BoxedStrategy<Value> {
    either(valid.prop_map(Value::from), invalid.prop_map(Value::from))
}

pub(super) fn strs(
    valid: &'static [&'static str],
    invalid: &'static [&'static str],
) -> BoxedStrategy<Value> {
    either(
        select(valid).prop_map(Value::from),
        select(invalid).prop_map(Value::from),
    )
}

/// A string, or `null` (which clears the field in a PUT).
pub(super) fn nullable(
    valid: &'static [&'static str],
    invalid: &'static [&'static str],
) -> BoxedStrategy<Value> {
    let valid = prop_oneof![3 => select(valid).prop_map(Value::from), 1 => Just(Value::Null)];
    either(valid, select(invalid).prop_map(Value::from))
}

/// An access list: mostly CIDRs and addresses, sometimes null, an entry that is not one, or
/// not a list at all.
pub(super) fn cidr_list() -> BoxedStrategy<Value> {
    let entry = select(vec![
        "10.0.0.0/8",
        "127.0.0.1",
        "2001:db8::/32",
        "192.0.2.0/24",
    ]);
    let valid = prop_oneof![
        4 => prop::collection::vec(entry, 1..3)
            .prop_map(|l| Value::Array(l.into_iter().map(Value::from).collect())),
        1 => Just(Value::Null),
    ];
    let invalid = select(vec!["10.0.0.0/33", "nope", ""])
        .prop_map(|bad| Value::Array(vec![Value::from(bad)]));
    either(valid, prop_oneof![invalid, Just(Value::from("10.0.0.0/8"))])
}

pub(super) fn flag() -> BoxedStrategy<Value> {
    either(
        any::<bool>().prop_map(Value::from),
        Just(Value::from("true")),
    )
}

/// A whole number: in range, zero, too large, negative, written as a float.
pub(super) fn count() -> BoxedStrategy<Value> {
    let valid = prop_oneof![
        6 => (1u64..=1000).prop_map(Value::from),
        1 => select(vec![1001u64, 10_000, u64::from(u32::MAX)]).prop_map(Value::from),
        1 => Just(float(2.0)),
    ];
    let invalid = prop_oneof![
        select(vec![0u64, 10_001, u64::MAX]).prop_map(Value::from),
        (-5i64..0).prop_map(Value::from),
        select(vec![2.5f64, 1e300]).prop_map(float),
    ];
    either(valid, invalid)
}

pub(super) fn tags() -> BoxedStrategy<Value> {
    let valid = prop::collection::btree_set(pool_tag(), 1..4)
        .prop_map(|ts| Value::Array(ts.into_iter().map(Value::from).collect()));
    let tag = prop_oneof![
        5 => pool_tag().prop_map(Value::from),
        1 => bad_tag().prop_map(Value::from),
        1 => leaf(),
    ];
    either(
        valid,
        prop::collection::vec(tag, 0..4).prop_map(Value::Array),
    )
}

pub(super) fn weights() -> BoxedStrategy<Value> {
    let valid =
        prop::collection::btree_map(select(vec!["a", "b"]), 0u64..=100, 1..=2).prop_map(|m| {
            m.into_iter()
                .map(|(t, w)| (t.to_string(), w.into()))
                .collect()
        });
    let tag = prop_oneof![5 => pool_tag(), 1 => bad_tag()];
    let invalid = prop::collection::btree_map(tag, count(), 0..4)
        .prop_map(|m| m.into_iter().collect::<Map<String, Value>>());
    either(
        valid.prop_map(Value::Object),
        invalid.prop_map(Value::Object),
    )
}

pub(super) fn rollback() -> BoxedStrategy<Value> {
    let rate = either(
        (0.0f64..=1.0).prop_map(float),
        select(vec![-0.5f64, 1.5]).prop_map(float),
    );
    let fields = (
        prop::option::of(rate),
        prop::option::of(count()),
        prop::option::of(count()),
    );
    let rule = fields.prop_map(|(rate, min, window)| {
        let mut m = Map::new();
        for (k, v) in [
            ("max_error_rate", rate),
            ("min_requests", min),
            ("window_secs", window),
        ] {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        }
        Value::Object(m)
    });
    either(
        prop_oneof![4 => rule, 1 => Just(Value::Null)],
        Just(float(0.05)),
    )
}
