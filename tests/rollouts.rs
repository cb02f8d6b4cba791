//! Rollouts end to end with real origins: weighted splits, sticky clients, automatic rollback of
//! a failing canary (and none of a healthy one), history and undo across a restart.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const HOST: &str = "app.example.test";

/// An origin whose answers (not its `/health`) can be switched to 500.
struct Canary {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
}

impl Canary {
    async fn start(name: &'static str) -> Canary {
        let failing = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let f = Arc::clone(&failing);
        let app = axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .fallback(move || {
                let fail = f.load(Ordering::Relaxed);
                async move {
                    if fail {
                        (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "broken".to_string(),
                        )
                    } else {
                        (
                            axum::http::StatusCode::OK,
                            json!({ "backend": name }).to_string(),
                        )
                    }
                }
            });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Canary { addr, failing }
    }
}

async fn two_tags(a: SocketAddr, b: SocketAddr) -> Proxy {
    Proxy::start(&format!(
        "{}{}{}",
        backend_toml("a1", a, &["a"]),
        backend_toml("b1", b, &["b"]),
        vhost_toml(HOST, "a"),
    ))
    .await
}

async fn split(p: &Proxy, body: Value) -> (u16, Value) {
    call(
        Method::POST,
        &p.api(&format!("/domains/{HOST}/split")),
        Some(body),
    )
    .await
}

