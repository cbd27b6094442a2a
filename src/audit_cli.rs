//! `gatehouse audit ...`: the auditor's offline tools over a copy of the audit trail, and three
//! commands that ask a running server.
//!
//! The offline commands work on a directory (default `<data-dir>/audit`) and need no running
//! server. A failed check exits 1 with the first bad place named. `audit status`, `audit
//! events` and `audit evidence` ask the admin REST API (`/v1/audit/status`, `/events`,
//! `/evidence`) with the connection flags, `--output table|json` and exit codes of every
//! admin-API command ([`crate::admin_cli`], [`crate::output`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gatehouse_compliance::audit::{cli, index};
use gatehouse_compliance::{ExportFormat, QueryFilter, Timestamp};
use serde_json::Value;

use crate::admin_cli::{AdminArgs, Failure, query, run_with};
use crate::output::{EXIT_FAILED, EXIT_OK, cell, print_fields, print_json, print_table};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// The running server's trail (admin API): latest signed checkpoint, self-check, mirror.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Events of the running server's verified trail (admin API), newest last; the read is
    /// itself audited.
    Events {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many (the newest; server default 1,000, at most 10,000).
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Download the evidence package of a period from the running server (admin API): the
    /// gzip tar `gatehouse evidence` would write, cut from the freshly verified trail.
    Evidence {
        /// Start of the period (inclusive): RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// End of the period (exclusive): RFC 3339 time or YYYY-MM-DD.
        #[arg(long)]
        to: String,
        /// Where to write the package (default: the server's file name, in this directory);
        /// an existing file is not overwritten.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Recompute every hash, signature, chain link and checkpoint; exit 1 on any change.
    Verify {
        /// The trail (default: <data-dir>/audit).
        dir: Option<PathBuf>,
        #[command(flatten)]
        common: AuditCommon,
    },
    /// Print an inclusion proof (JSON) for one event.
    Prove {
        /// Sequence number of the event.
        #[arg(long = "event")]
        event: u64,
        dir: Option<PathBuf>,
        #[command(flatten)]
        common: AuditCommon,
    },
    /// Check an inclusion proof file.
    VerifyProof {
        /// Proof file written by `audit prove`.
        file: PathBuf,
        #[command(flatten)]
        common: AuditCommon,
    },
    /// Print a consistency proof between two tree sizes (the log only grew).
    Consistency {
        #[arg(long)]
        old: u64,
        #[arg(long)]
        new: u64,
        dir: Option<PathBuf>,
        #[command(flatten)]
        common: AuditCommon,
    },
    /// Check a consistency proof against two checkpoint files.
    VerifyConsistency {
        proof: PathBuf,
        old_checkpoint: PathBuf,
        new_checkpoint: PathBuf,
        #[command(flatten)]
        common: AuditCommon,
    },
    /// Print matching events (JSON lines) of the verified trail.
    Query {
        dir: Option<PathBuf>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Scan the whole trail even when the query index (<dir>/../audit-index) exists.
        #[arg(long)]
        no_index: bool,
        #[command(flatten)]
        common: AuditCommon,
    },
    /// Move sealed segments (and their checkpoints) older than a date into an archive
    /// directory that verifies on its own; refuses anything younger than
    /// `[audit] retention_min_days` (default 365, PCI DSS 10.5.1).
    Archive {
        /// Cut-off: RFC 3339 time or YYYY-MM-DD (UTC midnight).
        #[arg(long)]
        before: String,
        /// New (or empty) archive directory.
        #[arg(long)]
        to: PathBuf,
        /// The trail (default: <data-dir>/audit).
        dir: Option<PathBuf>,
        /// Config file holding `[audit] retention_min_days`.
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        common: AuditCommon,
    },
    /// Export matching events as JSON lines or CSV.
    Export {
        dir: Option<PathBuf>,
        #[arg(long, value_parser = ["jsonl", "csv"], default_value = "jsonl")]
        format: String,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        common: AuditCommon,
    },
}

#[derive(Args, Clone)]
pub struct AuditCommon {
    /// Public key file(s) the trail must be signed by (pins the key history).
    #[arg(long = "trusted-key")]
    trusted_keys: Vec<PathBuf>,
    /// Data directory whose `audit/` is used when no DIR is given.
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "./gatehouse-data")]
    data_dir: PathBuf,
}

