//! The Pingora request path: requests refused before routing, Host routing over the published
//! [`RouteTable`], backend choice, connect-failure retries, forwarding headers and the access
//! log. It never awaits an actor.

mod admission;
mod client_addr;
mod client_stream;
mod context;
mod events;
mod forwarded;
mod grpc;
mod host;
mod listener;
mod peer;
mod refusals;
mod responses;
mod split;
mod text;

pub use context::{InFlight, RequestCtx};

pub use client_stream::ClientLimits;
pub use forwarded::came_through_here;
pub use host::normalize_host;
pub use listener::GuardedProxy;
pub use peer::PeerBuilder;

use crate::config::Limits;
use async_trait::async_trait;
use bytes::Bytes;
use forwarded::{client_request_id, Forwarding};
use host::request_host;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use responses::Refusal;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use text::RequestId;
use vhost_actors::cert::AcmeChallenges;
use vhost_actors::metrics::RouteMetrics;
use vhost_actors::model::IpNet;
use vhost_actors::routing::{Affinity, RouteTable, STICKY_COOKIE};

/// Connect attempts per request: the first plus at most two retries.
const MAX_ATTEMPTS: usize = 3;

/// Which listener a proxy instance serves.
pub enum Listener {
    /// Plain HTTP: answers ACME challenges and redirects `http_to_https` domains.
    Plain {
        /// The HTTPS listener's port, when there is one (redirect target).
        https_port: Option<u16>,
        /// Published HTTP-01 tokens, when ACME is on.
        challenges: Option<AcmeChallenges>,
    },
    /// HTTPS: the `Host` must match the SNI.
    Tls,
}

/// Everything a proxy instance needs besides the routing view.
pub struct ProxyOptions {
    /// Limits and timeouts.
    pub limits: Limits,
    /// Failed attempts in a row that eject a backend until its probe passes again.
    pub eject_after: u32,
    /// Where requests for unknown hosts are counted.
    pub unknown: Arc<RouteMetrics>,
    /// Requests in flight (for draining and the gauge).
    pub in_flight: Arc<AtomicI64>,
    /// The listener served.
    pub listener: Listener,
    /// Peers whose `X-Forwarded-For` names the client (empty: none).
    pub trusted_proxies: Arc<[IpNet]>,
}

/// The reverse proxy behind one listener.
pub struct VhostProxy {
    table: Arc<RouteTable>,
    opts: ProxyOptions,
    proto: &'static str,
}

impl VhostProxy {
    /// A proxy routing by `table`.
    pub fn new(table: Arc<RouteTable>, opts: ProxyOptions) -> Self {
        let proto = match opts.listener {
            Listener::Plain { .. } => "http",
            Listener::Tls => "https",
        };
        Self { table, opts, proto }
    }
}

