//! TLS clients that send no SNI (connecting by IP address, as `curl https://127.0.0.1/` or
//! h2load do) complete the handshake: they get the `default_sni` domain's certificate, else a
//! self-signed fallback, and their requests are routed by `Host`, without a 421 and without an
//! ERROR in the log.

mod support;

use rustls::pki_types::{CertificateDer, ServerName};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use support::pki::TestCa;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connects by IP address (so rustls sends no SNI), trusting `ca`; sends `GET /` with `host`.
/// Returns the status line and body, and the names in the served certificate.
async fn get_by_ip(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    verify_as: Option<&str>,
    host: &str,
) -> (String, Vec<String>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(store))
        .build()
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly {
            inner: verifier,
            name: verify_as.map(|n| ServerName::try_from(n.to_string()).unwrap()),
        }))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ip: IpAddr = addr.ip();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(ip.into()), tcp)
        .await
        .expect("the handshake completes without SNI");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let names = cert
        .subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| n.to_string())
                .collect()
        })
        .unwrap_or_default();
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    (String::from_utf8_lossy(&raw).into_owned(), names)
}

/// Checks the chain (and, when given, the name `name` instead of the IP address connected to):
/// the fallback certificate is self-signed and checked by the test against itself.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: Option<ServerName<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let name = self.name.as_ref().unwrap_or(server_name);
        self.inner
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The proxy with HTTPS for `app.test` (certificate from `ca`) and `other.test` (self-signed),
/// with extra `[proxy]` keys.
async fn proxy(ca: &TestCa, dir: &std::path::Path, keys: &str) -> (Proxy, SocketAddr, Origin) {
    let (cert, key) = ca.leaf(&["app.test"]).write(dir, "app");
    let origin = Origin::start("web").await;
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let p = Proxy::start_with(
        &format!("listen_addr = \"{https}\"\n{keys}"),
        &format!(
            "[[certificates]]\ndomain = \"app.test\"\ncert_path = \"{cert}\"\nkey_path = \"{key}\"\n\n{}{}{}",
            backend_toml("web", origin.addr, &["a"]),
            vhost_toml("app.test", "a"),
            vhost_toml("other.test", "a"),
        ),
    )
    .await;
    (p, https, origin)
}

#[tokio::test(flavor = "multi_thread")]
async fn without_sni_the_default_sni_certificate_is_served_and_host_routes() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (p, https, _origin) = proxy(&ca, dir.path(), "default_sni = \"app.test\"").await;
    for host in ["app.test", "other.test"] {
        let (answer, names) = get_by_ip(https, &[ca.der()], Some("app.test"), host).await;
        assert_eq!(names, ["DNSName(app.test)"]);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "no 421 without SNI: {answer}"
        );
        assert!(answer.contains(r#""backend":"web""#), "{answer}");
        assert!(answer.contains(&format!(r#""host":"{host}""#)), "{answer}");
    }
    assert!(!p.log().contains("ERROR"), "{}", p.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_sni_and_default_a_self_signed_fallback_is_served() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (p, https, _origin) = proxy(&ca, dir.path(), "").await;
    // The fallback is self-signed: read it first, then check the chain against itself.
    let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
    let served = {
        let mut config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Capture))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::IpAddress(https.ip().into()), tcp)
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    let fallback = "no-sni.pingora-vhost.invalid";
    let (answer, names) = get_by_ip(https, &[served], Some(fallback), "app.test").await;
    assert_eq!(names, [format!("DNSName({fallback})")]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""backend":"web""#), "{answer}");
    assert!(!p.log().contains("ERROR"), "{}", p.log());
}

/// Accepts any certificate (only to read the self-signed fallback).
#[derive(Debug, Default)]
struct Capture;

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
