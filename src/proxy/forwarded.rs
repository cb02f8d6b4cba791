//! What a request carries upstream besides the client's own headers: `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Request-Id`, this proxy's `Via` entry, and the
//! origin-form target.

use super::text::{IpText, RequestId};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use std::sync::OnceLock;

/// Header names the proxy adds, as constants: no parsing or allocation per request.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the proxy adds to a request on its way upstream.
pub struct Forwarding<'a> {
    /// A new `X-Request-Id` (none when the client sent one).
    pub request_id: Option<&'a RequestId>,
    /// The client's address.
    pub client_ip: Option<&'a IpText>,
    /// The whole `X-Forwarded-For` to send, when a trusted proxy's list named the client.
    pub forwarded_for: Option<HeaderValue>,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The value of `X-Forwarded-Host`.
    pub host: Option<HeaderValue>,
}

/// The longest client `X-Request-Id` that is kept.
const MAX_REQUEST_ID: usize = 128;

/// The `X-Request-Id` the client sent, when it is one value of at most 128 characters of
/// `A-Za-z0-9._:-`: anything else (a huge value, quotes, spaces) is replaced, so it never
/// reaches a backend or a log line.
pub fn client_request_id(req: &RequestHeader) -> Option<&str> {
    let mut values = req.headers.get_all(&X_REQUEST_ID).iter();
    let id = values.next()?.as_bytes();
    let plain = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
    let ok = values.next().is_none()
        && !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id.iter().all(plain);
    ok.then(|| std::str::from_utf8(id).expect("ASCII"))
}

/// This process's `Via` entry, `1.1 pingora-vhost-<16 hex digits>`, unique per start.
fn via() -> &'static (HeaderValue, String) {
    static VIA: OnceLock<(HeaderValue, String)> = OnceLock::new();
    VIA.get_or_init(|| {
        let token = format!("pingora-vhost-{}", RequestId::next().as_str());
        let value = HeaderValue::from_str(&format!("1.1 {token}")).expect("ASCII");
        (value, token)
    })
}

/// Whether a request (to the proxy or to its admin API) already passed through this process:
/// its `Via` names this proxy's entry.
pub fn came_through_here(headers: &HeaderMap) -> bool {
    let token = via().1.as_bytes();
    headers
        .get_all(header::VIA)
        .iter()
        .any(|v| memchr::memmem::find(v.as_bytes(), token).is_some())
}

/// The client's `Host` value as it is (a shared buffer, no copy), or the authority of an
/// absolute-form target.
pub fn forwarded_host(client: &RequestHeader, upstream: &RequestHeader) -> Option<HeaderValue> {
    match client.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => upstream.headers.get(header::HOST).cloned(),
    }
}

/// Absolute-form targets (Pingora has checked them against `Host`) go upstream in origin form.
pub fn to_origin_form(upstream: &mut RequestHeader) -> Result<()> {
    if !is_absolute_form(upstream.raw_path()) {
        return Ok(());
    }
    let pq = upstream
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse::<http::Uri>()
        .map_err(|e| Error::because(InvalidHTTPHeader, "request target", e))?;
    upstream.set_uri(pq);
    Ok(())
}

fn is_absolute_form(target: &[u8]) -> bool {
    let scheme_end = target.iter().position(|&b| b == b':').unwrap_or(0);
    scheme_end > 0 && target[scheme_end..].starts_with(b"://")
}

/// Adds `Via`, `X-Request-Id` (when new) and the `X-Forwarded-*` headers.
///
/// They go straight into the header map, with room reserved once: inserting through
/// [`RequestHeader::insert_header`] parses and copies each name and grows the map and Pingora's
/// header-case map one entry at a time, a large share of the proxy's own work per request.
/// Header names therefore go upstream in canonical case (standard names title-cased, others
/// lowercase, as HAProxy sends them); HTTP header names are case-insensitive. The request target
/// is kept byte for byte.
pub fn add_forwarding_headers(upstream: &mut RequestHeader, add: Forwarding<'_>) -> Result<()> {
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
    headers.reserve(5);
    // After the client's own entries: a loop back to this proxy is then seen (508).
    headers.append(header::VIA, via().0.clone());
    if let Some(id) = add.request_id {
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(id.as_str()).expect("hex digits"),
        );
    }
    if let Some(chain) = add.forwarded_for {
        headers.insert(X_FORWARDED_FOR, chain);
    } else if let Some(ip) = add.client_ip {
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
