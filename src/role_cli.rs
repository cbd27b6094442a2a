//! `gatehouse role list|bind|unbind`: role bindings (RBAC on top of ACLs) through the admin
//! REST API (`/v1/roles`, see docs/admin-api.md). Kafka has no API for them, so unlike
//! `gatehouse acl` these go to the admin listener.
//!
//! Connection flags, `--output table|json` and exit codes are those of every admin-API command
//! ([`crate::admin_cli`], [`crate::output`]); unbinding a binding that does not exist is the
//! server's 404 (exit 1).

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::admin_cli::{AdminArgs, Failure, run_with};
use crate::output::{cell, print_json, print_table, rows_of};

/// `gatehouse role ...`.
#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// List the role bindings and the roles there are.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Bind a role to a principal on a resource (durable in `_gatehouse_acls`, audited).
    Bind {
        #[command(flatten)]
        binding: Binding,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a role binding (exit 1 with 404 when it does not exist).
    Unbind {
        #[command(flatten)]
        binding: Binding,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// One role binding.
#[derive(Args, Debug)]
pub struct Binding {
    /// Who, e.g. User:alice.
    #[arg(long, value_name = "TYPE:NAME")]
    principal: String,
    /// developer-read, developer-write, resource-owner, auditor or plaintext-reader.
    #[arg(long, value_name = "ROLE")]
    role: String,
    /// topic, group, cluster, transactional_id or subject.
    #[arg(long, value_name = "TYPE")]
    resource_type: String,
    /// The resource's name (or prefix with --prefixed; kafka-cluster for cluster).
    #[arg(long, value_name = "NAME")]
    resource_name: String,
    /// The resource name is a prefix.
    #[arg(long)]
    prefixed: bool,
}

impl Binding {
    fn json(&self) -> Value {
        json!({
            "principal": self.principal,
            "role": self.role,
            "resource_type": self.resource_type,
            "resource_name": self.resource_name,
            "pattern_type": if self.prefixed { "prefixed" } else { "literal" },
        })
    }
}

/// Runs one `role` command; returns the process exit code.
pub fn run(cmd: RoleCommand) -> i32 {
    run_with(execute(cmd))
}

const COLUMNS: [&str; 5] = [
    "principal",
    "role",
    "resource_type",
    "resource_name",
    "pattern_type",
];
const HEADER: [&str; 5] = [
    "PRINCIPAL",
    "ROLE",
    "RESOURCE_TYPE",
    "RESOURCE_NAME",
    "PATTERN",
];

async fn execute(cmd: RoleCommand) -> Result<(), Failure> {
    let (admin, path, body, verb) = match cmd {
        RoleCommand::List { admin } => {
            let v = admin.client()?.call("GET", "/v1/roles", None).await?;
            if admin.json() {
                print_json(&v);
            } else {
                print_table(&HEADER, &rows_of(&v, "roles", &COLUMNS));
            }
            return Ok(());
        }
        RoleCommand::Bind { binding, admin } => (admin, "/v1/roles", binding.json(), "bound"),
        RoleCommand::Unbind { binding, admin } => {
            (admin, "/v1/roles/unbind", binding.json(), "unbound")
        }
    };
    let v = admin.client()?.call("POST", path, Some(&body)).await?;
    if admin.json() {
        print_json(&v);
    } else {
        println!(
            "{verb}: {} -> {} on {} {} ({})",
            cell(v.get("principal")),
            cell(v.get("role")),
            cell(v.get("resource_type")),
            cell(v.get("resource_name")),
            cell(v.get("pattern_type"))
        );
    }
    Ok(())
}
