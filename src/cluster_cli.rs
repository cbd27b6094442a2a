//! `gatehouse cluster`: the cluster overview of the admin REST API (`GET /v1/cluster`): cluster
//! id, controller, brokers as the gateway advertises them, topic and partition counts over the
//! topics the caller may describe, listeners, the registry URL and the health of every part.
//!
//! Connection flags, `--output table|json` and exit codes are those of every admin-API command
//! ([`crate::admin_cli`], [`crate::output`]).

use clap::Args;
use serde_json::Value;

use crate::admin_cli::{AdminArgs, Failure, run_with};
use crate::output::{cell, print_fields, print_json, print_table, rows_of};

/// `gatehouse cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

/// Runs `gatehouse cluster`; returns the process exit code.
pub fn run(args: ClusterArgs) -> i32 {
    run_with(execute(args))
}

/// An object's entries as two-column rows (`key`, value as a cell).
pub fn object_rows(v: Option<&Value>) -> Vec<Vec<String>> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, x)| vec![k.clone(), cell(Some(x))])
        .collect()
}

async fn execute(args: ClusterArgs) -> Result<(), Failure> {
    let admin = args.admin;
    let v = admin.client()?.call("GET", "/v1/cluster", None).await?;
    if admin.json() {
        print_json(&v);
        return Ok(());
    }
    print_fields(&[
        ("cluster id", cell(v.get("cluster_id"))),
        ("controller", cell(v.get("controller_id"))),
        ("topics", cell(v.get("topic_count"))),
        ("partitions", cell(v.get("partition_count"))),
        ("registry", cell(v.get("registry_url"))),
        ("you are", cell(v.get("principal"))),
    ]);
    println!();
    print_table(
        &["BROKER", "HOST", "PORT", "RACK"],
        &rows_of(&v, "brokers", &["node_id", "host", "port", "rack"]),
    );
    println!();
    print_table(&["LISTENER", "ADDRESS"], &object_rows(v.get("listeners")));
    println!();
    print_table(&["PART", "HEALTH"], &object_rows(v.get("health")));
    Ok(())
}
