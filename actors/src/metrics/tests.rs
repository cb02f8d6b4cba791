//! Tests of the families: the documented names, stats, and series that go with their domain.

use super::actor::MetricsBook;
use super::*;
use std::time::Duration;

fn book_with(handles: &mut RouteHandles) -> MetricsBook {
    let mut book = MetricsBook::new(Arc::clone(handles.metrics()));
    for u in handles.take_updates() {
        book.apply(u);
    }
    book
}

#[test]
fn records_and_renders_with_contract_names() {
    let m = Metrics::new();
    let mut handles = RouteHandles::new(Arc::clone(&m));
    let r = handles.route("app.test", "a");
    r.record(200, true, false, Duration::from_millis(3));
    r.record(503, false, false, Duration::from_millis(1));
    r.record(404, true, false, Duration::from_millis(1));
    r.record_retry();
    m.unknown_host()
        .record(404, false, false, Duration::from_micros(10));
    m.record_switch("app.test");
    let mut book = book_with(&mut handles);
    let text = book.render(0, None, None).unwrap();
    for line in [
        r#"pingora_vhost_requests_total{domain="app.test",tag="a",code="2xx"} 1"#,
        r#"pingora_vhost_requests_total{domain="app.test",tag="a",code="5xx"} 1"#,
        r#"pingora_vhost_requests_total{domain="_unknown",tag="_unknown",code="4xx"} 1"#,
        r#"pingora_vhost_upstream_retries_total{domain="app.test"} 1"#,
        r#"pingora_vhost_tag_switches_total{domain="app.test"} 1"#,
        r#"pingora_vhost_rollbacks_total{domain="app.test"} 0"#,
        r#"pingora_vhost_acme_orders_total{result="success"} 0"#,
        r#"pingora_vhost_acme_orders_total{result="failure"} 0"#,
        r#"pingora_vhost_request_duration_seconds_count{domain="app.test",tag="a"} 3"#,
        r#"pingora_vhost_request_duration_seconds_bucket{le="0.005",domain="app.test",tag="a"} 3"#,
        "pingora_vhost_active_requests 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let s = book.stats();
    let d = &s.domains["app.test"];
    assert_eq!(
        (
            d.totals.total_requests,
            d.totals.success_requests,
            d.totals.error_requests
        ),
        (3, 2, 1)
    );
    assert!((d.tags["a"].avg_latency_ms - 5.0 / 3.0).abs() < 0.01);
    assert!(!s.domains.contains_key(UNKNOWN));

    handles.forget_domain("app.test");
    for u in handles.take_updates() {
        book.apply(u);
    }
    let text = book.render(0, None, None).unwrap();
    assert!(!text.contains(r#"domain="app.test""#), "{text}");
    assert!(book.stats().domains.is_empty());
}

#[test]
fn handles_are_resolved_once_per_domain_and_tag() {
    let mut handles = RouteHandles::new(Metrics::new());
    let a = handles.route("app.test", "a");
    assert!(Arc::ptr_eq(&a, &handles.route("app.test", "a")));
    assert_eq!(handles.take_updates().len(), 1, "one update per new series");
}

#[test]
fn a_rollback_rule_counts_each_request_once() {
    let mut handles = RouteHandles::new(Metrics::new());
    let r = handles.route("app.test", "b");
    assert_eq!(r.recent_outcomes(10), (0, 0), "not watched");
    r.watch_outcomes(true);
    let ms = Duration::from_millis(1);
    // Failed attempt, no other backend: 502. Failed attempt, retry answered: 200. Plain 200,
    // plain 503.
    r.record(502, false, true, ms);
    r.record(200, true, true, ms);
    r.record(200, true, false, ms);
    r.record(503, true, false, ms);
    assert_eq!(r.recent_outcomes(10), (4, 3));
    // Republishing the domain for another reason keeps the counts; a routing change clears them.
    r.watch_outcomes(false);
    assert_eq!(r.recent_outcomes(10), (4, 3));
    r.watch_outcomes(true);
    assert_eq!(r.recent_outcomes(10), (0, 0));
}
