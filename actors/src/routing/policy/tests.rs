//! Tests of each policy's pick: least connections, both hashes, their fallbacks, and how every
//! policy treats unhealthy, capped and already-tried backends.

use super::*;
use crate::model::LbPolicy;
use crate::routing::{BackendPool, PoolMember};
use crate::upstream::Thresholds;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

fn backends(n: usize) -> Vec<Arc<UpstreamBackend>> {
    (0..n)
        .map(|i| {
            Arc::new(UpstreamBackend::new(
                &format!("b{i}"),
                SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
            ))
        })
        .collect()
}

fn pool(members: &[Arc<UpstreamBackend>]) -> BackendPool {
    BackendPool::new(members.iter().map(|b| (Arc::clone(b), 1))).with_hash_table()
}

fn set_health(b: &UpstreamBackend, up: bool) {
    let once = Thresholds {
        unhealthy: 1,
        healthy: 1,
    };
    b.health.record_probe(up, once, 1);
}

fn no_headers() -> &'static HeaderMap {
    static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
    EMPTY.get_or_init(HeaderMap::new)
}

fn from_ip(ip: [u8; 4]) -> Affinity<'static, impl Fn() -> Option<IpAddr>> {
    Affinity {
        client: move || Some(IpAddr::from(ip)),
        headers: no_headers(),
    }
}

fn with_user(headers: &HeaderMap) -> Affinity<'_, impl Fn() -> Option<IpAddr>> {
    Affinity {
        client: || None,
        headers,
    }
}

fn user_headers(user: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-user-id", user.parse().unwrap());
    h
}

fn header_hash() -> Policy {
    Policy::new(LbPolicy::HeaderHash, Some("X-User-Id"))
}

#[test]
fn policies_come_from_the_domain_record() {
    assert_eq!(Policy::new(LbPolicy::RoundRobin, None), Policy::RoundRobin);
    assert_eq!(Policy::new(LbPolicy::LeastConn, None), Policy::LeastConn);
    assert_eq!(Policy::new(LbPolicy::IpHash, None), Policy::IpHash);
    assert_eq!(
        header_hash(),
        Policy::HeaderHash(HeaderName::from_static("x-user-id"))
    );
    assert_eq!(
        Policy::new(LbPolicy::HeaderHash, None),
        Policy::RoundRobin,
        "never published unvalidated, but harmless if it were"
    );
    assert!(Policy::IpHash.hashes() && header_hash().hashes());
    assert!(!Policy::RoundRobin.hashes() && !Policy::LeastConn.hashes());
}

#[test]
fn least_conn_goes_to_the_backend_with_fewest_in_flight() {
    let b = backends(3);
    let pool = pool(&b);
    let pick = || Policy::LeastConn.pick(&pool, &from_ip([10, 0, 0, 1]), |_| false);
    // Idle: equals go round the pool.
    let first: Vec<_> = (0..3).map(|_| pick().unwrap().id.to_string()).collect();
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, ["b0", "b1", "b2"], "{first:?}");
    // b0 is slow: it keeps two requests; b1 keeps one. New requests go to b2, then to b1 and b2
    // until they are as busy as b0.
    let _slow = [pick_on(&pool, "b0"), pick_on(&pool, "b0")];
    let _busy = pick_on(&pool, "b1");
    let next = pick().unwrap();
    assert_eq!(&*next.id, "b2");
    let held: Vec<_> = (0..2).map(|_| pick().unwrap()).collect();
    assert!(held.iter().all(|l| &*l.id != "b0"), "{held:?}");
    assert_eq!(b[0].in_flight(), 2);
}

