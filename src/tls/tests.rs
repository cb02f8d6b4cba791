//! Real TLS handshakes over loopback against the Pingora acceptor built by [`tls_settings`].

use super::*;
use pingora::tls::{CertificateDer, ClientConfig, RootCertStore, ServerName, TlsConnector};
use tokio::net::{TcpListener, TcpStream};
use vhost_actors::cert::{CertMaterial, CertSource};

struct Served {
    alpn: Option<Vec<u8>>,
    leaf: CertificateDer<'static>,
}

/// Accepts one connection with the Pingora acceptor and connects to it with SNI `sni`.
async fn handshake(
    resolver: SniResolver,
    trusted: &[&CertMaterial],
    sni: &str,
    alpn: &[&[u8]],
) -> Result<Served, String> {
    let acceptor = tls_settings(resolver).unwrap().build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // The client's result is what the tests look at; the server side only has to run.
        let _ = acceptor.acceptor.accept(tcp).await;
    });
    let mut roots = RootCertStore::empty();
    for m in trusted {
        roots.add(m.leaf_der().clone()).unwrap();
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let result = connector.connect(name, tcp).await;
    server.abort();
    let stream = result.map_err(|e| e.to_string())?;
    let conn = stream.get_ref().1;
    Ok(Served {
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        leaf: conn.peer_certificates().unwrap()[0].clone().into_owned(),
    })
}

fn store_with(certs: &[(&str, &CertMaterial)]) -> CertStore {
    let store = CertStore::new();
    for (domain, m) in certs {
        store.install(domain, m, CertSource::SelfSigned);
    }
    store
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_certificate_with_h2() {
    let exact = CertMaterial::self_signed("a.example.com").unwrap();
    let wild = CertMaterial::self_signed("*.example.com").unwrap();
    let store = store_with(&[("a.example.com", &exact), ("*.example.com", &wild)]);
    let trusted = [&exact, &wild];

    let served = handshake(
        SniResolver::new(store.clone()),
        &trusted,
        "a.example.com",
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(&served.leaf, exact.leaf_der());
    assert_eq!(served.alpn.as_deref(), Some(&b"h2"[..]));

    let served = handshake(
        SniResolver::new(store.clone()),
        &trusted,
        "x.example.com",
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(&served.leaf, wild.leaf_der());
    assert_eq!(served.alpn.as_deref(), Some(&b"http/1.1"[..]));

    let err = handshake(SniResolver::new(store), &trusted, "other.org", &[b"h2"])
        .await
        .err()
        .expect("no certificate for other.org");
    assert!(!err.is_empty());
}

#[tokio::test]
async fn a_replaced_certificate_is_served_at_the_next_handshake() {
    let first = CertMaterial::self_signed("a.example.com").unwrap();
    let second = CertMaterial::self_signed("a.example.com").unwrap();
    let store = store_with(&[("a.example.com", &first)]);
    let resolver = SniResolver::new(store.clone());
    let trusted = [&first, &second];
    let served = handshake(resolver.clone(), &trusted, "a.example.com", &[b"h2"])
        .await
        .unwrap();
    assert_eq!(&served.leaf, first.leaf_der());
    store.install("a.example.com", &second, CertSource::Acme);
    let served = handshake(resolver, &trusted, "a.example.com", &[b"h2"])
        .await
        .unwrap();
    assert_eq!(&served.leaf, second.leaf_der());
}

#[test]
fn clients_without_sni_get_the_default_domain() {
    let m = CertMaterial::self_signed("a.example.com").unwrap();
    let store = store_with(&[("a.example.com", &m)]);
    assert!(SniResolver::new(store.clone()).lookup(None).is_none());
    let with_default = SniResolver::new(store).with_default("a.example.com");
    assert!(Arc::ptr_eq(
        &with_default.lookup(None).unwrap(),
        m.certified_key()
    ));
}

#[tokio::test]
async fn the_client_sni_is_kept_on_the_connection() {
    let m = CertMaterial::self_signed("a.example.com").unwrap();
    let store = store_with(&[("a.example.com", &m)]);
    let acceptor = tls_settings(SniResolver::new(store)).unwrap().build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut roots = RootCertStore::empty();
        roots.add(m.leaf_der().clone()).unwrap();
        let config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("A.example.com".to_owned()).unwrap();
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        // Keep the connection open until the server has looked at it.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        drop(stream);
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let tls = acceptor
        .tls_handshake(pingora::protocols::l4::stream::Stream::from(tcp))
        .await
        .unwrap();
    let digest = tls.ssl_digest().expect("TLS digest");
    assert_eq!(client_sni(&digest), Some("a.example.com"));
    client.await.unwrap();
}
