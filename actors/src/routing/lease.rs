//! A request's hold on one in-flight slot of a backend, given back when the hold is dropped.
//!
//! The proxy keeps the lease in its per-request context, so the slot is released however the
//! request ends (answer, error, client gone) and, on a retry, as soon as the next backend's
//! lease replaces it.

use crate::upstream::UpstreamBackend;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// One in-flight slot on a backend, released on drop.
pub struct Lease(Arc<UpstreamBackend>);

impl Lease {
    /// Takes a slot on `backend` unless it is at `cap` (0: no cap).
    #[inline]
    pub(crate) fn acquire(backend: &Arc<UpstreamBackend>, cap: u32) -> Option<Lease> {
        backend.try_acquire(cap).then(|| Lease(Arc::clone(backend)))
    }

    /// The backend this slot is on.
    #[inline]
    pub fn backend(&self) -> &Arc<UpstreamBackend> {
        &self.0
    }
}

impl Deref for Lease {
    type Target = UpstreamBackend;

    #[inline]
    fn deref(&self) -> &UpstreamBackend {
        &self.0
    }
}

impl Drop for Lease {
    #[inline]
    fn drop(&mut self) {
        self.0.release();
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Lease").field(&self.0.id).finish()
    }
}
