//! Hostile and careless clients over raw sockets: ambiguous framing, pipelining, request
//! hygiene (TRACE, loops through `Via`, bad targets, request ids), slow and silent clients,
//! clients that stop reading, oversized heads, the file-descriptor limit, log levels of what
//! clients cause, the admin API's bearer scheme, ACME paths under `http_to_https`, and
//! backends pointed at the proxy's own ports.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// === harness ===

/// A whole config: the plain listener, the admin API, `[limits]` keys and more TOML.
fn config(http: SocketAddr, admin: SocketAddr, limits: &str, extra: &str) -> String {
    format!(
        "[proxy]\nlisten_addr_http = \"{http}\"\nmanagement_api_addr = \"{admin}\"\nthreads = 2\n\
         grace_period_secs = 5\n\n[state]\npath = \"state/state.json\"\n\n\
         [limits]\nupstream_connect_timeout_ms = 500\n{limits}\n\n{extra}"
    )
}

/// A proxy for `app.test` (tag `a`) in front of `origin`, with `limits` and `extra` TOML.
async fn proxy_for(origin: SocketAddr, limits: &str, extra: &str) -> Proxy {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let extra = format!(
        "{}{}{extra}",
        backend_toml("a1", origin, &["a"]),
        vhost_toml("app.test", "a")
    );
    let limits = limits.to_string();
    Proxy::start_config(http, &move |admin| config(http, admin, &limits, &extra)).await
}

/// One answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.x client connection with its own read buffer, so pipelined answers can be read
/// one after the other.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes; `false` on end of stream or error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.s.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next answer (Content-Length or close-delimited), or `None` when the connection ends
    /// first or nothing complete comes within `within`.
    async fn answer_within(&mut self, within: Duration) -> Option<Answer> {
        tokio::time::timeout(within, self.answer())
            .await
            .ok()
            .flatten()
    }

    async fn answer(&mut self) -> Option<Answer> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status = head.get(9..12)?.parse().ok()?;
                let length = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                });
                let start = end + 4;
                match length {
                    Some(n) => {
                        while self.buf.len() < start + n {
                            if !self.fill().await {
                                return None;
                            }
                        }
                        let body = self.buf[start..start + n].to_vec();
                        self.buf.drain(..start + n);
                        return Some(Answer { status, head, body });
                    }
                    None => {
                        while self.fill().await {}
                        let body = self.buf[start..].to_vec();
                        self.buf.clear();
                        return Some(Answer { status, head, body });
                    }
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Whether the proxy ends the connection within `within` (end of stream or reset), reading
    /// and discarding whatever arrives meanwhile.
    async fn closed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async { while self.fill().await {} })
            .await
            .is_ok()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A raw origin: keeps every request head it receives and answers `200` with a body naming the
/// request target (keep-alive, Content-Length bodies only).
struct RawOrigin {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawOrigin {
    async fn start() -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(serve_raw(s, seen));
            }
        });
        RawOrigin { addr, heads }
    }

    /// The heads received, health probes left out.
    fn heads(&self) -> Vec<String> {
        let heads = self.heads.lock().unwrap();
        heads
            .iter()
            .filter(|h| !h.contains("pingora-vhost-health"))
            .cloned()
            .collect()
    }
}

async fn serve_raw(mut s: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + 4 + length);
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        seen.lock().unwrap().push(head);
        let body = format!("target={target}\n");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A TCP relay on a port of its own to `target`: another address by which a backend can reach
/// the proxy (or its admin API) without naming its port.
async fn relay(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut up) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    addr
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: app.test\r\n\r\n").into_bytes()
}

// === framing ===

