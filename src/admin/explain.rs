//! `POST /v1/authz/explain`: why the gateway would allow or deny one operation.
//!
//! The body names a principal, a resource and an operation (optionally the client's address);
//! the answer is the decision the gateway's authorizer makes for exactly that request
//! ([`gatehouse_policy::Authorizer::explain`]: the same casbin model and bindings, without the
//! decision cache) and the binding that decided — every matching DENY when one matches (a DENY
//! wins over any ALLOW, and the ALLOWs it beats are listed as `overridden`), else the matching
//! ALLOWs, else nothing: denied by default because no binding allows it. The gateway's own rule
//! comes first: internal topics (`_schemas`, `_gatehouse_*`) and groups (`_gatehouse*`) are
//! denied to every client, super users included.
//!
//! The caller needs what `GET /v1/acls` needs: DESCRIBE on `Cluster:kafka-cluster` (the
//! gateway's check for DescribeAcls), as the caller authenticated with Basic or Bearer. Every
//! call is recorded (`io.gatehouse.authorization`, service `admin`, method `authz.explain`,
//! with what was asked and the answer) before the answer leaves; a refusal is recorded too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_compliance::{AuditEvent, EventType, Outcome};
use gatehouse_gateway::authz::{is_internal_group, is_internal_topic};
use gatehouse_policy::acl::CLUSTER_NAME;
use gatehouse_policy::{Explanation, MatchedBinding, Operation, Principal, ResourceType};
use serde_json::{Value, json};

use super::rest::{Ctx, authenticate};
use super::{AUDIT_SERVICE, AdminState, body_json, fail, record, record_refusal};

/// The audit `method` of this endpoint.
const METHOD: &str = "authz.explain";
/// Longest principal or resource name accepted.
const MAX_NAME: usize = 1024;

/// A valid explain request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Question {
    principal: Principal,
    resource_type: ResourceType,
    resource_name: String,
    operation: Operation,
    /// `None`: no particular client address (only host `*` bindings apply).
    host: Option<IpAddr>,
}

impl Question {
    /// The request as the audit event and the answer name it (`Topic:orders`).
    fn resource(&self) -> String {
        format!("{}:{}", self.resource_type, self.resource_name)
    }
}

/// Reads and checks the body; the error is a sentence for the caller.
fn question(v: &Value) -> Result<Question, String> {
    let field = |k: &str| -> Result<Option<String>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.chars().any(char::is_control) {
                    return Err(format!("{k} contains control characters"));
                }
                if s.len() > MAX_NAME {
                    return Err(format!("{k} is longer than {MAX_NAME} bytes"));
                }
                Ok((!s.is_empty()).then(|| s.to_string()))
            }
            Some(_) => Err(format!("{k} must be a string")),
        }
    };
    let principal_text = field("principal")?.ok_or("principal is required, e.g. \"User:alice\"")?;
    let principal = Principal::parse(&principal_text).ok_or_else(|| {
        format!("principal {principal_text:?} is not of the form Type:name, e.g. User:alice")
    })?;
    let resource_type = super::acls::resource_type(
        &field("resource_type")?
            .ok_or("resource_type is required: topic, group, cluster, transactional_id, delegation_token, user or subject")?,
    )?;
    if resource_type == ResourceType::Any {
        return Err("resource_type ANY is only valid in filters; name one type".into());
    }
    let resource_name = match (field("resource_name")?, resource_type) {
        (None, ResourceType::Cluster) => CLUSTER_NAME.to_string(),
        (Some(n), ResourceType::Cluster) if n != CLUSTER_NAME => {
            return Err(format!(
                "the only cluster resource is {CLUSTER_NAME}, not {n:?}"
            ));
        }
        (Some(n), _) => n,
        (None, _) => return Err("resource_name is required".into()),
    };
    let operation = super::acls::operation(
        &field("operation")?
            .ok_or("operation is required, e.g. read, write, describe, create, alter")?,
    )?;
    if operation == Operation::Any {
        return Err("operation ANY is only valid in filters; name one operation".into());
    }
    let host = match field("host")? {
        None => None,
        Some(h) if h == "*" => None,
        Some(h) => Some(
            h.parse::<IpAddr>()
                .map_err(|_| format!("host {h:?} is not an IP address"))?,
        ),
    };
    Ok(Question {
        principal,
        resource_type,
        resource_name,
        operation,
        host,
    })
}

