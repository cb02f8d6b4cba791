//! The standard gRPC health check (`grpc.health.v1.Health/Check`) by hand: its request and
//! answer are one-field protobuf messages, so a few bytes replace a code generator.

use bytes::Bytes;
use hyper::{HeaderMap, StatusCode};

/// The method's path.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckResponse.status` of a server that serves.
const SERVING: u64 = 1;

/// One gRPC message frame holding `HealthCheckRequest { service: "" }` (the server as a
/// whole), which encodes to no bytes at all: flag 0 (not compressed), length 0.
pub fn check_request() -> Bytes {
    Bytes::from_static(&[0, 0, 0, 0, 0])
}

/// Healthy when the call succeeded (`grpc-status` 0, in the trailers or, for a trailers-only
/// answer, the headers) and the answer says `SERVING`.
pub fn verdict(
    status: StatusCode,
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
    body: &[u8],
) -> Result<(), String> {
    if status != StatusCode::OK {
        return Err(format!("grpc health check answered HTTP {status}"));
    }
    let grpc_status = trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .ok_or("grpc health check: the answer has no grpc-status")?;
    if grpc_status != "0" {
        let message = trailers
            .and_then(|t| t.get("grpc-message"))
            .or_else(|| headers.get("grpc-message"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return Err(format!(
            "grpc health check: grpc-status {grpc_status} {message}"
        ));
    }
    match serving_status(body) {
        Some(SERVING) => Ok(()),
        Some(other) => Err(format!(
            "grpc health check: status {} ({other})",
            status_name(other)
        )),
        None => Err("grpc health check: the answer is not a HealthCheckResponse".into()),
    }
}

/// The `status` field (1, a varint) of the first message of a gRPC answer body; an absent field
/// is its default, 0.
fn serving_status(body: &[u8]) -> Option<u64> {
    let (&flag, rest) = body.split_first()?;
    if flag != 0 || rest.len() < 4 {
        return None; // Compressed (never asked for) or cut short.
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    let mut msg = rest.get(4..4 + len)?;
    let mut status = 0;
    while !msg.is_empty() {
        let (key, used) = varint(msg)?;
        msg = &msg[used..];
        match (key >> 3, key & 7) {
            (field, 0) => {
                let (v, used) = varint(msg)?;
                msg = &msg[used..];
                if field == 1 {
                    status = v;
                }
            }
            (_, 2) => {
                let (n, used) = varint(msg)?;
                msg = msg.get(used + n as usize..)?;
            }
            (_, 1) => msg = msg.get(8..)?,
            (_, 5) => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

/// A protobuf varint and the bytes it took.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn status_name(v: u64) -> &'static str {
    match v {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "unexpected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(msg);
        out
    }

    fn ok_trailers() -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        t
    }

    #[test]
    fn serving_is_healthy_and_anything_else_is_not() {
        let t = ok_trailers();
        let h = HeaderMap::new();
        assert_eq!(
            verdict(StatusCode::OK, &h, Some(&t), &framed(&[0x08, 0x01])),
            Ok(())
        );
        let err = verdict(StatusCode::OK, &h, Some(&t), &framed(&[0x08, 0x02])).unwrap_err();
        assert!(err.contains("NOT_SERVING"), "{err}");
        // An empty message is status 0, UNKNOWN.
        assert!(verdict(StatusCode::OK, &h, Some(&t), &framed(&[])).is_err());
        // Unknown fields are skipped.
        let with_extra = framed(&[0x12, 0x02, b'h', b'i', 0x08, 0x01]);
        assert_eq!(verdict(StatusCode::OK, &h, Some(&t), &with_extra), Ok(()));
    }

    #[test]
    fn a_failed_call_says_why() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "5".parse().unwrap());
        h.insert("grpc-message", "unknown service".parse().unwrap());
        let err = verdict(StatusCode::OK, &h, None, &[]).unwrap_err();
        assert!(err.contains("grpc-status 5 unknown service"), "{err}");
        let err = verdict(StatusCode::NOT_FOUND, &HeaderMap::new(), None, &[]).unwrap_err();
        assert!(err.contains("404"), "{err}");
        let err = verdict(StatusCode::OK, &HeaderMap::new(), None, &[]).unwrap_err();
        assert!(err.contains("no grpc-status"), "{err}");
    }
}
