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
pub mod governance;
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
    CompatibilityResult, ConfigRecord, Listing, Mode, Registered, RegistryError, SchemaById,
    SchemaRequest, SchemaStore, StoreResult, SubjectVersion, SubjectVersionRef, VersionSpec,
};

use crate::compat::CompatibilityLevel;
use crate::schema::{MAX_REFERENCES, ParsedSchema, Reference, ResolvedReference, SchemaType};
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

/// A register / lookup / compatibility body: an invalid `ruleSet` (unknown kind or mode, a
/// missing name or type, duplicate names) is 42210 rather than a generic 422.
fn schema_request(headers: &HeaderMap, bytes: &Bytes) -> Result<SchemaRequest, ApiError> {
    let raw: serde_json::Value = body(headers, bytes)?;
    if let Some(rs) = raw.get("ruleSet") {
        governance::parse_rule_set(rs)?;
    }
    serde_json::from_value(raw).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            422,
            format!("Unrecognized request body: {e}"),
        )
    })
}

/// `offset` / `limit` paging (Confluent's: offset 0, limit -1 = all).
fn page<T>(mut all: Vec<T>, q: &HashMap<String, String>) -> Vec<T> {
    let offset = q
        .get("offset")
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(0);
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l >= 0)
        .and_then(|l| usize::try_from(l).ok());
    if offset >= all.len() {
        return Vec::new();
    }
    all.drain(..offset);
    if let Some(l) = limit {
        all.truncate(l);
    }
    all
}

/// Fetches the referenced schemas (transitively) so a stored schema can be parsed again.
async fn fetch_references(
    s: &Shared,
    refs: &[Reference],
) -> Result<HashMap<(String, i32), ResolvedReference>, ApiError> {
    let mut out: HashMap<(String, i32), ResolvedReference> = HashMap::new();
    let mut todo: Vec<Reference> = refs.to_vec();
    while let Some(r) = todo.pop() {
        let key = (r.subject.clone(), r.version);
        if out.contains_key(&key) {
            continue;
        }
        if out.len() >= MAX_REFERENCES {
            return Err(RegistryError::InvalidSchema(
                crate::schema::SchemaError::TooManyReferences(MAX_REFERENCES),
            )
            .into());
        }
        let spec = if r.version == -1 {
            VersionSpec::Latest
        } else {
            VersionSpec::Number(r.version)
        };
        let sv = s.version(&r.subject, spec, true).await?;
        todo.extend(sv.references.iter().cloned());
        out.insert(
            key,
            ResolvedReference {
                schema: sv.schema,
                references: sv.references,
            },
        );
    }
    Ok(out)
}

/// The stored schema text in the requested `format` (`serialized`: base64 descriptor for
/// Protobuf; `resolved`: Avro with the referenced named types inlined; anything else: the
/// stored text).
async fn formatted(
    s: &Shared,
    schema_type: SchemaType,
    text: &str,
    refs: &[Reference],
    format: Option<&str>,
) -> Result<String, ApiError> {
    let is = |name: &str| format.is_some_and(|f| f.eq_ignore_ascii_case(name));
    let wants = match schema_type {
        SchemaType::Protobuf => is("serialized"),
        // Without references the stored text already is the resolved form.
        SchemaType::Avro => is("resolved") && !refs.is_empty(),
        SchemaType::Json => false,
    };
    if !wants {
        return Ok(text.to_string());
    }
    let resolved = fetch_references(s, refs).await?;
    let resolver = |r: &Reference| resolved.get(&(r.subject.clone(), r.version)).cloned();
    let parsed = ParsedSchema::parse(schema_type, text, refs, &resolver)
        .map_err(RegistryError::InvalidSchema)?;
    Ok(parsed.formatted(format, text))
}

fn format_param(q: &HashMap<String, String>) -> Option<&str> {
    q.get("format")
        .map(String::as_str)
        .filter(|f| !f.is_empty())
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
    secured_router_with_forwarding(store, auth, audit, None)
}

/// A hook that may take a request away from this node before its handler runs (a registry
/// node that is not the writer hands writes to the leader: [`crate::kafka::forward`]).
#[async_trait::async_trait]
pub trait WriteForwarder: Send + Sync {
    /// `Ok(response)`: the answer; `Err(request)`: handle it here.
    async fn forward(
        &self,
        request: axum::extract::Request,
    ) -> Result<Response, axum::extract::Request>;
}

