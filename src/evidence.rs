//! `gatehouse evidence`: writes an auditor's evidence package for a period, cut from the
//! verified audit trail ([`gatehouse_compliance::audit::evidence`]), and `--check DIR`
//! re-checks a package against its manifest. The admin API's `GET /v1/audit/evidence` builds
//! the same package through the same function ([`build_package`]) and sends it as one
//! gzip-compressed tar ([`write_tar_gz`]).
//!
//! The trail must verify: otherwise nothing is written and the command exits 1 with the
//! first bad place. A configuration snapshot is added when `--config` is given or the data
//! directory holds a node; it lists only what the configuration says (no secrets) and names
//! what it cannot include.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use gatehouse_compliance::audit::cli::load_trusted_keys;
use gatehouse_compliance::audit::evidence::{
    EvidenceError, EvidenceRequest, EvidenceSummary, build_evidence, check_manifest,
};
use gatehouse_compliance::{PublicKey, Timestamp};
use serde_json::{Value, json};

use crate::config::Config;

/// Longest period one package built by the admin API may cover (the CLI has no limit).
pub const MAX_PERIOD_DAYS: i64 = 366;

/// What one package is built from: the CLI's flags or the admin endpoint's query.
pub struct PackageRequest<'a> {
    /// The audit directory (a copy is enough).
    pub audit_dir: &'a Path,
    /// A new (or empty) directory to write the package to.
    pub out: &'a Path,
    /// Start of the period (inclusive).
    pub from: Timestamp,
    /// End of the period (exclusive).
    pub to: Timestamp,
    /// Public keys the trail's key history must start at (`None`: internal consistency only).
    pub trusted_keys: Option<Vec<PublicKey>>,
    /// The configuration snapshot to include.
    pub configuration: Option<Value>,
    /// Who asked (the OS user, or the API caller's principal).
    pub operator: Option<String>,
}

/// Builds an evidence package: the one function behind `gatehouse evidence` and
/// `GET /v1/audit/evidence`. Nothing is written when the trail does not verify.
pub fn build_package(req: PackageRequest<'_>) -> Result<EvidenceSummary, EvidenceError> {
    if !req.audit_dir.join("keys").join("history.jsonl").exists() {
        return Err(EvidenceError::Input(format!(
            "no audit trail at {}",
            req.audit_dir.display()
        )));
    }
    build_evidence(&EvidenceRequest {
        audit_dir: req.audit_dir,
        out_dir: req.out,
        from: req.from,
        to: req.to,
        trusted_keys: req.trusted_keys,
        configuration: req.configuration,
        generator: format!("gatehouse {}", env!("CARGO_PKG_VERSION")),
        operator: req.operator,
    })
}

/// The period of a package from two RFC 3339 times: `from` before `to`, at most
/// `max_days` apart (when given). The error is a sentence for the user.
pub fn period(
    from: Option<&str>,
    to: Option<&str>,
    max_days: Option<i64>,
) -> Result<(Timestamp, Timestamp), String> {
    let parse = |name: &str, v: Option<&str>| {
        let v = v.map(str::trim).filter(|v| !v.is_empty()).ok_or_else(|| {
            format!("{name} is required: an RFC 3339 time such as 2025-01-01T00:00:00Z")
        })?;
        Timestamp::parse_rfc3339(v).map_err(|e| {
            format!("{name} is not an RFC 3339 time such as 2025-01-01T00:00:00Z ({e})")
        })
    };
    let (from, to) = (parse("from", from)?, parse("to", to)?);
    if from >= to {
        return Err("the period is empty: from must be before to".into());
    }
    if let Some(days) = max_days {
        let span = to.unix_micros().saturating_sub(from.unix_micros());
        if span > days.saturating_mul(86_400_000_000) {
            return Err(format!(
                "the period is longer than {days} days: download it in parts, or run `gatehouse evidence` on a copy of the trail"
            ));
        }
    }
    Ok((from, to))
}

/// The name of a package's top directory (and, with `.tar.gz`, of its download):
/// `gatehouse-evidence-<from>-<to>` with the times in basic ISO 8601 (`20250101T000000Z`).
pub fn package_name(from: Timestamp, to: Timestamp) -> String {
    let basic = |t: Timestamp| {
        let s = t.to_rfc3339();
        // 2025-01-01T00:00:00.000000Z -> 20250101T000000Z
        let (date_time, _) = s.split_once('.').unwrap_or((s.trim_end_matches('Z'), ""));
        let mut out: String = date_time
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .collect();
        out.push('Z');
        out
    };
    format!("gatehouse-evidence-{}-{}", basic(from), basic(to))
}

