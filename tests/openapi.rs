//! The OpenAPI document at `GET /api/v1/openapi.json`: served without a token, OpenAPI 3.1,
//! every endpoint of the admin API in it with its bodies, statuses and the error shape, and
//! every operation it lists answered by the router (not 404 "no such endpoint", not 405).

mod support;

use axum::body::Body;
use axum::http::Method;
use serde_json::Value;
use support::control::{ControlPlane, DEFAULT_MAX_BODY};

/// The endpoints the admin API is documented to have (method, path).
const ENDPOINTS: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/api/v1/health"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/domains"),
    ("post", "/api/v1/domains"),
    ("get", "/api/v1/domains/{domain}"),
    ("put", "/api/v1/domains/{domain}"),
    ("delete", "/api/v1/domains/{domain}"),
    ("post", "/api/v1/domains/{domain}/switch"),
    ("post", "/api/v1/domains/{domain}/split"),
    ("get", "/api/v1/domains/{domain}/history"),
    ("post", "/api/v1/domains/{domain}/undo"),
    ("get", "/api/v1/backends"),
    ("post", "/api/v1/backends"),
    ("get", "/api/v1/backends/{id}"),
    ("put", "/api/v1/backends/{id}"),
    ("delete", "/api/v1/backends/{id}"),
    ("get", "/api/v1/certificates"),
    ("get", "/api/v1/stats"),
    ("get", "/api/v1/metrics"),
];

/// Endpoints that need no token.
const OPEN: &[&str] = &["/", "/api/v1/health", "/api/v1/openapi.json"];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

/// Every (method, path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Fetches the document from the router, with a token set but none sent.
async fn served_document(cp: &ControlPlane) -> Value {
    let got = cp.get("/api/v1/openapi.json").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert!(
        got.content_type().starts_with("application/json"),
        "{}",
        got.content_type()
    );
    assert!(got.body.is_object(), "not JSON: {:?}", got.body);
    got.body
}

#[tokio::test]
async fn document_is_openapi_3_1_served_without_a_token() {
    let cp = ControlPlane::start(Some("s3cret"), DEFAULT_MAX_BODY).await;
    let doc = served_document(&cp).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi {version:?}");
    assert!(doc["info"]["title"].is_string(), "{}", doc["info"]);
    assert!(doc["info"]["version"].is_string(), "{}", doc["info"]);
    // The same document the library builds.
    let built = serde_json::to_value(pingora_vhost::admin::openapi()).unwrap();
    assert_eq!(doc, built);

    // Saved beside the other test artifacts, for people and tools to read.
    let dir = support::artifacts_dir();
    let text = serde_json::to_string_pretty(&doc).unwrap();
    std::fs::write(dir.join("openapi.json"), text).unwrap();
}

#[tokio::test]
async fn every_endpoint_is_in_the_document() {
    let doc = serde_json::to_value(pingora_vhost::admin::openapi()).unwrap();
    let listed: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    for (method, path) in ENDPOINTS {
        assert!(
            listed.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not in the document: {listed:?}"
        );
    }
    let mut ids: Vec<String> = Vec::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default().to_string();
        assert!(!id.is_empty(), "{method} {path}: no operationId");
        assert!(
            !ids.contains(&id),
            "{method} {path}: operationId {id} twice"
        );
        ids.push(id);
    }
}

#[tokio::test]
async fn statuses_bodies_errors_and_security_are_described() {
    let doc = serde_json::to_value(pingora_vhost::admin::openapi()).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{}",
        doc["components"]
    );
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["type"], "object", "{error}");
    assert_eq!(error["required"], serde_json::json!(["error"]), "{error}");
    assert_eq!(error["properties"]["error"]["type"], "string", "{error}");

    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{what}: no success status"
        );
        // Every error answer is the `{"error": ...}` object.
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/Error",
                    "{what} {status}: {response}"
                );
            }
        }
        // The admin API never answers a request proxied by this instance.
        assert!(responses.contains_key("508"), "{what}: no 508");
        let open = OPEN.contains(&path.as_str());
        let security = &op["security"];
        if open {
            assert!(security.is_null(), "{what} needs no token: {security}");
        } else {
            assert_eq!(
                security,
                &serde_json::json!([{"bearer": []}]),
                "{what} needs the token"
            );
            assert!(responses.contains_key("401"), "{what}: no 401");
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "415"] {
                assert!(responses.contains_key(status), "{what}: no {status}");
            }
            assert!(
                op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                "{what}: {}",
                op["requestBody"]
            );
        }
        if method != "get" {
            assert!(responses.contains_key("500"), "{what}: no 500");
        }
        if !["/", "/api/v1/openapi.json"].contains(&path.as_str()) {
            assert!(responses.contains_key("503"), "{what}: no 503");
        }
    }
    // Integer ranges as the API reads them: a u32 is not an int32.
    let schemas = &doc["components"]["schemas"];
    for schema in ["NewBackend", "BackendPatch", "BackendRecord"] {
        // BackendRecord's own fields sit beside its flattened protocol settings (allOf).
        let own = &schemas[schema];
        let own = own["allOf"]
            .as_array()
            .and_then(|parts| parts.iter().find(|p| p["properties"].is_object()))
            .unwrap_or(own);
        let max_conn = &own["properties"]["max_connections"];
        assert_eq!(max_conn["maximum"], u32::MAX, "{schema}: {max_conn}");
        assert_ne!(max_conn["format"], "int32", "{schema}: {max_conn}");
        let tags = &own["properties"]["tags"];
        assert_eq!(
            tags["uniqueItems"], true,
            "{schema}: a tag is listed once: {tags}"
        );
    }
    // Bodies where the API takes them.
    for (method, path) in [
        ("post", "/api/v1/domains"),
        ("put", "/api/v1/domains/{domain}"),
        ("post", "/api/v1/domains/{domain}/switch"),
        ("post", "/api/v1/domains/{domain}/split"),
        ("post", "/api/v1/backends"),
        ("put", "/api/v1/backends/{id}"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op["requestBody"].is_object(), "{method} {path}: no body");
    }
    // The switch body may be left out.
    let switch = &doc["paths"]["/api/v1/domains/{domain}/switch"]["post"]["requestBody"];
    assert_ne!(switch["required"], true, "{switch}");
    // Absent, not null: the body is an object when there is one.
    assert_eq!(
        switch["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SwitchRequest",
        "{switch}"
    );
}

/// Every operation of the document reaches a handler: the path with its parameters filled in
/// is neither the 404 fallback ("no such endpoint") nor a 405.
#[tokio::test]
async fn the_router_serves_every_documented_operation() {
    let cp = ControlPlane::start_ab(Some("s3cret"), DEFAULT_MAX_BODY).await;
    let doc = served_document(&cp).await;
    for (method, path, _) in operations(&doc) {
        let uri = path
            .replace("{domain}", "nope.test")
            .replace("{id}", "nope");
        let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let got = cp
            .send(m, &uri, None, Body::empty(), Some("Bearer s3cret"))
            .await;
        assert_ne!(got.status, 405, "{method} {path}: {:?}", got.body);
        assert_ne!(
            got.body["error"], "no such endpoint",
            "{method} {path} is not routed"
        );
        assert!(got.status < 500, "{method} {path}: {:?}", got.body);
    }
}
