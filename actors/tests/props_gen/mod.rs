//! Generators shared by the property tests of both crates (`actors/tests/props_registry` and
//! the root crate's `tests/props`, which includes this file by path): names, tags, ids and
//! addresses, valid and invalid, the way the API and the config file take them.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::select;

/// One DNS label as `DomainName::parse` accepts it, in any case: mostly short, sometimes the
/// longest allowed (63).
pub fn dns_label() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,8}[a-zA-Z0-9_])?",
        1 => "[a-zA-Z0-9_][a-zA-Z0-9_-]{61}[a-zA-Z0-9_]",
    ]
}

/// A valid domain name as a user may write it (any case, no trailing dot): 1 to 5 labels,
/// sometimes a `*.` wildcard, never over 253 characters.
pub fn domain_text() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(dns_label(), 1..=5))
        .prop_map(|(wild, labels)| {
            let name = labels.join(".");
            if wild {
                format!("*.{name}")
            } else {
                name
            }
        })
        .prop_filter("at most 253 characters", |d| d.len() <= 253)
}

/// The same text with each ASCII letter's case chosen at random.
pub fn random_case(text: String) -> impl Strategy<Value = String> {
    let n = text.len();
    prop::collection::vec(any::<bool>(), n).prop_map(move |upper| {
        text.chars()
            .zip(upper)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

/// Texts `DomainName::parse` refuses.
pub fn bad_domain() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("*.".to_string()),
        Just("bad domain".to_string()),
        Just("a..b".to_string()),
        Just("-lead.example".to_string()),
        Just("trail-.example".to_string()),
        Just("ü.example".to_string()),
        Just(format!("{}.example", "a".repeat(64))),
        Just(vec!["abcdefghi"; 26].join(".")),
        "[a-z]{1,8}[ /:@!?#][a-z]{1,8}",
    ]
}

/// A tag from a small pool, so that generated commands keep meeting the same tags.
pub fn pool_tag() -> impl Strategy<Value = String> {
    select(vec!["a", "b", "c", "canary", "v1.2"]).prop_map(str::to_string)
}

/// Any valid tag: 1..=64 characters of `[A-Za-z0-9._-]`.
pub fn tag_text() -> impl Strategy<Value = String> {
    prop_oneof![8 => "[A-Za-z0-9._-]{1,12}", 1 => "[A-Za-z0-9._-]{64}"]
}

/// Texts `Tag::parse` refuses.
pub fn bad_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("has space".to_string()),
        Just("x".repeat(65)),
        Just("ünï".to_string()),
        "[a-z]{0,4}[/:@*+][a-z]{0,4}",
    ]
}

/// Any valid backend id: 1..=128 characters of `[A-Za-z0-9._-]`.
pub fn backend_id_text() -> impl Strategy<Value = String> {
    prop_oneof![8 => "[A-Za-z0-9._-]{1,12}", 1 => "[A-Za-z0-9._-]{128}"]
}

/// Texts `BackendId::parse` refuses.
pub fn bad_backend_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("x".repeat(129)),
        Just("with space".to_string()),
        "[a-z]{0,4}[/:@*][a-z]{0,4}",
    ]
}

/// A backend address that needs no DNS: an IPv4 or IPv6 literal with a port other than 0.
/// The ports stay below 8000 so that they never meet the listeners the tests configure.
pub fn address_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u8..=254, 1u16..8000).prop_map(|(h, p)| format!("127.0.0.{h}:{p}")),
        (1u8..=254, 1u16..8000).prop_map(|(h, p)| format!("10.1.2.{h}:{p}")),
        (1u16..8000).prop_map(|p| format!("[::1]:{p}")),
    ]
}

/// Addresses `check_address_shape` refuses.
pub fn bad_address() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("127.0.0.1".to_string()),
        Just("127.0.0.1:0".to_string()),
        Just("127.0.0.1:65536".to_string()),
        Just(":80".to_string()),
        Just("bad host:80".to_string()),
        Just("[::1]".to_string()),
        "[a-z]{1,8}:[a-z]{1,4}",
    ]
}

/// A weight the API and the config accept.
pub fn weight() -> impl Strategy<Value = u32> {
    prop_oneof![Just(1u32), 1u32..=1000]
}

/// Weights they refuse.
pub fn bad_weight() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 1001u32..=u32::MAX]
}
