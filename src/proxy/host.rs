//! The host a request is routed by, normalised: port stripped, case-folded, trailing dot
//! removed.

use http::header;
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// The request's host: the authority of an absolute-form target, else the `Host` header.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    if let Some(authority) = req.uri.authority() {
        return Some(authority.as_str());
    }
    req.headers.get(header::HOST)?.to_str().ok()
}

/// Normalises a `Host` header or authority; borrows when nothing needs to change.
#[inline]
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = strip_port(raw.trim());
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop a port after them.
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(normalize_host("App.Example.COM:8080"), "app.example.com");
        assert_eq!(normalize_host("app.example.com."), "app.example.com");
        assert_eq!(normalize_host("app.example.com.:80"), "app.example.com");
        assert_eq!(normalize_host("[::1]:8000"), "[::1]");
        assert!(matches!(normalize_host("plain.test"), Cow::Borrowed(_)));
    }
}
