//! What the phases of one request share, and the guard that counts it in flight.

use super::responses::Refusal;
use super::text::{IpText, RequestId};
use super::MAX_ATTEMPTS;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vhost_actors::model::Tag;
use vhost_actors::routing::{Lease, Route};
use vhost_actors::upstream::UpstreamBackend;

/// Decrements the in-flight count when a request ends, however it ends.
pub struct InFlight(pub(super) Arc<AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the phases of one request share.
pub struct RequestCtx {
    pub(super) route: Option<Arc<Route>>,
    /// The backend of the current attempt and its in-flight slot, given back when the request
    /// ends or a retry replaces it.
    pub(super) backend: Option<Lease>,
    pub(super) tried: [Option<Arc<UpstreamBackend>>; MAX_ATTEMPTS],
    pub(super) attempts: usize,
    /// A backend sent a response header.
    pub(super) from_backend: bool,
    /// The id this proxy gave the request (when the client sent none).
    pub(super) request_id: Option<RequestId>,
    /// The client's address (see [`super::client_addr`]).
    pub(super) client: Option<std::net::IpAddr>,
    /// The `X-Forwarded-For` to send when the address came from a trusted proxy's list.
    pub(super) forwarded_for: Option<http::HeaderValue>,
    /// The client's address as text, once rendered.
    pub(super) client_ip: Option<IpText>,
    /// Why the request is answered before routing, if it is.
    pub(super) refusal: Option<Refusal>,
    /// The HTTP status a gRPC error answer (sent as 200) stands for, for metrics and the log.
    pub(super) grpc_failure: Option<u16>,
    /// An upstream attempt of this request failed (a failed request for a rollback rule, even
    /// when a retry succeeded).
    pub(super) attempt_failed: bool,
    /// Held while this request takes its stream or connection to an HTTP/2 backend.
    pub(super) opening: Option<super::peer::Opening>,
    pub(super) body_bytes: u64,
    pub(super) start: Instant,
    /// The tag the answer's sticky cookie names (a split domain's first answer to a client).
    pub(super) sticky_tag: Option<Tag>,
    pub(super) _in_flight: InFlight,
}

impl RequestCtx {
    /// Lets the backend of the last attempt be chosen again, its in-flight slot given back (a
    /// backend capped at one would otherwise be full for its own retry).
    pub(super) fn forget_last_try(&mut self) {
        if let Some(slot) = self
            .attempts
            .checked_sub(1)
            .and_then(|i| self.tried.get_mut(i))
        {
            *slot = None;
        }
        if let Some(lease) = &mut self.backend {
            lease.finish();
        }
    }

    pub(super) fn was_tried(&self, b: &UpstreamBackend) -> bool {
        self.tried[..self.attempts]
            .iter()
            .flatten()
            .any(|t| std::ptr::eq(Arc::as_ptr(t), b))
    }
}
