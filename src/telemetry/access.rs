//! The access log's own fast path. Every proxied request writes one line, so it skips tracing's
//! per-event machinery (value sets, field visitors, the fmt layer's buffers): the line is built
//! in a per-thread buffer in exactly the shape the tracing formats give (text or JSON) and handed
//! to the same buffered writer as every other log line. Whether it is written at all is still
//! decided by the tracing filter (`logging.level`, `RUST_LOG`, e.g. `access=off`), by the caller.

use super::clock::FastTime;
use super::sink::BufferedSink;
use crate::config::LogFormat;
use std::cell::RefCell;
use std::sync::OnceLock;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// One access-log record (target `access`, level INFO).
#[derive(Clone, Copy, Debug)]
pub struct AccessRecord<'a> {
    pub request_id: &'a str,
    pub domain: &'a str,
    pub tag: &'a str,
    pub backend: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub client_ip: &'a str,
    pub retries: u64,
}

impl<'a> AccessRecord<'a> {
    /// The text-valued fields in line order (numbers and the client address follow).
    fn text_fields(&self) -> [(&'static str, &'a str); 6] {
        [
            ("request_id", self.request_id),
            ("domain", self.domain),
            ("tag", self.tag),
            ("backend", self.backend),
            ("method", self.method),
            ("path", self.path),
        ]
    }
}

struct AccessSink {
    sink: BufferedSink,
    format: LogFormat,
}

static SINK: OnceLock<AccessSink> = OnceLock::new();

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// Routes access records straight to `sink` from now on (set once, by `telemetry::init`).
pub(super) fn install(sink: BufferedSink, format: LogFormat) {
    let _ = SINK.set(AccessSink { sink, format });
}

/// Writes one access record. Call only when `tracing::enabled!(target: "access", INFO)`.
pub fn write(r: &AccessRecord<'_>) {
    let Some(out) = SINK.get() else {
        // No process-wide setup (a library user or a test): an ordinary tracing event.
        event(r);
        return;
    };
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.clear();
        let _ = match out.format {
            LogFormat::Text => text_line(&mut line, r),
            LogFormat::Json => json_line(&mut line, r),
        };
        out.sink.push(line.as_bytes());
    });
}

/// The record as a tracing event (target `access`, INFO).
fn event(r: &AccessRecord<'_>) {
    tracing::info!(
        target: "access",
        request_id = r.request_id,
        domain = r.domain,
        tag = r.tag,
        backend = r.backend,
        method = r.method,
        path = r.path,
        status = r.status,
        duration_ms = r.duration_ms,
        client_ip = r.client_ip,
        retries = r.retries,
    );
}

/// `<time>  INFO access: request_id=... domain=... ...`, as the lean text format writes it.
pub fn text_line(out: &mut String, r: &AccessRecord<'_>) -> std::fmt::Result {
    FastTime.format_time(&mut Writer::new(out))?;
    out.push_str("  INFO access:");
    for (key, value) in r.text_fields() {
        out.push(' ');
        out.push_str(key);
        out.push('=');
        super::format::write_text_value(&mut Writer::new(out), value)?;
    }
    let mut digits = itoa::Buffer::new();
    out.push_str(" status=");
    out.push_str(digits.format(r.status));
    out.push_str(" duration_ms=");
    super::format::write_f64_3(&mut Writer::new(out), r.duration_ms)?;
    out.push_str(" client_ip=");
    super::format::write_text_value(&mut Writer::new(out), r.client_ip)?;
    out.push_str(" retries=");
    out.push_str(digits.format(r.retries));
    out.push('\n');
    Ok(())
}

/// `{"timestamp":...,"level":"INFO",<fields>,"target":"access"}`, as tracing's JSON format
/// (flattened) writes it.
pub fn json_line(out: &mut String, r: &AccessRecord<'_>) -> std::fmt::Result {
    out.push_str("{\"timestamp\":\"");
    FastTime.format_time(&mut Writer::new(out))?;
    out.push_str("\",\"level\":\"INFO\"");
    for (key, value) in r.text_fields() {
        json_str_field(out, key, value);
    }
    let mut digits = itoa::Buffer::new();
    out.push_str(",\"status\":");
    out.push_str(digits.format(r.status));
    out.push_str(",\"duration_ms\":");
    if r.duration_ms.is_finite() {
        super::format::write_f64_3(&mut Writer::new(out), r.duration_ms)?;
    } else {
        out.push_str("null");
    }
    json_str_field(out, "client_ip", r.client_ip);
    out.push_str(",\"retries\":");
    out.push_str(digits.format(r.retries));
    out.push_str(",\"target\":\"access\"}\n");
    Ok(())
}

fn json_str_field(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    let plain = value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        // serde_json escapes quotes, backslashes and control characters.
        out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::test_support::Captured;

    fn record<'a>(path: &'a str) -> AccessRecord<'a> {
        AccessRecord {
            request_id: "00000000000000ab",
            domain: "app.test",
            tag: "a",
            backend: "web-1",
            method: "GET",
            path,
            status: 200,
            duration_ms: 1.23456,
            client_ip: "127.0.0.1",
            retries: 1,
        }
    }

    /// The line tracing would write for the same record with `format`.
    fn through_tracing(r: &AccessRecord<'_>, json: bool) -> String {
        let out = Captured::default();
        let w = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_timer(FastTime)
            .with_ansi(false);
        let emit = || event(r);
        if json {
            let s = builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish();
            tracing::subscriber::with_default(s, emit);
        } else {
            let s = builder.event_format(super::super::LeanText).finish();
            tracing::subscriber::with_default(s, emit);
        }
        let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        line
    }

    /// Drops the timestamp (text: up to the first space; JSON: the field).
    fn untimed(line: &str, json: bool) -> String {
        if json {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v.as_object_mut().unwrap().remove("timestamp");
            v.to_string()
        } else {
            line.split_once(' ').unwrap().1.to_string()
        }
    }

    #[test]
    fn text_lines_equal_the_tracing_format() {
        for path in ["/a/b", "/with space", "/q\"uote", "/x=y", "", "/ünï"] {
            let r = record(path);
            let mut ours = String::new();
            text_line(&mut ours, &r).unwrap();
            let theirs = through_tracing(&r, false);
            assert_eq!(untimed(&ours, false), untimed(&theirs, false));
        }
    }

    #[test]
    fn json_lines_carry_the_same_values_as_the_tracing_format() {
        for path in ["/a/b", "/with space", "/q\"uote\\", "/ctl\u{1}", "/ünï"] {
            let r = record(path);
            let mut ours = String::new();
            json_line(&mut ours, &r).unwrap();
            assert!(ours.ends_with("}\n"));
            let theirs = through_tracing(&r, true);
            // Same keys, same values (tracing writes the f64 in full, we round to 3 decimals).
            let (mut a, mut b): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(&untimed(&ours, true)).unwrap(),
                serde_json::from_str(&untimed(&theirs, true)).unwrap(),
            );
            assert_eq!(a["duration_ms"], 1.235);
            a["duration_ms"] = 0.into();
            b["duration_ms"] = 0.into();
            assert_eq!(a, b, "{ours}\n{theirs}");
            // Key order as tracing writes it: timestamp, level, fields, target.
            let keys: Vec<&str> = ours
                .split("\":")
                .map(|k| k.rsplit('"').next().unwrap())
                .collect();
            assert_eq!(&keys[..3], ["timestamp", "level", "request_id"], "{ours}");
        }
    }
}
