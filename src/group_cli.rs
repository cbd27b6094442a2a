//! `gatehouse group list|describe`: consumer groups, their members, committed offsets and lag
//! through the admin REST API (`/v1/groups…`, see docs/admin-api.md), with the connection
//! flags, output formats and exit codes of every admin-API command ([`AdminArgs`]).

use clap::Subcommand;

use crate::admin_cli::{AdminArgs, Failure, run_with};
use crate::http_client::seg;
use crate::output::{cell, print_fields, print_json, print_table, rows_of as rows};

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

async fn execute(cmd: GroupCommand) -> Result<(), Failure> {
    match cmd {
        GroupCommand::List { admin } => {
            let v = admin.client()?.call("GET", "/v1/groups", None).await?;
            if admin.json() {
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
            if admin.json() {
                print_json(&v);
                return Ok(());
            }
            print_fields(&[
                ("group", cell(v.get("group_id"))),
                ("state", cell(v.get("state"))),
                ("protocol", cell(v.get("protocol"))),
                ("total lag", cell(v.get("total_lag"))),
            ]);
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
