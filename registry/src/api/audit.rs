//! The registry's audit hook: every state-changing REST request is recorded through an
//! [`AuditSink`] after it has been handled, successful or not, and the HTTP response is held
//! back until the sink confirms the event is durable.
//!
//! [`router_with_audit`] wraps [`super::router`] in a route layer that classifies requests by
//! HTTP method and matched route:
//!
//! | request | `method` | `operation` |
//! |---|---|---|
//! | `POST /subjects/{s}/versions` | `schema.register` | `Write` |
//! | `DELETE /subjects/{s}/versions/{v}` | `schema.delete` | `Delete` |
//! | `DELETE /subjects/{s}` | `subject.delete` | `Delete` |
//! | `PUT /config`, `PUT /config/{s}` | `config.update` | `AlterConfigs` |
//! | `DELETE /config`, `DELETE /config/{s}` | `config.delete` | `AlterConfigs` |
//! | `PUT /mode`, `PUT /mode/{s}` | `mode.update` | `AlterConfigs` |
//! | `DELETE /mode`, `DELETE /mode/{s}` | `mode.delete` | `AlterConfigs` |
//!
//! Reads (including lookups and compatibility checks, which are `POST`s) are not audited.
//! The resource is `Subject:{name}`, or `Registry:global` for the global config and mode.
//! The outcome is `SUCCESS` or `FAILURE` with the HTTP status in the `httpStatus` attribute and
//! Confluent's `error_code` as the outcome's error code. Error messages are not recorded (they
//! can quote schema text). The principal and `authMechanism` are the authenticated
//! [`Caller`] (`User:alice`, `HTTP/BASIC` or `HTTP/BEARER`); without authentication
//! ([`super::router_with_audit`] alone) the principal is `anonymous`. The client address comes
//! from axum's `ConnectInfo<SocketAddr>` when the router is served with it
//! ([`axum::Router::into_make_service_with_connect_info`]).
//!
//! Besides state changes, the layer records refusals of any request, read or write:
//!
//! * an authorization denial (403/40301, a [`Denied`] response extension) as an
//!   `io.gatehouse.authorization` event, `granted: false`, outcome `DENIED` with error code
//!   `40301`, the refused operation and resource, and the deciding DENY rule when there is one;
//! * refused credentials (401/40101 with an [`AuthFailed`] extension: a wrong password, a bad
//!   token; not a request without credentials) as an `io.gatehouse.authentication` event with
//!   the Basic user name (never the password or the token).
//!
//! If the sink fails, the change may already be applied but cannot be acknowledged: the
//! client gets 500 with error code 50001 and the failure is logged. A refusal that cannot be
//! recorded is still refused; the failure is logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use gatehouse_compliance::{AuditEvent, AuditLog, EventType, Outcome};
use serde_json::{Value, json};
use tracing::error;

use super::auth::{AuthFailed, Caller, Denied, operation_label};
use super::{CONTENT_TYPE, SchemaStore, router};

/// The `service` field of registry audit events.
pub const AUDIT_SERVICE: &str = "registry";
/// The principal recorded when the registry runs without authentication.
pub const ANONYMOUS: &str = "anonymous";

/// Why an audit event could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("audit trail: {0}")]
pub struct AuditSinkError(pub String);

/// Where the registry sends its audit events. `record` resolves once the event is durable
/// (for the node's audit log: after the covering fsync).
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event; `Ok` means it is durable.
    async fn record(&self, event: AuditEvent) -> Result<(), AuditSinkError>;
}

/// The node's audit log is a sink: `record` is [`AuditLog::append`], durable once it resolves.
#[async_trait::async_trait]
impl AuditSink for AuditLog {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditSinkError> {
        self.append(event)
            .await
            .map(|_| ())
            .map_err(|e| AuditSinkError(e.to_string()))
    }
}

/// The REST router over `store` with every state-changing request audited through `sink`.
pub fn router_with_audit(store: Arc<dyn SchemaStore>, sink: Arc<dyn AuditSink>) -> Router {
    with_audit(router(store), sink)
}

