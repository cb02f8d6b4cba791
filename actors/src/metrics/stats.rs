//! The `GET /api/v1/stats` shapes: per-domain and per-tag traffic counters.

use serde::Serialize;
use std::collections::BTreeMap;

/// Counters of one domain or tag in `GET /api/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TrafficStats {
    /// Requests answered.
    pub total_requests: u64,
    /// Answers below 500 from a backend.
    pub success_requests: u64,
    /// The rest.
    pub error_requests: u64,
    /// Mean request duration in milliseconds.
    pub avg_latency_ms: f64,
    /// Rate, error rate and latency over the last minute.
    pub last_minute: super::recent::LastMinute,
    #[serde(skip)]
    pub(super) latency_count: u64,
    #[serde(skip)]
    pub(super) latency_sum: f64,
}

impl TrafficStats {
    pub(super) fn add(&mut self, o: &TrafficStats) {
        self.total_requests += o.total_requests;
        self.success_requests += o.success_requests;
        self.error_requests += o.error_requests;
        self.latency_count += o.latency_count;
        self.latency_sum += o.latency_sum;
        self.avg_latency_ms = if self.latency_count == 0 {
            0.0
        } else {
            self.latency_sum * 1000.0 / self.latency_count as f64
        };
    }
}

/// One domain in `GET /api/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DomainStats {
    /// Totals over all tags.
    #[serde(flatten)]
    pub totals: TrafficStats,
    /// Per tag.
    pub tags: BTreeMap<String, TrafficStats>,
}

/// `GET /api/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Per domain.
    pub domains: BTreeMap<String, DomainStats>,
}
