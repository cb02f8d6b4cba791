//! The metrics endpoints end to end: Prometheus 0.0.4 text unless OpenMetrics is asked for,
//! the real `promtool check metrics` on the 0.0.4 text, and every panel of the shipped Grafana
//! dashboard finding a series on a fresh instance that has seen some traffic.

mod support;

use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// What Prometheus itself sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One sample line: its series name and labels.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
}

/// The samples of an exposition (label values here hold no `"`, `,` or `}`).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let series = l.split_once(' ').map_or(l, |(s, _)| s);
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let labels = labels
                .trim_end_matches('}')
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            Sample {
                name: name.to_string(),
                labels,
            }
        })
        .collect()
}

/// Every `pingora_vhost_*` selector in a PromQL expression, with its literal `label="value"`
/// matchers (template matchers such as `=~"$domain"` match anything on a fresh instance).
fn selectors(expr: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("pingora_vhost_") {
        rest = &rest[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..end].to_string();
        rest = &rest[end..];
        let mut matchers = Vec::new();
        if let Some(body) = rest.strip_prefix('{') {
            let close = body.find('}').expect("selector closes");
            for m in body[..close].split(',') {
                if let Some((k, v)) = m.split_once('=') {
                    if !v.starts_with('~') && !k.ends_with('!') {
                        matchers.push((k.trim().to_string(), v.trim_matches('"').to_string()));
                    }
                }
            }
            rest = &body[close..];
        }
        out.push((name, matchers));
    }
    out
}

/// Every PromQL expression of the dashboard's panels.
fn dashboard_exprs() -> Vec<(String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((
                        p["title"].as_str().unwrap_or("?").to_string(),
                        e.to_string(),
                    ));
                }
            }
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/pingora-vhost.json");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    assert!(out.len() > 10, "the dashboard's panels were found");
    out
}

