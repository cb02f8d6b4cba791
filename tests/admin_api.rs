//! The admin REST API end to end over real sockets: domains, switches, backends, refused input
//! (which must change nothing, in memory or in the state file), body limits, routing fallbacks
//! and the bearer token.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use support::api::{assert_error, send, send_json_text, ApiProxy, ApiSpec};
use support::*;

// === helpers ===

/// A Domain as the API shows it (default load-balancing settings).
fn domain_json(domain: &str, tag: &str, previous: Option<&str>, https: bool) -> Value {
    json!({
        "domain": domain,
        "enabled_backends_tag": tag,
        "previous_tag": previous,
        "http_to_https": https,
        "lb_policy": "round_robin",
        "lb_hash_header": null,
        "weights": null,
        "sticky": false,
        "rollback": null,
        "last_rollback": null,
        "allow": null,
        "deny": null,
        "rate_limit_rps": null,
        "rate_limit_burst": null,
    })
}

/// A Backend as the API shows it, without its live `health` object, with nothing in flight.
fn backend_json(id: &str, addr: SocketAddr, tags: &[&str], weight: u32) -> Value {
    json!({
        "id": id,
        "address": addr.to_string(),
        "tags": tags,
        "weight": weight,
        "max_connections": 0,
        "in_flight": 0,
        // Protocol settings with their defaults: plain HTTP/1.1, the address's host as the TLS
        // name.
        "protocol": "http1",
        "tls_server_name": addr.ip().to_string(),
        "tls_verify": true,
        "tls_ca_file": null,
        "health_check": "http",
    })
}

/// The health object of a backend nobody has probed yet.
fn unknown_health() -> Value {
    json!({
        "status": "unknown",
        "consecutive_failures": 0,
        "consecutive_successes": 0,
        "last_check": null,
    })
}

/// Checks the shape of a backend's `health` and removes it (it is live, not stored).
fn strip_health(mut b: Value) -> Value {
    let h = b
        .as_object_mut()
        .and_then(|o| o.remove("health"))
        .unwrap_or_else(|| panic!("backend without health: {b}"));
    let status = h["status"].as_str().unwrap_or_default();
    assert!(
        ["healthy", "unhealthy", "unknown"].contains(&status),
        "bad health status: {h}"
    );
    assert!(h["consecutive_failures"].is_u64(), "{h}");
    assert!(h["consecutive_successes"].is_u64(), "{h}");
    assert!(
        h["last_check"].is_null() || h["last_check"].is_string(),
        "{h}"
    );
    assert_eq!(h.as_object().unwrap().len(), 4, "extra health keys: {h}");
    b
}

/// `strip_health` on every element of a backend list.
fn strip_health_list(v: Value) -> Value {
    Value::Array(
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .cloned()
            .map(strip_health)
            .collect(),
    )
}

/// Everything an API call could change: both lists and the state file's bytes.
#[derive(Debug, PartialEq)]
struct Snapshot {
    domains: Value,
    backends: Value,
    state: Option<Vec<u8>>,
}

async fn snapshot(p: &Proxy) -> Snapshot {
    let (s, domains) = call(Method::GET, &p.api("/domains"), None).await;
    assert_eq!(s, 200, "{domains}");
    let (s, backends) = call(Method::GET, &p.api("/backends"), None).await;
    assert_eq!(s, 200, "{backends}");
    Snapshot {
        domains,
        backends: strip_health_list(backends),
        state: std::fs::read(p.state_path()).ok(),
    }
}

async fn assert_unchanged(p: &Proxy, before: &Snapshot, what: &str) {
    let after = snapshot(p).await;
    assert_eq!(after.domains, before.domains, "{what}: domains changed");
    assert_eq!(after.backends, before.backends, "{what}: backends changed");
    assert!(
        after.state == before.state,
        "{what}: state file changed:\nbefore: {}\nafter: {}",
        String::from_utf8_lossy(before.state.as_deref().unwrap_or_default()),
        String::from_utf8_lossy(after.state.as_deref().unwrap_or_default()),
    );
}

/// The request got `status` with a JSON error and changed nothing, in memory or on disk.
async fn assert_refused(p: &Proxy, before: &Snapshot, got: &(u16, Value), status: u16, what: &str) {
    assert_error(got, status, what);
    assert_unchanged(p, before, what).await;
}

/// Two origins, `a1` on tag `a` and `b1` on tag `b`, and `app.test` served by tag `a`.
async fn ab_proxy() -> ApiProxy {
    ApiSpec::new()
        .backend("a1", &["a"])
        .backend("b1", &["b"])
        .domain("app.test", "a")
        .start()
        .await
}

