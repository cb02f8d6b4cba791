//! TLS to backends: an `https` backend whose certificate chains to a test CA is verified and
//! spoken to in HTTP/2; one whose certificate names another host is refused (unhealthy, with
//! the reason in the log; live requests go to another backend, or get 502); WebSocket echo
//! through `http1` and `https` backends.

mod support;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use support::pki::{Leaf, TestCa};
use support::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;

// === origins ===

/// An HTTPS origin (ALPN h2 then http/1.1) answering JSON with its name and the HTTP version
/// the request came in.
fn https_origin(name: &'static str, leaf: &Leaf) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let config = leaf.server_config(&[b"h2", b"http/1.1"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: hyper::Request<_>| async move {
                        let body = serde_json::json!({
                            "backend": name,
                            "version": format!("{:?}", req.version()),
                            "path": req.uri().path(),
                        });
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(body.to_string()),
                        )))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// A WebSocket echo origin, plain or (with `leaf`) over TLS offering h2 and http/1.1.
fn ws_origin(leaf: Option<&Leaf>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let config = leaf.map(|l| l.server_config(&[b"h2", b"http/1.1"]));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((tcp, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                match config {
                    Some(c) => {
                        if let Ok(tls) = tokio_rustls::TlsAcceptor::from(c).accept(tcp).await {
                            echo(tls).await;
                        }
                    }
                    None => echo(tcp).await,
                }
            });
        }
    });
    (addr, task)
}

/// Echoes every message back; a connection that is not a WebSocket upgrade (a probe's) is
/// dropped.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

fn https_backend(
    id: &str,
    addr: SocketAddr,
    tag: &str,
    ca: &std::path::Path,
    extra: &str,
) -> String {
    format!(
        "[[backends]]\nid = \"{id}\"\naddress = \"{addr}\"\ntags = [\"{tag}\"]\nprotocol = \"https\"\n\
         tls_server_name = \"origin.test\"\ntls_ca_file = \"{}\"\n{extra}\n",
        ca.display()
    )
}

// === tests ===

