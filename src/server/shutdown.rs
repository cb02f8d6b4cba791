//! Signals, draining and exit: SIGTERM stops the admin API and exits once no request is in
//! flight (at most the grace period), SIGINT exits at once, and every way out goes through one
//! guarded exit that flushes the logs.

use crate::telemetry;
use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ends the process with `code` after flushing the logs. The first caller exits; a second one
/// (a signal racing the end of `run`) waits for that exit instead of running `exit` twice.
pub fn exit_process(code: i32) -> ! {
    static EXITING: AtomicBool = AtomicBool::new(false);
    if EXITING.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    telemetry::flush();
    std::process::exit(code)
}

/// Pingora stops on SIGINT within its one-second shutdown timeout, but a SIGINT that lands while
/// its services are still starting can leave an accept loop spinning on a stopped runtime, and
/// the process never exits. signal-hook's own thread, which depends on no runtime, ends the
/// process if it is still running [`SIGINT_DEADLINE`] later.
pub fn exit_on_sigint() -> Result<(), Vec<String>> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])
        .map_err(|e| vec![format!("cannot listen for SIGINT: {e}")])?;
    std::thread::Builder::new()
        .name("sigint".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                std::thread::sleep(SIGINT_DEADLINE);
                tracing::warn!("still running {SIGINT_DEADLINE:?} after SIGINT; exiting");
                exit_process(0);
            }
        })
        .map_err(|e| vec![format!("cannot listen for SIGINT: {e}")])?;
    Ok(())
}

/// How long Pingora gets to stop after SIGINT (its own shutdown timeout is one second).
const SIGINT_DEADLINE: Duration = Duration::from_millis(1500);

/// The last resort after SIGTERM or an upgrade: if Pingora has not ended the process by
/// `after`, end it.
fn exit_after(after: Duration, why: &'static str) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        tracing::warn!(why, "shutdown did not finish in time; exiting");
        exit_process(0);
    });
}

/// Pingora's Unix signals, plus: the admin API stops at once on SIGTERM/SIGQUIT, and after
/// SIGTERM the process exits as soon as no request is in flight (at most the grace period).
pub struct DrainingSignals {
    in_flight: Arc<AtomicI64>,
    grace: Duration,
    admin_stop: tokio::sync::watch::Sender<bool>,
}

impl DrainingSignals {
    /// Signals that drain `in_flight` for at most `grace` and stop the admin API through
    /// `admin_stop`.
    pub fn new(
        in_flight: Arc<AtomicI64>,
        grace: Duration,
        admin_stop: tokio::sync::watch::Sender<bool>,
    ) -> Self {
        Self {
            in_flight,
            grace,
            admin_stop,
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignals {
    async fn recv(&self) -> ShutdownSignal {
        let signal = pingora::server::UnixShutdownSignalWatch.recv().await;
        match signal {
            ShutdownSignal::GracefulTerminate => {
                let _ = self.admin_stop.send(true);
                let (in_flight, grace) = (Arc::clone(&self.in_flight), self.grace);
                std::thread::spawn(move || exit_when_drained(&in_flight, grace));
                exit_after(self.grace + HARD_EXIT_MARGIN, "SIGTERM");
            }
            ShutdownSignal::GracefulUpgrade => {
                let _ = self.admin_stop.send(true);
                exit_after(self.grace + HARD_EXIT_MARGIN, "upgrade");
            }
            ShutdownSignal::FastShutdown => {}
        }
        signal
    }
}

/// How long past the grace period Pingora gets to stop its runtimes before the process ends
/// anyway.
const HARD_EXIT_MARGIN: Duration = Duration::from_secs(5);

fn exit_when_drained(in_flight: &AtomicI64, grace: Duration) {
    let start = Instant::now();
    // Let the listeners close and already-accepted requests register first.
    std::thread::sleep(Duration::from_millis(500).min(grace));
    let mut idle_checks = 0;
    while start.elapsed() < grace {
        if in_flight.load(Ordering::Relaxed) <= 0 {
            idle_checks += 1;
            if idle_checks >= 3 {
                tracing::info!(
                    drained_in_ms = start.elapsed().as_millis() as u64,
                    "all in-flight requests finished; exiting"
                );
                exit_process(0);
            }
        } else {
            idle_checks = 0;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Pingora's own grace period ends the process now.
}
