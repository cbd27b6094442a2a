//! `gatehouse evidence`: writes an auditor's evidence package for a period, cut from the
//! verified audit trail ([`gatehouse_compliance::audit::evidence`]), and `--check DIR`
//! re-checks a package against its manifest.
//!
//! The trail must verify: otherwise nothing is written and the command exits 1 with the
//! first bad place. A configuration snapshot is added when `--config` is given or the data
//! directory holds a node; it lists only what the configuration says (no secrets) and names
//! what it cannot include.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use gatehouse_compliance::Timestamp;
use gatehouse_compliance::audit::cli::load_trusted_keys;
use gatehouse_compliance::audit::evidence::{EvidenceRequest, build_evidence, check_manifest};
use serde_json::{Value, json};

use crate::config::Config;

#[derive(Args, Debug)]
pub struct EvidenceArgs {
    /// Start of the period (RFC 3339, inclusive), e.g. 2025-01-01T00:00:00Z.
    #[arg(long, required_unless_present = "check")]
    from: Option<String>,
    /// End of the period (RFC 3339, exclusive).
    #[arg(long, required_unless_present = "check")]
    to: Option<String>,
    /// New (or empty) directory to write the package to.
    #[arg(long, required_unless_present = "check")]
    out: Option<PathBuf>,
    /// The audit trail (default: <data-dir>/audit); a copy is enough.
    #[arg(long)]
    audit_dir: Option<PathBuf>,
    /// Public key file(s) the trail's key history must start at (64 hex digits).
    #[arg(long = "public-key")]
    public_keys: Vec<PathBuf>,
    /// Data directory (for the default audit directory and the configuration snapshot).
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "./gatehouse-data")]
    data_dir: PathBuf,
    /// The node's config file, for the configuration snapshot.
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    config: Option<PathBuf>,
    /// Instead: re-check the package in DIR against its manifest.json.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["from", "to", "out"])]
    check: Option<PathBuf>,
}

fn time(flag: &str, v: Option<&str>) -> Result<Timestamp> {
    let Some(t) = v else {
        bail!("{flag} is required");
    };
    Timestamp::parse_rfc3339(t).map_err(|e| anyhow::anyhow!("{flag} '{t}' is not RFC 3339: {e}"))
}

/// Runs the command; an error means no (valid) package.
pub fn run(args: EvidenceArgs) -> Result<()> {
    if let Some(dir) = &args.check {
        let n = check_manifest(dir)?;
        println!(
            "Evidence package {}: all {n} files match manifest.json",
            dir.display()
        );
        return Ok(());
    }
    let from = time("--from", args.from.as_deref())?;
    let to = time("--to", args.to.as_deref())?;
    let Some(out) = args.out.clone() else {
        bail!("--out is required");
    };
    let audit_dir = args
        .audit_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("audit"));
    if !audit_dir.join("keys").join("history.jsonl").exists() {
        bail!("no audit trail at {}", audit_dir.display());
    }
    let trusted = if args.public_keys.is_empty() {
        eprintln!(
            "warning: no --public-key given: the package states that signatures prove only internal consistency"
        );
        None
    } else {
        Some(load_trusted_keys(&args.public_keys)?)
    };
    let configuration = configuration_snapshot(&args)?;
    let started = std::time::Instant::now();
    let summary = build_evidence(&EvidenceRequest {
        audit_dir: &audit_dir,
        out_dir: &out,
        from,
        to,
        trusted_keys: trusted,
        configuration,
        generator: format!("gatehouse {}", env!("CARGO_PKG_VERSION")),
        operator: std::env::var("USER").ok(),
    })
    .context("EVIDENCE REFUSED")?;
    print!("{}", summary.to_text(&out));
    eprintln!(
        "  ({} events verified in {:.2} s)",
        summary.report.tree_size,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The configuration snapshot: what `serve` would run with, from `--config` and the data
/// directory. `None` when neither names a node.
fn configuration_snapshot(args: &EvidenceArgs) -> Result<Option<Value>> {
    let node_id = std::fs::read_to_string(args.data_dir.join("node-id"))
        .ok()
        .map(|s| s.trim().to_owned());
    if args.config.is_none() && node_id.is_none() {
        return Ok(None);
    }
    let mut overrides = toml::Table::new();
    overrides.insert(
        "data_dir".into(),
        toml::Value::String(args.data_dir.display().to_string()),
    );
    let c = Config::load(args.config.as_deref(), overrides)
        .context("cannot load the configuration for the snapshot")?;
    let g = &c.gateway;
    let fingerprint = std::fs::read_to_string(args.data_dir.join("keys/master.fingerprint"))
        .ok()
        .map(|s| s.trim().to_owned());
    Ok(Some(json!({
        "source": {
            "configFile": args.config.as_ref().map(|p| p.display().to_string()),
            "dataDir": c.data_dir.display().to_string(),
            "note": "the effective configuration from the embedded defaults, the config file and the environment of this command; flags given to `serve` itself are not visible here",
        },
        "node": { "nodeId": node_id, "masterKeyFingerprint": fingerprint },
        "gateway": {
            "tlsListener": c.gateway_listen.to_string(),
            "tlsVersions": ["TLSv1.3", "TLSv1.2"],
            "tlsMinVersion": "TLSv1.2",
            "tlsCertificate": if g.tls_cert.is_empty() { "generated by serve under <data-dir>/tls" } else { "configured file" },
            "clientCertificatesRequested": !g.client_ca.is_empty(),
            "requireClientCertificate": g.require_client_cert,
            "plaintextListener": c.gateway_plain_listen.to_string(),
            "allowPlaintextRemote": g.allow_plaintext_remote,
            "saslMechanisms": g.sasl_mechanisms,
            "superUsers": g.super_users,
            "sessionLifetimeMs": g.session_lifetime_ms,
            "maxFailuresPerMinute": g.max_failures_per_minute,
            "proxyProtocol": g.proxy_protocol,
        },
        "upstream": {
            "external": c.upstream_bootstrap.is_some(),
            "tls": g.upstream_tls,
            "saslMechanism": g.upstream_sasl_mechanism,
        },
        "registryListen": c.registry_listen.to_string(),
        "adminListen": c.admin_listen.to_string(),
        "oidcIssuer": c.oidc_issuer,
        "kms": format!("{:?}", c.kms),
        "audit": {
            "selfCheckIntervalMs": c.audit.self_check_interval_ms,
            "retentionMinDays": c.audit.retention_min_days,
        },
        "notIncluded": [
            "ACLs and their count: kept in the _gatehouse_acls topic, not readable offline; every ACL change of the period is in populations/access-changes",
            "SCRAM users: kept in _gatehouse_users; user changes are in populations/access-changes (kafka.AlterUserScramCredentials)",
            "per-topic encryption and schema validation: kept in _gatehouse_topics; their changes are in populations/admin-changes (kafka.CreateTopics, kafka.AlterConfigs, kafka.IncrementalAlterConfigs)",
        ],
    })))
}
