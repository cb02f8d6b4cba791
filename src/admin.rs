//! The admin REST API (axum): handlers send commands to the RegistryActor with a timeout and
//! map its typed errors to HTTP statuses. No locks are taken here.

mod dashboard;
mod error;

pub use error::{ApiError, ApiJson, OptionalJson};

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vhost_actors::command::{
    BackendPatch, BackendView, Command, DomainPatch, NewBackend, NewDomain, Reply, SplitRequest,
    SwitchRequest,
};
use vhost_actors::metrics::{MetricsMsg, Stats, TextFormat};
use vhost_actors::model::DomainRecord;
use vhost_actors::registry::actor::RegistryMsg;
use vhost_actors::rollout::Change;

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

/// The whole admin API.
pub fn app(state: AdminState, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/domains", get(list_domains).post(add_domain))
        .route(
            "/domains/{domain}",
            get(get_domain).put(update_domain).delete(delete_domain),
        )
        .route("/domains/{domain}/switch", post(switch_domain))
        .route("/domains/{domain}/split", post(split_domain))
        .route("/domains/{domain}/undo", post(undo_domain))
        .route("/domains/{domain}/history", get(domain_history))
        .route("/backends", get(list_backends).post(add_backend))
        .route("/stats", get(stats))
        .route("/certificates", get(list_certificates))
        .route("/metrics", get(metrics_text))
        .route(
            "/backends/{id}",
            get(get_backend).put(update_backend).delete(delete_backend),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(dashboard::page))
        .route("/api/v1/health", get(health))
        .nest("/api/v1", api)
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
        .route("/metrics", get(render_metrics))
        .route("/api/v1/metrics", get(render_metrics))
        .with_state(metrics)
}

async fn render_metrics(
    State(m): State<ActorRef<MetricsMsg>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = TextFormat::negotiate(accept);
    let text = call_actor(&m, MetricsMsg::Render).await?;
    let headers = [
        (header::CONTENT_TYPE, format.content_type()),
        (header::VARY, "Accept"),
    ];
    Ok((headers, format.encode(text)).into_response())
}

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

fn domain_reply(reply: Reply) -> Result<Json<DomainRecord>, ApiError> {
    match reply {
        Reply::Domain(d) => Ok(Json(d)),
        other => Err(unexpected(&other)),
    }
}

fn backend_reply(reply: Reply) -> Result<Json<BackendView>, ApiError> {
    match reply {
        Reply::Backend(b) => Ok(Json(b)),
        other => Err(unexpected(&other)),
    }
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

// === handlers ===

async fn health(State(state): State<AdminState>) -> Result<Json<serde_json::Value>, ApiError> {
    let domains = ask(&state, RegistryMsg::ListDomains).await?.len();
    let backends = ask(&state, RegistryMsg::ListBackends).await?.len();
    let supervision = ask(&state, RegistryMsg::Supervision).await?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "domains": domains,
        "backends": backends,
        "health_probes": supervision.probes,
        "probe_restarts": supervision.probe_restarts,
    })))
}

async fn list_certificates(
    State(s): State<AdminState>,
) -> Result<Json<Vec<vhost_actors::cert::CertInfo>>, ApiError> {
    Ok(Json(ask(&s, RegistryMsg::ListCertificates).await?))
}

async fn stats(State(s): State<AdminState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(call_actor(&s.metrics, MetricsMsg::Stats).await?))
}

async fn metrics_text(
    State(s): State<AdminState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    render_metrics(State(s.metrics), headers).await
}

async fn list_domains(State(s): State<AdminState>) -> Result<Json<Vec<DomainRecord>>, ApiError> {
    Ok(Json(ask(&s, RegistryMsg::ListDomains).await?))
}

async fn get_domain(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
) -> Result<Json<DomainRecord>, ApiError> {
    let d = ask(&s, |tx| RegistryMsg::GetDomain(domain, tx)).await??;
    Ok(Json(d))
}

async fn add_domain(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<NewDomain>,
) -> Result<(StatusCode, Json<DomainRecord>), ApiError> {
    let reply = apply(&s, Command::AddDomain(body)).await?;
    Ok((StatusCode::CREATED, domain_reply(reply)?))
}

async fn update_domain(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
    ApiJson(patch): ApiJson<DomainPatch>,
) -> Result<Json<DomainRecord>, ApiError> {
    domain_reply(apply(&s, Command::UpdateDomain(domain, patch)).await?)
}

async fn delete_domain(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
) -> Result<StatusCode, ApiError> {
    apply(&s, Command::DeleteDomain(domain)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn switch_domain(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
    OptionalJson(body): OptionalJson<SwitchRequest>,
) -> Result<Json<DomainRecord>, ApiError> {
    let req = body.unwrap_or_default();
    domain_reply(apply(&s, Command::SwitchTag(domain, req)).await?)
}

async fn split_domain(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
    ApiJson(body): ApiJson<SplitRequest>,
) -> Result<Json<DomainRecord>, ApiError> {
    domain_reply(apply(&s, Command::Split(domain, body)).await?)
}

async fn undo_domain(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
) -> Result<Json<DomainRecord>, ApiError> {
    domain_reply(apply(&s, Command::Undo(domain)).await?)
}

async fn domain_history(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
) -> Result<Json<Vec<Change>>, ApiError> {
    Ok(Json(ask(&s, |tx| RegistryMsg::History(domain, tx)).await??))
}

async fn list_backends(State(s): State<AdminState>) -> Result<Json<Vec<BackendView>>, ApiError> {
    Ok(Json(ask(&s, RegistryMsg::ListBackends).await?))
}

async fn get_backend(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<BackendView>, ApiError> {
    Ok(Json(ask(&s, |tx| RegistryMsg::GetBackend(id, tx)).await??))
}

async fn add_backend(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<NewBackend>,
) -> Result<(StatusCode, Json<BackendView>), ApiError> {
    let reply = apply(&s, Command::AddBackend(body)).await?;
    Ok((StatusCode::CREATED, backend_reply(reply)?))
}

async fn update_backend(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<BackendPatch>,
) -> Result<Json<BackendView>, ApiError> {
    backend_reply(apply(&s, Command::UpdateBackend(id, patch)).await?)
}

/// `?force=true` on backend deletion.
#[derive(Deserialize)]
struct ForceParam {
    #[serde(default)]
    force: bool,
}

async fn delete_backend(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    query: Result<Query<ForceParam>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(ForceParam { force }) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    apply(&s, Command::DeleteBackend { id, force }).await?;
    Ok(StatusCode::NO_CONTENT)
}
