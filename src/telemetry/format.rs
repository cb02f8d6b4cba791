//! A lean text line format: the same shape as tracing-subscriber's default
//! (`<time>  INFO target: message k=v ...`) without ANSI handling or span context, and with
//! plain strings written as they are (quoted only when they need it).

use super::clock::FastTime;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The text format of the logs.
pub struct LeanText;

impl<S, N> FormatEvent<S, N> for LeanText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        FastTime.format_time(&mut writer)?;
        // Records bridged from the `log` crate (Pingora's) carry their real target here.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let level = match *meta.level() {
            tracing::Level::ERROR => " ERROR ",
            tracing::Level::WARN => "  WARN ",
            tracing::Level::INFO => "  INFO ",
            tracing::Level::DEBUG => " DEBUG ",
            tracing::Level::TRACE => " TRACE ",
        };
        writer.write_str(level)?;
        writer.write_str(meta.target())?;
        writer.write_char(':')?;
        let mut fields = Fields {
            w: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        if field.name() == "message" {
            return self.w.write_char(' ');
        }
        self.w.write_char(' ')?;
        self.w.write_str(field.name())?;
        self.w.write_char('=')
    }
}

/// Fields the `log` bridge adds (`log.target`, `log.file`, ...): already in the line.
fn bridged(field: &Field) -> bool {
    field.name().starts_with("log.")
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() || bridged(field) {
            return;
        }
        self.result = self.key(field).and_then(|_| {
            if field.name() == "message" {
                self.w.write_str(value)
            } else {
                write_text_value(self.w, value)
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() && !bridged(field) {
            self.result = self
                .key(field)
                .and_then(|_| self.w.write_str(itoa::Buffer::new().format(value)));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_ok() {
            self.result = self
                .key(field)
                .and_then(|_| self.w.write_str(itoa::Buffer::new().format(value)));
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|_| write_f64_3(self.w, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() && !bridged(field) {
            self.result = self.key(field).and_then(|_| write!(self.w, "{value:?}"));
        }
    }
}

/// A field value: as it is when it is plain, else quoted and escaped.
pub(super) fn write_text_value(w: &mut Writer<'_>, value: &str) -> fmt::Result {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' && b != b'=');
    if plain {
        w.write_str(value)
    } else {
        write!(w, "{value:?}")
    }
}

/// `value` with three decimals (`{:.3}`), by integer arithmetic for the usual durations.
pub(super) fn write_f64_3(w: &mut Writer<'_>, value: f64) -> fmt::Result {
    if !(0.0..1e12).contains(&value) {
        return write!(w, "{value:.3}");
    }
    let thousandths = (value * 1000.0).round() as u64;
    let mut digits = itoa::Buffer::new();
    w.write_str(digits.format(thousandths / 1000))?;
    w.write_char('.')?;
    // 1000 + frac has four digits: skip the leading 1 for zero padding.
    w.write_str(&digits.format(1000 + thousandths % 1000)[1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::test_support::Captured;

    #[test]
    fn plain_values_bare_others_quoted() {
        let out = Captured::default();
        let w = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .event_format(LeanText)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "access", domain = "app.test", path = "/a b", status = 200u16, duration_ms = 1.23456_f64, "done");
        });
        let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            line.ends_with(
                " INFO access: done domain=app.test path=\"/a b\" status=200 duration_ms=1.235\n"
            ),
            "{line}"
        );
    }

    #[test]
    fn three_decimals_like_std() {
        for v in [
            0.0, 0.0004, 0.0005, 0.012, 0.734, 1.0, 9.9999, 12.3456, 1234.5, -1.5, 1e13,
        ] {
            let mut s = String::new();
            write_f64_3(&mut Writer::new(&mut s), v).unwrap();
            let std = format!("{v:.3}");
            // Halfway cases may round either way; the value must agree to the last digit.
            let (a, b): (f64, f64) = (s.parse().unwrap(), std.parse().unwrap());
            assert!((a - b).abs() <= 0.001 + f64::EPSILON, "{v}: {s} vs {std}");
            assert_eq!(s.len(), std.len(), "{v}: {s} vs {std}");
        }
    }
}
