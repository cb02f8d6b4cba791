//! Active and passive health checks over real sockets: failing, hanging, refusing and
//! recovering backends; 503 and the switch safety check; a backend killed under load.

mod support;

use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

const WITHIN: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread")]
async fn failing_health_endpoint_ejects_and_recovery_restores() {
    let flaky = FlakyOrigin::start("a1").await;
    let steady = Origin::start("a2").await;
    let p = Proxy::start(&format!(
        "{}{}{}{}",
        fast_health_toml(2, 2),
        backend_toml("a1", flaky.origin.addr, &["a"]),
        backend_toml("a2", steady.addr, &["a"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let (_, b) = call(Method::GET, &p.api("/backends/a1"), None).await;
    assert!(
        ["unknown", "healthy"].contains(&b["health"]["status"].as_str().unwrap()),
        "{b}"
    );

    let b = wait_for_health(&p, "a1", "healthy", WITHIN).await;
    assert!(
        b["health"]["consecutive_successes"].as_u64().unwrap() >= 2,
        "{b}"
    );
    let last = b["health"]["last_check"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(last).is_ok(), "RFC 3339: {last}");

    flaky.set_healthy(false);
    let b = wait_for_health(&p, "a1", "unhealthy", WITHIN).await;
    assert!(
        b["health"]["consecutive_failures"].as_u64().unwrap() >= 2,
        "{b}"
    );
    assert_eq!(b["health"]["consecutive_successes"], 0);
    for _ in 0..10 {
        assert_eq!(p.backend_for("app.example.test").await, "a2");
    }

    flaky.set_healthy(true);
    wait_for_health(&p, "a1", "healthy", WITHIN).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(p.backend_for("app.example.test").await);
    }
    assert_eq!(seen.len(), 2, "a1 is back in the pool: {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_and_refusing_backends_become_unhealthy_and_come_back() {
    let (hang_addr, _hang) = hanging_origin().await;
    let refused_guard = RefusedAddr::new();
    let refused = refused_guard.addr;
    let steady = Origin::start("ok").await;
    let p = Proxy::start(&format!(
        "{}{}{}{}{}",
        fast_health_toml(2, 1),
        backend_toml("hang", hang_addr, &["a"]),
        backend_toml("refused", refused, &["a"]),
        backend_toml("ok", steady.addr, &["a"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let b = wait_for_health(&p, "hang", "unhealthy", WITHIN).await;
    assert!(b["health"]["consecutive_failures"].as_u64().unwrap() >= 2);
    wait_for_health(&p, "refused", "unhealthy", WITHIN).await;
    wait_for_health(&p, "ok", "healthy", WITHIN).await;
    for _ in 0..6 {
        assert_eq!(p.backend_for("app.example.test").await, "ok");
    }
    // The refusing backend starts listening: the probe brings it back.
    drop(refused_guard);
    let _back = FlakyOrigin::start_on(refused, "refused").await;
    wait_for_health(&p, "refused", "healthy", WITHIN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_healthy_backend_means_503_and_switch_needs_force() {
    let a = Origin::start("a1").await;
    let b = FlakyOrigin::start("b1").await;
    b.set_healthy(false);
    let p = Proxy::start(&format!(
        "{}{}{}{}",
        fast_health_toml(1, 1),
        backend_toml("a1", a.addr, &["a"]),
        backend_toml("b1", b.origin.addr, &["b"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    wait_for_health(&p, "b1", "unhealthy", WITHIN).await;
    let (s, e) = call(
        Method::POST,
        &p.api("/domains/app.example.test/switch"),
        Some(json!({"new_tag": "b"})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("force"), "{e}");
    let (s, e) = call(
        Method::PUT,
        &p.api("/domains/app.example.test"),
        Some(json!({"enabled_backends_tag": "b"})),
    )
    .await;
    assert_eq!(s, 409, "PUT is a switch too: {e}");
    assert_eq!(p.backend_for("app.example.test").await, "a1");

    let (s, d) = call(
        Method::POST,
        &p.api("/domains/app.example.test/switch"),
        Some(json!({"new_tag": "b", "force": true})),
    )
    .await;
    assert_eq!((s, d["enabled_backends_tag"].as_str()), (200, Some("b")));
    let (status, body) = p.get("app.example.test", "/").await;
    assert_eq!(status, 503);
    assert!(body.contains("no backend available"), "{body}");

    b.set_healthy(true);
    wait_for_health(&p, "b1", "healthy", WITHIN).await;
    assert_eq!(p.backend_for("app.example.test").await, "b1");
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_follow_backend_changes() {
    let a = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "{}{}{}",
        fast_health_toml(1, 1),
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let probes = |p: &Proxy| {
        let url = p.api("/health");
        async move {
            call(Method::GET, &url, None).await.1["health_probes"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(probes(&p).await, 1);

    let dead_guard = RefusedAddr::new();
    let dead = dead_guard.addr.to_string();
    let (s, _) = call(
        Method::POST,
        &p.api("/backends"),
        Some(json!({"id": "x1", "address": dead, "tags": ["a"]})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(probes(&p).await, 2, "{}", p.log());
    wait_for_health(&p, "x1", "unhealthy", WITHIN).await;

    // A new address gets a new probe and a fresh health state.
    let fresh = Origin::start("x1").await;
    let (s, b) = call(
        Method::PUT,
        &p.api("/backends/x1"),
        Some(json!({"address": fresh.addr.to_string()})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["health"]["status"], "unknown", "{b}");
    wait_for_health(&p, "x1", "healthy", WITHIN).await;

    let (s, _) = call(Method::DELETE, &p.api("/backends/x1"), None).await;
    assert_eq!(s, 204);
    let deadline = Instant::now() + WITHIN;
    while probes(&p).await != 1 {
        assert!(
            Instant::now() < deadline,
            "probe of a deleted backend still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `pingora-vhost demo-backend` as its own process, so it can be killed for real.
fn demo_backend(name: &str) -> (std::process::Child, std::net::SocketAddr) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = std::process::Command::new(bin())
        .args([
            "demo-backend",
            "--listen",
            &addr.to_string(),
            "--name",
            name,
            "--tag",
            "a",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "demo backend did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backend_killed_under_load_gives_no_client_errors() {
    let (mut victim, victim_addr) = demo_backend("a1");
    let (mut survivor, survivor_addr) = demo_backend("a2");
    let p = Proxy::start(&format!(
        "{}{}{}{}",
        fast_health_toml(3, 2),
        backend_toml("a1", victim_addr, &["a"]),
        backend_toml("a2", survivor_addr, &["a"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    wait_for_health(&p, "a1", "healthy", WITHIN).await;

    let load = Load::start(
        p.url("/"),
        "app.example.test",
        8,
        Duration::ZERO,
        // "Hello from a1 (tag a): ..." -> "Hello from a1"
        |body| body.split(" (").next().unwrap().to_string(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = Instant::now();
    wait_for_health(&p, "a1", "unhealthy", WITHIN).await;
    let ejected_after = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = load.finish().await;
    assert!(
        got.seen.keys().all(|k| k.starts_with("Hello from a")),
        "{:?}",
        got.seen
    );
    let (ok, errors) = (got.ok(), got.errors);
    survivor.kill().unwrap();
    let _ = survivor.wait();
    println!(
        "kill under load: {} requests, {} errors, ejected {:?} after the kill",
        ok + errors.len() as u64,
        errors.len(),
        ejected_after
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(ok > 500, "load too light: {ok}");
}