/// Adds the audit layer to `router` (outermost: it sees the [`Caller`], [`Denied`] and
/// [`AuthFailed`] extensions the auth layer leaves on responses).
pub(crate) fn with_audit(router: Router, sink: Arc<dyn AuditSink>) -> Router {
    router.route_layer(middleware::from_fn_with_state(sink, audit_layer))
}

/// What an audited request is: the event's `method` and `operation`.
fn classify(method: &Method, route: &str) -> Option<(&'static str, &'static str)> {
    let m = if *method == Method::POST {
        "POST"
    } else if *method == Method::PUT {
        "PUT"
    } else if *method == Method::DELETE {
        "DELETE"
    } else {
        return None;
    };
    Some(match (m, route) {
        ("POST", "/subjects/{subject}/versions") => ("schema.register", "Write"),
        ("DELETE", "/subjects/{subject}/versions/{version}") => ("schema.delete", "Delete"),
        ("DELETE", "/subjects/{subject}") => ("subject.delete", "Delete"),
        ("PUT", "/config" | "/config/{subject}") => ("config.update", "AlterConfigs"),
        ("DELETE", "/config" | "/config/{subject}") => ("config.delete", "AlterConfigs"),
        ("PUT", "/mode" | "/mode/{subject}") => ("mode.update", "AlterConfigs"),
        ("DELETE", "/mode" | "/mode/{subject}") => ("mode.delete", "AlterConfigs"),
        _ => return None,
    })
}

async fn audit_layer(
    State(sink): State<Arc<dyn AuditSink>>,
    request: Request,
    next: Next,
) -> Response {
    // Reads (most requests) are audited only when refused: nothing is copied for them
    // before the handler runs.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let classified = route
        .as_ref()
        .and_then(|r| classify(request.method(), r.as_str()));
    let http_method = request.method().clone();
    let client_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let permanent = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.eq_ignore_ascii_case("permanent=true"))
    });
    let (response, params) = if classified.is_some() {
        let (mut parts, body) = request.into_parts();
        let params = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
            .await
            .map(|Path(p)| p)
            .unwrap_or_default();
        (next.run(Request::from_parts(parts, body)).await, params)
    } else {
        (next.run(request).await, HashMap::new())
    };
    let client = || client_addr.map(|c| c.to_string());
    let route = route.as_ref().map(MatchedPath::as_str);
    let method_name = || match classified {
        Some((m, _)) => m.to_string(),
        None => format!("{http_method} {}", route.unwrap_or("?")),
    };

    if let Some(failed) = response.extensions().get::<AuthFailed>() {
        let event = auth_failure_event(failed, method_name(), client().as_deref());
        record_refusal(&*sink, event).await;
        return response;
    }
    if let Some(denied) = response.extensions().get::<Denied>() {
        let caller = response.extensions().get::<Caller>();
        let event = denial_event(denied, caller, method_name(), client().as_deref());
        record_refusal(&*sink, event).await;
        return response;
    }
    let Some((method, operation)) = classified else {
        return response;
    };
    let caller = response.extensions().get::<Caller>().cloned();
    let client = client();

    // Buffer the (small, in-memory) JSON answer to read the error code or the new state.
    let (head, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, method, "registry response body could not be read for the audit trail");
            return audit_failed();
        }
    };
    let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let status = head.status;

    let (rtype, rname) = match params.get("subject") {
        Some(s) => ("Subject", s.clone()),
        None => ("Registry", "global".to_owned()),
    };
    let mut outcome = if status.is_success() {
        Outcome::success()
    } else {
        Outcome::status("FAILURE")
    };
    if !status.is_success() {
        let code = parsed
            .get("error_code")
            .and_then(Value::as_u64)
            .map_or_else(|| status.as_u16().to_string(), |c| c.to_string());
        outcome = outcome.with_error_code(code);
    }
    let principal = caller
        .as_ref()
        .map_or_else(|| ANONYMOUS.to_string(), |c| c.principal.to_string());
    let mut b = AuditEvent::builder(EventType::Schema)
        .service(AUDIT_SERVICE)
        .method(method)
        .principal(principal)
        .resource(rtype, rname)
        .operation(operation)
        .granted(true)
        .outcome(outcome)
        .attribute("httpStatus", status.as_u16().to_string());
    if let Some(c) = &caller {
        b = b.auth_mechanism(c.mechanism);
    }
    if let Some(c) = client {
        b = b.client_address(c);
    }
    if let Some(v) = params.get("version") {
        b = b.attribute("version", v.clone());
    }
    if permanent {
        b = b.attribute("permanent", "true");
    }
    if status.is_success() {
        if let Some(id) = parsed.get("id").and_then(Value::as_i64) {
            b = b.attribute("schemaId", id.to_string());
        }
        if let Some(c) = parsed.get("compatibility").and_then(Value::as_str) {
            b = b.attribute("compatibility", c);
        }
        if let Some(m) = parsed.get("mode").and_then(Value::as_str) {
            b = b.attribute("mode", m);
        }
        if let Some(vs) = parsed.as_array() {
            let list: Vec<String> = vs.iter().map(Value::to_string).collect();
            b = b.attribute("versions", list.join(","));
        }
    }
    let recorded = match b.build() {
        Ok(event) => sink.record(event).await,
        Err(e) => Err(AuditSinkError(format!("cannot build the audit event: {e}"))),
    };
    if let Err(e) = recorded {
        error!(error = %e, method, "a registry change could not be recorded in the audit trail");
        return audit_failed();
    }
    Response::from_parts(head, Body::from(bytes))
}

