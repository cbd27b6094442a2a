//! ACL and SCRAM-user administration over the Kafka protocol, answered by the gateway itself
//! (CreateAcls, DescribeAcls, DeleteAcls, DescribeUserScramCredentials,
//! AlterUserScramCredentials), so Kafka's own admin clients and tools work against it.
//!
//! Kafka's rules: creating or deleting ACLs and altering credentials needs ALTER on the
//! cluster, describing them needs DESCRIBE on the cluster. Changes go through the durable
//! policy store (acknowledged by the upstream before they apply) when there is one; every
//! change and every refusal is audited.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use gatehouse_compliance::{AuditEvent, EventType, Outcome};
use gatehouse_policy::{
    AclBinding, AclFilter, Mechanism, Operation, PatternType, Permission, ResourceType,
    ScramCredential,
};
use gatehouse_protocol::header::{decode_body, encode_response};
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::*;

use crate::authz::{Access, CLUSTER, Request, code};
use crate::{AUDIT_SERVICE, Inner};

/// Whether the gateway answers this API key itself (after authentication).
pub(crate) fn is_admin_api(api_key: i16) -> bool {
    [
        ApiKey::CreateAcls,
        ApiKey::DescribeAcls,
        ApiKey::DeleteAcls,
        ApiKey::DescribeUserScramCredentials,
        ApiKey::AlterUserScramCredentials,
    ]
    .iter()
    .any(|k| *k as i16 == api_key)
}

/// What an admin request runs with.
pub(crate) struct AdminCtx<'a> {
    pub gw: &'a Inner,
    pub access: &'a mut Access,
    pub peer: SocketAddr,
    pub client_id: Option<&'a str>,
    pub mechanism: &'a str,
}

