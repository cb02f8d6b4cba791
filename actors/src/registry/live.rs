//! The live state the registry makes for a backend: its transport, loaded and checked, and the
//! proxy's peer template for it, both built here, once, instead of per request.

use super::Registry;
use crate::model::BackendRecord;
use crate::upstream::{NoPeer, PeerPreparer, Roots, Transport, UpstreamBackend};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// The proxy's builder of peer templates (an empty one without a proxy).
#[derive(Clone)]
pub(super) struct Preparer(pub(super) Arc<dyn PeerPreparer>);

impl Default for Preparer {
    fn default() -> Self {
        Self(Arc::new(NoPeer))
    }
}

impl fmt::Debug for Preparer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Warns that `new` is spoken to over TLS without checking its certificate, when it now is
/// and was not before (`old`: the record it replaces, if any) or it moved.
pub(super) fn warn_if_unverified(old: Option<&BackendRecord>, new: &BackendRecord) {
    let was = old.is_some_and(|o| o.transport.unverified_tls() && o.address == new.address);
    if new.transport.unverified_tls() && !was {
        warn_unverified(new);
    }
}

/// The warning for a backend with `tls_verify = false`.
pub fn warn_unverified(b: &BackendRecord) {
    tracing::warn!(
        backend = %b.id,
        address = %b.address,
        "TLS verification is off for this backend (tls_verify = false): any certificate is accepted"
    );
}

impl Registry {
    /// Warns, once per backend, for each one spoken to over TLS without checking its
    /// certificate (at start, once logging is set up).
    pub fn warn_unverified(&self) {
        for b in self.backends.values() {
            if b.transport.unverified_tls() {
                warn_unverified(b);
            }
        }
    }

    /// The live state of `record` at `addr`, with unknown health; `ca` holds the certificates
    /// of its `tls_ca_file`, already read.
    pub(super) fn live_backend(
        &self,
        record: &BackendRecord,
        addr: SocketAddr,
        ca: Option<&Roots>,
    ) -> Result<Arc<UpstreamBackend>, String> {
        let transport = Transport::build(&record.transport, &record.address, ca)?;
        let peer = self.preparer.0.prepare(addr, &transport)?;
        Ok(Arc::new(
            UpstreamBackend::new(record.id.as_str(), addr)
                .with_transport(Arc::new(transport), peer),
        ))
    }
}
