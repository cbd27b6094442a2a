//! The admin listener (`--admin-listen`, default `127.0.0.1:8080`, plain HTTP):
//!
//! * `GET /health` (open): 200 once every part serves, 503 (with the parts still starting)
//!   before that and while stopping.
//! * `GET /metrics` (open): Prometheus text exposition (hand-written, format 0.0.4) of the
//!   gateway's counters ([`gatehouse_gateway::Gateway::metrics`]), the key vault's, the audit
//!   trail's self-check (`gatehouse_audit_*`) and `gatehouse_up 1`; the families added by
//!   `metrics_render.rs` (per-listener, errors, data guard, encryption, registry HTTP, broker
//!   logs and fsync, audit queue and lag).
//! * `/v1/keys…` (under `serve`): the key vault's admin REST API — list, status, create,
//!   rotate, retire, destroy (crypto-shredding, with a typed confirmation). HTTP Basic against
//!   the gateway's SCRAM users ([`Authenticator::verify_plain`]) — 401 without; super users or
//!   principals with `DESCRIBE` (reads) / `ALTER` (changes) on `Cluster:kafka-cluster` — 403
//!   otherwise. Every change attempt and every refusal is recorded in the audit trail before
//!   the answer leaves; a change that cannot be recorded is answered 500/50001.
//! * `/v1/cluster`, `/v1/topics…`, `/v1/groups…`, `/v1/users…`, `/v1/acls`, `/v1/schemas`
//!   (under `serve`, [`rest`] and its siblings in `src/admin/`): Kafka administration as the
//!   caller through the gateway; `GET /openapi.json` (open) describes every route.
//!
//! Errors are `{"error_code": <status*100+n>, "message": "..."}` as in the schema registry.
//! Responses carry key ids and KMS key names only, never key material. Credentials are never
//! logged or audited. The reference is `docs/admin-api.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use gatehouse_compliance::audit::mirror::MirrorMetrics;
use gatehouse_compliance::audit::selfcheck::SelfCheckMetrics;
use gatehouse_compliance::vault::{Kek, KekState};
use gatehouse_compliance::{AuditEvent, Envelope, EventType, Outcome, VaultError};
use gatehouse_gateway::Gateway;
use gatehouse_policy::acl::CLUSTER_NAME;
use gatehouse_policy::{AuthError, Authenticator, Authorizer, Operation, Principal, ResourceType};
use gatehouse_registry::api::AuditSink;
use serde_json::{Value, json};

// The Kafka-facing REST API (issue 7): topics, groups, users, ACLs, cluster, schemas, OpenAPI.
mod acls;
mod audit;
mod cluster;
#[path = "console/mod.rs"]
mod console;
mod explain;
mod groups;
mod messages;
#[path = "metrics_render.rs"]
mod metrics_render;
mod openapi;
mod rest;
mod topics;
mod users;

pub use audit::EvidenceSource;
pub use console::ConsoleSso;
pub use rest::RestApi;

/// The `service` field of the admin API's audit events.
const AUDIT_SERVICE: &str = "admin";
/// `auth_mechanism` of admin API callers.
const MECHANISM_BASIC: &str = "HTTP/BASIC";
/// Largest request body accepted by the key endpoints.
const MAX_BODY: usize = 64 * 1024;

/// Readiness of each part.
#[derive(Clone)]
pub struct Health {
    parts: Arc<Mutex<BTreeMap<&'static str, &'static str>>>,
}