impl AdminCtx<'_> {
    fn event(
        &self,
        method: &str,
        resource: (&str, &str),
        op: &str,
        granted: bool,
        ok: bool,
    ) -> AuditEvent {
        let outcome = match (granted, ok) {
            (false, _) => Outcome::denied().with_error_code("CLUSTER_AUTHORIZATION_FAILED"),
            (true, true) => Outcome::success(),
            (true, false) => Outcome::status("FAILURE"),
        };
        let mut b = AuditEvent::builder(EventType::Acl)
            .service(AUDIT_SERVICE)
            .method(format!("kafka.{method}"))
            .principal(self.access.principal.to_string())
            .auth_mechanism(self.mechanism.to_string())
            .resource(resource.0, resource.1)
            .operation(op)
            .client_address(self.peer.to_string())
            .granted(granted)
            .outcome(outcome);
        if let Some(c) = self.client_id {
            b = b.client_id(c);
        }
        self.gw.finish_event(b)
    }
}

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// Handles one admin request; `Err` closes the connection with that reason.
pub(crate) async fn handle(req: &Request<'_>, ctx: AdminCtx<'_>) -> Result<bytes::Bytes, String> {
    let v = req.version;
    let body = req.frame.slice(req.body_offset..);
    let key = ApiKey::try_from(req.api_key).map_err(|_| "unknown API key".to_string())?;
    let malformed =
        |e: gatehouse_protocol::ProtocolError| format!("malformed {key:?} request: {e}");
    let encode_err = |e: gatehouse_protocol::ProtocolError| format!("cannot encode {key:?}: {e}");
    match key {
        ApiKey::CreateAcls => {
            let r: CreateAclsRequest = decode_body(body, v).map_err(malformed)?;
            let allowed = ctx
                .access
                .allow(ResourceType::Cluster, CLUSTER, Operation::Alter);
            let mut results = Vec::new();
            let mut events = Vec::new();
            if !allowed {
                for c in &r.creations {
                    events.push(ctx.event(
                        "CreateAcls",
                        ("Acl", &describe_creation(c)),
                        "Alter",
                        false,
                        false,
                    ));
                    results.push(
                        create_acls_response::AclCreationResult::default()
                            .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED)
                            .with_error_message(Some(s("Not authorized to create ACLs."))),
                    );
                }
            } else {
                let mut bindings = Vec::new();
                let mut slots = Vec::new();
                for c in &r.creations {
                    match binding_from_creation(c) {
                        Ok(b) => {
                            slots.push(Ok(bindings.len()));
                            bindings.push(b);
                        }
                        Err(msg) => slots.push(Err(msg)),
                    }
                }
                let outcomes: Vec<Result<(), String>> = match &ctx.gw.store {
                    Some(store) => match store.add_acls(bindings.clone()).await {
                        Ok(v) => v
                            .into_iter()
                            .map(|r| r.map_err(|e| e.to_string()))
                            .collect(),
                        Err(e) => bindings.iter().map(|_| Err(e.to_string())).collect(),
                    },
                    None => ctx
                        .gw
                        .authorizer
                        .create_acls(bindings.clone())
                        .into_iter()
                        .map(|r| r.map_err(|e| e.to_string()))
                        .collect(),
                };
                for (c, slot) in r.creations.iter().zip(slots) {
                    let result = match slot {
                        Ok(i) => outcomes
                            .get(i)
                            .cloned()
                            .unwrap_or_else(|| Err("not applied".to_string())),
                        Err(msg) => Err(msg),
                    };
                    let ok = result.is_ok();
                    events.push(ctx.event(
                        "CreateAcls",
                        ("Acl", &describe_creation(c)),
                        "Alter",
                        true,
                        ok,
                    ));
                    results.push(match result {
                        Ok(()) => create_acls_response::AclCreationResult::default(),
                        Err(msg) => create_acls_response::AclCreationResult::default()
                            .with_error_code(code::INVALID_REQUEST)
                            .with_error_message(Some(s(msg))),
                    });
                }
            }
            ctx.gw.audit_now(events).await?;
            encode_response(
                req.correlation_id,
                v,
                &CreateAclsResponse::default().with_results(results),
            )
            .map_err(encode_err)
        }
        ApiKey::DescribeAcls => {
            let r: DescribeAclsRequest = decode_body(body, v).map_err(malformed)?;
            if !ctx
                .access
                .allow(ResourceType::Cluster, CLUSTER, Operation::Describe)
            {
                let e = ctx.event(
                    "DescribeAcls",
                    ("Cluster", CLUSTER),
                    "Describe",
                    false,
                    false,
                );
                ctx.gw.audit_now(vec![e]).await?;
                return encode_response(
                    req.correlation_id,
                    v,
                    &DescribeAclsResponse::default()
                        .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED)
                        .with_error_message(Some(s("Not authorized to describe ACLs."))),
                )
                .map_err(encode_err);
            }
            let filter = match filter_from_wire(
                r.resource_type_filter,
                r.resource_name_filter.as_deref(),
                r.pattern_type_filter,
                r.principal_filter.as_deref(),
                r.host_filter.as_deref(),
                r.operation,
                r.permission_type,
            ) {
                Ok(f) => f,
                Err(msg) => {
                    return encode_response(
                        req.correlation_id,
                        v,
                        &DescribeAclsResponse::default()
                            .with_error_code(code::INVALID_REQUEST)
                            .with_error_message(Some(s(msg))),
                    )
                    .map_err(encode_err);
                }
            };
            let mut grouped: BTreeMap<
                (i8, String, i8),
                Vec<describe_acls_response::AclDescription>,
            > = BTreeMap::new();
            for b in ctx.gw.authorizer.describe_acls(&filter) {
                grouped
                    .entry((
                        b.resource_type.as_i8(),
                        b.resource_name.clone(),
                        b.pattern_type.as_i8(),
                    ))
                    .or_default()
                    .push(
                        describe_acls_response::AclDescription::default()
                            .with_principal(s(b.principal.clone()))
                            .with_host(s(b.host.clone()))
                            .with_operation(b.operation.as_i8())
                            .with_permission_type(b.permission.as_i8()),
                    );
            }
            let resources = grouped
                .into_iter()
                .map(|((rt, name, pt), acls)| {
                    describe_acls_response::DescribeAclsResource::default()
                        .with_resource_type(rt)
                        .with_resource_name(s(name))
                        .with_pattern_type(pt)
                        .with_acls(acls)
                })
                .collect();
            encode_response(
                req.correlation_id,
                v,
                &DescribeAclsResponse::default().with_resources(resources),
            )
            .map_err(encode_err)
        }
        ApiKey::DeleteAcls => {
            let r: DeleteAclsRequest = decode_body(body, v).map_err(malformed)?;
            let allowed = ctx
                .access
                .allow(ResourceType::Cluster, CLUSTER, Operation::Alter);
            let mut results = Vec::new();
            let mut events = Vec::new();
            if !allowed {
                events.push(ctx.event("DeleteAcls", ("Cluster", CLUSTER), "Alter", false, false));
                for _ in &r.filters {
                    results.push(
                        delete_acls_response::DeleteAclsFilterResult::default()
                            .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED)
                            .with_error_message(Some(s("Not authorized to delete ACLs."))),
                    );
                }
            } else {
                let mut filters = Vec::new();
                let mut slots = Vec::new();
                for f in &r.filters {
                    match filter_from_wire(
                        f.resource_type_filter,
                        f.resource_name_filter.as_deref(),
                        f.pattern_type_filter,
                        f.principal_filter.as_deref(),
                        f.host_filter.as_deref(),
                        f.operation,
                        f.permission_type,
                    ) {
                        Ok(filter) => {
                            slots.push(Ok(filters.len()));
                            filters.push(filter);
                        }
                        Err(msg) => slots.push(Err(msg)),
                    }
                }
                let deleted = match &ctx.gw.store {
                    Some(store) => store.delete_acls(&filters).await,
                    None => Ok(ctx.gw.authorizer.delete_acls(&filters)),
                };
                let deleted = match deleted {
                    Ok(d) => d,
                    Err(e) => {
                        let msg = e.to_string();
                        events.push(ctx.event(
                            "DeleteAcls",
                            ("Cluster", CLUSTER),
                            "Alter",
                            true,
                            false,
                        ));
                        ctx.gw.audit_now(events).await?;
                        let results = r
                            .filters
                            .iter()
                            .map(|_| {
                                delete_acls_response::DeleteAclsFilterResult::default()
                                    .with_error_code(code::UNKNOWN_SERVER_ERROR)
                                    .with_error_message(Some(s(msg.clone())))
                            })
                            .collect();
                        return encode_response(
                            req.correlation_id,
                            v,
                            &DeleteAclsResponse::default().with_filter_results(results),
                        )
                        .map_err(encode_err);
                    }
                };
                for slot in slots {
                    match slot {
                        Ok(i) => {
                            let matched = deleted.get(i).cloned().unwrap_or_default();
                            for b in &matched {
                                events.push(ctx.event(
                                    "DeleteAcls",
                                    ("Acl", &describe_binding(b)),
                                    "Alter",
                                    true,
                                    true,
                                ));
                            }
                            results.push(
                                delete_acls_response::DeleteAclsFilterResult::default()
                                    .with_matching_acls(
                                    matched
                                        .iter()
                                        .map(|b| {
                                            delete_acls_response::DeleteAclsMatchingAcl::default()
                                                .with_resource_type(b.resource_type.as_i8())
                                                .with_resource_name(s(b.resource_name.clone()))
                                                .with_pattern_type(b.pattern_type.as_i8())
                                                .with_principal(s(b.principal.clone()))
                                                .with_host(s(b.host.clone()))
                                                .with_operation(b.operation.as_i8())
                                                .with_permission_type(b.permission.as_i8())
                                        })
                                        .collect(),
                                ),
                            );
                        }
                        Err(msg) => results.push(
                            delete_acls_response::DeleteAclsFilterResult::default()
                                .with_error_code(code::INVALID_REQUEST)
                                .with_error_message(Some(s(msg))),
                        ),
                    }
                }
            }
            ctx.gw.audit_now(events).await?;
            encode_response(
                req.correlation_id,
                v,
                &DeleteAclsResponse::default().with_filter_results(results),
            )
            .map_err(encode_err)
        }
        ApiKey::DescribeUserScramCredentials => {
            let r: DescribeUserScramCredentialsRequest = decode_body(body, v).map_err(malformed)?;
            if !ctx
                .access
                .allow(ResourceType::Cluster, CLUSTER, Operation::Describe)
            {
                let e = ctx.event(
                    "DescribeUserScramCredentials",
                    ("Cluster", CLUSTER),
                    "Describe",
                    false,
                    false,
                );
                ctx.gw.audit_now(vec![e]).await?;
                return encode_response(
                    req.correlation_id,
                    v,
                    &DescribeUserScramCredentialsResponse::default()
                        .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED)
                        .with_error_message(Some(s("Not authorized to describe credentials."))),
                )
                .map_err(encode_err);
            }
            // Null and an empty list both mean "every user" (as in Kafka).
            let names: Option<Vec<String>> = r
                .users
                .as_ref()
                .filter(|u| !u.is_empty())
                .map(|u| u.iter().map(|n| n.name.to_string()).collect());
            let found = ctx.gw.users.describe(names.as_deref());
            let mut results: Vec<_> = found
                .iter()
                .map(|(user, mechs)| {
                    describe_user_scram_credentials_response::DescribeUserScramCredentialsResult::default()
                        .with_user(s(user.clone()))
                        .with_credential_infos(
                            mechs
                                .iter()
                                .map(|(m, it)| {
                                    describe_user_scram_credentials_response::CredentialInfo::default()
                                        .with_mechanism(scram_mechanism_code(*m))
                                        .with_iterations(i32::try_from(*it).unwrap_or(i32::MAX))
                                })
                                .collect(),
                        )
                })
                .collect();
            if let Some(names) = &names {
                for n in names {
                    if !found.iter().any(|(u, _)| u == n) {
                        results.push(
                            describe_user_scram_credentials_response::DescribeUserScramCredentialsResult::default()
                                .with_user(s(n.clone()))
                                .with_error_code(code::RESOURCE_NOT_FOUND)
                                .with_error_message(Some(s("Attempt to describe a user credential that does not exist"))),
                        );
                    }
                }
            }
            encode_response(
                req.correlation_id,
                v,
                &DescribeUserScramCredentialsResponse::default().with_results(results),
            )
            .map_err(encode_err)
        }
        ApiKey::AlterUserScramCredentials => {
            let r: AlterUserScramCredentialsRequest = decode_body(body, v).map_err(malformed)?;
            let allowed = ctx
                .access
                .allow(ResourceType::Cluster, CLUSTER, Operation::Alter);
            let mut results = Vec::new();
            let mut events = Vec::new();
            for d in &r.deletions {
                let user = d.name.to_string();
                let outcome = if !allowed {
                    Err((
                        code::CLUSTER_AUTHORIZATION_FAILED,
                        "Not authorized to alter credentials.".to_string(),
                    ))
                } else {
                    match mechanism_from_code(d.mechanism) {
                        None => Err((
                            code::UNSUPPORTED_SASL_MECHANISM,
                            "Unknown SCRAM mechanism.".into(),
                        )),
                        Some(m) => {
                            if ctx.gw.users.get(&user, m).is_none() {
                                Err((
                                    code::RESOURCE_NOT_FOUND,
                                    "Attempt to delete a user credential that does not exist"
                                        .into(),
                                ))
                            } else {
                                match &ctx.gw.store {
                                    Some(store) => {
                                        store.delete_user(&user, Some(m)).await.map(|_| ()).map_err(
                                            |e| (code::UNKNOWN_SERVER_ERROR, e.to_string()),
                                        )
                                    }
                                    None => {
                                        ctx.gw.users.delete(&user, Some(m));
                                        Ok(())
                                    }
                                }
                            }
                        }
                    }
                };
                events.push(ctx.event(
                    "AlterUserScramCredentials",
                    ("User", &user),
                    "Delete",
                    allowed,
                    outcome.is_ok(),
                ));
                results.push(scram_result(&user, outcome));
            }
            for u in &r.upsertions {
                let user = u.name.to_string();
                let outcome = if !allowed {
                    Err((
                        code::CLUSTER_AUTHORIZATION_FAILED,
                        "Not authorized to alter credentials.".to_string(),
                    ))
                } else {
                    match mechanism_from_code(u.mechanism) {
                        None => Err((
                            code::UNSUPPORTED_SASL_MECHANISM,
                            "Unknown SCRAM mechanism.".into(),
                        )),
                        Some(m) => match ScramCredential::from_salted_password(
                            m,
                            u.salt.to_vec(),
                            u32::try_from(u.iterations).unwrap_or(0),
                            &u.salted_password,
                        ) {
                            Err(e) => Err((code::INVALID_REQUEST, e.to_string())),
                            Ok(cred) => match &ctx.gw.store {
                                Some(store) => store
                                    .put_user(&user, cred)
                                    .await
                                    .map_err(|e| (code::UNKNOWN_SERVER_ERROR, e.to_string())),
                                None => ctx
                                    .gw
                                    .users
                                    .upsert(&user, cred)
                                    .map_err(|e| (code::INVALID_REQUEST, e.to_string())),
                            },
                        },
                    }
                };
                events.push(ctx.event(
                    "AlterUserScramCredentials",
                    ("User", &user),
                    "Alter",
                    allowed,
                    outcome.is_ok(),
                ));
                results.push(scram_result(&user, outcome));
            }
            ctx.gw.audit_now(events).await?;
            encode_response(
                req.correlation_id,
                v,
                &AlterUserScramCredentialsResponse::default().with_results(results),
            )
            .map_err(encode_err)
        }
        other => Err(format!("{other:?} is not an admin API")),
    }
}

