//! The Pingora request path: Host routing over the published [`RouteTable`], backend choice,
//! connect-failure retries, forwarding headers and the access log. It never awaits an actor.

mod host;
mod text;

pub use host::normalize_host;
use text::{IpText, RequestId};

use crate::config::Limits;
use crate::telemetry::access::AccessRecord;
use crate::tls::client_sni;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vhost_actors::cert::AcmeChallenges;
use vhost_actors::metrics::{RouteMetrics, UNKNOWN};
use vhost_actors::model::Tag;
use vhost_actors::routing::{sticky_cookie, Affinity, Lease, Route, RouteTable, STICKY_COOKIE};
use vhost_actors::upstream::UpstreamBackend;

/// Connect attempts per request: the first plus at most two retries.
const MAX_ATTEMPTS: usize = 3;

const NOT_FOUND_BODY: &str = "404 unknown host: no virtual host is configured for this name\n";
const MISDIRECTED_BODY: &str =
    "421 misdirected request: the Host does not match the TLS server name\n";
const NO_BACKEND_BODY: &str = "503 no backend available: every backend of this domain is down\n";

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

/// Decrements the in-flight count when a request ends, however it ends.
pub struct InFlight(Arc<AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the phases of one request share.
pub struct RequestCtx {
    route: Option<Arc<Route>>,
    /// The backend of the current attempt and its in-flight slot, given back when the request
    /// ends or a retry replaces it.
    backend: Option<Lease>,
    tried: [Option<Arc<UpstreamBackend>>; MAX_ATTEMPTS],
    attempts: usize,
    /// A backend sent a response header.
    from_backend: bool,
    /// The id this proxy gave the request (when the client sent none).
    request_id: Option<RequestId>,
    /// The client's address as text, once rendered.
    client_ip: Option<IpText>,
    body_bytes: u64,
    start: Instant,
    /// The tag the answer's sticky cookie names (a split domain's first answer to a client).
    sticky_tag: Option<Tag>,
    _in_flight: InFlight,
}

impl RequestCtx {
    fn was_tried(&self, b: &UpstreamBackend) -> bool {
        self.tried[..self.attempts]
            .iter()
            .flatten()
            .any(|t| std::ptr::eq(Arc::as_ptr(t), b))
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
            client_ip: None,
            body_bytes: 0,
            start: Instant::now(),
            sticky_tag: None,
            _in_flight: InFlight(Arc::clone(&self.opts.in_flight)),
        }
    }

    /// No response compression: skip the disabled default module and its per-request cost.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        session.set_keepalive(Some(self.opts.limits.client_idle_timeout.as_secs()));
        if let Listener::Plain {
            challenges: Some(challenges),
            ..
        } = &self.opts.listener
        {
            if AcmeChallenges::is_challenge_path(session.req_header().uri.path()) {
                match challenges.respond(session.req_header().uri.path()) {
                    Some(key_auth) => respond(session, 200, key_auth.into()).await?,
                    None => {
                        respond(session, 404, Bytes::from_static(b"unknown challenge\n")).await?
                    }
                }
                return Ok(true);
            }
        }
        let host = request_host(session.req_header()).map(normalize_host);
        let route = host.as_deref().and_then(|h| self.table.lookup(h));
        let Some(route) = route else {
            respond(session, 404, Bytes::from_static(NOT_FOUND_BODY.as_bytes())).await?;
            return Ok(true);
        };
        let host = host.expect("a route was found for it");
        match &self.opts.listener {
            Listener::Plain {
                https_port: Some(port),
                ..
            } if route.http_to_https => {
                let location = https_location(&host, *port, session.req_header());
                ctx.route = Some(route);
                redirect(session, &location).await?;
                return Ok(true);
            }
            Listener::Tls => {
                let sni = session
                    .digest()
                    .and_then(|d| d.ssl_digest.as_deref())
                    .and_then(client_sni);
                if sni.is_some_and(|sni| sni != host) {
                    ctx.route = Some(route);
                    respond(
                        session,
                        421,
                        Bytes::from_static(MISDIRECTED_BODY.as_bytes()),
                    )
                    .await?;
                    return Ok(true);
                }
            }
            Listener::Plain { .. } => {}
        }
        let route = choose_lane(session.req_header(), route, ctx);
        if !route.pool.has_routable(|_| false) {
            ctx.route = Some(route);
            respond(session, 503, Bytes::from_static(NO_BACKEND_BODY.as_bytes())).await?;
            return Ok(true);
        }
        ctx.route = Some(route);
        let too_large = content_length(session.req_header())
            .is_some_and(|len| len > self.opts.limits.max_request_body_bytes);
        if too_large {
            session
                .respond_error_with_body(413, Bytes::from_static(b"413 request body too large\n"))
                .await?;
            return Ok(true);
        }
        Ok(false)
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
            client: || Some(session.client_addr()?.as_inet()?.ip()),
            headers: &session.req_header().headers,
        };
        let Some(backend) = route.pick(&request, |b| ctx.was_tried(b)) else {
            return Error::e_explain(HTTPStatus(503), "no backend available");
        };
        let mut peer = HttpPeer::new(backend.addr, false, String::new());
        peer.options.connection_timeout = Some(self.opts.limits.upstream_connect_timeout);
        peer.options.read_timeout = Some(self.opts.limits.upstream_read_timeout);
        peer.options.idle_timeout = Some(self.opts.limits.client_idle_timeout);
        if ctx.attempts > 0 {
            route.metrics.record_retry();
        }
        if ctx.attempts < MAX_ATTEMPTS {
            ctx.tried[ctx.attempts] = Some(Arc::clone(backend.backend()));
            ctx.attempts += 1;
        }
        ctx.backend = Some(backend);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
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

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(b) = &ctx.backend {
            b.health.record_passive_success();
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
        // Absolute-form targets (Pingora has checked them against Host) go upstream in
        // origin form.
        if is_absolute_form(upstream.raw_path()) {
            let pq = upstream
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .parse::<http::Uri>()
                .map_err(|e| Error::because(InvalidHTTPHeader, "request target", e))?;
            upstream.set_uri(pq);
        }
        if ctx.client_ip.is_none() {
            ctx.client_ip = client_ip(session);
        }
        // One id per request: a retry (a fresh copy of the client's header) sends the same one.
        if ctx.request_id.is_none() && client_request_id(upstream).is_none() {
            ctx.request_id = Some(RequestId::next());
        }
        // The client's Host value as it is (a shared buffer, no copy), or the authority of an
        // absolute-form target.
        let host = match session.req_header().uri.authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => upstream.headers.get(header::HOST).cloned(),
        };
        add_forwarding_headers(
            upstream,
            Forwarding {
                request_id: ctx.request_id.as_ref(),
                client_ip: ctx.client_ip.as_ref(),
                proto: self.proto,
                host,
            },
        )
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match e.etype() {
            HTTPStatus(code) => *code,
            ReadTimedout if e.esource() == &ErrorSource::Upstream => 504,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    WriteError | ReadError | ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            let body: &'static [u8] = match code {
                503 => NO_BACKEND_BODY.as_bytes(),
                502 => b"502 bad gateway: the backend could not be reached\n",
                504 => b"504 gateway timeout: the backend did not answer in time\n",
                413 => b"413 request body too large\n",
                _ => b"",
            };
            let _ = session
                .respond_error_with_body(code, Bytes::from_static(body))
                .await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        let route = ctx.route.as_deref();
        route
            .map_or(&self.opts.unknown, |r| &r.metrics)
            .record(status, ctx.from_backend, elapsed);
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
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
}

