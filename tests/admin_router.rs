//! The admin API's error mapping in-process: `admin::app` over real actors answers `oneshot`
//! requests (no socket, no child process) with the right status and the `{"error": ...}` shape
//! for malformed JSON, missing fields, unknown tags, tokens, unknown paths and methods,
//! conflicts, oversized bodies and bodies that are not JSON.

mod support;

use axum::body::Body;
use axum::http::Method;
use serde_json::json;
use support::api::assert_error_body;
use support::control::{Answer, ControlPlane, DEFAULT_MAX_BODY};

/// Asserts `status`, a JSON content type and a body that is exactly `{"error": "<non-empty>"}`.
fn assert_error(got: &Answer, status: u16, what: &str) {
    assert_eq!(got.status, status, "{what}: {:?}", got.body);
    assert!(
        got.content_type().starts_with("application/json"),
        "{what}: content type {:?}",
        got.content_type()
    );
    assert_error_body(&got.body, what);
}

/// The error message of an answer.
fn message(got: &Answer) -> &str {
    got.body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn malformed_json_is_400() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    for (method, path, body) in [
        (Method::POST, "/api/v1/domains", "{"),
        (Method::POST, "/api/v1/domains", r#"{"domain": "x.test",}"#),
        (
            Method::PUT,
            "/api/v1/domains/app.test",
            "{http_to_https: true}",
        ),
        (
            Method::POST,
            "/api/v1/domains/app.test/switch",
            r#"{"new_tag": "#,
        ),
        (Method::POST, "/api/v1/backends", "not json"),
        (Method::PUT, "/api/v1/backends/a1", r#"{"weight": }"#),
    ] {
        let what = format!("{method} {path} {body}");
        let got = cp.send_json(method, path, body).await;
        assert_error(&got, 400, &what);
    }
    // The refused requests changed nothing.
    let got = cp.get("/api/v1/domains/app.test").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body["enabled_backends_tag"], "a");
}

#[tokio::test]
async fn missing_field_is_400_and_names_it() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    for (path, body, field) in [
        (
            "/api/v1/domains",
            r#"{"domain": "x.test"}"#,
            "enabled_backends_tag",
        ),
        (
            "/api/v1/domains",
            r#"{"enabled_backends_tag": "a"}"#,
            "domain",
        ),
        (
            "/api/v1/backends",
            r#"{"id": "x", "tags": ["a"]}"#,
            "address",
        ),
        (
            "/api/v1/backends",
            r#"{"id": "x", "address": "127.0.0.1:9"}"#,
            "tags",
        ),
    ] {
        let got = cp.send_json(Method::POST, path, body).await;
        assert_error(&got, 400, &format!("POST {path} {body}"));
        assert!(
            message(&got).contains(field),
            "{path} {body}: {:?}",
            got.body
        );
    }
}

#[tokio::test]
async fn wrong_shapes_and_invalid_values_are_400() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    for (method, path, body) in [
        (Method::POST, "/api/v1/domains", r#"["x.test", "a"]"#),
        (Method::POST, "/api/v1/domains", "null"),
        (
            Method::POST,
            "/api/v1/domains",
            r#"{"domain": 5, "enabled_backends_tag": "a"}"#,
        ),
        (
            Method::POST,
            "/api/v1/domains",
            r#"{"domain": "bad name", "enabled_backends_tag": "a"}"#,
        ),
        (
            Method::POST,
            "/api/v1/domains",
            r#"{"domain": "x.test", "enabled_backends_tag": "a", "bogus": 1}"#,
        ),
        (
            Method::PUT,
            "/api/v1/domains/app.test",
            r#"{"http_to_https": "yes"}"#,
        ),
        (Method::POST, "/api/v1/domains/app.test/switch", r#"["b"]"#),
        (
            Method::POST,
            "/api/v1/backends",
            r#"{"id": "x", "address": "127.0.0.1", "tags": ["a"]}"#,
        ),
        (Method::PUT, "/api/v1/backends/a1", r#"{"weight": 0}"#),
    ] {
        let what = format!("{method} {path} {body}");
        let got = cp.send_json(method, path, body).await;
        assert_error(&got, 400, &what);
    }
    let got = cp
        .send(
            Method::DELETE,
            "/api/v1/backends/a1?force=notabool",
            None,
            Body::empty(),
            None,
        )
        .await;
    assert_error(&got, 400, "DELETE force=notabool");
}

#[tokio::test]
async fn unknown_tag_is_400_and_names_it() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/domains",
            r#"{"domain": "x.test", "enabled_backends_tag": "zzz"}"#,
        ),
        (
            Method::PUT,
            "/api/v1/domains/app.test",
            r#"{"enabled_backends_tag": "zzz"}"#,
        ),
        (
            Method::POST,
            "/api/v1/domains/app.test/switch",
            r#"{"new_tag": "zzz"}"#,
        ),
    ] {
        let what = format!("{method} {path} {body}");
        let got = cp.send_json(method, path, body).await;
        assert_error(&got, 400, &what);
        assert!(message(&got).contains("zzz"), "{what}: {:?}", got.body);
    }
}