#[test]
fn least_conn_in_a_large_pool_evens_out_and_finds_the_usable_few() {
    use crate::routing::pool::LEAST_CONN_WINDOW;
    // 256 members, each pick compares a moving window of 16: held picks still spread evenly.
    let b = backends(256);
    let pool = pool(&b);
    let held: Vec<_> = (0..256 * 4)
        .map(|_| Policy::LeastConn.pick(&pool, &from_ip([10, 0, 0, 1]), |_| false))
        .collect();
    assert!(held.iter().all(Option::is_some));
    let loads: Vec<u32> = b.iter().map(|m| m.in_flight()).collect();
    let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
    assert!(max - min <= 1, "{min}..={max}");
    drop(held);
    // A busy backend beside idle ones is passed over wherever the window starts.
    let _slow: Vec<_> = (0..3).map(|_| pick_on(&pool, "b100")).collect();
    for _ in 0..1000 {
        let l = Policy::LeastConn.pick(&pool, &from_ip([10, 0, 0, 1]), |_| false);
        assert_ne!(&*l.unwrap().id, "b100");
    }
    // More than a window of unusable members in a row: the scan goes on past the window.
    for m in &b[..LEAST_CONN_WINDOW * 2] {
        set_health(m, false);
    }
    for _ in 0..512 {
        let l = Policy::LeastConn.pick(&pool, &from_ip([10, 0, 0, 1]), |_| false);
        let l = l.expect("a usable backend beyond the window");
        assert!(l.health.is_routable(), "{}", l.id);
    }
}

/// A lease on the backend named `id`, taken through round robin.
fn pick_on(pool: &BackendPool, id: &str) -> Lease {
    pool.pick(|b| &*b.id != id).unwrap()
}

#[test]
fn least_conn_breaks_ties_by_weight() {
    let b = backends(2);
    let pool = BackendPool::new(vec![(Arc::clone(&b[0]), 3), (Arc::clone(&b[1]), 1)]);
    let mut counts = HashMap::<String, usize>::new();
    for _ in 0..400 {
        let l = Policy::LeastConn.pick(&pool, &from_ip([10, 0, 0, 1]), |_| false);
        *counts.entry(l.unwrap().id.to_string()).or_default() += 1;
    }
    assert_eq!((counts["b0"], counts["b1"]), (300, 100));
}

#[test]
fn hashing_keeps_a_key_on_one_backend() {
    let b = backends(5);
    let pool = pool(&b);
    for i in 0..50u8 {
        let client = from_ip([10, 0, 1, i]);
        let first = Policy::IpHash
            .pick(&pool, &client, |_| false)
            .unwrap()
            .id
            .clone();
        for _ in 0..5 {
            let again = Policy::IpHash.pick(&pool, &client, |_| false).unwrap();
            assert_eq!(again.id, first);
        }
        let headers = user_headers(&format!("user-{i}"));
        let first = header_hash()
            .pick(&pool, &with_user(&headers), |_| false)
            .unwrap()
            .id
            .clone();
        let again = header_hash()
            .pick(&pool, &with_user(&headers), |_| false)
            .unwrap();
        assert_eq!(again.id, first);
    }
    // The keys spread over the pool.
    let mut seen = std::collections::HashSet::new();
    for i in 0..200u8 {
        seen.insert(
            Policy::IpHash
                .pick(&pool, &from_ip([10, 0, 2, i]), |_| false)
                .unwrap()
                .id
                .clone(),
        );
    }
    assert_eq!(seen.len(), 5);
}

