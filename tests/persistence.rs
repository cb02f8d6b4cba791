//! State across restarts: API changes persist, the state file wins over the config,
//! `--reset-state` reseeds, a corrupt state file stops the start; SIGTERM drains.

mod support;

use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use support::*;

async fn two_tag_proxy(a: &Origin, b: &Origin) -> Proxy {
    Proxy::start(&format!(
        "{}{}{}",
        backend_toml("a1", a.addr, &["a"]),
        backend_toml("b1", b.addr, &["b"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn api_changes_survive_a_restart_and_win_over_the_config() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let mut p = two_tag_proxy(&a, &b).await;
    assert!(
        !p.state_path().exists(),
        "nothing written before the first change"
    );

    let (s, _) = call(
        Method::POST,
        &p.api("/domains/app.example.test/switch"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "new.example.test", "enabled_backends_tag": "a"})),
    )
    .await;
    assert_eq!(s, 201);
    let state: serde_json::Value = serde_json::from_str(&read(&p.state_path())).unwrap();
    assert_eq!(state["domains"].as_array().unwrap().len(), 2);

    p.stop();
    p.spawn(&[]).await;
    assert_eq!(p.backend_for("app.example.test").await, "b1");
    assert_eq!(p.backend_for("new.example.test").await, "a1");
    let (_, d) = call(Method::GET, &p.api("/domains/app.example.test"), None).await;
    assert_eq!(d["enabled_backends_tag"], "b");
    assert_eq!(d["previous_tag"], "a");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !p.log().contains("IGNORED") {
        assert!(
            std::time::Instant::now() < deadline,
            "the override is logged loudly"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // --reset-state goes back to the config.
    p.stop();
    p.spawn(&["--reset-state"]).await;
    assert_eq!(p.backend_for("app.example.test").await, "a1");
    let (s, _) = call(Method::GET, &p.api("/domains/new.example.test"), None).await;
    assert_eq!(s, 404);
    assert!(!p.state_path().exists(), "the state file is discarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_state_stops_the_start_and_is_kept() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let mut p = two_tag_proxy(&a, &b).await;
    p.stop();
    std::fs::create_dir_all(p.state_path().parent().unwrap()).unwrap();
    std::fs::write(p.state_path(), "{\"version\": 1, \"domains\": [").unwrap();
    let out = p.command(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log = p.log();
    assert!(log.contains("corrupt"), "{log}");
    assert!(
        log.contains("--reset-state"),
        "the message says the way out: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(read(&p.state_path()), "{\"version\": 1, \"domains\": [");

    // A state file holding a record the API could never have written is refused the same way
    // (a tag without backends is not such a record: a forced delete leaves one).
    let bad = json!({"version": 1, "domains": [], "backends": [{"id": "b1", "address": "nope", "tags": ["a"]}]});
    std::fs::write(p.state_path(), bad.to_string()).unwrap();
    let out = p.command(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        p.log().contains("address 'nope' must be host:port"),
        "{}",
        p.log()
    );
}

/// An origin that answers after `delay`.
async fn slow_origin(delay: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        "slow answer"
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests() {
    let slow = slow_origin(Duration::from_millis(1500)).await;
    let mut p = Proxy::start(&format!(
        "{}{}",
        backend_toml("slow", slow, &["a"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let url = p.url("/");
    let in_flight = tokio::spawn(async move {
        let r = client()
            .get(url)
            .header("host", "app.example.test")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = tokio::task::spawn_blocking(move || {
        let took = p.signal_and_wait("TERM");
        (took, p)
    })
    .await
    .unwrap();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "slow answer"));
    // Exits once drained, well before the 5 s grace period (a ceiling, not a benchmark).
    assert!(took.0 < Duration::from_secs(5), "took {:?}", took.0);
    assert!(
        took.1.log().contains("all in-flight requests finished"),
        "flushed before exit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_exits_at_once() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let mut p = two_tag_proxy(&a, &b).await;
    let took = p.signal_and_wait("INT");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// A SIGINT that lands while Pingora's services are still starting used to leave an accept loop
/// spinning on a shut-down runtime, and the process never exited. The window is narrow, so the
/// test opens it many times.
#[tokio::test(flavor = "multi_thread")]
async fn sigint_during_start_up_still_exits() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    for _ in 0..15 {
        let mut p = two_tag_proxy(&a, &b).await;
        let took = p.signal_and_wait("INT");
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_that_cannot_be_persisted_is_not_applied() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let p = two_tag_proxy(&a, &b).await;
    // A directory where the state file should go makes every write fail.
    std::fs::create_dir_all(p.state_path()).unwrap();
    let (s, e) = call(
        Method::POST,
        &p.api("/domains/app.example.test/switch"),
        None,
    )
    .await;
    assert_eq!(s, 500, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("could not persist"),
        "{e}"
    );
    let (_, d) = call(Method::GET, &p.api("/domains/app.example.test"), None).await;
    assert_eq!(d["enabled_backends_tag"], "a", "nothing changed");
    assert_eq!(p.backend_for("app.example.test").await, "a1");
    let (s, _) = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "new.example.test", "enabled_backends_tag": "a"})),
    )
    .await;
    assert_eq!(s, 500);
    assert_eq!(p.get("new.example.test", "/").await.0, 404);
    let (s, _) = call(Method::GET, &p.api("/domains/new.example.test"), None).await;
    assert_eq!(s, 404);
}
