//! The node's audit trail under `serve`: resolves the master key, checks it against the
//! fingerprint the data directory was created with, opens the [`AuditLog`] at
//! `<data-dir>/audit/`, records the service's start and stop, and hands out the sink the
//! schema registry records its changes through.
//!
//! Master key, in order:
//! 1. `GATEHOUSE_MASTER_KEY`: 64 hex digits, or standard base64 of 32 bytes;
//! 2. `<data-dir>/keys/master.key` (64 hex digits), created with mode 0600 at first start.
//!    Production keeps the master key outside the data directory, so this logs a warning.
//!
//! The key's fingerprint (the first 16 hex digits of SHA-256 over `0x00 ‖ key`, RFC 6962 leaf
//! hashing, so it never equals a plain hash of the key used elsewhere) is recorded in
//! `<data-dir>/keys/master.fingerprint`; a later start with another key is refused before
//! anything is opened. The node id is kept in `<data-dir>/node-id`, generated once.
//!
//! ```ignore
//! let audit = audit_service::open(&config.data_dir).await?;
//! let registry = gatehouse_registry::server::start_with_audit(cfg, audit.sink()).await?;
//! // ... on shutdown, after the registry stopped:
//! audit.close().await?;
//! ```

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use gatehouse_compliance::audit::merkle::leaf_hash;
use gatehouse_compliance::{AuditEvent, AuditLog, AuditLogConfig, EventType, MasterKey};
use gatehouse_registry::api::AuditSink;

/// Environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "GATEHOUSE_MASTER_KEY";

/// Where the master key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `GATEHOUSE_MASTER_KEY`.
    Env,
    /// `<data-dir>/keys/master.key`.
    File,
}

impl KeySource {
    fn as_str(self) -> &'static str {
        match self {
            KeySource::Env => "env",
            KeySource::File => "file",
        }
    }
}

/// The running audit trail of this node.
pub struct AuditService {
    log: AuditLog,
    node_id: String,
    #[allow(dead_code)] // see `fingerprint()`
    fingerprint: String,
    internal_mac_key: [u8; 32],
}

impl AuditService {
    /// What the registry records its changes through.
    pub fn sink(&self) -> Arc<dyn AuditSink> {
        Arc::new(self.log.clone())
    }

    /// The log itself (a cheap handle), e.g. for the self-check.
    #[allow(dead_code)] // tests/audit_serve.rs compiles this module without using it
    pub fn log(&self) -> AuditLog {
        self.log.clone()
    }

    /// This node's id (`<data-dir>/node-id`).
    #[allow(dead_code)] // read by tests/audit_serve.rs; `serve` does not print it yet
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The key that authenticates records of the `_gatehouse_*` topics, derived from the master
    /// key (SHA-256 over a fixed label and the key), so every node with the same master key
    /// derives the same one and nothing else can.
    #[allow(dead_code)] // tests/audit_serve.rs compiles this module without using it
    pub fn internal_mac_key(&self) -> [u8; 32] {
        self.internal_mac_key
    }

    /// The master key's fingerprint (16 hex digits; not secret).
    #[allow(dead_code)] // read by tests/audit_serve.rs; `serve` does not print it yet
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Records the service's stop, then seals the log and signs a final checkpoint. Call it
    /// after every part that records events has stopped.
    pub async fn close(self) -> Result<()> {
        let stopped = lifecycle(&self.node_id, "gatehouse.Stopped", "Stop")
            .build()
            .context("cannot build the stop event")?;
        if let Err(e) = self.log.append(stopped).await {
            tracing::warn!(error = %e, "The stop event could not be recorded in the audit trail.");
        }
        self.log
            .close()
            .await
            .context("the audit trail did not close cleanly")?;
        Ok(())
    }
}

