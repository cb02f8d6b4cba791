//! `/api/v1/backends`: the servers behind the tags, with their live health.

use super::{apply, ask, unexpected, AdminState, ApiError, ApiJson};
use crate::admin::ErrorBody;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use vhost_actors::command::{BackendPatch, BackendView, Command, NewBackend, Reply};
use vhost_actors::registry::actor::RegistryMsg;

fn backend_reply(reply: Reply) -> Result<Json<BackendView>, ApiError> {
    match reply {
        Reply::Backend(b) => Ok(Json(b)),
        other => Err(unexpected(&other)),
    }
}

/// Every backend with its live health.
///
/// Sorted by id.
#[utoipa::path(
    get,
    path = "/api/v1/backends",
    operation_id = "list_backends",
    tag = "backends",
    responses((status = 200, description = "Every backend", body = Vec<BackendView>)),
)]
pub(super) async fn list(State(s): State<AdminState>) -> Result<Json<Vec<BackendView>>, ApiError> {
    Ok(Json(ask(&s, RegistryMsg::ListBackends).await?))
}

/// One backend with its live health.
#[utoipa::path(
    get,
    path = "/api/v1/backends/{id}",
    operation_id = "get_backend",
    tag = "backends",
    params(("id" = String, Path, description = "Backend id", example = "web-v1")),
    responses(
        (status = 200, description = "The backend", body = BackendView),
        (status = 404, description = "No such backend", body = ErrorBody),
    ),
)]
pub(super) async fn get(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<BackendView>, ApiError> {
    Ok(Json(ask(&s, |tx| RegistryMsg::GetBackend(id, tx)).await??))
}

/// Adds a backend.
///
/// It joins the pools of its tags and takes traffic at once.
#[utoipa::path(
    post,
    path = "/api/v1/backends",
    operation_id = "add_backend",
    tag = "backends",
    request_body = NewBackend,
    responses(
        (status = 201, description = "Created", body = BackendView),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 409, description = "The id exists already", body = ErrorBody),
    ),
)]
pub(super) async fn add(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<NewBackend>,
) -> Result<(StatusCode, Json<BackendView>), ApiError> {
    let reply = apply(&s, Command::AddBackend(body)).await?;
    Ok((StatusCode::CREATED, backend_reply(reply)?))
}

/// Changes the given fields of a backend.
#[utoipa::path(
    put,
    path = "/api/v1/backends/{id}",
    operation_id = "update_backend",
    tag = "backends",
    params(("id" = String, Path, description = "Backend id", example = "web-v1")),
    request_body = BackendPatch,
    responses(
        (status = 200, description = "The backend after the change", body = BackendView),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 404, description = "No such backend", body = ErrorBody),
        (
            status = 409,
            description = "The new tags take the last backend away from a tag a domain uses",
            body = ErrorBody,
        ),
    ),
)]
pub(super) async fn update(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<BackendPatch>,
) -> Result<Json<BackendView>, ApiError> {
    backend_reply(apply(&s, Command::UpdateBackend(id, patch)).await?)
}

/// `?force=true` on backend deletion.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ForceParam {
    /// Remove it even when it is the last backend of a tag a domain uses (that domain then
    /// answers 503).
    #[serde(default)]
    force: bool,
}

/// Removes a backend.
#[utoipa::path(
    delete,
    path = "/api/v1/backends/{id}",
    operation_id = "delete_backend",
    tag = "backends",
    params(("id" = String, Path, description = "Backend id", example = "web-v1"), ForceParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`force` is not a boolean", body = ErrorBody),
        (status = 404, description = "No such backend", body = ErrorBody),
        (
            status = 409,
            description = "The last backend of a tag a domain uses (without `force`)",
            body = ErrorBody,
        ),
    ),
)]
pub(super) async fn delete(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    query: Result<Query<ForceParam>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(ForceParam { force }) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    apply(&s, Command::DeleteBackend { id, force }).await?;
    Ok(StatusCode::NO_CONTENT)
}
