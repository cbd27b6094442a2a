//! `/v1/acls`: Kafka ACLs, as the caller, through the gateway (see [`super::rest`]) with
//! DescribeAcls (filters as query parameters), CreateAcls and DeleteAcls (one exact binding in
//! the body). Names are Kafka's, any case, `_`/`-` optional: `TOPIC`, `transactional-id`,
//! `DESCRIBE_CONFIGS`; `subject` is Gatehouse's schema-subject resource type (code 100).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_compliance::EventType;
use gatehouse_policy::acl::CLUSTER_NAME;
use gatehouse_policy::{Operation, PatternType, Permission, ResourceType};
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::create_acls_request::AclCreation;
use gatehouse_protocol::messages::delete_acls_request::DeleteAclsFilter;
use gatehouse_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use serde_json::{Value, json};

use super::rest::{authenticate, kafka_fail, sb};
use super::{AdminState, body_json, fail};

fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Parses a wire-enum name among `codes` with `from`/`name`.
fn parse_enum<T: Copy>(
    text: &str,
    what: &str,
    codes: impl Iterator<Item = i8>,
    from: fn(i8) -> Option<T>,
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    let wanted = norm(text.trim());
    let all: Vec<T> = codes.filter_map(from).collect();
    all.iter()
        .copied()
        .find(|v| norm(name(*v)) == wanted)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            format!("unknown {what} {text:?}; one of {}", names.join(", "))
        })
}

pub(super) fn resource_type(text: &str) -> Result<ResourceType, String> {
    parse_enum(
        text,
        "resource_type",
        (1..=7).chain([100]),
        ResourceType::from_i8,
        ResourceType::name,
    )
}

fn pattern_type(text: &str) -> Result<PatternType, String> {
    parse_enum(
        text,
        "pattern_type",
        1..=4,
        PatternType::from_i8,
        PatternType::name,
    )
}

pub(super) fn operation(text: &str) -> Result<Operation, String> {
    parse_enum(
        text,
        "operation",
        1..=12,
        Operation::from_i8,
        Operation::name,
    )
}

fn permission(text: &str) -> Result<Permission, String> {
    parse_enum(
        text,
        "permission",
        1..=3,
        Permission::from_i8,
        Permission::name,
    )
}

/// Kafka's upper-case spelling of a resource type (`TOPIC`, `TRANSACTIONAL_ID`).
pub(super) fn type_label(code: i8) -> String {
    match ResourceType::from_i8(code) {
        Some(ResourceType::TransactionalId) => "TRANSACTIONAL_ID".to_string(),
        Some(ResourceType::DelegationToken) => "DELEGATION_TOKEN".to_string(),
        Some(t) => t.name().to_ascii_uppercase(),
        None => format!("UNKNOWN({code})"),
    }
}

fn label<T>(code: i8, from: fn(i8) -> Option<T>, name: fn(T) -> &'static str) -> String {
    from(code).map_or_else(|| format!("UNKNOWN({code})"), |v| name(v).to_string())
}

#[allow(clippy::too_many_arguments)]
fn binding_json(
    principal: &StrBytes,
    host: &StrBytes,
    rtype: i8,
    rname: &StrBytes,
    pattern: i8,
    op: i8,
    perm: i8,
) -> Value {
    json!({
        "principal": principal.to_string(),
        "host": host.to_string(),
        "resource_type": type_label(rtype),
        "resource_name": rname.to_string(),
        "pattern_type": label(pattern, PatternType::from_i8, PatternType::name),
        "operation": label(op, Operation::from_i8, Operation::name),
        "permission": label(perm, Permission::from_i8, Permission::name),
    })
}