impl Health {
    /// All `parts` start as "starting".
    pub fn new(parts: Vec<&'static str>) -> Self {
        Self {
            parts: Arc::new(Mutex::new(
                parts.into_iter().map(|p| (p, "starting")).collect(),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, &'static str>> {
        match self.parts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Marks one part as serving.
    pub fn set_ready(&self, part: &'static str) {
        self.lock().insert(part, "serving");
    }

    /// Marks every part as stopping.
    pub fn set_stopping(&self) {
        for v in self.lock().values_mut() {
            *v = "stopping";
        }
    }

    fn snapshot(&self) -> (bool, BTreeMap<&'static str, &'static str>) {
        let parts = self.lock().clone();
        (parts.values().all(|s| *s == "serving"), parts)
    }
}

/// What the key API works with; handed over by `serve` once the policy and the vault are open.
pub struct KeyApi {
    /// The key vault (its [`gatehouse_compliance::KeyStore`]).
    pub envelope: Envelope,
    /// The durable policy store, for role bindings.
    pub roles: Option<gatehouse_policy::PolicyStore>,
    /// Checks HTTP Basic credentials against the gateway's SCRAM users.
    pub authenticator: Authenticator,
    /// The gateway's ACLs and super users.
    pub authorizer: Authorizer,
    /// Where changes and refusals are recorded.
    pub audit: Option<Arc<dyn AuditSink>>,
}

type GatewaySlot = Arc<Mutex<Option<Gateway>>>;

#[derive(Clone)]
struct AdminState {
    health: Health,
    keys: Arc<OnceLock<KeyApi>>,
    gateway: GatewaySlot,
    audit_self_check: Arc<OnceLock<Arc<SelfCheckMetrics>>>,
    audit_mirror: Arc<OnceLock<Arc<MirrorMetrics>>>,
    audit_dir: Arc<OnceLock<std::path::PathBuf>>,
    evidence: Arc<OnceLock<EvidenceSource>>,
    rest: Arc<OnceLock<RestApi>>,
}

/// A running admin listener.
pub struct Admin {
    pub local_addr: SocketAddr,
    pub health: Health,
    keys: Arc<OnceLock<KeyApi>>,
    gateway: GatewaySlot,
    audit_self_check: Arc<OnceLock<Arc<SelfCheckMetrics>>>,
    audit_mirror: Arc<OnceLock<Arc<MirrorMetrics>>>,
    audit_dir: Arc<OnceLock<std::path::PathBuf>>,
    evidence: Arc<OnceLock<EvidenceSource>>,
    rest: Arc<OnceLock<RestApi>>,
}

fn lock_slot(slot: &GatewaySlot) -> std::sync::MutexGuard<'_, Option<Gateway>> {
    match slot.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Admin {
    /// Turns on `/v1/keys…` (before this they answer 503).
    pub fn enable_keys(&self, api: KeyApi) {
        if self.keys.set(api).is_err() {
            tracing::warn!("The key API was enabled twice; the first configuration stays.");
        }
    }

    /// Hands the running gateway to the listener (for `/metrics`) until [`Admin::take_gateway`].
    pub fn attach_gateway(&self, gateway: Gateway) {
        *lock_slot(&self.gateway) = Some(gateway);
    }

    /// Exposes the audit trail's self-check on `/metrics`.
    pub fn attach_audit_self_check(&self, metrics: Arc<SelfCheckMetrics>) {
        let _ = self.audit_self_check.set(metrics);
    }

    /// Serves the node's audit trail on `/v1/audit/…`.
    pub fn attach_audit_dir(&self, dir: std::path::PathBuf) {
        let _ = self.audit_dir.set(dir);
    }

    /// Lets `GET /v1/audit/evidence` sign a checkpoint first and include the configuration.
    pub fn attach_evidence(&self, source: EvidenceSource) {
        let _ = self.evidence.set(source);
    }

    /// Exposes the audit mirror's counters on `/metrics`.
    pub fn attach_audit_mirror(&self, metrics: Arc<MirrorMetrics>) {
        let _ = self.audit_mirror.set(metrics);
    }

    /// Takes the gateway back (to shut it down).
    pub fn take_gateway(&self) -> Option<Gateway> {
        lock_slot(&self.gateway).take()
    }
}

/// Binds the admin listener and serves it in the background.
pub async fn start(addr: SocketAddr, health: Health) -> Result<Admin> {
    let state = AdminState {
        health: health.clone(),
        keys: Arc::new(OnceLock::new()),
        gateway: Arc::new(Mutex::new(None)),
        audit_self_check: Arc::new(OnceLock::new()),
        audit_mirror: Arc::new(OnceLock::new()),
        audit_dir: Arc::new(OnceLock::new()),
        evidence: Arc::new(OnceLock::new()),
        rest: Arc::new(OnceLock::new()),
    };
    let app = Router::new()
        .route("/health", get(health_handler))
        .route("/health/ready", get(health_handler))
        .route("/health/live", get(live_handler))
        .route("/metrics", get(metrics_handler))
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{name}", get(key_status))
        .route("/v1/keys/{name}/rotate", post(rotate_key))
        .route("/v1/keys/{name}/retire", post(retire_key))
        .route("/v1/keys/{name}/destroy", post(destroy_key))
        .route("/v1/roles", get(list_roles).post(bind_role))
        .route("/v1/roles/unbind", post(unbind_role))
        .route("/v1/audit/status", get(audit::status))
        .route("/v1/audit/events", get(audit::events))
        .route("/v1/audit/evidence", get(audit::evidence))
        .merge(rest::routes())
        .merge(console::routes())
        .fallback(not_found)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local_addr = listener.local_addr()?;
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!(error = %e, "The admin listener stopped.");
        }
    });
    Ok(Admin {
        local_addr,
        health,
        keys: state.keys,
        gateway: state.gateway,
        audit_self_check: state.audit_self_check,
        audit_mirror: state.audit_mirror,
        audit_dir: state.audit_dir,
        evidence: state.evidence,
        rest: state.rest,
    })
}

// ---------------------------------------------------------------------------------------------
// /health and /metrics
// ---------------------------------------------------------------------------------------------

async fn health_handler(State(s): State<AdminState>) -> (StatusCode, Json<Value>) {
    let (ok, parts) = s.health.snapshot();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "status": if ok { "ok" } else { "unavailable" }, "parts": parts })),
    )
}

