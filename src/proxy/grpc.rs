//! The proxy's own error answers to gRPC clients: a gRPC client reads an HTML or text 502 as a
//! broken transport, so it gets HTTP 200 with `content-type: application/grpc` and no message,
//! its `grpc-status` (the code gRPC maps that HTTP status to) and `grpc-message` in trailers.

use http::header::{self, HeaderValue};
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::HttpTask;

/// `UNAVAILABLE`: the status of a backend that is down or does not answer; clients retry it.
const UNAVAILABLE: u16 = 14;

/// Whether the request is a gRPC call (`application/grpc`, `application/grpc+proto`, ...;
/// gRPC-Web carries its trailers in the body and is not one).
pub fn is_grpc(req: &RequestHeader) -> bool {
    let Some(ct) = req.headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.as_bytes();
    let Some(rest) = ct.strip_prefix(b"application/grpc") else {
        return false;
    };
    matches!(rest.first(), None | Some(b'+' | b';'))
}

/// The gRPC status code for an HTTP status the proxy would have sent (gRPC's own table).
pub fn code_for(http_status: u16) -> u16 {
    match http_status {
        400 => 13, // INTERNAL
        401 => 16, // UNAUTHENTICATED
        403 => 7,  // PERMISSION_DENIED
        404 => 12, // UNIMPLEMENTED
        413 => 8,  // RESOURCE_EXHAUSTED
        429 | 502..=504 => UNAVAILABLE,
        _ => 2, // UNKNOWN
    }
}

/// Answers a gRPC call with the error the proxy would have given as `http_status`. Over HTTP/2
/// the status goes in a trailers frame after the headers, the shape every gRPC client reads
/// (Pingora cannot end a stream on its HEADERS frame, which a trailers-only answer needs); over
/// HTTP/1.1, which has no trailers here, in the headers.
pub async fn respond_error(session: &mut Session, http_status: u16, why: &str) -> Result<()> {
    let mut status = HeaderMap::with_capacity(2);
    status.insert("grpc-status", HeaderValue::from(code_for(http_status)));
    let message = HeaderValue::from_str(&message(why))
        .or_err(InternalError, "grpc-message is visible ASCII")?;
    status.insert("grpc-message", message);
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header(header::CONTENT_TYPE, "application/grpc")?;
    if !session.as_downstream().is_http2() {
        for (name, value) in &status {
            resp.insert_header(name.clone(), value.clone())?;
        }
        resp.insert_header(header::CONTENT_LENGTH, 0)?;
        return session.write_response_header(Box::new(resp), true).await;
    }
    session
        .write_response_tasks(vec![
            HttpTask::Header(Box::new(resp), false),
            HttpTask::Trailer(Some(Box::new(status))),
        ])
        .await
        .map(|_| ())
}

/// A `grpc-message` value: the text percent-encoded outside printable ASCII (and `%`), with the
/// trailing newline of the text bodies dropped.
fn message(why: &str) -> String {
    let mut out = String::with_capacity(why.len());
    for b in why.trim_end().bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ct: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/svc/Method", None).unwrap();
        if let Some(ct) = ct {
            r.insert_header(header::CONTENT_TYPE, ct).unwrap();
        }
        r
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;x=1",
        ] {
            assert!(is_grpc(&req(Some(ct))), "{ct}");
        }
        for ct in [None, Some("application/grpc-web"), Some("application/json")] {
            assert!(!is_grpc(&req(ct)), "{ct:?}");
        }
    }

    #[test]
    fn backend_failures_are_unavailable_and_messages_are_encoded() {
        for status in [502, 503, 504] {
            assert_eq!(code_for(status), UNAVAILABLE);
        }
        assert_eq!(code_for(413), 8);
        assert_eq!(
            message("503 no backend: 100% down\n"),
            "503 no backend: 100%25 down"
        );
        assert_eq!(message("é"), "%C3%A9");
    }
}