/// `GET /v1/acls?principal=&resource_type=&resource_name=&pattern_type=&operation=&permission=&host=`.
pub(super) async fn list(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "acl.list", ("Cluster", CLUSTER_NAME)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let filter = (|| {
        Ok::<_, String>((
            get("resource_type")
                .map(resource_type)
                .transpose()?
                .unwrap_or(ResourceType::Any),
            get("pattern_type")
                .map(pattern_type)
                .transpose()?
                .unwrap_or(PatternType::Any),
            get("operation")
                .map(operation)
                .transpose()?
                .unwrap_or(Operation::Any),
            get("permission")
                .map(permission)
                .transpose()?
                .unwrap_or(Permission::Any),
        ))
    })();
    let (rtype, pattern, op, perm) = match filter {
        Ok(f) => f,
        Err(m) => return fail(StatusCode::UNPROCESSABLE_ENTITY, 42212, m),
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(rtype.as_i8())
        .with_resource_name_filter(get("resource_name").map(sb))
        .with_pattern_type_filter(pattern.as_i8())
        .with_principal_filter(get("principal").map(sb))
        .with_host_filter(get("host").map(sb))
        .with_operation(op.as_i8())
        .with_permission_type(perm.as_i8());
    let resp = match k.send(req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if resp.error_code != 0 {
        return kafka_fail(resp.error_code, resp.error_message.as_ref());
    }
    let mut acls: Vec<Value> = resp
        .resources
        .iter()
        .flat_map(|r| {
            r.acls.iter().map(|a| {
                binding_json(
                    &a.principal,
                    &a.host,
                    r.resource_type,
                    &r.resource_name,
                    r.pattern_type,
                    a.operation,
                    a.permission_type,
                )
            })
        })
        .collect();
    acls.sort_by_key(|v| v.to_string());
    Json(json!({ "acls": acls })).into_response()
}

/// One exact binding from a body.
struct Binding {
    principal: String,
    host: String,
    resource_type: ResourceType,
    resource_name: String,
    pattern_type: PatternType,
    operation: Operation,
    permission: Permission,
}

fn binding_of(v: &Value) -> Result<Binding, String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|x| !x.is_empty());
    let principal = s("principal").ok_or("missing \"principal\" (e.g. \"User:alice\")")?;
    if gatehouse_policy::Principal::parse(principal).is_none() {
        return Err(format!(
            "principal {principal:?} is not TYPE:NAME (e.g. User:alice)"
        ));
    }
    let rtype = resource_type(s("resource_type").ok_or("missing \"resource_type\"")?)?;
    if matches!(rtype, ResourceType::Any) {
        return Err("resource_type ANY is a filter, not a binding".to_string());
    }
    let rname = match (rtype, s("resource_name")) {
        (_, Some(n)) => n.to_string(),
        (ResourceType::Cluster, None) => CLUSTER_NAME.to_string(),
        (_, None) => return Err("missing \"resource_name\"".to_string()),
    };
    let pattern = s("pattern_type")
        .map(pattern_type)
        .transpose()?
        .unwrap_or(PatternType::Literal);
    if !matches!(pattern, PatternType::Literal | PatternType::Prefixed) {
        return Err("pattern_type must be LITERAL or PREFIXED".to_string());
    }
    let op = operation(s("operation").ok_or("missing \"operation\" (e.g. \"READ\")")?)?;
    if matches!(op, Operation::Any) {
        return Err("operation ANY is a filter, not a binding".to_string());
    }
    let perm = s("permission")
        .map(permission)
        .transpose()?
        .unwrap_or(Permission::Allow);
    if matches!(perm, Permission::Any) {
        return Err("permission must be ALLOW or DENY".to_string());
    }
    let host = s("host").unwrap_or("*").to_string();
    if host != "*" && host.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("host {host:?} is neither * nor an IP address"));
    }
    Ok(Binding {
        principal: principal.to_string(),
        host,
        resource_type: rtype,
        resource_name: rname,
        pattern_type: pattern,
        operation: op,
        permission: perm,
    })
}

impl Binding {
    fn json(&self) -> Value {
        binding_json(
            &sb(&self.principal),
            &sb(&self.host),
            self.resource_type.as_i8(),
            &sb(&self.resource_name),
            self.pattern_type.as_i8(),
            self.operation.as_i8(),
            self.permission.as_i8(),
        )
    }

    fn label(&self) -> String {
        format!(
            "{} {} {} on {} {}",
            self.permission.name(),
            self.principal,
            self.operation.name(),
            type_label(self.resource_type.as_i8()),
            self.resource_name
        )
    }
}

