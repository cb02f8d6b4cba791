//! Backend protocol settings through the registry: defaults shown, TLS settings checked, the CA
//! file read before the command and kept by updates, and the proxy's template built per backend.

use super::super::*;
use crate::command::*;
use crate::model::{BackendProtocol, HealthCheck};
use crate::resolve::Resolutions;
use crate::upstream::{PeerTemplate, Transport};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the templates built and records the server name of each.
#[derive(Debug, Default)]
struct Recording(AtomicUsize);

impl PeerPreparer for Recording {
    fn prepare(&self, addr: SocketAddr, t: &Transport) -> Result<PeerTemplate, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let name = t.tls.as_ref().map(|tls| tls.server_name.clone());
        Ok(Arc::new((addr, name)))
    }
}

fn ca_file() -> tempfile::NamedTempFile {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(ca.pem().as_bytes()).unwrap();
    f
}

async fn apply(r: &mut Registry, cmd: Command) -> Result<(Reply, Effects), RegistryError> {
    let resolved = Resolutions::of(&cmd).await;
    r.apply_at(cmd, &resolved, crate::health::now_ms())
}

fn https(id: &str, ca: Option<&str>) -> Command {
    Command::AddBackend(NewBackend {
        id: id.into(),
        address: "127.0.0.1:8443".into(),
        tags: vec!["a".into()],
        protocol: Some(BackendProtocol::Https),
        tls_ca_file: ca.map(Into::into),
        ..NewBackend::default()
    })
}

fn view(reply: Reply) -> BackendView {
    match reply {
        Reply::Backend(b) => b,
        other => panic!("not a backend: {other:?}"),
    }
}

