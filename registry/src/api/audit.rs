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
//! can quote schema text). Until authentication lands the principal is `anonymous` and every
//! request is `granted`. The client address comes from axum's `ConnectInfo<SocketAddr>` when
//! the router is served with it ([`axum::Router::into_make_service_with_connect_info`]).
//!
//! If the sink fails, the change may already be applied but cannot be acknowledged: the
//! client gets 500 with error code 50001 and the failure is logged.

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

use super::{CONTENT_TYPE, SchemaStore, router};

/// The `service` field of registry audit events.
pub const AUDIT_SERVICE: &str = "registry";
/// The principal recorded until authentication lands.
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
    router(store).route_layer(middleware::from_fn_with_state(sink, audit_layer))
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
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let Some((method, operation)) = route.as_deref().and_then(|r| classify(request.method(), r))
    else {
        return next.run(request).await;
    };
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let permanent = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.eq_ignore_ascii_case("permanent=true"))
    });
    let (mut parts, body) = request.into_parts();
    let params = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
        .await
        .map(|Path(p)| p)
        .unwrap_or_default();
    let response = next.run(Request::from_parts(parts, body)).await;

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
    let mut b = AuditEvent::builder(EventType::Schema)
        .service(AUDIT_SERVICE)
        .method(method)
        .principal(ANONYMOUS)
        .resource(rtype, rname)
        .operation(operation)
        .granted(true)
        .outcome(outcome)
        .attribute("httpStatus", status.as_u16().to_string());
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
}
