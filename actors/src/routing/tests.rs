//! Tests of pools (weighted order, skipping, caps, in-flight slots) and route lookups.
use super::*;
use crate::model::{DomainName, Tag};
use crate::upstream::{Thresholds, UpstreamBackend};
use std::net::SocketAddr;
use std::sync::Arc;

fn backend(id: &str, port: u16) -> Arc<UpstreamBackend> {
    Arc::new(UpstreamBackend::new(
        id,
        SocketAddr::from(([127, 0, 0, 1], port)),
    ))
}

#[test]
fn a_run_of_unusable_backends_spreads_its_traffic() {
    let backends: Vec<_> = (0..100)
        .map(|i| backend(&format!("b{i}"), 9000 + i))
        .collect();
    let pool = BackendPool::new(backends.iter().map(|b| (Arc::clone(b), 1)));
    for b in &backends[..90] {
        assert!(b.health.record_passive_failure(1), "ejected");
    }
    let mut hits = std::collections::HashMap::<Arc<str>, usize>::new();
    for _ in 0..10_000 {
        let b = pool.pick(|_| false).expect("ten are up");
        *hits.entry(Arc::clone(&b.id)).or_default() += 1;
    }
    assert_eq!(hits.len(), 10, "{hits:?}");
    // Even is 1 000 each; skipping ahead from the unusable slot sent 9 100 to b90.
    assert!(
        hits.values().all(|&n| (900..=1_100).contains(&n)),
        "{hits:?}"
    );
}

#[test]
fn smooth_order_interleaves_by_weight() {
    assert_eq!(smooth_order(&[3, 1]), vec![0, 0, 1, 0]);
    assert_eq!(smooth_order(&[1, 1, 1]), vec![0, 1, 2]);
    assert_eq!(smooth_order(&[5, 5]), vec![0, 1]);
    let o = smooth_order(&[5, 1, 1]);
    assert_eq!(o.len(), 7);
    assert_eq!(o.iter().filter(|&&i| i == 0).count(), 5);
}

#[test]
fn pick_rotates_and_skips_unhealthy() {
    let (a, b) = (backend("a", 1), backend("b", 2));
    let pool = BackendPool::new(vec![(a.clone(), 1), (b.clone(), 1)]);
    let ids: Vec<_> = (0..4)
        .map(|_| pool.pick(|_| false).unwrap().id.to_string())
        .collect();
    assert_eq!(ids, ["a", "b", "a", "b"]);
    a.health.record_probe(
        false,
        Thresholds {
            unhealthy: 1,
            healthy: 1,
        },
        1,
    );
    for _ in 0..4 {
        assert_eq!(&*pool.pick(|_| false).unwrap().id, "b");
    }
    assert!(pool.pick(|x| &*x.id == "b").is_none());
}

#[test]
fn lookup_exact_then_wildcard() {
    let table = RouteTable::new();
    let pool = || Arc::new(BackendPool::new(vec![(backend("x", 1), 1)]));
    for d in ["example.com", "*.example.com"] {
        table.publish(Arc::new(Route {
            domain: DomainName::parse(d).unwrap(),
            tag: Tag::parse("a").unwrap(),
            pool: pool(),
            policy: Policy::RoundRobin,
            http_to_https: false,
            metrics: crate::metrics::RouteHandles::new(crate::metrics::Metrics::new())
                .route(d, "a"),
            split: None,
            access: None,
        }));
    }
    assert_eq!(
        table.lookup("example.com").unwrap().domain.as_str(),
        "example.com"
    );
    assert_eq!(
        table.lookup("www.example.com").unwrap().domain.as_str(),
        "*.example.com"
    );
    assert!(table.lookup("a.b.example.com").is_none());
    assert!(table.lookup("other.org").is_none());
}

#[test]
fn weights_three_to_one_interleave() {
    let (a, b) = (backend("a", 1), backend("b", 2));
    let pool = BackendPool::new(vec![(a, 3), (b, 1)]);
    let ids: String = (0..8)
        .map(|_| pool.pick(|_| false).unwrap().id.to_string())
        .collect();
    assert_eq!(ids, "aabaaaba");
}

#[test]
fn a_lease_holds_a_slot_until_dropped() {
    let a = backend("a", 1);
    let pool = BackendPool::new(vec![(Arc::clone(&a), 1)]);
    let first = pool.pick(|_| false).unwrap();
    let second = pool.pick(|_| false).unwrap();
    assert_eq!(a.in_flight(), 2);
    assert!(Arc::ptr_eq(first.backend(), &a));
    drop(first);
    assert_eq!(a.in_flight(), 1);
    // A retry replaces the lease: the old slot is given back as the new one is taken.
    let mut current = Some(second);
    assert_eq!(a.in_flight(), 1);
    current = pool.pick(|_| false).or(current);
    assert_eq!(
        a.in_flight(),
        1,
        "the retry's slot taken, the first one's given back"
    );
    // The answer is in: the slot goes back while the lease still names the backend.
    let mut current = current.unwrap();
    current.finish();
    assert_eq!(a.in_flight(), 0);
    current.finish();
    drop(current);
    assert_eq!(a.in_flight(), 0, "given back once");
}

#[test]
fn a_backend_at_its_cap_is_skipped_until_a_slot_frees() {
    let (a, b) = (backend("a", 1), backend("b", 2));
    let member = |backend: &Arc<UpstreamBackend>, max_connections| PoolMember {
        backend: Arc::clone(backend),
        weight: 1,
        max_connections,
    };
    let pool = BackendPool::new(vec![member(&a, 2), member(&b, 1)]);
    let held: Vec<_> = (0..3).map(|_| pool.pick(|_| false).unwrap()).collect();
    assert_eq!((a.in_flight(), b.in_flight()), (2, 1));
    assert!(!pool.has_routable(|_| false), "all at their caps");
    assert!(
        pool.pick(|_| false).is_none(),
        "a request never waits for a slot"
    );
    drop(held);
    assert!(pool.has_routable(|_| false));
    let again: Vec<_> = (0..3).map(|_| pool.pick(|_| false).unwrap()).collect();
    assert_eq!((a.in_flight(), b.in_flight()), (2, 1));
    drop(again);
    assert_eq!((a.in_flight(), b.in_flight()), (0, 0));
}
