//! The admin REST API (axum): handlers send commands to the RegistryActor with a timeout and
//! map its typed errors to HTTP statuses. No locks are taken here. The router and its OpenAPI
//! document are built from the same handler lists, so neither can list an endpoint the other
//! lacks.

mod backends;
mod dashboard;
mod domains;
mod error;
mod openapi;
mod status;

pub use error::{ApiError, ApiJson, ErrorBody, OptionalJson};
pub use openapi::openapi;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vhost_actors::command::{Command, Reply};
use vhost_actors::metrics::MetricsMsg;
use vhost_actors::registry::actor::RegistryMsg;

/// How long a handler waits for an actor's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler can reach.
#[derive(Clone)]
pub struct AdminState {
    /// The registry owner.
    pub registry: ActorRef<RegistryMsg>,
    /// The metrics owner.
    pub metrics: ActorRef<MetricsMsg>,
    /// Bearer token required on every endpoint but health.
    pub token: Option<Arc<str>>,
    /// Process start, for uptime.
    pub started: Instant,
}

// === routes ===

/// Endpoints that need neither a token nor the actors: the dashboard and this API's document.
fn pages() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(status::dashboard))
        .routes(routes!(openapi::document))
}

/// Endpoints that ask the actors but need no token.
fn public() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new().routes(routes!(status::health))
}

/// Endpoints behind the bearer token (when one is set).
fn guarded() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(domains::list, domains::add))
        .routes(routes!(domains::get, domains::update, domains::delete))
        .routes(routes!(domains::switch))
        .routes(routes!(domains::split))
        .routes(routes!(domains::undo))
        .routes(routes!(domains::history))
        .routes(routes!(backends::list, backends::add))
        .routes(routes!(backends::get, backends::update, backends::delete))
        .routes(routes!(status::certificates))
        .routes(routes!(status::stats))
        .routes(routes!(status::metrics_text))
}

/// The whole admin API.
pub fn app(state: AdminState, max_body_bytes: usize) -> Router {
    let guarded = Router::from(guarded())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::from(pages())
        .merge(Router::from(public()))
        .merge(guarded)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(refuse_proxied))
        .with_state(state)
}

/// The Prometheus endpoint: `/metrics` and `/api/v1/metrics`, no token.
pub fn metrics_app(metrics: ActorRef<MetricsMsg>) -> Router {
    Router::new()
        .route("/metrics", get(status::render_metrics))
        .route("/api/v1/metrics", get(status::render_metrics))
        .with_state(metrics)
}

// === token ===

async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// The token of `Authorization: Bearer <token>`; the scheme is case-insensitive.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// A request that reached the admin API through this proxy (a backend pointed at the admin
/// port) is refused: the admin API is never reachable through the public listeners.
async fn refuse_proxied(req: Request, next: Next) -> Response {
    if crate::proxy::came_through_here(req.headers()) {
        return ApiError::new(
            StatusCode::LOOP_DETECTED,
            "the admin API does not answer requests proxied by this instance",
        )
        .into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// === actor calls ===

async fn ask<T: Send + 'static>(
    state: &AdminState,
    msg: impl FnOnce(RpcReplyPort<T>) -> RegistryMsg,
) -> Result<T, ApiError> {
    call_actor(&state.registry, msg).await
}

async fn call_actor<M: ractor::Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    msg: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, ApiError> {
    match actor.call(msg, Some(CALL_TIMEOUT)).await {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(CallResult::Timeout) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the control plane did not answer in time",
        )),
        Ok(CallResult::SenderError) | Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the control plane is not running",
        )),
    }
}

async fn apply(state: &AdminState, cmd: Command) -> Result<Reply, ApiError> {
    ask(state, |tx| RegistryMsg::Apply(cmd, tx))
        .await?
        .map_err(ApiError::from)
}

/// A reply of the wrong kind: a bug, answered as one instead of panicking the handler.
fn unexpected(reply: &Reply) -> ApiError {
    tracing::error!(
        ?reply,
        "the registry answered a command with the wrong kind of reply"
    );
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error: unexpected reply from the registry",
    )
}
