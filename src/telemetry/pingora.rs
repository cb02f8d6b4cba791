//! Pingora's `log` records into tracing, with the ones that need no person lowered to `debug`:
//! Pingora logs a failed TLS handshake, a client that hangs up mid-request and a pooled
//! upstream connection it could not take back as errors.

use log::{Level, Log, Metadata, Record};

/// Error records of Pingora that clients or routine pool traffic cause, by target prefix and
/// message prefix.
const ROUTINE: &[(&str, &str)] = &[
    (
        "pingora_core::connectors",
        "failed to acquire reusable stream",
    ),
    ("pingora_core::services::listening", "Downstream handshake"),
    ("pingora_core::apps", "H2 handshake error"),
    // Reading a request head failed: the client closed, reset or sent garbage.
    ("pingora_proxy", "Fail to proxy:"),
    (
        "pingora_proxy",
        "failed to send error response to downstream",
    ),
    ("pingora_proxy", "Error finish sending body to downstream"),
];

/// Routes `log` records (Pingora's) into the installed tracing subscriber.
pub fn install() -> Result<(), String> {
    log::set_boxed_logger(Box::new(PingoraLog)).map_err(|e| format!("logging: {e}"))?;
    let max = match tracing::level_filters::LevelFilter::current().into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(tracing::Level::INFO) => log::LevelFilter::Info,
        Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
        Some(tracing::Level::TRACE) => log::LevelFilter::Trace,
    };
    log::set_max_level(max);
    Ok(())
}

struct PingoraLog;

impl Log for PingoraLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() != Level::Error || !is_routine(record) {
            let _ = tracing_log::format_trace(record);
            return;
        }
        let lowered = Record::builder()
            .args(*record.args())
            .level(Level::Debug)
            .target(record.target())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        let _ = tracing_log::format_trace(&lowered);
    }

    fn flush(&self) {}
}

fn is_routine(record: &Record<'_>) -> bool {
    let target = record.target();
    let mut candidates = ROUTINE
        .iter()
        .filter(|(t, _)| target.starts_with(t))
        .peekable();
    if candidates.peek().is_none() {
        return false;
    }
    let formatted;
    let message = match record.args().as_str() {
        Some(s) => s,
        None => {
            formatted = record.args().to_string();
            &formatted
        }
    };
    candidates.any(|(_, prefix)| message.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(target: &str, message: std::fmt::Arguments<'_>, check: impl FnOnce(bool)) {
        let r = Record::builder()
            .args(message)
            .level(Level::Error)
            .target(target)
            .build();
        check(is_routine(&r));
    }

    #[test]
    fn client_and_pool_errors_are_routine() {
        record(
            "pingora_core::connectors",
            format_args!("failed to acquire reusable stream"),
            |r| assert!(r),
        );
        let peer = "127.0.0.1:1";
        record(
            "pingora_core::services::listening",
            format_args!("Downstream handshake error from {peer}: eof"),
            |r| assert!(r),
        );
        record(
            "pingora_proxy",
            format_args!("Fail to proxy: {peer}"),
            |r| assert!(r),
        );
        record(
            "pingora_core::services::listening",
            format_args!("Accept() failed {peer}"),
            |r| assert!(!r),
        );
        record(
            "vhost",
            format_args!("failed to acquire reusable stream"),
            |r| assert!(!r),
        );
    }
}
