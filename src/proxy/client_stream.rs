//! A client connection as Pingora's HTTP/1 session reads it, with what Pingora's per-read
//! timeouts cannot give: one deadline for a whole request head (from accept, or from the end of
//! the previous answer), a cap on the head's size (`431`), a check of the request line before
//! Pingora re-encodes a bad one, and a send timeout for clients that stop reading.
//!
//! Request boundaries come from Pingora's own parse (the hooks report each parsed head with its
//! body length, and each finished answer). While they are known, reads never hand Pingora bytes
//! past the current request: the rest waits here, so every head starts at a known byte. After a
//! body whose end is not known from its header (chunked, an upgrade), bytes go through as they
//! come and only the deadline and the size cap apply to later heads.

mod head;
mod passthrough;

use bytes::{Buf, BytesMut};
use head::HeadScan;
use pingora::protocols::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The time and size limits of one client connection.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// A request head must be complete this long after the connection or the previous answer.
    pub header_timeout: Duration,
    /// A connection that has sent no byte of its next request is closed after this.
    pub idle_timeout: Duration,
    /// A client that takes no byte of a response for this long is dropped.
    pub send_timeout: Duration,
    /// The largest request head.
    pub max_head_bytes: usize,
}

/// Sent instead of reading on when a head outgrows the limit.
const HEAD_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 33\r\nConnection: close\r\n\r\n\
431 request header fields too large\n";

/// No body length known ([`ClientStream::head_parsed`]).
const UNKNOWN: u64 = u64::MAX;

/// A client connection wrapped for Pingora (see the module documentation).
pub struct ClientStream {
    inner: Stream,
    limits: ClientLimits,
    /// What the request path reports, read at the next poll (hooks only hold `&self`).
    reports: Arc<Reports>,
    state: State,
    /// Request bytes read past the current request, handed out when it is done.
    held: BytesMut,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    write_stalled: bool,
    /// Offset into [`HEAD_TOO_LARGE`] while it is being sent.
    rejecting: Option<usize>,
    /// How many of the reported heads and answers the state reflects.
    seen_heads: u32,
    seen_answers: u32,
}

/// Reports from the request path: counters of heads parsed and answers finished (they
/// alternate), the body length of the last head, and the request-line verdict back.
#[derive(Default)]
struct Reports {
    heads: AtomicU32,
    answers: AtomicU32,
    body_len: AtomicU64,
    parsed_len: AtomicU64,
    bad_line: AtomicBool,
}

enum State {
    /// Reading a head that starts at a known byte.
    Head { since: Instant, scan: HeadScan },
    /// The head's last byte was handed out; Pingora's parse is awaited.
    HeadEnded { since: Instant, len: usize },
    /// Reading a head whose first byte is not known (after a body of unknown length).
    HeadSomewhere { since: Instant, got: usize },
    /// Between head and answer. `left`: body bytes before the next head, when known;
    /// `done`: the answer is finished (the body is being drained).
    Body { left: Option<u64>, done: bool },
}

impl ClientStream {
    /// Wraps a connection accepted at `accepted`: its first head is due from then.
    pub fn new(inner: Stream, limits: ClientLimits, accepted: Instant) -> Self {
        Self {
            inner,
            limits,
            reports: Arc::default(),
            state: State::Head {
                since: accepted,
                scan: HeadScan::default(),
            },
            held: BytesMut::new(),
            read_timer: None,
            write_timer: None,
            write_stalled: false,
            rejecting: None,
            seen_heads: 0,
            seen_answers: 0,
        }
    }

    /// The wrapper under a Pingora stream, if it is one.
    pub fn of(stream: &Stream) -> Option<&ClientStream> {
        (**stream).as_any().downcast_ref()
    }

