//! Small durable files of a partition directory: the log-start-offset checkpoint, the
//! clean-shutdown marker and the producer-state snapshot, all written atomically
//! (temporary file, fsync, rename, directory fsync).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::error::{LogError, Result};

/// Kafka keeps the log start offset in a checkpoint; ours is per partition directory.
pub(crate) const LOG_START_FILE: &str = "log-start-offset";
/// Present only while the partition is cleanly closed.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean_shutdown";
/// Producer state written at clean shutdown.
pub(crate) const PRODUCER_SNAPSHOT_FILE: &str = "producer-state.snapshot";

/// fsyncs a directory so that created, renamed or removed entries survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Replaces `dir/name` with `contents` atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| LogError::io("create", &tmp, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| LogError::io("write", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &dst).map_err(|e| LogError::io("rename into place", &dst, e))?;
    sync_dir(dir)
}

/// Removes `dir/name` if present; true when something was removed.
pub(crate) fn remove_if_exists(dir: &Path, name: &str) -> Result<bool> {
    let p = dir.join(name);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LogError::io("remove", &p, e)),
    }
}

/// Reads `dir/name`, None if it does not exist.
pub(crate) fn read_optional(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let p = dir.join(name);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io("read", &p, e)),
    }
}

/// Reads the log start offset checkpoint (None if missing or unreadable).
pub(crate) fn read_log_start(dir: &Path) -> Result<Option<i64>> {
    let Some(bytes) = read_optional(dir, LOG_START_FILE)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let parsed = match (lines.next(), lines.next()) {
        (Some("0"), Some(v)) => v.trim().parse::<i64>().ok().filter(|v| *v >= 0),
        _ => None,
    };
    if parsed.is_none() {
        tracing::warn!(
            dir = %dir.display(),
            "Ignoring an unreadable log start offset checkpoint; the first segment's base offset is used."
        );
    }
    Ok(parsed)
}

/// Writes the log start offset checkpoint (format: version line `0`, then the offset).
pub(crate) fn write_log_start(dir: &Path, offset: i64) -> Result<()> {
    write_atomic(dir, LOG_START_FILE, format!("0\n{offset}\n").as_bytes())
}
