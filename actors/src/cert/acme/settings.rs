//! `[lets_encrypt]` as the certificate actors use it, when to renew, and the order counters.

use super::super::material::CertMaterial;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// `[lets_encrypt]` as the cert actors use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    /// Contact address for the account; empty for none.
    pub email: String,
    /// The ACME directory.
    pub directory_url: String,
    /// Extra trust root(s), PEM, for the directory's HTTPS certificate (test CAs).
    pub ca_root_pem: Option<Vec<u8>>,
    /// Account credentials, certificates and keys (files 0600).
    pub cache_dir: PathBuf,
    /// Renew this long before expiry (at most half the certificate's lifetime), unless the
    /// directory suggests a window (ARI).
    pub renew_before: Duration,
    /// First retry delay after a failed order; doubles per failure up to `retry_max`.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Longest time one order may take, from new-order to downloaded chain.
    pub order_timeout: Duration,
}

impl AcmeSettings {
    /// Settings with the defaults: renew 30 days before expiry, retries from 5 s doubling up to
    /// 1 h, orders given 2 min.
    pub fn new(
        email: impl Into<String>,
        directory_url: impl Into<String>,
        cache_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            email: email.into(),
            directory_url: directory_url.into(),
            ca_root_pem: None,
            cache_dir: cache_dir.into(),
            renew_before: Duration::from_secs(30 * 86_400),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            order_timeout: Duration::from_secs(120),
        }
    }

    /// When `cert` should be renewed by the `renew_before` rule: `renew_before` before expiry,
    /// but never more than half its lifetime before (short-lived certificates, or a
    /// `renew_before` longer than the lifetime, would otherwise renew in a loop).
    pub fn renew_at(&self, cert: &CertMaterial) -> SystemTime {
        let lifetime =
            Duration::from_secs(cert.not_after().saturating_sub(cert.not_before()).max(0) as u64);
        let before = self.renew_before.min(lifetime / 2);
        let not_after = UNIX_EPOCH + Duration::from_secs(cert.not_after().max(0) as u64);
        not_after.checked_sub(before).unwrap_or(UNIX_EPOCH)
    }

    /// The delay before retry number `failures` (1 for the first): `retry_base` doubled per
    /// earlier failure, at most `retry_max`.
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        self.retry_base
            .saturating_mul(factor)
            .min(self.retry_max.max(self.retry_base))
    }
}

/// Orders that ended in a certificate, and orders that failed; shared with the metrics.
#[derive(Debug, Default)]
pub struct AcmeCounters {
    /// Orders that gave a certificate.
    pub success: AtomicU64,
    /// Orders that failed (any step, the account included).
    pub failure: AtomicU64,
}

impl AcmeCounters {
    /// `(success, failure)` now.
    pub fn read(&self) -> (u64, u64) {
        (
            self.success.load(Ordering::Relaxed),
            self.failure.load(Ordering::Relaxed),
        )
    }
}

/// A renewal window suggested by the directory (ARI, RFC 9773).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenewalWindow {
    /// Renew no earlier than this.
    pub start: SystemTime,
    /// Renew before this.
    pub end: SystemTime,
    /// Ask again after this long.
    pub recheck_after: Duration,
}