fn lifecycle(
    node_id: &str,
    method: &str,
    operation: &str,
) -> gatehouse_compliance::AuditEventBuilder {
    AuditEvent::builder(EventType::Lifecycle)
        .service("gatehouse")
        .method(method)
        .principal("System:gatehouse")
        .resource("Node", node_id)
        .operation(operation)
        .granted(true)
        .attribute("version", env!("CARGO_PKG_VERSION"))
}

/// Opens the node's audit trail under `data_dir` with the master key from the environment
/// or the key file, and records the service's start (with the version).
pub async fn open(data_dir: &Path) -> Result<AuditService> {
    let env_key = std::env::var(MASTER_KEY_ENV).ok();
    open_with(data_dir, env_key.as_deref()).await
}

/// [`open`] with the environment's key passed in (`None`: use or create the key file).
pub async fn open_with(data_dir: &Path, env_key: Option<&str>) -> Result<AuditService> {
    let data_dir = data_dir.to_path_buf();
    let env_key = env_key.map(str::to_owned);
    let (log, report, node_id, fingerprint, source, internal_mac_key) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let (key, source) = master_key(&data_dir, env_key.as_deref())?;
            let fingerprint = fingerprint(&key);
            let internal_mac_key = derive(&key, b"gatehouse/internal-topic-mac/v1");
            check_fingerprint(&data_dir, &fingerprint)?;
            let node_id = node_id(&data_dir)?;
            let dir = data_dir.join("audit");
            let (log, report) = AuditLog::open(
                &dir,
                AuditLogConfig::new(node_id.clone()),
                MasterKey::from_bytes(*key),
            )
            .with_context(|| format!("cannot open the audit trail at {}", dir.display()))?;
            Ok((log, report, node_id, fingerprint, source, internal_mac_key))
        })
        .await
        .context("the audit trail's opening task failed")??;
    if let Some(t) = &report.torn_tail {
        tracing::warn!(
            segment = %t.segment,
            offset = t.offset,
            bytes_truncated = t.bytes_truncated,
            first_lost_sequence = t.first_lost_sequence,
            reason = %t.reason,
            "The audit trail had a torn tail (an interrupted write); it was truncated at the last whole event."
        );
    }
    let started = lifecycle(&node_id, "gatehouse.Started", "Start")
        .attribute("masterKeySource", source.as_str())
        .attribute("masterKeyFingerprint", fingerprint.clone())
        .build()
        .context("cannot build the start event")?;
    log.append(started)
        .await
        .context("cannot record the start in the audit trail")?;
    tracing::info!(
        node_id = %node_id,
        master_key_fingerprint = %fingerprint,
        master_key_source = source.as_str(),
        events = report.tree_size,
        "audit trail ready"
    );
    Ok(AuditService {
        log,
        node_id,
        fingerprint,
        internal_mac_key,
    })
}

type KeyBytes = zeroize_free::Secret;

/// A tiny wrapper that wipes the key bytes on drop (best effort, without `unsafe`).
mod zeroize_free {
    /// 32 key bytes, overwritten with zeros when dropped.
    pub struct Secret(pub [u8; 32]);

    impl std::ops::Deref for Secret {
        type Target = [u8; 32];
        fn deref(&self) -> &[u8; 32] {
            &self.0
        }
    }

    impl Drop for Secret {
        fn drop(&mut self) {
            self.0 = [0u8; 32];
            std::hint::black_box(&self.0);
        }
    }
}

fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

