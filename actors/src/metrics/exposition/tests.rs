//! Tests of the format negotiation and the OpenMetrics -> 0.0.4 rewrite.

use super::*;

#[test]
fn accept_picks_the_format() {
    use TextFormat::*;
    for (accept, want) in [
        (None, Prometheus),
        (Some(""), Prometheus),
        (Some("*/*"), Prometheus),
        (Some("text/plain"), Prometheus),
        (Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"), Prometheus),
        (Some("application/openmetrics-text"), OpenMetrics),
        (Some("Application/OpenMetrics-Text; version=1.0.0"), OpenMetrics),
        (Some("application/openmetrics-text;q=0"), Prometheus),
        (Some("text/plain, application/openmetrics-text;q=0.5"), Prometheus),
        // What Prometheus itself sends.
        (
            Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            OpenMetrics,
        ),
    ] {
        assert_eq!(TextFormat::negotiate(accept), want, "{accept:?}");
    }
    assert!(Prometheus
        .content_type()
        .starts_with("text/plain; version=0.0.4"));
    assert!(OpenMetrics
        .content_type()
        .starts_with("application/openmetrics-text"));
}

#[test]
fn openmetrics_becomes_prometheus_text() {
    let om = "\
# HELP app_requests Requests \\\"answered\\\".
# TYPE app_requests counter
app_requests_total{code=\"2xx\"} 3 # {trace=\"x\"} 1.0
app_requests_created{code=\"2xx\"} 1700000000.0
# HELP app_duration_seconds Durations.
# TYPE app_duration_seconds histogram
# UNIT app_duration_seconds seconds
app_duration_seconds_sum 0.5
app_duration_seconds_count 2
app_duration_seconds_bucket{le=\"+Inf\"} 2
# HELP app_up Up.
# TYPE app_up gauge
app_up{name=\"a # {b}\"} 1
# TYPE app_other unknown
app_other 7
# EOF
";
    let want = "\
# HELP app_requests_total Requests \"answered\".
# TYPE app_requests_total counter
app_requests_total{code=\"2xx\"} 3
# HELP app_duration_seconds Durations.
# TYPE app_duration_seconds histogram
app_duration_seconds_sum 0.5
app_duration_seconds_count 2
app_duration_seconds_bucket{le=\"+Inf\"} 2
# HELP app_up Up.
# TYPE app_up gauge
app_up{name=\"a # {b}\"} 1
# TYPE app_other untyped
app_other 7
";
    assert_eq!(TextFormat::Prometheus.encode(om.to_string()), want);
    assert_eq!(TextFormat::OpenMetrics.encode(om.to_string()), om);
}