#[tokio::test]
async fn content_length_lists_and_repeats_are_never_forwarded() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "", "").await;
    for framing in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    ] {
        let mut c = Raw::connect(p.http).await;
        c.send(format!("POST / HTTP/1.1\r\nHost: app.test\r\n{framing}\r\nhello").as_bytes())
            .await;
        let a = c.answer_within(Duration::from_secs(5)).await;
        assert_eq!(a.map(|a| a.status), Some(400), "{framing:?}");
        assert!(c.closed_within(Duration::from_secs(3)).await, "{framing:?}");
    }
    assert!(origin.heads().is_empty(), "forwarded: {:?}", origin.heads());
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_answered_then_closed() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "", "").await;
    let mut c = Raw::connect(p.http).await;
    c.send(
        b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let a = c
        .answer_within(Duration::from_secs(5))
        .await
        .expect("an answer");
    assert!(a.status == 200 || a.status == 400, "{a:?}");
    assert!(
        c.closed_within(Duration::from_secs(3)).await,
        "connection kept open after a request with both Content-Length and Transfer-Encoding"
    );
}

#[tokio::test]
async fn http10_without_keep_alive_is_closed_after_the_answer() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "", "").await;
    let mut c = Raw::connect(p.http).await;
    c.send(b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n").await;
    let a = c
        .answer_within(Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(a.status, 200);
    assert!(
        !a.head.to_ascii_lowercase().contains("keep-alive"),
        "{}",
        a.head
    );
    assert!(
        c.closed_within(Duration::from_secs(3)).await,
        "HTTP/1.0 connection without keep-alive held open"
    );
    // Asked for, keep-alive is honoured.
    let mut c = Raw::connect(p.http).await;
    c.send(b"GET /one HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n")
        .await;
    assert_eq!(
        c.answer_within(Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    c.send(b"GET /two HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let a = c
        .answer_within(Duration::from_secs(5))
        .await
        .expect("second answer");
    assert_eq!(a.body_text(), "target=/two\n");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "", "").await;
    let mut c = Raw::connect(p.http).await;
    let mut burst = Vec::new();
    for path in ["/one", "/two", "/three"] {
        burst.extend(get(path));
    }
    // A request with a body in the middle, and the whole burst in one write.
    burst.extend(b"POST /four HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\n\r\nbody");
    burst.extend(get("/five"));
    c.send(&burst).await;
    for path in ["/one", "/two", "/three", "/four", "/five"] {
        let a = c.answer_within(Duration::from_secs(5)).await;
        assert_eq!(
            a.map(|a| a.body_text()),
            Some(format!("target={path}\n")),
            "answer for {path}"
        );
    }
}

// === request hygiene ===

#[tokio::test]
async fn trace_gets_405_and_is_never_proxied() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "", "").await;
    let mut c = Raw::connect(p.http).await;
    c.send(b"TRACE / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    let a = c
        .answer_within(Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(a.status, 405);
    assert!(origin.heads().is_empty(), "{:?}", origin.heads());
}

#[tokio::test]
async fn a_request_that_comes_back_through_via_gets_508() {
    let origin = RawOrigin::start().await;
    // The proxy's plain port is known before it starts, so a relay to it can be its backend.
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let back = relay(http).await;
    let extra = format!(
        "{}{}{}{}",
        backend_toml("a1", origin.addr, &["a"]),
        vhost_toml("app.test", "a"),
        backend_toml("self", back, &["loop"]),
        vhost_toml("loop.test", "loop"),
    );
    let p = Proxy::start_config(http, &move |admin| config(http, admin, "", &extra)).await;

    // Forwarded requests name this proxy in Via.
    let mut c = Raw::connect(p.http).await;
    c.send(&get("/")).await;
    assert_eq!(
        c.answer_within(Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    let head = origin.heads().pop().unwrap();
    let via = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("via:"))
        .unwrap_or_else(|| panic!("no Via upstream: {head}"));
    assert!(via.contains("pingora-vhost"), "{via}");

    // A backend that leads back to the proxy: one hop, then 508, not a recursion.
    let start = Instant::now();
    let mut c = Raw::connect(p.http).await;
    c.send(b"GET / HTTP/1.1\r\nHost: loop.test\r\n\r\n").await;
    let a = c
        .answer_within(Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(a.status, 508, "{a:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The client's own Via is kept and ours appended.
    let mut c = Raw::connect(p.http).await;
    c.send(b"GET / HTTP/1.1\r\nHost: app.test\r\nVia: 1.1 edge\r\n\r\n")
        .await;
    assert_eq!(
        c.answer_within(Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    let head = origin.heads().pop().unwrap().to_ascii_lowercase();
    assert!(head.contains("1.1 edge"), "{head}");
    assert!(head.contains("pingora-vhost"), "{head}");
}

#[tokio::test]
async fn spaces_and_control_bytes_in_the_target_get_400() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "", "").await;
    for line in [
        &b"GET /a b HTTP/1.1\r\n"[..],
        b"GET /a\x01b HTTP/1.1\r\n",
        b"GET /a\x7fb HTTP/1.1\r\n",
        b"GET /a\tb HTTP/1.1\r\n",
    ] {
        let mut c = Raw::connect(p.http).await;
        let mut req = line.to_vec();
        req.extend(b"Host: app.test\r\n\r\n");
        c.send(&req).await;
        let a = c.answer_within(Duration::from_secs(5)).await;
        assert_eq!(a.map(|a| a.status), Some(400), "{}", line.escape_ascii());
    }
    assert!(origin.heads().is_empty(), "forwarded: {:?}", origin.heads());
    // Percent-encoded, the same target is fine.
    let mut c = Raw::connect(p.http).await;
    c.send(&get("/a%20b")).await;
    let a = c.answer_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(a.body_text(), "target=/a%20b\n");
}

#[tokio::test]
async fn client_request_ids_are_kept_only_when_short_and_plain() {
    let origin = RawOrigin::start().await;
    // Room for a very long header, to see the id rule rather than the head limit.
    let p = proxy_for(origin.addr, "max_request_header_bytes = 1000000", "").await;
    let id_upstream = |head: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-request-id")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let good = format!("Abc-09._:{}", "x".repeat(119));
    assert_eq!(good.len(), 128);
    let long = "y".repeat(129);
    let huge = "z".repeat(900 * 1024);
    for (id, kept) in [
        (good.as_str(), true),
        ("with space", false),
        ("<script>", false),
        ("a/b", false),
        (long.as_str(), false),
        (huge.as_str(), false),
    ] {
        let mut c = Raw::connect(p.http).await;
        c.send(
            format!("GET / HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: {id}\r\n\r\n").as_bytes(),
        )
        .await;
        let a = c
            .answer_within(Duration::from_secs(10))
            .await
            .expect("answer");
        assert_eq!(a.status, 200);
        let sent = id_upstream(&origin.heads().pop().unwrap());
        if kept {
            assert_eq!(sent, id);
        } else {
            assert_ne!(sent, id);
            assert!(
                sent.len() == 16 && sent.bytes().all(|b| b.is_ascii_hexdigit()),
                "replacement {sent:?}"
            );
        }
    }
    // No log line carries the huge id.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let longest = p.log().lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a log line of {longest} bytes");
}

// === slow, silent and stalled clients ===

/// Trickles a request head one byte every `pause`; returns how long the proxy let it go on
/// before closing (or `None` if it still had not after `give_up`).
async fn trickle(c: &mut Raw, head: &[u8], pause: Duration, give_up: Duration) -> Option<Duration> {
    let start = Instant::now();
    for b in head.iter().cycle() {
        if c.s.write_all(&[*b]).await.is_err() {
            return Some(start.elapsed());
        }
        // A closed connection shows as end of stream on read.
        let mut probe = [0u8; 1024];
        match tokio::time::timeout(pause, c.s.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => return Some(start.elapsed()), // an answer: the head was cut short
            Err(_) => {}
        }
        if start.elapsed() > give_up {
            return None;
        }
    }
    None
}

#[tokio::test]
async fn slow_request_heads_are_cut_at_the_header_deadline() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "client_header_timeout_secs = 2", "").await;
    let head = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // From accept.
    let mut c = Raw::connect(p.http).await;
    let took = trickle(
        &mut c,
        head,
        Duration::from_millis(300),
        Duration::from_secs(8),
    )
    .await;
    let took = took.expect("slow head still open after 8 s");
    assert!(took >= Duration::from_millis(1800), "closed after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    // From the end of the previous answer on a keep-alive connection.
    let mut c = Raw::connect(p.http).await;
    c.send(&get("/first")).await;
    assert_eq!(
        c.answer_within(Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    let took = trickle(
        &mut c,
        head,
        Duration::from_millis(300),
        Duration::from_secs(8),
    )
    .await;
    let took = took.expect("slow second head still open after 8 s");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    // A head that arrives in time is served, however it is split.
    let mut c = Raw::connect(p.http).await;
    for b in get("/split") {
        c.send(&[b]).await;
    }
    assert_eq!(
        c.answer_within(Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "client_idle_timeout_secs = 1", "").await;
    // Never a byte.
    let mut c = Raw::connect(p.http).await;
    let start = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(6)).await,
        "a silent connection outlived client_idle_timeout_secs = 1 by 5 s"
    );
    assert!(start.elapsed() >= Duration::from_millis(900));
    // Silent after an answer.
    let mut c = Raw::connect(p.http).await;
    c.send(&get("/")).await;
    assert_eq!(
        c.answer_within(Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    assert!(c.closed_within(Duration::from_secs(6)).await);
}

/// An origin answering every request with an endless chunked body; counts connections that
/// ended while it was still writing.
async fn endless_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ended = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&ended);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while find(&head, b"\r\n\r\n").is_none() {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                while s.write_all(chunk.as_bytes()).await.is_ok() {}
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, ended)
}

#[tokio::test]
async fn clients_that_stop_reading_are_dropped_with_their_upstream() {
    let (origin, ended) = endless_origin().await;
    let p = proxy_for(origin, "client_send_timeout_secs = 1", "").await;
    let mut c = Raw::connect(p.http).await;
    c.send(&get("/big")).await;
    // Take nothing for a while: the proxy's writes stall, then its send timeout passes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        c.closed_within(Duration::from_secs(5)).await,
        "a client that read nothing for 4 s is still being served"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while ended.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the upstream connection was kept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "max_request_header_bytes = 8192", "").await;
    let with_header = |len: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: app.test\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(len)
        )
    };
    // Just under the limit: served.
    let mut c = Raw::connect(p.http).await;
    let fits = with_header(8192 - 60);
    assert!(fits.len() <= 8192);
    c.send(fits.as_bytes()).await;
    assert_eq!(
        c.answer_within(Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    // Over it, in one write or trickled in pieces: 431 and closed.
    for pieces in [1, 20] {
        let mut c = Raw::connect(p.http).await;
        let big = with_header(20_000).into_bytes();
        for part in big.chunks(big.len() / pieces + 1) {
            if c.s.write_all(part).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let a = c.answer_within(Duration::from_secs(5)).await;
        assert_eq!(a.map(|a| a.status), Some(431), "in {pieces} pieces");
    }
    assert_eq!(origin.heads().len(), 1);
}

// === file descriptors and memory ===

/// Starts the binary with a soft file-descriptor limit of 1024 under whatever hard limit the
/// test runs with; returns it (its log in `p.log()`).
async fn proxy_with_soft_fd_limit(origin: SocketAddr) -> (Proxy, std::process::Child) {
    let p = proxy_for(origin, "", "").await;
    let mut p = p;
    p.stop();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -S -n 1024 && exec \"$0\" run --config \"$1\"")
        .arg(bin())
        .arg(&p.config_path)
        .current_dir(p.dir.path())
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(p.dir.path().join("child.log")).unwrap())
        .stderr(std::process::Stdio::null());
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(p.api("/health")).await.is_err() || TcpStream::connect(p.http).await.is_err()
    {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (p, child)
}

fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (v[0], v[1])
}

#[tokio::test]
async fn the_soft_fd_limit_is_raised_so_many_idle_clients_do_not_stall() {
    let origin = RawOrigin::start().await;
    let (p, mut child) = proxy_with_soft_fd_limit(origin.addr).await;
    let (soft, hard) = open_files_limits(child.id());
    assert_eq!(
        soft, hard,
        "soft limit {soft} left below the hard limit {hard}"
    );
    if hard > 1500 {
        let mut idle = Vec::new();
        for _ in 0..1100 {
            idle.push(TcpStream::connect(p.http).await.unwrap());
        }
        let served = tokio::time::timeout(Duration::from_secs(5), async {
            let mut c = Raw::connect(p.http).await;
            c.send(&get("/")).await;
            c.answer().await.map(|a| a.status)
        })
        .await;
        assert_eq!(served.ok().flatten(), Some(200), "proxy stalled");
        let api = tokio::time::timeout(Duration::from_secs(5), reqwest::get(p.api("/health")))
            .await
            .map(|r| r.map(|r| r.status().as_u16()).unwrap_or(0));
        assert_eq!(api.ok(), Some(200), "admin API stalled");
        drop(idle);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A measurement, not a check: resident memory per idle client connection at 10k connections,
/// and after they close. `cargo test --test hardening -- --ignored --nocapture idle_memory`.
#[tokio::test]
#[ignore]
async fn idle_memory() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(
        origin.addr,
        "client_idle_timeout_secs = 600\nclient_header_timeout_secs = 600",
        "",
    )
    .await;
    let pid = p.pid();
    // Warm up: a few requests, so first-use allocations are not counted.
    for _ in 0..20 {
        let mut c = Raw::connect(p.http).await;
        c.send(&get("/")).await;
        c.answer().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let n = 10_000;
    for (label, after_request) in [("never sent a byte", false), ("after one request", true)] {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = Raw::connect(p.http).await;
            if after_request {
                c.send(&get("/")).await;
                c.answer().await.unwrap();
            }
            conns.push(c);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with = rss_kib(pid);
        drop(conns);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let closed = rss_kib(pid);
        println!(
            "{n} idle connections ({label}): RSS {before} KiB -> {with} KiB ({:.1} KiB each); \
             {closed} KiB after they closed",
            (with as f64 - before as f64) / n as f64
        );
    }
}

// === logs ===

#[tokio::test]
async fn what_clients_cause_is_never_an_error_in_the_log() {
    let origin = Origin::start("a1").await;
    let (hanging, _task) = hanging_origin().await;
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let extra = format!(
        "{}{}{}{}",
        backend_toml("a1", origin.addr, &["a"]),
        vhost_toml("app.test", "a"),
        backend_toml("hang", hanging, &["h"]),
        vhost_toml("hang.test", "h"),
    );
    let p = Proxy::start_config(http, &move |admin| {
        config(
            http,
            admin,
            "max_request_body_bytes = 100\nupstream_read_timeout_secs = 1",
            &extra,
        )
        .replace(
            "[proxy]\n",
            &format!("[proxy]\nlisten_addr = \"{https}\"\n"),
        )
    })
    .await;

    // Normal keep-alive load, many clients at once (pool misses happen here).
    let load = Load::start(p.url("/"), "app.test", 16, Duration::ZERO, |_| "ok".into());
    // Aborted TLS handshakes: garbage, a truncated hello, a bare connect and close.
    for bytes in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01",
        b"",
    ] {
        let mut s = TcpStream::connect(https).await.unwrap();
        let _ = s.write_all(bytes).await;
        drop(s);
    }
    // Malformed requests and heads cut short.
    for bytes in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: app",
        b"GE",
    ] {
        let mut c = Raw::connect(p.http).await;
        c.send(bytes).await;
        drop(c);
    }
    // A body over the limit, declared and streamed.
    let mut c = Raw::connect(p.http).await;
    c.send(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000\r\n\r\n")
        .await;
    let _ = c.answer_within(Duration::from_secs(3)).await;
    let mut c = Raw::connect(p.http).await;
    c.send(b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    for _ in 0..5 {
        c.send(format!("40\r\n{}\r\n", "b".repeat(64)).as_bytes())
            .await;
    }
    let _ = c.answer_within(Duration::from_secs(3)).await;
    // A client that leaves while its request is being proxied, and one mid-body.
    let mut c = Raw::connect(p.http).await;
    c.send(b"GET / HTTP/1.1\r\nHost: hang.test\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(c);
    let mut c = Raw::connect(p.http).await;
    c.send(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 50\r\n\r\nhalf")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(c);
    // A backend that never answers: 504, a warning.
    let mut c = Raw::connect(p.http).await;
    c.send(b"GET / HTTP/1.1\r\nHost: hang.test\r\n\r\n").await;
    let a = c
        .answer_within(Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(a.status, 504);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let result = load.finish().await;
    assert!(
        result.ok() > 0 && result.errors.is_empty(),
        "{:?}",
        result.errors
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let log = p.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "ERROR lines:\n{}", errors.join("\n"));
    assert!(
        log.lines()
            .any(|l| l.contains(" WARN ") && l.contains("504")),
        "no warning for the 504:\n{log}"
    );
}

// === admin API and ACME paths ===

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "", "").await;
    let mut p = p;
    p.stop();
    let text = std::fs::read_to_string(&p.config_path)
        .unwrap()
        .replace("[proxy]\n", "[proxy]\nadmin_token = \"s3cret\"\n");
    std::fs::write(&p.config_path, text).unwrap();
    p.spawn(&[]).await;
    let url = p.api("/domains");
    for (auth, want) in [
        ("Bearer s3cret", 200),
        ("bearer s3cret", 200),
        ("BEARER s3cret", 200),
        ("bEaReR   s3cret", 200),
        ("bearer wrong", 401),
        ("Basic s3cret", 401),
        ("bearers3cret", 401),
    ] {
        let r = client()
            .get(&url)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{auth}");
    }
}

#[tokio::test]
async fn acme_challenge_paths_are_never_redirected() {
    let origin = RawOrigin::start().await;
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let extra = format!(
        "{}[[virtual_hosts]]\ndomain = \"secure.test\"\nenabled_backends_tag = \"a\"\nhttp_to_https = true\n\n",
        backend_toml("a1", origin.addr, &["a"]),
    );
    let p = Proxy::start_config(http, &move |admin| {
        config(http, admin, "", &extra).replace(
            "[proxy]\n",
            &format!("[proxy]\nlisten_addr = \"{https}\"\n"),
        )
    })
    .await;
    let mut c = Raw::connect(p.http).await;
    c.send(b"GET /.well-known/acme-challenge/tok123 HTTP/1.1\r\nHost: secure.test\r\n\r\n")
        .await;
    let a = c.answer_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body_text(), "target=/.well-known/acme-challenge/tok123\n");
    c.send(b"GET /other HTTP/1.1\r\nHost: secure.test\r\n\r\n")
        .await;
    assert_eq!(
        c.answer_within(Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        301
    );
}

// === backends pointed at the proxy's own ports ===

#[tokio::test]
async fn backends_cannot_lead_to_the_admin_api() {
    let origin = RawOrigin::start().await;
    let p = proxy_for(origin.addr, "", "").await;
    // Named directly: refused by the API.
    for address in [
        p.admin.to_string(),
        p.http.to_string(),
        format!("localhost:{}", p.admin.port()),
    ] {
        let (status, body) = call(
            reqwest::Method::POST,
            &p.api("/backends"),
            Some(serde_json::json!({"id": "own", "address": address, "tags": ["a"]})),
        )
        .await;
        assert_eq!(status, 400, "{address}: {body}");
    }
    // And by `check`, in the config.
    let bad = config(
        p.http,
        p.admin,
        "",
        &format!(
            "{}{}",
            backend_toml("own", p.admin, &["a"]),
            vhost_toml("app.test", "a")
        ),
    );
    let path = p.dir.path().join("own.toml");
    std::fs::write(&path, bad).unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("backends[0].address"), "{stderr}");
    // Reached some other way (here a relay): the admin API does not answer proxied requests.
    let back = relay(p.admin).await;
    let (status, body) = call(
        reqwest::Method::POST,
        &p.api("/backends"),
        Some(serde_json::json!({"id": "sneaky", "address": back.to_string(), "tags": ["adm"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        reqwest::Method::POST,
        &p.api("/domains"),
        Some(serde_json::json!({"domain": "adm.test", "enabled_backends_tag": "adm"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = client()
        .get(p.url("/api/v1/domains"))
        .header("host", "adm.test")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("app.test"),
        "the admin API answered through the public listener ({status}): {text}"
    );
    assert!(status >= 400, "{status}: {text}");
}