#[async_trait]
impl ProxyHttp for VhostProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        self.opts.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestCtx {
            route: None,
            backend: None,
            tried: Default::default(),
            attempts: 0,
            from_backend: false,
            request_id: None,
            client: None,
            forwarded_for: None,
            client_ip: None,
            refusal: None,
            grpc_failure: None,
            attempt_failed: false,
            opening: None,
            body_bytes: 0,
            start: Instant::now(),
            sticky_tag: None,
            _in_flight: InFlight(Arc::clone(&self.opts.in_flight)),
        }
    }

    /// No response compression: skip the disabled default module and its per-request cost.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let head = admission::report_head(session);
        let max_head = self.opts.limits.max_request_header_bytes;
        ctx.refusal = admission::refusal(session.req_header(), &head, max_head);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let client = client_addr::client_address(
            peer,
            &session.req_header().headers,
            &self.opts.trusted_proxies,
        );
        ctx.client = client.ip;
        ctx.forwarded_for = client.forwarded_for;
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(refusal) = ctx.refusal.take() {
            return refusal.send(session).await.map(|()| true);
        }
        if self.answer_challenge(session).await? {
            return Ok(true);
        }
        let host = request_host(session.req_header()).map(normalize_host);
        let route = host.as_deref().and_then(|h| self.table.lookup(h));
        let (route, refusal) = match (route, host.as_deref()) {
            (Some(route), Some(host)) => match refusals::access_refusal(&route, ctx.client)
                .or_else(|| self.listener_refusal(session, host, &route))
            {
                Some(refusal) => (Some(route), Some(refusal)),
                None => {
                    let lane = split::choose_lane(session.req_header(), route, ctx);
                    let refusal = self.pool_refusal(session, &lane);
                    (Some(lane), refusal)
                }
            },
            // An unknown host: 421 when the SNI named another name, else 404.
            (None, Some(host)) => (
                None,
                Some(
                    self.misdirected(session, host)
                        .unwrap_or(Refusal::Text(404, responses::NOT_FOUND)),
                ),
            ),
            (_, None) => (None, Some(Refusal::Text(404, responses::NOT_FOUND))),
        };
        ctx.route = route;
        match refusal {
            Some(refusal @ (Refusal::Text(..) | Refusal::Limited(_)))
                if grpc::is_grpc(session.req_header()) =>
            {
                let code = refusal.status();
                ctx.grpc_failure = Some(code);
                let why = std::str::from_utf8(refusal.body()).unwrap_or_default();
                grpc::respond_error(session, code, why).await.map(|()| true)
            }
            Some(refusal) => refusal.send(session).await.map(|()| true),
            None => Ok(false),
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > self.opts.limits.max_request_body_bytes {
                return Error::e_explain(HTTPStatus(413), "request body too large");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.as_ref() else {
            return Error::e_explain(InternalError, "no route chosen");
        };
        let request = Affinity {
            client: || ctx.client,
            headers: &session.req_header().headers,
        };
        let Some(backend) = route.pick(&request, |b| ctx.was_tried(b)) else {
            return Error::e_explain(HTTPStatus(503), "no backend available");
        };
        let (peer, opening) =
            peer::for_request(&backend, session.is_upgrade_req(), &self.opts.limits).await;
        ctx.opening = opening;
        if ctx.attempts > 0 {
            route.metrics.record_retry();
        }
        if ctx.attempts < MAX_ATTEMPTS {
            ctx.tried[ctx.attempts] = Some(Arc::clone(backend.backend()));
            ctx.attempts += 1;
        }
        ctx.backend = Some(backend);
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.opening = None;
        self.record_failure(ctx);
        let another = ctx
            .route
            .as_ref()
            .is_some_and(|r| r.pool.has_routable(|b| ctx.was_tried(b)));
        if ctx.attempts < MAX_ATTEMPTS && another {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        if peer::refused_unprocessed(&e) {
            // Routine for HTTP/2 backends (connections are rotated with GOAWAY): the backend did
            // nothing wrong and the request may go again, to the same backend.
            ctx.forget_last_try();
            let mut e = e.more_context(format!("Peer: {peer}"));
            if session.as_ref().retry_buffer_truncated() {
                e.set_retry(false);
            }
            return e;
        }
        if e.esource() == &ErrorSource::Upstream {
            self.record_failure(ctx);
        }
        let mut e = e.more_context(format!("Peer: {peer}"));
        // Pingora's default policy: only idempotent requests with an intact body are retried.
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.opening = None;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(b) = &ctx.backend {
            b.health.record_passive_success();
            peer::answered(b, upstream_response.version);
        }
        if let Some(tag) = ctx.sticky_tag.take() {
            let cookie = format!("{STICKY_COOKIE}={tag}; Path=/; HttpOnly");
            upstream_response.append_header(http::header::SET_COOKIE, cookie)?;
        }
        ctx.from_backend = true;
        Ok(())
    }

    /// The backend has sent its whole answer: its in-flight slot goes back now, not when the
    /// client has taken the answer in.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            if let Some(lease) = &mut ctx.backend {
                lease.finish();
            }
        }
        Ok(None)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        forwarded::to_origin_form(upstream)?;
        if ctx.client_ip.is_none() {
            ctx.client_ip = ctx.client.map(text::IpText::new);
        }
        // One id per request: a retry (a fresh copy of the client's header) sends the same one.
        if ctx.request_id.is_none() && client_request_id(upstream).is_none() {
            ctx.request_id = Some(RequestId::next());
        }
        let host = forwarded::forwarded_host(session.req_header(), upstream);
        forwarded::add_forwarding_headers(
            upstream,
            Forwarding {
                request_id: ctx.request_id.as_ref(),
                client_ip: ctx.client_ip.as_ref(),
                forwarded_for: ctx.forwarded_for.clone(),
                proto: self.proto,
                host,
            },
        )
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = responses::failure_status(e);
        if code > 0 {
            let body = responses::failure_body(code);
            if grpc::is_grpc(session.req_header()) {
                ctx.grpc_failure = Some(code);
                let why = std::str::from_utf8(body).unwrap_or_default();
                let _ = grpc::respond_error(session, code, why).await;
            } else {
                let _ = session
                    .respond_error_with_body(code, Bytes::from_static(body))
                    .await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Pingora's own line for a failed request is an ERROR whatever the cause; ours has the
    /// level the cause deserves.
    fn suppress_error_log(&self, session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        events::failure(session, e, responses::failure_status(e));
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(client) = admission::client_stream(session) {
            client.answer_sent();
        }
        let written = session.response_written().map_or(0, |r| r.status.as_u16());
        let status = ctx.grpc_failure.unwrap_or(written);
        let elapsed = ctx.start.elapsed();
        let route = ctx.route.as_deref();
        route.map_or(&self.opts.unknown, |r| &r.metrics).record(
            status,
            ctx.from_backend,
            ctx.attempt_failed,
            elapsed,
        );
        if tracing::enabled!(target: "access", tracing::Level::INFO) {
            events::access(session, ctx, status, elapsed);
        }
    }
}

impl VhostProxy {
    /// Counts a failed attempt against the current backend; ejects it at the threshold.
    fn record_failure(&self, ctx: &mut RequestCtx) {
        ctx.attempt_failed = true;
        let Some(b) = &ctx.backend else { return };
        if b.health.record_passive_failure(self.opts.eject_after) {
            tracing::warn!(
                backend = &*b.id,
                addr = %b.addr,
                "backend ejected after repeated failures on live traffic"
            );
        }
    }
}
