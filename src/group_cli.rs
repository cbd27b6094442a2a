//! `gatehouse group list|describe`: consumer groups, their members, committed offsets and lag
//! through the admin REST API (`/v1/groups…`, see docs/admin-api.md), with the connection
//! flags, output formats and exit codes of `gatehouse topic` ([`AdminArgs`]).

use clap::Subcommand;
use serde_json::Value;

use crate::http_client::seg;
use crate::topic_cli::{AdminArgs, Failure, Output, cell, print_json, run_with};
use crate::user_cli::print_table;

/// `gatehouse group ...`.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List the consumer groups you may describe.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// A group's state, members, committed offsets and lag per partition.
    Describe {
        /// Group id.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Runs one `group` command; returns the process exit code.
pub fn run(cmd: GroupCommand) -> i32 {
    run_with(execute(cmd))
}

fn rows(v: &Value, key: &str, cols: &[&str]) -> Vec<Vec<String>> {
    v[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| cols.iter().map(|c| cell(row.get(*c))).collect())
        .collect()
}

async fn execute(cmd: GroupCommand) -> Result<(), Failure> {
    match cmd {
        GroupCommand::List { admin } => {
            let v = admin.client()?.call("GET", "/v1/groups", None).await?;
            if admin.output == Output::Json {
                print_json(&v);
            } else {
                print_table(
                    &["GROUP", "TYPE", "STATE"],
                    &rows(&v, "groups", &["group_id", "protocol_type", "state"]),
                );
            }
        }
        GroupCommand::Describe { id, admin } => {
            let path = format!("/v1/groups/{}", seg(&id));
            let v = admin.client()?.call("GET", &path, None).await?;
            if admin.output == Output::Json {
                print_json(&v);
                return Ok(());
            }
            println!("group:     {}", cell(v.get("group_id")));
            println!("state:     {}", cell(v.get("state")));
            println!("protocol:  {}", cell(v.get("protocol")));
            println!("total lag: {}", cell(v.get("total_lag")));
            println!();
            print_table(
                &["MEMBER", "CLIENT_ID", "HOST"],
                &rows(&v, "members", &["member_id", "client_id", "client_host"]),
            );
            println!();
            print_table(
                &["TOPIC", "PARTITION", "COMMITTED", "LOG_END", "LAG"],
                &rows(
                    &v,
                    "offsets",
                    &[
                        "topic",
                        "partition",
                        "committed_offset",
                        "log_end_offset",
                        "lag",
                    ],
                ),
            );
        }
    }
    Ok(())
}