// === health ===

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_ok() {
    let p = ab_proxy().await;
    let (status, body) = call(Method::GET, &p.api("/health"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.is_object(), "{body}");
    assert_eq!(body["status"], "ok", "{body}");
}

// === domains ===

#[tokio::test(flavor = "multi_thread")]
async fn domains_list_and_get() {
    let p = ab_proxy().await;
    let app = domain_json("app.test", "a", None, false);

    let got = call(Method::GET, &p.api("/domains"), None).await;
    assert_eq!(got, (200, json!([app.clone()])));

    let got = call(Method::GET, &p.api("/domains/app.test"), None).await;
    assert_eq!(got, (200, app.clone()));

    // The name in the path is normalised like a Host header: case folded, trailing dot removed.
    for name in ["APP.TEST", "App.Test", "app.test."] {
        let got = call(Method::GET, &p.api(&format!("/domains/{name}")), None).await;
        assert_eq!(got, (200, app.clone()), "GET /domains/{name}");
    }

    let got = call(Method::GET, &p.api("/domains/nope.test"), None).await;
    assert_error(&got, 404, "GET unknown domain");
    assert!(
        got.1["error"].as_str().unwrap().contains("nope.test"),
        "{}",
        got.1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_create_and_duplicate() {
    let p = ab_proxy().await;

    let got = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "New.Test.", "enabled_backends_tag": "b", "http_to_https": true})),
    )
    .await;
    let new = domain_json("new.test", "b", None, true);
    assert_eq!(got, (201, new.clone()));

    // http_to_https defaults to false.
    let got = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "plain.test", "enabled_backends_tag": "a"})),
    )
    .await;
    let plain = domain_json("plain.test", "a", None, false);
    assert_eq!(got, (201, plain.clone()));

    let got = call(Method::GET, &p.api("/domains/new.test"), None).await;
    assert_eq!(got, (200, new.clone()));
    let got = call(Method::GET, &p.api("/domains"), None).await;
    let app = domain_json("app.test", "a", None, false);
    assert_eq!(got, (200, json!([app, new, plain])));

    // The new domain is routed at once (no HTTPS listener, so no redirect).
    assert_eq!(p.backend_for("new.test").await, "b1");
    assert_eq!(p.backend_for("plain.test").await, "a1");

    // A duplicate, however it is spelled, is a conflict and changes nothing.
    let before = snapshot(&p).await;
    assert!(
        before.state.is_some(),
        "a successful POST must be persisted"
    );
    for name in ["new.test", "NEW.test", "new.test."] {
        let got = call(
            Method::POST,
            &p.api("/domains"),
            Some(json!({"domain": name, "enabled_backends_tag": "a"})),
        )
        .await;
        assert_refused(&p, &before, &got, 409, &format!("duplicate domain {name}")).await;
    }
    assert_eq!(p.backend_for("new.test").await, "b1");
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_put_is_partial_and_tag_change_is_a_switch() {
    let p = ab_proxy().await;
    assert_eq!(p.backend_for("app.test").await, "a1");

    // Only http_to_https changes.
    let got = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(json!({"http_to_https": true})),
    )
    .await;
    assert_eq!(got, (200, domain_json("app.test", "a", None, true)));
    let got = call(Method::GET, &p.api("/domains/app.test"), None).await;
    assert_eq!(got, (200, domain_json("app.test", "a", None, true)));

    // An empty patch changes nothing.
    let got = call(Method::PUT, &p.api("/domains/app.test"), Some(json!({}))).await;
    assert_eq!(got, (200, domain_json("app.test", "a", None, true)));

    // A tag change is a switch: previous_tag is set and traffic moves.
    let got = call(
        Method::PUT,
        &p.api("/domains/APP.Test"),
        Some(json!({"enabled_backends_tag": "b", "http_to_https": false})),
    )
    .await;
    let switched = domain_json("app.test", "b", Some("a"), false);
    assert_eq!(got, (200, switched.clone()));
    assert_eq!(p.backend_for("app.test").await, "b1");
    let got = call(Method::GET, &p.api("/domains/app.test"), None).await;
    assert_eq!(got, (200, switched.clone()));

    // A tag no backend carries: 400, nothing changed.
    let before = snapshot(&p).await;
    let got = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(json!({"enabled_backends_tag": "zzz"})),
    )
    .await;
    assert_error(&got, 400, "PUT unknown tag");
    assert!(
        got.1["error"].as_str().unwrap().contains("zzz"),
        "{}",
        got.1
    );
    assert_unchanged(&p, &before, "PUT unknown tag").await;
    // Even combined with a valid field, the whole patch is refused.
    let got = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(json!({"enabled_backends_tag": "zzz", "http_to_https": true})),
    )
    .await;
    assert_refused(&p, &before, &got, 400, "PUT unknown tag with http_to_https").await;
    assert_eq!(p.backend_for("app.test").await, "b1");

    // An unknown domain: 404.
    let got = call(
        Method::PUT,
        &p.api("/domains/nope.test"),
        Some(json!({"http_to_https": true})),
    )
    .await;
    assert_refused(&p, &before, &got, 404, "PUT unknown domain").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_delete() {
    let p = ab_proxy().await;
    let got = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "other.test", "enabled_backends_tag": "b"})),
    )
    .await;
    assert_eq!(got.0, 201, "{}", got.1);
    assert_eq!(p.backend_for("app.test").await, "a1");

    let got = call(Method::DELETE, &p.api("/domains/app.test"), None).await;
    assert_eq!(got, (204, Value::Null));
    let got = call(Method::GET, &p.api("/domains/app.test"), None).await;
    assert_error(&got, 404, "GET deleted domain");
    let got = call(Method::GET, &p.api("/domains"), None).await;
    assert_eq!(
        got,
        (200, json!([domain_json("other.test", "b", None, false)]))
    );

    // The host is no longer served; the other one still is.
    let (status, body) = p.get("app.test", "/").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        !body.contains("\"backend\""),
        "proxied after delete: {body}"
    );
    assert_eq!(p.backend_for("other.test").await, "b1");

    // Deleting again, or a domain that never existed: 404, nothing changed.
    let before = snapshot(&p).await;
    for name in ["app.test", "never.test"] {
        let got = call(Method::DELETE, &p.api(&format!("/domains/{name}")), None).await;
        assert_refused(&p, &before, &got, 404, &format!("DELETE {name}")).await;
    }

    // The path name is normalised for DELETE too.
    let got = call(Method::DELETE, &p.api("/domains/OTHER.Test."), None).await;
    assert_eq!(got, (204, Value::Null));
    let got = call(Method::GET, &p.api("/domains"), None).await;
    assert_eq!(got, (200, json!([])));
    let (status, body) = p.get("other.test", "/").await;
    assert_eq!(status, 404, "{body}");
}

