//! Load-balancing policies end to end, over real sockets: weighted round robin's shares and
//! interleaving, least connections avoiding a slow origin, both consistent hashes keeping keys
//! and moving about a fifth of them when one of five backends goes (hashing.rs),
//! `max_connections` under concurrent load and in-flight counts back at zero after aborted and
//! retried requests (limits.rs), and what the API and `check` accept (validation.rs).

#[path = "../support/mod.rs"]
mod support;

mod harness;
mod hashing;
mod limits;
mod validation;

use harness::*;
use std::time::Duration;
use support::*;

// === round robin ===

#[tokio::test(flavor = "multi_thread")]
async fn weights_three_to_one_give_three_quarters_interleaved() {
    let (heavy, light) = (Origin::start("heavy").await, Origin::start("light").await);
    let p = Proxy::start(&format!(
        "{}{}{}",
        lb_backend("heavy", heavy.addr, "a", 3, 0),
        lb_backend("light", light.addr, "a", 1, 0),
        lb_vhost("rr.test", "a", "round_robin"),
    ))
    .await;
    let http = client();
    let mut heavy_seq = Vec::with_capacity(3000);
    for _ in 0..3000 {
        heavy_seq.push(served_by(&p, &http, "rr.test", None).await == "heavy");
    }
    let share = heavy_seq.iter().filter(|&&h| h).count() as f64 / heavy_seq.len() as f64;
    println!(
        "weights 3:1 over 3000 requests: heavy {:.1} %",
        share * 100.0
    );
    assert!((share - 0.75).abs() <= 0.03, "heavy share {share}");
    // Interleaved: every window of 100 requests has its share, and no backend has a burst.
    for window in heavy_seq.chunks(100) {
        let n = window.iter().filter(|&&h| h).count();
        assert!((70..=80).contains(&n), "a window of 100 had {n} heavy");
    }
    let (h, l) = (
        longest_run(&heavy_seq, true),
        longest_run(&heavy_seq, false),
    );
    println!("longest runs: heavy {h}, light {l}");
    assert!(h <= 4 && l <= 2, "bursts: heavy {h} in a row, light {l}");
}

// === least connections ===

#[tokio::test(flavor = "multi_thread")]
async fn least_conn_sends_new_requests_away_from_a_slow_origin() {
    let slow = SlowOrigin::start("slow", Duration::from_millis(1000)).await;
    let fast = SlowOrigin::start("fast", Duration::ZERO).await;
    let p = Proxy::start(&format!(
        "{}{}{}",
        lb_backend("slow", slow.addr, "a", 1, 0),
        lb_backend("fast", fast.addr, "a", 1, 0),
        lb_vhost("lc.test", "a", "least_conn"),
    ))
    .await;
    let load = Load::start(p.url("/"), "lc.test", 6, Duration::ZERO, backend_in);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = load.finish().await;
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    let slow_n = got.seen.get("slow").copied().unwrap_or(0);
    let share = slow_n as f64 / got.ok() as f64;
    println!(
        "least_conn, 6 clients for 3 s: slow {slow_n}, fast {} ({:.2} % slow; round robin gives 50 %)",
        got.seen.get("fast").copied().unwrap_or(0),
        share * 100.0
    );
    assert!(share < 0.10, "{:?}", got.seen);
    wait_all_idle(&p, Duration::from_secs(5)).await;
}
