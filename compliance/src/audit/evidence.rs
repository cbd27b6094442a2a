//! Evidence packages for an audit period (`gatehouse evidence`): the complete populations an
//! auditor samples from, cut from a verified trail, with everything needed to re-derive them
//! offline.
//!
//! [`build_evidence`] verifies the whole audit directory first (optionally pinned to trusted
//! public keys). **A trail that does not verify produces no package**: the call fails with
//! [`EvidenceError::Verify`] naming the first bad segment and sequence or checkpoint, and
//! nothing is written (populations cut from a trail that fails verification would be
//! evidence of nothing). On success it writes into an empty output directory:
//!
//! | file | content |
//! |---|---|
//! | `populations/<id>.csv` | one row per event (the `audit export --format csv` columns plus `attributes`) |
//! | `populations/<id>.json` | a JSON array of the stored events, one per line, byte for byte as hashed (each line without its trailing comma hashes to its Merkle leaf) |
//! | `verification.json`, `verification.txt` | the verdict, the signed checkpoint the package was cut from (tree size, root hash, signature) and the key fingerprints |
//! | `checkpoint.json` | the exact bytes of that checkpoint file |
//! | `key-history.jsonl` | the exact bytes of the trail's signed key history (every public key) |
//! | `configuration.json` | the configuration snapshot the caller supplied, or a statement that none was |
//! | `index.html` | a human-readable summary with the PCI DSS 4.0 / SOC 2 mapping |
//! | `manifest.json` | SHA-256 of every other file, the period, the population definitions and counts |
//!
//! Populations contain only events covered by the signed checkpoint (`sequence < treeSize`)
//! whose `time` falls in `[from, to)`; events after the latest checkpoint are counted and
//! reported as excluded, because no signature covers them yet. Populations may overlap (an
//! ACL change is both an access change and an administrative change).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::checkpoint::Checkpoint;
use super::event::{AuditEvent, EventType};
use super::keys::PublicKey;
use super::time::Timestamp;
use super::verify::{self, CSV_COLUMNS, VerifiedEvent, VerifyError, VerifyReport};

/// Why no evidence package was written.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The trail does not verify: no package is produced.
    #[error("the audit trail does not verify, no evidence package was written: {0}")]
    Verify(#[from] VerifyError),
    /// Nothing is signed yet.
    #[error("the audit trail has no signed checkpoint yet; nothing can be attested")]
    NoCheckpoint,
    /// Bad arguments.
    #[error("invalid input: {0}")]
    Input(String),
    /// Writing the package failed.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A manifest check found a difference.
    #[error("manifest check failed: {0}")]
    Manifest(String),
}

/// One population: a named, documented selection of events.
pub struct Population {
    /// File stem under `populations/`.
    pub id: &'static str,
    /// Human-readable title.
    pub title: &'static str,
    /// The selection rule, as written in the manifest and the index.
    pub definition: &'static str,
    /// PCI DSS v4.0 requirements this population evidences.
    pub pci: &'static [&'static str],
    /// SOC 2 (2017 TSC) criteria this population evidences.
    pub soc2: &'static [&'static str],
    /// The selection rule.
    pub select: fn(&AuditEvent) -> bool,
}

fn is_data_access(e: &AuditEvent) -> bool {
    matches!(e.method.as_str(), "kafka.Produce" | "kafka.Fetch")
}

fn sel_auth_failures(e: &AuditEvent) -> bool {
    e.event_type == EventType::Authentication && !e.granted
}

fn sel_access_changes(e: &AuditEvent) -> bool {
    e.event_type == EventType::Acl && !e.method.starts_with("kafka.Describe")
}

fn sel_schema_changes(e: &AuditEvent) -> bool {
    e.event_type == EventType::Schema
}

fn sel_key_events(e: &AuditEvent) -> bool {
    e.event_type == EventType::Key || e.method == "audit.KeyRotated"
}

fn sel_denied(e: &AuditEvent) -> bool {
    e.event_type == EventType::Authorization && !e.granted
}

fn sel_poison(e: &AuditEvent) -> bool {
    e.event_type == EventType::PoisonPill
}

fn sel_admin(e: &AuditEvent) -> bool {
    if is_data_access(e) || e.method.starts_with("kafka.Describe") {
        return false;
    }
    match &e.event_type {
        EventType::Topic | EventType::Acl | EventType::Schema | EventType::Key => true,
        EventType::Authorization => e.granted,
        _ => false,
    }
}

