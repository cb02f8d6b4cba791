//! HTTPS over real TLS handshakes: self-signed, file and ACME (Pebble) certificates chosen by
//! SNI, wildcard certificates, 421 on a Host/SNI mismatch, the 301 to HTTPS, and certificates
//! for domains added at run time.

#[path = "../actors/tests/support/pebble.rs"]
mod pebble;
mod support;

use reqwest::Method;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts any server certificate: the tests look at what was served instead.
#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What one HTTPS request saw.
struct TlsAnswer {
    status: u16,
    body: String,
    serial: String,
    names: Vec<String>,
    alpn: Option<Vec<u8>>,
}

/// Connects with `sni`, sends `GET path` with `host`, returns the answer and the served leaf.
async fn tls_get(addr: SocketAddr, sni: &str, host: &str, path: &str) -> Result<TlsAnswer, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (serial, names, alpn) = {
        let (_, conn) = tls.get_ref();
        let leaf = conn.peer_certificates().ok_or("no certificate")?[0].clone();
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf).map_err(|e| e.to_string())?;
        let serial = cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .map(|n| n.to_string())
                    .collect()
            })
            .unwrap_or_default();
        (serial, names, conn.alpn_protocol().map(<[u8]>::to_vec))
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no status: {text}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok(TlsAnswer {
        status,
        body,
        serial,
        names,
        alpn,
    })
}