fn scram_result(
    user: &str,
    outcome: Result<(), (i16, String)>,
) -> alter_user_scram_credentials_response::AlterUserScramCredentialsResult {
    let r = alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
        .with_user(s(user));
    match outcome {
        Ok(()) => r,
        Err((code, msg)) => r.with_error_code(code).with_error_message(Some(s(msg))),
    }
}

/// Kafka's ScramMechanism codes: 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512.
fn mechanism_from_code(code: i8) -> Option<Mechanism> {
    match code {
        1 => Some(Mechanism::ScramSha256),
        2 => Some(Mechanism::ScramSha512),
        _ => None,
    }
}

fn scram_mechanism_code(m: Mechanism) -> i8 {
    match m {
        Mechanism::ScramSha256 => 1,
        Mechanism::ScramSha512 => 2,
        _ => 0,
    }
}

fn binding_from_creation(c: &create_acls_request::AclCreation) -> Result<AclBinding, String> {
    let resource_type = ResourceType::from_i8(c.resource_type)
        .ok_or_else(|| format!("unknown resource type {}", c.resource_type))?;
    let pattern_type = PatternType::from_i8(c.resource_pattern_type)
        .ok_or_else(|| format!("unknown pattern type {}", c.resource_pattern_type))?;
    let operation = Operation::from_i8(c.operation)
        .ok_or_else(|| format!("unknown operation {}", c.operation))?;
    let permission = Permission::from_i8(c.permission_type)
        .ok_or_else(|| format!("unknown permission type {}", c.permission_type))?;
    Ok(AclBinding {
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        resource_type,
        resource_name: c.resource_name.to_string(),
        pattern_type,
        operation,
        permission,
    })
}

#[allow(clippy::too_many_arguments)]
fn filter_from_wire(
    resource_type: i8,
    name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: ResourceType::from_i8(resource_type)
            .ok_or_else(|| format!("unknown resource type {resource_type}"))?,
        resource_name: name.map(str::to_string),
        pattern_type: PatternType::from_i8(pattern_type)
            .ok_or_else(|| format!("unknown pattern type {pattern_type}"))?,
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation: Operation::from_i8(operation)
            .ok_or_else(|| format!("unknown operation {operation}"))?,
        permission: Permission::from_i8(permission)
            .ok_or_else(|| format!("unknown permission type {permission}"))?,
    })
}

fn describe_creation(c: &create_acls_request::AclCreation) -> String {
    match binding_from_creation(c) {
        Ok(b) => describe_binding(&b),
        Err(_) => format!("{} {}", c.principal, c.resource_name),
    }
}

fn describe_binding(b: &AclBinding) -> String {
    format!(
        "{:?} {} {:?} {:?}:{} ({:?}) from {}",
        b.permission,
        b.principal,
        b.operation,
        b.resource_type,
        b.resource_name,
        b.pattern_type,
        b.host
    )
}
