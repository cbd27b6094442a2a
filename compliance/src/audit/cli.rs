//! Entry points for the `gatehouse audit ...` subcommands: each takes paths and plain
//! values, verifies, and returns a human-readable report (or JSON for proofs); an `Err`
//! means the binary must exit non-zero. They never need the master key: an auditor runs them
//! on a copy of `<data-dir>/audit/` with the public keys they pinned.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::keys::PublicKey;
use super::verify::{
    self, ConsistencyProof, ExportFormat, InclusionProof, QueryFilter, VerifyError,
};

/// Reads trusted public keys (64 hex digits, as in `keys/signing.pub`, or 32 raw bytes).
pub fn load_trusted_keys(files: &[PathBuf]) -> Result<Vec<PublicKey>, VerifyError> {
    files
        .iter()
        .map(|f| {
            PublicKey::from_file(f)
                .map_err(|e| VerifyError::Input(format!("trusted key {}: {e}", f.display())))
        })
        .collect()
}

fn trusted(files: &[PathBuf]) -> Result<Option<Vec<PublicKey>>, VerifyError> {
    if files.is_empty() {
        Ok(None)
    } else {
        load_trusted_keys(files).map(Some)
    }
}

/// `gatehouse audit verify [DIR] [--trusted-key FILE]...`: the full offline verification.
pub fn cli_verify(dir: &Path, trusted_key_files: &[PathBuf]) -> Result<String, VerifyError> {
    let keys = trusted(trusted_key_files)?;
    let report = verify::verify_dir(dir, keys.as_deref())?;
    Ok(format!("Directory: {}\n{report}", dir.display()))
}

/// `gatehouse audit prove DIR SEQ`: an inclusion proof file (JSON) for one event.
pub fn cli_prove(dir: &Path, seq: u64) -> Result<String, VerifyError> {
    Ok(verify::prove_inclusion(dir, seq)?.to_json())
}

/// `gatehouse audit verify-proof FILE [--trusted-key FILE]...`: checks an inclusion proof
/// and its embedded checkpoint's signature (against the trusted keys when given).
pub fn cli_verify_proof(
    proof_json: &str,
    trusted_key_files: &[PathBuf],
) -> Result<String, VerifyError> {
    let proof = InclusionProof::from_json(proof_json)?;
    let keys = trusted(trusted_key_files)?;
    let signed = match &keys {
        Some(k) => proof.checkpoint.verify_with(k),
        None => proof.checkpoint.verify_signature(),
    };
    if !signed {
        return Err(VerifyError::Proof(
            "the checkpoint signature does not verify with the given keys".into(),
        ));
    }
    if !verify::verify_inclusion(&proof, &proof.checkpoint) {
        return Err(VerifyError::Proof(format!(
            "event {} is not included in the checkpoint of tree size {}",
            proof.sequence, proof.tree_size
        )));
    }
    let event = proof.parsed_event()?;
    Ok(format!(
        "Inclusion proof: VALID\n  event {} ({}, {} {} on {}:{} by {}, granted={})\n  \
         included in checkpoint tree size {} root {} signed by key {}{}\n",
        proof.sequence,
        event.time,
        event.event_type.as_str(),
        event.method,
        event.resource.resource_type,
        event.resource.name,
        event.principal,
        event.granted,
        proof.tree_size,
        hex::encode(proof.checkpoint.root_hash),
        proof.checkpoint.key_id,
        if keys.is_some() {
            " (trusted)"
        } else {
            " (NOT pinned: no trusted key given)"
        }
    ))
}

/// `gatehouse audit consistency DIR OLD_SIZE NEW_SIZE`: a consistency proof file (JSON).
pub fn cli_consistency(dir: &Path, old_size: u64, new_size: u64) -> Result<String, VerifyError> {
    Ok(verify::prove_consistency(dir, old_size, new_size)?.to_json())
}

fn read_checkpoint(path: &Path) -> Result<Checkpoint, VerifyError> {
    let bytes = std::fs::read(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Checkpoint::from_json(&bytes)
        .map_err(|e| VerifyError::Input(format!("{}: not a checkpoint: {e}", path.display())))
}

/// `gatehouse audit verify-consistency PROOF OLD_CHECKPOINT NEW_CHECKPOINT
/// [--trusted-key FILE]...`: checks that the newer checkpoint extends the older one (e.g.
/// the checkpoint pinned at the last audit).
pub fn cli_verify_consistency(
    proof_json: &str,
    old_checkpoint: &Path,
    new_checkpoint: &Path,
    trusted_key_files: &[PathBuf],
) -> Result<String, VerifyError> {
    let proof = ConsistencyProof::from_json(proof_json)?;
    let old = read_checkpoint(old_checkpoint)?;
    let new = read_checkpoint(new_checkpoint)?;
    let keys = trusted(trusted_key_files)?;
    for (cp, path) in [(&old, old_checkpoint), (&new, new_checkpoint)] {
        let ok = match &keys {
            Some(k) => cp.verify_with(k),
            None => cp.verify_signature(),
        };
        if !ok {
            return Err(VerifyError::Proof(format!(
                "checkpoint {} is not signed by the given keys",
                path.display()
            )));
        }
    }
    if !verify::verify_consistency(&proof, &old, &new) {
        return Err(VerifyError::Proof(format!(
            "tree size {} is not a prefix of tree size {}",
            old.tree_size, new.tree_size
        )));
    }
    Ok(format!(
        "Consistency proof: VALID\n  tree size {} (root {}) is a prefix of tree size {} (root {}){}\n",
        old.tree_size,
        hex::encode(old.root_hash),
        new.tree_size,
        hex::encode(new.root_hash),
        if keys.is_some() {
            ""
        } else {
            "\n  (NOT pinned: no trusted key given)"
        }
    ))
}

/// `gatehouse audit export DIR --format jsonl|csv [filters] > FILE`: writes the matching
/// events of the verified log to `out` and returns a summary for stderr (row count and the
/// checkpoint the export was cut from, for the evidence manifest).
pub fn cli_export(
    dir: &Path,
    format: ExportFormat,
    filter: &QueryFilter,
    out: &mut dyn Write,
) -> Result<String, VerifyError> {
    let s = verify::export(dir, format, filter, out)?;
    Ok(format!(
        "Exported {} events of {} verified ({:?}); cut from checkpoint tree size {} root {}\n  filter: {:?}\n",
        s.rows,
        s.tree_size,
        format,
        s.checkpoint_size,
        s.checkpoint_root
            .map(hex::encode)
            .unwrap_or_else(|| "-".into()),
        filter
    ))
}
