//! What access control costs a request, and what the rate limiter's memory is with many
//! clients: `Access::admit` with allow and deny lists only, with a rate limit for a client it
//! knows, and for a stream of new clients; then the limiter's heap at 100,000 client IPs (before
//! and after a sweep), counted by a counting allocator.
//!
//! Run with `cargo bench --bench access`; each benchmark reports the time of one decision.

use counting_alloc::LIVE_BYTES;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use vhost_actors::model::{parse_cidr, AccessSettings};
use vhost_actors::routing::{Access, ClientLimiter};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

fn settings(rate: Option<u32>) -> AccessSettings {
    let nets = |l: &[&str]| Some(l.iter().map(|c| parse_cidr(c).unwrap()).collect());
    AccessSettings {
        allow: nets(&[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "127.0.0.0/8",
        ]),
        deny: nets(&["10.0.0.66", "10.9.0.0/16"]),
        rate_limit_rps: rate,
        rate_limit_burst: None,
    }
}

fn client(i: u32) -> IpAddr {
    IpAddr::from((0x0a00_0000 | (i & 0x00ff_ffff)).to_be_bytes())
}

/// The limiter's heap with `clients` client IPs, and after they have gone idle and been swept.
fn limiter_memory(clients: u32) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let limiter = ClientLimiter::new(1000, 1);
    for i in 0..clients {
        let _ = limiter.check(client(i));
    }
    let full = LIVE_BYTES.load(Ordering::Relaxed) - before;
    std::thread::sleep(Duration::from_millis(5));
    limiter.sweep();
    let swept = LIVE_BYTES.load(Ordering::Relaxed) - before;
    println!(
        "limiter memory: {} clients {:.2} MiB ({:.0} bytes/client), after their sweep {:.1} KiB ({} left)",
        clients,
        full as f64 / (1024.0 * 1024.0),
        full as f64 / f64::from(clients),
        swept as f64 / 1024.0,
        limiter.clients()
    );
}

fn benches(c: &mut Criterion) {
    limiter_memory(100_000);
    let mut g = c.benchmark_group("access");
    let lists = Access::new(&settings(None), None).unwrap();
    g.bench_function("lists only", |b| {
        b.iter(|| lists.admit(black_box(Some(client(0x01_02_03)))))
    });
    let limited = Access::new(&settings(Some(1_000_000_000)), None).unwrap();
    g.bench_function("lists + rate, known client", |b| {
        b.iter(|| limited.admit(black_box(Some(client(0x01_02_03)))))
    });
    let mut i = 0u32;
    g.bench_function("lists + rate, 100k clients in turn", |b| {
        b.iter(|| {
            i = (i + 1) % 100_000;
            limited.admit(black_box(Some(client(i))))
        })
    });
    g.finish();
}

criterion_group! {
    name = access;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(access);
