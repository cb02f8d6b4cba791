//! Templates per protocol, and the WebSocket exception.

use super::*;
use std::time::Duration;
use vhost_actors::model::TransportSettings;

fn limits() -> Limits {
    Limits {
        max_request_body_bytes: 1,
        max_admin_body_bytes: 1,
        upstream_connect_timeout: Duration::from_millis(1500),
        upstream_read_timeout: Duration::from_secs(7),
        client_idle_timeout: Duration::from_secs(9),
        client_header_timeout: Duration::from_secs(9),
        client_send_timeout: Duration::from_secs(9),
        max_request_header_bytes: 1,
    }
}

fn backend(
    settings: TransportSettings,
    ca: Option<&vhost_actors::upstream::Roots>,
) -> UpstreamBackend {
    let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
    let transport = Transport::build(&settings, "127.0.0.1:8443", ca).unwrap();
    let peer = PeerBuilder::new(limits())
        .prepare(addr, &transport)
        .unwrap();
    UpstreamBackend::new("b", addr).with_transport(Arc::new(transport), peer)
}

/// The peer for one request.
async fn peer_for(b: &UpstreamBackend, upgrade: bool) -> Box<HttpPeer> {
    for_request(b, upgrade, &limits()).await.0
}

#[tokio::test]
async fn each_protocol_gets_its_alpn_and_streams() {
    let plain = peer_for(&backend(TransportSettings::default(), None), false).await;
    assert!(!plain.is_tls());
    assert_eq!(plain.options.alpn, ALPN::H1);
    assert_eq!(plain.options.read_timeout, Some(Duration::from_secs(7)));

    let h2c = TransportSettings {
        protocol: BackendProtocol::H2c,
        ..TransportSettings::default()
    };
    let h2c = peer_for(&backend(h2c, None), false).await;
    assert!(!h2c.is_tls());
    assert_eq!(h2c.options.alpn, ALPN::H2);
    assert_eq!(h2c.options.max_h2_streams, H2_STREAMS_PER_CONNECTION);

    let https = TransportSettings {
        protocol: BackendProtocol::Https,
        tls_server_name: Some("api.example.net".into()),
        ..TransportSettings::default()
    };
    let b = backend(https, None);
    let peer = peer_for(&b, false).await;
    assert!(peer.is_tls());
    assert_eq!(peer.sni, "api.example.net");
    assert_eq!(peer.options.alpn, ALPN::H2H1);
    assert!(peer.options.verify_cert && peer.options.verify_hostname);
    assert!(
        peer.options.ca.is_none(),
        "system roots: the connector's own"
    );
    let ws = peer_for(&b, true).await;
    assert_eq!(ws.options.alpn, ALPN::H1, "an upgrade needs HTTP/1.1");
}

#[tokio::test]
async fn an_https_backend_with_a_ca_file_trusts_it_beside_the_system_roots() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    let roots: vhost_actors::upstream::Roots = vec![ca.der().clone()].into();
    let settings = TransportSettings {
        protocol: BackendProtocol::Https,
        tls_verify: false,
        tls_ca_file: Some("ca.pem".into()),
        ..TransportSettings::default()
    };
    let peer = peer_for(&backend(settings, Some(&roots)), false).await;
    let trusted = peer.options.ca.as_ref().unwrap();
    assert_eq!(
        trusted.len(),
        vhost_actors::upstream::system_roots().len() + 1
    );
    assert_eq!(peer.sni, "127.0.0.1", "the host of the address by default");
    assert!(!peer.options.verify_cert && !peer.options.verify_hostname);
}
