//! Metrics, stats and logs over real traffic: exact counters, histogram buckets, stats equal
//! to the counters, deleted domains' series gone, JSON access lines, rolling log files.

mod support;

use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

/// An origin answering `/status/<code>` with that status, everything else 200.
async fn status_origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
        let code = uri
            .path()
            .strip_prefix("/status/")
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(200);
        (axum::http::StatusCode::from_u16(code).unwrap(), "answer")
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing `{line}` in\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_histograms_and_stats_match_known_traffic() {
    let ok = status_origin().await;
    let b = Origin::start("b1").await;
    let dead_guard = RefusedAddr::new();
    let dead = dead_guard.addr;
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let p = Proxy::start(&format!(
        "[metrics]\nlisten_addr = \"{metrics_addr}\"\n\n[health_check]\nenabled = false\n\n{}{}{}{}{}{}{}",
        backend_toml("a1", ok, &["a"]),
        backend_toml("b1", b.addr, &["b"]),
        backend_toml("dead", dead, &["r"]),
        backend_toml("ok", ok, &["r"]),
        vhost_toml("app.test", "a"),
        vhost_toml("retry.test", "r"),
        vhost_toml("gone.test", "a"),
    ))
    .await;

    for path in [
        "/",
        "/x",
        "/status/204",
        "/status/404",
        "/status/404",
        "/status/500",
    ] {
        p.get("app.test", path).await;
    }
    for host in ["nope.test", "other.nope"] {
        assert_eq!(p.get(host, "/").await.0, 404);
    }
    // Two requests that each fail on "dead" first and are retried on "ok".
    for _ in 0..2 {
        assert_eq!(p.get("retry.test", "/").await.0, 200);
    }
    p.get("gone.test", "/").await;
    for tag in ["b", "a"] {
        let (s, _) = call(
            Method::POST,
            &p.api("/domains/app.test/switch"),
            Some(json!({"new_tag": tag})),
        )
        .await;
        assert_eq!(s, 200);
    }
    p.get("app.test", "/").await;
    let (s, _) = call(Method::DELETE, &p.api("/domains/gone.test"), None).await;
    assert_eq!(s, 204);

    let text = scrape(&format!("http://{metrics_addr}/metrics")).await;
    for line in [
        r#"pingora_vhost_requests_total{domain="app.test",tag="a",code="2xx"} 4"#,
        r#"pingora_vhost_requests_total{domain="app.test",tag="a",code="4xx"} 2"#,
        r#"pingora_vhost_requests_total{domain="app.test",tag="a",code="5xx"} 1"#,
        r#"pingora_vhost_requests_total{domain="_unknown",tag="_unknown",code="4xx"} 2"#,
        r#"pingora_vhost_requests_total{domain="retry.test",tag="r",code="2xx"} 2"#,
        r#"pingora_vhost_upstream_retries_total{domain="retry.test"} 2"#,
        r#"pingora_vhost_upstream_retries_total{domain="app.test"} 0"#,
        r#"pingora_vhost_tag_switches_total{domain="app.test"} 2"#,
        r#"pingora_vhost_request_duration_seconds_count{domain="app.test",tag="a"} 7"#,
        r#"pingora_vhost_request_duration_seconds_bucket{le="+Inf",domain="app.test",tag="a"} 7"#,
        r#"pingora_vhost_backend_up{backend="a1",tag="a"} 1"#,
        r#"pingora_vhost_backend_up{backend="dead",tag="r"} 1"#,
        "pingora_vhost_active_requests 0",
        "# TYPE pingora_vhost_request_duration_seconds histogram",
        "# TYPE pingora_vhost_requests counter",
        "# TYPE pingora_vhost_backend_up gauge",
    ] {
        has(&text, line);
    }
    assert!(
        !text.contains("gone.test"),
        "a deleted domain's series go away:\n{text}"
    );
    assert!(!text.contains("nope.test"), "no series per bogus host");
    let buckets = text
        .lines()
        .filter(|l| {
            l.starts_with("pingora_vhost_request_duration_seconds_bucket{")
                && l.contains(r#"domain="app.test""#)
        })
        .count();
    assert!(buckets >= 10, "histogram buckets present:\n{text}");

    // The same text on /api/v1/metrics of both ports.
    let again = scrape(&format!("http://{metrics_addr}/api/v1/metrics")).await;
    has(
        &again,
        r#"pingora_vhost_tag_switches_total{domain="app.test"} 2"#,
    );
    let admin = scrape(&p.api("/metrics")).await;
    has(
        &admin,
        r#"pingora_vhost_upstream_retries_total{domain="retry.test"} 2"#,
    );

    let (s, stats) = call(Method::GET, &p.api("/stats"), None).await;
    assert_eq!(s, 200);
    let app = &stats["domains"]["app.test"];
    assert_eq!(app["total_requests"], 7, "{stats}");
    assert_eq!(app["success_requests"], 6, "{stats}");
    assert_eq!(app["error_requests"], 1, "{stats}");
    assert!(app["avg_latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(app["tags"]["a"]["total_requests"], 7);
    assert_eq!(stats["domains"]["retry.test"]["success_requests"], 2);
    assert!(stats["domains"].get("gone.test").is_none(), "{stats}");
    assert!(stats["domains"].get("_unknown").is_none(), "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_are_counted() {
    let a = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "{}{}{}",
        fast_health_toml(1, 1),
        backend_toml("a1", a.addr, &["a", "x"]),
        vhost_toml("app.test", "a"),
    ))
    .await;
    wait_for_health(&p, "a1", "healthy", Duration::from_secs(10)).await;
    let text = scrape(&p.api("/metrics")).await;
    assert!(
        text.contains(r#"pingora_vhost_health_checks_total{backend="a1",result="success"} "#),
        "{text}"
    );
    has(&text, r#"pingora_vhost_backend_up{backend="a1",tag="x"} 1"#);
}

fn wait_for_file_text(dir: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = String::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            all += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
        if all.contains(needle) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in {}: {all}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_log_lines_carry_every_field() {
    let a = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "[logging]\nformat = \"json\"\n\n{}{}",
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.test", "a"),
    ))
    .await;
    p.get("app.test", "/hello?x=1").await;
    p.get("unknown.test", "/nope").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let access: Vec<serde_json::Value> = loop {
        let lines: Vec<serde_json::Value> = p
            .log()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .filter(|v: &serde_json::Value| v["target"] == "access")
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(Instant::now() < deadline, "no access lines: {}", p.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let hit = access.iter().find(|v| v["domain"] == "app.test").unwrap();
    for field in [
        "domain",
        "tag",
        "backend",
        "method",
        "path",
        "status",
        "duration_ms",
        "client_ip",
        "request_id",
    ] {
        assert!(!hit[field].is_null(), "{field} missing: {hit}");
    }
    assert_eq!(hit["level"], "INFO");
    assert_eq!(hit["tag"], "a");
    assert_eq!(hit["backend"], "a1");
    assert_eq!(hit["method"], "GET");
    assert_eq!(hit["path"], "/hello");
    assert_eq!(hit["status"], 200);
    assert_eq!(hit["client_ip"], "127.0.0.1");
    let miss = access.iter().find(|v| v["domain"] == "_unknown").unwrap();
    assert_eq!(miss["status"], 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn file_output_writes_rolling_files() {
    let a = Origin::start("a1").await;
    let logs = tempfile::tempdir().unwrap();
    let p = Proxy::start(&format!(
        "[logging]\noutput = \"file\"\nfile_path = \"{}\"\n\n{}{}",
        logs.path().display(),
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.test", "a"),
    ))
    .await;
    p.get("app.test", "/written").await;
    let text = wait_for_file_text(logs.path(), "path=/written");
    assert!(text.contains("pingora-vhost started"), "{text}");
    let names: Vec<String> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("pingora-vhost.") && n.ends_with(".log")),
        "{names:?}"
    );
}
