//! The request path over real sockets: Host routing, unknown hosts, forwarding headers, round
//! robin, connect-failure retries and the 503 when a pool is empty.

mod support;

use std::io::{Read, Write};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_and_refuses_unknown_hosts() {
    let a = Origin::start("a1").await;
    let other = Origin::start("other").await;
    let p = Proxy::start(&format!(
        "{}{}{}{}{}",
        backend_toml("a1", a.addr, &["a"]),
        backend_toml("o1", other.addr, &["o"]),
        vhost_toml("app.example.test", "a"),
        vhost_toml("*.wild.test", "o"),
        vhost_toml("other.example.test", "o"),
    ))
    .await;

    assert_eq!(p.backend_for("app.example.test").await, "a1");
    // Port stripped, case folded, trailing dot removed.
    assert_eq!(p.backend_for("APP.Example.Test.:8080").await, "a1");
    assert_eq!(p.backend_for("other.example.test").await, "other");
    assert_eq!(p.backend_for("x.wild.test").await, "other");

    for host in ["unknown.test", "a.b.wild.test", "wild.test", ""] {
        let (status, body) = p.get(host, "/").await;
        assert_eq!(status, 404, "host {host:?}: {body}");
        assert!(body.contains("unknown host"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_is_never_an_open_proxy() {
    let a = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "{}{}",
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.example.test", "a")
    ))
    .await;
    let raw = |target: &str, host: &str| {
        let mut s = std::net::TcpStream::connect(p.http).unwrap();
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    // What `curl -x proxy http://other/` sends: an unknown host, 404.
    let out = raw("http://evil.test/steal", "evil.test");
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    // Host and target disagree: refused, never proxied.
    let out = raw("http://evil.test/steal", "app.example.test");
    assert!(out.starts_with("HTTP/1.1 4"), "{out}");
    assert!(!out.contains("backend"), "{out}");
    let out = raw("http://app.example.test/ok?x=1", "app.example.test");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // The backend sees origin form.
    assert!(out.contains(r#""uri":"/ok?x=1""#), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn adds_forwarding_headers_and_keeps_host() {
    let a = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "{}{}",
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.example.test", "a")
    ))
    .await;
    let r = client()
        .get(p.url("/path?q=1"))
        .header("host", "App.Example.Test:8000")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let h = &v["headers"];
    assert_eq!(h["host"], "App.Example.Test:8000");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "App.Example.Test:8000");
    assert_eq!(v["uri"], "/path?q=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_over_the_tag_pool() {
    let (a1, a2, a3) = (
        Origin::start("a1").await,
        Origin::start("a2").await,
        Origin::start("a3").await,
    );
    let b = Origin::start("b1").await;
    let p = Proxy::start(&format!(
        "{}{}{}{}{}",
        backend_toml("a1", a1.addr, &["a"]),
        backend_toml("a2", a2.addr, &["a", "x"]),
        backend_toml("a3", a3.addr, &["a"]),
        backend_toml("b1", b.addr, &["b"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        *seen
            .entry(p.backend_for("app.example.test").await)
            .or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.values().all(|&n| n == 10),
        "even spread expected: {seen:?}"
    );
    assert!(!seen.contains_key("b1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failure_retries_another_backend() {
    let a1 = Origin::start("a1").await;
    let dead = RefusedAddr::new();
    let p = Proxy::start(&format!(
        "{}{}{}",
        backend_toml("dead", dead.addr, &["a"]),
        backend_toml("a1", a1.addr, &["a"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(p.backend_for("app.example.test").await, "a1");
    }
    // With every backend refusing, the client gets a 502.
    a1.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, body) = p.get("app.example.test", "/").await;
    assert_eq!(status, 502, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_pool_answers_503() {
    let a1 = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "{}{}",
        backend_toml("a1", a1.addr, &["a"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let (s, _) = call(
        reqwest::Method::DELETE,
        &p.api("/backends/a1?force=true"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (status, body) = p.get("app.example.test", "/").await;
    assert_eq!(status, 503);
    assert!(body.contains("no backend available"), "{body}");
}
