//! The classic consumer-group coordinator and durable committed offsets.
//!
//! [`GroupCoordinator`] implements Kafka's classic group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and the offset APIs (OffsetCommit, OffsetFetch) plus DescribeGroups,
//! ListGroups and DeleteGroups for a single-node broker. Request handlers pass it decoded
//! requests and the negotiated version and get back complete responses for that version.
//!
//! - `member`: group and member state and Kafka's pure rules (protocol selection, leader
//!   election, static-member fencing).
//! - `membership`: the rebalance state machine: Empty → PreparingRebalance →
//!   CompletingRebalance → Stable, with the initial rebalance delay, rebalance timeouts,
//!   pending-sync timeouts and session expiry.
//! - `commit`: OffsetCommit and OffsetFetch.
//! - `admin`: DescribeGroups, ListGroups, DeleteGroups.
//! - `offsets`: the durable offsets log (CRC-framed records, group-commit fsync, compaction).
//!
//! Group membership is not persisted: after a restart clients simply rejoin. Committed offsets
//! are: an OffsetCommit is answered only once its record is fsynced.
//!
//! Locking: one mutex guards all groups and is never held across an `.await`; the offsets table
//! has its own mutex, always taken after the groups mutex when both are needed. Timers are
//! tokio tasks holding only a weak reference, identified by the group's timer epoch so that a
//! superseded timer does nothing.

mod admin;
mod commit;
pub(crate) mod member;
mod membership;
pub(crate) mod offsets;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use thiserror::Error;
use tracing::{debug, error, warn};

use member::{Group, GroupState};
use offsets::{OffsetStore, Record, lock};

/// Kafka's `offset.metadata.max.bytes` default.
pub const MAX_METADATA_BYTES: usize = 4096;

/// An empty group without offsets is forgotten after this long (Kafka drops such groups at its
/// next offsets-retention check, every 10 minutes by default).
const EMPTY_GROUP_LINGER: Duration = Duration::from_secs(600);

