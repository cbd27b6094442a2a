//! `gatehouse topic list|create|describe|delete|alter|messages`: topics through the admin REST
//! API (`/v1/topics…`, see docs/admin-api.md), which acts as the logged-in user through the
//! gateway (its ACLs, governance configs and audit apply).
//!
//! Connection flags, `--output table|json` and exit codes are those of every admin-API command
//! ([`crate::admin_cli`], [`crate::output`]).

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::admin_cli::{AdminArgs, Failure, query, run_with};
use crate::http_client::seg;
use crate::output::{cell, print_fields, print_json, print_table};

/// `gatehouse topic ...`.
#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// List the topics you may describe, with their governance state.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Create a topic (governance configs such as gatehouse.encryption=true included).
    Create {
        /// Topic name.
        name: String,
        /// Partitions (default: the broker's default).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Partitions (leader, offsets) and every config with its source.
    Describe {
        /// Topic name.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete a topic and its records.
    Delete {
        /// Topic name.
        name: String,
        /// The topic's name again, to confirm.
        #[arg(long, value_name = "NAME")]
        confirm: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set or delete topic configs (IncrementalAlterConfigs).
    Alter {
        /// Topic name.
        name: String,
        /// Set a config, KEY=VALUE (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Delete a config (back to its default; repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Read records of one partition as the logged-in user (READ on the topic; an encrypted
    /// topic's records decrypt only for the readers it allows).
    Messages {
        /// Topic name.
        name: String,
        /// Partition (default 0).
        #[arg(long)]
        partition: Option<i32>,
        /// First offset to read (default: the last --limit records of the partition).
        #[arg(long)]
        offset: Option<i64>,
        /// At most this many records (default 20, at most 100).
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Runs one `topic` command; returns the process exit code.
pub fn run(cmd: TopicCommand) -> i32 {
    run_with(execute(cmd))
}

fn pairs(items: &[String], flag: &str) -> Result<Map<String, Value>, Failure> {
    let mut out = Map::new();
    for i in items {
        let Some((k, v)) = i.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Failure::Local(anyhow!("{flag} {i:?}: expected KEY=VALUE")));
        };
        out.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(out)
}

fn governance_cell(t: &Value) -> String {
    let g = &t["governance"];
    if g.is_null() {
        return "-".to_string();
    }
    let mut parts = Vec::new();
    for (key, label) in [("value_validation", "value"), ("key_validation", "key")] {
        if let Some(v) = g[key].as_str().filter(|v| *v != "none") {
            parts.push(format!("{label}:{v}"));
        }
    }
    if g["encryption"] == true {
        parts.push(format!(
            "encrypted({})",
            g["encryption_readers"].as_str().unwrap_or("all")
        ));
    }
    if g["pan_guard"] == true {
        parts.push("pan-guard".to_string());
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(",")
    }
}

async fn execute(cmd: TopicCommand) -> Result<(), Failure> {
    match cmd {
        TopicCommand::List { admin } => {
            let v = admin.client()?.call("GET", "/v1/topics", None).await?;
            if admin.json() {
                print_json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v["topics"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    vec![
                        cell(t.get("name")),
                        cell(t.get("partitions")),
                        governance_cell(t),
                    ]
                })
                .collect();
            print_table(&["TOPIC", "PARTITIONS", "GOVERNANCE"], &rows);
        }
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            admin,
        } => {
            let configs = pairs(&configs, "--config")?;
            let mut body = json!({ "name": name, "configs": configs });
            if let Some(p) = partitions {
                body["partitions"] = json!(p);
            }
            if let Some(r) = replication_factor {
                body["replication_factor"] = json!(r);
            }
            let v = admin
                .client()?
                .call("POST", "/v1/topics", Some(&body))
                .await?;
            if admin.json() {
                print_json(&v);
            } else {
                println!(
                    "created topic {} ({} partitions, replication factor {})",
                    cell(v.get("name")),
                    cell(v.get("partitions")),
                    cell(v.get("replication_factor"))
                );
            }
        }
        TopicCommand::Describe { name, admin } => {
            let path = format!("/v1/topics/{}", seg(&name));
            let v = admin.client()?.call("GET", &path, None).await?;
            if admin.json() {
                print_json(&v);
                return Ok(());
            }
            print_fields(&[
                ("topic", cell(v.get("name"))),
                ("topic id", cell(v.get("topic_id"))),
                ("governance", governance_cell(&v)),
            ]);
            let rows: Vec<Vec<String>> = v["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    vec![
                        cell(p.get("partition")),
                        cell(p.get("leader")),
                        cell(p.get("earliest_offset")),
                        cell(p.get("latest_offset")),
                    ]
                })
                .collect();
            println!();
            print_table(&["PARTITION", "LEADER", "EARLIEST", "LATEST"], &rows);
            println!();
            match v["configs"].as_object() {
                Some(configs) => {
                    let rows: Vec<Vec<String>> = configs
                        .iter()
                        .map(|(k, c)| vec![k.clone(), cell(c.get("value")), cell(c.get("source"))])
                        .collect();
                    print_table(&["CONFIG", "VALUE", "SOURCE"], &rows);
                }
                None => println!("configs: {}", cell(v.get("configs_error"))),
            }
        }
        TopicCommand::Delete {
            name,
            confirm,
            admin,
        } => {
            if confirm != name {
                return Err(Failure::Local(anyhow!(
                    "--confirm {confirm:?} does not match the topic name {name:?}; nothing was deleted"
                )));
            }
            let path = format!("/v1/topics/{}?confirm={}", seg(&name), seg(&confirm));
            let v = admin.client()?.call("DELETE", &path, None).await?;
            if admin.json() {
                print_json(&v);
            } else {
                println!("deleted topic {name}");
            }
        }
        TopicCommand::Alter {
            name,
            set,
            delete,
            admin,
        } => {
            if set.is_empty() && delete.is_empty() {
                return Err(Failure::Local(anyhow!(
                    "nothing to change: give --set KEY=VALUE and/or --delete KEY"
                )));
            }
            let body = json!({ "set": pairs(&set, "--set")?, "delete": delete });
            let path = format!("/v1/topics/{}/configs", seg(&name));
            let v = admin.client()?.call("PATCH", &path, Some(&body)).await?;
            if admin.json() {
                print_json(&v);
            } else {
                for (k, val) in v["set"].as_object().into_iter().flatten() {
                    println!("{name}: set {k}={}", cell(Some(val)));
                }
                for k in v["deleted"].as_array().into_iter().flatten() {
                    println!("{name}: deleted {}", cell(Some(k)));
                }
            }
        }
        TopicCommand::Messages {
            name,
            partition,
            offset,
            limit,
            admin,
        } => {
            let path = query(
                &format!("/v1/topics/{}/messages", seg(&name)),
                &[
                    ("partition", partition.map(|p| p.to_string())),
                    ("offset", offset.map(|o| o.to_string())),
                    ("limit", limit.map(|l| l.to_string())),
                ],
            );
            let v = admin.client()?.call("GET", &path, None).await?;
            if admin.json() {
                print_json(&v);
            } else {
                print_table(
                    &["PARTITION", "OFFSET", "TIMESTAMP", "KEY", "VALUE"],
                    &message_rows(&v),
                );
            }
        }
    }
    Ok(())
}

/// The records of a `/messages` answer as table rows.
fn message_rows(v: &Value) -> Vec<Vec<String>> {
    v["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            vec![
                cell(m.get("partition").or_else(|| v.get("partition"))),
                cell(m.get("offset")),
                cell(m.get("timestamp")),
                payload_cell(&m["key"]),
                payload_cell(&m["value"]),
            ]
        })
        .collect()
}

