//! Cost of one access-log line: through tracing with the subscriber setups (text, JSON, filtered
//! out) and built directly as the proxy does, with the output discarded.

use criterion::{criterion_group, criterion_main, Criterion};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Copy)]
struct Discard;

impl std::io::Write for Discard {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(std::hint::black_box(b).len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Discard {
    type Writer = Discard;
    fn make_writer(&'a self) -> Discard {
        Discard
    }
}

fn event() {
    let ip = "127.0.0.1";
    tracing::info!(
        target: "access",
        request_id = "0123456789abcdef",
        domain = "app.example.test",
        tag = "a",
        backend = "web-v1",
        method = "GET",
        path = "/some/path",
        status = 200u16,
        duration_ms = 0.734_f64,
        client_ip = ip,
        retries = 0usize,
    );
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("access_log");
    let text = tracing_subscriber::fmt()
        .with_writer(Discard)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(text, || g.bench_function("text", |b| b.iter(event)));
    let lean = tracing_subscriber::fmt()
        .with_writer(Discard)
        .event_format(pingora_vhost::telemetry::LeanText)
        .finish();
    tracing::subscriber::with_default(lean, || g.bench_function("text_lean", |b| b.iter(event)));
    let json = tracing_subscriber::fmt()
        .with_writer(Discard)
        .with_timer(pingora_vhost::telemetry::FastTime)
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .finish();
    tracing::subscriber::with_default(json, || g.bench_function("json", |b| b.iter(event)));
    let off = tracing_subscriber::fmt()
        .with_writer(Discard)
        .with_env_filter("info,access=off")
        .finish();
    tracing::subscriber::with_default(off, || g.bench_function("disabled", |b| b.iter(event)));
    // The production path: the line built directly (no tracing event), as the proxy does.
    let record = pingora_vhost::telemetry::access::AccessRecord {
        request_id: "0123456789abcdef",
        domain: "app.example.test",
        tag: "a",
        backend: "web-v1",
        method: "GET",
        path: "/some/path",
        status: 200,
        duration_ms: 0.734,
        client_ip: "127.0.0.1",
        retries: 0,
    };
    let mut line = String::with_capacity(512);
    g.bench_function("direct_text", |b| {
        b.iter(|| {
            line.clear();
            pingora_vhost::telemetry::access::text_line(&mut line, &record).unwrap();
            std::hint::black_box(line.len())
        })
    });
    g.bench_function("direct_json", |b| {
        b.iter(|| {
            line.clear();
            pingora_vhost::telemetry::access::json_line(&mut line, &record).unwrap();
            std::hint::black_box(line.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
