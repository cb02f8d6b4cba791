//! The last minute of traffic per (domain, tag), for `stats` and the dashboard: the MetricsActor
//! samples the cumulative counters and histogram buckets every few seconds, and a last-minute
//! figure is the difference between now and the sample about a minute old. Nothing is added to
//! the request path.

use super::histogram::{BOUNDS, BUCKETS};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(60);

/// Cumulative counts of one (domain, tag) at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Requests answered.
    pub requests: u64,
    /// Of which not a success from a backend.
    pub errors: u64,
    /// Request durations per histogram bucket.
    pub buckets: [u64; BUCKETS],
}

impl Sample {
    /// Adds another sample's counts (domain totals over their tags).
    pub fn add(&mut self, o: &Sample) {
        self.requests += o.requests;
        self.errors += o.errors;
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
    }

    fn since(&self, old: &Sample) -> Sample {
        let mut d = Sample {
            requests: self.requests.saturating_sub(old.requests),
            errors: self.errors.saturating_sub(old.errors),
            buckets: [0; BUCKETS],
        };
        for (i, b) in d.buckets.iter_mut().enumerate() {
            *b = self.buckets[i].saturating_sub(old.buckets[i]);
        }
        d
    }
}

/// The last minute of one domain or tag in `GET /api/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LastMinute {
    /// Requests answered in the window.
    pub requests: u64,
    /// Requests per second over the window.
    pub requests_per_sec: f64,
    /// Share of answers that were not a success from a backend, 0..=1.
    #[schema(minimum = 0, maximum = 1)]
    pub error_rate: f64,
    /// Median duration (ms), estimated from the histogram; null without requests.
    #[schema(required = true)]
    pub p50_ms: Option<f64>,
    /// 99th percentile duration (ms); null without requests.
    #[schema(required = true)]
    pub p99_ms: Option<f64>,
}

/// The `q` quantile in milliseconds of bucket counts, interpolated within its bucket.
fn quantile_ms(buckets: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (seen + n) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
            let upper = BOUNDS.get(i).copied().unwrap_or(lower);
            let within = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
            return Some((lower + (upper - lower) * within) * 1000.0);
        }
        seen += n;
    }
    None
}

/// Samples of every (domain, tag) at one moment.
pub type Samples = HashMap<(String, String), Sample>;

/// Samples of every (domain, tag), about a minute of them.
#[derive(Debug)]
pub struct RecentTraffic {
    started: Instant,
    ring: VecDeque<(Instant, Samples)>,
}

impl RecentTraffic {
    /// No samples yet: the first minute counts from `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            ring: VecDeque::new(),
        }
    }

    /// Keeps `samples` taken at `now`, dropping those older than the window needs.
    pub fn record(&mut self, now: Instant, samples: Samples) {
        self.ring.push_back((now, samples));
        while self
            .ring
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= WINDOW)
        {
            self.ring.pop_front();
        }
    }

    /// The sample of `key` about a minute before `now` (zeros before the first sample) and
    /// the time it was taken.
    fn baseline(&self, key: &(String, String), now: Instant) -> (Instant, Sample) {
        self.ring
            .iter()
            .find(|(t, _)| now.duration_since(*t) <= WINDOW)
            .map(|(t, s)| (*t, s.get(key).copied().unwrap_or_default()))
            .unwrap_or((self.started, Sample::default()))
    }

    /// The last minute of `key` given its `current` sample.
    #[cfg(test)]
    pub fn last_minute(
        &self,
        key: &(String, String),
        current: &Sample,
        now: Instant,
    ) -> LastMinute {
        let (at, old) = self.baseline(key, now);
        last_minute_of(&current.since(&old), now.duration_since(at))
    }

    /// The old sample of `key` (for domain totals, added up over tags).
    pub fn baseline_of(&self, key: &(String, String), now: Instant) -> (Instant, Sample) {
        self.baseline(key, now)
    }
}

/// The figures of a window's `delta` over `elapsed`.
pub fn last_minute_of(delta: &Sample, elapsed: Duration) -> LastMinute {
    let secs = elapsed.as_secs_f64().max(1.0);
    LastMinute {
        requests: delta.requests,
        requests_per_sec: delta.requests as f64 / secs,
        error_rate: if delta.requests == 0 {
            0.0
        } else {
            delta.errors as f64 / delta.requests as f64
        },
        p50_ms: quantile_ms(&delta.buckets, 0.50),
        p99_ms: quantile_ms(&delta.buckets, 0.99),
    }
}

/// `current` minus `old`.
pub fn delta(current: &Sample, old: &Sample) -> Sample {
    current.since(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut b = [0u64; BUCKETS];
        b[1] = 99; // 0.5..1 ms
        b[7] = 1; // 50..100 ms
        let p50 = quantile_ms(&b, 0.5).unwrap();
        assert!((0.5..=1.0).contains(&p50), "{p50}");
        let p99 = quantile_ms(&b, 0.99).unwrap();
        assert!(p99 <= 1.0, "{p99}");
        let p100 = quantile_ms(&b, 1.0).unwrap();
        assert!((50.0..=100.0).contains(&p100), "{p100}");
        assert_eq!(quantile_ms(&[0; BUCKETS], 0.5), None);
    }

    #[test]
    fn the_window_is_the_difference_to_a_sample_a_minute_old() {
        let t0 = Instant::now();
        let key = ("d".to_string(), "a".to_string());
        let mut r = RecentTraffic::new(t0);
        let at = |n: u64, e: u64| Sample {
            requests: n,
            errors: e,
            buckets: [0; BUCKETS],
        };
        for i in 0..20u64 {
            let t = t0 + SAMPLE_EVERY * i as u32;
            r.record(t, HashMap::from([(key.clone(), at(i * 100, i))]));
        }
        let now = t0 + SAMPLE_EVERY * 19;
        let m = r.last_minute(&key, &at(1900, 19), now);
        assert_eq!(m.requests, 1200, "60 s of 20 requests a second");
        assert!((m.requests_per_sec - 20.0).abs() < 0.01, "{m:?}");
        assert!((m.error_rate - 12.0 / 1200.0).abs() < 1e-9, "{m:?}");
    }
}