async fn forward_layer(
    State(f): State<Arc<dyn WriteForwarder>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match f.forward(request).await {
        Ok(r) => r,
        Err(request) => next.run(request).await,
    }
}

/// [`secured_router`] with a [`WriteForwarder`] that runs after authentication and
/// authorization (so refused requests are answered here) and before the handlers.
pub fn secured_router_with_forwarding(
    store: Arc<dyn SchemaStore>,
    auth: Option<RegistryAuth>,
    audit: Option<Arc<dyn AuditSink>>,
    forward: Option<Arc<dyn WriteForwarder>>,
) -> Router {
    let mut app = router(store);
    if let Some(f) = forward {
        app = app.route_layer(axum::middleware::from_fn_with_state(f, forward_layer));
    }
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
        .route("/subjects/{subject}/metadata", get(by_metadata))
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
        .route("/schemas/guids/{guid}", get(by_guid))
        .route("/schemas/guids/{guid}/ids", get(by_guid_ids))
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
    ok(&page(all, &q))
}

/// A `Schema` body with its text in the requested format.
async fn schema_body(s: &Shared, mut sv: SubjectVersion, q: &HashMap<String, String>) -> ApiResult {
    sv.schema = formatted(
        s,
        sv.schema_type,
        &sv.schema,
        &sv.references,
        format_param(q),
    )
    .await?;
    ok(&sv)
}

async fn lookup(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let req = schema_request(&h, &b)?;
    let sv = s
        .lookup(&subject, req, flag(&q, "normalize"), flag(&q, "deleted"))
        .await?;
    schema_body(&s, sv, &q).await
}

async fn by_metadata(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult {
    let keys = pairs
        .iter()
        .filter(|(k, _)| k == "key")
        .map(|(_, v)| v.clone());
    let values = pairs
        .iter()
        .filter(|(k, _)| k == "value")
        .map(|(_, v)| v.clone());
    let props: Vec<(String, String)> = keys.zip(values).collect();
    let q: HashMap<String, String> = pairs.iter().cloned().collect();
    let sv = s
        .latest_with_metadata(&subject, &props, flag(&q, "deleted"))
        .await?;
    schema_body(&s, sv, &q).await
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
    ok(&page(s.versions(&subject, listing(&q)).await?, &q))
}

async fn register(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let req = schema_request(&h, &b)?;
    let r = s.register(&subject, req, flag(&q, "normalize")).await?;
    ok(&json!({"id": r.id, "version": r.version, "guid": r.guid}))
}

async fn get_version(
    State(s): State<Shared>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult {
    let sv = s
        .version(&subject, version(&v)?, flag(&q, "deleted"))
        .await?;
    schema_body(&s, sv, &q).await
}

async fn get_version_schema(
    State(s): State<Shared>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult {
    let sv = s
        .version(&subject, version(&v)?, flag(&q, "deleted"))
        .await?;
    let text = formatted(
        &s,
        sv.schema_type,
        &sv.schema,
        &sv.references,
        format_param(&q),
    )
    .await?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        text,
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
    Query(q): Q,
) -> ApiResult {
    ok(&page(s.referenced_by(&subject, version(&v)?).await?, &q))
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
    ok(&page(all, &q))
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
    let mut found = s.schema_by_id(id).await?;
    found.schema = formatted(
        &s,
        found.schema_type,
        &found.schema,
        &found.references,
        format_param(&q),
    )
    .await?;
    let mut v = serde_json::to_value(&found)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()))?;
    if flag(&q, "fetchMaxId")
        && let Some(o) = v.as_object_mut()
    {
        o.insert("maxId".into(), json!(s.max_id().await?));
    }
    ok(&v)
}

async fn by_id_schema(
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
    let text = formatted(
        &s,
        found.schema_type,
        &found.schema,
        &found.references,
        format_param(&q),
    )
    .await?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        text,
    )
        .into_response())
}

fn guid_param(g: &str) -> Result<[u8; 16], ApiError> {
    governance::parse_guid(g)
        .ok_or_else(|| RegistryError::SchemaNotFound(format!("Schema {g} not found")).into())
}

