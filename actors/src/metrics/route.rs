//! Pre-resolved handles for one (domain, tag): what the request path records into, with no
//! lock and no label formatting.

use super::stats::TrafficStats;
use super::window::OutcomeWindow;
use super::LatencyHistogram;
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Pre-resolved handles for one (domain, tag): what the request path records into.
#[derive(Debug)]
pub struct RouteMetrics {
    pub(super) codes: [Counter; 5],
    pub(super) duration: LatencyHistogram,
    pub(super) retries: Counter,
    /// Answers below 500 that came from a backend.
    pub(super) backend_success: AtomicU64,
    /// Outcomes per second, kept only while a rollback rule watches this (domain, tag).
    window: OnceLock<OutcomeWindow>,
}

/// The current Unix second.
#[inline]
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RouteMetrics {
    /// Handles over the given series, with no answers counted yet.
    pub(super) fn new(codes: [Counter; 5], duration: LatencyHistogram, retries: Counter) -> Self {
        Self {
            codes,
            duration,
            retries,
            backend_success: AtomicU64::new(0),
            window: OnceLock::new(),
        }
    }

    /// Counts outcomes per second from now on (a rollback rule watches this tag); with `fresh`
    /// (a new split or another routing change), from zero. Other republishes of the domain keep
    /// what the window has seen.
    pub fn watch_outcomes(&self, fresh: bool) {
        let window = self.window.get_or_init(OutcomeWindow::default);
        if fresh {
            window.clear();
        }
    }

    /// (requests, errors) over the last `secs` seconds; zeros when not watched.
    pub fn recent_outcomes(&self, secs: u64) -> (u64, u64) {
        self.window
            .get()
            .map_or((0, 0), |w| w.sum(now_secs(), secs))
    }

    /// Records one finished request. For a rollback rule it is one request, and a failed one
    /// when its answer is a 5xx or one of its upstream attempts failed (`failed_attempt`), even
    /// when a retry then succeeded.
    #[inline]
    pub fn record(&self, status: u16, from_backend: bool, failed_attempt: bool, elapsed: Duration) {
        let class = usize::from(status / 100);
        if !(1..=5).contains(&class) {
            return;
        }
        self.codes[class - 1].inc();
        self.duration.observe(elapsed);
        if let Some(w) = self.window.get() {
            w.record(now_secs(), status >= 500 || failed_attempt);
        }
        if from_backend && status < 500 {
            self.backend_success.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records one retry on another backend.
    #[inline]
    pub fn record_retry(&self) {
        self.retries.inc();
    }

    /// The cumulative counts now, for the last-minute figures.
    pub(super) fn sample(&self) -> super::recent::Sample {
        let total: u64 = self.codes.iter().map(Counter::get).sum();
        let success = self.backend_success.load(Ordering::Relaxed).min(total);
        super::recent::Sample {
            requests: total,
            errors: total - success,
            buckets: self.duration.buckets(),
        }
    }

    pub(super) fn stats(&self) -> TrafficStats {
        let total: u64 = self.codes.iter().map(Counter::get).sum();
        let success = self.backend_success.load(Ordering::Relaxed).min(total);
        let (sum, count) = self.duration.sum_and_count();
        TrafficStats {
            total_requests: total,
            success_requests: success,
            error_requests: total - success,
            avg_latency_ms: if count == 0 {
                0.0
            } else {
                sum * 1000.0 / count as f64
            },
            latency_count: count,
            latency_sum: sum,
            last_minute: Default::default(),
        }
    }
}