/// Liveness: the process answers (for an orchestrator's liveness probe; readiness is
/// `/health` and `/health/ready`, which answer 503 while a part starts or stops).
async fn live_handler() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// Escapes a Prometheus label value (backslash, double quote, line feed).
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The Prometheus text exposition of everything this node counts.
fn render_metrics(s: &AdminState) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "gatehouse_up",
        "gauge",
        "1 while the process serves.",
    );
    out.push_str("gatehouse_up 1\n");
    let snapshot = lock_slot(&s.gateway).as_ref().map(Gateway::metrics);
    if let Some(m) = snapshot {
        let scalars = [
            (
                "gatehouse_gateway_connections_accepted_total",
                "counter",
                "Client connections accepted by the gateway since start.",
                m.accepted,
            ),
            (
                "gatehouse_gateway_connections_active",
                "gauge",
                "Client connections open now.",
                m.active,
            ),
            (
                "gatehouse_gateway_authentications_total",
                "counter",
                "Successful client authentications.",
                m.authenticated,
            ),
            (
                "gatehouse_gateway_denials_total",
                "counter",
                "Authorization denials (one per denied resource).",
                m.denied,
            ),
        ];
        for (name, kind, help, v) in scalars {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {v}");
        }
        let name = "gatehouse_gateway_refusals_total";
        family(
            &mut out,
            name,
            "counter",
            "Connections or requests refused, by reason.",
        );
        for (reason, v) in &m.refused {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {v}", label(reason));
        }
        let name = "gatehouse_gateway_authentication_failures_total";
        family(
            &mut out,
            name,
            "counter",
            "Failed SASL authentications, by mechanism.",
        );
        for (mechanism, v) in &m.authentication_failures {
            let _ = writeln!(out, "{name}{{mechanism=\"{}\"}} {v}", label(mechanism));
        }
        let name = "gatehouse_gateway_requests_total";
        family(
            &mut out,
            name,
            "counter",
            "Authenticated client requests, by Kafka API.",
        );
        for (key, v) in &m.requests {
            let api = gatehouse_protocol::messages::ApiKey::try_from(*key)
                .map(|k| format!("{k:?}"))
                .unwrap_or_else(|_| key.to_string());
            let _ = writeln!(out, "{name}{{api=\"{}\"}} {v}", label(&api));
        }
        for (name, help, v) in [
            (
                "gatehouse_gateway_produce_bytes_total",
                "Bytes of Produce requests received from clients.",
                m.produce_bytes,
            ),
            (
                "gatehouse_gateway_fetch_bytes_total",
                "Bytes of Fetch responses sent to clients.",
                m.fetch_bytes,
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
        let name = "gatehouse_gateway_rejected_records_total";
        family(
            &mut out,
            name,
            "counter",
            "Records rejected by a topic's data policy, by topic.",
        );
        for (topic, v) in &m.rejected_records {
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {v}", label(topic));
        }
        metrics_render::gateway(&mut out, &m);
    }
    // Registry, broker and audit queue: process-wide, each once its part runs here.
    metrics_render::process(&mut out);
    if let Some(m) = s.audit_self_check.get() {
        let rows = [
            (
                "gatehouse_audit_self_check_failures_total",
                "counter",
                "Audit trail self-checks that failed (verification or liveness) since start.",
                m.failures_total(),
            ),
            (
                "gatehouse_audit_self_checks_total",
                "counter",
                "Audit trail self-checks run since start.",
                m.checks_total(),
            ),
            (
                "gatehouse_audit_last_verified_timestamp_seconds",
                "gauge",
                "Unix time of the last audit self-check that passed (0: none yet).",
                m.last_verified_timestamp_seconds(),
            ),
            (
                "gatehouse_audit_verified_events",
                "gauge",
                "Events in the audit trail at the last self-check that passed.",
                m.verified_events(),
            ),
            (
                "gatehouse_audit_self_check_healthy",
                "gauge",
                "1 if the last audit self-check passed, else 0.",
                m.healthy(),
            ),
        ];
        for (name, kind, help, v) in rows {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
    if let Some(m) = s.audit_mirror.get() {
        let rows = [
            (
                "gatehouse_audit_mirror_events_total",
                "Audit events shipped to _gatehouse_audit since start.",
                m.events_total(),
            ),
            (
                "gatehouse_audit_mirror_checkpoints_total",
                "Audit checkpoints shipped to _gatehouse_audit since start.",
                m.checkpoints_total(),
            ),
            (
                "gatehouse_audit_mirror_failures_total",
                "Failed attempts to ship the audit trail to _gatehouse_audit.",
                m.failures_total(),
            ),
        ];
        for (name, help, v) in rows {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
    if let Some(api) = s.keys.get() {
        let store = api.envelope.store();
        let mut states: BTreeMap<&'static str, u64> =
            [("active", 0), ("retired", 0), ("destroyed", 0)].into();
        for k in store.keks() {
            *states.entry(state_name(k.state)).or_default() += 1;
        }
        let name = "gatehouse_keys";
        family(
            &mut out,
            name,
            "gauge",
            "Key-encryption keys known to this node, by state.",
        );
        for (state, v) in states {
            let _ = writeln!(out, "{name}{{state=\"{state}\"}} {v}");
        }
        let name = "gatehouse_keys_rejected_records_total";
        family(
            &mut out,
            name,
            "counter",
            "_gatehouse_keys records skipped (missing or wrong MAC, or not applicable).",
        );
        let _ = writeln!(out, "{name} {}", store.rejected_records());
    }
    out
}

async fn metrics_handler(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        render_metrics(&s),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, 40400, "Not found")
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error_code": code, "message": message.into() })),
    )
        .into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, 40101, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"gatehouse\""),
    );
    r
}

/// How a vault failure is answered: (status, error code).
fn vault_status(e: &VaultError) -> (StatusCode, u32) {
    match e {
        VaultError::UnknownKek(_) => (StatusCode::NOT_FOUND, 40401),
        VaultError::KekExists(_) => (StatusCode::CONFLICT, 40901),
        VaultError::InvalidName(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
        VaultError::Kms(_) => (StatusCode::BAD_GATEWAY, 50201),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, 50002),
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication, authorization, audit
// ---------------------------------------------------------------------------------------------

/// An authenticated, authorized caller.
struct Caller {
    principal: Principal,
    ip: IpAddr,
    /// How it authenticated (`HTTP/BASIC`, `HTTP/BEARER`), for the audit events.
    mechanism: &'static str,
}

/// Records an event; `Err` with the reason when the sink failed (never carries secrets).
async fn record(api: &KeyApi, event: AuditEvent) -> Result<(), String> {
    match &api.audit {
        Some(sink) => sink.record(event).await.map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// Records a refusal; a failure is logged (the request stays refused).
async fn record_refusal(api: &KeyApi, event: AuditEvent) {
    if let Err(e) = record(api, event).await {
        tracing::error!(error = %e, "A refused admin request could not be recorded in the audit trail.");
    }
}

/// `User:name` from a Basic header, else `anonymous` (for the audit event).
fn refused_principal(user: Option<&str>) -> String {
    user.filter(|u| !u.is_empty())
        .map_or_else(|| "anonymous".to_string(), |u| format!("User:{u}"))
}

/// Authenticates (HTTP Basic) and authorizes `op` on `Cluster:kafka-cluster`; a refusal is
/// audited and returned as the response.
async fn guard<'a>(
    s: &'a AdminState,
    headers: &HeaderMap,
    peer: SocketAddr,
    op: Operation,
    method: &str,
    key: &str,
) -> Result<(&'a KeyApi, Caller), Response> {
    let Some(api) = s.keys.get() else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            50301,
            "The key API is not available: it runs under `gatehouse serve`, once the key vault is open",
        ));
    };
    let ip = peer.ip();
    // `POST /v1/keys` names the key in the body, read after the checks.
    let key = if key.is_empty() { "(unnamed)" } else { key };
    let auth_refused = |user: Option<&str>, mechanism: &str, reason: &str| {
        AuditEvent::builder(EventType::Authentication)
            .service(AUDIT_SERVICE)
            .method(method.to_string())
            .principal(refused_principal(user))
            .auth_mechanism(mechanism)
            .resource("Kek", key.to_string())
            .operation("Authenticate")
            .granted(false)
            .outcome(
                Outcome::denied()
                    .with_error_code("40101")
                    .with_message(reason.to_string()),
            )
            .client_address(ip.to_string())
            .attribute("httpStatus", "401")
            .build()
    };
    // A Bearer token (an OIDC access token, e.g. of a console SSO session) is checked by the
    // same validator as the REST API's; anything else must be Basic.
    if let Some(token) = bearer_token(headers) {
        let validator = s.rest.get().and_then(|r| r.tokens.as_ref());
        let checked = match validator {
            None => Err("Bearer tokens are not accepted: no OIDC issuer is configured".to_string()),
            Some(_) if token.is_empty() => Err("empty Bearer token".to_string()),
            Some(v) => v
                .validate(token)
                .await
                .map_err(|e| format!("invalid token: {e}")),
        };
        return match checked {
            Ok(t) => authorize_caller(
                api,
                t.principal,
                rest::MECHANISM_BEARER,
                ip,
                op,
                method,
                key,
            )
            .await
            .map(|caller| (api, caller)),
            Err(reason) => {
                match auth_refused(None, rest::MECHANISM_BEARER, &reason) {
                    Ok(e) => record_refusal(api, e).await,
                    Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
                }
                Err(unauthorized(&format!("Unauthorized: {reason}")))
            }
        };
    }
    let credentials = match basic_credentials(headers) {
        Ok(c) => c,
        Err(reason) => {
            match auth_refused(None, MECHANISM_BASIC, reason) {
                Ok(e) => record_refusal(api, e).await,
                Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
            }
            return Err(unauthorized(&format!("Unauthorized: {reason}")));
        }
    };
    let (user, password) = credentials;
    let principal = match api.authenticator.verify_plain(&user, &password, ip).await {
        Ok(p) => p,
        Err(e) => {
            match auth_refused(Some(&user), MECHANISM_BASIC, &e.to_string()) {
                Ok(ev) => record_refusal(api, ev).await,
                Err(err) => tracing::error!(error = %err, "cannot build the audit event"),
            }
            let message = match &e {
                AuthError::InvalidCredentials { .. } => {
                    "Unauthorized: invalid user name or password".to_string()
                }
                other => format!("Unauthorized: {}", other.client_message()),
            };
            return Err(unauthorized(&message));
        }
    };
    authorize_caller(api, principal, MECHANISM_BASIC, ip, op, method, key)
        .await
        .map(|caller| (api, caller))
}

/// The token of `Authorization: Bearer …`, if that is the scheme.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let text = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The cluster-level check of [`guard`] for an authenticated principal; a denial is audited.
async fn authorize_caller(
    api: &KeyApi,
    principal: Principal,
    mechanism: &'static str,
    ip: IpAddr,
    op: Operation,
    method: &str,
    key: &str,
) -> Result<Caller, Response> {
    let decision =
        api.authorizer
            .authorize(&principal, ip, ResourceType::Cluster, CLUSTER_NAME, op);
    if !decision.allowed {
        let event = AuditEvent::builder(EventType::Authorization)
            .service(AUDIT_SERVICE)
            .method(method.to_string())
            .principal(principal.to_string())
            .auth_mechanism(mechanism)
            .resource("Cluster", CLUSTER_NAME)
            .operation(op_label(op))
            .granted(false)
            .outcome(Outcome::denied().with_error_code("40301"))
            .matched_rule(
                decision
                    .matched
                    .unwrap_or_else(|| "no matching ALLOW (deny by default)".to_string()),
            )
            .client_address(ip.to_string())
            .attribute("httpStatus", "403")
            .attribute("kekName", key.to_string())
            .build();
        match event {
            Ok(e) => record_refusal(api, e).await,
            Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
        }
        return Err(error(
            StatusCode::FORBIDDEN,
            40301,
            format!(
                "User is denied operation {} on Cluster: {CLUSTER_NAME}",
                op_label(op)
            ),
        ));
    }
    Ok(Caller {
        principal,
        ip,
        mechanism,
    })
}

/// The audit trail's spelling of the two operations the API checks.
fn op_label(op: Operation) -> &'static str {
    match op {
        Operation::Alter => "Alter",
        Operation::Describe => "Describe",
        other => other.name(),
    }
}

