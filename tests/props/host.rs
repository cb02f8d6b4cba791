//! `normalize_host`: what the request path routes by. Its promise (src/proxy/host.rs): the
//! port stripped, the case folded, the trailing dot removed; for a valid DNS name, exactly the
//! name the registry keeps (`DomainName::parse`), so a configured domain is found whatever
//! case, trailing dot or port the client wrote.

use crate::gen::{domain_text, random_case};
use pingora_vhost::proxy::normalize_host;
use proptest::prelude::*;
use std::borrow::Cow;
use vhost_actors::model::DomainName;

/// An optional `:port`: empty, zero, in range, or more digits than a port has.
fn port_suffix() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        3 => any::<u16>().prop_map(|p| format!(":{p}")),
        1 => "[0-9]{0,7}".prop_map(|p| format!(":{p}")),
    ]
}

/// What a client may put in `Host` or an absolute-form authority: a DNS name (any case, maybe
/// a trailing dot), an IPv4 literal or a bracketed IPv6 literal, maybe a port.
fn host_header() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        domain_text().prop_flat_map(random_case),
        any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
        Just("[::1]".to_string()),
    ];
    (name, any::<bool>(), port_suffix()).prop_map(|(name, dot, port)| {
        let dot = if dot && !name.ends_with(']') { "." } else { "" };
        format!("{name}{dot}{port}")
    })
}

/// Arbitrary text, leaning on the characters hosts are made of.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9.:\\[\\]_ -]{0,40}",
        "\\[[0-9a-fA-F:.]{0,20}\\]?(:[0-9]{0,6})?",
    ]
}

proptest! {
    // 2000 cases each: a pure function of a short string, microseconds a case.
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// A configured name is found whatever case, trailing dot or port the client wrote.
    #[test]
    fn a_valid_name_normalises_to_the_registrys_name(
        (d, written) in domain_text().prop_flat_map(|d| {
            let written = (random_case(d.clone()), any::<bool>(), port_suffix())
                .prop_map(|(c, dot, port)| format!("{c}{}{port}", if dot { "." } else { "" }));
            (Just(d), written)
        })
    ) {
        let parsed = DomainName::parse(&d).expect("the generator makes valid names");
        prop_assert_eq!(normalize_host(&written), parsed.as_str(), "written as {:?}", written);
    }

    /// On what clients send: idempotent, and the result has no upper case, no trailing dot and
    /// no port (an IPv6 literal keeps its brackets).
    #[test]
    fn host_headers_normalise_once_and_for_all(raw in host_header()) {
        let once = normalize_host(&raw);
        prop_assert_eq!(normalize_host(&once), once.as_ref(), "from {:?}", raw);
        prop_assert!(!once.bytes().any(|b| b.is_ascii_uppercase()), "{:?}", once);
        prop_assert!(!once.ends_with('.'), "{:?} from {:?}", once, raw);
        let port_left = match once.strip_prefix('[') {
            Some(_) => !once.ends_with(']'),
            None => once.contains(':'),
        };
        prop_assert!(!port_left, "{:?} from {:?}", once, raw);
    }

    /// Never panics on any text, never leaves upper-case ASCII, and borrows when nothing had
    /// to be folded. Malformed text need not normalise in one pass (`a:1:2` gives `a:1`), but
    /// whatever could name a route (a registry name) is final.
    #[test]
    fn any_text_is_handled(raw in any_text()) {
        let out = normalize_host(&raw);
        prop_assert!(!out.bytes().any(|b| b.is_ascii_uppercase()), "{:?}", out);
        if DomainName::parse(&out).is_ok_and(|d| d.as_str() == out) {
            prop_assert_eq!(normalize_host(&out), out.as_ref(), "from {:?}", raw);
        }
        if !raw.bytes().any(|b| b.is_ascii_uppercase()) {
            prop_assert!(matches!(out, Cow::Borrowed(_)), "{:?}", raw);
        }
    }
}

#[test]
fn ipv6_literals_keep_their_brackets_and_lose_their_port() {
    for (raw, want) in [
        ("[::1]:80", "[::1]"),
        ("[::1]", "[::1]"),
        ("[2001:DB8::1]:8443", "[2001:db8::1]"),
        ("[::1", "[::1"),
        ("[", "["),
        ("]:", "]"),
        (":", ""),
        ("", ""),
    ] {
        assert_eq!(normalize_host(raw), want, "{raw:?}");
    }
}
