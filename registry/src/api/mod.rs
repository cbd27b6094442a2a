//! The Confluent Schema Registry REST API as an axum [`Router`] over a [`SchemaStore`].
//!
//! Requests are accepted with `application/vnd.schemaregistry.v1+json`,
//! `application/vnd.schemaregistry+json`, `application/json`, `application/octet-stream` or no
//! content type; any other content type is answered with 415. Malformed JSON gets 400, JSON of
//! the wrong shape 422, and every registry error Confluent's body
//! `{"error_code": ..., "message": ...}` with its code (see [`RegistryError::error_code`]).
//! Responses use `application/vnd.schemaregistry.v1+json`.
//!
//! [`router_with_audit`] adds the audit hook: state-changing requests are recorded through an
//! [`AuditSink`] before they are answered. [`secured_router`] adds authentication and
//! authorization ([`auth`]): the listings and the lookups by schema id are filtered here, in
//! the handlers, to the subjects the [`Caller`] may see.

mod audit;
pub mod auth;
mod memory;
mod store;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use audit::{ANONYMOUS, AUDIT_SERVICE, AuditSink, AuditSinkError, router_with_audit};
pub use auth::{Caller, RegistryAuth};
pub use memory::{Change, MemoryStore, SchemaRecord};
pub use memory::{WriteOp, WriteOut};
pub use store::{
    CompatibilityResult, Listing, Mode, Registered, RegistryError, SchemaById, SchemaRequest,
    SchemaStore, StoreResult, SubjectVersion, SubjectVersionRef, VersionSpec,
};

use crate::compat::CompatibilityLevel;
use gatehouse_policy::{Operation, ResourceType};

/// Content type of every response.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

const ACCEPTED_TYPES: &[&str] = &[
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
];

type Shared = Arc<dyn SchemaStore>;
type Q = Query<HashMap<String, String>>;

/// An HTTP error with Confluent's body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            code: e.error_code(),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.code, "message": self.message}).to_string();
        (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            body,
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok<T: Serialize>(v: &T) -> ApiResult {
    let body = serde_json::to_string(v)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response())
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let media = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !ACCEPTED_TYPES.contains(&media.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                415,
                "HTTP 415 Unsupported Media Type",
            ));
        }
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                400,
                format!("Unexpected character or end of input in request body: {e}"),
            )
        } else {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                422,
                format!("Unrecognized request body: {e}"),
            )
        }
    })
}

fn version(s: &str) -> Result<VersionSpec, ApiError> {
    Ok(VersionSpec::parse(s)?)
}

fn schema_id(s: &str) -> Result<i32, ApiError> {
    s.parse::<i32>()
        .map_err(|_| RegistryError::SchemaNotFound(format!("Schema {s} not found")).into())
}

fn listing(q: &HashMap<String, String>) -> Listing {
    Listing {
        deleted: flag(q, "deleted"),
        deleted_only: flag(q, "deletedOnly"),
    }
}

/// The REST router over `store` with, when given, authentication and authorization (`auth`)
/// and the audit hook (`audit`, outermost, so it records who was refused and why).
pub fn secured_router(
    store: Arc<dyn SchemaStore>,
    auth: Option<RegistryAuth>,
    audit: Option<Arc<dyn AuditSink>>,
) -> Router {
    let mut app = router(store);
    if let Some(a) = auth {
        app = app.route_layer(axum::middleware::from_fn_with_state(
            Arc::new(a),
            auth::auth_layer,
        ));
    }
    match audit {
        Some(sink) => audit::with_audit(app, sink),
        None => app,
    }
}

/// The caller when the router runs with authentication.
type Who = Option<Extension<Caller>>;

/// Whether the caller (if any) may do `op` on `subject`.
fn may(who: &Who, subject: &str, op: Operation) -> bool {
    who.as_ref()
        .is_none_or(|Extension(c)| c.may(ResourceType::Subject, subject, op))
}

/// For lookups by schema id: allowed if the caller may READ one of the subjects that hold
/// the id, else 403 (the subject names are not revealed to the caller).
async fn check_id_access(s: &Shared, who: &Who, id: i32) -> Result<(), Response> {
    let Some(Extension(caller)) = who else {
        return Ok(());
    };
    let subjects = s
        .subjects_by_id(id, true)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    if subjects
        .iter()
        .any(|sub| caller.may(ResourceType::Subject, sub, Operation::Read))
    {
        return Ok(());
    }
    Err(auth::denied_response(
        auth::Denied {
            resource_type: ResourceType::Subject,
            name: subjects.join(","),
            operation: Operation::Read,
            matched: None,
        },
        Some(""),
    ))
}

