//! Logging setup: level (RUST_LOG overrides), text or JSON lines, console or daily rolling files,
//! always through a buffered background writer so the request path never waits on I/O.

pub mod access;
mod clock;
mod format;
mod pingora;
mod sink;

pub use clock::FastTime;
pub use format::LeanText;

use crate::config::{LogFormat, LogOutput, LoggingConfig};
use sink::{BufferedSink, SinkGuard};
use std::sync::Mutex;
use tracing_subscriber::EnvFilter;

static GUARD: Mutex<Option<SinkGuard>> = Mutex::new(None);

/// Installs the global subscriber described by `cfg`.
pub fn init(cfg: &LoggingConfig) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .map_err(|e| format!("logging.level: {e}"))?;
    let (writer, guard) = match cfg.output {
        LogOutput::Console => BufferedSink::start(std::io::stdout()),
        LogOutput::File => {
            let dir = cfg.file_path.as_ref().expect("validated: file_path is set");
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("logging.file_path: cannot create {}: {e}", dir.display()))?;
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("pingora-vhost")
                .filename_suffix("log")
                .build(dir)
                .map_err(|e| format!("logging.file_path: {e}"))?;
            BufferedSink::start(appender)
        }
    };
    access::install(writer.clone(), cfg.format);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_timer(FastTime)
        .with_ansi(false);
    // Installed as the global default, with Pingora's `log` records bridged by `pingora`.
    let result = match cfg.format {
        LogFormat::Text => {
            tracing::subscriber::set_global_default(builder.event_format(LeanText).finish())
        }
        LogFormat::Json => tracing::subscriber::set_global_default(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    };
    result.map_err(|e| format!("logging: {e}"))?;
    pingora::install()?;
    *GUARD.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    Ok(())
}

/// Flushes buffered log lines; call before the process exits.
pub fn flush() {
    drop(GUARD.lock().unwrap_or_else(|e| e.into_inner()).take());
}

#[cfg(test)]
mod test_support {
    use std::sync::{Arc, Mutex};

    /// A writer that keeps what is written, for tests of the log formats and sink.
    #[derive(Clone, Default)]
    pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