fn sel_data_access(e: &AuditEvent) -> bool {
    e.event_type == EventType::Authorization && e.granted && is_data_access(e)
}

fn sel_lifecycle(e: &AuditEvent) -> bool {
    e.event_type == EventType::Lifecycle
}

fn sel_audit_access(e: &AuditEvent) -> bool {
    e.event_type == EventType::AuditAccess
}

/// Every population of a package, in the order of the index.
pub const POPULATIONS: &[Population] = &[
    Population {
        id: "authentication-failures",
        title: "Authentication failures",
        definition: "type io.gatehouse.authentication with granted=false (wrong password, bad token, unmapped certificate; Kafka SASL, registry and admin API)",
        pci: &["10.2.1.4", "10.2.2"],
        soc2: &["CC6.1", "CC7.2"],
        select: sel_auth_failures,
    },
    Population {
        id: "access-changes",
        title: "Access changes (ACLs, users, roles)",
        definition: "type io.gatehouse.acl except kafka.Describe* reads: kafka.CreateAcls, kafka.DeleteAcls, kafka.AlterUserScramCredentials, role bindings; attempts that were refused or failed included (see granted/status)",
        pci: &["10.2.1.2", "10.2.1.5", "10.2.1.7", "10.2.2"],
        soc2: &["CC6.2", "CC6.3", "CC8.1"],
        select: sel_access_changes,
    },
    Population {
        id: "schema-changes",
        title: "Schema registry changes",
        definition: "type io.gatehouse.schema: schema.register, schema.delete, subject.delete, config.*, mode.* (successful and failed)",
        pci: &["10.2.1.2", "10.2.1.7", "10.2.2"],
        soc2: &["CC8.1"],
        select: sel_schema_changes,
    },
    Population {
        id: "key-events",
        title: "Key lifecycle events",
        definition: "type io.gatehouse.key (KEK create, rotate, retire, destroy, data-key creation; ids only, never key material) and audit.KeyRotated (audit signing key rotation)",
        pci: &["3.6.1", "3.7.1", "3.7.4", "3.7.5", "10.2.1.2", "10.2.2"],
        soc2: &["CC6.1"],
        select: sel_key_events,
    },
    Population {
        id: "denied-accesses",
        title: "Denied accesses",
        definition: "type io.gatehouse.authorization with granted=false (ACL/RBAC deny, internal topics; gateway, registry, admin API)",
        pci: &["10.2.1.4", "10.2.2"],
        soc2: &["CC6.1", "CC6.3", "CC7.2"],
        select: sel_denied,
    },
    Population {
        id: "poison-pill-rejections",
        title: "Poison-pill rejections",
        definition: "type io.gatehouse.poison_pill: records refused by a topic's data policy (schema validation, PAN guard); never the record content",
        pci: &["3.5.1", "10.2.2"],
        soc2: &["CC6.7", "CC7.2"],
        select: sel_poison,
    },
    Population {
        id: "data-access",
        title: "Access to protected data",
        definition: "granted io.gatehouse.authorization events of kafka.Produce / kafka.Fetch, recorded for topics with gatehouse.audit.data.access=all (principal, topic, partitions, record count; never content)",
        pci: &["10.2.1.1", "10.2.2"],
        soc2: &["CC6.1", "CC7.2"],
        select: sel_data_access,
    },
    Population {
        id: "admin-changes",
        title: "Administrative changes",
        definition: "types io.gatehouse.topic, .acl, .schema, .key, and granted io.gatehouse.authorization (the gateway records granted decisions only for administrative requests), excluding kafka.Describe* reads and kafka.Produce/kafka.Fetch data access",
        pci: &["10.2.1.2", "10.2.1.7", "10.2.2"],
        soc2: &["CC6.3", "CC8.1"],
        select: sel_admin,
    },
    Population {
        id: "audit-lifecycle",
        title: "Audit trail and service lifecycle",
        definition: "type io.gatehouse.lifecycle: audit.Started, audit.Stopped, audit.KeyRotated, gatehouse.Started/Stopped, audit.self_check, audit.Heartbeat",
        pci: &["10.2.1.6", "10.3.4", "10.7.2"],
        soc2: &["CC7.2"],
        select: sel_lifecycle,
    },
    Population {
        id: "audit-access",
        title: "Access to the audit trail",
        definition: "type io.gatehouse.audit_access: reads of the trail through the node's admin API (GET /v1/audit/events), with who asked and the filter",
        pci: &["10.2.1.3"],
        soc2: &["CC7.2"],
        select: sel_audit_access,
    },
];