/// `(user, password)` from `Authorization: Basic …`; the error is the (secret-free) reason.
fn basic_credentials(headers: &HeaderMap) -> Result<(String, String), &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or("HTTP Basic credentials are required")?;
    let text = value
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII")?;
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("unsupported authorization scheme (use Basic)");
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("malformed Basic credentials")?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or("malformed Basic credentials")?;
    Ok((user.to_string(), password.to_string()))
}

/// Records a change attempt (`io.gatehouse.key`) and returns `response`, or 500/50001 when
/// the event could not be recorded.
async fn audited_change(
    api: &KeyApi,
    caller: &Caller,
    operation: &str,
    name: &str,
    status: StatusCode,
    kek: Option<&Kek>,
    response: Response,
) -> Response {
    let mut outcome = if status.is_success() {
        Outcome::success()
    } else {
        Outcome::status("FAILURE")
    };
    if !status.is_success() {
        let code = error_code_of(&response).unwrap_or_else(|| status.as_u16().to_string());
        outcome = outcome.with_error_code(code);
    }
    let mut b = AuditEvent::builder(EventType::Key)
        .service(AUDIT_SERVICE)
        .method(format!("key.{}", operation.to_ascii_lowercase()))
        .principal(caller.principal.to_string())
        .auth_mechanism(caller.mechanism)
        .resource("Kek", if name.is_empty() { "(unnamed)" } else { name })
        .operation(operation.to_string())
        .granted(true)
        .outcome(outcome)
        .client_address(caller.ip.to_string())
        .attribute("httpStatus", status.as_u16().to_string());
    if let Some(k) = kek {
        b = b
            .attribute("kekId", k.id.as_str().to_string())
            .attribute("kekState", state_name(k.state));
        if let Some(v) = k.versions.last() {
            b = b.attribute("kekVersion", v.version.to_string());
        }
    }
    let recorded = match b.build() {
        Ok(event) => record(api, event).await,
        Err(e) => Err(format!("cannot build the audit event: {e}")),
    };
    if let Err(e) = recorded {
        tracing::error!(error = %e, operation, kek = name, "A key change could not be recorded in the audit trail.");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            "The request could not be recorded in the audit trail; it may have been applied.",
        );
    }
    response
}