#[derive(Args, Clone, Default)]
pub struct FilterArgs {
    /// Events at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Events before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    principal: Option<String>,
    /// Resource name, or Type:name.
    #[arg(long)]
    resource: Option<String>,
    #[arg(long)]
    method: Option<String>,
    /// Only granted (true) or denied (false) decisions.
    #[arg(long)]
    granted: Option<bool>,
}

impl FilterArgs {
    fn filter(&self) -> Result<QueryFilter> {
        let time = |s: &Option<String>| -> Result<Option<Timestamp>> {
            s.as_deref()
                .map(|t| {
                    Timestamp::parse_rfc3339(t).map_err(|e| anyhow::anyhow!("bad time '{t}': {e}"))
                })
                .transpose()
        };
        Ok(QueryFilter {
            from: time(&self.from)?,
            to: time(&self.to)?,
            principal: self.principal.clone(),
            resource: self.resource.clone(),
            method: self.method.clone(),
            granted: self.granted,
        })
    }
}

fn dir_or_default(dir: &Option<PathBuf>, common: &AuditCommon) -> PathBuf {
    dir.clone().unwrap_or_else(|| common.data_dir.join("audit"))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn parse_date(s: &str) -> Result<Timestamp> {
    let text = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    Timestamp::parse_rfc3339(&text)
        .map_err(|e| anyhow::anyhow!("--before '{s}' is not YYYY-MM-DD or RFC 3339: {e}"))
}

/// Runs one audit command; returns the process exit code.
pub fn run(cmd: AuditCommand) -> i32 {
    match cmd {
        AuditCommand::Status { admin } => run_with(status(admin)),
        AuditCommand::Events {
            filter,
            limit,
            admin,
        } => run_with(events(filter, limit, admin)),
        AuditCommand::Evidence {
            from,
            to,
            out,
            admin,
        } => run_with(evidence(from, to, out, admin)),
        offline => match run_offline(offline) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("{e:#}");
                EXIT_FAILED
            }
        },
    }
}

/// `audit status`: `GET /v1/audit/status`.
async fn status(admin: AdminArgs) -> Result<(), Failure> {
    let v = admin
        .client()?
        .call("GET", "/v1/audit/status", None)
        .await?;
    if admin.json() {
        print_json(&v);
        return Ok(());
    }
    let c = &v["checkpoint"];
    let s = &v["self_check"];
    let m = &v["mirror"];
    let or_off = |x: &Value, what: &str| {
        if x.is_null() {
            "-".to_string()
        } else {
            cell(x.get(what))
        }
    };
    // Before the first interval has passed there is no verdict yet: say so instead of "false".
    let healthy = if !s.is_null() && s.get("checks_total").and_then(Value::as_u64) == Some(0) {
        "not run yet".to_string()
    } else {
        or_off(s, "healthy")
    };
    print_fields(&[
        ("checkpoint tree size", or_off(c, "tree_size")),
        ("checkpoint root hash", or_off(c, "root_hash")),
        ("checkpoint time", or_off(c, "time")),
        ("checkpoint key id", or_off(c, "key_id")),
        ("self-check healthy", healthy),
        ("self-check runs", or_off(s, "checks_total")),
        ("self-check failures", or_off(s, "failures_total")),
        ("verified events", or_off(s, "verified_events")),
        ("mirrored events", or_off(m, "events_total")),
        ("mirror failures", or_off(m, "failures_total")),
    ]);
    Ok(())
}

