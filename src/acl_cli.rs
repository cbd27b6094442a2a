//! `gatehouse acl add|remove|list`: Kafka ACLs on the gateway, over the Kafka protocol.
//!
//! The commands speak Kafka's own admin APIs to the gateway (CreateAcls, DeleteAcls,
//! DescribeAcls) with the connection flags of `gatehouse user` ([`GatewayArgs`]): the
//! gateway's plaintext SASL listener and a user with ALTER (changes) or DESCRIBE (listing) on
//! the cluster. Besides Kafka's resource types, `--subject` names a schema-registry subject
//! (Gatehouse's own resource type, code 100).
//!
//! - `add`: one binding per `--operation` on the one resource given.
//! - `remove`: deletes exactly those bindings (a binding that does not exist is an error); with
//!   `--all-matching` the flags are a filter instead, every omitted one matching anything.
//! - `list`: every binding, or the ones of `--principal` and those that apply to the named
//!   resource (including `*` and prefixed bindings; only prefixed ones with `--prefixed`).
//!
//! Exit codes: 0 success; 1 the gateway refused or failed a binding (Kafka error name and
//! message printed, e.g. `CLUSTER_AUTHORIZATION_FAILED: Not authorized to create ACLs.`); 2
//! usage errors, an unreachable gateway or failed authentication.

use std::net::IpAddr;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use gatehouse_policy::acl::CLUSTER_NAME;
use gatehouse_policy::{AclBinding, Operation, PatternType, Permission, Principal, ResourceType};
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::create_acls_request::AclCreation;
use gatehouse_protocol::messages::delete_acls_request::DeleteAclsFilter;
use gatehouse_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use serde::Serialize;
use serde_json::json;

use crate::admin_cli::{self, AdminArgs};
use crate::output::{OutputArgs, cell, print_fields, print_json, print_table};
use crate::user_cli::{Failure, Gateway, GatewayArgs, connect, exit_code, kafka_error};

