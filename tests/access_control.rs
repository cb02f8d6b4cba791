//! Access control end to end, from real client addresses (loopback has all of 127.0.0.0/8, so
//! each client binds its own source address): allow and deny lists (`403`), rate limits per
//! client IP (`429` with `Retry-After`), both set in the config and through `PUT` (`null`
//! removes them) and kept across a restart, refused requests counted in
//! `pingora_vhost_requests_total` and never proxied, and `trusted_proxies` deciding the client
//! address from `X-Forwarded-For`.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::net::IpAddr;
use support::*;

/// A client whose connections come from `source`.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// One GET through the proxy from `source`: status, `Retry-After`, body.
async fn get_from(
    p: &Proxy,
    source: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let mut req = client_from(source).get(p.url("/")).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), retry_after, r.text().await.unwrap())
}

fn config_with(origin: &Origin, vhost_keys: &str) -> String {
    format!(
        "{}[[virtual_hosts]]\ndomain = \"app.test\"\nenabled_backends_tag = \"a\"\n{vhost_keys}\n\n{}",
        backend_toml("a1", origin.addr, &["a"]),
        vhost_toml("open.test", "a"),
    )
}

#[tokio::test]
async fn allow_and_deny_lists_refuse_with_403_before_any_backend() {
    let origin = Origin::start("a1").await;
    let p = Proxy::start(&config_with(
        &origin,
        "allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.66\"]",
    ))
    .await;

    let (status, _, body) = get_from(&p, "127.0.0.2", "app.test", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"backend\":\"a1\""), "{body}");
    let (status, _, body) = get_from(&p, "127.0.0.66", "app.test", &[]).await;
    assert_eq!(status, 403, "deny wins over allow: {body}");
    assert!(body.contains("403 forbidden"), "{body}");
    assert!(
        !body.contains("backend"),
        "a refused request never reaches a backend: {body}"
    );
    // Another domain without lists is open to the denied address.
    let (status, _, _) = get_from(&p, "127.0.0.66", "open.test", &[]).await;
    assert_eq!(status, 200);

    // Through the API: an allow list that leaves the client out, then removed with null.
    let url = p.api("/domains/app.test");
    let (code, d) = call(Method::PUT, &url, Some(json!({"allow": ["127.0.0.5/32"]}))).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["allow"], json!(["127.0.0.5/32"]));
    assert_eq!(
        d["deny"],
        json!(["127.0.0.66/32"]),
        "a field left out is kept"
    );
    assert_eq!(get_from(&p, "127.0.0.2", "app.test", &[]).await.0, 403);
    assert_eq!(get_from(&p, "127.0.0.5", "app.test", &[]).await.0, 200);

    // Invalid values: 400, every problem named, nothing changed.
    let (code, e) = call(
        Method::PUT,
        &url,
        Some(json!({"allow": ["10.0.0.0/33"], "deny": ["nope"], "rate_limit_rps": 0})),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    let msg = e["error"].as_str().unwrap();
    for part in ["allow[0]", "deny[0]", "rate_limit_rps 0"] {
        assert!(msg.contains(part), "{part} missing in: {msg}");
    }
    let (_, d) = call(Method::GET, &url, None).await;
    assert_eq!(d["allow"], json!(["127.0.0.5/32"]), "unchanged after a 400");

    let (code, d) = call(
        Method::PUT,
        &url,
        Some(json!({"allow": null, "deny": null})),
    )
    .await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(
        (d["allow"].clone(), d["deny"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(get_from(&p, "127.0.0.66", "app.test", &[]).await.0, 200);

    let metrics = scrape(&p.api("/metrics")).await;
    let refused = metrics
        .lines()
        .find(|l| {
            l.starts_with("pingora_vhost_requests_total{")
                && l.contains("domain=\"app.test\"")
                && l.contains("code=\"4xx\"")
        })
        .unwrap_or_else(|| panic!("no 4xx series for app.test:\n{metrics}"));
    assert!(refused.ends_with(" 2"), "two refusals counted: {refused}");
}

#[tokio::test]
async fn rate_limits_answer_429_per_client_and_survive_a_restart() {
    let origin = Origin::start("a1").await;
    let mut p = Proxy::start(&config_with(
        &origin,
        "rate_limit_rps = 1\nrate_limit_burst = 3",
    ))
    .await;

    for i in 0..3 {
        let (status, _, body) = get_from(&p, "127.0.0.2", "app.test", &[]).await;
        assert_eq!(status, 200, "request {i} of the burst: {body}");
    }
    let (status, retry_after, body) = get_from(&p, "127.0.0.2", "app.test", &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("429 too many requests"), "{body}");
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=1).contains(&secs), "Retry-After {secs}");
    // Each client address has its own allowance; other domains have none.
    assert_eq!(get_from(&p, "127.0.0.3", "app.test", &[]).await.0, 200);
    assert_eq!(get_from(&p, "127.0.0.2", "open.test", &[]).await.0, 200);

    // The API: a domain added with a limit, a limit changed, and one removed with null.
    let (code, d) = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "new.test", "enabled_backends_tag": "a", "rate_limit_rps": 2})),
    )
    .await;
    assert_eq!(code, 201, "{d}");
    assert_eq!(
        (d["rate_limit_rps"].clone(), d["rate_limit_burst"].clone()),
        (json!(2), Value::Null)
    );
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(get_from(&p, "127.0.0.4", "new.test", &[]).await.0);
        }
        v
    };
    assert_eq!(statuses, [200, 200, 429], "burst defaults to the rate");
    let (code, e) = call(
        Method::PUT,
        &p.api("/domains/new.test"),
        Some(json!({"rate_limit_rps": null, "rate_limit_burst": 5})),
    )
    .await;
    assert_eq!(code, 400, "a burst without a rate: {e}");
    let (code, d) = call(
        Method::PUT,
        &p.api("/domains/new.test"),
        Some(json!({"rate_limit_rps": null})),
    )
    .await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["rate_limit_rps"], Value::Null);
    assert_eq!(get_from(&p, "127.0.0.4", "new.test", &[]).await.0, 200);

    // What the API set is in the state: after a restart app.test still limits, new.test not.
    let (code, _) = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(json!({"rate_limit_rps": 1, "rate_limit_burst": 1, "deny": ["127.0.0.9"]})),
    )
    .await;
    assert_eq!(code, 200);
    p.stop();
    p.spawn(&[]).await;
    let (_, d) = call(Method::GET, &p.api("/domains/app.test"), None).await;
    assert_eq!(d["rate_limit_burst"], json!(1), "{d}");
    assert_eq!(d["deny"], json!(["127.0.0.9/32"]), "{d}");
    assert_eq!(get_from(&p, "127.0.0.9", "app.test", &[]).await.0, 403);
    let first = get_from(&p, "127.0.0.7", "app.test", &[]).await.0;
    let second = get_from(&p, "127.0.0.7", "app.test", &[]).await.0;
    assert_eq!((first, second), (200, 429));
    assert_eq!(get_from(&p, "127.0.0.7", "new.test", &[]).await.0, 200);
}

