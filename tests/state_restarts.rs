//! A state the API can produce is a state the proxy starts with: forced deletes, host names
//! that stop resolving, and leftovers of interrupted writes never keep the proxy down.

mod support;

use reqwest::Method;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_delete_of_a_tags_last_backend_restarts_and_answers_503() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let mut p = Proxy::start(&format!(
        "{}{}{}",
        backend_toml("a1", a.addr, &["a"]),
        backend_toml("b1", b.addr, &["b"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let (s, _) = call(Method::DELETE, &p.api("/backends/a1?force=true"), None).await;
    assert_eq!(s, 204);
    assert_eq!(p.get("app.example.test", "/").await.0, 503);
    p.stop();
    p.spawn(&[]).await;
    let (status, body) = p.get("app.example.test", "/").await;
    assert_eq!(status, 503, "{body}");
    let (s, d) = call(Method::GET, &p.api("/domains/app.example.test"), None).await;
    assert_eq!((s, d["enabled_backends_tag"].as_str()), (200, Some("a")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_host_that_does_not_resolve_starts_unhealthy() {
    let a = Origin::start("a1").await;
    let mut p = Proxy::start(&format!(
        "{}{}",
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let (s, _) = call(
        Method::POST,
        &p.api("/backends"),
        Some(serde_json::json!({"id": "gone", "address": "localhost:9", "tags": ["b"]})),
    )
    .await;
    assert_eq!(s, 201);
    p.stop();
    // The host name stops resolving while the proxy is down. Names under `.invalid` never
    // resolve (RFC 6761), but a resolver that answers every name breaks that promise: then
    // this machine cannot make a name that does not resolve, and the test says so.
    if let Ok(mut addrs) = std::net::ToSocketAddrs::to_socket_addrs("no-such-host.invalid:9") {
        if let Some(addr) = addrs.next() {
            eprintln!("skipped: this machine resolves no-such-host.invalid to {addr}");
            return;
        }
    }
    let before = read(&p.state_path());
    assert!(before.contains("\"localhost:9\""), "{before}");
    let state = before.replace("localhost:9", "no-such-host.invalid:9");
    std::fs::write(p.state_path(), &state).unwrap();
    p.spawn(&[]).await;
    assert_eq!(p.backend_for("app.example.test").await, "a1");
    let (s, b) = call(Method::GET, &p.api("/backends/gone"), None).await;
    assert_eq!(s, 200);
    assert_eq!(b["health"]["status"], "unhealthy", "{b}");
    assert!(
        p.log().contains("does not resolve"),
        "the start says so; backend {b}; state {state}; log {}",
        p.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn temp_files_of_interrupted_writes_are_removed_at_start() {
    let a = Origin::start("a1").await;
    let mut p = Proxy::start(&format!(
        "{}{}",
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let (s, _) = call(
        Method::POST,
        &p.api("/domains"),
        Some(serde_json::json!({"domain": "new.example.test", "enabled_backends_tag": "a"})),
    )
    .await;
    assert_eq!(s, 201);
    p.stop();
    let dir = p.state_path().parent().unwrap().to_path_buf();
    let name = p
        .state_path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let leftover = dir.join(format!(".{name}.3999999.tmp"));
    std::fs::write(&leftover, "{\"version\": 1, \"dom").unwrap();
    p.spawn(&[]).await;
    assert!(!leftover.exists(), "removed at start");
}
