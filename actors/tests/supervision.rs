//! Probe supervision with real actors and a real origin: a probe that panics is restarted by
//! the RegistryActor and probing resumes with the backend's last state.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vhost_actors::command::{Command, NewBackend};
use vhost_actors::health::HealthSettings;
use vhost_actors::metrics::{Metrics, MetricsActor, MetricsArgs, RouteHandles};
use vhost_actors::ractor::{call_t, Actor, ActorRef};
use vhost_actors::registry::actor::{RegistryActor, RegistryArgs, RegistryMsg};
use vhost_actors::registry::Registry;
use vhost_actors::routing::RouteTable;
use vhost_actors::store::JsonFileStore;

/// A minimal HTTP origin answering 200 to everything.
async fn origin() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    addr
}

async fn last_check(registry: &ActorRef<RegistryMsg>) -> Option<String> {
    let b = call_t!(registry, RegistryMsg::GetBackend, 2000, "b1".to_string())
        .unwrap()
        .unwrap();
    b.health.last_check
}

#[tokio::test(flavor = "multi_thread")]
async fn crashed_probe_is_restarted_and_probing_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let (metrics_ref, _) = Actor::spawn(
        None,
        MetricsActor,
        MetricsArgs {
            metrics: Arc::clone(&metrics),
            in_flight: Arc::default(),
            certs: None,
            acme: None,
        },
    )
    .await
    .unwrap();
    let (registry, _) = Actor::spawn(
        None,
        RegistryActor,
        RegistryArgs {
            registry: Registry::default(),
            table: Arc::new(RouteTable::new()),
            store: Arc::new(JsonFileStore::new(dir.path().join("state.json"))),
            health: Some(HealthSettings {
                interval: Duration::from_millis(200),
                timeout: Duration::from_secs(1),
                unhealthy_threshold: 2,
                healthy_threshold: 1,
                path: "/health".into(),
            }),
            handles: RouteHandles::new(metrics),
            metrics: metrics_ref,
            certs: None,
        },
    )
    .await
    .unwrap();
    let addr = origin().await;
    let add = Command::AddBackend(NewBackend {
        id: "b1".into(),
        address: addr.to_string(),
        tags: vec!["a".into()],
        ..NewBackend::default()
    });
    call_t!(registry, RegistryMsg::Apply, 2000, add)
        .unwrap()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while last_check(&registry).await.is_none() {
        assert!(Instant::now() < deadline, "never probed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let crashed = call_t!(registry, RegistryMsg::CrashProbe, 2000, "b1".to_string()).unwrap();
    assert!(crashed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = call_t!(registry, RegistryMsg::Supervision, 2000).unwrap();
        if report.probe_restarts == 1 && report.probes == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "probe not restarted: {report:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Probing resumes: the last check moves on, and the backend stays healthy.
    let before = last_check(&registry).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while last_check(&registry).await == before {
        assert!(Instant::now() < deadline, "probing did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = call_t!(registry, RegistryMsg::GetBackend, 2000, "b1".to_string())
        .unwrap()
        .unwrap();
    assert_eq!(b.health.status, "healthy");
    assert!(
        registry.get_status() == vhost_actors::ractor::ActorStatus::Running,
        "the supervisor survives"
    );
    registry.stop(None);
}
