//! Active health checking: one HealthProbeActor per backend sends `GET <path>` every interval and
//! reports to the RegistryActor, which applies [`HealthSettings::record`] to the backend's atomics.

use crate::registry::actor::RegistryMsg;
use crate::snapshot::{BackendHealth, HealthReading, HealthStatus, UpstreamBackend};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `[health_check]` as the actors use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between probes.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Consecutive failures that make a backend unhealthy.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that make it healthy again.
    pub healthy_threshold: u32,
    /// Probed path.
    pub path: String,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            path: "/health".into(),
        }
    }
}

impl HealthSettings {
    /// Applies one probe outcome; returns the status change, if any.
    pub fn record(
        &self,
        health: &BackendHealth,
        ok: bool,
        now_ms: i64,
    ) -> Option<(HealthStatus, HealthStatus)> {
        let before = health.read();
        let mut next = HealthReading {
            last_check_ms: Some(now_ms),
            ..before
        };
        if ok {
            next.consecutive_successes = before.consecutive_successes.saturating_add(1);
            next.consecutive_failures = 0;
            if next.consecutive_successes >= self.healthy_threshold {
                next.status = HealthStatus::Healthy;
            }
        } else {
            next.consecutive_failures = before.consecutive_failures.saturating_add(1);
            next.consecutive_successes = 0;
            if next.consecutive_failures >= self.unhealthy_threshold {
                next.status = HealthStatus::Unhealthy;
            }
        }
        health.store(next);
        (next.status != before.status).then_some((before.status, next.status))
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sends one `GET path` to `target`; `Ok` with the status, or why it failed.
pub async fn probe_once(
    target: &UpstreamBackend,
    host: &str,
    s: &HealthSettings,
) -> Result<u16, String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::get(s.path.as_str())
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "pingora-vhost-health")
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        Ok(resp.status().as_u16())
    };
    tokio::time::timeout(s.timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", s.timeout)))
}

// === HealthProbeActor ===

/// Messages a probe handles.
pub enum ProbeMsg {
    /// Time to probe.
    Tick,
    /// Makes the probe panic: lets tests prove that supervision restarts it.
    Crash,
}

/// What a probe needs.
pub struct ProbeArgs {
    /// The backend (its address and health atomics).
    pub target: Arc<UpstreamBackend>,
    /// `Host` header for the probe: the backend's configured address.
    pub host: String,
    /// Interval, timeout, path.
    pub settings: Arc<HealthSettings>,
    /// Where results go.
    pub registry: ActorRef<RegistryMsg>,
}

/// A probe's state.
pub struct ProbeState {
    args: ProbeArgs,
    ticker: tokio::task::JoinHandle<()>,
}

/// Probes one backend.
pub struct HealthProbeActor;

impl Actor for HealthProbeActor {
    type Msg = ProbeMsg;
    type State = ProbeState;
    type Arguments = ProbeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProbeMsg>,
        args: ProbeArgs,
    ) -> Result<ProbeState, ActorProcessingErr> {
        myself.send_message(ProbeMsg::Tick)?;
        let ticker = myself.send_interval(args.settings.interval, || ProbeMsg::Tick);
        Ok(ProbeState { args, ticker })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ProbeMsg>,
        state: &mut ProbeState,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        state: &mut ProbeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProbeMsg::Tick => {
                let a = &state.args;
                let outcome = probe_once(&a.target, &a.host, &a.settings).await;
                let result = match outcome {
                    Ok(code) if (200..400).contains(&code) => Ok(()),
                    Ok(code) => Err(format!("{} answered {code}", a.settings.path)),
                    Err(e) => Err(e),
                };
                a.registry.send_message(RegistryMsg::ProbeResult {
                    target: Arc::clone(&a.target),
                    result,
                })?;
            }
            ProbeMsg::Crash => panic!("probe crash requested"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_drive_the_status() {
        let s = HealthSettings::default();
        let h = BackendHealth::default();
        assert_eq!(s.record(&h, true, 1), None);
        assert_eq!(
            s.record(&h, true, 2),
            Some((HealthStatus::Unknown, HealthStatus::Healthy))
        );
        assert_eq!(s.record(&h, false, 3), None);
        assert_eq!(s.record(&h, false, 4), None);
        assert_eq!(
            s.record(&h, false, 5),
            Some((HealthStatus::Healthy, HealthStatus::Unhealthy))
        );
        assert!(!h.is_routable());
        assert_eq!(h.read().consecutive_failures, 3);
        assert_eq!(s.record(&h, true, 6), None);
        assert_eq!(
            s.record(&h, true, 7),
            Some((HealthStatus::Unhealthy, HealthStatus::Healthy))
        );
        assert_eq!(h.read().last_check_ms, Some(7));
    }
}
