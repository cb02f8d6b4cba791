//! The probe alone: real origins, a stub actor in the supervisor's place.

use super::*;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Stands in for the registry: forwards every report to a channel.
struct Collector;

impl Actor for Collector {
    type Msg = ProbeReport;
    type State = mpsc::UnboundedSender<ProbeReport>;
    type Arguments = mpsc::UnboundedSender<ProbeReport>;

    async fn pre_start(
        &self,
        _myself: ActorRef<ProbeReport>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _myself: ActorRef<ProbeReport>,
        msg: ProbeReport,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = tx.send(msg);
        Ok(())
    }
}

/// An origin answering every connection with `status`.
async fn origin(status: u16) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

async fn first_report(addr: SocketAddr) -> ProbeReport {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (collector, _) = Actor::spawn(None, Collector, tx).await.unwrap();
    let settings = HealthSettings {
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(2),
        ..HealthSettings::default()
    };
    let args = ProbeArgs {
        target: Arc::new(UpstreamBackend::new("b1", addr)),
        host: addr.to_string(),
        settings: Arc::new(settings),
        report_to: collector.get_derived(),
    };
    let (probe, _) = Actor::spawn(None, HealthProbeActor, args).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a report within the timeout")
        .expect("collector alive");
    probe.stop(None);
    collector.stop(None);
    report
}

#[tokio::test]
async fn a_passing_backend_reports_success() {
    let report = first_report(origin(200).await).await;
    assert_eq!(&*report.target.id, "b1");
    assert_eq!(report.result, Ok(()));
}

#[tokio::test]
async fn a_failing_backend_reports_why() {
    let err = first_report(origin(503).await).await.result.unwrap_err();
    assert!(err.contains("503"), "{err}");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = first_report(closed).await.result.unwrap_err();
    assert!(err.starts_with("connect"), "{err}");
}