async fn by_guid(
    State(s): State<Shared>,
    who: Who,
    Path(g): Path<String>,
    Query(q): Q,
) -> ApiResult {
    let guid = guid_param(&g)?;
    let ids = s.ids_by_guid(guid).await?;
    if let Some(id) = ids.first()
        && let Err(r) = check_id_access(&s, &who, *id).await
    {
        return Ok(r);
    }
    let mut found = s.schema_by_guid(guid).await?;
    found.schema = formatted(
        &s,
        found.schema_type,
        &found.schema,
        &found.references,
        format_param(&q),
    )
    .await?;
    ok(&found)
}

async fn by_guid_ids(State(s): State<Shared>, who: Who, Path(g): Path<String>) -> ApiResult {
    let guid = guid_param(&g)?;
    let ids = s.ids_by_guid(guid).await?;
    if let Some(id) = ids.first()
        && let Err(r) = check_id_access(&s, &who, *id).await
    {
        return Ok(r);
    }
    ok(&ids)
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
    ok(&page(all, &q))
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
    ok(&page(all, &q))
}

/// `PUT /config` body (`ConfigUpdateRequest`): the fields it sets replace the stored ones.
#[derive(serde::Deserialize)]
struct ConfigBody {
    #[serde(default)]
    compatibility: Option<String>,
    #[serde(default, rename = "defaultMetadata")]
    default_metadata: Option<crate::contract::Metadata>,
    #[serde(default, rename = "overrideMetadata")]
    override_metadata: Option<crate::contract::Metadata>,
    #[serde(default, rename = "defaultRuleSet")]
    default_rule_set: Option<serde_json::Value>,
    #[serde(default, rename = "overrideRuleSet")]
    override_rule_set: Option<serde_json::Value>,
}

fn config_update(b: ConfigBody) -> Result<ConfigRecord, ApiError> {
    let compatibility = match &b.compatibility {
        Some(raw) => Some(
            raw.parse::<CompatibilityLevel>()
                .map_err(|_| RegistryError::InvalidCompatibilityLevel(raw.clone()))?,
        ),
        None => None,
    };
    let rule_set = |v: &Option<serde_json::Value>| -> Result<_, ApiError> {
        Ok(match v {
            Some(v) => governance::parse_rule_set(v)?,
            None => None,
        })
    };
    let rec = ConfigRecord {
        compatibility,
        default_metadata: b.default_metadata.clone(),
        override_metadata: b.override_metadata.clone(),
        default_rule_set: rule_set(&b.default_rule_set)?,
        override_rule_set: rule_set(&b.override_rule_set)?,
    };
    if rec.is_empty() {
        return Err(RegistryError::InvalidCompatibilityLevel(String::new()).into());
    }
    Ok(rec)
}

/// The PUT answer: Confluent echoes the request with `compatibility` (not
/// `compatibilityLevel`).
fn config_put_body(rec: &ConfigRecord) -> ApiResult {
    let mut v = serde_json::to_value(rec)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()))?;
    if let Some(o) = v.as_object_mut()
        && let Some(l) = o.remove("compatibilityLevel")
    {
        o.insert("compatibility".into(), l);
    }
    ok(&v)
}

async fn get_global_config(State(s): State<Shared>) -> ApiResult {
    ok(&s.config_record(None, true).await?)
}

async fn put_global_config(State(s): State<Shared>, h: HeaderMap, b: Bytes) -> ApiResult {
    let rec = config_update(body(&h, &b)?)?;
    s.update_config(None, rec.clone()).await?;
    config_put_body(&rec)
}

async fn delete_global_config(State(s): State<Shared>) -> ApiResult {
    ok(&json!({"compatibilityLevel": s.delete_config(None).await?}))
}

async fn get_config(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    Query(q): Q,
) -> ApiResult {
    let mut rec = s
        .config_record(Some(&subject), flag(&q, "defaultToGlobal"))
        .await?;
    if rec.compatibility.is_none() {
        rec.compatibility = Some(s.config(Some(&subject), true).await?);
    }
    ok(&rec)
}

async fn put_config(
    State(s): State<Shared>,
    Path(subject): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let rec = config_update(body(&h, &b)?)?;
    s.update_config(Some(&subject), rec.clone()).await?;
    config_put_body(&rec)
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
    let req = schema_request(&h, &b)?;
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
    let req = schema_request(&h, &b)?;
    let r = s
        .check_compatibility(&subject, None, req, flag(&q, "normalize"))
        .await?;
    compat_body(r, flag(&q, "verbose"))
}

async fn contexts(State(s): State<Shared>) -> ApiResult {
    ok(&s.contexts().await?)
}