#[tokio::test]
async fn an_https_backend_gets_its_trust_roots_and_template_once() {
    let ca = ca_file();
    let recording = Arc::new(Recording::default());
    let mut r = Registry::from_state_with(PersistedState::default(), recording.clone()).unwrap();
    let path = ca.path().to_str().unwrap();
    let (reply, fx) = apply(&mut r, https("s1", Some(path))).await.unwrap();
    let shown = view(reply).backend;
    assert_eq!(shown.transport.protocol, BackendProtocol::Https);
    assert_eq!(
        shown.transport.tls_server_name.as_deref(),
        Some("127.0.0.1"),
        "the default server name is shown"
    );
    assert!(shown.transport.tls_verify);
    assert_eq!(fx.probe.len(), 1);
    let id = BackendId::parse("s1").unwrap();
    let live = r.upstream(&id).unwrap();
    let tls = live.transport.tls.as_ref().unwrap();
    let roots = tls.roots.as_ref().unwrap();
    assert_eq!(roots.len(), crate::upstream::system_roots().len() + 1);
    assert_eq!(recording.0.load(Ordering::SeqCst), 1);
    let template = live.peer.downcast_ref::<(SocketAddr, Option<String>)>();
    assert_eq!(template.unwrap().1.as_deref(), Some("127.0.0.1"));

    // Stored without the default filled in: a new address moves the default name along.
    assert_eq!(r.state().backends[0].transport.tls_server_name, None);

    // A weight change keeps the live state; a new server name rebuilds it, CA kept.
    let weight = BackendPatch {
        weight: Some(2),
        ..BackendPatch::default()
    };
    let (_, fx) = apply(&mut r, Command::UpdateBackend("s1".into(), weight))
        .await
        .unwrap();
    assert!(fx.probe.is_empty());
    let rename = BackendPatch {
        tls_server_name: Some(Some("backend.internal".into())),
        ..BackendPatch::default()
    };
    let (_, fx) = apply(&mut r, Command::UpdateBackend("s1".into(), rename))
        .await
        .unwrap();
    assert_eq!(fx.probe.len(), 1, "new TLS settings get a new probe");
    let live = r.upstream(&id).unwrap();
    let tls = live.transport.tls.as_ref().unwrap();
    assert_eq!(tls.server_name, "backend.internal");
    assert_eq!(tls.ca.as_ref().unwrap().len(), 1);
    assert_eq!(recording.0.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tls_settings_are_checked_with_the_protocol() {
    let mut r = Registry::default();
    let err = apply(&mut r, https("s1", Some("/nonexistent/ca.pem")))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("cannot be read"), "{err}");

    // TLS settings on a plain backend are kept, and used once it is https.
    let ca = ca_file();
    let plain_with_tls = Command::AddBackend(NewBackend {
        id: "p".into(),
        address: "127.0.0.1:80".into(),
        tags: vec!["a".into()],
        protocol: Some(BackendProtocol::H2c),
        tls_server_name: Some("Backend.Internal".into()),
        tls_verify: Some(false),
        tls_ca_file: Some(ca.path().to_str().unwrap().into()),
        ..NewBackend::default()
    });
    let shown = view(apply(&mut r, plain_with_tls).await.unwrap().0).backend;
    assert_eq!(
        shown.transport.tls_server_name.as_deref(),
        Some("backend.internal")
    );
    assert!(!shown.transport.tls_verify);
    let id = BackendId::parse("p").unwrap();
    assert!(r.upstream(&id).unwrap().transport.tls.is_none());
    let to_https = BackendPatch {
        protocol: Some(BackendProtocol::Https),
        ..BackendPatch::default()
    };
    apply(&mut r, Command::UpdateBackend("p".into(), to_https))
        .await
        .unwrap();
    let upstream = r.upstream(&id).unwrap();
    let tls = upstream.transport.tls.as_ref().unwrap();
    assert_eq!(tls.server_name, "backend.internal");
    assert!(!tls.verify && tls.ca.is_some());
    let to_http1 = BackendPatch {
        protocol: Some(BackendProtocol::Http1),
        ..BackendPatch::default()
    };
    let shown = view(
        apply(&mut r, Command::UpdateBackend("p".into(), to_http1))
            .await
            .unwrap()
            .0,
    )
    .backend;
    assert_eq!(shown.transport.protocol, BackendProtocol::Http1);
    assert_eq!(
        shown.transport.tls_server_name.as_deref(),
        Some("backend.internal")
    );

    let grpc_over_h1 = Command::AddBackend(NewBackend {
        id: "g".into(),
        address: "127.0.0.1:80".into(),
        tags: vec!["a".into()],
        health_check: Some(HealthCheck::Grpc),
        ..NewBackend::default()
    });
    assert!(apply(&mut r, grpc_over_h1).await.is_err());

    // h2c with a gRPC probe is fine; going back to http1 with it is not.
    let h2c = Command::AddBackend(NewBackend {
        id: "g".into(),
        address: "127.0.0.1:80".into(),
        tags: vec!["a".into()],
        protocol: Some(BackendProtocol::H2c),
        health_check: Some(HealthCheck::Grpc),
        ..NewBackend::default()
    });
    apply(&mut r, h2c).await.unwrap();
    let back = BackendPatch {
        protocol: Some(BackendProtocol::Http1),
        ..BackendPatch::default()
    };
    assert!(apply(&mut r, Command::UpdateBackend("g".into(), back))
        .await
        .is_err());
    let id = BackendId::parse("g").unwrap();
    assert_eq!(
        r.upstream(&id).unwrap().transport.protocol,
        BackendProtocol::H2c
    );
}

#[test]
fn state_written_before_the_protocol_fields_loads_with_their_defaults() {
    let old = r#"{"version":1,"domains":[],"backends":[
        {"id":"web","address":"127.0.0.1:3001","tags":["a"]}]}"#;
    let state: PersistedState = serde_json::from_str(old).unwrap();
    let r = Registry::from_state(state).unwrap();
    let b = r.backend("web").unwrap();
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["protocol"], "http1");
    assert_eq!(json["tls_verify"], true);
    assert_eq!(json["tls_server_name"], "127.0.0.1");
    assert_eq!(json["tls_ca_file"], serde_json::Value::Null);
    assert_eq!(json["health_check"], "http");
}

#[tokio::test]
async fn the_default_server_name_sent_back_keeps_the_default() {
    let mut r = Registry::default();
    let plain = Command::AddBackend(NewBackend {
        id: "w".into(),
        address: "127.0.0.1:80".into(),
        tags: vec!["a".into()],
        ..NewBackend::default()
    });
    let shown = view(apply(&mut r, plain).await.unwrap().0).backend;
    assert_eq!(
        shown.transport.tls_server_name.as_deref(),
        Some("127.0.0.1")
    );
    // PUT of what GET showed: the stored record does not change.
    let same = BackendPatch {
        address: Some(shown.address.clone()),
        tls_server_name: Some(shown.transport.tls_server_name.clone()),
        tls_verify: Some(shown.transport.tls_verify),
        protocol: Some(shown.transport.protocol),
        ..BackendPatch::default()
    };
    let before = r.state();
    apply(&mut r, Command::UpdateBackend("w".into(), same))
        .await
        .unwrap();
    assert_eq!(r.state().backends, before.backends);
    assert_eq!(r.state().backends[0].transport.tls_server_name, None);
}
