//! Request-path routing costs: `RouteTable::lookup` for exact, wildcard and unknown hosts at
//! 10 / 1,000 / 100,000 published domains, `normalize_host` on the borrowed and allocating paths,
//! `BackendPool::pick` (round robin, weighted, with unhealthy members), each load-balancing
//! policy's pick at 2 / 16 / 256 backends and building a hash table (routing/policies.rs),
//! and how `publish` and `lookup` behave when a second thread reads or writes the same table at
//! the same time.
//!
//! Run with `cargo bench --bench routing`; each benchmark reports the time of one operation
//! (a pick includes taking the in-flight slot and giving it back).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "routing/policies.rs"]
mod policies;

use criterion::measurement::WallTime;
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion,
};
use pingora_vhost::proxy::normalize_host;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use vhost_actors::metrics::{Metrics, RouteHandles, RouteMetrics};
use vhost_actors::model::{DomainName, Tag};
use vhost_actors::routing::{BackendPool, Policy, Route, RouteTable};
use vhost_actors::upstream::{Thresholds, UpstreamBackend};

/// Table sizes for the lookup groups.
const SIZES: [usize; 3] = [10, 1_000, 100_000];
/// Domains in the table the concurrency group publishes into.
const CONCURRENT_DOMAINS: usize = 10_000;

// === fixtures ===

/// Keeps every group short: 20 samples of 2 s after a 0.5 s warm-up.
pub(crate) fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
}

pub(crate) fn backend(i: usize) -> Arc<UpstreamBackend> {
    let port = 10_000 + u16::try_from(i).expect("backend index fits a port");
    Arc::new(UpstreamBackend::new(
        &format!("b{i}"),
        SocketAddr::from(([127, 0, 0, 1], port)),
    ))
}

fn mark_unhealthy(b: &UpstreamBackend) {
    let once = Thresholds {
        unhealthy: 1,
        healthy: 1,
    };
    b.health.record_probe(false, once, 1);
}

/// Everything needed to mint routes; one pool shared by all of them, as a tag's pool is.
/// The metric handles are shared too (lookup and publish never touch them, and registering
/// 100,000 series would only slow the setup down).
struct RouteFactory {
    tag: Tag,
    pool: Arc<BackendPool>,
    metrics: Arc<RouteMetrics>,
}

impl RouteFactory {
    fn new() -> Self {
        Self {
            tag: Tag::parse("a").expect("valid tag"),
            pool: Arc::new(BackendPool::new(vec![(backend(0), 1), (backend(1), 1)])),
            metrics: RouteHandles::new(Metrics::new()).route("bench.example.com", "a"),
        }
    }

    fn route(&self, domain: DomainName) -> Arc<Route> {
        Arc::new(Route {
            domain,
            tag: self.tag.clone(),
            pool: Arc::clone(&self.pool),
            policy: Policy::RoundRobin,
            http_to_https: false,
            metrics: Arc::clone(&self.metrics),
            split: None,
            access: None,
        })
    }
}

/// A table holding one route per name; returns the parsed names too.
fn table_with(names: impl Iterator<Item = String>) -> (Arc<RouteTable>, Vec<DomainName>) {
    let factory = RouteFactory::new();
    let table = Arc::new(RouteTable::new());
    let domains: Vec<DomainName> = names
        .map(|n| DomainName::parse(&n).expect("valid domain"))
        .collect();
    for d in &domains {
        table.publish(factory.route(d.clone()));
    }
    assert_eq!(table.len(), domains.len());
    (table, domains)
}

fn exact_name(i: usize) -> String {
    format!("d{i}.example.com")
}

fn exact_names(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(exact_name)
}

/// `hosts` visited in a fixed scrambled order, so large tables are not walked sequentially.
fn scrambled(hosts: Vec<String>) -> Vec<String> {
    let n = hosts.len();
    // 7919 is prime and does not divide any of the sizes, so this is a permutation.
    (0..n).map(|i| hosts[(i * 7919) % n].clone()).collect()
}

/// Benchmarks `lookup` over `hosts` in turn, asserting each one resolves (or not).
fn bench_lookups(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    table: &RouteTable,
    hosts: &[String],
    expect_hit: bool,
) {
    for h in hosts {
        assert_eq!(table.lookup(h).is_some(), expect_hit, "{h}");
    }
    group.bench_function(id, |b| {
        let mut i = 0;
        b.iter(|| {
            let host = &hosts[i];
            i = if i + 1 == hosts.len() { 0 } else { i + 1 };
            black_box(table.lookup(black_box(host.as_str())))
        });
    });
}

// === lookup ===

fn lookup_exact(c: &mut Criterion) {
    lookup_at_sizes(c, "lookup_exact", exact_name, exact_name);
}

fn lookup_wildcard(c: &mut Criterion) {
    lookup_at_sizes(
        c,
        "lookup_wildcard",
        |i| format!("*.w{i}.example.com"),
        |i| format!("x.w{i}.example.com"),
    );
}

/// A table of `domain(i)` for each size, looked up as `host(i)` in scrambled order (all hits).
fn lookup_at_sizes(
    c: &mut Criterion,
    name: &str,
    domain: fn(usize) -> String,
    host: fn(usize) -> String,
) {
    let mut group = c.benchmark_group(name);
    configure(&mut group);
    for n in SIZES {
        let (table, _) = table_with((0..n).map(domain));
        let hosts = scrambled((0..n).map(host).collect());
        bench_lookups(
            &mut group,
            BenchmarkId::from_parameter(n),
            &table,
            &hosts,
            true,
        );
    }
    group.finish();
}