/// `audit events`: `GET /v1/audit/events`.
async fn events(filter: FilterArgs, limit: Option<usize>, admin: AdminArgs) -> Result<(), Failure> {
    let path = query(
        "/v1/audit/events",
        &[
            ("from", filter.from),
            ("to", filter.to),
            ("principal", filter.principal),
            ("resource", filter.resource),
            ("method", filter.method),
            ("granted", filter.granted.map(|g| g.to_string())),
            ("limit", limit.map(|l| l.to_string())),
        ],
    );
    let v = admin.client()?.call("GET", &path, None).await?;
    if admin.json() {
        print_json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let d = &e["data"];
            let resource = match (
                d["resource"]["type"].as_str(),
                d["resource"]["name"].as_str(),
            ) {
                (Some(t), Some(n)) => format!("{t}:{n}"),
                _ => "-".to_string(),
            };
            vec![
                cell(d.get("sequence")),
                cell(e.get("time")),
                cell(e.get("type")),
                cell(d.get("principal")),
                cell(d.get("method")),
                resource,
                cell(d.get("granted")),
                cell(d["outcome"].get("status")),
            ]
        })
        .collect();
    print_table(
        &[
            "SEQ",
            "TIME",
            "TYPE",
            "PRINCIPAL",
            "METHOD",
            "RESOURCE",
            "GRANTED",
            "OUTCOME",
        ],
        &rows,
    );
    if v["truncated"] == true {
        eprintln!(
            "{} of {} matching events shown (the newest); raise --limit or narrow the filter",
            cell(v.get("count")),
            cell(v.get("matched"))
        );
    }
    Ok(())
}

/// Largest evidence package downloaded (it is held in memory before it is written).
const MAX_PACKAGE: usize = 1024 * 1024 * 1024;
/// Time allowed for the server to verify the trail and send the package.
const PACKAGE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// The file name of a `Content-Disposition: attachment; filename="..."`, if it is a plain
/// name (no directory part).
fn attachment_name(disposition: Option<&str>) -> Option<String> {
    let (_, rest) = disposition?.split_once("filename=")?;
    let name = rest.split(';').next()?.trim().trim_matches('"');
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plain.then(|| name.to_string())
}

/// `audit evidence`: `GET /v1/audit/evidence`, written to a new file.
async fn evidence(
    from: String,
    to: String,
    out: Option<PathBuf>,
    admin: AdminArgs,
) -> Result<(), Failure> {
    if let Some(o) = &out
        && o.exists()
    {
        return Err(Failure::Local(anyhow::anyhow!(
            "--out {}: the file exists; nothing was downloaded",
            o.display()
        )));
    }
    let path = query(
        "/v1/audit/evidence",
        &[("from", Some(from)), ("to", Some(to))],
    );
    let r = admin
        .raw_client()?
        .download(&path, MAX_PACKAGE, PACKAGE_DEADLINE)
        .await?
        .map_err(Failure::from)?;
    let file = match out {
        Some(o) => o,
        None => PathBuf::from(
            attachment_name(r.header("content-disposition"))
                .unwrap_or_else(|| "gatehouse-evidence.tar.gz".to_string()),
        ),
    };
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .with_context(|| format!("cannot create {}", file.display()))?;
        f.write_all(&r.body)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    let h = |name: &str| r.header(name).unwrap_or("-").to_string();
    let report = serde_json::json!({
        "file": file.display().to_string(),
        "bytes": r.body.len(),
        "verdict": h("x-gatehouse-evidence-verdict"),
        "tree_size": h("x-gatehouse-evidence-tree-size"),
        "root_hash": h("x-gatehouse-evidence-root-hash"),
        "events": h("x-gatehouse-evidence-events"),
    });
    if admin.json() {
        print_json(&report);
    } else {
        print_fields(&[
            ("file", cell(report.get("file"))),
            ("bytes", cell(report.get("bytes"))),
            ("verification", cell(report.get("verdict"))),
            ("tree size", cell(report.get("tree_size"))),
            ("root hash", cell(report.get("root_hash"))),
            ("events", cell(report.get("events"))),
        ]);
    }
    Ok(())
}