// === switch ===

#[tokio::test(flavor = "multi_thread")]
async fn switch_with_new_tag_then_empty_body_toggles_back() {
    let p = ab_proxy().await;
    assert_eq!(p.backend_for("app.test").await, "a1");
    let switch = p.api("/domains/app.test/switch");

    let got = call(Method::POST, &switch, Some(json!({"new_tag": "b"}))).await;
    assert_eq!(got, (200, domain_json("app.test", "b", Some("a"), false)));
    assert_eq!(p.backend_for("app.test").await, "b1");
    assert_eq!(p.backend_for("app.test").await, "b1");

    // Empty body, no content type: back to previous_tag.
    let got = send(Method::POST, &switch, None, "", None).await;
    assert_eq!(got, (200, domain_json("app.test", "a", Some("b"), false)));
    assert_eq!(p.backend_for("app.test").await, "a1");

    // And again: it keeps toggling.
    let got = send(Method::POST, &switch, None, "", None).await;
    assert_eq!(got, (200, domain_json("app.test", "b", Some("a"), false)));
    assert_eq!(p.backend_for("app.test").await, "b1");

    // An empty body sent as JSON is an empty body too.
    let got = send(Method::POST, &switch, Some("application/json"), "", None).await;
    assert_eq!(got, (200, domain_json("app.test", "a", Some("b"), false)));
    assert_eq!(p.backend_for("app.test").await, "a1");

    // The state is persisted.
    let state = read(&p.state_path());
    assert!(state.contains("app.test"), "{state}");

    let got = call(Method::GET, &p.api("/domains/app.test"), None).await;
    assert_eq!(got, (200, domain_json("app.test", "a", Some("b"), false)));
}

#[tokio::test(flavor = "multi_thread")]
async fn switch_with_empty_body_and_no_previous_tag_toggles_a_and_b() {
    let p = ab_proxy().await;
    let got = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "b.test", "enabled_backends_tag": "b"})),
    )
    .await;
    assert_eq!(got.0, 201, "{}", got.1);

    // a -> b
    let got = send(
        Method::POST,
        &p.api("/domains/app.test/switch"),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(got, (200, domain_json("app.test", "b", Some("a"), false)));
    assert_eq!(p.backend_for("app.test").await, "b1");

    // b -> a
    assert_eq!(p.backend_for("b.test").await, "b1");
    let got = send(
        Method::POST,
        &p.api("/domains/b.test/switch"),
        None,
        "",
        None,
    )
    .await;
    assert_eq!(got, (200, domain_json("b.test", "a", Some("b"), false)));
    assert_eq!(p.backend_for("b.test").await, "a1");
}