    /// The request path parsed a head of `parsed_len` bytes whose body is `body_len` bytes
    /// long (`None`: not known from the head). Returns whether its request line was malformed
    /// (a space or control byte in the target, which Pingora would have re-encoded).
    pub fn head_parsed(&self, parsed_len: usize, body_len: Option<u64>) -> bool {
        let r = &self.reports;
        r.body_len
            .store(body_len.unwrap_or(UNKNOWN), Ordering::Relaxed);
        r.parsed_len.store(parsed_len as u64, Ordering::Relaxed);
        r.heads.fetch_add(1, Ordering::Relaxed);
        r.bad_line.swap(false, Ordering::Relaxed)
    }

    /// The request path finished an answer: the next head is due from now.
    pub fn answer_sent(&self) {
        self.reports.answers.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies the reports that arrived since the last poll, in the order they happened
    /// (a head, then its answer).
    fn catch_up(&mut self) {
        let r = &*self.reports;
        loop {
            let in_body = matches!(self.state, State::Body { done: false, .. });
            if !in_body && r.heads.load(Ordering::Relaxed) != self.seen_heads {
                self.seen_heads = self.seen_heads.wrapping_add(1);
                let body = r.body_len.load(Ordering::Relaxed);
                let parsed = r.parsed_len.load(Ordering::Relaxed);
                let known = match self.state {
                    State::HeadEnded { len, .. } => len as u64 == parsed && body != UNKNOWN,
                    _ => false,
                };
                self.state = State::Body {
                    left: known.then_some(body),
                    done: false,
                };
            } else if in_body && r.answers.load(Ordering::Relaxed) != self.seen_answers {
                self.seen_answers = self.seen_answers.wrapping_add(1);
                if let State::Body { left, .. } = self.state {
                    self.state = State::Body { left, done: true };
                }
            } else {
                break;
            }
        }
        // A finished answer whose body is all read: the next head is due.
        if let State::Body { left, done: true } = self.state {
            match left {
                Some(0) => {
                    self.state = State::Head {
                        since: Instant::now(),
                        scan: HeadScan::default(),
                    }
                }
                None => {
                    self.state = State::HeadSomewhere {
                        since: Instant::now(),
                        got: 0,
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// When the head being read must be complete, if one is.
    fn head_deadline(&self) -> Option<Instant> {
        let (since, got) = match &self.state {
            State::Head { since, scan } => (*since, scan.len),
            State::HeadSomewhere { since, got } => (*since, *got),
            _ => return None,
        };
        let wait = if got == 0 {
            self.limits.idle_timeout.min(self.limits.header_timeout)
        } else {
            self.limits.header_timeout
        };
        Some(since + wait)
    }

    /// The bytes just placed in `buf[from..]`: follows the head or body they belong to, keeps
    /// back what belongs to the next request, and says whether the head is over its limit.
    fn account(&mut self, buf: &mut ReadBuf<'_>, from: usize) -> Result<(), HeadTooLarge> {
        let max = self.limits.max_head_bytes;
        let mut keep_from = None;
        match &mut self.state {
            State::Head { since, scan } => {
                let new = &buf.filled()[from..];
                match scan.feed(new) {
                    Some(end) => {
                        if scan.len > max {
                            return Err(HeadTooLarge);
                        }
                        self.reports
                            .bad_line
                            .store(scan.bad_line, Ordering::Relaxed);
                        let (since, len) = (*since, scan.len);
                        self.state = State::HeadEnded { since, len };
                        keep_from = Some(from + end);
                    }
                    None if scan.len > max => return Err(HeadTooLarge),
                    None => {}
                }
            }
            State::HeadSomewhere { got, .. } => {
                *got += buf.filled().len() - from;
                if *got > max {
                    return Err(HeadTooLarge);
                }
            }
            // Pingora wants more of a head that ended here: stop following request boundaries.
            State::HeadEnded { since, len } => {
                let got = *len + buf.filled().len() - from;
                self.state = State::HeadSomewhere { since: *since, got };
            }
            State::Body {
                left: Some(left), ..
            } => {
                let n = (buf.filled().len() - from) as u64;
                if n > *left {
                    keep_from = Some(from + *left as usize);
                    *left = 0;
                } else {
                    *left -= n;
                }
            }
            State::Body { left: None, .. } => {}
        }
        if let Some(at) = keep_from {
            let extra = &buf.filled()[at..];
            if !extra.is_empty() {
                // Ahead of anything already held: these bytes came first.
                let mut rest = BytesMut::from(extra);
                rest.extend_from_slice(&self.held);
                self.held = rest;
                buf.set_filled(at);
            }
        }
        Ok(())
    }

    /// Whether a read now would start the next request while the current one is not done.
    fn at_boundary(&self) -> bool {
        matches!(
            self.state,
            State::Body {
                left: Some(0),
                done: false
            }
        )
    }

    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut at = self.rejecting.unwrap_or(0);
        while at < HEAD_TOO_LARGE.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &HEAD_TOO_LARGE[at..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(n)) => at += n,
                Poll::Pending => {
                    self.rejecting = Some(at);
                    return Poll::Pending;
                }
            }
        }
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        self.rejecting = Some(HEAD_TOO_LARGE.len());
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request head over max_request_header_bytes",
        )))
    }

