//! Log timestamps without formatting a date per line: the `YYYY-MM-DDTHH:MM:SS.` prefix is
//! built once a second per thread and only the microseconds are written each time. The output
//! is the same RFC 3339 UTC form tracing-subscriber's `SystemTime` writes.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// RFC 3339 UTC timestamps with microseconds, e.g. `2026-11-24T09:15:02.123456Z`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastTime;

struct Cached {
    secs: u64,
    prefix: String,
}

thread_local! {
    static CACHE: RefCell<Cached> = const { RefCell::new(Cached { secs: u64::MAX, prefix: String::new() }) };
}

impl FormatTime for FastTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.secs != now.as_secs() {
                cache.secs = now.as_secs();
                cache.prefix.clear();
                write_prefix(&mut cache.prefix, now.as_secs())?;
            }
            w.write_str(&cache.prefix)?;
            // 1_000_000 + micros has seven digits: skip the leading 1 for zero padding.
            let mut digits = itoa::Buffer::new();
            w.write_str(&digits.format(1_000_000 + now.subsec_micros())[1..])?;
            w.write_char('Z')
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` since the epoch (UTC).
fn write_prefix(out: &mut String, secs: u64) -> fmt::Result {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).map_err(|_| fmt::Error)?;
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(timer: &dyn FormatTime) -> String {
        let mut s = String::new();
        timer.format_time(&mut Writer::new(&mut s)).unwrap();
        s
    }

    #[test]
    fn same_shape_as_tracing_subscriber() {
        let ours = render(&FastTime);
        let theirs = render(&tracing_subscriber::fmt::time::SystemTime);
        assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
        // Equal up to the second (unless the second turned between the two calls).
        assert!(ours[..17] == theirs[..17], "{ours} vs {theirs}");
        assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
    }

    #[test]
    fn known_instant() {
        let mut s = String::new();
        write_prefix(&mut s, 1_795_000_000).unwrap();
        assert_eq!(s, "2026-11-18T11:06:40.");
    }
}
