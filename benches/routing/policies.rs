//! Each load-balancing policy's pick at 2 / 16 / 256 backends, checked to allocate nothing (a
//! counting global allocator), and building a pool's consistent-hash table.

use super::counting_alloc::ALLOCATIONS;
use super::{backend, configure};
use criterion::{black_box, BatchSize, BenchmarkId, Criterion};
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use vhost_actors::model::LbPolicy;
use vhost_actors::routing::{Affinity, BackendPool, Lease, Policy};

/// Pool sizes for the policy group.
const POOL_SIZES: [usize; 3] = [2, 16, 256];
/// Distinct clients (and header values) the hashing picks cycle through.
const KEYS: usize = 1024;

/// One request of the policy group: its client address and headers.
struct Client {
    ip: IpAddr,
    headers: HeaderMap,
}

fn clients() -> Vec<Client> {
    (0..KEYS)
        .map(|i| {
            let mut headers = HeaderMap::new();
            let user = format!("user-{i:04}").parse().expect("valid header value");
            headers.insert("x-user-id", user);
            Client {
                ip: IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]),
                headers,
            }
        })
        .collect()
}

/// The policies benchmarked; `least_conn_busy` runs with every backend already serving 1..=8
/// requests, so that no idle backend cuts its scan short.
fn policies() -> [(&'static str, Policy); 5] {
    [
        ("round_robin", Policy::RoundRobin),
        ("least_conn_idle", Policy::LeastConn),
        ("least_conn_busy", Policy::LeastConn),
        ("ip_hash", Policy::IpHash),
        (
            "header_hash",
            Policy::new(LbPolicy::HeaderHash, Some("X-User-Id")),
        ),
    ]
}

pub fn pick_policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick_policy");
    configure(&mut group);
    let clients = clients();
    for n in POOL_SIZES {
        let members: Vec<_> = (0..n).map(|i| (backend(i), 1 + (i % 3) as u32)).collect();
        let pool = BackendPool::new(members).with_hash_table();
        for (name, policy) in policies() {
            let _load: Vec<Lease> = if name == "least_conn_busy" {
                busy(&pool)
            } else {
                Vec::new()
            };
            let mut i = 0;
            let mut pick = || {
                let client = &clients[i];
                i = if i + 1 == clients.len() { 0 } else { i + 1 };
                let request = Affinity {
                    client: move || Some(client.ip),
                    headers: &client.headers,
                };
                policy.pick(&pool, &request, |_| false)
            };
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for _ in 0..10_000 {
                assert!(pick().is_some(), "{name}/{n}");
            }
            assert_eq!(
                ALLOCATIONS.load(Ordering::Relaxed),
                before,
                "{name}/{n} allocated"
            );
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| black_box(pick()));
            });
        }
    }
    group.finish();
}

/// Leases that keep backend j of `pool` serving j % 8 + 1 requests.
fn busy(pool: &BackendPool) -> Vec<Lease> {
    let mut held = Vec::new();
    for (j, target) in pool.members().iter().enumerate() {
        for _ in 0..=j % 8 {
            let lease = pool.pick(|b| !std::ptr::eq(b, &**target));
            held.push(lease.expect("no cap"));
        }
    }
    held
}

/// Building a pool's consistent-hash table (at publish time, never per request).
pub fn hash_table_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash_table_build");
    configure(&mut group);
    for n in POOL_SIZES {
        let members: Vec<_> = (0..n).map(|i| (backend(i), 1)).collect();
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || BackendPool::new(members.clone()),
                |pool| black_box(pool.with_hash_table()),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}
