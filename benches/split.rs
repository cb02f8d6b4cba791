//! The cost a traffic split adds to a request: `Split::choose` by weight (2 and 5 tags) and by
//! sticky cookie, next to a route without a split.
//!
//! Run with `cargo bench --bench split`; each benchmark reports the time of one choice.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use vhost_actors::metrics::{Metrics, RouteHandles};
use vhost_actors::model::{DomainName, Tag};
use vhost_actors::routing::{sticky_cookie, BackendPool, Policy, PoolMember, Route, Split};
use vhost_actors::upstream::UpstreamBackend;

fn lane(handles: &mut RouteHandles, tag: &str, port: u16) -> Arc<Route> {
    let backend = Arc::new(UpstreamBackend::new(
        &format!("b{port}"),
        SocketAddr::from(([127, 0, 0, 1], port)),
    ));
    Arc::new(Route {
        domain: DomainName::parse("bench.example.com").unwrap(),
        tag: Tag::parse(tag).unwrap(),
        pool: Arc::new(BackendPool::new(vec![PoolMember {
            backend,
            weight: 1,
            max_connections: 0,
        }])),
        policy: Policy::RoundRobin,
        http_to_https: false,
        metrics: handles.route("bench.example.com", tag),
        split: None,
        access: None,
    })
}

fn split_of(weights: &[(&str, u32)], sticky: bool) -> Split {
    let mut handles = RouteHandles::new(Metrics::new());
    let lanes = weights
        .iter()
        .enumerate()
        .map(|(i, (t, w))| (*w, lane(&mut handles, t, 9000 + i as u16)))
        .collect();
    Split::new(lanes, sticky)
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("split");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let two = split_of(&[("a", 95), ("b", 5)], false);
    g.bench_function("weighted, 2 tags", |b| {
        b.iter(|| black_box(two.choose(None)))
    });
    let five = split_of(
        &[("a", 60), ("b", 10), ("c", 10), ("d", 10), ("e", 10)],
        false,
    );
    g.bench_function("weighted, 5 tags", |b| {
        b.iter(|| black_box(five.choose(None)))
    });
    let sticky = split_of(&[("a", 50), ("b", 50)], true);
    let header = b"session=abc123; pingora_vhost_tag=b; theme=dark".as_slice();
    g.bench_function("sticky cookie parsed and honoured", |b| {
        b.iter(|| black_box(sticky.choose(sticky_cookie(black_box(header)))))
    });
    g.finish();
}

criterion_group!(split, benches);
criterion_main!(split);