fn master_key(data_dir: &Path, env_key: Option<&str>) -> Result<(KeyBytes, KeySource)> {
    if let Some(text) = env_key {
        let key = parse_key(text).ok_or_else(|| {
            anyhow::anyhow!("{MASTER_KEY_ENV} must be 64 hex digits or the base64 of 32 bytes")
        })?;
        return Ok((key, KeySource::Env));
    }
    let path = keys_dir(data_dir).join("master.key");
    tracing::warn!(
        path = %path.display(),
        "The master key is kept in the data directory; production keeps it outside (set {MASTER_KEY_ENV}, or use a KMS)."
    );
    if path.exists() {
        check_private(&path);
        let mut text = String::new();
        fs::File::open(&path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .with_context(|| format!("cannot read the master key file {}", path.display()))?;
        let key = parse_hex32(text.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "the master key file {} does not hold 64 hex digits",
                path.display()
            )
        })?;
        return Ok((key, KeySource::File));
    }
    let key = zeroize_free::Secret(random32()?);
    create_private_dir(&keys_dir(data_dir))?;
    let mut text = hex(&key[..]);
    text.push('\n');
    write_new_private(&path, text.as_bytes())?;
    text.replace_range(.., &"0".repeat(text.len()));
    tracing::info!(path = %path.display(), "Created a new master key.");
    Ok((key, KeySource::File))
}

/// Writes the fingerprint at first start; refuses a different key later.
fn check_fingerprint(data_dir: &Path, fingerprint: &str) -> Result<()> {
    let path = keys_dir(data_dir).join("master.fingerprint");
    match fs::read_to_string(&path) {
        Ok(recorded) => {
            let recorded = recorded.trim();
            if recorded != fingerprint {
                bail!(
                    "this data directory was created with master key fingerprint {recorded}; the key given has {fingerprint} (set {MASTER_KEY_ENV} to the original key; {} records the expected fingerprint)",
                    path.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(&keys_dir(data_dir))?;
            write_atomic(&path, format!("{fingerprint}\n").as_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The stable node id, generated at first start.
fn node_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("node-id");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_owned();
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
            {
                bail!("{} must hold 1 to 64 of [A-Za-z0-9._-]", path.display());
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let r = random32()?;
            let id = format!("node-{}", hex(&r[..6]));
            write_atomic(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// SHA-256(label ‖ 0x00 ‖ key): a key for one purpose, derived from the master key.
fn derive(key: &[u8; 32], label: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(label);
    h.update([0u8]);
    h.update(key);
    h.finalize().into()
}

/// First 16 hex digits of SHA-256(0x00 ‖ key).
fn fingerprint(key: &[u8; 32]) -> String {
    let h = leaf_hash(key);
    let mut s = hex(&h[..]);
    s.truncate(16);
    s
}

fn parse_key(text: &str) -> Option<KeyBytes> {
    let t = text.trim();
    if t.len() == 64
        && let Some(k) = parse_hex32(t)
    {
        return Some(k);
    }
    let bytes = base64_decode(t)?;
    let arr: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(zeroize_free::Secret(arr))
}

fn parse_hex32(t: &str) -> Option<KeyBytes> {
    let b = t.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = zeroize_free::Secret([0u8; 32]);
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out.0[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

fn base64_decode(t: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    }
    let s = t.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(D[usize::from(b >> 4)]));
        s.push(char::from(D[usize::from(b & 15)]));
    }
    s
}

fn random32() -> Result<[u8; 32]> {
    let mut buf = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read random bytes from /dev/urandom")?;
    Ok(buf)
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Creates `path` (which must not exist) with mode 0600 and fsyncs it and its directory.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    sync_parent(path)
}

/// Writes `path` via a temporary file and a rename, fsynced.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    write_new_private(&tmp, bytes)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", parent.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Warns when the key file is readable by others than its owner.
fn check_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "The master key file is accessible to other users; restrict it to mode 0600."
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats() {
        let hex_key = "00".repeat(31) + "ff";
        let k = parse_key(&hex_key).unwrap();
        assert_eq!(k[31], 0xff);
        // 32 bytes 0..32 in base64.
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let k = parse_key(b64).unwrap();
        assert_eq!(k[..], (0u8..32).collect::<Vec<_>>()[..]);
        assert!(parse_key("abc").is_none());
        assert!(parse_key(&"zz".repeat(32)).is_none());
        assert!(parse_key("AAECAw==").is_none());
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
    }
}
