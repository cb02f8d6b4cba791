//! The Pingora peer of each backend, built once when the registry publishes the backend (its
//! protocol, TLS name, verification and trust roots, timeouts), and the per-request copy of it.

mod gate;

pub use gate::Opening;

use crate::config::Limits;
use gate::ConnectionGate;
use pingora::prelude::*;
use pingora::upstreams::peer::ALPN;
use pingora::utils::tls::{parse_x509, WrappedX509};
use pingora::RetryType;
use std::net::SocketAddr;
use std::sync::Arc;
use vhost_actors::model::BackendProtocol;
use vhost_actors::upstream::{PeerPreparer, PeerTemplate, Transport, UpstreamBackend};

/// Concurrent streams one upstream HTTP/2 connection may carry before Pingora opens another
/// (its default is one: a connection per request). The backend's own
/// SETTINGS_MAX_CONCURRENT_STREAMS is the real limit (100 to 250 in common servers), so this is
/// only a ceiling for servers that set none; a ceiling at 100 made bursts of 100 streams open
/// new connections while the previous burst's streams were still being released.
const H2_STREAMS_PER_CONNECTION: usize = 1000;

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
        let gate = (t.protocol != BackendProtocol::Http1).then(ConnectionGate::default);
        Ok(Arc::new(Prepared { peer, gate }))
    }
}

/// What the proxy keeps for one backend.
struct Prepared {
    peer: HttpPeer,
    /// For backends that may speak HTTP/2: their streams share connections.
    gate: Option<ConnectionGate>,
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
/// For an HTTP/2 backend the request also waits (at most the connect timeout) for its turn to
/// take a stream from Pingora's pool ([`gate`]); it holds the [`Opening`] until
/// `connected_to_upstream` or a connect failure.
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
    let opening = match &prepared.gate {
        Some(gate) => gate.enter(limits.upstream_connect_timeout).await,
        None => None,
    };
    (Box::new(peer), opening)
}

/// Whether an HTTP/2 backend turned the request away before processing it: its connection
/// went away (GOAWAY without error) or it refused the stream (REFUSED_STREAM). Pingora marks
/// exactly these HTTP/2 errors as safe to retry, whatever the method (RFC 9113, 8.7).
pub fn refused_unprocessed(e: &Error) -> bool {
    e.etype() == &H2Error && matches!(e.retry, RetryType::Decided(true))
}

/// Records the HTTP version `backend` answered in: an `https` backend that speaks only
/// HTTP/1.1 needs a connection per request, which must not wait for each other.
pub fn answered(backend: &UpstreamBackend, version: http::Version) {
    let gate = backend
        .peer
        .downcast_ref::<Prepared>()
        .and_then(|p| p.gate.as_ref());
    if let Some(gate) = gate {
        gate.answered(version == http::Version::HTTP_2);
    }
}

#[cfg(test)]
mod tests;