#[tokio::test]
async fn token_is_required_and_its_scheme_is_case_insensitive() {
    let cp = ControlPlane::start_ab(Some("s3cret"), DEFAULT_MAX_BODY).await;
    let domains = "/api/v1/domains";
    let send = |auth: Option<&'static str>| {
        let cp = &cp;
        async move {
            cp.send(Method::GET, domains, None, Body::empty(), auth)
                .await
        }
    };

    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer S3CRET"),
        Some("Bearer s3cre"),
        Some("Bearer s3cret2"),
        Some("Bearer"),
        Some("Bearer "),
        Some("Basic czNjcmV0"),
        Some("s3cret"),
        Some("Bearers3cret"),
    ] {
        let got = send(auth).await;
        assert_error(&got, 401, &format!("Authorization {auth:?}"));
    }
    // The scheme is case-insensitive; the token is not.
    for auth in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER s3cret",
        "bEaReR s3cret",
    ] {
        let got = send(Some(auth)).await;
        assert_eq!(got.status, 200, "Authorization {auth:?}: {:?}", got.body);
        assert!(got.body.is_array(), "{:?}", got.body);
    }
    // A refused write changed nothing.
    let got = cp
        .send(
            Method::DELETE,
            "/api/v1/domains/app.test",
            None,
            Body::empty(),
            Some("bearer wrong"),
        )
        .await;
    assert_error(&got, 401, "DELETE with a wrong token");
    let got = cp
        .send(
            Method::GET,
            "/api/v1/domains/app.test",
            None,
            Body::empty(),
            Some("Bearer s3cret"),
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);

    // Health, the dashboard and the API document need no token.
    assert_eq!(cp.get("/api/v1/health").await.status, 200);
    assert_eq!(cp.get("/").await.status, 200);
    assert_eq!(cp.get("/api/v1/openapi.json").await.status, 200);
}

#[tokio::test]
async fn unknown_paths_and_objects_are_404() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    for path in [
        "/api/v1/nope",
        "/api/v1",
        "/api/v1/",
        "/api/v2/domains",
        "/index.html",
        "/api/v1/domains/app.test/nope",
        "/api/v1/domains/nope.test",
        "/api/v1/backends/nope",
    ] {
        let got = cp.get(path).await;
        assert_error(&got, 404, &format!("GET {path}"));
    }
    let got = cp
        .send_json(Method::PUT, "/api/v1/domains/nope.test", "{}")
        .await;
    assert_error(&got, 404, "PUT unknown domain");
    let got = cp
        .send(
            Method::DELETE,
            "/api/v1/backends/nope",
            None,
            Body::empty(),
            None,
        )
        .await;
    assert_error(&got, 404, "DELETE unknown backend");
}

#[tokio::test]
async fn wrong_method_is_405() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    for (method, path) in [
        (Method::PATCH, "/api/v1/domains"),
        (Method::DELETE, "/api/v1/domains"),
        (Method::POST, "/api/v1/domains/app.test"),
        (Method::GET, "/api/v1/domains/app.test/switch"),
        (Method::PUT, "/api/v1/backends"),
        (Method::POST, "/api/v1/backends/a1"),
        (Method::POST, "/api/v1/health"),
        (Method::DELETE, "/api/v1/stats"),
        (Method::POST, "/"),
    ] {
        let got = cp
            .send(method.clone(), path, None, Body::empty(), None)
            .await;
        assert_error(&got, 405, &format!("{method} {path}"));
    }
}

