//! `gatehouse audit ...`: the auditor's offline tools over a copy of the audit trail.
//!
//! Every command works on a directory (default `<data-dir>/audit`) and needs no running
//! server. A failed check exits non-zero with the first bad place named.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gatehouse_compliance::audit::{cli, index};
use gatehouse_compliance::{ExportFormat, QueryFilter, Timestamp};

#[derive(Subcommand)]
pub enum AuditCommand {
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

/// Runs one audit command, printing its report; an error means the check failed.
pub fn run(cmd: AuditCommand) -> Result<()> {
    let out = match cmd {
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
