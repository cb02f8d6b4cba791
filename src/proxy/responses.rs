//! Answers the proxy writes itself: short plain-text errors, `http_to_https` redirects, and the
//! status a failed request gets.

use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;

/// Unknown `Host`.
pub const NOT_FOUND: &[u8] = b"404 unknown host: no virtual host is configured for this name\n";
/// `Host` and SNI disagree.
pub const MISDIRECTED: &[u8] =
    b"421 misdirected request: the Host does not match the TLS server name\n";
/// Every backend of the domain is down (or at its cap).
pub const NO_BACKEND: &[u8] =
    b"503 no backend available: every backend of this domain is down or at its connection limit\n";
/// The client's address is denied by the domain's access lists.
pub const FORBIDDEN: &[u8] =
    b"403 forbidden: this domain does not accept requests from your address\n";
/// The client is over the domain's rate limit.
pub const TOO_MANY: &[u8] =
    b"429 too many requests: this domain's rate limit per client address is exceeded\n";
/// The request body is over `max_request_body_bytes`.
pub const BODY_TOO_LARGE: &[u8] = b"413 request body too large\n";
/// An ACME challenge path whose token is not (or no longer) published.
pub const UNKNOWN_CHALLENGE: &[u8] = b"unknown challenge\n";

/// Writes a small plain-text response and keeps the connection open.
pub async fn respond(session: &mut Session, status: u16, body: Bytes) -> Result<()> {
    let head = text_head(status, body.len(), 0)?;
    send_text(session, head, body).await
}

/// The head of a plain-text answer of `len` bytes, with room for `extra` more headers.
fn text_head(status: u16, len: usize, extra: usize) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(2 + extra))?;
    resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(header::CONTENT_LENGTH, len)?;
    Ok(resp)
}

async fn send_text(session: &mut Session, head: ResponseHeader, body: Bytes) -> Result<()> {
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(body), true).await
}

/// [`respond`] with a static body.
pub async fn respond_static(session: &mut Session, status: u16, body: &'static [u8]) -> Result<()> {
    respond(session, status, Bytes::from_static(body)).await
}

/// A `301` to `location` with an empty body.
pub async fn redirect(session: &mut Session, location: &str) -> Result<()> {
    let mut resp = ResponseHeader::build(301, Some(2))?;
    resp.insert_header(header::LOCATION, location)?;
    resp.insert_header(header::CONTENT_LENGTH, 0)?;
    session.write_response_header(Box::new(resp), true).await
}

/// `https://host[:port]/path?query` for an `http_to_https` redirect.
pub fn https_location(host: &str, port: u16, req: &RequestHeader) -> String {
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    }
}

/// The status a request that could not be proxied gets; `0` when the client is gone and
/// nothing can be sent.
pub fn failure_status(e: &Error) -> u16 {
    match e.etype() {
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
    }
}

/// The body of an error answer with `status`.
pub fn failure_body(status: u16) -> &'static [u8] {
    match status {
        503 => NO_BACKEND,
        502 => b"502 bad gateway: the backend could not be reached\n",
        504 => b"504 gateway timeout: the backend did not answer in time\n",
        413 => BODY_TOO_LARGE,
        _ => b"",
    }
}

/// An answer the proxy gives instead of proxying the request.
pub enum Refusal {
    /// A plain-text answer; the connection stays open.
    Text(u16, &'static [u8]),
    /// An `http_to_https` redirect to this location.
    Redirect(String),
    /// An error answer after which the connection is closed.
    Close(u16, &'static [u8]),
    /// A `429` whose `Retry-After` is this many seconds; the connection stays open.
    Limited(u64),
}

impl Refusal {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Text(status, _) | Refusal::Close(status, _) => *status,
            Refusal::Redirect(_) => 301,
            Refusal::Limited(_) => 429,
        }
    }

    /// The answer's body.
    pub fn body(&self) -> &'static [u8] {
        match self {
            Refusal::Text(_, body) | Refusal::Close(_, body) => body,
            Refusal::Redirect(_) => b"",
            Refusal::Limited(_) => TOO_MANY,
        }
    }

    /// Writes the answer.
    pub async fn send(self, session: &mut Session) -> Result<()> {
        match self {
            Refusal::Text(status, body) => respond_static(session, status, body).await,
            Refusal::Redirect(location) => redirect(session, &location).await,
            Refusal::Limited(retry_after) => {
                let mut head = text_head(429, TOO_MANY.len(), 1)?;
                head.insert_header(header::RETRY_AFTER, retry_after)?;
                send_text(session, head, Bytes::from_static(TOO_MANY)).await
            }
            Refusal::Close(status, body) => {
                session
                    .respond_error_with_body(status, Bytes::from_static(body))
                    .await
            }
        }
    }
}