/// `gatehouse acl ...`.
#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Add ACL bindings: one per operation, for one principal on one resource.
    Add {
        #[command(flatten)]
        acl: AclArgs,
        /// `--output json`: {"added": [binding]}.
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Remove exactly the bindings the flags name (as for `add`), or with --all-matching every
    /// binding matching the flags as a filter.
    Remove {
        #[command(flatten)]
        acl: AclArgs,
        /// Use the flags as a filter: any omitted flag matches anything (at least --principal
        /// or a resource is required).
        #[arg(long)]
        all_matching: bool,
        /// `--output json`: {"removed": [binding]}.
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// List bindings: all, or those of a principal and/or that apply to a resource.
    List {
        /// Only bindings of this principal (e.g. User:alice).
        #[arg(long, value_name = "TYPE:NAME")]
        principal: Option<String>,
        #[command(flatten)]
        resource: ResourceArgs,
        /// With a resource: only PREFIXED bindings with exactly that prefix (default: every
        /// binding that applies to the name, literal, `*` or prefixed).
        #[arg(long)]
        prefixed: bool,
        /// `--output json`: an array of bindings.
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Explain the policy's decision for one request (admin API): ALLOW or DENY and the rule
    /// that decided. Exit 0 for ALLOW, 3 for DENY.
    Explain {
        /// Who asks, e.g. User:alice.
        #[arg(long, value_name = "TYPE:NAME")]
        principal: String,
        /// TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, SUBJECT, ... (any case).
        #[arg(long, value_name = "TYPE")]
        resource_type: String,
        /// The resource's name (may be omitted for CLUSTER: kafka-cluster).
        #[arg(long, value_name = "NAME")]
        resource_name: Option<String>,
        /// The operation, e.g. READ, WRITE, DESCRIBE, ALTER (any case).
        #[arg(long, value_name = "OP")]
        operation: String,
        /// The client address to decide for (default: none, only host-`*` bindings apply).
        #[arg(long, value_name = "IP")]
        host: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// The binding flags of `add` and `remove`.
#[derive(Args, Debug)]
pub struct AclArgs {
    /// The principal, e.g. User:alice (User:* = everyone).
    #[arg(long, value_name = "TYPE:NAME")]
    principal: Option<String>,
    /// Allow the operations.
    #[arg(long, conflicts_with = "deny")]
    allow: bool,
    /// Deny the operations (a DENY wins over any ALLOW).
    #[arg(long)]
    deny: bool,
    /// Operations, comma-separated: ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
    /// CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
    #[arg(long, value_delimiter = ',', value_name = "OP[,OP..]")]
    operation: Vec<String>,
    #[command(flatten)]
    resource: ResourceArgs,
    /// The resource name is a prefix (PREFIXED pattern; default LITERAL, where `*` means every
    /// name).
    #[arg(long)]
    prefixed: bool,
    /// The client address the binding applies to (default `*`, every address).
    #[arg(long, value_name = "IP")]
    host: Option<String>,
}

/// The resource of a binding: exactly one of these.
#[derive(Args, Debug)]
#[group(multiple = false)]
pub struct ResourceArgs {
    /// A topic.
    #[arg(long, value_name = "NAME")]
    topic: Option<String>,
    /// A consumer group.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// The cluster (kafka-cluster).
    #[arg(long)]
    cluster: bool,
    /// A transactional id.
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
    /// A schema-registry subject (Gatehouse's resource type).
    #[arg(long, value_name = "NAME")]
    subject: Option<String>,
}

impl ResourceArgs {
    /// The resource type and name given, if any.
    fn get(&self) -> Option<(ResourceType, String)> {
        let named = [
            (ResourceType::Topic, &self.topic),
            (ResourceType::Group, &self.group),
            (ResourceType::TransactionalId, &self.transactional_id),
            (ResourceType::Subject, &self.subject),
        ];
        if self.cluster {
            return Some((ResourceType::Cluster, CLUSTER_NAME.to_owned()));
        }
        named
            .into_iter()
            .find_map(|(t, n)| n.as_ref().map(|n| (t, n.clone())))
    }
}

/// Runs one `acl` command; returns the process exit code.
pub fn run(cmd: AclCommand) -> i32 {
    match cmd {
        AclCommand::Explain {
            principal,
            resource_type,
            resource_name,
            operation,
            host,
            admin,
        } => {
            let mut body = json!({
                "principal": principal,
                "resource_type": resource_type,
                "operation": operation,
            });
            if let Some(n) = resource_name {
                body["resource_name"] = json!(n);
            }
            if let Some(h) = host {
                body["host"] = json!(h);
            }
            admin_cli::run_with(explain(body, admin))
        }
        other => exit_code(execute(other)),
    }
}

/// `acl explain`: `POST /v1/authz/explain`; a DENY is printed, then [`admin_cli::Failure::Denied`].
async fn explain(body: serde_json::Value, admin: AdminArgs) -> Result<(), admin_cli::Failure> {
    let v = admin
        .client()?
        .call("POST", "/v1/authz/explain", Some(&body))
        .await?;
    let denied = match v.get("decision").and_then(serde_json::Value::as_str) {
        Some(d) if d.eq_ignore_ascii_case("allow") => false,
        Some(d) if d.eq_ignore_ascii_case("deny") => true,
        _ => {
            return Err(admin_cli::Failure::Local(anyhow!(
                "the admin API's explanation has no decision: {v}"
            )));
        }
    };
    if admin.json() {
        print_json(&v);
    } else {
        print_explanation(&v, denied);
    }
    if denied {
        Err(admin_cli::Failure::Denied)
    } else {
        Ok(())
    }
}

/// An explanation as `decision`/`reason` lines and a table of the bindings that decided.
fn print_explanation(v: &serde_json::Value, denied: bool) {
    print_fields(&[
        (
            "decision",
            if denied { "DENY" } else { "ALLOW" }.to_string(),
        ),
        ("reason", cell(v.get("reason"))),
        ("super user", cell(v.get("super_user"))),
        ("considered", cell(v.get("considered"))),
    ]);
    let mut rows = Vec::new();
    for (key, label) in [("matched", "matched"), ("overridden", "overridden")] {
        for b in v[key].as_array().into_iter().flatten() {
            rows.push(vec![
                label.to_string(),
                cell(b.get("source")),
                cell(b.get("rule")),
            ]);
        }
    }
    if !rows.is_empty() {
        println!();
        print_table(&["BINDING", "SOURCE", "RULE"], &rows);
    }
}

async fn execute(cmd: AclCommand) -> Result<(), Failure> {
    match cmd {
        AclCommand::Add { acl, out, gateway } => {
            let bindings = exact_bindings(&acl, "add")?;
            let gw = connect(&gateway).await?;
            add(&gw, &bindings, out.is_json()).await
        }
        AclCommand::Remove {
            acl,
            all_matching,
            out,
            gateway,
        } => {
            if all_matching {
                let filters = match_filters(&acl)?;
                let gw = connect(&gateway).await?;
                remove(&gw, filters, false, out.is_json()).await
            } else {
                let filters = exact_bindings(&acl, "remove")?
                    .iter()
                    .map(exact_filter)
                    .collect();
                let gw = connect(&gateway).await?;
                remove(&gw, filters, true, out.is_json()).await
            }
        }
        AclCommand::Explain { .. } => Err(usage("acl explain runs through the admin API")),
        AclCommand::List {
            principal,
            resource,
            prefixed,
            out,
            gateway,
        } => {
            if let Some(p) = &principal {
                check_principal(p)?;
            }
            let resource = resource.get();
            if prefixed && resource.is_none() {
                return Err(usage("--prefixed needs a resource (--topic, --group, ...)"));
            }
            let (rtype, name, pattern) = match resource {
                Some((t, n)) => {
                    let p = if prefixed {
                        PatternType::Prefixed
                    } else {
                        PatternType::Match
                    };
                    (t, Some(n), p)
                }
                None => (ResourceType::Any, None, PatternType::Any),
            };
            let gw = connect(&gateway).await?;
            list(&gw, rtype, name, pattern, principal, out.is_json()).await
        }
    }
}

fn usage(msg: impl std::fmt::Display) -> Failure {
    Failure::Local(anyhow!("{msg}"))
}

fn check_principal(p: &str) -> Result<(), Failure> {
    match Principal::parse(p) {
        Some(_) => Ok(()),
        None => Err(usage(format!(
            "--principal {p:?} is not of the form TYPE:NAME (e.g. User:alice, User:*)"
        ))),
    }
}

/// Parses an operation name: Kafka's (`DESCRIBE_CONFIGS`), any case, `-` or no separator.
fn parse_operation(text: &str, filter: bool) -> Result<Operation, Failure> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase()
    };
    let wanted = norm(text.trim());
    let first = if filter { 1 } else { 2 };
    (first..=12)
        .filter_map(Operation::from_i8)
        .find(|op| norm(op.name()) == wanted)
        .ok_or_else(|| {
            let names: Vec<&str> = (2..=12)
                .filter_map(Operation::from_i8)
                .map(Operation::name)
                .collect();
            usage(format!(
                "unknown operation {text:?}; one of {}",
                names.join(", ")
            ))
        })
}

fn check_host(host: &str) -> Result<String, Failure> {
    if host == "*" {
        return Ok(host.to_owned());
    }
    host.parse::<IpAddr>()
        .map(|ip| ip.to_canonical().to_string())
        .map_err(|_| usage(format!("--host {host:?} is neither * nor an IP address")))
}

/// The bindings `add` (and `remove` without `--all-matching`) name: every flag required.
fn exact_bindings(a: &AclArgs, verb: &str) -> Result<Vec<AclBinding>, Failure> {
    let principal = a.principal.as_deref().ok_or_else(|| {
        usage(format!(
            "acl {verb} needs --principal TYPE:NAME (e.g. User:alice)"
        ))
    })?;
    check_principal(principal)?;
    let permission = match (a.allow, a.deny) {
        (true, false) => Permission::Allow,
        (false, true) => Permission::Deny,
        _ => return Err(usage(format!("acl {verb} needs --allow or --deny"))),
    };
    if a.operation.is_empty() {
        return Err(usage(format!(
            "acl {verb} needs --operation OP[,OP..] (e.g. READ,DESCRIBE)"
        )));
    }
    let (resource_type, resource_name) = a.resource.get().ok_or_else(|| {
        usage(format!(
            "acl {verb} needs one resource: --topic, --group, --cluster, --transactional-id or --subject"
        ))
    })?;
    if resource_name.is_empty() {
        return Err(usage("the resource name must not be empty"));
    }
    if a.prefixed && resource_type == ResourceType::Cluster {
        return Err(usage("--prefixed does not apply to --cluster"));
    }
    let pattern_type = if a.prefixed {
        PatternType::Prefixed
    } else {
        PatternType::Literal
    };
    let host = check_host(a.host.as_deref().unwrap_or("*"))?;
    let mut out = Vec::new();
    for op in &a.operation {
        let operation = parse_operation(op, false)?;
        let b = AclBinding {
            principal: principal.to_owned(),
            host: host.clone(),
            resource_type,
            resource_name: resource_name.clone(),
            pattern_type,
            operation,
            permission,
        };
        if !out.contains(&b) {
            out.push(b);
        }
    }
    Ok(out)
}

/// A DeleteAcls / DescribeAcls filter as it goes on the wire.
#[derive(Clone, Debug)]
struct WireFilter {
    resource_type: ResourceType,
    resource_name: Option<String>,
    pattern_type: PatternType,
    principal: Option<String>,
    host: Option<String>,
    operation: Operation,
    permission: Permission,
}

fn exact_filter(b: &AclBinding) -> WireFilter {
    WireFilter {
        resource_type: b.resource_type,
        resource_name: Some(b.resource_name.clone()),
        pattern_type: b.pattern_type,
        principal: Some(b.principal.clone()),
        host: Some(b.host.clone()),
        operation: b.operation,
        permission: b.permission,
    }
}

/// `remove --all-matching`: the flags as filters (one per operation), omitted = ANY.
fn match_filters(a: &AclArgs) -> Result<Vec<WireFilter>, Failure> {
    if let Some(p) = &a.principal {
        check_principal(p)?;
    }
    let resource = a.resource.get();
    if a.principal.is_none() && resource.is_none() {
        return Err(usage(
            "acl remove --all-matching needs --principal or a resource, so it cannot remove every ACL by accident",
        ));
    }
    if a.prefixed && resource.is_none() {
        return Err(usage("--prefixed needs a resource (--topic, --group, ...)"));
    }
    let (resource_type, resource_name, pattern_type) = match resource {
        Some((t, n)) => {
            let p = if a.prefixed {
                PatternType::Prefixed
            } else {
                PatternType::Literal
            };
            (t, Some(n), p)
        }
        None => (ResourceType::Any, None, PatternType::Any),
    };
    let permission = match (a.allow, a.deny) {
        (true, _) => Permission::Allow,
        (_, true) => Permission::Deny,
        _ => Permission::Any,
    };
    let host = a.host.as_deref().map(check_host).transpose()?;
    let operations = if a.operation.is_empty() {
        vec![Operation::Any]
    } else {
        a.operation
            .iter()
            .map(|o| parse_operation(o, true))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(operations
        .into_iter()
        .map(|operation| WireFilter {
            resource_type,
            resource_name: resource_name.clone(),
            pattern_type,
            principal: a.principal.clone(),
            host: host.clone(),
            operation,
            permission,
        })
        .collect())
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// Kafka's upper-case name of a wire enum (`TRANSACTIONAL_ID`, `LITERAL`, `READ`).
fn upper<T: Serialize + std::fmt::Display>(v: T) -> String {
    match serde_json::to_value(&v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => v.to_string().to_ascii_uppercase(),
    }
}

/// A binding in one line: `ALLOW User:alice WRITE on TOPIC orders (LITERAL, host *)`.
fn describe(b: &AclBinding) -> String {
    format!(
        "{} {} {} on {} {} ({}, host {})",
        upper(b.permission),
        b.principal,
        upper(b.operation),
        upper(b.resource_type),
        b.resource_name,
        upper(b.pattern_type),
        b.host
    )
}

/// A binding read back from the wire; unknown codes are kept as numbers in the text.
struct Row {
    principal: String,
    host: String,
    permission: String,
    operation: String,
    resource_type: String,
    resource_name: String,
    pattern_type: String,
}

fn name_of<T: Serialize + std::fmt::Display>(v: Option<T>, code: i8) -> String {
    v.map(upper).unwrap_or_else(|| format!("UNKNOWN({code})"))
}

impl Row {
    #[allow(clippy::too_many_arguments)]
    fn new(
        rtype: i8,
        name: &StrBytes,
        pattern: i8,
        principal: &StrBytes,
        host: &StrBytes,
        op: i8,
        perm: i8,
    ) -> Row {
        Row {
            principal: principal.to_string(),
            host: host.to_string(),
            permission: name_of(Permission::from_i8(perm), perm),
            operation: name_of(Operation::from_i8(op), op),
            resource_type: name_of(ResourceType::from_i8(rtype), rtype),
            resource_name: name.to_string(),
            pattern_type: name_of(PatternType::from_i8(pattern), pattern),
        }
    }

    fn text(&self) -> String {
        format!(
            "{} {} {} on {} {} ({}, host {})",
            self.permission,
            self.principal,
            self.operation,
            self.resource_type,
            self.resource_name,
            self.pattern_type,
            self.host
        )
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "principal": self.principal,
            "host": self.host,
            "permission": self.permission,
            "operation": self.operation,
            "resource_type": self.resource_type,
            "resource_name": self.resource_name,
            "pattern_type": self.pattern_type,
        })
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.principal.clone(),
            self.permission.clone(),
            self.operation.clone(),
            self.resource_type.clone(),
            self.resource_name.clone(),
            self.pattern_type.clone(),
            self.host.clone(),
        ]
    }
}

/// A binding as JSON, in the names of `acl list --output json`.
fn binding_json(b: &AclBinding) -> serde_json::Value {
    json!({
        "principal": b.principal,
        "host": b.host,
        "permission": upper(b.permission),
        "operation": upper(b.operation),
        "resource_type": upper(b.resource_type),
        "resource_name": b.resource_name,
        "pattern_type": upper(b.pattern_type),
    })
}

async fn add(gw: &Gateway, bindings: &[AclBinding], json: bool) -> Result<(), Failure> {
    let creations = bindings
        .iter()
        .map(|b| {
            AclCreation::default()
                .with_resource_type(b.resource_type.as_i8())
                .with_resource_name(s(&b.resource_name))
                .with_resource_pattern_type(b.pattern_type.as_i8())
                .with_principal(s(&b.principal))
                .with_host(s(&b.host))
                .with_operation(b.operation.as_i8())
                .with_permission_type(b.permission.as_i8())
        })
        .collect();
    let resp = gw
        .send(CreateAclsRequest::default().with_creations(creations))
        .await?;
    if resp.results.len() != bindings.len() {
        return Err(Failure::Local(anyhow!(
            "the gateway answered {} results for {} bindings",
            resp.results.len(),
            bindings.len()
        )));
    }
    let mut failed = false;
    let mut added = Vec::new();
    for (b, r) in bindings.iter().zip(&resp.results) {
        if r.error_code == 0 {
            if json {
                added.push(binding_json(b));
            } else {
                println!("added: {}", describe(b));
            }
        } else {
            failed = true;
            eprintln!(
                "error: {}: {}",
                describe(b),
                kafka_error(r.error_code, r.error_message.as_ref())
            );
        }
    }
    if json {
        print_json(&json!({ "added": added }));
    }
    if failed {
        Err(Failure::Refused)
    } else {
        Ok(())
    }
}

async fn remove(
    gw: &Gateway,
    filters: Vec<WireFilter>,
    exact: bool,
    json: bool,
) -> Result<(), Failure> {
    let wire = filters
        .iter()
        .map(|f| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(f.resource_type.as_i8())
                .with_resource_name_filter(f.resource_name.as_deref().map(s))
                .with_pattern_type_filter(f.pattern_type.as_i8())
                .with_principal_filter(f.principal.as_deref().map(s))
                .with_host_filter(f.host.as_deref().map(s))
                .with_operation(f.operation.as_i8())
                .with_permission_type(f.permission.as_i8())
        })
        .collect();
    let resp = gw
        .send(DeleteAclsRequest::default().with_filters(wire))
        .await?;
    if resp.filter_results.len() != filters.len() {
        return Err(Failure::Local(anyhow!(
            "the gateway answered {} results for {} filters",
            resp.filter_results.len(),
            filters.len()
        )));
    }
    let mut failed = false;
    let mut removed = Vec::new();
    for (f, r) in filters.iter().zip(&resp.filter_results) {
        if r.error_code != 0 {
            failed = true;
            eprintln!(
                "error: {}",
                kafka_error(r.error_code, r.error_message.as_ref())
            );
            continue;
        }
        for m in &r.matching_acls {
            let row = Row::new(
                m.resource_type,
                &m.resource_name,
                m.pattern_type,
                &m.principal,
                &m.host,
                m.operation,
                m.permission_type,
            );
            if m.error_code != 0 {
                failed = true;
                eprintln!(
                    "error: {}: {}",
                    row.text(),
                    kafka_error(m.error_code, m.error_message.as_ref())
                );
            } else {
                if !json {
                    println!("removed: {}", row.text());
                }
                removed.push(row.json());
            }
        }
        if exact && r.matching_acls.is_empty() {
            failed = true;
            eprintln!(
                "error: no such ACL: {} {} {} on {} {} ({}, host {})",
                upper(f.permission),
                f.principal.as_deref().unwrap_or("*"),
                upper(f.operation),
                upper(f.resource_type),
                f.resource_name.as_deref().unwrap_or("*"),
                upper(f.pattern_type),
                f.host.as_deref().unwrap_or("*")
            );
        }
    }
    if json {
        print_json(&json!({ "removed": removed }));
    } else if !exact && removed.is_empty() && !failed {
        println!("no ACL matched; nothing removed");
    }
    if failed {
        Err(Failure::Refused)
    } else {
        Ok(())
    }
}