#[tokio::test(flavor = "multi_thread")]
async fn switch_errors_change_nothing() {
    let p = ApiSpec::new()
        .backend("a1", &["a"])
        .backend("b1", &["b"])
        .backend("s1", &["stable"])
        .domain("app.test", "a")
        .domain("stable.test", "stable")
        .start()
        .await;
    // One successful change so the state file exists and its bytes can be compared.
    let got = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(json!({"http_to_https": false})),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    let before = snapshot(&p).await;
    assert!(before.state.is_some(), "state file not written");

    let app_switch = p.api("/domains/app.test/switch");

    let got = call(Method::POST, &app_switch, Some(json!({"new_tag": "zzz"}))).await;
    assert_error(&got, 400, "switch to unknown tag");
    assert!(
        got.1["error"].as_str().unwrap().contains("zzz"),
        "{}",
        got.1
    );
    assert_unchanged(&p, &before, "switch to unknown tag").await;

    let got = call(
        Method::POST,
        &p.api("/domains/nope.test/switch"),
        Some(json!({"new_tag": "b"})),
    )
    .await;
    assert_refused(&p, &before, &got, 404, "switch unknown domain").await;
    let got = send(
        Method::POST,
        &p.api("/domains/nope.test/switch"),
        None,
        "",
        None,
    )
    .await;
    assert_refused(&p, &before, &got, 404, "empty switch unknown domain").await;

    // Neither a previous tag nor a/b to toggle between.
    let got = send(
        Method::POST,
        &p.api("/domains/stable.test/switch"),
        None,
        "",
        None,
    )
    .await;
    assert_refused(&p, &before, &got, 409, "empty switch on stable").await;

    // A non-empty body that is not JSON.
    let got = send(
        Method::POST,
        &app_switch,
        Some("text/plain"),
        r#"{"new_tag": "b"}"#,
        None,
    )
    .await;
    assert_refused(&p, &before, &got, 415, "switch with text/plain").await;
    let got = send(Method::POST, &app_switch, None, r#"{"new_tag": "b"}"#, None).await;
    assert_refused(&p, &before, &got, 415, "switch without content type").await;

    // Malformed, mistyped or unknown fields.
    for (body, what) in [
        (r#"{"new_tag": "b""#, "malformed"),
        (r#"{"new_tag": 5}"#, "new_tag a number"),
        (r#"{"new_tag": "b", "force": "yes"}"#, "force a string"),
        (r#"{"new_tag": "b", "bogus": 1}"#, "unknown field"),
        (r#"{"new_tag": "bad tag"}"#, "invalid tag"),
    ] {
        let got = send_json_text(Method::POST, &app_switch, body).await;
        assert_refused(&p, &before, &got, 400, &format!("switch {what}")).await;
    }

    assert_eq!(p.backend_for("app.test").await, "a1");
    assert_eq!(p.backend_for("stable.test").await, "s1");
}

/// A JSON array is not an object: serde would read `["b"]` as `{"new_tag": "b"}` (a struct from
/// a sequence), but the API's bodies are objects and anything else is invalid input.
#[tokio::test(flavor = "multi_thread")]
async fn json_arrays_are_not_accepted_as_objects() {
    let p = ab_proxy().await;
    let a = p.origin("a1");
    let got = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(json!({"http_to_https": false})),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    let before = snapshot(&p).await;
    let addr = a.addr.to_string();
    for (method, path, body) in [
        (
            Method::POST,
            "/domains/app.test/switch",
            r#"["b"]"#.to_string(),
        ),
        (
            Method::POST,
            "/domains/app.test/switch",
            r#"["b", true]"#.to_string(),
        ),
        (Method::POST, "/domains", r#"["x.test", "a"]"#.to_string()),
        (Method::PUT, "/domains/app.test", r#"["b"]"#.to_string()),
        (
            Method::POST,
            "/backends",
            format!(r#"["x", "{addr}", ["a"]]"#),
        ),
        (
            Method::PUT,
            "/backends/a1",
            r#"[null, ["a", "c"]]"#.to_string(),
        ),
    ] {
        let what = format!("{method} {path} {body}");
        let got = send_json_text(method, &p.api(path), &body).await;
        assert_refused(&p, &before, &got, 400, &what).await;
    }
}

// === backends ===

#[tokio::test(flavor = "multi_thread")]
async fn backends_list_get_create_and_duplicate() {
    let p = ab_proxy().await;
    let (a, b) = (p.origin("a1"), p.origin("b1"));
    let c = Origin::start("c1").await;

    let (status, list) = call(Method::GET, &p.api("/backends"), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        strip_health_list(list),
        json!([
            backend_json("a1", a.addr, &["a"], 1),
            backend_json("b1", b.addr, &["b"], 1)
        ])
    );

    let (status, one) = call(Method::GET, &p.api("/backends/a1"), None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(strip_health(one), backend_json("a1", a.addr, &["a"], 1));

    // Created with the defaults: weight 1, no connection cap, health unknown.
    let got = call(
        Method::POST,
        &p.api("/backends"),
        Some(json!({"id": "c1", "address": c.addr.to_string(), "tags": ["c", "extra"]})),
    )
    .await;
    let mut c1 = backend_json("c1", c.addr, &["c", "extra"], 1);
    c1["health"] = unknown_health();
    assert_eq!(got, (201, c1.clone()));

    // Weight and max_connections given.
    let got = call(
        Method::POST,
        &p.api("/backends"),
        Some(json!({
            "id": "c2", "address": c.addr.to_string(), "tags": ["c"],
            "weight": 5, "max_connections": 7
        })),
    )
    .await;
    let mut c2 = backend_json("c2", c.addr, &["c"], 5);
    c2["max_connections"] = json!(7);
    c2["health"] = unknown_health();
    assert_eq!(got, (201, c2.clone()));

    let (status, one) = call(Method::GET, &p.api("/backends/c1"), None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(strip_health(one), strip_health(c1.clone()));
    let (status, list) = call(Method::GET, &p.api("/backends"), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        strip_health_list(list),
        json!([
            backend_json("a1", a.addr, &["a"], 1),
            backend_json("b1", b.addr, &["b"], 1),
            strip_health(c1),
            strip_health(c2),
        ])
    );

    // The new tag is usable at once.
    let got = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "c.test", "enabled_backends_tag": "extra"})),
    )
    .await;
    assert_eq!(got.0, 201, "{}", got.1);
    assert_eq!(p.backend_for("c.test").await, "c1");

    // Duplicate id: 409, nothing changed.
    let before = snapshot(&p).await;
    let got = call(
        Method::POST,
        &p.api("/backends"),
        Some(json!({"id": "c1", "address": a.addr.to_string(), "tags": ["a"]})),
    )
    .await;
    assert_refused(&p, &before, &got, 409, "duplicate backend").await;

    let got = call(Method::GET, &p.api("/backends/nope"), None).await;
    assert_error(&got, 404, "GET unknown backend");
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_put_changes_address_tags_and_weight() {
    let p = ab_proxy().await;
    let (a, b) = (p.origin("a1"), p.origin("b1"));
    let c = Origin::start("c1").await;
    assert_eq!(p.backend_for("app.test").await, "a1");

    // Address: traffic goes to the new origin.
    let (status, got) = call(
        Method::PUT,
        &p.api("/backends/a1"),
        Some(json!({"address": c.addr.to_string()})),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(strip_health(got), backend_json("a1", c.addr, &["a"], 1));
    assert_eq!(p.backend_for("app.test").await, "c1");

    // Tags: a1 also joins tag b (b1 stays the other member).
    let (status, got) = call(
        Method::PUT,
        &p.api("/backends/a1"),
        Some(json!({"tags": ["a", "b"]})),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        strip_health(got),
        backend_json("a1", c.addr, &["a", "b"], 1)
    );

    // Weight, address back; tags untouched.
    let (status, got) = call(
        Method::PUT,
        &p.api("/backends/a1"),
        Some(json!({"weight": 3, "address": a.addr.to_string()})),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        strip_health(got),
        backend_json("a1", a.addr, &["a", "b"], 3)
    );
    assert_eq!(p.backend_for("app.test").await, "a1");

    let (status, got) = call(Method::GET, &p.api("/backends/a1"), None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        strip_health(got),
        backend_json("a1", a.addr, &["a", "b"], 3)
    );
    let (status, list) = call(Method::GET, &p.api("/backends"), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        strip_health_list(list),
        json!([
            backend_json("a1", a.addr, &["a", "b"], 3),
            backend_json("b1", b.addr, &["b"], 1),
        ])
    );

    let before = snapshot(&p).await;
    // Unknown backend: 404.
    let got = call(
        Method::PUT,
        &p.api("/backends/nope"),
        Some(json!({"weight": 2})),
    )
    .await;
    assert_refused(&p, &before, &got, 404, "PUT unknown backend").await;
    // Taking tag a away from its last backend while app.test uses it: 409.
    let got = call(
        Method::PUT,
        &p.api("/backends/a1"),
        Some(json!({"tags": ["b"]})),
    )
    .await;
    assert_refused(
        &p,
        &before,
        &got,
        409,
        "PUT dropping the last backend of a used tag",
    )
    .await;
    assert_eq!(p.backend_for("app.test").await, "a1");
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_delete_and_last_backend_protection() {
    let p = ApiSpec::new()
        .backend("a1", &["a"])
        .backend("a2", &["a"])
        .backend("b1", &["b"])
        .backend("u1", &["unused"])
        .domain("app.test", "a")
        .start()
        .await;
    let (a, b) = (p.origin("a1"), p.origin("b1"));

    // Not the last of its tag: 204.
    let got = call(Method::DELETE, &p.api("/backends/a2"), None).await;
    assert_eq!(got, (204, Value::Null));
    let got = call(Method::GET, &p.api("/backends/a2"), None).await;
    assert_error(&got, 404, "GET deleted backend");
    for _ in 0..4 {
        assert_eq!(p.backend_for("app.test").await, "a1");
    }

    // The last backend of a tag no domain uses: 204 without force.
    let got = call(Method::DELETE, &p.api("/backends/u1"), None).await;
    assert_eq!(got, (204, Value::Null));

    let (status, list) = call(Method::GET, &p.api("/backends"), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        strip_health_list(list),
        json!([
            backend_json("a1", a.addr, &["a"], 1),
            backend_json("b1", b.addr, &["b"], 1),
        ])
    );

    // The last backend of tag a, which app.test uses: 409, nothing changed.
    let before = snapshot(&p).await;
    let got = call(Method::DELETE, &p.api("/backends/a1"), None).await;
    assert_refused(&p, &before, &got, 409, "DELETE last backend").await;
    let got = call(Method::DELETE, &p.api("/backends/a1?force=false"), None).await;
    assert_refused(&p, &before, &got, 409, "DELETE last backend force=false").await;

    // A force that is not a boolean: 400, nothing changed.
    let got = call(Method::DELETE, &p.api("/backends/a1?force=notabool"), None).await;
    assert_refused(&p, &before, &got, 400, "DELETE force=notabool").await;
    assert_eq!(p.backend_for("app.test").await, "a1");

    // Unknown: 404.
    let got = call(Method::DELETE, &p.api("/backends/nope"), None).await;
    assert_refused(&p, &before, &got, 404, "DELETE unknown backend").await;

    // Forced: 204; the domain stays, with an empty pool (503).
    let got = call(Method::DELETE, &p.api("/backends/a1?force=true"), None).await;
    assert_eq!(got, (204, Value::Null));
    let got = call(Method::GET, &p.api("/backends/a1"), None).await;
    assert_error(&got, 404, "GET force-deleted backend");
    let got = call(Method::GET, &p.api("/domains/app.test"), None).await;
    assert_eq!(got, (200, domain_json("app.test", "a", None, false)));
    let (status, body) = p.get("app.test", "/").await;
    assert_eq!(status, 503, "{body}");
}

// === refused input changes nothing ===

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_changes_nothing() {
    let p = ab_proxy().await;
    let a = p.origin("a1");
    let addr = a.addr.to_string();

    // Nothing persisted yet: refused input must not create the state file either.
    let before = snapshot(&p).await;
    let got = send_json_text(Method::POST, &p.api("/domains"), "{").await;
    assert_refused(&p, &before, &got, 400, "malformed JSON before any change").await;

    // One successful change so that the state file exists and its bytes can be compared.
    let got = call(
        Method::POST,
        &p.api("/backends"),
        Some(json!({"id": "a2", "address": addr, "tags": ["a"]})),
    )
    .await;
    assert_eq!(got.0, 201, "{}", got.1);
    let before = snapshot(&p).await;
    assert!(before.state.is_some(), "state file not written");

    let (domains, app) = (p.api("/domains"), p.api("/domains/app.test"));
    let (backends, a1) = (p.api("/backends"), p.api("/backends/a1"));
    let (domains, app, backends, a1) = (&*domains, &*app, &*backends, &*a1);
    let cases: Vec<(Method, &str, String, &str)> = vec![
        // malformed JSON
        (Method::POST, domains, "{".into(), "malformed POST domain"),
        (
            Method::POST,
            domains,
            r#"{"domain": "x.test", "enabled_backends_tag": "a",}"#.into(),
            "trailing comma",
        ),
        (
            Method::PUT,
            app,
            "{http_to_https: true}".into(),
            "malformed PUT domain",
        ),
        (
            Method::POST,
            backends,
            "not json".into(),
            "malformed POST backend",
        ),
        (
            Method::PUT,
            a1,
            r#"{"weight": }"#.into(),
            "malformed PUT backend",
        ),
        // wrong types
        (
            Method::POST,
            domains,
            r#"{"domain": "x.test", "enabled_backends_tag": "a", "http_to_https": "yes"}"#.into(),
            "http_to_https a string",
        ),
        (
            Method::POST,
            domains,
            r#"{"domain": 5, "enabled_backends_tag": "a"}"#.into(),
            "domain a number",
        ),
        (
            Method::PUT,
            app,
            r#"{"http_to_https": "yes"}"#.into(),
            "PUT http_to_https a string",
        ),
        (
            Method::PUT,
            app,
            r#"{"enabled_backends_tag": ["b"]}"#.into(),
            "PUT tag a list",
        ),
        (
            Method::POST,
            backends,
            format!(r#"{{"id": "x", "address": "{addr}", "tags": "a"}}"#),
            "tags a string",
        ),
        (
            Method::POST,
            backends,
            format!(r#"{{"id": "x", "address": "{addr}", "tags": ["a"], "weight": "3"}}"#),
            "weight a string",
        ),
        (
            Method::POST,
            backends,
            format!(r#"{{"id": "x", "address": "{addr}", "tags": ["a"], "weight": -1}}"#),
            "negative weight",
        ),
        (
            Method::PUT,
            a1,
            r#"{"tags": "b"}"#.into(),
            "PUT tags a string",
        ),
        (
            Method::PUT,
            a1,
            r#"{"address": 8080}"#.into(),
            "PUT address a number",
        ),
        (Method::POST, domains, "[]".into(), "POST domain a list"),
        (Method::POST, backends, "null".into(), "POST backend null"),
        // missing required fields
        (
            Method::POST,
            domains,
            r#"{"domain": "x.test"}"#.into(),
            "missing enabled_backends_tag",
        ),
        (
            Method::POST,
            domains,
            r#"{"enabled_backends_tag": "a"}"#.into(),
            "missing domain",
        ),
        (
            Method::POST,
            backends,
            format!(r#"{{"id": "x", "address": "{addr}"}}"#),
            "missing tags",
        ),
        (
            Method::POST,
            backends,
            r#"{"id": "x", "tags": ["a"]}"#.into(),
            "missing address",
        ),
        (
            Method::POST,
            backends,
            format!(r#"{{"address": "{addr}", "tags": ["a"]}}"#),
            "missing id",
        ),
        // unknown fields
        (
            Method::POST,
            domains,
            r#"{"domain": "x.test", "enabled_backends_tag": "a", "bogus": 1}"#.into(),
            "unknown field POST domain",
        ),
        (
            Method::PUT,
            app,
            r#"{"http_to_https": true, "enabled_backend_tag": "b"}"#.into(),
            "unknown field PUT domain (typo)",
        ),
        (
            Method::POST,
            backends,
            format!(r#"{{"id": "x", "address": "{addr}", "tags": ["a"], "tag": "a"}}"#),
            "unknown field POST backend",
        ),
        (
            Method::PUT,
            a1,
            r#"{"weight": 2, "bogus": true}"#.into(),
            "unknown field PUT backend",
        ),
        // invalid domain names
        (
            Method::POST,
            domains,
            r#"{"domain": "bad domain", "enabled_backends_tag": "a"}"#.into(),
            "domain with a space",
        ),
        (
            Method::POST,
            domains,
            r#"{"domain": "-x.com", "enabled_backends_tag": "a"}"#.into(),
            "domain starting with -",
        ),
        (
            Method::POST,
            domains,
            r#"{"domain": "a..b", "enabled_backends_tag": "a"}"#.into(),
            "domain with an empty label",
        ),
        (
            Method::POST,
            domains,
            r#"{"domain": "", "enabled_backends_tag": "a"}"#.into(),
            "empty domain",
        ),
        // unknown or invalid tag
        (
            Method::POST,
            domains,
            r#"{"domain": "x.test", "enabled_backends_tag": "zzz"}"#.into(),
            "unknown tag POST domain",
        ),
        (
            Method::POST,
            domains,
            r#"{"domain": "x.test", "enabled_backends_tag": "bad tag"}"#.into(),
            "invalid tag POST domain",
        ),
        (
            Method::PUT,
            app,
            r#"{"enabled_backends_tag": "zzz"}"#.into(),
            "unknown tag PUT domain",
        ),
        // invalid addresses
        (
            Method::POST,
            backends,
            r#"{"id": "x", "address": "127.0.0.1", "tags": ["a"]}"#.into(),
            "address without port",
        ),
        (
            Method::POST,
            backends,
            r#"{"id": "x", "address": "host:0", "tags": ["a"]}"#.into(),
            "address with port 0",
        ),
        (
            Method::POST,
            backends,
            r#"{"id": "x", "address": "host:99999", "tags": ["a"]}"#.into(),
            "address with port 99999",
        ),
        (
            Method::PUT,
            a1,
            r#"{"address": "127.0.0.1"}"#.into(),
            "PUT address without port",
        ),
        (
            Method::PUT,
            a1,
            r#"{"address": "host:0"}"#.into(),
            "PUT address with port 0",
        ),
        (
            Method::PUT,
            a1,
            r#"{"address": "host:99999"}"#.into(),
            "PUT address with port 99999",
        ),
        // other invalid backend values
        (
            Method::POST,
            backends,
            format!(r#"{{"id": "x", "address": "{addr}", "tags": []}}"#),
            "no tags",
        ),
        (
            Method::POST,
            backends,
            format!(r#"{{"id": "bad id", "address": "{addr}", "tags": ["a"]}}"#),
            "invalid id",
        ),
        (
            Method::POST,
            backends,
            format!(r#"{{"id": "x", "address": "{addr}", "tags": ["a"], "weight": 0}}"#),
            "weight 0",
        ),
        (
            Method::POST,
            backends,
            format!(r#"{{"id": "x", "address": "{addr}", "tags": ["a"], "weight": 1001}}"#),
            "weight 1001",
        ),
        (Method::PUT, a1, r#"{"weight": 0}"#.into(), "PUT weight 0"),
        (Method::PUT, a1, r#"{"tags": []}"#.into(), "PUT no tags"),
    ];
    for (method, url, body, what) in cases {
        let got = send_json_text(method.clone(), url, &body).await;
        assert_error(&got, 400, &format!("{what} ({method} {url} {body})"));
        assert_unchanged(&p, &before, what).await;
    }

    // A JSON body without a Content-Type: 415.
    for (url, body, what) in [
        (
            domains,
            r#"{"domain": "x.test", "enabled_backends_tag": "a"}"#.to_string(),
            "POST domain without content type",
        ),
        (
            backends,
            format!(r#"{{"id": "x", "address": "{addr}", "tags": ["a"]}}"#),
            "POST backend without content type",
        ),
    ] {
        let got = send(Method::POST, url, None, body.clone(), None).await;
        assert_refused(&p, &before, &got, 415, what).await;
        let got = send(Method::POST, url, Some("text/plain"), body, None).await;
        assert_error(&got, 415, &format!("{what} (text/plain)"));
        assert_unchanged(&p, &before, what).await;
    }
    let got = send(Method::PUT, app, None, r#"{"http_to_https": true}"#, None).await;
    assert_refused(&p, &before, &got, 415, "PUT domain without content type").await;

    assert_eq!(p.backend_for("app.test").await, "a1");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_the_default_limit_is_413() {
    let p = ab_proxy().await;
    let got = call(
        Method::PUT,
        &p.api("/domains/app.test"),
        Some(json!({"http_to_https": false})),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    let before = snapshot(&p).await;

    // About 2 MiB of otherwise valid-looking JSON (the default limit is 1 MiB).
    let pad = "x".repeat(2 * 1024 * 1024);
    let body = format!(r#"{{"domain": "big.test", "enabled_backends_tag": "a", "pad": "{pad}"}}"#);
    let got = send_json_text(Method::POST, &p.api("/domains"), &body).await;
    assert_refused(&p, &before, &got, 413, "2 MiB POST domain").await;

    let body = format!(r#"{{"new_tag": "b", "pad": "{pad}"}}"#);
    let got = send_json_text(Method::POST, &p.api("/domains/app.test/switch"), &body).await;
    assert_refused(&p, &before, &got, 413, "2 MiB switch").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn body_limit_comes_from_the_config() {
    let p = ApiSpec::new()
        .backend("a1", &["a"])
        .domain("app.test", "a")
        .limits("max_admin_body_bytes = 1024\n")
        .start()
        .await;

    // Over 1024 bytes: 413, even though the JSON would otherwise be a 400 (unknown field).
    let pad = "x".repeat(2048);
    let body = format!(r#"{{"domain": "big.test", "enabled_backends_tag": "a", "pad": "{pad}"}}"#);
    let got = send_json_text(Method::POST, &p.api("/domains"), &body).await;
    assert_error(&got, 413, "2 KiB POST domain over a 1 KiB limit");
    let got = call(Method::GET, &p.api("/domains"), None).await;
    assert_eq!(
        got,
        (200, json!([domain_json("app.test", "a", None, false)]))
    );

    // Under the limit: accepted.
    let got = call(
        Method::POST,
        &p.api("/domains"),
        Some(json!({"domain": "small.test", "enabled_backends_tag": "a"})),
    )
    .await;
    assert_eq!(got, (201, domain_json("small.test", "a", None, false)));
}

// === routing fallbacks ===

#[tokio::test(flavor = "multi_thread")]
async fn unknown_endpoint_is_404_and_wrong_method_is_405() {
    let p = ab_proxy().await;
    let root = p.root();
    for url in [
        p.api("/nope"),
        p.api("/domains/app.test/nope"),
        p.api(""),
        format!("{root}/index.html"),
        format!("{root}/api/v2/domains"),
    ] {
        let got = call(Method::GET, &url, None).await;
        assert_error(&got, 404, &format!("GET {url}"));
    }

    let before = snapshot(&p).await;
    for (method, path) in [
        (Method::PATCH, "/domains"),
        (Method::DELETE, "/domains"),
        (Method::PATCH, "/domains/app.test"),
        (Method::POST, "/domains/app.test"),
        (Method::GET, "/domains/app.test/switch"),
        (Method::PUT, "/backends"),
        (Method::POST, "/backends/a1"),
        (Method::POST, "/health"),
    ] {
        let got = call(method.clone(), &p.api(path), None).await;
        assert_error(&got, 405, &format!("{method} {path}"));
    }
    assert_unchanged(&p, &before, "wrong methods").await;
}

// === admin token ===

#[tokio::test(flavor = "multi_thread")]
async fn admin_token_is_required_except_for_health() {
    let p = ApiSpec::new()
        .backend("a1", &["a"])
        .domain("app.test", "a")
        .token("s3cret")
        .start()
        .await;

    // Health needs no token.
    let got = send(Method::GET, &p.api("/health"), None, "", None).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["status"], "ok", "{}", got.1);

    // Missing or wrong token: 401 on every other endpoint.
    for (method, path) in [
        (Method::GET, "/domains"),
        (Method::GET, "/domains/app.test"),
        (Method::GET, "/backends"),
        (Method::GET, "/backends/a1"),
        (Method::DELETE, "/domains/app.test"),
        (Method::POST, "/domains/app.test/switch"),
    ] {
        let url = p.api(path);
        let got = send(method.clone(), &url, None, "", None).await;
        assert_error(&got, 401, &format!("{method} {path} without token"));
        let got = send(method.clone(), &url, None, "", Some("wrong")).await;
        assert_error(&got, 401, &format!("{method} {path} with a wrong token"));
        for near in ["S3CRET", "s3cre", "s3cret2"] {
            let got = send(method.clone(), &url, None, "", Some(near)).await;
            assert_error(&got, 401, &format!("{method} {path} with token {near:?}"));
        }
    }
    // Not a bearer token.
    let r = client()
        .get(p.api("/domains"))
        .header("authorization", "Basic czNjcmV0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client()
        .get(p.api("/domains"))
        .header("authorization", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // The refused DELETE did nothing; with the token everything works.
    let got = send(Method::GET, &p.api("/domains"), None, "", Some("s3cret")).await;
    assert_eq!(
        got,
        (200, json!([domain_json("app.test", "a", None, false)]))
    );
    let got = send(
        Method::POST,
        &p.api("/domains"),
        Some("application/json"),
        r#"{"domain": "new.test", "enabled_backends_tag": "a"}"#,
        Some("s3cret"),
    )
    .await;
    assert_eq!(got, (201, domain_json("new.test", "a", None, false)));
    let got = send(
        Method::DELETE,
        &p.api("/domains/new.test"),
        None,
        "",
        Some("s3cret"),
    )
    .await;
    assert_eq!(got, (204, Value::Null));
}