#[tokio::test]
async fn trusted_proxies_decide_the_client_address() {
    let origin = Origin::start("a1").await;
    let p = Proxy::start_with(
        "trusted_proxies = [\"127.0.0.1/32\"]",
        &config_with(&origin, "deny = [\"203.0.113.7\"]"),
    )
    .await;
    let forwarded = |body: &str| -> String {
        let v: Value = serde_json::from_str(body).unwrap();
        v["headers"]["x-forwarded-for"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // From the trusted peer, the rightmost untrusted entry is the client.
    let xff = [("x-forwarded-for", "203.0.113.7")];
    let (status, _, body) = get_from(&p, "127.0.0.1", "app.test", &xff).await;
    assert_eq!(
        status, 403,
        "the denied client behind a trusted proxy: {body}"
    );
    let xff = [("x-forwarded-for", "203.0.113.7, 198.51.100.1")];
    let (status, _, body) = get_from(&p, "127.0.0.1", "app.test", &xff).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        forwarded(&body),
        "203.0.113.7, 198.51.100.1",
        "the chain up to the client goes upstream, the client last"
    );

    // From an untrusted peer, X-Forwarded-For is not believed: the peer is the client.
    let xff = [("x-forwarded-for", "203.0.113.7")];
    let (status, _, body) = get_from(&p, "127.0.0.2", "app.test", &xff).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(forwarded(&body), "203.0.113.7, 127.0.0.2");

    // The access log names the decided client.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = p.log();
        let logged = log
            .lines()
            .any(|l| l.contains("access") && l.contains("198.51.100.1") && l.contains("200"));
        if logged {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access line for 198.51.100.1:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