/// Kafka's upper-case spelling of a resource type name (`Topic` → `TOPIC`,
/// `TransactionalId` → `TRANSACTIONAL_ID`); `*` stays.
fn upper_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn binding_json(m: &MatchedBinding) -> Value {
    json!({
        "source": m.source,
        "principal": m.principal,
        "host": m.host,
        "resource_type": upper_snake(&m.resource_type),
        "resource_name": m.resource_name,
        "pattern_type": m.pattern_type.name(),
        "operation": m.operation.name(),
        "permission": m.permission.name(),
        "role": m.role,
        "scope": m.scope,
        "rule": m.rule,
    })
}

/// The answer for `q`: the gateway's internal-resource rule, else the authorizer's explanation.
fn answer(ctx: &Ctx<'_>, q: &Question) -> Value {
    let internal = match q.resource_type {
        ResourceType::Topic if is_internal_topic(&q.resource_name) => Some("topic"),
        ResourceType::Group if is_internal_group(&q.resource_name) => Some("group"),
        _ => None,
    };
    let host = q.host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let e: Explanation = match internal {
        Some(kind) => Explanation {
            allowed: false,
            reason: format!(
                "DENIED: {} is an internal {kind} of Gatehouse; the gateway denies it to every client, super users included, before any binding is consulted",
                q.resource_name
            ),
            matched: Vec::new(),
            overridden: Vec::new(),
            considered: 0,
            super_user: false,
        },
        None => ctx.keys.authorizer.explain(
            &q.principal,
            host,
            q.resource_type,
            &q.resource_name,
            q.operation,
        ),
    };
    json!({
        "decision": if e.allowed { "allow" } else { "deny" },
        "reason": e.reason,
        "matched": e.matched.iter().map(binding_json).collect::<Vec<_>>(),
        "overridden": e.overridden.iter().map(binding_json).collect::<Vec<_>>(),
        "considered": e.considered,
        "super_user": e.super_user,
        "request": {
            "principal": q.principal.to_string(),
            "resource_type": upper_snake(q.resource_type.name()),
            "resource_name": q.resource_name,
            "operation": q.operation.name(),
            "host": q.host.map_or_else(|| "*".to_string(), |h| h.to_string()),
        },
    })
}