/// The `error_code` a response was built with (kept as an extension by [`fail`]).
fn error_code_of(r: &Response) -> Option<String> {
    r.extensions().get::<ErrorCode>().map(|c| c.0.to_string())
}

#[derive(Clone, Copy)]
struct ErrorCode(u32);

/// An error response that remembers its code for the audit event.
fn fail(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    let mut r = error(status, code, message);
    r.extensions_mut().insert(ErrorCode(code));
    r
}

// ---------------------------------------------------------------------------------------------
// Key endpoints
// ---------------------------------------------------------------------------------------------

fn state_name(s: KekState) -> &'static str {
    match s {
        KekState::Active => "active",
        KekState::Retired => "retired",
        KekState::Destroyed => "destroyed",
    }
}

fn time(ms: i64) -> String {
    gatehouse_compliance::Timestamp::from_unix_micros(ms.saturating_mul(1000)).to_rfc3339()
}

/// A KEK as the API shows it: identifiers and lifecycle only, never material. `history` is
/// the rotation history: version 1 `created`, every later one `rotated`, with when and by whom
/// (the admin API's caller; `null` when the gateway made it or the record predates this).
fn kek_json(k: &Kek) -> Value {
    let history: Vec<Value> = k
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "version": v.version,
                "action": if i == 0 { "created" } else { "rotated" },
                "time": time(v.created_ms),
                "by": v.created_by,
            })
        })
        .collect();
    let rotated = (k.versions.len() > 1)
        .then(|| k.versions.last().map(|v| time(v.created_ms)))
        .flatten();
    json!({
        "name": k.name,
        "id": k.id.as_str(),
        "state": state_name(k.state),
        "kms": k.kms,
        "current_version": k.current().map(|v| v.version),
        "versions": k.versions.iter().map(|v| json!({
            "version": v.version,
            "kms_key": v.kms_ref.as_str(),
            "created_ms": v.created_ms,
            "created": time(v.created_ms),
            "created_by": v.created_by,
            "destroyed": v.destroyed,
        })).collect::<Vec<_>>(),
        "created_ms": k.created_ms,
        "created": time(k.created_ms),
        "rotated": rotated,
        "history": history,
    })
}

