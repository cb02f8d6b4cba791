//! Load-balancing settings in the registry: what is validated, and what a publish builds from
//! them (the policy, the hash table, the caps).

use super::{backend, domain, seeded};
use crate::command::{BackendPatch, Command, DomainPatch, NewBackend, NewDomain};
use crate::model::LbPolicy;
use crate::registry::{Registry, RegistryError};
use crate::routing::{Affinity, Policy, RouteTable};
use std::sync::Arc;

fn hashed_domain(name: &str, policy: Option<LbPolicy>, header: Option<&str>) -> Command {
    Command::AddDomain(NewDomain {
        domain: name.into(),
        enabled_backends_tag: "a".into(),
        http_to_https: false,
        lb_policy: policy,
        lb_hash_header: header.map(Into::into),
        ..NewDomain::default()
    })
}

fn publish(r: &mut Registry) -> RouteTable {
    let table = RouteTable::new();
    let mut m = crate::metrics::RouteHandles::new(crate::metrics::Metrics::new());
    r.publish_all(&table, &mut m);
    table
}

fn invalid(r: &mut Registry, cmd: Command) -> String {
    match r.apply(cmd) {
        Err(e @ RegistryError::Invalid(_)) => e.to_string(),
        other => panic!("accepted or not 'invalid': {other:?}"),
    }
}

#[test]
fn header_hash_needs_a_valid_header_name() {
    let mut r = seeded();
    let e = invalid(
        &mut r,
        hashed_domain("h.test", Some(LbPolicy::HeaderHash), None),
    );
    assert!(e.contains("lb_hash_header"), "{e}");
    for bad in ["", "X User", "x:y", "é"] {
        let e = invalid(
            &mut r,
            hashed_domain("h.test", Some(LbPolicy::HeaderHash), Some(bad)),
        );
        assert!(e.contains("not a valid header name"), "{e}");
    }
    r.apply(hashed_domain(
        "h.test",
        Some(LbPolicy::HeaderHash),
        Some("X-User-Id"),
    ))
    .unwrap();
    // Taking the header away from a header_hash domain is refused too, and changes nothing.
    let clear = DomainPatch {
        lb_hash_header: Some(None),
        ..Default::default()
    };
    invalid(&mut r, Command::UpdateDomain("h.test".into(), clear));
    assert_eq!(
        r.domain("h.test").unwrap().lb_hash_header.as_deref(),
        Some("X-User-Id")
    );
    let to_rr = DomainPatch {
        lb_policy: Some(LbPolicy::RoundRobin),
        ..Default::default()
    };
    r.apply(Command::UpdateDomain("h.test".into(), to_rr))
        .unwrap();
}

#[test]
fn every_policy_is_accepted_and_published() {
    let mut r = seeded();
    for (name, policy, header) in [
        ("rr.test", LbPolicy::RoundRobin, None),
        ("lc.test", LbPolicy::LeastConn, None),
        ("ip.test", LbPolicy::IpHash, None),
        ("hh.test", LbPolicy::HeaderHash, Some("X-User-Id")),
    ] {
        r.apply(hashed_domain(name, Some(policy), header)).unwrap();
        assert_eq!(r.domain(name).unwrap().lb_policy, policy);
    }
    let table = publish(&mut r);
    let route = |d: &str| table.lookup(d).unwrap();
    assert_eq!(route("rr.test").policy, Policy::RoundRobin);
    assert_eq!(route("lc.test").policy, Policy::LeastConn);
    assert_eq!(route("ip.test").policy, Policy::IpHash);
    assert!(matches!(route("hh.test").policy, Policy::HeaderHash(ref h) if h == "x-user-id"));
    // One pool per tag and need for a table: hashing routes share theirs.
    assert!(Arc::ptr_eq(&route("rr.test").pool, &route("lc.test").pool));
    assert!(Arc::ptr_eq(&route("ip.test").pool, &route("hh.test").pool));
    assert!(!Arc::ptr_eq(&route("rr.test").pool, &route("ip.test").pool));
    // The table is there: one client always lands on one backend.
    let headers = http::HeaderMap::new();
    let client = Affinity {
        client: move || Some([10, 1, 2, 3].into()),
        headers: &headers,
    };
    let first = route("ip.test")
        .pick(&client, |_| false)
        .unwrap()
        .id
        .clone();
    for _ in 0..10 {
        assert_eq!(route("ip.test").pick(&client, |_| false).unwrap().id, first);
    }
}