/// Builds the REST router over `store`.
pub fn router(store: Arc<dyn SchemaStore>) -> Router {
    Router::new()
        .route("/", get(root).post(root))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas", get(list_schemas))
        .route("/schemas/types", get(types))
        .route("/schemas/ids/{id}", get(by_id))
        .route("/schemas/ids/{id}/schema", get(by_id_schema))
        .route("/schemas/ids/{id}/subjects", get(by_id_subjects))
        .route("/schemas/ids/{id}/versions", get(by_id_versions))
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_config).put(put_config).delete(delete_config),
        )
        .route(
            "/mode",
            get(get_global_mode)
                .put(put_global_mode)
                .delete(delete_global_mode),
        )
        .route(
            "/mode/{subject}",
            get(get_mode).put(put_mode).delete(delete_mode),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compat_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compat_all),
        )
        .route("/contexts", get(contexts))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(store)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        405,
        "HTTP 405 Method Not Allowed",
    )
}

async fn root() -> ApiResult {
    ok(&json!({}))
}

async fn list_subjects(State(s): State<Shared>, who: Who, Query(q): Q) -> ApiResult {
    let mut all = s
        .subjects(q.get("subjectPrefix").map(String::as_str), listing(&q))
        .await?;
    all.retain(|sub| may(&who, sub, Operation::Describe));
    ok(&all)
}

async fn lookup(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let req: SchemaRequest = body(&h, &b)?;
    ok(&s
        .lookup(&subject, req, flag(&q, "normalize"), flag(&q, "deleted"))
        .await?)
}

async fn delete_subject(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
) -> ApiResult {
    ok(&s.delete_subject(&subject, flag(&q, "permanent")).await?)
}

async fn list_versions(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
) -> ApiResult {
    ok(&s.versions(&subject, listing(&q)).await?)
}

async fn register(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let req: SchemaRequest = body(&h, &b)?;
    let r = s.register(&subject, req, flag(&q, "normalize")).await?;
    ok(&json!({"id": r.id}))
}

async fn get_version(
    State(s): State<Shared>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult {
    ok(&s
        .version(&subject, version(&v)?, flag(&q, "deleted"))
        .await?)
}

async fn get_version_schema(
    State(s): State<Shared>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult {
    let sv = s
        .version(&subject, version(&v)?, flag(&q, "deleted"))
        .await?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        sv.schema,
    )
        .into_response())
}

async fn delete_version(
    State(s): State<Shared>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult {
    ok(&s
        .delete_version(&subject, version(&v)?, flag(&q, "permanent"))
        .await?)
}

async fn referenced_by(
    State(s): State<Shared>,
    Path((subject, v)): Path<(String, String)>,
) -> ApiResult {
    ok(&s.referenced_by(&subject, version(&v)?).await?)
}

async fn list_schemas(State(s): State<Shared>, who: Who, Query(q): Q) -> ApiResult {
    let mut all = s
        .schemas(
            q.get("subjectPrefix").map(String::as_str),
            flag(&q, "deleted"),
            flag(&q, "latestOnly"),
        )
        .await?;
    all.retain(|sv| may(&who, &sv.subject, Operation::Describe));
    ok(&all)
}

async fn types() -> ApiResult {
    ok(&["JSON", "PROTOBUF", "AVRO"])
}

async fn by_id(
    State(s): State<Shared>,
    who: Who,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult {
    let id = schema_id(&id)?;
    if let Err(r) = check_id_access(&s, &who, id).await {
        return Ok(r);
    }
    let found = s.schema_by_id(id).await?;
    let mut v = serde_json::to_value(&found)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()))?;
    if flag(&q, "fetchMaxId")
        && let Some(o) = v.as_object_mut()
    {
        o.insert("maxId".into(), json!(s.max_id().await?));
    }
    ok(&v)
}

async fn by_id_schema(State(s): State<Shared>, who: Who, Path(id): Path<String>) -> ApiResult {
    let id = schema_id(&id)?;
    if let Err(r) = check_id_access(&s, &who, id).await {
        return Ok(r);
    }
    let found = s.schema_by_id(id).await?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        found.schema,
    )
        .into_response())
}