impl VhostProxy {
    /// Counts a failed attempt against the current backend; ejects it at the threshold.
    fn record_failure(&self, ctx: &RequestCtx) {
        if let Some(r) = &ctx.route {
            r.metrics.record_failed_attempt();
        }
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

/// A split domain's request takes the route of one of its tags: the one its sticky cookie names
/// (while that tag is in the split), else the next by weight. Other domains keep their route.
fn choose_lane(req: &RequestHeader, route: Arc<Route>, ctx: &mut RequestCtx) -> Arc<Route> {
    let Some(split) = &route.split else {
        return route;
    };
    let cookie = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .find_map(|v| sticky_cookie(v.as_bytes()));
    let choice = split.choose(cookie);
    if choice.set_cookie {
        ctx.sticky_tag = Some(choice.route.tag.clone());
    }
    choice.route
}

/// The `X-Request-Id` the client sent, if any.
fn client_request_id(req: &RequestHeader) -> Option<&str> {
    req.headers.get(&X_REQUEST_ID)?.to_str().ok()
}

/// Header names the proxy adds, as constants: no parsing or allocation per request.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the proxy adds to a request on its way upstream.
struct Forwarding<'a> {
    /// A new `X-Request-Id` (none when the client sent one).
    request_id: Option<&'a RequestId>,
    client_ip: Option<&'a IpText>,
    proto: &'static str,
    host: Option<HeaderValue>,
}

/// Adds `X-Request-Id` (when new) and the `X-Forwarded-*` headers.
///
/// They go straight into the header map, with room reserved once: inserting through
/// [`RequestHeader::insert_header`] parses and copies each name and grows the map and Pingora's
/// header-case map one entry at a time, which cost about a tenth of the proxy's own
/// instructions per request. Header names therefore go upstream in canonical case (standard
/// names title-cased, others lowercase, as HAProxy sends them); HTTP header names are
/// case-insensitive. The request target is kept byte for byte.
fn add_forwarding_headers(upstream: &mut RequestHeader, add: Forwarding<'_>) -> Result<()> {
    // Kept when the URI alone would not reproduce it: a target Pingora stores verbatim (such as
    // an authority-form or unclassifiable one), since the header is rebuilt from its URI below.
    // Origin-form targets, raw UTF-8 included, round-trip through the URI.
    let from_uri = upstream
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().as_bytes());
    let raw_target = (from_uri != Some(upstream.raw_path())).then(|| upstream.raw_path().to_vec());
    let send_end_stream = upstream.send_end_stream();
    let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(upstream, empty));
    let headers = &mut parts.headers;
    headers.reserve(4);
    if let Some(id) = add.request_id {
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(id.as_str()).expect("hex digits"),
        );
    }
    if let Some(ip) = add.client_ip {
        let xff = match headers.get(&X_FORWARDED_FOR).map(|v| v.to_str()) {
            Some(Ok(prev)) => HeaderValue::from_str(&format!("{prev}, {}", ip.as_str())),
            _ => HeaderValue::from_str(ip.as_str()),
        };
        headers.insert(
            X_FORWARDED_FOR,
            xff.map_err(|e| Error::because(InvalidHTTPHeader, "x-forwarded-for", e))?,
        );
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(add.proto));
    if let Some(host) = add.host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    *upstream = RequestHeader::from(parts);
    if let Some(raw) = raw_target {
        upstream.set_raw_path(&raw)?;
    }
    if let Some(end) = send_end_stream {
        upstream.set_send_end_stream(end);
    }
    Ok(())
}

