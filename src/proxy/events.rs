//! What the request path logs: one access event per request, and each failed request at the
//! level its cause deserves (what clients do is `debug`, a slow or unreachable backend `warn`,
//! only the proxy's own faults `error`).

use super::forwarded::client_request_id;
use super::text::{IpText, RequestId};
use super::RequestCtx;
use crate::telemetry::access::AccessRecord;
use pingora::prelude::*;
use std::time::Duration;
use vhost_actors::metrics::UNKNOWN;

/// Writes the request's access-log event.
pub fn access(session: &Session, ctx: &mut RequestCtx, status: u16, elapsed: Duration) {
    let req = session.req_header();
    // Ours (sent upstream), else the client's, else a fresh one (never proxied).
    let fresh;
    let request_id = match &ctx.request_id {
        Some(id) => id.as_str(),
        None => match client_request_id(req) {
            Some(client) => client,
            None => {
                fresh = RequestId::next();
                fresh.as_str()
            }
        },
    };
    // Rendered for X-Forwarded-For when the request went upstream.
    let client_ip = ctx.client_ip.take().or_else(|| ctx.client.map(IpText::new));
    let route = ctx.route.as_deref();
    crate::telemetry::access::write(&AccessRecord {
        request_id,
        domain: route.map_or(UNKNOWN, |r| r.domain.as_str()),
        tag: route.map_or("-", |r| r.tag.as_str()),
        backend: ctx.backend.as_deref().map_or("-", |b| &*b.id),
        method: req.method.as_str(),
        path: req.uri.path(),
        status,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        client_ip: client_ip.as_ref().map_or("-", IpText::as_str),
        retries: ctx.attempts.saturating_sub(1) as u64,
    });
}

/// How much a failed request matters to an operator.
#[derive(Debug, PartialEq, Eq)]
enum Weight {
    /// The client's doing: malformed, aborted, too large.
    Client,
    /// A body over the limit: worth seeing when limits are tuned.
    OverLimit,
    /// A backend that failed, timed out or was not there.
    Backend,
    /// The proxy's own fault.
    Proxy,
}

fn weigh(e: &Error) -> Weight {
    match e.etype() {
        HTTPStatus(413) => Weight::OverLimit,
        HTTPStatus(code) if *code < 500 => Weight::Client,
        HTTPStatus(_) => Weight::Backend,
        _ => match e.esource() {
            ErrorSource::Downstream => Weight::Client,
            ErrorSource::Upstream => Weight::Backend,
            ErrorSource::Internal | ErrorSource::Unset => Weight::Proxy,
        },
    }
}

/// Logs a request that could not be proxied (answered `status`, 0 when the client was gone).
pub fn failure(session: &Session, e: &Error, status: u16) {
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: "pingora_vhost::proxy",
                $level,
                status,
                error = %e,
                request = %session.request_summary(),
                "request not proxied"
            )
        };
    }
    match weigh(e) {
        Weight::Client => event!(tracing::Level::DEBUG),
        Weight::OverLimit => event!(tracing::Level::INFO),
        Weight::Backend => event!(tracing::Level::WARN),
        Weight::Proxy => event!(tracing::Level::ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_weighed_by_cause() {
        let status = |code| Error::new(HTTPStatus(code));
        assert_eq!(weigh(&status(413)), Weight::OverLimit);
        assert_eq!(weigh(&status(400)), Weight::Client);
        assert_eq!(weigh(&status(503)), Weight::Backend);
        let mut e = Error::new(ReadTimedout);
        e.as_up();
        assert_eq!(weigh(&e), Weight::Backend);
        let mut e = Error::new(ConnectionClosed);
        e.as_down();
        assert_eq!(weigh(&e), Weight::Client);
        assert_eq!(weigh(&Error::new(InternalError)), Weight::Proxy);
    }
}