fn lookup_miss(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup_miss");
    configure(&mut group);
    let n = 100_000;
    let (table, _) = table_with(exact_names(n));
    let hosts = vec!["unknown.example.org".to_string()];
    bench_lookups(
        &mut group,
        BenchmarkId::from_parameter(n),
        &table,
        &hosts,
        false,
    );
    group.finish();
}

// === normalize_host ===

fn normalize(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize_host");
    configure(&mut group);
    for (name, raw) in [
        ("borrowed", "app.example.com"),
        ("owned", "App.Example.COM.:8080"),
    ] {
        assert_eq!(normalize_host(raw), "app.example.com");
        group.bench_with_input(BenchmarkId::new(name, raw), raw, |b, raw| {
            b.iter(|| black_box(normalize_host(black_box(raw))));
        });
    }
    group.finish();
}

// === pick ===

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    configure(&mut group);

    let pool_of = |weights: &[u32]| {
        let members: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (backend(i), w))
            .collect();
        BackendPool::new(members)
    };

    let round_robin = pool_of(&[1; 4]);
    let weighted = pool_of(&[1, 3, 5, 10]);
    let half_unhealthy = pool_of(&[1; 4]);
    for b in half_unhealthy.members().iter().step_by(2) {
        mark_unhealthy(b);
    }
    // 90 of 100 down: once as one contiguous run (a zone outage; the worst case for the
    // linear skip) and once spread out (every tenth backend still up).
    let clustered = pool_of(&[1; 100]);
    for b in &clustered.members()[..90] {
        mark_unhealthy(b);
    }
    let spread = pool_of(&[1; 100]);
    for (i, b) in spread.members().iter().enumerate() {
        if i % 10 != 0 {
            mark_unhealthy(b);
        }
    }

    for (name, pool) in [
        ("round_robin_4", &round_robin),
        ("weighted_1_3_5_10", &weighted),
        ("half_unhealthy_4", &half_unhealthy),
        ("90_of_100_unhealthy_clustered", &clustered),
        ("90_of_100_unhealthy_spread", &spread),
    ] {
        assert!(
            pool.pick(|_| false).is_some(),
            "{name} has a routable backend"
        );
        group.bench_function(name, |b| {
            b.iter(|| black_box(pool.pick(|_| false)));
        });
    }
    group.finish();
}

// === publish / lookup under concurrency ===

/// A background thread running `work` until the returned flag is set; `work` counts rounds.
fn background(mut work: impl FnMut() + Send + 'static) -> (Arc<AtomicBool>, JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = thread::spawn(move || {
        // At least one round, so that a run whose benchmarks a filter skipped (and which stops
        // the thread at once) still proves the work runs.
        let mut rounds = 0u64;
        loop {
            work();
            rounds += 1;
            if flag.load(Ordering::Relaxed) {
                break rounds;
            }
        }
    });
    (stop, handle)
}

fn finish_background(stop: Arc<AtomicBool>, handle: JoinHandle<u64>) {
    stop.store(true, Ordering::Relaxed);
    let rounds = handle.join().expect("background thread panicked");
    assert!(rounds > 0, "background thread never ran");
}

fn publish_under_readers(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_under_readers");
    configure(&mut group);

    let (table, domains) = table_with(exact_names(CONCURRENT_DOMAINS));
    let hosts = Arc::new(scrambled(exact_names(CONCURRENT_DOMAINS).collect()));
    let factory = RouteFactory::new();

    // Replaces an existing domain's route; building the `Arc<Route>` is outside the timing.
    let bench_publish = |group: &mut BenchmarkGroup<'_, WallTime>, id: BenchmarkId| {
        group.bench_function(id, |b| {
            let mut i = 0;
            b.iter_batched(
                || {
                    let route = factory.route(domains[i].clone());
                    i = (i + 1) % domains.len();
                    route
                },
                |route| table.publish(route),
                BatchSize::SmallInput,
            );
        });
    };

    bench_publish(&mut group, BenchmarkId::new("publish", "no_readers"));
    let (stop, handle) = {
        let (table, hosts) = (Arc::clone(&table), Arc::clone(&hosts));
        background(move || {
            for h in hosts.iter() {
                black_box(table.lookup(h));
            }
        })
    };
    bench_publish(&mut group, BenchmarkId::new("publish", "1_reader"));
    finish_background(stop, handle);

    let bench_lookup = |group: &mut BenchmarkGroup<'_, WallTime>, id: BenchmarkId| {
        bench_lookups(group, id, &table, &hosts, true);
    };
    bench_lookup(&mut group, BenchmarkId::new("lookup", "no_writer"));
    let (stop, handle) = {
        let table = Arc::clone(&table);
        let factory = RouteFactory::new();
        let domains = domains.clone();
        let mut i = 0;
        background(move || {
            table.publish(factory.route(domains[i].clone()));
            i = (i + 1) % domains.len();
        })
    };
    bench_lookup(&mut group, BenchmarkId::new("lookup", "1_writer"));
    finish_background(stop, handle);

    assert_eq!(table.len(), CONCURRENT_DOMAINS);
    group.finish();
}

criterion_group!(
    benches,
    lookup_exact,
    lookup_wildcard,
    lookup_miss,
    normalize,
    pick,
    policies::pick_policy,
    policies::hash_table_build,
    publish_under_readers
);
criterion_main!(benches);
