//! What the request path logs: one access event per request.

use super::forwarded::{client_ip, client_request_id};
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
    let client_ip = ctx.client_ip.take().or_else(|| client_ip(session));
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