/// The KEK `name` shows as: the active or newest non-destroyed one, else the newest destroyed.
fn find_kek(api: &KeyApi, name: &str) -> Option<Kek> {
    let store = api.envelope.store();
    store.kek(name).or_else(|| {
        store
            .keks()
            .into_iter()
            .filter(|k| k.name == name)
            .max_by_key(|k| k.created_ms)
    })
}

async fn sync(api: &KeyApi) {
    if let Err(e) = api.envelope.store().sync().await {
        tracing::warn!(error = %e, "The key vault could not read _gatehouse_keys; answering from memory.");
    }
}

async fn list_keys(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (api, _caller) = match guard(&s, &headers, peer, Operation::Describe, "key.list", "*").await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    sync(api).await;
    let keys: Vec<Value> = api.envelope.store().keks().iter().map(kek_json).collect();
    Json(json!({ "keys": keys })).into_response()
}

async fn key_status(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (api, _caller) =
        match guard(&s, &headers, peer, Operation::Describe, "key.status", &name).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    sync(api).await;
    let Some(kek) = find_kek(api, &name) else {
        return error(
            StatusCode::NOT_FOUND,
            40401,
            format!("No key named {name:?}"),
        );
    };
    let mut v = kek_json(&kek);
    let previous: Vec<Value> = api
        .envelope
        .store()
        .keks()
        .into_iter()
        .filter(|k| k.name == name && k.id != kek.id)
        .map(|k| json!({ "id": k.id.as_str(), "state": state_name(k.state), "created_ms": k.created_ms }))
        .collect();
    v["previous"] = Value::Array(previous);
    Json(v).into_response()
}