/// What to put into a package.
pub struct EvidenceRequest<'a> {
    /// The audit directory (a copy is enough).
    pub audit_dir: &'a Path,
    /// Where to write; must not exist or be empty.
    pub out_dir: &'a Path,
    /// Start of the period (inclusive).
    pub from: Timestamp,
    /// End of the period (exclusive).
    pub to: Timestamp,
    /// Public keys the key history must start at (`None`: internal consistency only).
    pub trusted_keys: Option<Vec<PublicKey>>,
    /// The configuration snapshot to include (`None`: the package says none was given).
    pub configuration: Option<Value>,
    /// The generating tool and version, e.g. `gatehouse 0.1.0`.
    pub generator: String,
    /// Who ran it (e.g. the OS user), if known.
    pub operator: Option<String>,
}

/// What [`build_evidence`] wrote.
#[derive(Clone, Debug)]
pub struct EvidenceSummary {
    /// The verification report of the whole trail.
    pub report: VerifyReport,
    /// The checkpoint the package was cut from.
    pub checkpoint: Checkpoint,
    /// Events in the period covered by the checkpoint.
    pub events_in_period: u64,
    /// Events in the period after the checkpoint (not included).
    pub excluded_unanchored: u64,
    /// Row count per population id.
    pub counts: Vec<(&'static str, u64)>,
    /// Every file (relative path) and its SHA-256, as in the manifest.
    pub files: Vec<(String, String)>,
}

impl EvidenceSummary {
    /// A short text for the terminal.
    pub fn to_text(&self, out_dir: &Path) -> String {
        let mut s = format!(
            "Evidence package written to {}\n  verification: PASSED against checkpoint tree size {} root {}\n  events in period: {} (excluded, after the checkpoint: {})\n",
            out_dir.display(),
            self.checkpoint.tree_size,
            hex::encode(self.checkpoint.root_hash),
            self.events_in_period,
            self.excluded_unanchored
        );
        for (id, n) in &self.counts {
            let _ = writeln!(s, "  {id:<26} {n}");
        }
        let _ = writeln!(
            s,
            "  files: {} (SHA-256 in manifest.json)",
            self.files.len()
        );
        s
    }
}

fn out_err(path: &Path) -> impl FnOnce(io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Output {
        path: path.to_path_buf(),
        source,
    }
}

/// Files written so far, with their digests.
struct Writer<'a> {
    root: &'a Path,
    files: Vec<(String, String)>,
}

impl Writer<'_> {
    fn put(&mut self, rel: &str, bytes: &[u8]) -> Result<(), EvidenceError> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(out_err(parent))?;
        }
        fs::write(&path, bytes).map_err(out_err(&path))?;
        self.files
            .push((rel.to_owned(), hex::encode(Sha256::digest(bytes))));
        Ok(())
    }
}

fn attributes_cell(e: &AuditEvent) -> String {
    let mut s = String::new();
    for (i, (k, v)) in e.attributes.iter().enumerate() {
        if i > 0 {
            s.push(';');
        }
        let _ = write!(s, "{k}={v}");
    }
    s
}