#[tokio::test]
async fn conflicts_are_409() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    let got = cp
        .send_json(
            Method::POST,
            "/api/v1/domains",
            r#"{"domain": "APP.test.", "enabled_backends_tag": "b"}"#,
        )
        .await;
    assert_error(&got, 409, "duplicate domain");
    let got = cp
        .send_json(
            Method::POST,
            "/api/v1/backends",
            r#"{"id": "a1", "address": "127.0.0.1:11", "tags": ["a"]}"#,
        )
        .await;
    assert_error(&got, 409, "duplicate backend");
    let got = cp
        .send(
            Method::DELETE,
            "/api/v1/backends/a1",
            None,
            Body::empty(),
            None,
        )
        .await;
    assert_error(&got, 409, "DELETE the last backend of a used tag");
    let got = cp
        .send_json(Method::PUT, "/api/v1/backends/a1", r#"{"tags": ["b"]}"#)
        .await;
    assert_error(&got, 409, "PUT taking away the last backend of a used tag");
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let cp = ControlPlane::start_ab(None, 1024).await;
    let pad = "x".repeat(2048);
    // Over the limit is 413 even when the JSON would be refused anyway (an unknown field).
    let body = format!(r#"{{"domain": "big.test", "enabled_backends_tag": "a", "pad": "{pad}"}}"#);
    let got = cp.send_json(Method::POST, "/api/v1/domains", &body).await;
    assert_error(&got, 413, "2 KiB POST domain");
    let body = format!(r#"{{"new_tag": "b", "pad": "{pad}"}}"#);
    let got = cp
        .send_json(Method::POST, "/api/v1/domains/app.test/switch", &body)
        .await;
    assert_error(&got, 413, "2 KiB switch");
    // Under the limit: accepted.
    let got = cp
        .send_json(
            Method::POST,
            "/api/v1/domains",
            r#"{"domain": "small.test", "enabled_backends_tag": "a"}"#,
        )
        .await;
    assert_eq!(got.status, 201, "{:?}", got.body);
}

#[tokio::test]
async fn bodies_that_are_not_json_are_415() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    let domain = r#"{"domain": "x.test", "enabled_backends_tag": "a"}"#;
    for (method, path, content_type, body) in [
        (Method::POST, "/api/v1/domains", None, domain),
        (Method::POST, "/api/v1/domains", Some("text/plain"), domain),
        (
            Method::PUT,
            "/api/v1/domains/app.test",
            None,
            r#"{"http_to_https": true}"#,
        ),
        (
            Method::POST,
            "/api/v1/domains/app.test/switch",
            Some("text/plain"),
            r#"{"new_tag": "b"}"#,
        ),
        (
            Method::POST,
            "/api/v1/domains/app.test/switch",
            None,
            r#"{"new_tag": "b"}"#,
        ),
        (
            Method::POST,
            "/api/v1/backends",
            Some("application/x-www-form-urlencoded"),
            "id=x",
        ),
    ] {
        let what = format!("{method} {path} {content_type:?}");
        let got = cp.send(method, path, content_type, body, None).await;
        assert_error(&got, 415, &what);
    }
    // A JSON media type with parameters or a +json suffix is JSON.
    let got = cp
        .send(
            Method::POST,
            "/api/v1/domains",
            Some("application/json; charset=utf-8"),
            domain,
            None,
        )
        .await;
    assert_eq!(got.status, 201, "{:?}", got.body);
}

#[tokio::test]
async fn successes_answer_json_with_their_status() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    let got = cp
        .send_json(
            Method::POST,
            "/api/v1/domains",
            r#"{"domain": "new.test", "enabled_backends_tag": "b"}"#,
        )
        .await;
    assert_eq!(got.status, 201, "{:?}", got.body);
    assert_eq!(got.body["domain"], "new.test");
    let got = cp
        .send(
            Method::POST,
            "/api/v1/domains/app.test/switch",
            None,
            Body::empty(),
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body["enabled_backends_tag"], "b");
    assert_eq!(got.body["previous_tag"], "a");
    let got = cp
        .send(
            Method::DELETE,
            "/api/v1/domains/new.test",
            None,
            Body::empty(),
            None,
        )
        .await;
    assert_eq!((got.status, &got.body), (204, &json!(null)));
    let got = cp.get("/api/v1/stats").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert!(got.body["domains"].is_object(), "{:?}", got.body);
}

/// JSON has one number type and JSON Schema counts `2.0` as an integer, so the API does too;
/// a fraction is still refused.
#[tokio::test]
async fn integral_numbers_are_integers() {
    let cp = ControlPlane::start_ab(None, DEFAULT_MAX_BODY).await;
    let got = cp
        .send_json(
            Method::POST,
            "/api/v1/backends",
            r#"{"id": "c1", "address": "127.0.0.1:12", "tags": ["c"], "weight": 2.0, "max_connections": 4e1}"#,
        )
        .await;
    assert_eq!(got.status, 201, "{:?}", got.body);
    assert_eq!(
        (&got.body["weight"], &got.body["max_connections"]),
        (&json!(2), &json!(40))
    );
    let got = cp
        .send_json(Method::PUT, "/api/v1/backends/c1", r#"{"weight": 3e0}"#)
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body["weight"], 3);
    // The whole u32 range of max_connections, as documented.
    let got = cp
        .send_json(
            Method::PUT,
            "/api/v1/backends/c1",
            r#"{"max_connections": 4294967295}"#,
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    for body in [
        r#"{"weight": 2.5}"#,
        r#"{"weight": -1.0}"#,
        r#"{"max_connections": 4294967296}"#,
        r#"{"weight": 1e300}"#,
    ] {
        let got = cp.send_json(Method::PUT, "/api/v1/backends/c1", body).await;
        assert_error(&got, 400, body);
    }
}