/// Coordinator settings, named after the broker configs they mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a group leaving Empty waits for more members
    /// (extended by the same amount each time one arrives, up to the rebalance timeout).
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.retention.minutes` in milliseconds: offsets of a group are dropped this long after
    /// it became Empty (for groups that never had members: after their commit time).
    pub offsets_retention_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
        }
    }
}

/// Errors of the coordinator's storage.
#[derive(Debug, Error)]
pub enum GroupError {
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record with a valid CRC could not be decoded: written by an incompatible build.
    #[error("undecodable record at byte {offset} of {path}: {source}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be serialized.
    #[error("encoding an offsets record: {0}")]
    Encode(#[source] serde_json::Error),
    /// A single record exceeds the frame limit.
    #[error("offsets record of {0} bytes is too large")]
    RecordTooLarge(usize),
    /// The offsets writer reported a failed write.
    #[error("writing committed offsets failed: {0}")]
    Write(String),
    /// The coordinator was shut down.
    #[error("the group coordinator is shut down")]
    Closed,
}

impl GroupError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        GroupError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The classic group coordinator of a single-node broker. Cheap to clone.
#[derive(Clone)]
pub struct GroupCoordinator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Shared state behind every clone of the coordinator.
pub(crate) struct Inner {
    pub(crate) config: GroupConfig,
    pub(crate) groups: Mutex<HashMap<String, Group>>,
    pub(crate) store: OffsetStore,
    pub(crate) closed: AtomicBool,
    sweeper_started: AtomicBool,
    id_counter: AtomicU64,
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds from a non-negative i32 config or request value.
pub(crate) fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl GroupCoordinator {
    /// Opens the coordinator on `dir` (`<data-dir>/__consumer_offsets`), loading committed
    /// offsets. Every group with offsets starts out Empty.
    pub fn open(dir: &Path, config: GroupConfig) -> Result<Self, GroupError> {
        Self::open_with(dir, config, offsets::DEFAULT_COMPACT_MIN_BYTES)
    }

    pub(crate) fn open_with(
        dir: &Path,
        config: GroupConfig,
        compact_min_bytes: u64,
    ) -> Result<Self, GroupError> {
        let store = OffsetStore::open(dir, compact_min_bytes)?;
        let now = now_ms();
        let groups: HashMap<String, Group> = store
            .table()
            .keys()
            .map(|g| (g.clone(), Group::new(g, now)))
            .collect();
        Ok(GroupCoordinator {
            inner: Arc::new(Inner {
                config,
                groups: Mutex::new(groups),
                store,
                closed: AtomicBool::new(false),
                sweeper_started: AtomicBool::new(false),
                id_counter: AtomicU64::new(0),
            }),
        })
    }

    /// JoinGroup: waits until the rebalance completes (or answers at once on errors and
    /// MEMBER_ID_REQUIRED).
    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinGroupResponse {
        self.inner.ensure_sweeper();
        membership::join_group(&self.inner, req, version, client_id, client_host).await
    }

    /// SyncGroup: the leader delivers assignments; followers wait for them.
    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        self.inner.ensure_sweeper();
        membership::sync_group(&self.inner, req, version).await
    }

    /// Heartbeat: keeps the session alive and tells the member about pending rebalances.
    pub async fn heartbeat(&self, req: HeartbeatRequest, version: i16) -> HeartbeatResponse {
        self.inner.ensure_sweeper();
        membership::heartbeat(&self.inner, &req, version)
    }

    /// LeaveGroup: v0-2 one `member_id`, v3+ a `members` batch.
    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        self.inner.ensure_sweeper();
        membership::leave_group(&self.inner, &req, version)
    }

    /// OffsetCommit: answered once the offsets are durable.
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        self.inner.ensure_sweeper();
        commit::offset_commit(&self.inner, req, version).await
    }

    /// OffsetFetch: v1-7 one group, v8+ a `groups` batch; null topics means all. Partitions
    /// without a commit get offset -1.
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        self.inner.ensure_sweeper();
        commit::offset_fetch(&self.inner, &req, version)
    }

    /// DescribeGroups.
    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        self.inner.ensure_sweeper();
        admin::describe_groups(&self.inner, &req, version)
    }

    /// ListGroups, with the v4 state filter and v5 type filter.
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        self.inner.ensure_sweeper();
        admin::list_groups(&self.inner, &req, version)
    }

    /// DeleteGroups: only Empty groups; their offsets are removed durably.
    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        version: i16,
    ) -> DeleteGroupsResponse {
        self.inner.ensure_sweeper();
        admin::delete_groups(&self.inner, &req, version).await
    }

    /// Committed offsets of `group` as `(topic, partition, offset)`, sorted.
    pub fn committed_offsets(&self, group: &str) -> Vec<(String, i32, i64)> {
        self.inner
            .store
            .table()
            .get(group)
            .map(|offsets| {
                offsets
                    .iter()
                    .map(|((t, p), o)| (t.clone(), *p, o.offset))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A topic was deleted: drops its committed offsets from every group, durably. Blocks the
    /// calling thread until the deletion is fsynced.
    pub fn forget_topic(&self, topic: &str) {
        let has_offsets = self
            .inner
            .store
            .table()
            .values()
            .any(|offsets| offsets.keys().any(|(t, _)| t == topic));
        if !has_offsets {
            return;
        }
        let record = Record::DeleteTopic {
            topic: topic.to_string(),
        };
        match self.inner.store.write_blocking(record) {
            Ok(()) => debug!(topic, "dropped committed offsets of deleted topic"),
            Err(e) => {
                error!(topic, error = %e, "dropping committed offsets of deleted topic failed")
            }
        }
    }

    /// Stops the coordinator: pending joins and syncs are answered NOT_COORDINATOR, later calls
    /// COORDINATOR_NOT_AVAILABLE, and the offsets writer drains and stops.
    pub async fn shutdown(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let mut groups = self.inner.lock_groups();
            for group in groups.values_mut() {
                membership::unload(group);
            }
            groups.clear();
        }
        let inner = Arc::clone(&self.inner);
        if tokio::task::spawn_blocking(move || inner.store.close())
            .await
            .is_err()
        {
            warn!("closing the offsets store failed");
        }
    }
}

impl Inner {
    pub(crate) fn lock_groups(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        lock(&self.groups)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// A fresh member id: `{prefix}-{uuid-like random hex}`, as Kafka builds them.
    pub(crate) fn new_member_id(&self, prefix: &str) -> String {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut words = [0u64; 2];
        for (i, w) in words.iter_mut().enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(n);
            h.write_u128(nanos);
            h.write_usize(i);
            *w = h.finish();
        }
        let [a, b] = words;
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// Starts the periodic sweep (session expiry, offsets retention) on first use inside a
    /// runtime.
    fn ensure_sweeper(self: &Arc<Self>) {
        if self.sweeper_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let min_session = u64::try_from(self.config.min_session_timeout_ms).unwrap_or(0);
        let tick = Duration::from_millis((min_session / 4).clamp(5, 1000));
        let retention = u64::try_from(self.config.offsets_retention_ms).unwrap_or(0);
        let expiry_every = Duration::from_millis((retention / 4).clamp(50, 60_000));
        tokio::spawn(sweep_loop(weak, tick, expiry_every));
    }
}

async fn sweep_loop(weak: Weak<Inner>, tick: Duration, expiry_every: Duration) {
    let mut last_expiry = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = weak.upgrade() else { break };
        if inner.is_closed() {
            break;
        }
        membership::expire_sessions(&inner);
        if last_expiry.elapsed() >= expiry_every {
            last_expiry = tokio::time::Instant::now();
            expire_offsets(&inner).await;
        }
    }
}

/// Kafka's offsets retention: offsets of an Empty group expire `offsets_retention_ms` after it
/// became Empty; for groups that never had a protocol type (only "simple" commits), each
/// offset expires that long after its commit. Empty groups with nothing left are forgotten.
async fn expire_offsets(inner: &Arc<Inner>) {
    let retention = inner.config.offsets_retention_ms;
    let now = now_ms();
    let mut expired = Vec::new();
    {
        let mut groups = inner.lock_groups();
        let table = inner.store.table();
        groups.retain(|id, group| {
            if group.state != GroupState::Empty || !group.pending_members.is_empty() {
                return true;
            }
            match table.get(id) {
                None => group.touched.elapsed() < EMPTY_GROUP_LINGER.min(millis_i64(retention)),
                Some(offsets) => {
                    let group_expired = now.saturating_sub(group.empty_since_ms) >= retention;
                    let parts: Vec<(String, i32, i64)> = offsets
                        .iter()
                        .filter(|(_, o)| {
                            if group.protocol_type.is_some() {
                                group_expired
                            } else {
                                now.saturating_sub(o.commit_ts_ms) >= retention
                            }
                        })
                        .map(|((t, p), o)| (t.clone(), *p, o.commit_ts_ms))
                        .collect();
                    if !parts.is_empty() {
                        expired.push(Record::Expire {
                            group: id.clone(),
                            partitions: parts,
                        });
                    }
                    true
                }
            }
        });
    }
    for record in expired {
        if let Record::Expire { group, partitions } = &record {
            debug!(group = %group, partitions = partitions.len(), "expiring committed offsets");
        }
        if let Err(e) = inner.store.write(record).await {
            warn!(error = %e, "expiring committed offsets failed");
        }
    }
}

fn millis_i64(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
