//! Load-balancing policies end to end, over real sockets: weighted round robin's shares and
//! interleaving, least connections avoiding a slow origin, both consistent hashes keeping keys
//! and moving about a fifth of them when one of five backends goes, `max_connections` under
//! concurrent load, and in-flight counts back at zero after aborted and retried requests.

mod support;

use axum::extract::Request;
use axum::Json;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

// === origins and config ===

/// An origin that answers after `delay`, counting the requests it is serving at once (its
/// `/health` answers at once and is not counted).
struct SlowOrigin {
    addr: SocketAddr,
    /// The most requests it served at once.
    most: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowOrigin {
    async fn start(name: &str, delay: Duration) -> SlowOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, c, m) = (name.to_string(), Arc::clone(&now), Arc::clone(&most));
        let app = axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .fallback(move |_req: Request| {
                let (n, c, m) = (n.clone(), Arc::clone(&c), Arc::clone(&m));
                async move {
                    let serving = c.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(serving, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    c.fetch_sub(1, Ordering::SeqCst);
                    Json(serde_json::json!({ "backend": n }))
                }
            });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        SlowOrigin { addr, most, task }
    }
}

impl Drop for SlowOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TOML for a backend with a weight and a connection cap.
fn lb_backend(id: &str, addr: SocketAddr, tag: &str, weight: u32, max_connections: u32) -> String {
    format!(
        "[[backends]]\nid = \"{id}\"\naddress = \"{addr}\"\ntags = [\"{tag}\"]\n\
         weight = {weight}\nmax_connections = {max_connections}\n\n"
    )
}

/// TOML for a virtual host with a policy (and the header `header_hash` keys on).
fn lb_vhost(domain: &str, tag: &str, policy: &str) -> String {
    format!(
        "[[virtual_hosts]]\ndomain = \"{domain}\"\nenabled_backends_tag = \"{tag}\"\n\
         lb_policy = \"{policy}\"\nlb_hash_header = \"X-User-Id\"\n\n"
    )
}

fn backend_in(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["backend"].as_str().unwrap().to_string()
}

/// One GET through `http`; the backend that answered.
async fn served_by(p: &Proxy, http: &reqwest::Client, host: &str, user: Option<&str>) -> String {
    let mut req = http.get(p.url("/")).header("host", host);
    if let Some(u) = user {
        req = req.header("x-user-id", u);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    backend_in(&r.text().await.unwrap())
}

/// `in_flight` of every backend, from `GET /api/v1/backends`.
async fn in_flight(p: &Proxy) -> BTreeMap<String, u64> {
    let (status, list) = call(Method::GET, &p.api("/backends"), None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let n = b["in_flight"].as_u64().unwrap_or_else(|| panic!("{b}"));
            (b["id"].as_str().unwrap().to_string(), n)
        })
        .collect()
}

