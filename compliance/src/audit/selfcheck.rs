//! The running node's own change detection on its audit trail (PCI DSS 10.3.4, 10.7.2):
//! a periodic verifier that re-verifies the trail incrementally and alerts when it fails or
//! stops being written.
//!
//! Each check ([`SelfChecker::check`]):
//!
//! * verifies the key history and every checkpoint (signatures, chain links) and the
//!   segments written since the last good check; sealed segments verified before are
//!   skipped while their file identity (length, modification and status-change times,
//!   inode) is unchanged ([`verify::verify_dir_incremental`]). Every `full_every`-th check
//!   re-reads everything, so a change that restored every time stamp is caught too;
//! * checks liveness: the event the previous check recorded (its receipt, i.e. durable) must
//!   be on disk, and when events are waiting for a signature the latest checkpoint must not
//!   be older than `stale_after`.
//!
//! [`run`] is the loop `gatehouse serve` runs: check, record an `audit.self_check` lifecycle
//! event with the outcome (which doubles as the heartbeat that keeps the trail growing), log
//! a failure at ERROR, update [`SelfCheckMetrics`], sleep. A passing check also brings the
//! query index ([`super::index`]) up to date, off the append path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::checkpoint::{Checkpoint, checkpoint_file_name};
use super::event::{AuditEvent, EventType, Outcome};
use super::keys::PublicKey;
use super::log::AuditLog;
use super::time::Timestamp;
use super::verify::{self, Resume, VerifyReport};

/// Counters and gauges of the self-check, read by `/metrics`.
#[derive(Debug, Default)]
pub struct SelfCheckMetrics {
    checks: AtomicU64,
    failures: AtomicU64,
    last_verified_unix: AtomicU64,
    verified_events: AtomicU64,
    healthy: AtomicU64,
}

