//! `gatehouse topic list|create|describe|delete|alter`: topics through the admin REST API
//! (`/v1/topics…`, see docs/admin-api.md), which acts as the logged-in user through the
//! gateway (its ACLs, governance configs and audit apply).
//!
//! Plain HTTP/1.1 to the admin listener (`--admin-url`, default `http://127.0.0.1:8080`, env
//! `GATEHOUSE_ADMIN_URL`), HTTP Basic as `--user` (default `admin`) with the password from the
//! variable named by `--password-env` (default `GATEHOUSE_ADMIN_PASSWORD`); secrets are never
//! taken on the command line nor printed. `--output table|json` (default table).
//!
//! This module also holds what `gatehouse group` shares with it ([`AdminArgs`], [`run_with`],
//! [`Failure`]). Exit codes (as `gatehouse key`): 0 success; 1 the server refused the request
//! (401, 403, 404, 409, 422, ...); 2 usage or connection errors.

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use crate::http_client::{HttpClient, seg};
use crate::user_cli::print_table;

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// The API's JSON.
    Json,
}

/// Flags shared by every `topic` and `group` command.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Admin API base URL (plain HTTP).
    #[arg(
        long,
        env = "GATEHOUSE_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    admin_url: String,
    /// User for HTTP Basic authentication (password from --password-env).
    #[arg(long, default_value = "admin")]
    user: String,
    /// Environment variable holding the --user password.
    #[arg(long, default_value = crate::key_cli::PASSWORD_ENV)]
    password_env: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Failures with their exit code.
pub enum Failure {
    /// The server answered with an error (exit 1).
    Refused {
        status: u16,
        code: i64,
        message: String,
    },
    /// Usage or connection problems (exit 2).
    Local(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Local(e)
    }
}

/// An admin API client: 2xx JSON, or [`Failure::Refused`].
pub struct Client(HttpClient);

impl AdminArgs {
    /// A client logged in as `--user`.
    pub fn client(&self) -> Result<Client> {
        let c = HttpClient::admin(&self.admin_url, &self.user, &self.password_env)?.with_media(
            "gatehouse-cli",
            "application/json",
            "application/json",
        );
        Ok(Client(c))
    }
}

impl Client {
    /// One request; the JSON of a 2xx answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        self.0
            .call(method, path, body)
            .await?
            .map_err(|e| Failure::Refused {
                status: e.status,
                code: e.code,
                message: e.message,
            })
    }
}

/// Runs `work` on a fresh runtime; returns the exit code.
pub fn run_with<F>(work: F) -> i32
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 2;
        }
    };
    match rt.block_on(work) {
        Ok(()) => 0,
        Err(Failure::Refused {
            status,
            code,
            message,
        }) => {
            eprintln!("error: the admin API answered {status} (error code {code}): {message}");
            1
        }
        Err(Failure::Local(e)) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

/// Prints JSON to stdout.
pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// A JSON value as a table cell (`-` for null or missing).
pub fn cell(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    }
}

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
            if admin.output == Output::Json {
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
            if admin.output == Output::Json {
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
            if admin.output == Output::Json {
                print_json(&v);
                return Ok(());
            }
            println!("topic:      {}", cell(v.get("name")));
            println!("topic id:   {}", cell(v.get("topic_id")));
            println!("governance: {}", governance_cell(&v));
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
            if admin.output == Output::Json {
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
            if admin.output == Output::Json {
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
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_pairs() {
        let m = pairs(&["a=1".into(), "b=x=y".into()], "--set")
            .ok()
            .expect("valid");
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x=y");
        assert!(pairs(&["novalue".into()], "--set").is_err());
        assert!(pairs(&["=v".into()], "--set").is_err());
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
