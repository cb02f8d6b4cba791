//! Requests refused before routing: malformed request lines, heads over the size limit,
//! ambiguous `Content-Length` framing, `TRACE`, and requests that already passed through this
//! proxy (a backend that leads back to it). Also what a request's head tells its connection:
//! where the request ends.

use super::client_stream::ClientStream;
use super::forwarded::came_through_here;
use super::responses::Refusal;
use http::header;
use http::Method;
use pingora::http::RequestHeader;
use pingora::prelude::*;

/// What the connection knows about a request's head besides its parsed header.
pub struct HeadFacts {
    /// The request line had a space or control byte where none may be.
    pub bad_request_line: bool,
    /// The head's length in bytes.
    pub len: usize,
}

/// Why `req` is answered at once, if it is.
pub fn refusal(req: &RequestHeader, head: &HeadFacts, max_head_bytes: usize) -> Option<Refusal> {
    if head.bad_request_line {
        return Some(Refusal::Close(
            400,
            b"400 bad request: malformed request line (spaces and control bytes in the target must be percent-encoded)\n",
        ));
    }
    if head.len > max_head_bytes {
        return Some(Refusal::Close(
            431,
            b"431 request header fields too large\n",
        ));
    }
    if !single_content_length(req) {
        return Some(Refusal::Close(
            400,
            b"400 bad request: more than one Content-Length\n",
        ));
    }
    if req.method == Method::TRACE {
        return Some(Refusal::Text(405, b"405 method not allowed: TRACE\n"));
    }
    if came_through_here(&req.headers) {
        return Some(Refusal::Close(
            508,
            b"508 loop detected: this request already passed through this proxy\n",
        ));
    }
    None
}

/// At most one `Content-Length` header holding one value: a list (`42, 42`) or a repeated
/// header could be read differently by a backend, so neither is forwarded.
fn single_content_length(req: &RequestHeader) -> bool {
    let mut values = req.headers.get_all(header::CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (None, _) => true,
        (Some(v), None) => !v.as_bytes().contains(&b','),
        (Some(_), Some(_)) => false,
    }
}

/// The declared body length of a request whose end follows from its head; `None` for a chunked
/// body, an upgrade, or a length that does not parse.
pub fn body_length(req: &RequestHeader, upgrade: bool) -> Option<u64> {
    if upgrade || req.headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    match req.headers.get(header::CONTENT_LENGTH) {
        None => Some(0),
        Some(v) => std::str::from_utf8(v.as_bytes()).ok()?.trim().parse().ok(),
    }
}

/// The declared body length, when it is one number.
pub fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The client connection under an HTTP/1 session, when it is guarded.
pub fn client_stream(session: &Session) -> Option<&ClientStream> {
    session.as_downstream().stream().and_then(ClientStream::of)
}

/// Reports the parsed head to its connection and returns what is known about it.
pub fn report_head(session: &Session) -> HeadFacts {
    let down = session.as_downstream();
    let len = down
        .as_http1()
        .map_or(0, |h1| h1.get_headers_raw_bytes().len());
    let bad_request_line = client_stream(session).is_some_and(|client| {
        let body = body_length(session.req_header(), down.is_upgrade_req());
        client.head_parsed(len, body)
    });
    HeadFacts {
        bad_request_line,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn content_length_must_be_one_value() {
        assert!(single_content_length(&req(&[])));
        assert!(single_content_length(&req(&[("content-length", "42")])));
        assert!(!single_content_length(&req(&[(
            "content-length",
            "42, 42"
        )])));
        assert!(!single_content_length(&req(&[
            ("content-length", "42"),
            ("content-length", "42")
        ])));
    }

    #[test]
    fn body_lengths_known_from_the_head() {
        assert_eq!(body_length(&req(&[]), false), Some(0));
        assert_eq!(
            body_length(&req(&[("content-length", " 7 ")]), false),
            Some(7)
        );
        assert_eq!(body_length(&req(&[("content-length", "7")]), true), None);
        assert_eq!(
            body_length(&req(&[("transfer-encoding", "chunked")]), false),
            None
        );
        assert_eq!(body_length(&req(&[("content-length", "x")]), false), None);
    }
}