/// Waits until every backend's `in_flight` is 0.
async fn wait_all_idle(p: &Proxy, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let counts = in_flight(p).await;
        if counts.values().all(|&n| n == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "still in flight: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn longest_run(seq: &[bool], of: bool) -> usize {
    let (mut best, mut run) = (0, 0);
    for &x in seq {
        run = if x == of { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

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

// === consistent hashing ===

/// Which backend each of `users` (by header) and each of `clients` (by source address) lands on.
async fn owners(
    p: &Proxy,
    users: &[String],
    clients: &[(IpAddr, reqwest::Client)],
) -> (Vec<String>, Vec<String>) {
    let http = client();
    let mut by_user = Vec::new();
    for u in users {
        by_user.push(served_by(p, &http, "hh.test", Some(u)).await);
    }
    let mut by_ip = Vec::new();
    for (_, c) in clients {
        by_ip.push(served_by(p, c, "ip.test", None).await);
    }
    (by_user, by_ip)
}

fn moved(before: &[String], after: &[String]) -> f64 {
    let n = before.iter().zip(after).filter(|(b, a)| b != a).count();
    n as f64 / before.len() as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn hashing_keeps_keys_and_moves_about_a_fifth_when_one_of_five_goes() {
    let origins: Vec<Origin> = start_origins((1..=5).map(|i| format!("h{i}"))).await;
    let mut toml: String = origins
        .iter()
        .map(|o| lb_backend(&o.name, o.addr, "a", 1, 0))
        .collect();
    toml += &lb_vhost("hh.test", "a", "header_hash");
    toml += &lb_vhost("ip.test", "a", "ip_hash");
    let p = Proxy::start(&toml).await;

    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    // ip_hash keys on the TCP peer: each client connects from its own loopback address.
    let clients: Vec<(IpAddr, reqwest::Client)> = (0..1000u16)
        .map(|i| {
            let ip = IpAddr::from([127, 0, 1 + (i / 250) as u8, (i % 250) as u8]);
            let c = reqwest::Client::builder()
                .local_address(ip)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            (ip, c)
        })
        .collect();

    let first = owners(&p, &users, &clients).await;
    let again = owners(&p, &users, &clients).await;
    assert_eq!(first, again, "a key stays on its backend");
    for by in [&first.0, &first.1] {
        let spread: std::collections::BTreeSet<_> = by.iter().collect();
        assert_eq!(spread.len(), 5, "keys spread over all five");
    }

    let (s, _) = call(Method::DELETE, &p.api("/backends/h3"), None).await;
    assert_eq!(s, 204);
    let without = owners(&p, &users, &clients).await;
    let (user_moved, ip_moved) = (moved(&first.0, &without.0), moved(&first.1, &without.1));
    println!(
        "one of 5 backends removed: {:.1} % of 1000 header keys moved, {:.1} % of 1000 client addresses",
        user_moved * 100.0,
        ip_moved * 100.0
    );
    for (share, by_before, by_after) in [
        (user_moved, &first.0, &without.0),
        (ip_moved, &first.1, &without.1),
    ] {
        assert!((0.10..=0.30).contains(&share), "moved {share}");
        assert!(by_after.iter().all(|b| b != "h3"));
        let others_moved = by_before
            .iter()
            .zip(by_after)
            .filter(|(b, a)| b != a && *b != "h3")
            .count();
        println!(
            "  of {} keys: {} were on h3, {others_moved} of the others moved",
            by_before.len(),
            by_before.iter().filter(|b| *b == "h3").count()
        );
        assert!(
            others_moved * 50 <= by_before.len(),
            "{others_moved} keys of backends still there moved"
        );
    }

    // Back with the same id: every key returns to where it was.
    let h3 = &origins[2];
    let (s, body) = call(
        Method::POST,
        &p.api("/backends"),
        Some(serde_json::json!({"id": "h3", "address": h3.addr.to_string(), "tags": ["a"]})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(owners(&p, &users, &clients).await, first);
}

/// Starts one origin per name, in order.
async fn start_origins(names: impl Iterator<Item = String>) -> Vec<Origin> {
    let mut out = Vec::new();
    for n in names {
        out.push(Origin::start(&n).await);
    }
    out
}

// === max_connections ===

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_is_never_exceeded_under_concurrent_load() {
    let (c1, c2) = (
        SlowOrigin::start("c1", Duration::from_millis(100)).await,
        SlowOrigin::start("c2", Duration::from_millis(100)).await,
    );
    let p = Proxy::start(&format!(
        "{}{}{}",
        lb_backend("c1", c1.addr, "a", 1, 2),
        lb_backend("c2", c2.addr, "a", 1, 3),
        lb_vhost("cap.test", "a", "round_robin"),
    ))
    .await;
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (url, http) = (p.url("/"), client());
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0u32, 0u32);
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    let r = http.get(&url).header("host", "cap.test").send().await;
                    match r {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) if r.status() == 503 => {
                            let body = r.text().await.unwrap();
                            assert!(body.contains("no backend available"), "{body}");
                            refused += 1;
                        }
                        Ok(r) => panic!("status {}", r.status()),
                        Err(e) => panic!("{e}"),
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for c in clients {
        let (o, r) = c.await.unwrap();
        ok += o;
        refused += r;
    }
    let (m1, m2) = (
        c1.most.load(Ordering::SeqCst),
        c2.most.load(Ordering::SeqCst),
    );
    println!("12 clients, caps 2 and 3: {ok} answered, {refused} refused (503), most at once: c1 {m1}, c2 {m2}");
    assert!(m1 <= 2 && m2 <= 3, "cap exceeded: c1 {m1}, c2 {m2}");
    assert!(
        m1 == 2 && m2 == 3,
        "the load reached the caps: c1 {m1}, c2 {m2}"
    );
    assert!(ok > 0 && refused > 0, "{ok} answered, {refused} refused");
    wait_all_idle(&p, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_capped_at_one_serves_back_to_back_requests_on_new_connections() {
    let a = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "{}{}",
        lb_backend("a1", a.addr, "a", 1, 1),
        lb_vhost("one.test", "a", "least_conn"),
    ))
    .await;
    // Each answer's slot is free before its last byte reaches the client, so the next request
    // (on another connection, perhaps another worker) never finds the backend still full.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..200 {
        let r = fresh
            .get(p.url("/"))
            .header("host", "one.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        r.text().await.unwrap();
        assert_eq!(in_flight(&p).await["a1"], 0, "after request {i}");
    }
}

// === in-flight counts ===

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_returns_to_zero_after_aborted_and_retried_requests() {
    let slow = SlowOrigin::start("slow", Duration::from_millis(1500)).await;
    let good = Origin::start("good").await;
    let dead = RefusedAddr::new();
    let p = Proxy::start(&format!(
        "{}{}{}{}{}",
        lb_backend("slow", slow.addr, "s", 1, 0),
        lb_backend("dead", dead.addr, "r", 1, 0),
        lb_backend("good", good.addr, "r", 1, 0),
        lb_vhost("slow.test", "s", "least_conn"),
        lb_vhost("retry.test", "r", "round_robin"),
    ))
    .await;

    // Clients that give up after 300 ms, while the origin still works on their requests.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let aborted: Vec<_> = (0..3)
        .map(|_| {
            let req = impatient.get(p.url("/")).header("host", "slow.test");
            tokio::spawn(async move { req.send().await.map(|r| r.status()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(in_flight(&p).await["slow"], 3, "counted while in flight");
    for a in aborted {
        assert!(a.await.unwrap().is_err(), "the client gave up");
    }
    // Given back when the proxy sees the client go, not when the origin finishes.
    wait_all_idle(&p, Duration::from_secs(5)).await;

    // Connect failures retried on the other backend.
    let http = client();
    for _ in 0..10 {
        assert_eq!(served_by(&p, &http, "retry.test", None).await, "good");
    }
    let metrics = client()
        .get(p.api("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let retries = metrics
        .lines()
        .find(|l| l.starts_with("pingora_vhost_upstream_retries_total{domain=\"retry.test\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(retries >= 1.0, "no retry happened:\n{metrics}");
    wait_all_idle(&p, Duration::from_secs(5)).await;
}

// === validation and API fields ===

#[tokio::test(flavor = "multi_thread")]
async fn the_api_shows_the_defaults_and_refuses_invalid_settings() {
    let a = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "{}{}",
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.test", "a"),
    ))
    .await;
    let (_, d) = call(Method::GET, &p.api("/domains/app.test"), None).await;
    assert_eq!(
        (&d["lb_policy"], &d["lb_hash_header"]),
        (&"round_robin".into(), &Value::Null)
    );
    let (_, b) = call(Method::GET, &p.api("/backends/a1"), None).await;
    assert_eq!(
        (&b["weight"], &b["max_connections"], &b["in_flight"]),
        (&1.into(), &0.into(), &0.into())
    );

    let new = |extra: Value| {
        let mut d = serde_json::json!({"domain": "new.test", "enabled_backends_tag": "a"});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        d
    };
    for (body, why) in [
        (
            serde_json::json!({"lb_policy": "header_hash"}),
            "lb_hash_header",
        ),
        (serde_json::json!({"lb_policy": "random"}), "random"),
        (
            serde_json::json!({"lb_policy": "header_hash", "lb_hash_header": "X User"}),
            "not a valid header name",
        ),
    ] {
        let (s, e) = call(Method::POST, &p.api("/domains"), Some(new(body.clone()))).await;
        assert_eq!(s, 400, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(why), "{body}: {e}");
    }
    let (s, e) = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(serde_json::json!({"lb_policy": "header_hash"})),
    )
    .await;
    assert_eq!(s, 400, "{e}");

    // Every policy is accepted, and GET shows what was set.
    let (s, d) = call(
        Method::POST,
        &p.api("/domains"),
        Some(new(
            serde_json::json!({"lb_policy": "header_hash", "lb_hash_header": "X-User-Id"}),
        )),
    )
    .await;
    assert_eq!(s, 201, "{d}");
    assert_eq!(
        (&d["lb_policy"], &d["lb_hash_header"]),
        (&"header_hash".into(), &"X-User-Id".into())
    );
    for policy in ["least_conn", "ip_hash", "round_robin"] {
        let (s, d) = call(
            Method::PUT,
            &p.api("/domains/new.test"),
            Some(serde_json::json!({"lb_policy": policy})),
        )
        .await;
        assert_eq!((s, &d["lb_policy"]), (200, &policy.into()), "{d}");
        assert_eq!(p.get("new.test", "/").await.0, 200);
    }
    let (s, b) = call(
        Method::PUT,
        &p.api("/backends/a1"),
        Some(serde_json::json!({"weight": 1000, "max_connections": 5})),
    )
    .await;
    assert_eq!(
        (s, &b["weight"], &b["max_connections"]),
        (200, &1000.into(), &5.into()),
        "{b}"
    );
    for bad in [
        serde_json::json!({"weight": 1001}),
        serde_json::json!({"max_connections": -1}),
    ] {
        let (s, e) = call(Method::PUT, &p.api("/backends/a1"), Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {e}");
    }
}

#[test]
fn check_refuses_invalid_policy_settings() {
    let dir = tempfile::tempdir().unwrap();
    let vhost = |domain: &str, extra: &str| {
        format!(
            "[[virtual_hosts]]\ndomain = \"{domain}\"\nenabled_backends_tag = \"a\"\n{extra}\n\n"
        )
    };
    let text = config_text(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        &format!(
            "{}{}{}{}",
            backend_toml("a1", "127.0.0.1:3001".parse().unwrap(), &["a"]),
            vhost("no-header.test", "lb_policy = \"header_hash\""),
            vhost(
                "bad-header.test",
                "lb_policy = \"header_hash\"\nlb_hash_header = \"X User\""
            ),
            vhost("ok.test", "lb_policy = \"ip_hash\""),
        ),
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs lb_hash_header"), "{err}");
    assert!(err.contains("'X User' is not a valid header name"), "{err}");
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        2,
        "{err}"
    );
}
