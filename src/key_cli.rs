//! `gatehouse key list|status|create|rotate|retire|destroy`: the key vault through the admin
//! REST API (`/v1/keys…`, see docs/admin-api.md).
//!
//! Connection flags, `--output table|json` (`--json` stays as its hidden alias) and exit
//! codes are those of every admin-API command ([`crate::admin_cli`], [`crate::output`]).
//! Only ids and KMS key names are shown, never key material.

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::admin_cli::{AdminArgs, Failure, run_with};
use crate::http_client::seg;
use crate::output::{cell, print_fields, print_json, print_table};

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List every key-encryption key (ids and states, never material).
    List {
        #[command(flatten)]
        common: AdminArgs,
    },
    /// Show one key: state, versions, earlier keys of the same name.
    Status {
        /// Topic name or template (`orders-*`).
        name: String,
        #[command(flatten)]
        common: AdminArgs,
    },
    /// Create a key for a topic or a template (`orders-*`, `*`).
    Create {
        /// Topic name or template.
        name: String,
        #[command(flatten)]
        common: AdminArgs,
    },
    /// Add a version: new data keys are wrapped by it, older versions keep decrypting.
    Rotate {
        /// Topic name or template.
        name: String,
        #[command(flatten)]
        common: AdminArgs,
    },
    /// Retire a key: no new encryption under it, decryption continues.
    Retire {
        /// Topic name or template.
        name: String,
        #[command(flatten)]
        common: AdminArgs,
    },
    /// Destroy a key (crypto-shredding): nothing encrypted under it decrypts again.
    Destroy {
        /// Topic name or template.
        name: String,
        /// The key's name again, to confirm.
        #[arg(long, value_name = "NAME")]
        confirm: String,
        #[command(flatten)]
        common: AdminArgs,
    },
}

/// Runs one `key` command; returns the process exit code.
pub fn run(cmd: KeyCommand) -> i32 {
    run_with(execute(cmd))
}

async fn execute(cmd: KeyCommand) -> Result<(), Failure> {
    match cmd {
        KeyCommand::List { common } => {
            let v = common.client()?.call("GET", "/v1/keys", None).await?;
            if common.json() {
                print_json(&v);
            } else {
                let rows: Vec<Vec<String>> = v
                    .get("keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(key_row)
                    .collect();
                print_table(&["NAME", "ID", "STATE", "VERSIONS", "CREATED"], &rows);
            }
        }
        KeyCommand::Status { name, common } => {
            let path = format!("/v1/keys/{}", seg(&name));
            let v = common.client()?.call("GET", &path, None).await?;
            if common.json() {
                print_json(&v);
            } else {
                print_status(&v);
            }
        }
        KeyCommand::Create { name, common } => {
            let body = json!({ "name": name });
            let v = common
                .client()?
                .call("POST", "/v1/keys", Some(&body))
                .await?;
            report(&common, "created", &v);
        }
        KeyCommand::Rotate { name, common } => {
            let path = format!("/v1/keys/{}/rotate", seg(&name));
            let v = common
                .client()?
                .call("POST", &path, Some(&json!({})))
                .await?;
            report(&common, "rotated", &v);
        }
        KeyCommand::Retire { name, common } => {
            let path = format!("/v1/keys/{}/retire", seg(&name));
            let v = common
                .client()?
                .call("POST", &path, Some(&json!({})))
                .await?;
            report(&common, "retired", &v);
        }
        KeyCommand::Destroy {
            name,
            confirm,
            common,
        } => {
            if confirm != name {
                return Err(Failure::Local(anyhow!(
                    "--confirm {confirm:?} does not match the key name {name:?}; nothing was destroyed"
                )));
            }
            let path = format!("/v1/keys/{}/destroy", seg(&name));
            let body = json!({ "confirm": confirm });
            let v = common.client()?.call("POST", &path, Some(&body)).await?;
            report(&common, "destroyed", &v);
        }
    }
    Ok(())
}

fn text(v: &Value, key: &str) -> String {
    cell(v.get(key))
}

fn key_row(k: &Value) -> Vec<String> {
    let versions = k
        .get("versions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    vec![
        text(k, "name"),
        text(k, "id"),
        text(k, "state"),
        versions.to_string(),
        text(k, "created"),
    ]
}

fn print_status(v: &Value) {
    print_fields(&[
        ("name", text(v, "name")),
        ("id", text(v, "id")),
        ("state", text(v, "state")),
        ("kms", text(v, "kms")),
        ("created", text(v, "created")),
        ("current", text(v, "current_version")),
        ("rotated", text(v, "rotated")),
    ]);
    let versions: Vec<Vec<String>> = v
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|ver| {
            vec![
                text(ver, "version"),
                text(ver, "created"),
                text(ver, "created_by"),
                text(ver, "destroyed"),
                text(ver, "kms_key"),
            ]
        })
        .collect();
    println!();
    print_table(
        &["VERSION", "CREATED", "BY", "DESTROYED", "KMS_KEY"],
        &versions,
    );
    let previous: Vec<Vec<String>> = v
        .get("previous")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| vec![text(p, "id"), text(p, "state")])
        .collect();
    if !previous.is_empty() {
        println!();
        print_table(&["EARLIER_KEY", "STATE"], &previous);
    }
}

fn report(common: &AdminArgs, what: &str, v: &Value) {
    if common.json() {
        print_json(v);
    } else {
        let version = v
            .get("versions")
            .and_then(Value::as_array)
            .and_then(|a| a.last())
            .map_or_else(|| "-".to_string(), |x| text(x, "version"));
        println!(
            "{what} {}: id {}, state {}, version {version}",
            text(v, "name"),
            text(v, "id"),
            text(v, "state")
        );
    }
}
