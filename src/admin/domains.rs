//! `/api/v1/domains`: virtual hosts and their tag switches.

use super::{apply, ask, unexpected, AdminState, ApiError, ApiJson, OptionalJson};
use crate::admin::ErrorBody;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use vhost_actors::command::{Command, DomainPatch, NewDomain, Reply, SplitRequest, SwitchRequest};
use vhost_actors::model::DomainRecord;
use vhost_actors::registry::actor::RegistryMsg;
use vhost_actors::rollout::Change;

fn domain_reply(reply: Reply) -> Result<Json<DomainRecord>, ApiError> {
    match reply {
        Reply::Domain(d) => Ok(Json(d)),
        other => Err(unexpected(&other)),
    }
}

/// Every virtual host, sorted by name.
#[utoipa::path(
    get,
    path = "/api/v1/domains",
    operation_id = "list_domains",
    tag = "domains",
    responses((status = 200, description = "Every domain", body = Vec<DomainRecord>)),
)]
pub(super) async fn list(State(s): State<AdminState>) -> Result<Json<Vec<DomainRecord>>, ApiError> {
    Ok(Json(ask(&s, RegistryMsg::ListDomains).await?))
}

/// One virtual host.
#[utoipa::path(
    get,
    path = "/api/v1/domains/{domain}",
    operation_id = "get_domain",
    tag = "domains",
    params(("domain" = String, Path, description = "Host name; case and a trailing dot do not matter", example = "app.example.com")),
    responses(
        (status = 200, description = "The domain", body = DomainRecord),
        (status = 404, description = "No such domain", body = ErrorBody),
    ),
)]
pub(super) async fn get(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
) -> Result<Json<DomainRecord>, ApiError> {
    let d = ask(&s, |tx| RegistryMsg::GetDomain(domain, tx)).await??;
    Ok(Json(d))
}

/// Adds a virtual host.
///
/// It is routed at once, and gets its certificate at once when there is an HTTPS listener.
#[utoipa::path(
    post,
    path = "/api/v1/domains",
    operation_id = "add_domain",
    tag = "domains",
    request_body = NewDomain,
    responses(
        (status = 201, description = "Created", body = DomainRecord),
        (status = 400, description = "Invalid input or unknown tag", body = ErrorBody),
        (status = 409, description = "The domain exists already", body = ErrorBody),
    ),
)]
pub(super) async fn add(
    State(s): State<AdminState>,
    ApiJson(body): ApiJson<NewDomain>,
) -> Result<(StatusCode, Json<DomainRecord>), ApiError> {
    let reply = apply(&s, Command::AddDomain(body)).await?;
    Ok((StatusCode::CREATED, domain_reply(reply)?))
}

/// Changes the given fields of a virtual host.
///
/// A new `enabled_backends_tag` is a switch, with the same checks.
#[utoipa::path(
    put,
    path = "/api/v1/domains/{domain}",
    operation_id = "update_domain",
    tag = "domains",
    params(("domain" = String, Path, description = "Host name; case and a trailing dot do not matter", example = "app.example.com")),
    request_body = DomainPatch,
    responses(
        (status = 200, description = "The domain after the change", body = DomainRecord),
        (status = 400, description = "Invalid input or unknown tag", body = ErrorBody),
        (status = 404, description = "No such domain", body = ErrorBody),
        (status = 409, description = "The new tag has no healthy backend", body = ErrorBody),
    ),
)]
pub(super) async fn update(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
    ApiJson(patch): ApiJson<DomainPatch>,
) -> Result<Json<DomainRecord>, ApiError> {
    domain_reply(apply(&s, Command::UpdateDomain(domain, patch)).await?)
}