async fn by_id_subjects(
    State(s): State<Shared>,
    who: Who,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult {
    let id = schema_id(&id)?;
    if let Err(r) = check_id_access(&s, &who, id).await {
        return Ok(r);
    }
    let mut all = s.subjects_by_id(id, flag(&q, "deleted")).await?;
    all.retain(|sub| may(&who, sub, Operation::Read));
    ok(&all)
}

async fn by_id_versions(
    State(s): State<Shared>,
    who: Who,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult {
    let id = schema_id(&id)?;
    if let Err(r) = check_id_access(&s, &who, id).await {
        return Ok(r);
    }
    let mut all = s.versions_by_id(id, flag(&q, "deleted")).await?;
    all.retain(|sv| may(&who, &sv.subject, Operation::Read));
    ok(&all)
}

#[derive(serde::Deserialize)]
struct ConfigBody {
    #[serde(default)]
    compatibility: Option<String>,
}

fn level(b: &ConfigBody) -> Result<CompatibilityLevel, ApiError> {
    let raw = b.compatibility.clone().unwrap_or_default();
    raw.parse::<CompatibilityLevel>()
        .map_err(|_| RegistryError::InvalidCompatibilityLevel(raw).into())
}

async fn get_global_config(State(s): State<Shared>) -> ApiResult {
    ok(&json!({"compatibilityLevel": s.config(None, true).await?}))
}

async fn put_global_config(State(s): State<Shared>, h: HeaderMap, b: Bytes) -> ApiResult {
    let l = level(&body(&h, &b)?)?;
    s.set_config(None, l).await?;
    ok(&json!({"compatibility": l}))
}

async fn delete_global_config(State(s): State<Shared>) -> ApiResult {
    ok(&json!({"compatibilityLevel": s.delete_config(None).await?}))
}

async fn get_config(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
) -> ApiResult {
    ok(&json!({"compatibilityLevel": s.config(Some(&subject), flag(&q, "defaultToGlobal")).await?}))
}

async fn put_config(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let l = level(&body(&h, &b)?)?;
    s.set_config(Some(&subject), l).await?;
    ok(&json!({"compatibility": l}))
}

async fn delete_config(State(s): State<Shared>, Path(subject): Path<String>) -> ApiResult {
    ok(&json!({"compatibilityLevel": s.delete_config(Some(&subject)).await?}))
}

#[derive(serde::Deserialize)]
struct ModeBody {
    #[serde(default)]
    mode: Option<String>,
}

fn mode(b: &ModeBody) -> Result<Mode, ApiError> {
    Ok(b.mode.clone().unwrap_or_default().parse::<Mode>()?)
}

async fn get_global_mode(State(s): State<Shared>) -> ApiResult {
    ok(&json!({"mode": s.mode(None, true).await?}))
}

async fn put_global_mode(
    State(s): State<Shared>,
    Query(q): Q,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let m = mode(&body(&h, &b)?)?;
    s.set_mode(None, m, flag(&q, "force")).await?;
    ok(&json!({"mode": m}))
}

async fn delete_global_mode(State(s): State<Shared>) -> ApiResult {
    ok(&json!({"mode": s.delete_mode(None).await?}))
}

async fn get_mode(State(s): State<Shared>, Path(subject): Path<String>, Query(q): Q) -> ApiResult {
    ok(&json!({"mode": s.mode(Some(&subject), flag(&q, "defaultToGlobal")).await?}))
}

async fn put_mode(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let m = mode(&body(&h, &b)?)?;
    s.set_mode(Some(&subject), m, flag(&q, "force")).await?;
    ok(&json!({"mode": m}))
}

async fn delete_mode(State(s): State<Shared>, Path(subject): Path<String>) -> ApiResult {
    ok(&json!({"mode": s.delete_mode(Some(&subject)).await?}))
}

fn compat_body(r: CompatibilityResult, verbose: bool) -> ApiResult {
    if verbose {
        ok(&json!({"is_compatible": r.is_compatible, "messages": r.messages}))
    } else {
        ok(&json!({"is_compatible": r.is_compatible}))
    }
}

async fn compat_version(
    State(s): State<Shared>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let spec = version(&v)?;
    let req: SchemaRequest = body(&h, &b)?;
    let r = s
        .check_compatibility(&subject, Some(spec), req, flag(&q, "normalize"))
        .await?;
    compat_body(r, flag(&q, "verbose"))
}

async fn compat_all(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let req: SchemaRequest = body(&h, &b)?;
    let r = s
        .check_compatibility(&subject, None, req, flag(&q, "normalize"))
        .await?;
    compat_body(r, flag(&q, "verbose"))
}

async fn contexts(State(s): State<Shared>) -> ApiResult {
    ok(&s.contexts().await?)
}
