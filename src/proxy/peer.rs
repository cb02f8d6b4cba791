//! The Pingora peer of each backend, built once when the registry publishes the backend (its
//! protocol, TLS name, verification and trust roots, timeouts), and the per-request copy of it.

mod first_connection;

pub use first_connection::Opening;

use crate::config::Limits;
use first_connection::FirstConnection;
use pingora::prelude::*;
use pingora::upstreams::peer::ALPN;
use pingora::utils::tls::{parse_x509, WrappedX509};
use std::net::SocketAddr;
use std::sync::Arc;
use vhost_actors::model::BackendProtocol;
use vhost_actors::upstream::{PeerPreparer, PeerTemplate, Transport, UpstreamBackend};

/// Concurrent streams one upstream HTTP/2 connection carries before another is opened (Pingora's
/// default is one, which would open a connection per request). The backend's own
/// SETTINGS_MAX_CONCURRENT_STREAMS still applies: a stream over it waits for a slot.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// Builds each backend's [`HttpPeer`] template for the registry.
#[derive(Debug)]
pub struct PeerBuilder {
    limits: Limits,
}

impl PeerBuilder {
    /// Templates with the configured upstream timeouts.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self { limits })
    }
}

impl PeerPreparer for PeerBuilder {
    fn prepare(&self, addr: SocketAddr, t: &Transport) -> Result<PeerTemplate, String> {
        let peer = template(addr, t, &self.limits)?;
        let first = (t.protocol != BackendProtocol::Http1)
            .then(|| FirstConnection::new(self.limits.client_idle_timeout));
        Ok(Arc::new(Prepared { peer, first }))
    }
}

/// What the proxy keeps for one backend.
struct Prepared {
    peer: HttpPeer,
    /// For backends that may speak HTTP/2: their streams share connections.
    first: Option<FirstConnection>,
}

/// The peer of a backend at `addr` reached with `t`.
fn template(addr: SocketAddr, t: &Transport, limits: &Limits) -> Result<HttpPeer, String> {
    let mut peer = match &t.tls {
        Some(tls) => HttpPeer::new(addr, true, tls.server_name.clone()),
        None => HttpPeer::new(addr, false, String::new()),
    };
    let o = &mut peer.options;
    o.connection_timeout = Some(limits.upstream_connect_timeout);
    o.read_timeout = Some(limits.upstream_read_timeout);
    o.idle_timeout = Some(limits.client_idle_timeout);
    match t.protocol {
        BackendProtocol::Http1 => {}
        BackendProtocol::H2c => {
            // HTTP/2 only: over plain TCP there is no ALPN, so Pingora takes it on trust.
            o.alpn = ALPN::H2;
            o.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        BackendProtocol::Https => {
            o.alpn = ALPN::H2H1;
            o.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
    }
    if let Some(tls) = &t.tls {
        // Pingora verifies chain and name unless told not to; a failure is a connect failure.
        o.verify_cert = tls.verify;
        o.verify_hostname = tls.verify;
        if let Some(roots) = &tls.roots {
            let ca: Vec<WrappedX509> = roots
                .iter()
                .map(|der| {
                    // Pingora's parser panics on a certificate it cannot read: check first.
                    x509_parser::parse_x509_certificate(der)
                        .map_err(|e| format!("a trust root does not parse: {e}"))?;
                    Ok(WrappedX509::new(der.to_vec(), parse_x509))
                })
                .collect::<Result<_, String>>()?;
            o.ca = Some(Arc::from(ca));
        }
    }
    Ok(peer)
}

/// The peer for one request to `backend`: a copy of its template. A WebSocket (HTTP/1.1
/// upgrade) request to an `https` backend offers only http/1.1, since the upgrade does not
/// exist in HTTP/2.
///
/// While an HTTP/2 backend has no connection, one request opens it and the others wait here
/// (at most the connect timeout) to share it: Pingora's pool hands out only connections that
/// exist, so a burst of 100 streams would otherwise open about half as many connections. The
/// opener gets the [`Opening`] to hold until [`connected`] or a failure.
pub async fn for_request(
    backend: &UpstreamBackend,
    upgrade: bool,
    limits: &Limits,
) -> (Box<HttpPeer>, Option<Opening>) {
    let Some(prepared) = backend.peer.downcast_ref::<Prepared>() else {
        // Only a backend without a published transport (not routable) lacks a template.
        let peer = template(backend.addr, &Transport::default(), limits)
            .expect("a plain HTTP/1.1 peer needs nothing that can fail");
        return (Box::new(peer), None);
    };
    let mut peer = prepared.peer.clone();
    if upgrade && peer.options.alpn == ALPN::H2H1 {
        peer.options.alpn = ALPN::H1;
        return (Box::new(peer), None);
    }
    let opening = match &prepared.first {
        Some(first) => first.wait(limits.upstream_connect_timeout).await,
        None => None,
    };
    (Box::new(peer), opening)
}

/// A request to `backend` has its connection: the ones waiting may share it.
pub fn connected(backend: &UpstreamBackend) {
    if let Some(first) = first_connection(backend) {
        first.connected();
    }
}

/// A connection to `backend` failed: the next requests wait for a new one again.
pub fn lost(backend: &UpstreamBackend) {
    if let Some(first) = first_connection(backend) {
        first.lost();
    }
}

fn first_connection(backend: &UpstreamBackend) -> Option<&FirstConnection> {
    backend.peer.downcast_ref::<Prepared>()?.first.as_ref()
}

#[cfg(test)]
mod tests;