/// The client's IP address as text (none for a Unix-socket client).
fn client_ip(session: &Session) -> Option<IpText> {
    let ip = session.client_addr()?.as_inet()?.ip();
    Some(IpText::new(ip))
}

/// The request's host: the authority of an absolute-form target, else the `Host` header.
fn request_host(req: &RequestHeader) -> Option<&str> {
    if let Some(authority) = req.uri.authority() {
        return Some(authority.as_str());
    }
    req.headers.get(header::HOST)?.to_str().ok()
}

fn is_absolute_form(target: &[u8]) -> bool {
    let scheme_end = target.iter().position(|&b| b == b':').unwrap_or(0);
    scheme_end > 0 && target[scheme_end..].starts_with(b"://")
}

fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Writes a small plain-text response and keeps the connection open.
async fn respond(session: &mut Session, status: u16, body: Bytes) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(2))?;
    resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

async fn redirect(session: &mut Session, location: &str) -> Result<()> {
    let mut resp = ResponseHeader::build(301, Some(2))?;
    resp.insert_header(header::LOCATION, location)?;
    resp.insert_header(header::CONTENT_LENGTH, 0)?;
    session.write_response_header(Box::new(resp), true).await
}

/// `https://host[:port]/path?query` for an `http_to_https` redirect.
fn https_location(host: &str, port: u16, req: &RequestHeader) -> String {
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    }
}