/// An `io.gatehouse.authorization` event for a 403.
fn denial_event(
    d: &Denied,
    caller: Option<&Caller>,
    method: String,
    client: Option<&str>,
) -> Result<AuditEvent, AuditSinkError> {
    let principal = caller.map_or_else(|| ANONYMOUS.to_string(), |c| c.principal.to_string());
    let mut b = AuditEvent::builder(EventType::Authorization)
        .service(AUDIT_SERVICE)
        .method(method)
        .principal(principal)
        .resource(d.resource_type.name(), d.name.clone())
        .operation(operation_label(d.operation))
        .granted(false)
        .outcome(Outcome::denied().with_error_code("40301"))
        .attribute("httpStatus", "403");
    if let Some(c) = caller {
        b = b.auth_mechanism(c.mechanism);
    }
    b = b.matched_rule(
        d.matched
            .clone()
            .unwrap_or_else(|| "no matching ALLOW (deny by default)".to_string()),
    );
    if let Some(c) = client {
        b = b.client_address(c);
    }
    b.build()
        .map_err(|e| AuditSinkError(format!("cannot build the audit event: {e}")))
}

/// An `io.gatehouse.authentication` event for refused credentials.
fn auth_failure_event(
    f: &AuthFailed,
    method: String,
    client: Option<&str>,
) -> Result<AuditEvent, AuditSinkError> {
    let principal = f
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .map_or_else(|| ANONYMOUS.to_string(), |u| format!("User:{u}"));
    let mut b = AuditEvent::builder(EventType::Authentication)
        .service(AUDIT_SERVICE)
        .method(method)
        .principal(principal)
        .auth_mechanism(f.mechanism)
        .resource("Registry", "global")
        .operation("Authenticate")
        .granted(false)
        .outcome(
            Outcome::denied()
                .with_error_code("40101")
                .with_message(f.reason.clone()),
        )
        .attribute("httpStatus", "401");
    if let Some(c) = client {
        b = b.client_address(c);
    }
    b.build()
        .map_err(|e| AuditSinkError(format!("cannot build the audit event: {e}")))
}

/// Records a refusal; a failure is logged (the request stays refused).
async fn record_refusal(sink: &dyn AuditSink, event: Result<AuditEvent, AuditSinkError>) {
    let recorded = match event {
        Ok(e) => sink.record(e).await,
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        error!(error = %e, "a refused registry request could not be recorded in the audit trail");
    }
}