impl SelfCheckMetrics {
    /// Checks run since start.
    pub fn checks_total(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
    /// Checks that failed (verification or liveness) since start.
    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
    /// Unix time (seconds) of the last check that passed; 0 before the first.
    pub fn last_verified_timestamp_seconds(&self) -> u64 {
        self.last_verified_unix.load(Ordering::Relaxed)
    }
    /// Events verified by the last check that passed.
    pub fn verified_events(&self) -> u64 {
        self.verified_events.load(Ordering::Relaxed)
    }
    /// 1 if the last check passed, 0 otherwise (or before the first).
    pub fn healthy(&self) -> u64 {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Everything verified and the trail is being written.
    Passed {
        /// The verification report.
        report: VerifyReport,
        /// Whether every segment was read.
        full: bool,
    },
    /// The trail does not verify (the reason names the first bad place).
    Failed(String),
    /// The trail verifies but is not being written.
    Stalled(String),
}

/// Incremental verifier state for one audit directory.
pub struct SelfChecker {
    dir: PathBuf,
    trusted: Option<Vec<PublicKey>>,
    resume: Option<Resume>,
    checks: u64,
    full_every: u64,
    stale_after: Duration,
    metrics: Arc<SelfCheckMetrics>,
    index: bool,
}

impl SelfChecker {
    /// A checker of `dir`; a full check every `full_every` checks (at least 1), a stall when
    /// unsigned events wait longer than `stale_after` for a checkpoint.
    pub fn new(
        dir: impl Into<PathBuf>,
        trusted: Option<Vec<PublicKey>>,
        full_every: u64,
        stale_after: Duration,
        metrics: Arc<SelfCheckMetrics>,
    ) -> Self {
        Self {
            dir: dir.into(),
            trusted,
            resume: None,
            checks: 0,
            full_every: full_every.max(1),
            stale_after,
            metrics,
            index: true,
        }
    }

    /// Whether a passing check updates the query index (`<dir>/../audit-index`, see
    /// [`super::index`]); on by default.
    pub fn with_index(mut self, on: bool) -> Self {
        self.index = on;
        self
    }

    /// The metrics this checker updates.
    pub fn metrics(&self) -> Arc<SelfCheckMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs one check (blocking: reads files). `expect_at_least`: the trail must hold at
    /// least this many events (one past the sequence of the last receipt the caller got).
    pub fn check(&mut self, expect_at_least: u64) -> CheckOutcome {
        let full = self.checks.is_multiple_of(self.full_every) || self.resume.is_none();
        self.checks += 1;
        self.metrics.checks.fetch_add(1, Ordering::Relaxed);
        let resume = if full { None } else { self.resume.as_ref() };
        let outcome =
            match verify::verify_dir_incremental(&self.dir, self.trusted.as_deref(), resume) {
                Err(e) => {
                    // Start the next check from scratch.
                    self.resume = None;
                    CheckOutcome::Failed(e.to_string())
                }
                Ok((report, next)) => {
                    self.resume = Some(next);
                    match self.liveness(&report, expect_at_least) {
                        Some(why) => CheckOutcome::Stalled(why),
                        None => CheckOutcome::Passed { report, full },
                    }
                }
            };
        match &outcome {
            CheckOutcome::Passed { report, .. } => {
                let now = u64::try_from(Timestamp::now().unix_micros() / 1_000_000).unwrap_or(0);
                self.metrics
                    .last_verified_unix
                    .store(now, Ordering::Relaxed);
                self.metrics
                    .verified_events
                    .store(report.tree_size, Ordering::Relaxed);
                self.metrics.healthy.store(1, Ordering::Relaxed);
                // Off the append path: index what the verification just covered. The index
                // is an optimisation; its failure never fails the check.
                if self.index
                    && let Err(e) = super::index::update_verified(&self.dir)
                {
                    tracing::warn!(error = %e, "audit query index not updated");
                }
            }
            _ => {
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                self.metrics.healthy.store(0, Ordering::Relaxed);
            }
        }
        outcome
    }

    fn liveness(&self, report: &VerifyReport, expect_at_least: u64) -> Option<String> {
        if report.tree_size < expect_at_least {
            return Some(format!(
                "the trail holds {} events but an acknowledged event has sequence {}: acknowledged events are missing",
                report.tree_size,
                expect_at_least - 1
            ));
        }
        if report.unanchored_events == 0 {
            return None;
        }
        let age = checkpoint_age(&self.dir, report.latest_checkpoint_size)?;
        (age > self.stale_after).then(|| {
            format!(
                "{} events are waiting for a signature and the latest checkpoint (tree size {}) is {} s old",
                report.unanchored_events,
                report.latest_checkpoint_size,
                age.as_secs()
            )
        })
    }
}

fn checkpoint_age(dir: &Path, size: u64) -> Option<Duration> {
    if size == 0 {
        return None;
    }
    let bytes = std::fs::read(dir.join("checkpoints").join(checkpoint_file_name(size))).ok()?;
    let cp = Checkpoint::from_json(&bytes).ok()?;
    let t = Timestamp::parse_rfc3339(&cp.time).ok()?;
    let micros = Timestamp::now().unix_micros() - t.unix_micros();
    Some(Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
}

/// The `audit.self_check` event for an outcome.
pub fn self_check_event(node_id: &str, outcome: &CheckOutcome) -> Option<AuditEvent> {
    let b = AuditEvent::builder(EventType::Lifecycle)
        .service("audit")
        .method("audit.self_check")
        .principal("System:gatehouse-audit")
        .resource("AuditLog", node_id)
        .operation("Verify");
    let b = match outcome {
        CheckOutcome::Passed { report, full } => b
            .granted(true)
            .outcome(Outcome::success())
            .attribute("treeSize", report.tree_size.to_string())
            .attribute("checkpointSize", report.latest_checkpoint_size.to_string())
            .attribute("mode", if *full { "full" } else { "incremental" }),
        CheckOutcome::Failed(why) => b.granted(true).outcome(
            Outcome::status("FAILURE")
                .with_error_code("VERIFY_FAILED")
                .with_message(truncate(why)),
        ),
        CheckOutcome::Stalled(why) => b.granted(true).outcome(
            Outcome::status("FAILURE")
                .with_error_code("STALLED")
                .with_message(truncate(why)),
        ),
    };
    b.build().ok()
}

fn truncate(s: &str) -> String {
    s.chars().take(400).collect()
}

/// The self-check loop of `gatehouse serve`: every `interval`, check, record the outcome as
/// an `audit.self_check` event, log failures at ERROR. Returns when `stop` turns true.
pub async fn run(
    log: AuditLog,
    mut checker: SelfChecker,
    node_id: String,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut expect = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let (back, outcome) = match tokio::task::spawn_blocking(move || {
            let o = checker.check(expect);
            (checker, o)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "The audit self-check task failed; self-checks stop.");
                return;
            }
        };
        checker = back;
        match &outcome {
            CheckOutcome::Passed { report, full } => {
                tracing::debug!(events = report.tree_size, full, "audit self-check passed")
            }
            CheckOutcome::Failed(why) => tracing::error!(
                reason = %why,
                "AUDIT TRAIL SELF-CHECK FAILED: the trail does not verify (possible tampering); see gatehouse_audit_self_check_failures_total"
            ),
            CheckOutcome::Stalled(why) => tracing::error!(
                reason = %why,
                "AUDIT TRAIL SELF-CHECK FAILED: the trail is not being written"
            ),
        }
        let Some(event) = self_check_event(&node_id, &outcome) else {
            continue;
        };
        // A writer that hangs is a stall too: do not wait for it longer than two intervals.
        let bound = (interval * 2).max(Duration::from_secs(10));
        match tokio::time::timeout(bound, log.append(event)).await {
            Ok(Ok(r)) => expect = r.sequence + 1,
            Ok(Err(e)) => {
                checker.metrics.failures.fetch_add(1, Ordering::Relaxed);
                checker.metrics.healthy.store(0, Ordering::Relaxed);
                tracing::error!(error = %e, "AUDIT TRAIL SELF-CHECK FAILED: the self-check event could not be written (the audit trail is not being written)");
            }
            Err(_) => {
                checker.metrics.failures.fetch_add(1, Ordering::Relaxed);
                checker.metrics.healthy.store(0, Ordering::Relaxed);
                tracing::error!(
                    waited_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
                    "AUDIT TRAIL SELF-CHECK FAILED: the self-check event was not made durable in time (the audit trail is not being written)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::MasterKey;
    use crate::audit::log::AuditLogConfig;
    use crate::audit::segment::segment_file_name as seg_name;

    #[tokio::test]
    async fn self_check_passes_then_sees_a_tampered_sealed_segment() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("audit");
        let mut cfg = AuditLogConfig::new("sc");
        cfg.min_free_bytes = 0;
        let (log, _) =
            AuditLog::open(&dir, cfg.clone(), MasterKey::from_bytes([1; 32])).expect("open");
        log.close().await.expect("close");
        let (log, _) = AuditLog::open(&dir, cfg, MasterKey::from_bytes([1; 32])).expect("open");
        let metrics = Arc::new(SelfCheckMetrics::default());
        let mut c = SelfChecker::new(&dir, None, 10, Duration::from_secs(300), metrics.clone());
        let o = c.check(0);
        assert!(
            matches!(o, CheckOutcome::Passed { full: true, .. }),
            "{o:?}"
        );
        // A passing check brings the query index next to the trail up to date.
        assert!(super::super::index::index_exists(&dir));
        let e = self_check_event("sc", &o).expect("event");
        let r = log.append(e).await.expect("append");
        let o = c.check(r.sequence + 1);
        assert!(
            matches!(o, CheckOutcome::Passed { full: false, .. }),
            "{o:?}"
        );
        assert_eq!(metrics.verified_events(), r.sequence + 1);
        assert_eq!(metrics.healthy(), 1);
        // An acknowledged event that is not on disk is a stall.
        let o = c.check(r.sequence + 100);
        assert!(matches!(o, CheckOutcome::Stalled(_)), "{o:?}");
        // Tamper with the sealed first segment.
        let seg = dir.join("segments").join(seg_name(0));
        let mut bytes = std::fs::read(&seg).expect("read");
        bytes[40] ^= 1;
        std::fs::write(&seg, bytes).expect("write");
        let o = c.check(0);
        assert!(
            matches!(&o, CheckOutcome::Failed(w) if w.contains(&seg_name(0))),
            "{o:?}"
        );
        assert_eq!(metrics.failures_total(), 2);
        assert_eq!(metrics.healthy(), 0);
        let e = self_check_event("sc", &o).expect("event");
        assert_eq!(e.outcome.error_code.as_deref(), Some("VERIFY_FAILED"));
        log.close().await.expect("close");
    }
}
