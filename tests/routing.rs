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

/// An origin that answers every request with the exact bytes of the request head it got.
async fn echo_head_origin() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    head.len()
                )
                .into_bytes();
                out.extend_from_slice(&head);
                let _ = s.write_all(&out).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_goes_upstream_byte_for_byte_plus_forwarding_headers() {
    let origin = echo_head_origin().await;
    let p = Proxy::start(&format!(
        "{}{}",
        backend_toml("a1", origin, &["a"]),
        vhost_toml("app.example.test", "a")
    ))
    .await;
    let mut s = std::net::TcpStream::connect(p.http).unwrap();
    // A target with raw UTF-8 and escapes to keep as they are, a repeated header and a client
    // request id.
    s.write_all(
        b"GET /caf\xc3\xa9/a%2Fb/%7e?q=a+b&q=2 HTTP/1.1\r\nHost: app.example.test\r\nX-Multi: one\r\n\
          X-Multi: two\r\nX-Request-Id: client-id-7\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body_at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let upstream = &out[body_at..];
    assert!(
        upstream.starts_with(b"GET /caf\xc3\xa9/a%2Fb/%7e?q=a+b&q=2 HTTP/1.1\r\n"),
        "{text}"
    );
    let head = String::from_utf8_lossy(upstream).to_lowercase();
    let lines: Vec<&str> = head.lines().collect();
    let values = |name: &str| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(values("host"), ["app.example.test"]);
    assert_eq!(values("x-multi"), ["one", "two"]);
    assert_eq!(values("x-request-id"), ["client-id-7"]);
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values("x-forwarded-proto"), ["http"]);
    assert_eq!(values("x-forwarded-host"), ["app.example.test"]);
}
