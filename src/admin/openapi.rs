//! The admin API's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json`. Paths, bodies
//! and schemas come from the handlers' `#[utoipa::path]` and the API types' derives; what all
//! endpoints of a route group share (the token, 503 from the actors, 500 from persisting, the
//! body errors, 508 for requests proxied by this instance) is added from the group an
//! endpoint is routed in, so it cannot be forgotten.

use super::{guarded, pages, public, ApiError, ErrorBody};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::OpenApi as _;

/// Name of the bearer security scheme.
const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "pingora-vhost admin API",
        description = "Virtual hosts, backends and their tags, switched atomically. Every \
                       error answer is `{\"error\": \"<message>\"}`.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "domains", description = "Virtual hosts and tag switches"),
        (name = "backends", description = "Backends and their health"),
        (name = "status", description = "Health, counters, certificates and metrics"),
        (name = "pages", description = "The dashboard and this document"),
    ),
)]
struct ApiDoc;

/// The whole document, from the same route groups [`super::app`] serves.
pub fn openapi() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    let (_, pages) = pages().split_for_parts();
    let (_, mut public) = public().split_for_parts();
    let (_, mut guarded) = guarded().split_for_parts();
    for_each_operation(&mut public, |_, op| reaches_actors(op));
    for_each_operation(&mut guarded, |write, op| {
        reaches_actors(op);
        if write {
            persists(op);
        }
        needs_token(op);
    });
    doc.merge(pages);
    doc.merge(public);
    doc.merge(guarded);
    for_each_operation(&mut doc, |_, op| {
        add_error(
            op,
            StatusCode::LOOP_DETECTED,
            "The request came through one of this proxy's own listeners",
        );
        if let Some(body) = &mut op.request_body {
            never_null(body);
            takes_body(op);
        }
    });
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>` (the scheme in any case), required when \
                     the proxy has an admin token",
                    ))
                    .build(),
            ),
        );
    doc
}

/// This document as JSON.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "pages",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = serde_json::Value)),
)]
pub(super) async fn document() -> Result<impl IntoResponse, ApiError> {
    // The document depends on nothing but the code: made once.
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    let json = JSON.get_or_init(|| openapi().to_json().map_err(|e| e.to_string()));
    match json {
        Ok(text) => Ok(([(header::CONTENT_TYPE, "application/json")], text.as_str())),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the OpenAPI document: {e}"),
        )),
    }
}

// === what route groups share ===

/// Calls `f(is_write, operation)` for every operation of `doc`.
fn for_each_operation(doc: &mut OpenApi, mut f: impl FnMut(bool, &mut Operation)) {
    for item in doc.paths.paths.values_mut() {
        let reads = [&mut item.get, &mut item.head, &mut item.options];
        let writes = [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in reads.into_iter().flatten() {
            f(false, op);
        }
        for op in writes.into_iter().flatten() {
            f(true, op);
        }
    }
}

/// The handler asks an actor, which may not answer in time.
fn reaches_actors(op: &mut Operation) {
    add_error(
        op,
        StatusCode::SERVICE_UNAVAILABLE,
        "The control plane did not answer, or (for changes) the shared state store is \
         unreachable or has no quorum",
    );
}

/// A change is persisted before it is answered; a failed write changes nothing.
fn persists(op: &mut Operation) {
    add_error(
        op,
        StatusCode::INTERNAL_SERVER_ERROR,
        "The change could not be persisted and was not made",
    );
    add_error(
        op,
        StatusCode::CONFLICT,
        "Another instance sharing the registry (etcd) changed the same record first",
    );
}

/// Behind the bearer token.
fn needs_token(op: &mut Operation) {
    op.security = Some(vec![SecurityRequirement::new::<_, [&str; 0], &str>(
        BEARER,
        [],
    )]);
    add_error(
        op,
        StatusCode::UNAUTHORIZED,
        "Missing or wrong bearer token",
    );
}

/// Reads a JSON body.
fn takes_body(op: &mut Operation) {
    add_error(
        op,
        StatusCode::BAD_REQUEST,
        "Malformed JSON, a missing or unknown field, or an invalid value",
    );
    add_error(
        op,
        StatusCode::PAYLOAD_TOO_LARGE,
        "The body is over the limit",
    );
    add_error(
        op,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "A body that is not `application/json`",
    );
}

/// A body is a JSON object, or absent where it is optional (`Option<T>`, so not required),
/// never `null`: the extractors refuse anything but an object. utoipa documents an optional
/// body as nullable; this takes the `null` out.
fn never_null(body: &mut RequestBody) {
    for content in body.content.values_mut() {
        if let Some(RefOr::T(Schema::OneOf(one))) = &mut content.schema {
            one.items.retain(|s| !is_null(s));
            if let [only] = one.items.as_slice() {
                content.schema = Some(only.clone());
            }
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(
        schema,
        RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null)
    )
}

/// Adds an error answer for `status` unless the handler documents one of its own.
fn add_error(op: &mut Operation, status: StatusCode, description: &str) {
    op.responses
        .responses
        .entry(status.as_str().to_string())
        .or_insert_with(|| RefOr::T(error_response(description)));
}

fn error_response(description: &str) -> Response {
    let schema = Ref::from_schema_name("Error");
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}