/// `promtool check metrics` on `text`: `Some((passed, output))`, or `None` when promtool is not
/// installed and not required.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var("PROMTOOL_REQUIRED").as_deref() == Ok("1") => {
            panic!("PROMTOOL_REQUIRED=1 but promtool cannot run ({e}); apt-get install prometheus")
        }
        Err(e) => {
            // Straight to stderr: libtest would swallow eprintln! of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "note: promtool not found ({e}), its check is skipped (apt-get install prometheus, or run scripts/test)"
            );
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), said))
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_text_unless_openmetrics_is_asked_for_and_promtool_passes_it() {
    let a = Origin::start("a1").await;
    let b = Origin::start("b1").await;
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let p = Proxy::start_with(
        &format!("listen_addr = \"{https}\""),
        &format!(
            "[metrics]\nlisten_addr = \"{metrics_addr}\"\n\n{}{}{}{}{}",
            fast_health_toml(3, 1),
            backend_toml("a1", a.addr, &["a"]),
            backend_toml("b1", b.addr, &["b"]),
            vhost_toml("app.test", "a"),
            vhost_toml("other.test", "b"),
        ),
    )
    .await;
    wait_for_health(&p, "a1", "healthy", Duration::from_secs(10)).await;
    wait_for_health(&p, "b1", "healthy", Duration::from_secs(10)).await;
    for _ in 0..3 {
        assert_eq!(p.get("app.test", "/").await.0, 200);
        assert_eq!(p.get("other.test", "/").await.0, 200);
    }
    assert_eq!(p.get("nope.test", "/").await.0, 404);
    let (s, _) = call(
        Method::POST,
        &p.api("/domains/app.test/switch"),
        Some(json!({"new_tag": "b"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p.get("app.test", "/").await.0, 200);

    // No Accept, `*/*` and `text/plain` all get the 0.0.4 text, on every metrics endpoint.
    let plain_url = format!("http://{metrics_addr}/metrics");
    for (url, accept) in [
        (plain_url.clone(), ""),
        (format!("http://{metrics_addr}/api/v1/metrics"), "*/*"),
        (p.api("/metrics"), "text/plain"),
    ] {
        let (ct, text) = scrape_as(&url, accept).await;
        assert_eq!(
            ct, "text/plain; version=0.0.4; charset=utf-8",
            "{url} {accept:?}"
        );
        assert!(!text.contains("# EOF"), "{url}:\n{text}");
    }
    // What Prometheus sends asks for OpenMetrics, and gets it, on every endpoint.
    for url in [
        plain_url.clone(),
        format!("http://{metrics_addr}/api/v1/metrics"),
        p.api("/metrics"),
    ] {
        let (ct, text) = scrape_as(&url, PROMETHEUS_ACCEPT).await;
        assert!(
            ct.starts_with("application/openmetrics-text; version=1.0.0"),
            "{ct}"
        );
        assert!(text.ends_with("# EOF\n"), "{url}:\n{text}");
        assert!(
            text.contains("# TYPE pingora_vhost_requests counter\n"),
            "{text}"
        );
    }

    let (_, text) = scrape_as(&plain_url, "").await;
    println!("--- Prometheus 0.0.4 text ---\n{text}");
    for line in [
        "# TYPE pingora_vhost_requests_total counter",
        "# TYPE pingora_vhost_request_duration_seconds histogram",
        "# TYPE pingora_vhost_active_requests gauge",
        "# TYPE pingora_vhost_upstream_retries_total counter",
        "# TYPE pingora_vhost_backend_up gauge",
        "# TYPE pingora_vhost_health_checks_total counter",
        "# TYPE pingora_vhost_tag_switches_total counter",
        "# TYPE pingora_vhost_certificate_not_after_seconds gauge",
        "# TYPE pingora_vhost_acme_orders_total counter",
        "# TYPE pingora_vhost_rollbacks_total counter",
        r#"pingora_vhost_requests_total{domain="app.test",tag="a",code="2xx"} 3"#,
        r#"pingora_vhost_requests_total{domain="app.test",tag="b",code="2xx"} 1"#,
        r#"pingora_vhost_requests_total{domain="_unknown",tag="_unknown",code="4xx"} 1"#,
        r#"pingora_vhost_tag_switches_total{domain="app.test"} 1"#,
        // Counters of events that have not happened yet are there, at zero.
        r#"pingora_vhost_tag_switches_total{domain="other.test"} 0"#,
        r#"pingora_vhost_rollbacks_total{domain="app.test"} 0"#,
        r#"pingora_vhost_rollbacks_total{domain="other.test"} 0"#,
        r#"pingora_vhost_upstream_retries_total{domain="other.test"} 0"#,
        r#"pingora_vhost_health_checks_total{backend="a1",result="failure"} 0"#,
        r#"pingora_vhost_health_checks_total{backend="b1",result="failure"} 0"#,
        r#"pingora_vhost_acme_orders_total{result="success"} 0"#,
        r#"pingora_vhost_acme_orders_total{result="failure"} 0"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    assert!(!text.contains("# UNIT"), "{text}");

    // Every selector of every panel finds at least one series.
    let have = samples(&text);
    for (title, expr) in dashboard_exprs() {
        for (name, matchers) in selectors(&expr) {
            let found = have.iter().any(|s| {
                s.name == name
                    && matchers
                        .iter()
                        .all(|(k, v)| s.labels.get(k).is_some_and(|got| got == v))
            });
            assert!(
                found,
                "panel {title:?}: no series for {name} {matchers:?} in\n{text}"
            );
        }
    }

    match promtool_check(&text) {
        Some((passed, said)) => {
            println!(
                "promtool check metrics: {}",
                if passed { "passed" } else { "FAILED" }
            );
            assert!(passed, "promtool check metrics failed:\n{said}\non\n{text}");
            assert!(said.trim().is_empty(), "promtool found problems:\n{said}");
        }
        None => println!("promtool check skipped"),
    }
}