/// Which backend served each of `n` requests, in order.
async fn served(p: &Proxy, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(p.backend_for(HOST).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_sends_each_tag_its_share_interleaved() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let p = two_tags(a.addr, b.addr).await;
    let (s, d) = split(&p, json!({"weights": {"a": 90, "b": 10}})).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["weights"], json!({"a": 90, "b": 10}));
    assert_eq!(d["enabled_backends_tag"], "a", "the baseline");
    let seen = served(&p, 2000).await;
    let b_share = seen.iter().filter(|s| *s == "b1").count() as f64 / seen.len() as f64;
    eprintln!("90/10 split: b got {:.2} % of 2000", b_share * 100.0);
    assert!(
        (b_share - 0.10).abs() < 0.02,
        "b got {:.1} %",
        b_share * 100.0
    );
    let longest_b_run = seen
        .split(|s| s == "a1")
        .map(|run| run.len())
        .max()
        .unwrap();
    assert!(
        longest_b_run <= 2,
        "interleaved, not in bursts ({longest_b_run} in a row)"
    );

    // A switch ends the split.
    let (s, d) = call(
        Method::POST,
        &p.api(&format!("/domains/{HOST}/switch")),
        Some(json!({"new_tag": "b"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(d["weights"], Value::Null);
    assert!(served(&p, 20).await.iter().all(|s| s == "b1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_splits_are_refused_and_change_nothing() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let p = two_tags(a.addr, b.addr).await;
    for body in [
        json!({"weights": {"a": 0, "b": 0}}),
        json!({"weights": {}}),
        json!({"weights": {"a": 50, "zz": 50}}),
        json!({"weights": {"a": -1, "b": 10}}),
        json!({"weights": {"a": 1.5, "b": 10}}),
        json!({"weights": {"a": 50, "b": 50}, "rollback": {"max_error_rate": 2.0}}),
        json!({"weights": {"a": 50, "b": 50}, "rollback": {"max_error_rate": 0.1, "window_secs": 0}}),
        json!({"weights": {"a": 50, "b": 50}, "surprise": true}),
        json!({"weights": "half"}),
    ] {
        let (s, e) = split(&p, body.clone()).await;
        assert_eq!(s, 400, "{body} -> {e}");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    let (_, d) = call(Method::GET, &p.api(&format!("/domains/{HOST}")), None).await;
    assert_eq!(d["weights"], Value::Null);
    assert_eq!(d["enabled_backends_tag"], "a");
    let (s, e) = call(Method::POST, &p.api(&format!("/domains/{HOST}/undo")), None).await;
    assert_eq!(s, 409, "nothing to undo: {e}");
    let (s, _) = call(
        Method::POST,
        &p.api("/domains/nope.test/split"),
        Some(json!({"weights": {"a": 1}})),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sticky_client_stays_on_its_tag() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let p = two_tags(a.addr, b.addr).await;
    let (s, _) = split(&p, json!({"weights": {"a": 50, "b": 50}, "sticky": true})).await;
    assert_eq!(s, 200);
    let http = client();
    let first = http
        .get(p.url("/"))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    let cookie = first
        .headers()
        .get("set-cookie")
        .expect("the first answer sets the cookie")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("Path=/") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let tag = pair.strip_prefix("pingora_vhost_tag=").unwrap().to_string();
    let want = format!("{tag}1");
    for _ in 0..100 {
        let r = http
            .get(p.url("/"))
            .header("host", HOST)
            .header("cookie", format!("other=1; {pair}"))
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("set-cookie").is_none(),
            "kept, not replaced"
        );
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["backend"], want.as_str());
    }
    // A cookie naming a tag outside the split is ignored and replaced.
    let r = http
        .get(p.url("/"))
        .header("host", HOST)
        .header("cookie", "pingora_vhost_tag=zz")
        .send()
        .await
        .unwrap();
    let replaced = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(!replaced.contains("=zz"), "{replaced}");
}

async fn wait_for_rollback(p: &Proxy, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let (_, d) = call(Method::GET, &p.api(&format!("/domains/{HOST}")), None).await;
        if !d["last_rollback"].is_null() {
            return Some(d);
        }
        let _ = p.get(HOST, "/").await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_canary_is_rolled_back_and_a_healthy_one_is_not() {
    let a = Origin::start("a1").await;
    let canary = Canary::start("b1").await;
    let mut p = two_tags(a.addr, canary.addr).await;
    let rule = json!({"max_error_rate": 0.2, "min_requests": 20, "window_secs": 10});
    let (s, _) = split(&p, json!({"weights": {"a": 50, "b": 50}, "rollback": rule})).await;
    assert_eq!(s, 200);
    // Healthy: plenty of traffic, no rollback.
    let mut canary_ok = 0u64;
    for _ in 0..200 {
        let (_, body) = p.get(HOST, "/").await;
        canary_ok += u64::from(body.contains("b1"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, d) = call(Method::GET, &p.api(&format!("/domains/{HOST}")), None).await;
    assert_eq!(
        d["last_rollback"],
        Value::Null,
        "a healthy canary stays: {d}"
    );
    assert!(!d["weights"].is_null());

    canary.failing.store(true, Ordering::Relaxed);
    let failing_since = Instant::now();
    // The canary's failures as this client sees them: the rule is passed once they are over a
    // fifth of the canary's requests in the window (all of them are within its 10 s).
    let (mut failed, mut passed_at) = (0u64, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    let d = loop {
        assert!(Instant::now() < deadline, "no rollback within 10 s");
        let (_, d) = call(Method::GET, &p.api(&format!("/domains/{HOST}")), None).await;
        if !d["last_rollback"].is_null() {
            break d;
        }
        let (status, _) = p.get(HOST, "/").await;
        failed += u64::from(status == 500);
        if passed_at.is_none() && failed as f64 > 0.2 * (failed + canary_ok) as f64 {
            passed_at = Some(Instant::now());
        }
    };
    let rolled = Instant::now();
    let passed_at = passed_at.expect("the client saw the threshold passed");
    eprintln!(
        "rollback {:?} after the canary started failing, {:?} after the threshold was passed \
         ({failed} failures beside {canary_ok} answers)",
        rolled - failing_since,
        rolled - passed_at
    );
    assert_eq!(d["weights"], Value::Null);
    assert_eq!(d["enabled_backends_tag"], "a");
    assert_eq!(d["last_rollback"]["from_tag"], "b");
    assert_eq!(d["last_rollback"]["to_tag"], "a");
    assert!(
        d["last_rollback"]["reason"]
            .as_str()
            .unwrap()
            .contains("tag 'b'"),
        "{d}"
    );
    assert!(served(&p, 20).await.iter().all(|s| s == "a1"));
    let metrics = scrape(&p.api("/metrics")).await;
    assert!(
        metrics.contains(&format!(
            "pingora_vhost_rollbacks_total{{domain=\"{HOST}\"}} 1"
        )),
        "{metrics}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p.log().contains("canary rolled back") {
        assert!(Instant::now() < deadline, "a warn event: {}", p.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // History shows split then rollback, newest first; both survive a restart, and undo
    // brings the split back.
    let (_, h) = call(
        Method::GET,
        &p.api(&format!("/domains/{HOST}/history")),
        None,
    )
    .await;
    let kinds: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rollback", "split"]);
    assert_eq!(h[0]["by"], "rollback");
    assert_eq!(h[0]["from"]["weights"], json!({"a": 50, "b": 50}));
    assert_eq!(h[0]["to"], json!({"tag": "a", "weights": null}));
    p.stop();
    p.spawn(&[]).await;
    let (_, d) = call(Method::GET, &p.api(&format!("/domains/{HOST}")), None).await;
    assert_eq!(d["last_rollback"]["from_tag"], "b", "persisted");
    let (_, h2) = call(
        Method::GET,
        &p.api(&format!("/domains/{HOST}/history")),
        None,
    )
    .await;
    assert_eq!(h, h2, "history persisted");
    canary.failing.store(false, Ordering::Relaxed);
    let (s, d) = call(Method::POST, &p.api(&format!("/domains/{HOST}/undo")), None).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["weights"], json!({"a": 50, "b": 50}));
    let (_, h) = call(
        Method::GET,
        &p.api(&format!("/domains/{HOST}/history")),
        None,
    )
    .await;
    assert_eq!(h[0]["kind"], "undo");
    assert_eq!(h[0]["by"], "api");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_whose_backends_are_all_down_is_rolled_back_before_min_requests() {
    // The split passes a tag with no healthy backend over, so its error share never grows:
    // without a rule for it the split would stay, the canary silently at 0 %.
    let a = Origin::start("a1").await;
    let b = FlakyOrigin::start("b1").await;
    let p = Proxy::start(&format!(
        "{}{}{}{}",
        fast_health_toml(1, 1),
        backend_toml("a1", a.addr, &["a"]),
        backend_toml("b1", b.origin.addr, &["b"]),
        vhost_toml(HOST, "a"),
    ))
    .await;
    wait_for_health(&p, "b1", "healthy", Duration::from_secs(10)).await;
    let rule = json!({"max_error_rate": 0.5, "min_requests": 1000, "window_secs": 60});
    let (s, d) = split(&p, json!({"weights": {"a": 80, "b": 20}, "rollback": rule})).await;
    assert_eq!(s, 200, "{d}");
    b.set_healthy(false);
    let d = wait_for_rollback(&p, Duration::from_secs(10))
        .await
        .expect("rolled back once tag b has no healthy backend");
    assert_eq!(d["weights"], Value::Null);
    assert_eq!(d["enabled_backends_tag"], "a");
    assert_eq!(d["last_rollback"]["from_tag"], "b");
    let reason = d["last_rollback"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("tag 'b'") && reason.contains("healthy"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn splits_change_under_load_without_a_failed_request() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let p = two_tags(a.addr, b.addr).await;
    let load = Load::start(p.url("/"), HOST, 4, Duration::ZERO, |body| {
        let v: Value = serde_json::from_str(body).unwrap();
        v["backend"].as_str().unwrap().to_string()
    });
    for i in 0..30u32 {
        let (s, e) = split(&p, json!({"weights": {"a": 100 - i * 3, "b": i * 3 + 1}})).await;
        assert_eq!(s, 200, "{e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = load.finish().await;
    assert!(
        got.errors.is_empty(),
        "{:?}",
        &got.errors[..got.errors.len().min(5)]
    );
    assert!(got.seen.len() == 2 && got.ok() > 100, "{:?}", got.seen);
}