/// A key or value (`{"encoding","data","encrypted","schema_id","size","truncated"}`) as one
/// cell: the text, `base64:` and the data otherwise, marked when encrypted, in Confluent's wire
/// format or cut short.
fn payload_cell(p: &Value) -> String {
    if p.is_null() {
        return "-".to_string();
    }
    let mut out = String::new();
    if p["encrypted"] == true {
        out.push_str("(encrypted) ");
    }
    if let Some(id) = p["schema_id"].as_i64() {
        out.push_str(&format!("(schema {id}) "));
    }
    if p["encoding"] == "base64" {
        out.push_str("base64:");
    }
    out.push_str(p["data"].as_str().unwrap_or_default());
    if p["truncated"] == true {
        out.push_str(&format!("... ({} bytes)", cell(p.get("size"))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_pairs() {
        let m = pairs(&["a=1".into(), "b=x=y".into()], "--set").expect("valid");
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x=y");
        assert!(pairs(&["novalue".into()], "--set").is_err());
        assert!(pairs(&["=v".into()], "--set").is_err());
    }

    #[test]
    fn payload_cells() {
        assert_eq!(payload_cell(&Value::Null), "-");
        assert_eq!(
            payload_cell(
                &json!({"encoding": "text", "data": "hi", "encrypted": false,
                "schema_id": null, "size": 2, "truncated": false})
            ),
            "hi"
        );
        assert_eq!(
            payload_cell(
                &json!({"encoding": "base64", "data": "AAE=", "encrypted": true,
                "schema_id": 7, "size": 90000, "truncated": true})
            ),
            "(encrypted) (schema 7) base64:AAE=... (90000 bytes)"
        );
        let rows = message_rows(&json!({"partition": 1, "records": [
            {"offset": 5, "timestamp": 9, "key": null, "value": {"encoding": "text", "data": "v"}}
        ]}));
        assert_eq!(rows, vec![vec!["1", "5", "9", "-", "v"]]);
    }

    #[test]
    fn governance_summary_cell() {
        let t = json!({"governance": {"value_validation": "schema-id", "key_validation": "none",
            "encryption": true, "encryption_readers": "role", "pan_guard": true}});
        assert_eq!(
            governance_cell(&t),
            "value:schema-id,encrypted(role),pan-guard"
        );
        assert_eq!(governance_cell(&json!({"governance": null})), "-");
    }
}
