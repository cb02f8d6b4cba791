//! A request's hold on one in-flight slot of a backend, given back when the hold is dropped.
//!
//! The proxy keeps the lease in its per-request context, so the slot is released however the
//! request ends (answer, error, client gone) and, on a retry, as soon as the next backend's
//! lease replaces it. When the backend's answer has arrived in full the proxy gives the slot back
//! at once ([`Lease::finish`]): the backend is free while the answer still goes to the client.

use crate::upstream::UpstreamBackend;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// One in-flight slot on a backend, released on drop (or by [`Lease::finish`]).
pub struct Lease {
    backend: Arc<UpstreamBackend>,
    held: bool,
}

impl Lease {
    /// Takes a slot on `backend` unless it is at `cap` (0: no cap).
    #[inline]
    pub(crate) fn acquire(backend: &Arc<UpstreamBackend>, cap: u32) -> Option<Lease> {
        backend.try_acquire(cap).then(|| Lease {
            backend: Arc::clone(backend),
            held: true,
        })
    }

    /// The backend this slot is on.
    #[inline]
    pub fn backend(&self) -> &Arc<UpstreamBackend> {
        &self.backend
    }

    /// Gives the slot back now, keeping the backend (for the access log); later calls and the
    /// drop give nothing back again.
    #[inline]
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.held) {
            self.backend.release();
        }
    }
}

impl Deref for Lease {
    type Target = UpstreamBackend;

    #[inline]
    fn deref(&self) -> &UpstreamBackend {
        &self.backend
    }
}

impl Drop for Lease {
    #[inline]
    fn drop(&mut self) {
        self.finish();
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("backend", &self.backend.id)
            .field("held", &self.held)
            .finish()
    }
}