/// Runs one offline audit command, printing its report; an error means the check failed.
fn run_offline(cmd: AuditCommand) -> Result<()> {
    let out = match cmd {
        AuditCommand::Status { .. }
        | AuditCommand::Events { .. }
        | AuditCommand::Evidence { .. } => {
            bail!("this audit command asks the admin API")
        }
        AuditCommand::Archive {
            before,
            to,
            dir,
            config,
            common,
        } => {
            let d = dir_or_default(&dir, &common);
            if !d.exists() {
                bail!("no audit trail at {}", d.display());
            }
            if !common.trusted_keys.is_empty() {
                // Pinned verification first (the archive itself re-verifies unpinned).
                cli::cli_verify(&d, &common.trusted_keys)
                    .map_err(|e| anyhow::anyhow!("ARCHIVE REFUSED: verification failed: {e}"))?;
            }
            let cfg = crate::config::Config::load(config.as_deref(), toml::Table::new())?;
            let opts = gatehouse_compliance::audit::archive::ArchiveOptions {
                before: parse_date(&before)?,
                now: Timestamp::now(),
                min_retention_days: cfg.audit.retention_min_days,
            };
            let r = gatehouse_compliance::audit::archive::archive(&d, &to, &opts)
                .map_err(|e| anyhow::anyhow!("ARCHIVE REFUSED: {e}"))?;
            r.to_text(&d, &to)
        }
        AuditCommand::Verify { dir, common } => {
            let d = dir_or_default(&dir, &common);
            if !d.exists() {
                bail!("no audit trail at {}", d.display());
            }
            cli::cli_verify(&d, &common.trusted_keys)
                .map_err(|e| anyhow::anyhow!("VERIFICATION FAILED: {e}"))?
        }
        AuditCommand::Prove { event, dir, common } => {
            cli::cli_prove(&dir_or_default(&dir, &common), event)?
        }
        AuditCommand::VerifyProof { file, common } => {
            cli::cli_verify_proof(&read(&file)?, &common.trusted_keys)?
        }
        AuditCommand::Consistency {
            old,
            new,
            dir,
            common,
        } => cli::cli_consistency(&dir_or_default(&dir, &common), old, new)?,
        AuditCommand::VerifyConsistency {
            proof,
            old_checkpoint,
            new_checkpoint,
            common,
        } => cli::cli_verify_consistency(
            &read(&proof)?,
            &old_checkpoint,
            &new_checkpoint,
            &common.trusted_keys,
        )?,
        AuditCommand::Query {
            dir,
            filter,
            no_index,
            common,
        } => {
            let d = dir_or_default(&dir, &common);
            if !no_index && index::index_exists(&d) {
                let filter = filter.filter()?;
                let (events, stats) = index::query_indexed_stored(&d, &filter)?;
                let mut stdout = std::io::stdout().lock();
                for e in &events {
                    stdout.write_all(&e.stored)?;
                    stdout.write_all(b"\n")?;
                }
                stdout.flush()?;
                if stats.indexed {
                    eprintln!(
                        "Queried {} events through the index (indexed to tree size {}, {} candidates read, {} later events scanned)\n  filter: {filter:?}",
                        events.len(),
                        stats.indexed_size,
                        stats.candidates,
                        stats.tail_scanned
                    );
                } else {
                    eprintln!(
                        "Queried {} events by a verifying scan (the index did not fit the trail; run `gatehouse serve` or remove {})\n  filter: {filter:?}",
                        events.len(),
                        index::index_path(&d).display()
                    );
                }
                return Ok(());
            }
            let mut stdout = std::io::stdout().lock();
            let summary = cli::cli_export(&d, ExportFormat::Jsonl, &filter.filter()?, &mut stdout)?;
            eprint!("{summary}");
            return Ok(());
        }
        AuditCommand::Export {
            dir,
            format,
            filter,
            common,
        } => {
            let f = if format == "csv" {
                ExportFormat::Csv
            } else {
                ExportFormat::Jsonl
            };
            let mut stdout = std::io::stdout().lock();
            let summary = cli::cli_export(
                &dir_or_default(&dir, &common),
                f,
                &filter.filter()?,
                &mut stdout,
            )?;
            eprint!("{summary}");
            return Ok(());
        }
    };
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_plain_file_names() {
        let name = |v: &str| attachment_name(Some(v));
        assert_eq!(
            name(r#"attachment; filename="gatehouse-evidence-20250101T000000Z-20250201T000000Z.tar.gz""#)
                .as_deref(),
            Some("gatehouse-evidence-20250101T000000Z-20250201T000000Z.tar.gz")
        );
        assert_eq!(
            name("attachment; filename=a.tgz; x=y").as_deref(),
            Some("a.tgz")
        );
        assert_eq!(name(r#"attachment; filename="../etc/passwd""#), None);
        assert_eq!(name(r#"attachment; filename="/abs""#), None);
        assert_eq!(name(r#"attachment; filename=".hidden""#), None);
        assert_eq!(name("attachment"), None);
        assert_eq!(attachment_name(None), None);
    }
}
