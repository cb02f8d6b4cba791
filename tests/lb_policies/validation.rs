//! The load-balancing fields in the API (defaults shown, invalid settings refused) and in
//! `check`.

use super::support::*;
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn the_api_shows_the_defaults_and_refuses_invalid_settings() {
    let a = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "{}{}",
        backend_toml("a1", a.addr, &["a"]),
        vhost_toml("app.test", "a"),
    ))
    .await;
    let (_, d) = call(Method::GET, &p.api("/domains/app.test"), None).await;
    assert_eq!(
        (&d["lb_policy"], &d["lb_hash_header"]),
        (&"round_robin".into(), &Value::Null)
    );
    let (_, b) = call(Method::GET, &p.api("/backends/a1"), None).await;
    assert_eq!(
        (&b["weight"], &b["max_connections"], &b["in_flight"]),
        (&1.into(), &0.into(), &0.into())
    );

    let new = |extra: Value| {
        let mut d = serde_json::json!({"domain": "new.test", "enabled_backends_tag": "a"});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        d
    };
    for (body, why) in [
        (
            serde_json::json!({"lb_policy": "header_hash"}),
            "lb_hash_header",
        ),
        (serde_json::json!({"lb_policy": "random"}), "random"),
        (
            serde_json::json!({"lb_policy": "header_hash", "lb_hash_header": "X User"}),
            "not a valid header name",
        ),
    ] {
        let (s, e) = call(Method::POST, &p.api("/domains"), Some(new(body.clone()))).await;
        assert_eq!(s, 400, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(why), "{body}: {e}");
    }
    let (s, e) = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(serde_json::json!({"lb_policy": "header_hash"})),
    )
    .await;
    assert_eq!(s, 400, "{e}");

    // Every policy is accepted, and GET shows what was set.
    let (s, d) = call(
        Method::POST,
        &p.api("/domains"),
        Some(new(
            serde_json::json!({"lb_policy": "header_hash", "lb_hash_header": "X-User-Id"}),
        )),
    )
    .await;
    assert_eq!(s, 201, "{d}");
    assert_eq!(
        (&d["lb_policy"], &d["lb_hash_header"]),
        (&"header_hash".into(), &"X-User-Id".into())
    );
    for policy in ["least_conn", "ip_hash", "round_robin"] {
        let (s, d) = call(
            Method::PUT,
            &p.api("/domains/new.test"),
            Some(serde_json::json!({"lb_policy": policy})),
        )
        .await;
        assert_eq!((s, &d["lb_policy"]), (200, &policy.into()), "{d}");
        assert_eq!(p.get("new.test", "/").await.0, 200);
    }
    let (s, b) = call(
        Method::PUT,
        &p.api("/backends/a1"),
        Some(serde_json::json!({"weight": 1000, "max_connections": 5})),
    )
    .await;
    assert_eq!(
        (s, &b["weight"], &b["max_connections"]),
        (200, &1000.into(), &5.into()),
        "{b}"
    );
    for bad in [
        serde_json::json!({"weight": 1001}),
        serde_json::json!({"max_connections": -1}),
    ] {
        let (s, e) = call(Method::PUT, &p.api("/backends/a1"), Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {e}");
    }
}

#[test]
fn check_refuses_invalid_policy_settings() {
    let dir = tempfile::tempdir().unwrap();
    let vhost = |domain: &str, extra: &str| {
        format!(
            "[[virtual_hosts]]\ndomain = \"{domain}\"\nenabled_backends_tag = \"a\"\n{extra}\n\n"
        )
    };
    let text = config_text(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        &format!(
            "{}{}{}{}",
            backend_toml("a1", "127.0.0.1:3001".parse().unwrap(), &["a"]),
            vhost("no-header.test", "lb_policy = \"header_hash\""),
            vhost(
                "bad-header.test",
                "lb_policy = \"header_hash\"\nlb_hash_header = \"X User\""
            ),
            vhost("ok.test", "lb_policy = \"ip_hash\""),
        ),
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs lb_hash_header"), "{err}");
    assert!(err.contains("'X User' is not a valid header name"), "{err}");
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        2,
        "{err}"
    );
}