#[test]
fn a_missing_key_falls_back_to_round_robin() {
    let b = backends(2);
    let pool = pool(&b);
    let none = HeaderMap::new();
    let ids: Vec<_> = (0..4)
        .map(|_| {
            header_hash()
                .pick(&pool, &with_user(&none), |_| false)
                .unwrap()
                .id
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["b0", "b1", "b0", "b1"]);
    let unix = Affinity {
        client: || None,
        headers: &none,
    };
    let ids: Vec<_> = (0..2)
        .map(|_| {
            Policy::IpHash
                .pick(&pool, &unix, |_| false)
                .unwrap()
                .id
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["b0", "b1"]);
}

#[test]
fn a_hashed_key_moves_while_its_backend_is_down_and_comes_back() {
    let b = backends(5);
    let pool = pool(&b);
    let owner = |i: u8| {
        Policy::IpHash
            .pick(&pool, &from_ip([10, 0, 3, i]), |_| false)
            .map(|l| l.id.clone())
    };
    let before: Vec<_> = (0..200).map(owner).collect();
    let down = before[0].clone().unwrap();
    let down_backend = b.iter().find(|x| x.id == down).unwrap();
    set_health(down_backend, false);
    let during: Vec<_> = (0..200).map(owner).collect();
    let mut went_to = std::collections::HashSet::new();
    for (was, now) in before.iter().zip(&during) {
        let now = now.clone().unwrap();
        assert_ne!(now, down);
        if *was == Some(down.clone()) {
            went_to.insert(now);
        } else {
            assert_eq!(
                was.as_ref(),
                Some(&now),
                "a key of a backend that is up moved"
            );
        }
    }
    assert!(
        went_to.len() > 1,
        "its keys spread over the others: {went_to:?}"
    );
    set_health(down_backend, true);
    let after: Vec<_> = (0..200).map(owner).collect();
    assert_eq!(after, before);
}

#[test]
fn a_retry_never_picks_a_backend_the_request_tried() {
    let b = backends(3);
    let pool = pool(&b);
    let headers = user_headers("alice");
    for policy in [
        Policy::RoundRobin,
        Policy::LeastConn,
        Policy::IpHash,
        header_hash(),
    ] {
        for i in 0..20u8 {
            let request = Affinity {
                client: move || Some(IpAddr::from([10, 0, 4, i])),
                headers: &headers,
            };
            let first = policy.pick(&pool, &request, |_| false).unwrap();
            let tried = Arc::clone(first.backend());
            let second = policy
                .pick(&pool, &request, |x| std::ptr::eq(x, &*tried))
                .unwrap();
            assert_ne!(second.id, tried.id, "{policy:?}");
            let both = Arc::clone(second.backend());
            let third = policy
                .pick(&pool, &request, |x| {
                    std::ptr::eq(x, &*tried) || std::ptr::eq(x, &*both)
                })
                .unwrap();
            assert!(third.id != tried.id && third.id != both.id, "{policy:?}");
            let none = policy.pick(&pool, &request, |_| true);
            assert!(none.is_none(), "{policy:?}");
        }
    }
}

#[test]
fn every_policy_skips_unhealthy_and_capped_backends() {
    let b = backends(4);
    let pool = BackendPool::new(b.iter().map(|x| PoolMember {
        backend: Arc::clone(x),
        weight: 1,
        max_connections: 1,
    }))
    .with_hash_table();
    set_health(&b[0], false);
    set_health(&b[1], false);
    let headers = user_headers("bob");
    let request = Affinity {
        client: move || Some(IpAddr::from([10, 0, 5, 1])),
        headers: &headers,
    };
    for policy in [
        Policy::RoundRobin,
        Policy::LeastConn,
        Policy::IpHash,
        header_hash(),
    ] {
        let one = policy.pick(&pool, &request, |_| false).unwrap();
        let two = policy.pick(&pool, &request, |_| false).unwrap();
        let mut ids = [one.id.to_string(), two.id.to_string()];
        ids.sort();
        assert_eq!(ids, ["b2", "b3"], "{policy:?}");
        assert!(
            policy.pick(&pool, &request, |_| false).is_none(),
            "{policy:?}: all at cap"
        );
        drop((one, two));
        assert_eq!(b.iter().map(|x| x.in_flight()).sum::<u32>(), 0);
    }
    set_health(&b[2], false);
    set_health(&b[3], false);
    for policy in [
        Policy::RoundRobin,
        Policy::LeastConn,
        Policy::IpHash,
        header_hash(),
    ] {
        assert!(
            policy.pick(&pool, &request, |_| false).is_none(),
            "{policy:?}: all down"
        );
    }
}

#[test]
fn a_pool_without_a_table_hashes_by_round_robin() {
    let b = backends(2);
    let pool = BackendPool::new(b.iter().map(|x| (Arc::clone(x), 1)));
    let ids: Vec<_> = (0..2)
        .map(|_| {
            Policy::IpHash
                .pick(&pool, &from_ip([10, 0, 6, 1]), |_| false)
                .unwrap()
                .id
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["b0", "b1"]);
}

#[test]
fn ipv4_hashes_alike_on_both_socket_families() {
    let v4 = IpAddr::from([192, 0, 2, 7]);
    let mapped = IpAddr::from(std::net::Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
    assert_eq!(hash_ip(v4), hash_ip(mapped));
    assert_ne!(hash_ip(v4), hash_ip(IpAddr::from([192, 0, 2, 8])));
}