/// `POST /v1/authz/explain`.
pub(super) async fn explain(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, METHOD, ("Cluster", CLUSTER_NAME)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let caller = &ctx.caller;
    // What DescribeAcls needs at the gateway.
    let decision = ctx.keys.authorizer.authorize(
        &caller.principal,
        caller.ip,
        ResourceType::Cluster,
        CLUSTER_NAME,
        Operation::Describe,
    );
    let event = |granted: bool| {
        AuditEvent::builder(EventType::Authorization)
            .service(AUDIT_SERVICE)
            .method(METHOD)
            .principal(caller.principal.to_string())
            .auth_mechanism(caller.mechanism)
            .resource("Cluster", CLUSTER_NAME)
            .operation("Describe")
            .granted(granted)
            .matched_rule(
                decision
                    .matched
                    .clone()
                    .unwrap_or_else(|| "no matching ALLOW (deny by default)".to_string()),
            )
            .client_address(caller.ip.to_string())
    };
    if !decision.allowed {
        let e = event(false)
            .outcome(Outcome::denied().with_error_code("40310"))
            .attribute("httpStatus", "403")
            .build();
        match e {
            Ok(e) => record_refusal(ctx.keys, e).await,
            Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
        }
        return fail(
            StatusCode::FORBIDDEN,
            40310,
            "CLUSTER_AUTHORIZATION_FAILED: explaining decisions needs DESCRIBE on Cluster:kafka-cluster (as listing ACLs does)",
        );
    }
    let parsed = match body_json(&body) {
        Ok(v) => v,
        Err(r) => {
            return ctx
                .refuse(
                    EventType::Authorization,
                    ("Cluster", CLUSTER_NAME),
                    "Describe",
                    *r,
                )
                .await;
        }
    };
    let q = match question(&parsed) {
        Ok(q) => q,
        Err(m) => {
            let r = fail(StatusCode::UNPROCESSABLE_ENTITY, 42230, m);
            return ctx
                .refuse(
                    EventType::Authorization,
                    ("Cluster", CLUSTER_NAME),
                    "Describe",
                    r,
                )
                .await;
        }
    };
    let answer = answer(&ctx, &q);
    let recorded = event(true)
        .outcome(Outcome::success())
        .attribute("httpStatus", "200")
        .attribute("explainPrincipal", q.principal.to_string())
        .attribute("explainResource", q.resource())
        .attribute("explainOperation", q.operation.name())
        .attribute(
            "explainDecision",
            answer["decision"].as_str().unwrap_or_default().to_string(),
        )
        .build();
    let recorded = match recorded {
        Ok(e) => record(ctx.keys, e).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = recorded {
        tracing::error!(error = %e, "An explanation could not be recorded in the audit trail.");
        return fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            "The request could not be recorded in the audit trail, so it is refused",
        );
    }
    (StatusCode::OK, Json(answer)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_validated() {
        let q = question(&json!({"principal": "User:bob", "resource_type": "topic",
            "resource_name": "orders", "operation": "read"}))
        .expect("valid");
        assert_eq!(q.principal, Principal::user("bob"));
        assert_eq!(q.resource_type, ResourceType::Topic);
        assert_eq!(q.operation, Operation::Read);
        assert_eq!(q.host, None);
        assert_eq!(q.resource(), "Topic:orders");
        let q = question(&json!({"principal": "User:bob", "resource_type": "cluster",
            "operation": "IDEMPOTENT_WRITE", "host": "10.0.0.1"}))
        .expect("cluster defaults its name");
        assert_eq!(q.resource_name, CLUSTER_NAME);
        assert_eq!(q.host, Some("10.0.0.1".parse().expect("ip")));
        let q = question(
            &json!({"principal": "User:bob", "resource_type": "transactional-id",
            "resource_name": "tx", "operation": "write", "host": "*"}),
        )
        .expect("valid");
        assert_eq!(q.resource_type, ResourceType::TransactionalId);
        for (bad, why) in [
            (json!({}), "principal is required"),
            (
                json!({"principal": "bob", "resource_type": "topic", "resource_name": "t", "operation": "read"}),
                "Type:name",
            ),
            (
                json!({"principal": "User:bob", "resource_type": "table", "resource_name": "t", "operation": "read"}),
                "unknown resource_type",
            ),
            (
                json!({"principal": "User:bob", "resource_type": "any", "resource_name": "t", "operation": "read"}),
                "only valid in filters",
            ),
            (
                json!({"principal": "User:bob", "resource_type": "topic", "operation": "read"}),
                "resource_name is required",
            ),
            (
                json!({"principal": "User:bob", "resource_type": "cluster", "resource_name": "c", "operation": "alter"}),
                "only cluster resource",
            ),
            (
                json!({"principal": "User:bob", "resource_type": "topic", "resource_name": "t", "operation": "fly"}),
                "unknown operation",
            ),
            (
                json!({"principal": "User:bob", "resource_type": "topic", "resource_name": "t", "operation": "any"}),
                "only valid in filters",
            ),
            (
                json!({"principal": "User:bob", "resource_type": "topic", "resource_name": "t", "operation": "read", "host": "example.com"}),
                "not an IP address",
            ),
            (
                json!({"principal": "User:b\nob", "resource_type": "topic", "resource_name": "t", "operation": "read"}),
                "control characters",
            ),
            (
                json!({"principal": 7, "resource_type": "topic", "resource_name": "t", "operation": "read"}),
                "must be a string",
            ),
        ] {
            let e = question(&bad).expect_err(why);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn resource_types_are_spelled_like_acls() {
        assert_eq!(upper_snake("Topic"), "TOPIC");
        assert_eq!(upper_snake("TransactionalId"), "TRANSACTIONAL_ID");
        assert_eq!(upper_snake("*"), "*");
    }
}