#[tokio::test(flavor = "multi_thread")]
async fn an_https_backend_with_a_test_ca_is_verified_and_spoken_to_in_h2() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path());
    let (addr, _origin) = https_origin("tls-origin", &ca.leaf(&["origin.test"]));
    let p = Proxy::start(&format!(
        "{}{}{}",
        fast_health_toml(2, 1),
        https_backend("secure", addr, "a", &ca_path, ""),
        vhost_toml("app.test", "a"),
    ))
    .await;
    let b = wait_for_health(&p, "secure", "healthy", Duration::from_secs(20)).await;
    assert_eq!(b["protocol"], "https");
    assert_eq!(b["tls_server_name"], "origin.test");
    assert_eq!(b["tls_verify"], true);
    assert_eq!(b["health_check"], "http");
    let (status, body) = p.get("app.test", "/through").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["backend"], "tls-origin");
    assert_eq!(v["version"], "HTTP/2.0", "ALPN h2 first: {v}");
    assert_eq!(v["path"], "/through");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_another_host_is_refused() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path());
    // Signed by the trusted CA, but for another name than the one the proxy checks.
    let (wrong, _w) = https_origin("wrong-name", &ca.leaf(&["other.test"]));
    let (right, _r) = https_origin("right-name", &ca.leaf(&["origin.test"]));
    // A certificate from a CA the backend does not trust.
    let stranger = TestCa::new();
    let (untrusted, _u) = https_origin("untrusted", &stranger.leaf(&["origin.test"]));

    // Without probes: live traffic alone decides.
    let extra = format!(
        "[health_check]\nenabled = false\n\n{}{}{}{}{}",
        https_backend("wrong", wrong, "a", &ca_path, ""),
        https_backend("right", right, "a", &ca_path, ""),
        https_backend("alone", untrusted, "b", &ca_path, ""),
        vhost_toml("pool.test", "a"),
        vhost_toml("alone.test", "b"),
    );
    let p = Proxy::start(&extra).await;
    for i in 0..6 {
        let (status, body) = p.get("pool.test", &format!("/{i}")).await;
        assert_eq!(
            status, 200,
            "a verification failure is a connect failure: {body}"
        );
        assert!(body.contains("right-name"), "{body}");
    }
    let (status, body) = p.get("alone.test", "/").await;
    assert_eq!(status, 502, "never served unverified: {body}");
    drop(p);

    // With probes: both refused backends turn unhealthy, the reason in the log.
    let p = Proxy::start(
        &format!("{}{extra}", fast_health_toml(1, 1))
            .replace("[health_check]\nenabled = false\n\n", ""),
    )
    .await;
    wait_for_health(&p, "wrong", "unhealthy", Duration::from_secs(20)).await;
    wait_for_health(&p, "alone", "unhealthy", Duration::from_secs(20)).await;
    wait_for_health(&p, "right", "healthy", Duration::from_secs(20)).await;
    let log = p.log();
    let line = |id: &str| {
        log.lines()
            .find(|l| l.contains("backend unhealthy") && l.contains(id))
            .unwrap_or_else(|| panic!("no unhealthy line for {id}:\n{log}"))
            .to_string()
    };
    let wrong_line = line("wrong");
    assert!(wrong_line.contains("WARN"), "{wrong_line}");
    assert!(wrong_line.contains("not valid for name"), "{wrong_line}");
    let alone_line = line("alone");
    // (Both test CAs carry one name, so rustls finds the trusted one and its signature fails.)
    assert!(
        alone_line.contains("invalid peer certificate"),
        "{alone_line}"
    );
    assert_eq!(p.get("alone.test", "/").await.0, 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_http1_and_https_backends() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path());
    let (plain, _p) = ws_origin(None);
    let (secure, _s) = ws_origin(Some(&ca.leaf(&["origin.test"])));
    let p = Proxy::start(&format!(
        "{}[[backends]]\nid = \"ws-plain\"\naddress = \"{plain}\"\ntags = [\"a\"]\nhealth_check = \"tcp\"\n\n{}{}{}",
        fast_health_toml(2, 1),
        https_backend("ws-tls", secure, "b", &ca_path, "health_check = \"tcp\""),
        vhost_toml("ws.test", "a"),
        vhost_toml("wss.test", "b"),
    ))
    .await;
    wait_for_health(&p, "ws-plain", "healthy", Duration::from_secs(20)).await;
    wait_for_health(&p, "ws-tls", "healthy", Duration::from_secs(20)).await;
    for host in ["ws.test", "wss.test"] {
        let tcp = tokio::net::TcpStream::connect(p.http).await.unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{host}/echo"), tcp)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}\n{}", p.log()));
        assert_eq!(resp.status(), 101);
        for i in 0..3 {
            ws.send(Message::text(format!("hello {i} via {host}")))
                .await
                .unwrap();
            let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(
                back.into_text().unwrap().as_str(),
                format!("hello {i} via {host}")
            );
        }
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_data().as_ref(), &[0u8, 1, 2, 255]);
        ws.close(None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_fields_through_the_api_and_a_restart() {
    use reqwest::Method;
    use serde_json::json;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path()).display().to_string();
    let (addr, _origin) = https_origin("tls-origin", &ca.leaf(&["origin.test"]));
    let web = Origin::start("web").await;
    let mut p = Proxy::start(&format!(
        "{}{}",
        backend_toml("web", web.addr, &["a"]),
        vhost_toml("app.test", "a")
    ))
    .await;

    // The OpenAPI document names the fields and their values.
    let (s, doc) = call(Method::GET, &p.api("/openapi.json"), None).await;
    assert_eq!(s, 200);
    let schemas = &doc["components"]["schemas"];
    for key in [
        "protocol",
        "tls_server_name",
        "tls_verify",
        "tls_ca_file",
        "health_check",
    ] {
        for schema in ["NewBackend", "BackendPatch", "TransportSettings"] {
            assert!(
                schemas[schema]["properties"][key].is_object(),
                "{schema}.{key}: {}",
                schemas[schema]
            );
        }
    }
    assert_eq!(
        schemas["BackendProtocol"]["enum"],
        json!(["http1", "h2c", "https"])
    );
    assert_eq!(
        schemas["HealthCheck"]["enum"],
        json!(["http", "grpc", "tcp"])
    );

    // GET shows the defaults of a backend that set none.
    let (s, b) = call(Method::GET, &p.api("/backends/web"), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["protocol"], "http1");
    assert_eq!(b["tls_server_name"], "127.0.0.1");
    assert_eq!(b["tls_verify"], true);
    assert_eq!(b["tls_ca_file"], serde_json::Value::Null);
    assert_eq!(b["health_check"], "http");

    let refused = [
        json!({"id": "x", "address": addr.to_string(), "tags": ["b"], "protocol": "h3"}),
        json!({"id": "x", "address": addr.to_string(), "tags": ["b"], "protocol": "https",
               "tls_ca_file": "/nonexistent.pem"}),
        json!({"id": "x", "address": addr.to_string(), "tags": ["b"], "health_check": "grpc"}),
    ];
    for body in refused {
        let (s, e) = call(Method::POST, &p.api("/backends"), Some(body.clone())).await;
        assert_eq!(s, 400, "{body} -> {e}");
        assert!(e["error"].is_string(), "{e}");
    }

    let (s, b) = call(
        Method::POST,
        &p.api("/backends"),
        Some(
            json!({"id": "tls", "address": addr.to_string(), "tags": ["b"],
                    "protocol": "https", "tls_server_name": "origin.test",
                    "tls_ca_file": ca_path}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["protocol"], "https");
    assert_eq!(b["tls_server_name"], "origin.test");
    let (s, d) = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(json!({"enabled_backends_tag": "b"})),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    let (status, body) = p.get("app.test", "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("tls-origin") && body.contains("HTTP/2.0"),
        "{body}"
    );

    // A PUT that names another host to check refuses the origin: live requests now fail.
    let (s, b) = call(
        Method::PUT,
        &p.api("/backends/tls"),
        Some(json!({"tls_server_name": "elsewhere.test"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(p.get("app.test", "/").await.0, 502);
    // Going back to the default name (the address's host, an IP the certificate lacks) too.
    let (s, b) = call(
        Method::PUT,
        &p.api("/backends/tls"),
        Some(json!({"tls_server_name": null})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["tls_server_name"], "127.0.0.1");
    let (s, b) = call(
        Method::PUT,
        &p.api("/backends/tls"),
        Some(json!({"tls_server_name": "origin.test"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");

    // The state file keeps the settings: after a restart the backend is reached the same way.
    p.stop();
    p.spawn(&[]).await;
    let (s, b) = call(Method::GET, &p.api("/backends/tls"), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["tls_ca_file"], ca_path.as_str());
    let (status, body) = p.get("app.test", "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tls-origin"), "{body}");
}

/// The settings of a backend as GET shows them, without its health: what a PUT takes.
fn settings(shown: &serde_json::Value) -> serde_json::Value {
    let mut body = shown.clone();
    let keys = [
        "address",
        "tags",
        "weight",
        "max_connections",
        "protocol",
        "tls_server_name",
        "tls_verify",
        "tls_ca_file",
        "health_check",
    ];
    body.as_object_mut()
        .unwrap()
        .retain(|k, _| keys.contains(&k.as_str()));
    body
}

/// The `WARN` line that says backend `id` at `address` is spoken to unverified, if logged.
fn unverified_warning(log: &str, id: &str, address: &str) -> bool {
    log.lines().any(|l| {
        l.contains(" WARN ")
            && l.contains("TLS verification is off")
            && l.contains(&format!("backend={id}"))
            && l.contains(&format!("address={address}"))
    })
}

/// Waits up to 5 s for the warning (the log is written by the proxy as it goes, not before the
/// API answers).
async fn logs_unverified_warning(p: &Proxy, id: &str, address: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if unverified_warning(&p.log(), id, address) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_fields_are_kept_on_any_protocol_and_a_get_put_round_trip_changes_nothing() {
    use reqwest::Method;
    use serde_json::json;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path());
    let (addr, _origin) = https_origin("tls-origin", &ca.leaf(&["origin.test"]));
    let web = Origin::start("web").await;
    let p = Proxy::start(&format!(
        "{}{}{}",
        backend_toml("web", web.addr, &["a"]),
        https_backend("lax", addr, "b", &ca_path, "tls_verify = false"),
        vhost_toml("app.test", "a"),
    ))
    .await;
    let ca_path = ca_path.display().to_string();
    // A backend loaded from the config with tls_verify = false is named in a warning.
    let addr_text = addr.to_string();
    assert!(
        logs_unverified_warning(&p, "lax", &addr_text).await,
        "{}",
        p.log()
    );
    assert!(!unverified_warning(&p.log(), "web", &web.addr.to_string()));

    // GET then PUT of the same body, on an http1 and an https backend: 200, nothing changes.
    for id in ["web", "lax"] {
        let path = format!("/backends/{id}");
        let (s, before) = call(Method::GET, &p.api(&path), None).await;
        assert_eq!(s, 200, "{before}");
        let body = settings(&before);
        let (s, put) = call(Method::PUT, &p.api(&path), Some(body.clone())).await;
        assert_eq!(s, 200, "{id}: {body} -> {put}");
        let (_, after) = call(Method::GET, &p.api(&path), None).await;
        assert_eq!(settings(&after), body, "{id}");
    }
    let (status, body) = p.get("app.test", "/").await;
    assert_eq!(status, 200, "{body}");

    // An https backend with explicit TLS settings goes to http1 and back: they are kept.
    let (s, b) = call(
        Method::PUT,
        &p.api("/backends/lax"),
        Some(json!({"protocol": "http1"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["protocol"], "http1");
    assert_eq!(b["tls_server_name"], "origin.test");
    assert_eq!(b["tls_verify"], false);
    assert_eq!(b["tls_ca_file"], ca_path.as_str());
    let (s, b) = call(
        Method::PUT,
        &p.api("/backends/lax"),
        Some(json!({"protocol": "https"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["tls_server_name"], "origin.test");

    // TLS settings on an h2c backend are accepted and shown; a server name in capitals is
    // stored lower-cased; the unverified one added through the API is named in a warning.
    let (s, b) = call(
        Method::POST,
        &p.api("/backends"),
        Some(json!({"id": "plain2", "address": addr_text, "tags": ["c"],
                    "protocol": "h2c", "tls_server_name": "Origin.TEST",
                    "tls_verify": false, "tls_ca_file": ca_path})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["tls_server_name"], "origin.test");
    assert_eq!(b["tls_verify"], false);
    assert!(!unverified_warning(&p.log(), "plain2", &addr_text));
    let (s, b) = call(
        Method::PUT,
        &p.api("/backends/plain2"),
        Some(json!({"protocol": "https", "tls_server_name": "ORIGIN.test"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["tls_server_name"], "origin.test");
    assert!(
        logs_unverified_warning(&p, "plain2", &addr_text).await,
        "{}",
        p.log()
    );
    // gRPC probes still need HTTP/2.
    let (s, e) = call(
        Method::PUT,
        &p.api("/backends/plain2"),
        Some(json!({"protocol": "http1", "health_check": "grpc"})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
}