/// Removes a virtual host.
///
/// Its requests get 404 from then on.
#[utoipa::path(
    delete,
    path = "/api/v1/domains/{domain}",
    operation_id = "delete_domain",
    tag = "domains",
    params(("domain" = String, Path, description = "Host name; case and a trailing dot do not matter", example = "app.example.com")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such domain", body = ErrorBody),
    ),
)]
pub(super) async fn delete(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
) -> Result<StatusCode, ApiError> {
    apply(&s, Command::DeleteDomain(domain)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Switches a domain to another tag.
///
/// Atomic for the request path: a request sees the old pool or the new one. Without a body it
/// switches back to `previous_tag`, or between `a` and `b` when there is none.
#[utoipa::path(
    post,
    path = "/api/v1/domains/{domain}/switch",
    operation_id = "switch_domain",
    tag = "domains",
    params(("domain" = String, Path, description = "Host name; case and a trailing dot do not matter", example = "app.example.com")),
    request_body(
        content = Option<SwitchRequest>,
        description = "The target tag; may be empty",
        content_type = "application/json",
    ),
    responses(
        (status = 200, description = "The domain after the switch", body = DomainRecord),
        (status = 400, description = "Invalid input or unknown tag", body = ErrorBody),
        (status = 404, description = "No such domain", body = ErrorBody),
        (
            status = 409,
            description = "The target tag has no healthy backend (without `force`), or an \
                           empty body has nothing to switch back to",
            body = ErrorBody,
        ),
    ),
)]
pub(super) async fn switch(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
    OptionalJson(body): OptionalJson<SwitchRequest>,
) -> Result<Json<DomainRecord>, ApiError> {
    let req = body.unwrap_or_default();
    domain_reply(apply(&s, Command::SwitchTag(domain, req)).await?)
}

/// Splits a domain's traffic between tags by weight.
///
/// The heaviest tag is the baseline; with a `rollback` rule, a canary whose error share passes
/// it is rolled back to the baseline at once. `sticky` keeps each client on the tag it first
/// got. A switch ends the split.
#[utoipa::path(
    post,
    path = "/api/v1/domains/{domain}/split",
    operation_id = "split_domain",
    tag = "domains",
    params(("domain" = String, Path, description = "Host name; case and a trailing dot do not matter", example = "app.example.com")),
    request_body = SplitRequest,
    responses(
        (status = 200, description = "The domain with its split", body = DomainRecord),
        (status = 400, description = "Invalid weights or rule, or an unknown tag", body = ErrorBody),
        (status = 404, description = "No such domain", body = ErrorBody),
        (
            status = 409,
            description = "A tag with a weight has no healthy backend (without `force`)",
            body = ErrorBody,
        ),
    ),
)]
pub(super) async fn split(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
    ApiJson(body): ApiJson<SplitRequest>,
) -> Result<Json<DomainRecord>, ApiError> {
    domain_reply(apply(&s, Command::Split(domain, body)).await?)
}

/// Restores a domain's routing before its last change.
#[utoipa::path(
    post,
    path = "/api/v1/domains/{domain}/undo",
    operation_id = "undo_domain",
    tag = "domains",
    params(("domain" = String, Path, description = "Host name; case and a trailing dot do not matter", example = "app.example.com")),
    responses(
        (status = 200, description = "The domain with its previous routing", body = DomainRecord),
        (status = 404, description = "No such domain", body = ErrorBody),
        (status = 409, description = "There is nothing to undo", body = ErrorBody),
    ),
)]
pub(super) async fn undo(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
) -> Result<Json<DomainRecord>, ApiError> {
    domain_reply(apply(&s, Command::Undo(domain)).await?)
}

/// A domain's routing changes.
///
/// Newest first: switches, splits, rollbacks and undos, with the routing before and after.
#[utoipa::path(
    get,
    path = "/api/v1/domains/{domain}/history",
    operation_id = "domain_history",
    tag = "domains",
    params(("domain" = String, Path, description = "Host name; case and a trailing dot do not matter", example = "app.example.com")),
    responses(
        (status = 200, description = "The changes, newest first", body = Vec<Change>),
        (status = 404, description = "No such domain", body = ErrorBody),
    ),
)]
pub(super) async fn history(
    State(s): State<AdminState>,
    Path(domain): Path<String>,
) -> Result<Json<Vec<Change>>, ApiError> {
    Ok(Json(ask(&s, |tx| RegistryMsg::History(domain, tx)).await??))
}