fn csv_of(events: &[&VerifiedEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * (events.len() + 1));
    out.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
    out.extend_from_slice(b",attributes\r\n");
    for e in events {
        verify::csv_row(&mut out, &e.event);
        out.truncate(out.len().saturating_sub(2));
        out.push(b',');
        verify::csv_cell(&mut out, &attributes_cell(&e.event));
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn json_of(events: &[&VerifiedEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.iter().map(|e| e.stored.len() + 2).sum::<usize>() + 4);
    out.extend_from_slice(b"[\n");
    for (i, e) in events.iter().enumerate() {
        out.extend_from_slice(&e.stored);
        if i + 1 < events.len() {
            out.push(b',');
        }
        out.push(b'\n');
    }
    out.extend_from_slice(b"]\n");
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Verifies the trail and writes the evidence package (see the module docs). Fails, writing
/// nothing, when the trail does not verify or has no checkpoint.
pub fn build_evidence(req: &EvidenceRequest<'_>) -> Result<EvidenceSummary, EvidenceError> {
    if req.from >= req.to {
        return Err(EvidenceError::Input(
            "the period is empty: --from must be before --to".into(),
        ));
    }
    if let Ok(mut rd) = fs::read_dir(req.out_dir)
        && rd.next().is_some()
    {
        return Err(EvidenceError::Input(format!(
            "{} is not empty; give a new directory",
            req.out_dir.display()
        )));
    }
    let (from, to) = (req.from, req.to);
    let collected = verify::verify_and_collect(req.audit_dir, req.trusted_keys.as_deref(), &|e| {
        e.time >= from && e.time < to
    })?;
    let Some((checkpoint, checkpoint_bytes)) = collected.checkpoint else {
        return Err(EvidenceError::NoCheckpoint);
    };
    let history_path = req.audit_dir.join("keys").join("history.jsonl");
    let history = fs::read(&history_path).map_err(|source| {
        EvidenceError::Verify(VerifyError::Io {
            path: history_path.clone(),
            source,
        })
    })?;
    let signed = checkpoint.tree_size;
    let (covered, excluded): (Vec<&VerifiedEvent>, Vec<&VerifiedEvent>) = collected
        .events
        .iter()
        .partition(|e| e.event.sequence < signed);

    fs::create_dir_all(req.out_dir).map_err(out_err(req.out_dir))?;
    let mut w = Writer {
        root: req.out_dir,
        files: Vec::new(),
    };
    let mut counts = Vec::new();
    let mut pop_meta = Vec::new();
    for p in POPULATIONS {
        let rows: Vec<&VerifiedEvent> = covered
            .iter()
            .copied()
            .filter(|e| (p.select)(&e.event))
            .collect();
        w.put(&format!("populations/{}.csv", p.id), &csv_of(&rows))?;
        w.put(&format!("populations/{}.json", p.id), &json_of(&rows))?;
        counts.push((p.id, rows.len() as u64));
        pop_meta.push(json!({
            "id": p.id,
            "title": p.title,
            "definition": p.definition,
            "pciDss": p.pci,
            "soc2": p.soc2,
            "rows": rows.len(),
            "firstSequence": rows.first().map(|e| e.event.sequence.to_string()),
            "lastSequence": rows.last().map(|e| e.event.sequence.to_string()),
            "files": [format!("populations/{}.csv", p.id), format!("populations/{}.json", p.id)],
        }));
    }

    let report = &collected.report;
    let trusted: Vec<String> = req
        .trusted_keys
        .iter()
        .flatten()
        .map(PublicKey::key_id)
        .collect();
    let verification = json!({
        "verdict": "PASSED",
        "verifiedAt": Timestamp::now().to_rfc3339(),
        "treeSize": report.tree_size.to_string(),
        "rootHash": hex::encode(report.root_hash),
        "segments": report.segments,
        "sealedSegments": report.sealed_segments,
        "checkpoints": report.checkpoints,
        "unanchoredEvents": report.unanchored_events.to_string(),
        "warnings": report.warnings,
        "keyHistory": report.key_ids,
        "trustedKeysPinned": report.trusted_keys_pinned,
        "trustedKeyFingerprints": trusted,
        "checkpoint": {
            "file": super::checkpoint::checkpoint_file_name(checkpoint.tree_size),
            "log": checkpoint.log,
            "treeSize": checkpoint.tree_size.to_string(),
            "rootHash": hex::encode(checkpoint.root_hash),
            "time": checkpoint.time,
            "keyId": checkpoint.key_id,
            "publicKey": hex::encode(checkpoint.public_key),
            "signature": hex::encode(checkpoint.signature),
            "fileSha256": hex::encode(Checkpoint::file_sha256(&checkpoint_bytes)),
        },
        "publicKeyFingerprint": checkpoint.key_id,
    });
    w.put("verification.json", &pretty(&verification))?;
    let mut text = format!("Directory: {}\n{report}", req.audit_dir.display());
    let _ = writeln!(
        text,
        "  package cut from checkpoint tree size {} root {} signed by key {}",
        checkpoint.tree_size,
        hex::encode(checkpoint.root_hash),
        checkpoint.key_id
    );
    w.put("verification.txt", text.as_bytes())?;
    w.put("checkpoint.json", &checkpoint_bytes)?;
    w.put("key-history.jsonl", &history)?;
    let configuration = match &req.configuration {
        Some(v) => json!({ "included": true, "snapshot": v }),
        None => json!({
            "included": false,
            "reason": "no configuration was given (run with --config and/or --data-dir on the node to include the effective configuration)",
        }),
    };
    w.put("configuration.json", &pretty(&configuration))?;

    let period = json!({ "from": from.to_rfc3339(), "to": to.to_rfc3339(), "bounds": "time >= from and time < to" });
    let html = index_html(
        req,
        report,
        &checkpoint,
        &counts,
        &configuration,
        covered.len(),
        excluded.len(),
    );
    w.put("index.html", html.as_bytes())?;

    let files: BTreeMap<&str, &str> = w
        .files
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    let manifest = json!({
        "format": "gatehouse-evidence/v1",
        "generator": req.generator,
        "generatedAt": Timestamp::now().to_rfc3339(),
        "operator": req.operator,
        "auditDirectory": req.audit_dir.display().to_string(),
        "period": period,
        "verdict": "PASSED",
        "cutFrom": {
            "treeSize": checkpoint.tree_size.to_string(),
            "rootHash": hex::encode(checkpoint.root_hash),
            "keyId": checkpoint.key_id,
        },
        "eventsInPeriod": covered.len(),
        "excludedAfterCheckpoint": excluded.len(),
        "populations": pop_meta,
        "files": files,
        "sha256": "hex SHA-256 of each file's bytes; re-check with `sha256sum` or `gatehouse evidence --check DIR`",
    });
    let manifest_bytes = pretty(&manifest);
    let mpath = req.out_dir.join("manifest.json");
    fs::write(&mpath, &manifest_bytes).map_err(out_err(&mpath))?;
    Ok(EvidenceSummary {
        report: collected.report.clone(),
        checkpoint,
        events_in_period: covered.len() as u64,
        excluded_unanchored: excluded.len() as u64,
        counts,
        files: w.files,
    })
}

/// Re-checks a package: every file listed in `manifest.json` exists and has the listed
/// SHA-256, and no file is missing from the manifest. Returns the number of files checked.
pub fn check_manifest(dir: &Path) -> Result<usize, EvidenceError> {
    let mpath = dir.join("manifest.json");
    let bytes = fs::read(&mpath).map_err(out_err(&mpath))?;
    let manifest: Value = serde_json::from_slice(&bytes)
        .map_err(|e| EvidenceError::Manifest(format!("manifest.json is not JSON: {e}")))?;
    let Some(files) = manifest.get("files").and_then(Value::as_object) else {
        return Err(EvidenceError::Manifest(
            "manifest.json lists no files".into(),
        ));
    };
    for (rel, want) in files {
        if rel.contains("..") || rel.starts_with('/') {
            return Err(EvidenceError::Manifest(format!("unsafe path {rel}")));
        }
        let p = dir.join(rel);
        let data = fs::read(&p).map_err(|e| EvidenceError::Manifest(format!("{rel}: {e}")))?;
        let got = hex::encode(Sha256::digest(&data));
        if Some(got.as_str()) != want.as_str() {
            return Err(EvidenceError::Manifest(format!(
                "{rel}: SHA-256 {got} differs from the manifest"
            )));
        }
    }
    let mut present = Vec::new();
    list_files(dir, dir, &mut present).map_err(out_err(dir))?;
    for rel in present {
        if rel != "manifest.json" && !files.contains_key(&rel) {
            return Err(EvidenceError::Manifest(format!(
                "{rel} is not listed in the manifest"
            )));
        }
    }
    Ok(files.len())
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            list_files(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Requirement texts for the mapping table of the index (PCI DSS v4.0 / SOC 2 2017 TSC).
const REQUIREMENTS: &[(&str, &str)] = &[
    (
        "10.2.1.1",
        "All individual user access to cardholder data is logged",
    ),
    (
        "10.2.1.2",
        "All actions taken by any individual with administrative access are logged",
    ),
    ("10.2.1.3", "All access to audit logs is logged"),
    ("10.2.1.4", "All invalid logical access attempts are logged"),
    (
        "10.2.1.5",
        "All changes to identification and authentication credentials are logged",
    ),
    (
        "10.2.1.6",
        "Initialization, starting, stopping or pausing of audit logs is logged",
    ),
    (
        "10.2.1.7",
        "Creation and deletion of system-level objects is logged",
    ),
    (
        "10.2.2",
        "Audit logs record user, event type, date and time, success/failure, origination, affected resource",
    ),
    (
        "10.3.2",
        "Audit log files are protected against modification",
    ),
    (
        "10.3.3",
        "Audit logs are promptly backed up to media that is difficult to modify",
    ),
    (
        "10.3.4",
        "File integrity monitoring / change detection on audit logs",
    ),
    (
        "10.5.1",
        "Audit log history retained for at least 12 months, 3 months immediately available",
    ),
    (
        "10.7.2",
        "Failures of critical security controls (incl. audit logging) are detected and alerted",
    ),
    ("3.5.1", "PAN is rendered unreadable wherever stored"),
    ("3.6.1", "Procedures protect cryptographic keys"),
    ("3.7.1", "Key management: generation of strong keys"),
    (
        "3.7.4",
        "Key management: key change at the end of the cryptoperiod",
    ),
    (
        "3.7.5",
        "Key management: retirement, replacement or destruction of keys",
    ),
    (
        "CC6.1",
        "Logical access security software, infrastructure and architectures; protects encryption keys",
    ),
    (
        "CC6.2",
        "Registration, authorization and removal of users and credentials",
    ),
    (
        "CC6.3",
        "Role-based access: authorize, modify and remove access; least privilege",
    ),
    (
        "CC6.7",
        "Restricts transmission and movement of information (DLP)",
    ),
    (
        "CC7.2",
        "Monitors components for anomalies, including the detection tools themselves",
    ),
    (
        "CC8.1",
        "Changes are authorized, documented and implemented under change control",
    ),
];

fn index_html(
    req: &EvidenceRequest<'_>,
    report: &VerifyReport,
    cp: &Checkpoint,
    counts: &[(&'static str, u64)],
    configuration: &Value,
    in_period: usize,
    excluded: usize,
) -> String {
    let e = html_escape;
    let mut h = String::with_capacity(16 << 10);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Gatehouse audit evidence</title>\n<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}.pass{background:#d4f7d4;padding:.5em 1em;font-size:1.4em;font-weight:bold}code{font-size:.9em}</style></head><body>\n");
    let _ = writeln!(
        h,
        "<h1>Audit evidence: {} to {}</h1>",
        e(&req.from.to_rfc3339()),
        e(&req.to.to_rfc3339())
    );
    let _ = writeln!(
        h,
        "<p class=\"pass\">Verification verdict: PASSED</p>\n<p>The whole audit trail ({} events, {} segments, {} checkpoints) was verified before anything was cut from it. The populations are cut from the signed checkpoint below: events with <code>sequence &lt; {}</code> and <code>{} &le; time &lt; {}</code>. Events in the period after that checkpoint: {} (not included: no signature covers them yet).</p>",
        report.tree_size,
        report.segments,
        report.checkpoints,
        cp.tree_size,
        e(&req.from.to_rfc3339()),
        e(&req.to.to_rfc3339()),
        excluded
    );
    h.push_str("<table>\n");
    for (k, v) in [
        ("Log", cp.log.clone()),
        ("Checkpoint tree size", cp.tree_size.to_string()),
        ("Root hash", hex::encode(cp.root_hash)),
        ("Signed at", cp.time.clone()),
        ("Signature (Ed25519)", hex::encode(cp.signature)),
        ("Public key", hex::encode(cp.public_key)),
        ("Public key fingerprint (SHA-256)", cp.key_id.clone()),
        (
            "Pinned to a trusted key",
            if report.trusted_keys_pinned {
                "yes (the key history starts at a key the auditor supplied)".to_owned()
            } else {
                "NO: no --public-key given; signatures prove only internal consistency".to_owned()
            },
        ),
        ("Events in the period (signed)", in_period.to_string()),
        ("Generated by", req.generator.clone()),
    ] {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            e(k),
            e(&v)
        );
    }
    h.push_str("</table>\n");
    if !report.warnings.is_empty() {
        h.push_str("<h2>Verifier warnings</h2><ul>\n");
        for w in &report.warnings {
            let _ = writeln!(h, "<li>{}</li>", e(w));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h2>Populations</h2>\n<table><tr><th>Population</th><th>Events</th><th>Definition</th><th>PCI DSS v4.0</th><th>SOC 2</th><th>Files</th></tr>\n");
    for (p, (_, n)) in POPULATIONS.iter().zip(counts) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"populations/{id}.csv\">CSV</a> <a href=\"populations/{id}.json\">JSON</a></td></tr>",
            e(p.title),
            e(p.definition),
            e(&p.pci.join(", ")),
            e(&p.soc2.join(", ")),
            id = p.id,
        );
    }
    h.push_str("</table>\n<h2>Other parts of this package</h2>\n<table><tr><th>Part</th><th>PCI DSS v4.0</th><th>SOC 2</th></tr>\n");
    for (part, pci, soc) in [
        (
            "verification.json / verification.txt / checkpoint.json / key-history.jsonl: the trail verifies end to end (Merkle roots, Ed25519-signed checkpoint chain, sealed-segment digests)",
            "10.3.2, 10.3.4",
            "CC7.2",
        ),
        (
            "Every event carries principal, type, time, outcome, origination and resource",
            "10.2.2",
            "CC7.2",
        ),
        (
            "Retention: sealed segments are archived with their checkpoints (gatehouse audit archive), never before the configured minimum retention (default 365 days)",
            "10.5.1",
            "",
        ),
        (
            "Self-check under serve: periodic re-verification and liveness, alerts and audit.self_check events (see the audit-lifecycle population)",
            "10.3.4, 10.7.2",
            "CC7.2",
        ),
        (
            "Off-node copies: the _gatehouse_audit mirror topic ([audit] mirror_topic) and archives on WORM media",
            "10.3.3",
            "",
        ),
        (
            "configuration.json: configuration snapshot (if given)",
            "",
            "CC6.1, CC8.1",
        ),
    ] {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(part),
            e(pci),
            e(soc)
        );
    }
    h.push_str("</table>\n<h2>Requirement texts</h2>\n<table>\n");
    for (id, text) in REQUIREMENTS {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", e(id), e(text));
    }
    h.push_str("</table>\n<h2>Configuration snapshot</h2>\n");
    let _ = writeln!(
        h,
        "<pre>{}</pre>",
        e(&serde_json::to_string_pretty(configuration).unwrap_or_default())
    );
    h.push_str("<h2>How to re-derive this package</h2>\n<ol><li>Check the files against <code>manifest.json</code> (<code>gatehouse evidence --check DIR</code> or <code>sha256sum</code>).</li><li>Verify a copy of the audit directory with the pinned public key: <code>gatehouse audit verify ./audit-copy --trusted-key genesis.pub</code>; the checkpoint in <code>checkpoint.json</code> must be one of its checkpoints (same file bytes).</li><li>Re-run <code>gatehouse evidence --from ... --to ... --audit-dir ./audit-copy --out new-dir --public-key genesis.pub</code>: the population files are identical.</li><li>For sampled events, ask for inclusion proofs (<code>gatehouse audit prove</code>) and check them with <code>gatehouse audit verify-proof</code>.</li></ol>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::checkpoint_file_name;
    use crate::audit::event::Outcome;
    use crate::audit::keys::MasterKey;
    use crate::audit::log::{AuditLog, AuditLogConfig};

    fn ev(t: EventType, method: &str, granted: bool, secs: i64) -> AuditEvent {
        AuditEvent::builder(t)
            .service("gateway")
            .method(method)
            .principal("User:<script>")
            .resource("Topic", "=cmd|' /C calc'!A0")
            .operation("Alter")
            .granted(granted)
            .outcome(if granted {
                Outcome::success()
            } else {
                Outcome::denied()
            })
            .attribute("httpStatus", "401")
            .time(Timestamp::from_unix_micros(secs * 1_000_000))
            .build()
            .expect("event")
    }

    async fn trail(dir: &Path) {
        let mut cfg = AuditLogConfig::new("n1");
        cfg.segment_max_bytes = 4096;
        cfg.checkpoint_every_events = 7;
        cfg.min_free_bytes = 0;
        let (log, _) = AuditLog::open(dir, cfg, MasterKey::from_bytes([9; 32])).expect("open");
        let events = vec![
            ev(EventType::Authentication, "kafka.Authenticate", false, 100),
            ev(EventType::Authentication, "kafka.Authenticate", true, 101),
            ev(EventType::Acl, "kafka.CreateAcls", true, 102),
            ev(EventType::Acl, "kafka.DescribeAcls", true, 103),
            ev(EventType::Schema, "schema.register", true, 104),
            ev(EventType::Key, "key.rotate", true, 105),
            ev(EventType::Authorization, "kafka.Produce", false, 106),
            ev(EventType::PoisonPill, "kafka.Produce", false, 107),
            ev(EventType::Topic, "kafka.CreateTopics", true, 108),
            ev(EventType::Authentication, "kafka.Authenticate", false, 5000),
        ];
        log.append_batch(events).await.expect("append");
        log.close().await.expect("close");
    }

    #[tokio::test]
    async fn package_has_populations_manifest_and_refuses_a_bad_trail() {
        let tmp = tempfile::tempdir().expect("tmp");
        let audit = tmp.path().join("audit");
        trail(&audit).await;
        let out = tmp.path().join("pkg");
        let key = PublicKey::from_file(&audit.join("keys/signing.pub")).expect("key");
        let req = EvidenceRequest {
            audit_dir: &audit,
            out_dir: &out,
            from: Timestamp::from_unix_micros(50_000_000),
            to: Timestamp::from_unix_micros(1_000_000_000),
            trusted_keys: Some(vec![key]),
            configuration: None,
            generator: "test".into(),
            operator: None,
        };
        let s = build_evidence(&req).expect("package");
        let count = |id: &str| s.counts.iter().find(|(i, _)| *i == id).map(|c| c.1);
        assert_eq!(count("authentication-failures"), Some(1));
        assert_eq!(count("access-changes"), Some(1));
        assert_eq!(count("schema-changes"), Some(1));
        assert_eq!(count("key-events"), Some(1));
        assert_eq!(count("denied-accesses"), Some(1));
        assert_eq!(count("poison-pill-rejections"), Some(1));
        assert_eq!(count("admin-changes"), Some(4));
        assert_eq!(s.events_in_period, 9);
        assert_eq!(check_manifest(&out).expect("manifest"), s.files.len());
        // JSON lines are the stored bytes: each hashes to its leaf (checked via the proof).
        let json = fs::read_to_string(out.join("populations/schema-changes.json")).expect("json");
        let parsed: Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed.as_array().map(Vec::len), Some(1));
        let line = json.lines().nth(1).expect("line");
        let seq = AuditEvent::from_json(line.as_bytes())
            .expect("event")
            .sequence;
        let proof = verify::prove_inclusion(&audit, seq).expect("proof");
        assert_eq!(proof.event.as_bytes(), line.as_bytes());
        // CSV: formula guard and attributes column; HTML escaped.
        let csv = fs::read_to_string(out.join("populations/access-changes.csv")).expect("csv");
        assert!(csv.contains("\"'=cmd|"), "{csv}");
        assert!(
            csv.lines()
                .next()
                .is_some_and(|l| l.ends_with(",attributes"))
        );
        assert!(csv.contains("httpStatus=401"));
        let html = fs::read_to_string(out.join("index.html")).expect("html");
        assert!(html.contains("PASSED") && html.contains("10.2.1.4") && html.contains("CC8.1"));
        assert!(!html.contains("<script>"));
        // A changed file is caught by the manifest check.
        fs::write(out.join("populations/key-events.csv"), "x").expect("write");
        assert!(check_manifest(&out).is_err());
        // A non-empty output directory is refused.
        assert!(matches!(build_evidence(&req), Err(EvidenceError::Input(_))));

        // A tampered trail: no package.
        let mut names: Vec<PathBuf> = fs::read_dir(audit.join("checkpoints"))
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        let cp = names[0].clone();
        assert!(cp.ends_with(checkpoint_file_name(1)));
        let mut bytes = fs::read(&cp).expect("cp");
        let i = bytes.len() / 2;
        bytes[i] ^= 1;
        fs::write(&cp, bytes).expect("write");
        let out2 = tmp.path().join("pkg2");
        let req2 = EvidenceRequest {
            out_dir: &out2,
            ..req
        };
        assert!(matches!(
            build_evidence(&req2),
            Err(EvidenceError::Verify(_))
        ));
        assert!(!out2.exists());
    }
}