/// The JSON body of a change request (`{}` when empty).
fn body_json(body: &Bytes) -> Result<Value, Box<Response>> {
    if body.len() > MAX_BODY {
        return Err(Box::new(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            41301,
            "The request body is too large",
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(Box::new(fail(
            StatusCode::BAD_REQUEST,
            40001,
            "The request body is not a JSON object",
        ))),
    }
}

/// Which change a POST makes.
#[derive(Clone, Copy)]
enum Change {
    Create,
    Rotate,
    Retire,
    Destroy,
}

impl Change {
    fn operation(self) -> &'static str {
        match self {
            Change::Create => "Create",
            Change::Rotate => "Rotate",
            Change::Retire => "Retire",
            Change::Destroy => "Destroy",
        }
    }
}

async fn change(
    s: AdminState,
    peer: SocketAddr,
    headers: HeaderMap,
    name: Option<String>,
    body: Bytes,
    what: Change,
) -> Response {
    let op = what.operation();
    let method = format!("key.{}", op.to_ascii_lowercase());
    let label = name.clone().unwrap_or_default();
    let (api, caller) = match guard(&s, &headers, peer, Operation::Alter, &method, &label).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let parsed = match body_json(&body) {
        Ok(v) => v,
        Err(r) => {
            let status = r.status();
            return audited_change(api, &caller, op, &label, status, None, *r).await;
        }
    };
    // Create names the key in the body; the others in the path.
    let name = match name {
        Some(n) => n,
        None => match parsed.get("name").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => {
                let r = fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42202,
                    "The body must be {\"name\": \"<topic or prefix*>\"}",
                );
                return audited_change(api, &caller, op, "", r.status(), None, r).await;
            }
        },
    };
    if matches!(what, Change::Destroy) {
        let confirm = parsed.get("confirm").and_then(Value::as_str);
        if confirm != Some(name.as_str()) {
            let r = fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                42203,
                format!(
                    "Destroying a key shreds every record encrypted under it: confirm with {{\"confirm\": {name:?}}}"
                ),
            );
            return audited_change(api, &caller, op, &name, r.status(), None, r).await;
        }
    }
    let store = api.envelope.store();
    let by = caller.principal.to_string();
    let result = match what {
        Change::Create => store.create_kek_by(&name, Some(&by)).await,
        Change::Rotate => store.rotate_kek_by(&name, Some(&by)).await,
        Change::Retire => store.retire_kek(&name).await,
        Change::Destroy => store.destroy_kek(&name).await,
    };
    match result {
        Ok(kek) => {
            let status = if matches!(what, Change::Create) {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            tracing::info!(
                operation = op,
                kek = %name,
                kek_id = %kek.id,
                principal = %caller.principal,
                "Key changed through the admin API."
            );
            let r = (status, Json(kek_json(&kek))).into_response();
            audited_change(api, &caller, op, &name, status, Some(&kek), r).await
        }
        Err(e) => {
            let (status, code) = vault_status(&e);
            if status.is_server_error() {
                tracing::error!(error = %e, operation = op, kek = %name, "A key change failed.");
            }
            let r = fail(status, code, e.to_string());
            audited_change(api, &caller, op, &name, status, None, r).await
        }
    }
}

async fn create_key(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(s, peer, headers, None, body, Change::Create).await
}

async fn rotate_key(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(s, peer, headers, Some(name), body, Change::Rotate).await
}

async fn retire_key(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(s, peer, headers, Some(name), body, Change::Retire).await
}

async fn destroy_key(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(s, peer, headers, Some(name), body, Change::Destroy).await
}

// ---------------------------------------------------------------------------------------------
// Role bindings (RBAC on top of ACLs): the only way to grant roles such as `plaintext-reader`
// ---------------------------------------------------------------------------------------------

fn role_json(b: &gatehouse_policy::RoleBinding) -> Value {
    json!({
        "principal": b.principal,
        "role": b.role,
        "resource_type": b.resource_type.name(),
        "resource_name": b.resource_name,
        "pattern_type": b.pattern_type.name(),
    })
}

fn role_from_json(v: &Value) -> Result<gatehouse_policy::RoleBinding, String> {
    use gatehouse_policy::{PatternType, ResourceType};
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("missing string field {k:?}"))
    };
    let resource_type = match s("resource_type")?.to_ascii_lowercase().as_str() {
        "topic" => ResourceType::Topic,
        "group" => ResourceType::Group,
        "cluster" => ResourceType::Cluster,
        "transactional_id" | "transactional-id" => ResourceType::TransactionalId,
        "subject" => ResourceType::Subject,
        other => return Err(format!("unknown resource_type {other:?}")),
    };
    let pattern_type = match v
        .get("pattern_type")
        .and_then(Value::as_str)
        .unwrap_or("literal")
        .to_ascii_lowercase()
        .as_str()
    {
        "literal" => PatternType::Literal,
        "prefixed" => PatternType::Prefixed,
        other => return Err(format!("unknown pattern_type {other:?}")),
    };
    Ok(gatehouse_policy::RoleBinding {
        principal: s("principal")?,
        role: s("role")?,
        resource_type,
        resource_name: s("resource_name")?,
        pattern_type,
    })
}

