//! The admin API end to end: a proxy started with N backends (each its own origin) and domains,
//! optionally behind a token, and requests that carry it; error answers checked for their shape.

use super::{backend_toml, client, vhost_toml, Origin, Proxy};
use reqwest::Method;
use serde_json::Value;
use std::ops::Deref;

/// What a test proxy is started with.
#[derive(Default)]
pub struct ApiSpec {
    backends: Vec<(String, Vec<String>)>,
    domains: Vec<(String, String)>,
    token: Option<String>,
    proxy_keys: String,
    limits: String,
    extra: String,
}

impl ApiSpec {
    /// Nothing yet: no backend, no domain, no token, the default limits.
    pub fn new() -> ApiSpec {
        ApiSpec::default()
    }

    /// A backend `id` with `tags`, served by an origin of its own that names itself `id`.
    pub fn backend(mut self, id: &str, tags: &[&str]) -> ApiSpec {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        self.backends.push((id.to_string(), tags));
        self
    }

    /// A virtual host served by `tag`.
    pub fn domain(mut self, domain: &str, tag: &str) -> ApiSpec {
        self.domains.push((domain.to_string(), tag.to_string()));
        self
    }

    /// The admin API's bearer token.
    pub fn token(mut self, token: &str) -> ApiSpec {
        self.token = Some(token.to_string());
        self
    }

    /// Keys added to `[proxy]`, one a line, each ending in `\n`.
    pub fn proxy_keys(mut self, keys: &str) -> ApiSpec {
        self.proxy_keys.push_str(keys);
        self
    }

    /// Keys added to `[limits]`, one a line, each ending in `\n`.
    pub fn limits(mut self, keys: &str) -> ApiSpec {
        self.limits.push_str(keys);
        self
    }

    /// More TOML after the virtual hosts and backends (sections of its own).
    pub fn extra(mut self, toml: &str) -> ApiSpec {
        self.extra.push_str(toml);
        self
    }

    /// Starts the origins, then the proxy, and waits until both serve.
    pub async fn start(self) -> ApiProxy {
        let mut origins = Vec::new();
        let mut extra = String::new();
        for (id, tags) in &self.backends {
            let origin = Origin::start(id).await;
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            extra.push_str(&backend_toml(id, origin.addr, &tags));
            origins.push(origin);
        }
        for (domain, tag) in &self.domains {
            extra.push_str(&vhost_toml(domain, tag));
        }
        extra.push_str(&self.extra);
        let mut proxy_keys = self.proxy_keys.clone();
        if let Some(t) = &self.token {
            proxy_keys.push_str(&format!("admin_token = \"{t}\"\n"));
        }
        let proxy = Proxy::start_with_limits(&proxy_keys, &self.limits, &extra).await;
        ApiProxy {
            proxy,
            origins,
            token: self.token,
        }
    }
}

/// A running proxy whose admin API a test drives; derefs to its [`Proxy`].
pub struct ApiProxy {
    /// The proxy under test.
    pub proxy: Proxy,
    /// One origin per backend, in the order given.
    pub origins: Vec<Origin>,
    /// The bearer token, when one is set.
    pub token: Option<String>,
}

impl Deref for ApiProxy {
    type Target = Proxy;

    fn deref(&self) -> &Proxy {
        &self.proxy
    }
}

impl ApiProxy {
    /// The API's base URL, `http://ADDR/api/v1`.
    pub fn base(&self) -> String {
        self.proxy.api("")
    }

    /// The admin listener's root URL, `http://ADDR`.
    pub fn root(&self) -> String {
        format!("http://{}", self.proxy.admin)
    }

    /// The origin of backend `id`.
    pub fn origin(&self, id: &str) -> &Origin {
        self.origins
            .iter()
            .find(|o| o.name == id)
            .unwrap_or_else(|| panic!("no origin {id}"))
    }

    /// A JSON request to `path` under the API with the token (when set): status and body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        let ct = text.as_ref().map(|_| "application/json");
        send(
            method,
            &self.api(path),
            ct,
            text.unwrap_or_default(),
            self.token.as_deref(),
        )
        .await
    }
}

/// Sends a request with a raw body, an optional content type and an optional bearer token;
/// returns the status and the parsed JSON body (Null when empty).
pub async fn send(
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(method, url).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, v)
}

/// Sends a JSON text (which may be malformed) as `application/json`.
pub async fn send_json_text(method: Method, url: &str, text: &str) -> (u16, Value) {
    send(
        method,
        url,
        Some("application/json"),
        text.to_string(),
        None,
    )
    .await
}

/// Asserts an error answer: the status, and a body that is exactly `{"error": "<non-empty>"}`.
pub fn assert_error(got: &(u16, Value), status: u16, what: &str) {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    assert_error_body(&got.1, what);
}

/// Asserts a body is exactly `{"error": "<non-empty>"}`.
pub fn assert_error_body(body: &Value, what: &str) {
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error body is not an object: {body}"));
    assert_eq!(obj.len(), 1, "{what}: error body has extra keys: {body}");
    let msg = obj["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: `error` is not a string: {body}"));
    assert!(!msg.trim().is_empty(), "{what}: empty error message");
}
