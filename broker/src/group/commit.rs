//! OffsetCommit and OffsetFetch.
//!
//! Commit validation follows Kafka's `GroupCoordinator.handleCommitOffsets`: a commit with
//! generation -1 and no member id is a "simple" commit (admin tools, `assign()` consumers) and
//! is only accepted while the group has no members; otherwise the member and generation must be
//! current, and a group in CompletingRebalance answers REBALANCE_IN_PROGRESS. Metadata longer
//! than [`MAX_METADATA_BYTES`] fails only its own partition. The response waits until the
//! accepted offsets are fsynced.
//!
//! Topic existence is not checked here: the request handler knows the topics and answers
//! UNKNOWN_TOPIC_OR_PARTITION before calling in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use gatehouse_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use gatehouse_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use tracing::{debug, error};

use super::member::{Group, GroupState};
use super::offsets::{CommittedOffset, Record, StoredOffset};
use super::{Inner, MAX_METADATA_BYTES, now_ms};

pub(super) async fn offset_commit(
    inner: &Arc<Inner>,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_id = req.group_id.to_string();
    let verdict = validate_commit(inner, &req, version);
    let now = now_ms();
    let mut errors: Vec<Vec<ErrorCode>> = Vec::with_capacity(req.topics.len());
    let mut accepted = Vec::new();
    for topic in &req.topics {
        let mut topic_errors = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let error = match verdict {
                Err(e) => e,
                Ok(()) => {
                    let metadata = p.committed_metadata.as_deref().unwrap_or_default();
                    if metadata.len() > MAX_METADATA_BYTES {
                        ErrorCode::OffsetMetadataTooLarge
                    } else {
                        accepted.push(StoredOffset {
                            topic: topic.name.to_string(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            leader_epoch: if version >= 6 {
                                p.committed_leader_epoch
                            } else {
                                -1
                            },
                            metadata: metadata.to_string(),
                            commit_ts_ms: now,
                        });
                        ErrorCode::None
                    }
                }
            };
            topic_errors.push(error);
        }
        errors.push(topic_errors);
    }
    let count = accepted.len();
    if !accepted.is_empty() {
        let record = Record::Commit {
            group: group_id.clone(),
            offsets: accepted,
        };
        if let Err(e) = inner.store.write(record).await {
            error!(group = %group_id, error = %e, "committing offsets failed");
            // Kafka answers a storage failure of the offsets log with NOT_COORDINATOR.
            for e in errors.iter_mut().flatten() {
                if e.is_ok() {
                    *e = ErrorCode::NotCoordinator;
                }
            }
        } else {
            debug!(group = %group_id, partitions = count, "offsets committed");
        }
    }
    if let Err(e) = verdict {
        debug!(group = %group_id, member = %req.member_id.as_str(), error = ?e, "offset commit rejected");
    }
    let topics = req
        .topics
        .iter()
        .zip(errors)
        .map(|(t, errs)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(errs)
                        .map(|(p, e)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(e.code())
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics)
}

/// Kafka's `validateOffsetCommit` plus the CompletingRebalance rule. Creates the group for a
/// simple commit to an unknown group.
fn validate_commit(
    inner: &Arc<Inner>,
    req: &OffsetCommitRequest,
    version: i16,
) -> Result<(), ErrorCode> {
    if inner.is_closed() {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    let group_id = req.group_id.as_str();
    let member_id = req.member_id.as_str();
    let generation = req.generation_id_or_member_epoch;
    let instance_id = if version >= 7 {
        req.group_instance_id.as_ref().map(|s| s.as_str())
    } else {
        None
    };
    let member_commit = generation >= 0 || !member_id.is_empty() || instance_id.is_some();
    let mut groups = inner.lock_groups();
    let Some(group) = groups.get_mut(group_id) else {
        if generation >= 0 {
            return Err(ErrorCode::IllegalGeneration);
        }
        if member_commit {
            return Err(ErrorCode::UnknownMemberId);
        }
        groups.insert(group_id.to_string(), Group::new(group_id, now_ms()));
        return Ok(());
    };
    if group.state == GroupState::Dead {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    if member_commit {
        if group.is_static_member_fenced(member_id, instance_id) {
            return Err(ErrorCode::FencedInstanceId);
        }
        if !group.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != group.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
    } else if group.state != GroupState::Empty {
        // Only members may commit for a group that has members.
        return Err(ErrorCode::UnknownMemberId);
    }
    if group.state == GroupState::CompletingRebalance {
        return Err(ErrorCode::RebalanceInProgress);
    }
    group.touched = Instant::now();
    if let Some(m) = group.members.get_mut(member_id) {
        m.last_heartbeat = Instant::now();
    }
    Ok(())
}

/// One partition's answer: the committed offset or -1.
struct Fetched {
    partition: i32,
    offset: Option<CommittedOffset>,
}

/// Offsets of one group: `requested` None means every committed partition.
fn fetch_group(
    inner: &Arc<Inner>,
    group_id: &str,
    requested: Option<Vec<(StrBytes, Vec<i32>)>>,
) -> Result<Vec<(StrBytes, Vec<Fetched>)>, ErrorCode> {
    if inner.is_closed() {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    let table = inner.store.table();
    let offsets = table.get(group_id);
    let lookup = |topic: &str, partition: i32| {
        offsets.and_then(|o| o.get(&(topic.to_string(), partition)).cloned())
    };
    Ok(match requested {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let fetched = partitions
                    .into_iter()
                    .map(|p| Fetched {
                        partition: p,
                        offset: lookup(name.as_str(), p),
                    })
                    .collect();
                (name, fetched)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<&str, Vec<Fetched>> = BTreeMap::new();
            for ((topic, partition), o) in offsets.into_iter().flatten() {
                by_topic.entry(topic).or_default().push(Fetched {
                    partition: *partition,
                    offset: Some(o.clone()),
                });
            }
            by_topic
                .into_iter()
                .map(|(t, f)| (StrBytes::from_string(t.to_string()), f))
                .collect()
        }
    })
}

fn offset_fields(f: &Fetched, version: i16) -> (i64, i32, StrBytes) {
    match &f.offset {
        Some(o) => (
            o.offset,
            if version >= 5 { o.leader_epoch } else { -1 },
            StrBytes::from_string(o.metadata.clone()),
        ),
        None => (-1, -1, StrBytes::default()),
    }
}

pub(super) fn offset_fetch(
    inner: &Arc<Inner>,
    req: &OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let requested = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.clone(), t.partition_indexes.clone()))
                        .collect()
                });
                let (error, topics) = match fetch_group(inner, g.group_id.as_str(), requested) {
                    Ok(topics) => (ErrorCode::None, topics),
                    Err(e) => (e, Vec::new()),
                };
                let topics = topics
                    .into_iter()
                    .map(|(name, fetched)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(name.into())
                            .with_partitions(
                                fetched
                                    .iter()
                                    .map(|f| {
                                        let (offset, epoch, metadata) = offset_fields(f, version);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(f.partition)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(metadata))
                                            .with_error_code(0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
                    .with_error_code(error.code())
            })
            .collect();
        return OffsetFetchResponse::default()
            .with_throttle_time_ms(0)
            .with_groups(groups);
    }
    let requested = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.clone(), t.partition_indexes.clone()))
            .collect()
    });
    let (error, topics) = match fetch_group(inner, req.group_id.as_str(), requested) {
        Ok(topics) => (ErrorCode::None, topics),
        Err(e) if version < 2 => {
            // v1 has no top-level error: report it on every requested partition.
            let topics = req
                .topics
                .iter()
                .flatten()
                .map(|t| {
                    let fetched = t
                        .partition_indexes
                        .iter()
                        .map(|p| Fetched {
                            partition: *p,
                            offset: None,
                        })
                        .collect();
                    (t.name.0.clone(), fetched)
                })
                .collect();
            (e, topics)
        }
        Err(e) => (e, Vec::new()),
    };
    let partition_error = if version < 2 { error } else { ErrorCode::None };
    let topics = topics
        .into_iter()
        .map(|(name, fetched)| {
            OffsetFetchResponseTopic::default()
                .with_name(name.into())
                .with_partitions(
                    fetched
                        .iter()
                        .map(|f| {
                            let (offset, epoch, metadata) = offset_fields(f, version);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(f.partition)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(metadata))
                                .with_error_code(partition_error.code())
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics)
        .with_error_code(if version >= 2 { error.code() } else { 0 })
}