#[test]
fn max_connections_is_published_and_changes_apply() {
    let mut r = Registry::default();
    r.apply(Command::AddBackend(NewBackend {
        id: "c1".into(),
        address: "127.0.0.1:3100".into(),
        tags: vec!["a".into()],
        max_connections: Some(1),
        ..NewBackend::default()
    }))
    .unwrap();
    r.apply(domain("cap.test", "a")).unwrap();
    let table = publish(&mut r);
    let route = table.lookup("cap.test").unwrap();
    let headers = http::HeaderMap::new();
    let req = Affinity {
        client: || None,
        headers: &headers,
    };
    let held = route.pick(&req, |_| false).unwrap();
    assert!(route.pick(&req, |_| false).is_none(), "at its cap");
    assert_eq!(r.backend("c1").unwrap().in_flight, 1);
    // Raising the cap republishes the pool; the backend (and its count) stays the same.
    let raise = BackendPatch {
        max_connections: Some(2),
        ..Default::default()
    };
    let (_, fx) = r.apply(Command::UpdateBackend("c1".into(), raise)).unwrap();
    let mut m = crate::metrics::RouteHandles::new(crate::metrics::Metrics::new());
    r.publish(&fx, &table, &mut m);
    let route = table.lookup("cap.test").unwrap();
    let second = route.pick(&req, |_| false).unwrap();
    assert!(route.pick(&req, |_| false).is_none());
    assert_eq!(r.backend("c1").unwrap().in_flight, 2);
    drop((held, second));
    assert_eq!(r.backend("c1").unwrap().in_flight, 0);
}

#[test]
fn weights_out_of_range_are_refused() {
    let mut r = seeded();
    for w in [0, 1001] {
        let e = invalid(
            &mut r,
            Command::AddBackend(NewBackend {
                id: "w".into(),
                address: "127.0.0.1:3200".into(),
                tags: vec!["a".into()],
                weight: Some(w),
                ..NewBackend::default()
            }),
        );
        assert!(e.contains("weight"), "{e}");
        let patch = BackendPatch {
            weight: Some(w),
            ..Default::default()
        };
        invalid(&mut r, Command::UpdateBackend("a1".into(), patch));
    }
    r.apply(backend("w", 3200, &["a"])).unwrap();
}

#[test]
fn unknown_policies_do_not_parse() {
    let e = serde_json::from_str::<NewDomain>(
        r#"{"domain": "x.test", "enabled_backends_tag": "a", "lb_policy": "random"}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown variant"), "{e}");
}

#[test]
fn hashing_domains_published_one_by_one_share_one_table() {
    let mut r = seeded();
    let table = RouteTable::new();
    let mut m = crate::metrics::RouteHandles::new(crate::metrics::Metrics::new());
    r.publish_all(&table, &mut m);
    // Each domain added through the API is published alone, with a pool of its own.
    for i in 0..20 {
        let name = format!("h{i}.test");
        let (_, fx) = r
            .apply(hashed_domain(&name, Some(LbPolicy::IpHash), None))
            .unwrap();
        r.publish(&fx, &table, &mut m);
    }
    let first = table.lookup("h0.test").unwrap();
    for i in 1..20 {
        let route = table.lookup(&format!("h{i}.test")).unwrap();
        assert!(route.pool.shares_table_with(&first.pool), "h{i}.test");
    }
    assert_eq!(r.hash_tables.live(), 1);
    // A member more: a new table for the routes published since, the old one while they live.
    r.apply(backend("a3", 3003, &["a"])).unwrap();
    let (_, fx) = r
        .apply(hashed_domain("new.test", Some(LbPolicy::IpHash), None))
        .unwrap();
    r.publish(&fx, &table, &mut m);
    let new = table.lookup("new.test").unwrap();
    assert!(!new.pool.shares_table_with(&first.pool));
    assert_eq!(r.hash_tables.live(), 2);
}