async fn list(
    gw: &Gateway,
    resource_type: ResourceType,
    name: Option<String>,
    pattern: PatternType,
    principal: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(resource_type.as_i8())
        .with_resource_name_filter(name.as_deref().map(s))
        .with_pattern_type_filter(pattern.as_i8())
        .with_principal_filter(principal.as_deref().map(s))
        .with_host_filter(None)
        .with_operation(Operation::Any.as_i8())
        .with_permission_type(Permission::Any.as_i8());
    let resp = gw.send(req).await?;
    if resp.error_code != 0 {
        eprintln!(
            "error: {}",
            kafka_error(resp.error_code, resp.error_message.as_ref())
        );
        return Err(Failure::Refused);
    }
    let mut rows: Vec<Row> = resp
        .resources
        .iter()
        .flat_map(|r| {
            r.acls.iter().map(|a| {
                Row::new(
                    r.resource_type,
                    &r.resource_name,
                    r.pattern_type,
                    &a.principal,
                    &a.host,
                    a.operation,
                    a.permission_type,
                )
            })
        })
        .collect();
    rows.sort_by_key(Row::cells);
    if json {
        print_json(&serde_json::Value::Array(
            rows.iter().map(Row::json).collect(),
        ));
    } else {
        let cells: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
        print_table(
            &[
                "PRINCIPAL",
                "PERMISSION",
                "OPERATION",
                "RESOURCE_TYPE",
                "RESOURCE_NAME",
                "PATTERN",
                "HOST",
            ],
            &cells,
        );
    }
    Ok(())
}
