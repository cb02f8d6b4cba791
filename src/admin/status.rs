//! What the admin API reports rather than changes: health, traffic counters, certificates,
//! Prometheus text, and the operator dashboard page.

use super::{ask, call_actor, dashboard, AdminState, ApiError};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ractor::ActorRef;
use serde::Serialize;
use vhost_actors::cert::CertInfo;
use vhost_actors::metrics::{MetricsMsg, Stats, TextFormat};
use vhost_actors::registry::actor::RegistryMsg;
use vhost_actors::store::StoreStatus;

/// `GET /api/v1/health`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ServiceHealth)]
pub(super) struct HealthBody {
    /// Always `ok` when the control plane answers.
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
    /// This build's version.
    #[schema(value_type = String, example = "0.1.0")]
    version: &'static str,
    /// Seconds since the process started.
    uptime_secs: u64,
    /// Virtual hosts configured.
    domains: usize,
    /// Backends configured.
    backends: usize,
    /// Health probes running now.
    health_probes: usize,
    /// Probes restarted after a crash since the start.
    probe_restarts: u64,
    /// The state store: `file` or `etcd`, and whether it is reachable (API changes answer
    /// `503` while it is not).
    store: StoreStatus,
}

/// Whether the control plane answers.
///
/// Needs no token, for load balancers and orchestrators.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    operation_id = "health",
    tag = "status",
    responses((status = 200, description = "The proxy is up", body = HealthBody)),
)]
pub(super) async fn health(State(state): State<AdminState>) -> Result<Json<HealthBody>, ApiError> {
    let domains = ask(&state, RegistryMsg::ListDomains).await?.len();
    let backends = ask(&state, RegistryMsg::ListBackends).await?.len();
    let supervision = ask(&state, RegistryMsg::Supervision).await?;
    let store = ask(&state, RegistryMsg::StoreStatus).await?;
    Ok(Json(HealthBody {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: state.started.elapsed().as_secs(),
        domains,
        backends,
        health_probes: supervision.probes,
        probe_restarts: supervision.probe_restarts,
        store,
    }))
}

/// Every certificate served, whatever its source.
#[utoipa::path(
    get,
    path = "/api/v1/certificates",
    operation_id = "list_certificates",
    tag = "status",
    responses((status = 200, description = "Every certificate", body = Vec<CertInfo>)),
)]
pub(super) async fn certificates(
    State(s): State<AdminState>,
) -> Result<Json<Vec<CertInfo>>, ApiError> {
    Ok(Json(ask(&s, RegistryMsg::ListCertificates).await?))
}

/// Per-domain and per-tag traffic counters.
///
/// Counted since the start.
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    operation_id = "stats",
    tag = "status",
    responses((status = 200, description = "The counters", body = Stats)),
)]
pub(super) async fn stats(State(s): State<AdminState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(call_actor(&s.metrics, MetricsMsg::Stats).await?))
}

/// The Prometheus exposition.
///
/// The same as the metrics listener serves: OpenMetrics when `Accept` asks for
/// `application/openmetrics-text`, else the Prometheus text format 0.0.4.
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    operation_id = "metrics",
    tag = "status",
    responses((
        status = 200,
        description = "The metrics",
        content(
            (String = "text/plain"),
            (String = "application/openmetrics-text"),
        ),
    )),
)]
pub(super) async fn metrics_text(
    State(s): State<AdminState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    render_metrics(State(s.metrics), headers).await
}

/// The metrics in the format the scraper's `Accept` asks for.
pub(super) async fn render_metrics(
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

/// The operator dashboard.
///
/// One HTML page that asks for the token itself when the API needs one, so loading it needs
/// none.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "dashboard",
    tag = "pages",
    responses((status = 200, description = "The dashboard", content_type = "text/html", body = String)),
)]
pub(super) async fn dashboard() -> impl IntoResponse {
    dashboard::page().await
}