/// Writes every file under `dir` into a gzip-compressed tar, under `prefix/`, sorted by path,
/// as regular files with mode 0644 and modification time `mtime` (seconds since the epoch).
pub fn write_tar_gz(dir: &Path, prefix: &str, mtime: u64, out: impl Write) -> io::Result<()> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                walk(root, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push((rel.to_string_lossy().replace('\\', "/"), p));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (rel, path) in files {
        let mut file = std::fs::File::open(&path)?;
        let mut header = tar::Header::new_ustar();
        header.set_size(file.metadata()?.len());
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("{prefix}/{rel}"), &mut file)?;
    }
    tar.into_inner()?.finish()?.flush()
}

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
    let summary = build_package(PackageRequest {
        audit_dir: &audit_dir,
        out: &out,
        from,
        to,
        trusted_keys: trusted,
        configuration,
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
    Ok(Some(configuration_of(
        &c,
        args.config.as_deref(),
        "the effective configuration from the embedded defaults, the config file and the environment of this command; flags given to `serve` itself are not visible here",
    )))
}

/// The configuration snapshot of `c` (no secrets); `note` says where it comes from. `serve`
/// hands its own to the admin API, so downloaded packages carry the configuration the node
/// runs with.
pub fn configuration_of(c: &Config, config_file: Option<&Path>, note: &str) -> Value {
    let node_id = std::fs::read_to_string(c.data_dir.join("node-id"))
        .ok()
        .map(|s| s.trim().to_owned());
    let fingerprint = std::fs::read_to_string(c.data_dir.join("keys/master.fingerprint"))
        .ok()
        .map(|s| s.trim().to_owned());
    let g = &c.gateway;
    json!({
        "source": {
            "configFile": config_file.map(|p| p.display().to_string()),
            "dataDir": c.data_dir.display().to_string(),
            "note": note,
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_validated() {
        let (f, t) = period(
            Some("2025-01-01T00:00:00Z"),
            Some("2025-01-02T00:00:00Z"),
            Some(1),
        )
        .expect("one day");
        assert!(f < t);
        assert_eq!(
            package_name(f, t),
            "gatehouse-evidence-20250101T000000Z-20250102T000000Z"
        );
        for (from, to, why) in [
            (None, Some("2025-01-02T00:00:00Z"), "from is required"),
            (Some("2025-01-01T00:00:00Z"), Some(""), "to is required"),
            (
                Some("yesterday"),
                Some("2025-01-02T00:00:00Z"),
                "not an RFC 3339",
            ),
            (
                Some("2025-01-02T00:00:00Z"),
                Some("2025-01-01T00:00:00Z"),
                "period is empty",
            ),
            (
                Some("2025-01-01T00:00:00Z"),
                Some("2025-01-02T00:00:01Z"),
                "longer than 1 days",
            ),
        ] {
            let e = period(from, to, Some(1)).expect_err(why);
            assert!(e.contains(why), "{e}");
        }
        assert!(
            period(
                Some("2000-01-01T00:00:00Z"),
                Some("2025-01-01T00:00:00Z"),
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn packages_tar_sorted_under_a_prefix() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("populations")).expect("mkdir");
        std::fs::write(dir.path().join("manifest.json"), b"{}").expect("write");
        std::fs::write(dir.path().join("populations/a.csv"), b"x,y\r\n").expect("write");
        let mut gz = Vec::new();
        write_tar_gz(dir.path(), "pkg", 1_700_000_000, &mut gz).expect("tar");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let mut names = Vec::new();
        for e in archive.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").display().to_string();
            assert_eq!(e.header().mode().expect("mode"), 0o644);
            assert_eq!(e.header().mtime().expect("mtime"), 1_700_000_000);
            let mut body = Vec::new();
            io::Read::read_to_end(&mut e, &mut body).expect("read");
            if name == "pkg/populations/a.csv" {
                assert_eq!(body, b"x,y\r\n");
            }
            names.push(name);
        }
        assert_eq!(names, ["pkg/manifest.json", "pkg/populations/a.csv"]);
    }
}
