//! The admin API in-process: `admin::app` over the real RegistryActor and MetricsActor (state
//! in a temp dir, no health probes), answering `tower::ServiceExt::oneshot` requests with no
//! socket and no child process, so error mapping is tested in milliseconds.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request};
use pingora_vhost::admin::{self, AdminState};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;
use vhost_actors::command::{Command, NewBackend, NewDomain};
use vhost_actors::metrics::{Metrics, MetricsActor, MetricsArgs, MetricsMsg, RouteHandles};
use vhost_actors::ractor::{call_t, Actor, ActorRef};
use vhost_actors::registry::actor::{RegistryActor, RegistryArgs, RegistryMsg};
use vhost_actors::registry::Registry;
use vhost_actors::routing::RouteTable;
use vhost_actors::store::JsonFileStore;

/// The admin body limit the config defaults to.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// The control plane's actors with the admin router in front of them; stopped on drop.
pub struct ControlPlane {
    /// The whole admin API, as the server mounts it.
    pub app: axum::Router,
    /// The registry behind it, for seeding.
    pub registry: ActorRef<RegistryMsg>,
    metrics: ActorRef<MetricsMsg>,
    /// Holds the state file.
    pub dir: tempfile::TempDir,
}

/// One answer: status, headers and the body parsed as JSON (`Null` when empty, a string when
/// it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `Content-Type` header, empty when absent.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl ControlPlane {
    /// Starts the actors on an empty registry and builds the router.
    pub async fn start(token: Option<&str>, max_body_bytes: usize) -> ControlPlane {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let (metrics_ref, _) = Actor::spawn(
            None,
            MetricsActor,
            MetricsArgs {
                metrics: Arc::clone(&metrics),
                in_flight: Arc::default(),
                certs: None,
                acme: None,
            },
        )
        .await
        .unwrap();
        let (registry, _) = Actor::spawn(
            None,
            RegistryActor,
            RegistryArgs {
                registry: Registry::default(),
                table: Arc::new(RouteTable::new()),
                store: Arc::new(JsonFileStore::new(dir.path().join("state.json"))),
                health: None,
                handles: RouteHandles::new(metrics),
                metrics: metrics_ref.clone(),
                certs: None,
            },
        )
        .await
        .unwrap();
        let app = admin::app(
            AdminState {
                registry: registry.clone(),
                metrics: metrics_ref.clone(),
                token: token.map(Arc::from),
                started: Instant::now(),
            },
            max_body_bytes,
        );
        ControlPlane {
            app,
            registry,
            metrics: metrics_ref,
            dir,
        }
    }

    /// Like [`ControlPlane::start`], seeded with backends `a1` (tag `a`) and `b1` (tag `b`) on
    /// addresses nothing listens on, and `app.test` served by `a`.
    pub async fn start_ab(token: Option<&str>, max_body_bytes: usize) -> ControlPlane {
        let cp = Self::start(token, max_body_bytes).await;
        for (id, tag, port) in [("a1", "a", 9), ("b1", "b", 10)] {
            cp.apply(Command::AddBackend(NewBackend {
                id: id.into(),
                address: format!("127.0.0.1:{port}"),
                tags: vec![tag.into()],
                ..NewBackend::default()
            }))
            .await;
        }
        cp.apply(Command::AddDomain(NewDomain {
            domain: "app.test".into(),
            enabled_backends_tag: "a".into(),
            ..NewDomain::default()
        }))
        .await;
        cp
    }

    /// Applies a change that must succeed.
    pub async fn apply(&self, cmd: Command) {
        call_t!(self.registry, RegistryMsg::Apply, 5000, cmd)
            .unwrap()
            .unwrap();
    }

    /// Sends one request through the router.
    pub async fn request(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Sends `method path` with an optional content type, a body and an optional
    /// `Authorization` header value (given whole, scheme included).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
        authorization: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        self.request(req.body(body.into()).unwrap()).await
    }

    /// Sends a JSON text (which may be malformed) as `application/json`, without a token.
    pub async fn send_json(&self, method: Method, path: &str, text: &str) -> Answer {
        self.send(
            method,
            path,
            Some("application/json"),
            text.to_string(),
            None,
        )
        .await
    }

    /// `GET path` without a token.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, Body::empty(), None)
            .await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.registry.stop(None);
        self.metrics.stop(None);
    }
}