    /// Whether the read timer, set for `deadline`, has fired.
    fn read_deadline_passed(&self, deadline: Instant) -> bool {
        self.read_timer
            .as_ref()
            .is_some_and(|t| t.deadline() == deadline && t.is_elapsed())
    }

    /// Pending until `deadline`; then the time-out error.
    fn poll_read_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<io::Error> {
        let timer = self
            .read_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(head_timed_out())
    }
}

fn head_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "request head not complete within client_header_timeout_secs",
    )
}

struct HeadTooLarge;

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rejecting.is_some() {
            return this.poll_reject(cx);
        }
        this.catch_up();
        let deadline = this.head_deadline();
        if this.at_boundary() {
            // The current request is complete: what comes now is the next one. Read it into the
            // hold (so a closed connection still shows), and hand it out after this answer.
            if !this.held.is_empty() {
                return Poll::Pending;
            }
            let mut probe = [0u8; 1];
            let mut probe_buf = ReadBuf::new(&mut probe);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut probe_buf))?;
            if probe_buf.filled().is_empty() {
                return Poll::Ready(Ok(())); // end of stream
            }
            this.held.extend_from_slice(probe_buf.filled());
            return Poll::Pending;
        }
        let from = buf.filled().len();
        if !this.held.is_empty() {
            let n = this.held.len().min(buf.remaining());
            buf.put_slice(&this.held[..n]);
            this.held.advance(n);
        } else {
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    return match deadline {
                        Some(deadline) => {
                            let e = ready!(this.poll_read_deadline(cx, deadline));
                            Poll::Ready(Err(e))
                        }
                        None => Poll::Pending,
                    };
                }
            }
        }
        if buf.filled().len() == from {
            return Poll::Ready(Ok(())); // end of stream
        }
        // A head trickled in byte by byte: the read went pending between bytes, the timer for
        // this deadline was registered then, and has fired once the deadline passed.
        if deadline.is_some_and(|d| this.read_deadline_passed(d)) {
            buf.set_filled(from);
            return Poll::Ready(Err(head_timed_out()));
        }
        if this.account(buf, from).is_err() {
            buf.set_filled(from);
            return this.poll_reject(cx);
        }
        Poll::Ready(Ok(()))
    }
}

// === sending ===

impl ClientStream {
    /// Tracks a write's progress: a client that takes nothing for the send timeout is dropped.
    fn stalled<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write_stalled = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = Instant::now() + self.limits.send_timeout;
                let timer = self
                    .write_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !self.write_stalled {
                    self.write_stalled = true;
                    timer.as_mut().reset(deadline);
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client took nothing for client_send_timeout_secs",
                )))
            }
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, b);
        this.stalled(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.stalled(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.stalled(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.stalled(cx, r)
    }
}

#[cfg(test)]
mod tests;