/// A free loopback address.
fn free_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// A certificate and key for `names`, written as PEM files in `dir`; returns their paths.
fn cert_files(dir: &std::path::Path, stem: &str, names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

async fn certificates(p: &Proxy) -> Vec<serde_json::Value> {
    let (s, v) = call(Method::GET, &p.api("/certificates"), None).await;
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}

fn cert_of<'a>(list: &'a [serde_json::Value], domain: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|c| c["domain"] == domain)
        .unwrap_or_else(|| panic!("no certificate for {domain}: {list:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn self_signed_and_file_certificates_by_sni() {
    let a = Origin::start("a1").await;
    let files = tempfile::tempdir().unwrap();
    let (sc, sk) = cert_files(files.path(), "static", &["static.test"]);
    let (wc, wk) = cert_files(files.path(), "wild", &["*.wild.test"]);
    let https = free_addr();
    let p = Proxy::start_with(
        &format!("listen_addr = \"{https}\""),
        &format!(
            "[[certificates]]\ndomain = \"static.test\"\ncert_path = \"{sc}\"\nkey_path = \"{sk}\"\n\n\
             [[certificates]]\ndomain = \"*.wild.test\"\ncert_path = \"{wc}\"\nkey_path = \"{wk}\"\n\n{}{}{}{}",
            backend_toml("a1", a.addr, &["a"]),
            vhost_toml("app.test", "a"),
            vhost_toml("static.test", "a"),
            vhost_toml("x.wild.test", "a"),
        ),
    )
    .await;
    let list = certificates(&p).await;
    let app = cert_of(&list, "app.test");
    assert_eq!(app["source"], "self-signed", "{app}");
    assert!(humantime::parse_rfc3339(app["not_after"].as_str().unwrap()).is_ok());
    assert!(app["last_error"].is_null());
    assert_eq!(cert_of(&list, "static.test")["source"], "manual");
    assert_eq!(cert_of(&list, "*.wild.test")["source"], "manual");

    // Each name gets its own certificate; the answer comes from the backend over HTTPS.
    let r = tls_get(https, "app.test", "app.test", "/secure")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(r#""x-forwarded-proto":"https""#),
        "{}",
        r.body
    );
    assert_eq!(r.serial, app["serial"].as_str().unwrap());
    assert!(
        r.names.iter().any(|n| n.contains("app.test")),
        "{:?}",
        r.names
    );
    let s = tls_get(https, "static.test", "static.test", "/")
        .await
        .unwrap();
    assert_eq!(
        s.serial,
        cert_of(&list, "static.test")["serial"].as_str().unwrap()
    );
    assert_ne!(s.serial, r.serial);
    let w = tls_get(https, "x.wild.test", "x.wild.test", "/")
        .await
        .unwrap();
    assert_eq!(w.status, 200);
    assert_eq!(
        w.serial,
        cert_of(&list, "*.wild.test")["serial"].as_str().unwrap()
    );
    assert!(
        w.names.iter().any(|n| n.contains("*.wild.test")),
        "{:?}",
        w.names
    );

    // Host and SNI disagree: 421. A name with no certificate: no handshake.
    let m = tls_get(https, "app.test", "static.test", "/")
        .await
        .unwrap();
    assert_eq!(m.status, 421, "{}", m.body);
    // Also when the Host is no configured domain: the SNI named another one.
    for (sni, host) in [("app.test", "unknown.test"), ("x.wild.test", "y.wild.test")] {
        let m = tls_get(https, sni, host, "/").await.unwrap();
        assert_eq!(m.status, 421, "{sni} / {host}: {}", m.body);
    }
    // An unknown Host that matches the SNI (under a wildcard certificate): 404.
    let u = tls_get(https, "y.wild.test", "y.wild.test", "/")
        .await
        .unwrap();
    assert_eq!(u.status, 404, "{}", u.body);
    let u = tls_get(https, "x.wild.test", "X.Wild.Test:443", "/")
        .await
        .unwrap();
    assert_eq!(u.status, 200, "{}", u.body);
    assert!(tls_get(https, "nocert.test", "nocert.test", "/")
        .await
        .is_err());

    // ALPN offers h2 and http/1.1.
    assert_eq!(r.alpn.as_deref(), Some(&b"http/1.1"[..]));

    // A domain added through the API gets a certificate at once.
    let (st, _) = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "late.test", "enabled_backends_tag": "a"})),
    )
    .await;
    assert_eq!(st, 201);
    let late = tls_get(https, "late.test", "late.test", "/").await.unwrap();
    assert_eq!(late.status, 200);
    assert_eq!(
        cert_of(&certificates(&p).await, "late.test")["source"],
        "self-signed"
    );
    let (st, _) = call(Method::DELETE, &p.api("/domains/late.test"), None).await;
    assert_eq!(st, 204);
    assert!(certificates(&p)
        .await
        .iter()
        .all(|c| c["domain"] != "late.test"));

    // Every certificate has its expiry gauge.
    let text = scrape(&p.api("/metrics")).await;
    for d in ["app.test", "static.test", "*.wild.test"] {
        assert!(
            text.contains(&format!(
                "pingora_vhost_certificate_not_after_seconds{{domain=\"{d}\"}}"
            )),
            "{d}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_to_https_redirects_with_port_path_and_query() {
    let a = Origin::start("a1").await;
    let https = free_addr();
    let p = Proxy::start_with(
        &format!("listen_addr = \"{https}\""),
        &format!(
            "{}[[virtual_hosts]]\ndomain = \"secure.test\"\nenabled_backends_tag = \"a\"\nhttp_to_https = true\n\n{}",
            backend_toml("a1", a.addr, &["a"]),
            vhost_toml("plain.test", "a"),
        ),
    )
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(p.url("/a/b?x=1&y=2"))
        .header("host", "Secure.Test:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://secure.test:{}/a/b?x=1&y=2", https.port()).as_str()
    );
    assert_eq!(
        p.get("plain.test", "/").await.0,
        200,
        "other domains are not redirected"
    );
    let s = tls_get(https, "secure.test", "secure.test", "/a")
        .await
        .unwrap();
    assert_eq!(s.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_only_listener_serves_without_a_plain_one() {
    let a = Origin::start("a1").await;
    let https = free_addr();
    let extra = format!(
        "{}{}",
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.test", "a")
    );
    let p = Proxy::start_config(https, &|admin| {
        format!(
            "[proxy]\nlisten_addr = \"{https}\"\nmanagement_api_addr = \"{admin}\"\n\n\
             [state]\npath = \"state/state.json\"\n\n{extra}"
        )
    })
    .await;
    let r = tls_get(https, "app.test", "app.test", "/only-tls")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(r#""backend":"a1""#), "{}", r.body);
    assert_eq!(
        cert_of(&certificates(&p).await, "app.test")["source"],
        "self-signed"
    );
    assert!(!p.log().contains("not supported"), "{}", p.log());
}

#[test]
fn unreadable_or_mismatched_certificate_files_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, _) = cert_files(dir.path(), "one", &["one.test"]);
    let (_, k2) = cert_files(dir.path(), "two", &["two.test"]);
    let config = config_text_with(
        free_addr(),
        free_addr(),
        &format!("listen_addr = \"{}\"", free_addr()),
        &format!(
            "[[certificates]]\ndomain = \"one.test\"\ncert_path = \"{c1}\"\nkey_path = \"{k2}\"\n\n\
             [[certificates]]\ndomain = \"two.test\"\ncert_path = \"/nonexistent.crt\"\nkey_path = \"{k2}\"\n\n{}{}",
            backend_toml("a1", free_addr(), &["a"]),
            vhost_toml("one.test", "a"),
        ),
    );
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config", "c.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains("/nonexistent.crt"), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
}

// === ACME against Pebble, through the proxy ===

#[tokio::test(flavor = "multi_thread")]
async fn acme_certificates_from_pebble() {
    let (pebble_bin, challtestsrv) =
        pebble::pebble_binaries().expect("pebble is installed by scripts/pebble.sh");
    let http = free_addr();
    let https = free_addr();
    let pebble = pebble::start_pebble(&pebble_bin, &challtestsrv, http.port(), 3600);
    let ca = pebble.dir.path().join("directory-ca.pem");
    std::fs::write(&ca, &pebble.ca_pem).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let a = Origin::start("a1").await;
    let extra = format!(
        "[lets_encrypt]\nemail = \"ops@example.test\"\ncache_dir = \"{}\"\ndirectory_url = \"{}\"\nca_root = \"{}\"\n\n{}{}",
        cache.path().display(),
        pebble.directory_url,
        ca.display(),
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("acme.test", "a"),
    );
    let started = Instant::now();
    let mut p = Proxy::start_on(http, &format!("listen_addr = \"{https}\""), &extra).await;
    let first = wait_for_cert(&p, "acme.test", "valid").await;
    let issued_after = started.elapsed();
    assert_eq!(first["source"], "acme");
    let served = tls_get(https, "acme.test", "acme.test", "/").await.unwrap();
    assert_eq!(served.status, 200);
    assert_eq!(served.serial, first["serial"].as_str().unwrap());
    println!("acme: start to a valid Pebble certificate in {issued_after:?}");

    // A domain added at run time gets its own certificate.
    let (st, _) = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "late.acme.test", "enabled_backends_tag": "a"})),
    )
    .await;
    assert_eq!(st, 201);
    let late = wait_for_cert(&p, "late.acme.test", "valid").await;
    assert_eq!(
        tls_get(https, "late.acme.test", "late.acme.test", "/")
            .await
            .unwrap()
            .serial,
        late["serial"].as_str().unwrap()
    );
    let text = scrape(&p.api("/metrics")).await;
    assert!(
        text.contains(r#"pingora_vhost_acme_orders_total{result="success"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"pingora_vhost_certificate_not_after_seconds{domain="acme.test"}"#),
        "{text}"
    );

    // After a restart the cached certificate is served again: same serial, no new order.
    p.stop();
    p.spawn(&[]).await;
    let again = wait_for_cert(&p, "acme.test", "valid").await;
    assert_eq!(again["serial"], first["serial"]);
    assert_eq!(
        tls_get(https, "acme.test", "acme.test", "/")
            .await
            .unwrap()
            .serial,
        first["serial"].as_str().unwrap()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = scrape(&p.api("/metrics")).await;
    assert!(
        text.contains(r#"pingora_vhost_acme_orders_total{result="success"} 0"#),
        "{text}"
    );
    drop(pebble);
}

async fn wait_for_cert(p: &Proxy, domain: &str, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(c) = certificates(p)
            .await
            .into_iter()
            .find(|c| c["domain"] == domain)
        {
            if c["status"] == status {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "{domain} not {status}: {c}\n{}",
                p.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no certificate for {domain}:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