/// Parses the body of a change; a refusal is audited.
async fn body_binding(
    ctx: &super::rest::Ctx<'_>,
    body: &Bytes,
    operation: &str,
) -> Result<Binding, Response> {
    let parsed = match body_json(body) {
        Ok(v) => v,
        Err(r) => {
            return Err(ctx
                .refuse(EventType::Acl, ("Acl", "(invalid)"), operation, *r)
                .await);
        }
    };
    match binding_of(&parsed) {
        Ok(b) => Ok(b),
        Err(m) => {
            let r = fail(StatusCode::UNPROCESSABLE_ENTITY, 42212, m);
            Err(ctx
                .refuse(EventType::Acl, ("Acl", "(invalid)"), operation, r)
                .await)
        }
    }
}

/// `POST /v1/acls` with one binding.
pub(super) async fn create(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "acl.create", ("Cluster", CLUSTER_NAME)).await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    let b = match body_binding(&ctx, &body, "Create").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let creation = AclCreation::default()
        .with_resource_type(b.resource_type.as_i8())
        .with_resource_name(sb(&b.resource_name))
        .with_resource_pattern_type(b.pattern_type.as_i8())
        .with_principal(sb(&b.principal))
        .with_host(sb(&b.host))
        .with_operation(b.operation.as_i8())
        .with_permission_type(b.permission.as_i8());
    let resp = match k
        .send(CreateAclsRequest::default().with_creations(vec![creation]))
        .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(r) = resp.results.first() else {
        return kafka_fail(-1, None);
    };
    if r.error_code != 0 {
        return kafka_fail(r.error_code, r.error_message.as_ref());
    }
    (StatusCode::CREATED, Json(b.json())).into_response()
}

/// `DELETE /v1/acls` with one exact binding in the body; 404 when it does not exist.
pub(super) async fn delete(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "acl.delete", ("Cluster", CLUSTER_NAME)).await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    let b = match body_binding(&ctx, &body, "Delete").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let filter = DeleteAclsFilter::default()
        .with_resource_type_filter(b.resource_type.as_i8())
        .with_resource_name_filter(Some(sb(&b.resource_name)))
        .with_pattern_type_filter(b.pattern_type.as_i8())
        .with_principal_filter(Some(sb(&b.principal)))
        .with_host_filter(Some(sb(&b.host)))
        .with_operation(b.operation.as_i8())
        .with_permission_type(b.permission.as_i8());
    let resp = match k
        .send(DeleteAclsRequest::default().with_filters(vec![filter]))
        .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(r) = resp.filter_results.first() else {
        return kafka_fail(-1, None);
    };
    if r.error_code != 0 {
        return kafka_fail(r.error_code, r.error_message.as_ref());
    }
    if let Some(m) = r.matching_acls.iter().find(|m| m.error_code != 0) {
        return kafka_fail(m.error_code, m.error_message.as_ref());
    }
    if r.matching_acls.is_empty() {
        return fail(
            StatusCode::NOT_FOUND,
            40411,
            format!("No such ACL: {}", b.label()),
        );
    }
    let deleted: Vec<Value> = r
        .matching_acls
        .iter()
        .map(|m| {
            binding_json(
                &m.principal,
                &m.host,
                m.resource_type,
                &m.resource_name,
                m.pattern_type,
                m.operation,
                m.permission_type,
            )
        })
        .collect();
    Json(json!({ "deleted": deleted })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_loosely() {
        assert_eq!(
            resource_type("transactional-id"),
            Ok(ResourceType::TransactionalId)
        );
        assert_eq!(resource_type("TOPIC"), Ok(ResourceType::Topic));
        assert_eq!(resource_type("subject"), Ok(ResourceType::Subject));
        assert_eq!(
            operation("describe_configs"),
            Ok(Operation::DescribeConfigs)
        );
        assert!(operation("fly").is_err());
        let b = binding_of(&json!({
            "principal": "User:bob", "resource_type": "topic", "resource_name": "t",
            "operation": "read"
        }))
        .expect("valid");
        assert_eq!(b.permission, Permission::Allow);
        assert_eq!(b.pattern_type, PatternType::Literal);
        assert_eq!(b.json()["resource_type"], "TOPIC");
        assert!(binding_of(&json!({"principal": "bob"})).is_err());
    }
}