fn audit_failed() -> Response {
    let body = json!({
        "error_code": 50001,
        "message": "The request could not be recorded in the audit trail; it may have been applied."
    })
    .to_string();
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MemoryStore;
    use std::sync::Mutex;
    use tower::ServiceExt;

    #[derive(Default)]
    struct Collect(Mutex<Vec<AuditEvent>>);

    #[async_trait::async_trait]
    impl AuditSink for Collect {
        async fn record(&self, event: AuditEvent) -> Result<(), AuditSinkError> {
            self.0.lock().unwrap().push(event);
            Ok(())
        }
    }

    struct Broken;

    #[async_trait::async_trait]
    impl AuditSink for Broken {
        async fn record(&self, _event: AuditEvent) -> Result<(), AuditSinkError> {
            Err(AuditSinkError("disk on fire".into()))
        }
    }

    async fn call(app: &Router, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn json_of(e: &AuditEvent) -> Value {
        serde_json::from_slice(&e.to_canonical_json()).unwrap()
    }

    const V1: &str = r#"{"type":"record","name":"U","fields":[{"name":"id","type":"long"}]}"#;
    const BAD: &str = r#"{"type":"record","name":"U","fields":[{"name":"id","type":"long"},{"name":"x","type":"int"}]}"#;

    #[tokio::test]
    async fn writes_are_audited_reads_are_not() {
        let sink = Arc::new(Collect::default());
        let app = router_with_audit(Arc::new(MemoryStore::new()), sink.clone());
        let (s, b) = call(
            &app,
            "POST",
            "/subjects/orders-value/versions",
            Some(json!({"schema": V1})),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let (s, _) = call(
            &app,
            "POST",
            "/subjects/orders-value/versions",
            Some(json!({"schema": BAD})),
        )
        .await;
        assert_eq!(s, 409);
        let (s, _) = call(&app, "GET", "/subjects", None).await;
        assert_eq!(s, 200);
        let (s, _) = call(
            &app,
            "POST",
            "/subjects/orders-value",
            Some(json!({"schema": V1})),
        )
        .await;
        assert_eq!(s, 200);
        let (s, _) = call(
            &app,
            "PUT",
            "/config",
            Some(json!({"compatibility": "FULL"})),
        )
        .await;
        assert_eq!(s, 200);
        let (s, _) = call(
            &app,
            "PUT",
            "/mode/orders-value",
            Some(json!({"mode": "NOPE"})),
        )
        .await;
        assert_eq!(s, 422);
        let (s, _) = call(&app, "DELETE", "/subjects/orders-value", None).await;
        assert_eq!(s, 200);
        let (s, _) = call(&app, "DELETE", "/subjects/missing", None).await;
        assert_eq!(s, 404);

        let events: Vec<Value> = sink.0.lock().unwrap().iter().map(json_of).collect();
        let summary: Vec<(String, String, String, Option<String>)> = events
            .iter()
            .map(|e| {
                let d = &e["data"];
                (
                    d["method"].as_str().unwrap().to_owned(),
                    format!(
                        "{}:{}",
                        d["resource"]["type"].as_str().unwrap(),
                        d["resource"]["name"].as_str().unwrap()
                    ),
                    d["outcome"]["status"].as_str().unwrap().to_owned(),
                    d["outcome"]["errorCode"].as_str().map(str::to_owned),
                )
            })
            .collect();
        let s = |a: &str, b: &str, c: &str, d: Option<&str>| {
            (
                a.to_owned(),
                b.to_owned(),
                c.to_owned(),
                d.map(str::to_owned),
            )
        };
        assert_eq!(
            summary,
            vec![
                s("schema.register", "Subject:orders-value", "SUCCESS", None),
                s(
                    "schema.register",
                    "Subject:orders-value",
                    "FAILURE",
                    Some("40901")
                ),
                s("config.update", "Registry:global", "SUCCESS", None),
                s(
                    "mode.update",
                    "Subject:orders-value",
                    "FAILURE",
                    Some("42204")
                ),
                s("subject.delete", "Subject:orders-value", "SUCCESS", None),
                s(
                    "subject.delete",
                    "Subject:missing",
                    "FAILURE",
                    Some("40401")
                ),
            ]
        );
        let first = &events[0]["data"];
        assert_eq!(first["principal"], "anonymous");
        assert_eq!(first["granted"], true);
        assert_eq!(first["service"], "registry");
        assert_eq!(first["attributes"]["schemaId"], "1");
        assert_eq!(events[2]["data"]["attributes"]["compatibility"], "FULL");
        assert_eq!(events[4]["data"]["attributes"]["versions"], "1");
        assert_eq!(events[1]["type"], "io.gatehouse.schema");
        // Served without ConnectInfo: no client address.
        assert!(first.get("clientAddress").is_none());
    }

    #[tokio::test]
    async fn a_failing_sink_fails_the_request() {
        let app = router_with_audit(Arc::new(MemoryStore::new()), Arc::new(Broken));
        let (s, b) = call(
            &app,
            "POST",
            "/subjects/a/versions",
            Some(json!({"schema": V1})),
        )
        .await;
        assert_eq!(s, 500);
        assert_eq!(b["error_code"], 50001);
        // Reads still work.
        let (s, _) = call(&app, "GET", "/subjects", None).await;
        assert_eq!(s, 200);
    }

    mod secured {
        use super::*;
        use crate::api::{RegistryAuth, secured_router};
        use base64::Engine;
        use gatehouse_policy::{
            AclBinding, Authenticator, AuthenticatorConfig, Authorizer, Mechanism, Operation,
            PatternType, Permission, Principal, ResourceType, ScramCredential, UserStore,
        };

        fn app(sink: Arc<Collect>) -> Router {
            let users = UserStore::new();
            for (u, p) in [("admin", "admin-pw"), ("alice", "alice-pw")] {
                let c = ScramCredential::from_password(Mechanism::ScramSha256, p, 4096).unwrap();
                users.upsert(u, c).unwrap();
            }
            let authorizer = Authorizer::new(vec![Principal::user("admin")]).unwrap();
            let results = authorizer.create_acls(vec![AclBinding {
                principal: "User:alice".into(),
                host: "*".into(),
                resource_type: ResourceType::Subject,
                resource_name: "orders-value".into(),
                pattern_type: PatternType::Literal,
                operation: Operation::Read,
                permission: Permission::Allow,
            }]);
            assert!(results.iter().all(Result::is_ok));
            let auth = RegistryAuth {
                authenticator: Authenticator::new(AuthenticatorConfig::default(), users, None),
                authorizer,
                tokens: None,
            };
            secured_router(Arc::new(MemoryStore::new()), Some(auth), Some(sink))
        }

        async fn call_as(
            app: &Router,
            auth: Option<&str>,
            method: &str,
            path: &str,
            body: Option<Value>,
        ) -> (u16, Value, Option<String>) {
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let req = req
                .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                challenge,
            )
        }

        fn basic(user: &str, pw: &str) -> String {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
            )
        }

        #[tokio::test]
        async fn authentication_acls_filtering_and_audit() {
            let sink = Arc::new(Collect::default());
            let app = app(sink.clone());
            let admin = basic("admin", "admin-pw");
            let alice = basic("alice", "alice-pw");

            // `/` stays open; everything else needs credentials.
            let (s, _, _) = call_as(&app, None, "GET", "/", None).await;
            assert_eq!(s, 200);
            let (s, b, ch) = call_as(&app, None, "GET", "/subjects", None).await;
            assert_eq!((s, b["error_code"].as_u64()), (401, Some(40101)));
            assert_eq!(ch.as_deref(), Some("Basic realm=\"gatehouse\""));
            let wrong = basic("alice", "nope");
            let (s, b, _) = call_as(&app, Some(&wrong), "GET", "/subjects", None).await;
            assert_eq!((s, b["error_code"].as_u64()), (401, Some(40101)));
            let (s, _, _) = call_as(&app, Some("Bearer abc"), "GET", "/subjects", None).await;
            assert_eq!(s, 401);

            for subject in ["orders-value", "payments-value"] {
                let (s, b, _) = call_as(
                    &app,
                    Some(&admin),
                    "POST",
                    &format!("/subjects/{subject}/versions"),
                    Some(json!({"schema": V1})),
                )
                .await;
                assert_eq!(s, 200, "{b}");
            }
            let (s, b, _) = call_as(&app, Some(&alice), "GET", "/subjects", None).await;
            assert_eq!((s, b), (200, json!(["orders-value"])));
            let (s, b, _) = call_as(&app, Some(&admin), "GET", "/subjects", None).await;
            assert_eq!(s, 200);
            assert_eq!(b.as_array().map(Vec::len), Some(2));
            let (s, b, _) = call_as(&app, Some(&alice), "GET", "/schemas", None).await;
            assert_eq!(s, 200);
            assert_eq!(b.as_array().map(Vec::len), Some(1), "{b}");
            let (s, _, _) = call_as(
                &app,
                Some(&alice),
                "GET",
                "/subjects/orders-value/versions/latest",
                None,
            )
            .await;
            assert_eq!(s, 200);
            let (s, _, _) = call_as(&app, Some(&alice), "GET", "/schemas/ids/1", None).await;
            assert_eq!(s, 200);
            let (s, b, _) = call_as(
                &app,
                Some(&alice),
                "GET",
                "/subjects/payments-value/versions/latest",
                None,
            )
            .await;
            assert_eq!((s, b["error_code"].as_u64()), (403, Some(40301)));
            assert_eq!(
                b["message"],
                "User is denied operation Read on Subject: payments-value"
            );
            let (s, b, _) = call_as(
                &app,
                Some(&alice),
                "POST",
                "/subjects/orders-value/versions",
                Some(json!({"schema": V1})),
            )
            .await;
            assert_eq!((s, b["error_code"].as_u64()), (403, Some(40301)));
            assert_eq!(
                b["message"],
                "User is denied operation Write on Subject: orders-value"
            );
            let (s, b, _) = call_as(
                &app,
                Some(&alice),
                "PUT",
                "/config",
                Some(json!({"compatibility": "NONE"})),
            )
            .await;
            assert_eq!((s, b["error_code"].as_u64()), (403, Some(40301)));
            assert_eq!(
                b["message"],
                "User is denied operation AlterConfigs on Cluster: kafka-cluster"
            );
            let (s, b, _) = call_as(
                &app,
                Some(&alice),
                "POST",
                "/compatibility/subjects/orders-value/versions/latest",
                Some(json!({"schema": V1})),
            )
            .await;
            assert_eq!(s, 200, "{b}");

            let events: Vec<Value> = sink.0.lock().unwrap().iter().map(json_of).collect();
            let summary: Vec<(String, String, String, bool)> = events
                .iter()
                .map(|e| {
                    let d = &e["data"];
                    (
                        e["type"].as_str().unwrap().to_owned(),
                        d["principal"].as_str().unwrap().to_owned(),
                        format!(
                            "{} {}:{}",
                            d["operation"].as_str().unwrap(),
                            d["resource"]["type"].as_str().unwrap(),
                            d["resource"]["name"].as_str().unwrap()
                        ),
                        d["granted"].as_bool().unwrap(),
                    )
                })
                .collect();
            let e = |t: &str, p: &str, r: &str, g: bool| {
                (format!("io.gatehouse.{t}"), p.to_owned(), r.to_owned(), g)
            };
            assert_eq!(
                summary,
                vec![
                    e(
                        "authentication",
                        "User:alice",
                        "Authenticate Registry:global",
                        false
                    ),
                    e(
                        "authentication",
                        "anonymous",
                        "Authenticate Registry:global",
                        false
                    ),
                    e("schema", "User:admin", "Write Subject:orders-value", true),
                    e("schema", "User:admin", "Write Subject:payments-value", true),
                    e(
                        "authorization",
                        "User:alice",
                        "Read Subject:payments-value",
                        false
                    ),
                    e(
                        "authorization",
                        "User:alice",
                        "Write Subject:orders-value",
                        false
                    ),
                    e(
                        "authorization",
                        "User:alice",
                        "AlterConfigs Cluster:kafka-cluster",
                        false
                    ),
                ]
            );
            assert_eq!(events[2]["data"]["authMechanism"], "HTTP/BASIC");
            assert_eq!(events[5]["data"]["method"], "schema.register");
            assert_eq!(events[5]["data"]["outcome"]["errorCode"], "40301");
            // No event carries a password.
            for ev in &events {
                assert!(!ev.to_string().contains("pw"), "{ev}");
            }
        }
    }
}
