//! Active health checking: one HealthProbeActor per backend probes it every interval in its own
//! protocol ([`probe`]) and reports each outcome as a [`ProbeReport`] through a reference that
//! accepts nothing else; its supervisor applies the report to the backend's health word.

mod grpc;
mod probe;

pub use probe::probe_once;

use crate::upstream::{Thresholds, UpstreamBackend};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
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
    /// Path of the `http` probe.
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
    /// The thresholds the health word applies.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            unhealthy: self.unhealthy_threshold,
            healthy: self.healthy_threshold,
        }
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// === HealthProbeActor ===

/// Messages a probe handles.
pub enum ProbeMsg {
    /// Time to probe.
    Tick,
    /// Makes the probe panic: lets tests prove that supervision restarts it.
    #[cfg(any(test, feature = "test-hooks"))]
    Crash,
}

/// One probe outcome, for the probe's supervisor.
#[derive(Debug)]
pub struct ProbeReport {
    /// The probed backend, as the probe knew it.
    pub target: Arc<UpstreamBackend>,
    /// Success, or why it failed.
    pub result: Result<(), String>,
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
    pub report_to: DerivedActorRef<ProbeReport>,
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
                let result = probe_once(&a.target, &a.host, &a.settings).await;
                a.report_to.send_message(ProbeReport {
                    target: Arc::clone(&a.target),
                    result,
                })?;
            }
            #[cfg(any(test, feature = "test-hooks"))]
            ProbeMsg::Crash => panic!("probe crash requested"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
