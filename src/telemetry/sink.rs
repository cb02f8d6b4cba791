//! A log sink for hot paths: a formatted line is appended to a shared buffer under a short lock,
//! and one writer thread writes the buffer out every [`FLUSH_EVERY`] or whenever it passes
//! [`WAKE_AT`] bytes. A line costs a memcpy, not a system call or a thread wake-up.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// Longest time a line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Buffer size that wakes the writer early.
const WAKE_AT: usize = 64 * 1024;
/// Buffer size beyond which lines are dropped (the writer cannot keep up).
const DROP_AT: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    closing: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    dropped: AtomicU64,
}

/// The handle tracing writes through; clones share the buffer.
#[derive(Clone)]
pub struct BufferedSink {
    shared: Arc<Shared>,
}

/// Stops the writer thread after writing what is buffered.
pub struct SinkGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BufferedSink {
    /// Starts the writer thread over `out`.
    pub fn start<W: Write + Send + 'static>(mut out: W) -> (Self, SinkGuard) {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(WAKE_AT);
                loop {
                    let closing = {
                        let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
                        if st.buf.len() < WAKE_AT && !st.closing {
                            st = s
                                .wake
                                .wait_timeout(st, FLUSH_EVERY)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        std::mem::swap(&mut st.buf, &mut spare);
                        st.closing
                    };
                    if !spare.is_empty() {
                        let _ = out.write_all(&spare).and_then(|_| out.flush());
                        spare.clear();
                    }
                    let dropped = s.dropped.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        let _ = writeln!(
                            out,
                            "log-writer: {dropped} log lines dropped (output too slow)"
                        );
                    }
                    if closing {
                        let _ = out.flush();
                        return;
                    }
                }
            })
            .expect("spawn the log writer thread");
        (
            Self {
                shared: Arc::clone(&shared),
            },
            SinkGuard {
                shared,
                thread: Some(thread),
            },
        )
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl BufferedSink {
    /// Appends one line (or several) to the buffer.
    pub fn push(&self, line: &[u8]) {
        let wake = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.buf.len() + line.len() > DROP_AT {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let before = st.buf.len();
            st.buf.extend_from_slice(line);
            before < WAKE_AT && st.buf.len() >= WAKE_AT
        };
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl Write for BufferedSink {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedSink {
    type Writer = BufferedSink;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::test_support::Captured;

    #[test]
    fn lines_arrive_in_order_and_the_guard_drains() {
        let out = Captured::default();
        let (mut sink, guard) = BufferedSink::start(out.clone());
        for i in 0..10_000 {
            sink.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_000);
        assert_eq!(lines[9_999], "line 9999");
    }

    #[test]
    fn a_quiet_sink_still_writes_soon() {
        let out = Captured::default();
        let (mut sink, _guard) = BufferedSink::start(out.clone());
        sink.write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