async fn list_roles(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (api, _caller) =
        match guard(&s, &headers, peer, Operation::Describe, "role.list", "*").await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let Some(store) = &api.roles else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            50302,
            "Role bindings are not available",
        );
    };
    let roles: Vec<Value> = store
        .authorizer()
        .role_bindings()
        .iter()
        .map(role_json)
        .collect();
    Json(json!({ "roles": roles, "known_roles": gatehouse_policy::acl::ROLES })).into_response()
}

async fn bind_role(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    role_change(s, peer, headers, body, true).await
}

async fn unbind_role(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    role_change(s, peer, headers, body, false).await
}

async fn role_change(
    s: AdminState,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Bytes,
    bind: bool,
) -> Response {
    let method = if bind { "role.bind" } else { "role.unbind" };
    let (api, caller) = match guard(&s, &headers, peer, Operation::Alter, method, "role").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(store) = &api.roles else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            50302,
            "Role bindings are not available",
        );
    };
    let parsed = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let binding = match role_from_json(&parsed) {
        Ok(b) => b,
        Err(m) => return fail(StatusCode::UNPROCESSABLE_ENTITY, 42204, m),
    };
    let result = if bind {
        store.bind_role(binding.clone()).await.map(|()| true)
    } else {
        store.unbind_role(&binding).await
    };
    let (status, response) = match result {
        Ok(true) => (StatusCode::OK, Json(role_json(&binding)).into_response()),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            fail(StatusCode::NOT_FOUND, 40402, "No such role binding"),
        ),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            fail(StatusCode::UNPROCESSABLE_ENTITY, 42205, e.to_string()),
        ),
    };
    let event = AuditEvent::builder(EventType::Acl)
        .service(AUDIT_SERVICE)
        .method(method)
        .principal(caller.principal.to_string())
        .auth_mechanism(caller.mechanism)
        .resource(
            binding.resource_type.name(),
            format!(
                "{} -> {} on {}",
                binding.principal, binding.role, binding.resource_name
            ),
        )
        .operation(if bind { "Bind" } else { "Unbind" })
        .client_address(caller.ip.to_string())
        .granted(true)
        .outcome(if status.is_success() {
            Outcome::success()
        } else {
            Outcome::status("FAILURE").with_error_code(status.as_u16().to_string())
        })
        .build();
    match event {
        Ok(e) => {
            if let Err(why) = record(api, e).await {
                tracing::error!(error = %why, "A role change could not be audited.");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    50001,
                    "The request could not be recorded in the audit trail; it may have been applied.",
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn basic_credentials_parse() {
        let mut h = HeaderMap::new();
        assert!(basic_credentials(&h).is_err());
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:pw:with:colons");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).expect("header"),
        );
        assert_eq!(
            basic_credentials(&h),
            Ok(("alice".to_string(), "pw:with:colons".to_string()))
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(basic_credentials(&h).is_err());
    }

    #[test]
    fn audit_self_check_and_mirror_metrics_are_rendered() {
        let s = AdminState {
            health: Health::new(vec![]),
            keys: Arc::new(OnceLock::new()),
            gateway: Arc::new(Mutex::new(None)),
            audit_self_check: Arc::new(OnceLock::new()),
            audit_mirror: Arc::new(OnceLock::new()),
            audit_dir: Arc::new(OnceLock::new()),
            evidence: Arc::new(OnceLock::new()),
            rest: Arc::new(OnceLock::new()),
        };
        assert!(!render_metrics(&s).contains("gatehouse_audit_"));
        let _ = s.audit_self_check.set(Arc::default());
        let _ = s.audit_mirror.set(Arc::default());
        let text = render_metrics(&s);
        for line in [
            "gatehouse_audit_self_check_failures_total 0",
            "gatehouse_audit_last_verified_timestamp_seconds 0",
            "gatehouse_audit_verified_events 0",
            "# TYPE gatehouse_audit_self_check_failures_total counter",
            "gatehouse_audit_mirror_failures_total 0",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }

    #[test]
    fn metrics_without_parts_say_up() {
        let s = AdminState {
            health: Health::new(vec![]),
            keys: Arc::new(OnceLock::new()),
            gateway: Arc::new(Mutex::new(None)),
            audit_self_check: Arc::new(OnceLock::new()),
            audit_mirror: Arc::new(OnceLock::new()),
            audit_dir: Arc::new(OnceLock::new()),
            evidence: Arc::new(OnceLock::new()),
            rest: Arc::new(OnceLock::new()),
        };
        let text = render_metrics(&s);
        assert!(text.contains("\ngatehouse_up 1\n"), "{text}");
        assert!(text.contains("# TYPE gatehouse_up gauge"));
    }
}
