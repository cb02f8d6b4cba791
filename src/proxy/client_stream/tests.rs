//! The head scanner and the request boundaries, over an in-memory connection.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn limits() -> ClientLimits {
    ClientLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        send_timeout: Duration::from_secs(60),
        max_head_bytes: 1024,
    }
}

fn scan_all(parts: &[&[u8]]) -> (Option<usize>, HeadScan) {
    let mut scan = HeadScan::default();
    for part in parts {
        if let Some(end) = scan.feed(part) {
            return (Some(end), scan);
        }
    }
    (None, scan)
}

#[test]
fn heads_end_at_the_first_empty_line() {
    let (end, scan) = scan_all(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"]);
    assert_eq!(end, Some(27));
    assert_eq!(scan.len, 27);
    assert!(!scan.bad_line);
    // Bare LF line ends, leading empty lines, and every split point.
    let (end, scan) = scan_all(&[b"\r\n", b"GET / HTTP/1.1\nHost: a\n\nrest"]);
    assert_eq!((end, scan.len), (Some(24), 26));
    let whole = b"GET /x HTTP/1.1\r\nA: b\r\nC: d\r\n\r\n";
    for cut in 1..whole.len() {
        let (end, scan) = scan_all(&[&whole[..cut], &whole[cut..]]);
        assert_eq!(end, Some(whole.len() - cut), "cut at {cut}");
        assert_eq!(scan.len, whole.len());
    }
    assert_eq!(scan_all(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]).0, None);
}

#[test]
fn request_lines_with_extra_spaces_or_control_bytes_are_bad() {
    for bad in [
        &b"GET /a b HTTP/1.1\r\n\r\n"[..],
        b"GET /a\x01 HTTP/1.1\r\n\r\n",
        b"GET /a\x7f HTTP/1.1\r\n\r\n",
        b"GET /a\tb HTTP/1.1\r\n\r\n",
        b"GET /a\rb HTTP/1.1\r\n\r\n",
        b"GET /\r\n\r\n",
    ] {
        assert!(scan_all(&[bad]).1.bad_line, "{}", bad.escape_ascii());
    }
    let (_, scan) = scan_all(&[b"GET /a%20b?q=\xc3\xa9 HTTP/1.1\r\nX: a b\tc\r\n\r\n"]);
    assert!(!scan.bad_line);
}

async fn read_some(s: &mut ClientStream) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn pipelined_requests_are_handed_out_one_at_a_time() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let mut s = ClientStream::new(Box::new(server), limits(), Instant::now());
    let first = b"POST /1 HTTP/1.1\r\nContent-Length: 4\r\n\r\n";
    let second = b"GET /2 HTTP/1.1\r\n\r\n";
    let mut burst = first.to_vec();
    burst.extend(b"body");
    burst.extend(second);
    client.write_all(&burst).await.unwrap();

    assert_eq!(read_some(&mut s).await, first);
    assert!(!s.head_parsed(first.len(), Some(4)));
    assert_eq!(read_some(&mut s).await, b"body");
    // The body is complete: the next request waits until this one is answered.
    let mut probe = [0u8; 16];
    let early = tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await;
    assert!(early.is_err(), "handed out the next request early");
    s.answer_sent();
    assert_eq!(read_some(&mut s).await, second);
    assert!(!s.head_parsed(second.len(), Some(0)));
    s.answer_sent();
    drop(client);
    assert_eq!(read_some(&mut s).await, b"");
}

#[tokio::test]
async fn a_bad_request_line_is_reported_with_its_head() {
    let (mut client, server) = tokio::io::duplex(4096);
    let mut s = ClientStream::new(Box::new(server), limits(), Instant::now());
    client
        .write_all(b"GET /a b HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let head = read_some(&mut s).await;
    assert!(s.head_parsed(head.len() + 2, Some(0)));
}

#[tokio::test]
async fn an_oversized_head_is_answered_431() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let mut s = ClientStream::new(Box::new(server), limits(), Instant::now());
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "x".repeat(2000));
    client.write_all(big.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let e = s.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    let mut answer = vec![0u8; HEAD_TOO_LARGE.len()];
    client.read_exact(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 431 "));
}

#[tokio::test]
async fn after_a_body_of_unknown_length_bytes_pass_as_they_come() {
    let (mut client, server) = tokio::io::duplex(4096);
    let mut s = ClientStream::new(Box::new(server), limits(), Instant::now());
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    client.write_all(head).await.unwrap();
    assert_eq!(read_some(&mut s).await, head);
    s.head_parsed(head.len(), None);
    client
        .write_all(b"4\r\nbody\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let got = read_some(&mut s).await;
    assert!(got.ends_with(b"GET / HTTP/1.1\r\n\r\n"));
}
