//! Consumer-group membership: thin typed wrappers over FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit and OffsetFetch, and [`GroupMember`], which runs the
//! join → sync → heartbeat cycle in a background task.
//!
//! Members speak the standard `consumer` protocol (subscription and assignment encoded as
//! `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` v0 behind a version prefix)
//! with the [`RANGE_ASSIGNOR`]: the leader splits each topic's partitions into contiguous
//! ranges over the members subscribed to it, sorted by member id.
//!
//! The group leader is a natural single writer for an internal topic, but leadership is only
//! as fresh as the last heartbeat: a paused leader may not yet know it was replaced. Writers
//! that need strict exclusion must also fence at the write (e.g. check the generation, and
//! [`GroupMember::confirmed_at`] against the session timeout).
//!
//! A [`GroupProtocol`] in [`GroupMemberConfig::protocol`] replaces the consumer protocol with
//! the caller's own: its own protocol type and member metadata, and an assignor that runs on
//! the group leader and hands each member opaque bytes ([`GroupAssignment::user_data`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::errors::{broker_code, broker_error, check};
use super::metadata::BrokerInfo;
use super::{Client, Connection, lock, malformed, millis, str_bytes, topic_name, write};
use crate::{ErrorCode, ProtocolError};

/// Name of the assignment strategy [`GroupMember`] offers.
pub const RANGE_ASSIGNOR: &str = "range";
/// Protocol type of consumer groups.
const CONSUMER_PROTOCOL: &str = "consumer";

/// Who is speaking to the coordinator: generation, member id and optional static instance id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberRef<'a> {
    /// Generation from the last JoinGroup (-1 outside a generation).
    pub generation_id: i32,
    /// Member id from the last JoinGroup ("" outside the group).
    pub member_id: &'a str,
    /// Static membership id, if used.
    pub group_instance_id: Option<&'a str>,
}

impl MemberRef<'static> {
    /// Not a member: generation -1, empty member id (for standalone offset commits).
    pub const NONE: MemberRef<'static> = MemberRef {
        generation_id: -1,
        member_id: "",
        group_instance_id: None,
    };
}

/// Arguments of [`Client::join_group`].
#[derive(Debug, Clone)]
pub struct JoinGroupOptions<'a> {
    /// Group id.
    pub group_id: &'a str,
    /// "" on the first join; the coordinator assigns one.
    pub member_id: &'a str,
    /// Static membership id, if used (JoinGroup v5+).
    pub group_instance_id: Option<&'a str>,
    /// The member is dropped when no heartbeat arrives for this long.
    pub session_timeout_ms: i32,
    /// How long the coordinator waits for all members to rejoin.
    pub rebalance_timeout_ms: i32,
    /// Protocol type, e.g. "consumer".
    pub protocol_type: &'a str,
    /// Supported protocols (assignors) with this member's metadata for each.
    pub protocols: &'a [(&'a str, Bytes)],
}

/// One member as the leader sees it in a JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id, if any.
    pub group_instance_id: Option<String>,
    /// The metadata the member sent for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to [`Client::join_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResult {
    /// The new generation.
    pub generation_id: i32,
    /// Protocol type (JoinGroup v7+).
    pub protocol_type: Option<String>,
    /// The protocol (assignor) the coordinator chose.
    pub protocol_name: Option<String>,
    /// Member id of the leader.
    pub leader_id: String,
    /// Our member id.
    pub member_id: String,
    /// True when the leader must not compute a new assignment (JoinGroup v9, static members).
    pub skip_assignment: bool,
    /// All members with their metadata; only filled in for the leader.
    pub members: Vec<JoinedMember>,
}

impl JoinGroupResult {
    /// True when we lead this generation.
    pub fn is_leader(&self) -> bool {
        self.leader_id == self.member_id
    }
}

/// Arguments of [`Client::sync_group`].
#[derive(Debug, Clone)]
pub struct SyncGroupOptions<'a> {
    /// Group id.
    pub group_id: &'a str,
    /// Who we are in which generation.
    pub member: MemberRef<'a>,
    /// Protocol type (sent from SyncGroup v5).
    pub protocol_type: Option<&'a str>,
    /// Chosen protocol (sent from SyncGroup v5).
    pub protocol_name: Option<&'a str>,
    /// The leader's assignment per member id; empty for followers.
    pub assignments: &'a [(String, Bytes)],
}

/// One committed offset from [`Client::offset_fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset, -1 when nothing was committed.
    pub offset: i64,
    /// Metadata stored with the commit.
    pub metadata: Option<String>,
}

fn opt_string(s: &Option<kafka_protocol::protocol::StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

fn group_id(s: &str) -> GroupId {
    GroupId(str_bytes(s))
}

fn require_static_support(
    instance: Option<&str>,
    version: i16,
    min: i16,
    api: &str,
) -> Result<(), ProtocolError> {
    if instance.is_some() && version < min {
        return Err(super::errors::unsupported_version(format!(
            "{api} v{version} cannot carry a group instance id (needs v{min}+)"
        )));
    }
    Ok(())
}

impl Client {
    /// Finds the coordinator of `group` (and remembers it for the group calls below).
    pub async fn find_coordinator(&self, group: &str) -> Result<BrokerInfo, ProtocolError> {
        self.retry("find_coordinator", true, &[], Some(group), || {
            self.try_find_coordinator(group)
        })
        .await
    }

    async fn try_find_coordinator(&self, group: &str) -> Result<BrokerInfo, ProtocolError> {
        let conn = self.any_broker().await?;
        let version = conn.version_for::<FindCoordinatorRequest>()?;
        let mut req = FindCoordinatorRequest::default();
        if version >= 4 {
            req.coordinator_keys = vec![str_bytes(group)];
        } else {
            req.key = str_bytes(group);
        }
        let resp = conn.send(req, version).await?;
        let ctx = format!("find coordinator of group {group}");
        let info = if version >= 4 {
            let Some(c) = resp
                .coordinators
                .iter()
                .find(|c| c.key.as_str() == group)
                .or_else(|| resp.coordinators.first())
            else {
                return Err(malformed("FindCoordinator response", "no coordinator"));
            };
            check(c.error_code, &ctx, c.error_message.as_deref())?;
            BrokerInfo {
                node_id: c.node_id.0,
                host: c.host.to_string(),
                port: c.port,
                rack: None,
            }
        } else {
            check(resp.error_code, &ctx, resp.error_message.as_deref())?;
            BrokerInfo {
                node_id: resp.node_id.0,
                host: resp.host.to_string(),
                port: resp.port,
                rack: None,
            }
        };
        write(&self.inner.metadata)
            .brokers
            .entry(info.node_id)
            .or_insert_with(|| info.clone());
        lock(&self.inner.coordinators).insert(group.to_owned(), info.node_id);
        debug!(group, coordinator = info.node_id, "found coordinator");
        Ok(info)
    }

    async fn coordinator(&self, group: &str) -> Result<std::sync::Arc<Connection>, ProtocolError> {
        let cached = lock(&self.inner.coordinators).get(group).copied();
        let node = match cached {
            Some(n) => n,
            None => self.try_find_coordinator(group).await?.node_id,
        };
        self.broker(node).await
    }

    /// JoinGroup on the group's coordinator. Handles MEMBER_ID_REQUIRED (v4+) by rejoining
    /// once with the member id the coordinator handed out. Waits up to the rebalance timeout.
    pub async fn join_group(
        &self,
        opts: &JoinGroupOptions<'_>,
    ) -> Result<JoinGroupResult, ProtocolError> {
        self.retry("join_group", true, &[], Some(opts.group_id), || {
            self.try_join_group(opts)
        })
        .await
    }

    async fn try_join_group(
        &self,
        opts: &JoinGroupOptions<'_>,
    ) -> Result<JoinGroupResult, ProtocolError> {
        let conn = self.coordinator(opts.group_id).await?;
        let version = conn.version_for::<JoinGroupRequest>()?;
        require_static_support(opts.group_instance_id, version, 5, "JoinGroup")?;
        let timeout = self.inner.config.connection.request_timeout
            + Duration::from_millis(u64::try_from(opts.rebalance_timeout_ms).unwrap_or(0));
        let mut member_id = opts.member_id.to_owned();
        let ctx = format!("join group {}", opts.group_id);
        for _ in 0..2 {
            let req = JoinGroupRequest::default()
                .with_group_id(group_id(opts.group_id))
                .with_session_timeout_ms(opts.session_timeout_ms)
                .with_rebalance_timeout_ms(opts.rebalance_timeout_ms)
                .with_member_id(str_bytes(&member_id))
                .with_group_instance_id(opts.group_instance_id.map(str_bytes))
                .with_protocol_type(str_bytes(opts.protocol_type))
                .with_protocols(
                    opts.protocols
                        .iter()
                        .map(|(name, meta)| {
                            JoinGroupRequestProtocol::default()
                                .with_name(str_bytes(name))
                                .with_metadata(meta.clone())
                        })
                        .collect(),
                );
            let resp = conn.send_with_timeout(req, version, timeout).await?;
            if resp.error_code == ErrorCode::MemberIdRequired.code() && !resp.member_id.is_empty() {
                debug!(group = opts.group_id, member = %resp.member_id, "member id required, rejoining");
                member_id = resp.member_id.to_string();
                continue;
            }
            check(resp.error_code, &ctx, None)?;
            return Ok(JoinGroupResult {
                generation_id: resp.generation_id,
                protocol_type: opt_string(&resp.protocol_type),
                protocol_name: opt_string(&resp.protocol_name),
                leader_id: resp.leader.to_string(),
                member_id: resp.member_id.to_string(),
                skip_assignment: resp.skip_assignment,
                members: resp
                    .members
                    .iter()
                    .map(|m| JoinedMember {
                        member_id: m.member_id.to_string(),
                        group_instance_id: opt_string(&m.group_instance_id),
                        metadata: m.metadata.clone(),
                    })
                    .collect(),
            });
        }
        Err(broker_error(
            ErrorCode::MemberIdRequired.code(),
            &ctx,
            Some("coordinator kept asking for a member id"),
        ))
    }

    /// SyncGroup: the leader sends the assignment, everyone gets their own back.
    pub async fn sync_group(&self, opts: &SyncGroupOptions<'_>) -> Result<Bytes, ProtocolError> {
        self.retry("sync_group", true, &[], Some(opts.group_id), || {
            self.try_sync_group(opts)
        })
        .await
    }

    async fn try_sync_group(&self, opts: &SyncGroupOptions<'_>) -> Result<Bytes, ProtocolError> {
        let conn = self.coordinator(opts.group_id).await?;
        let version = conn.version_for::<SyncGroupRequest>()?;
        require_static_support(opts.member.group_instance_id, version, 3, "SyncGroup")?;
        let mut req = SyncGroupRequest::default()
            .with_group_id(group_id(opts.group_id))
            .with_generation_id(opts.member.generation_id)
            .with_member_id(str_bytes(opts.member.member_id))
            .with_group_instance_id(opts.member.group_instance_id.map(str_bytes))
            .with_assignments(
                opts.assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(str_bytes(m))
                            .with_assignment(a.clone())
                    })
                    .collect(),
            );
        if version >= 5 {
            req.protocol_type = opts.protocol_type.map(str_bytes);
            req.protocol_name = opts.protocol_name.map(str_bytes);
        }
        let resp = conn.send(req, version).await?;
        check(
            resp.error_code,
            &format!("sync group {}", opts.group_id),
            None,
        )?;
        Ok(resp.assignment)
    }

    /// Heartbeat for `member` of `group`. REBALANCE_IN_PROGRESS means: rejoin.
    pub async fn heartbeat(
        &self,
        group: &str,
        member: &MemberRef<'_>,
    ) -> Result<(), ProtocolError> {
        self.retry("heartbeat", true, &[], Some(group), || {
            self.try_heartbeat(group, member)
        })
        .await
    }

    async fn try_heartbeat(
        &self,
        group: &str,
        member: &MemberRef<'_>,
    ) -> Result<(), ProtocolError> {
        let conn = self.coordinator(group).await?;
        let version = conn.version_for::<HeartbeatRequest>()?;
        require_static_support(member.group_instance_id, version, 3, "Heartbeat")?;
        let req = HeartbeatRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(member.generation_id)
            .with_member_id(str_bytes(member.member_id))
            .with_group_instance_id(member.group_instance_id.map(str_bytes));
        let resp = conn.send(req, version).await?;
        check(resp.error_code, &format!("heartbeat group {group}"), None)
    }

    /// Leaves `group`.
    pub async fn leave_group(
        &self,
        group: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), ProtocolError> {
        self.retry("leave_group", true, &[], Some(group), || {
            self.try_leave_group(group, member_id, group_instance_id)
        })
        .await
    }

    async fn try_leave_group(
        &self,
        group: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), ProtocolError> {
        let conn = self.coordinator(group).await?;
        let version = conn.version_for::<LeaveGroupRequest>()?;
        require_static_support(group_instance_id, version, 3, "LeaveGroup")?;
        let mut req = LeaveGroupRequest::default().with_group_id(group_id(group));
        if version >= 3 {
            req.members = vec![
                MemberIdentity::default()
                    .with_member_id(str_bytes(member_id))
                    .with_group_instance_id(group_instance_id.map(str_bytes)),
            ];
        } else {
            req.member_id = str_bytes(member_id);
        }
        let resp = conn.send(req, version).await?;
        let ctx = format!("leave group {group}");
        check(resp.error_code, &ctx, None)?;
        for m in &resp.members {
            check(m.error_code, &ctx, None)?;
        }
        Ok(())
    }

    /// Commits `(topic, partition, offset)` triples for `group` as `member`
    /// ([`MemberRef::NONE`] for a standalone commit).
    pub async fn offset_commit(
        &self,
        group: &str,
        member: &MemberRef<'_>,
        offsets: &[(&str, i32, i64)],
    ) -> Result<(), ProtocolError> {
        self.retry("offset_commit", true, &[], Some(group), || {
            self.try_offset_commit(group, member, offsets)
        })
        .await
    }

    async fn try_offset_commit(
        &self,
        group: &str,
        member: &MemberRef<'_>,
        offsets: &[(&str, i32, i64)],
    ) -> Result<(), ProtocolError> {
        let conn = self.coordinator(group).await?;
        let version = conn.version_for::<OffsetCommitRequest>()?;
        require_static_support(member.group_instance_id, version, 7, "OffsetCommit")?;
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (topic, partition, offset) in offsets {
            by_topic.entry(topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(member.generation_id)
            .with_member_id(str_bytes(member.member_id))
            .with_group_instance_id(member.group_instance_id.map(str_bytes))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(parts)
                    })
                    .collect(),
            );
        let resp = conn.send(req, version).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                check(
                    p.error_code,
                    &format!("commit {group} {}-{}", t.name.0, p.partition_index),
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// The offsets `group` committed for `(topic, partition)` pairs.
    pub async fn offset_fetch(
        &self,
        group: &str,
        partitions: &[(&str, i32)],
    ) -> Result<Vec<CommittedOffset>, ProtocolError> {
        self.retry("offset_fetch", true, &[], Some(group), || {
            self.try_offset_fetch(group, partitions)
        })
        .await
    }

    async fn try_offset_fetch(
        &self,
        group: &str,
        partitions: &[(&str, i32)],
    ) -> Result<Vec<CommittedOffset>, ProtocolError> {
        let conn = self.coordinator(group).await?;
        let version = conn.version_for::<OffsetFetchRequest>()?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let mut req = OffsetFetchRequest::default();
        if version >= 8 {
            req.groups = vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(group_id(group))
                    .with_topics(Some(
                        by_topic
                            .iter()
                            .map(|(t, p)| {
                                OffsetFetchRequestTopics::default()
                                    .with_name(topic_name(t))
                                    .with_partition_indexes(p.clone())
                            })
                            .collect(),
                    )),
            ];
        } else {
            req.group_id = group_id(group);
            req.topics = Some(
                by_topic
                    .iter()
                    .map(|(t, p)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partition_indexes(p.clone())
                    })
                    .collect(),
            );
        }
        let resp = conn.send(req, version).await?;
        let ctx = format!("offset fetch {group}");
        let mut out = Vec::new();
        if version >= 8 {
            for g in &resp.groups {
                check(g.error_code, &ctx, None)?;
                for t in &g.topics {
                    for p in &t.partitions {
                        check(p.error_code, &ctx, None)?;
                        out.push(CommittedOffset {
                            topic: t.name.0.to_string(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            metadata: opt_string(&p.metadata),
                        });
                    }
                }
            }
        } else {
            if version >= 2 {
                check(resp.error_code, &ctx, None)?;
            }
            for t in &resp.topics {
                for p in &t.partitions {
                    check(p.error_code, &ctx, None)?;
                    out.push(CommittedOffset {
                        topic: t.name.0.to_string(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        metadata: opt_string(&p.metadata),
                    });
                }
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Consumer protocol encoding and the range assignor.

fn encode_versioned<M: Encodable>(msg: &M, version: i16) -> Result<Bytes, ProtocolError> {
    let size = msg.compute_size(version).map_err(ProtocolError::codec)?;
    let mut out = BytesMut::with_capacity(2 + size);
    out.put_i16(version);
    msg.encode(&mut out, version)
        .map_err(ProtocolError::codec)?;
    Ok(out.freeze())
}

fn decode_versioned<M: Decodable + Message>(
    mut bytes: Bytes,
    what: &'static str,
) -> Result<M, ProtocolError> {
    if bytes.len() < 2 {
        return Err(ProtocolError::Truncated {
            what,
            needed: 2,
            had: bytes.len(),
        });
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(malformed(what, format!("negative version {version}")));
    }
    // Newer versions only append fields, so read them as the newest we know.
    let version = version.min(M::VERSIONS.max);
    M::decode(&mut bytes, version).map_err(ProtocolError::codec)
}

/// Encodes consumer-protocol subscription metadata (v0) for `topics`.
pub fn encode_subscription(topics: &[String]) -> Result<Bytes, ProtocolError> {
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| str_bytes(t)).collect());
    encode_versioned(&sub, 0)
}

/// The topics in a member's consumer-protocol subscription metadata.
pub fn decode_subscription(metadata: Bytes) -> Result<Vec<String>, ProtocolError> {
    let sub: ConsumerProtocolSubscription = decode_versioned(metadata, "consumer subscription")?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

/// Encodes a consumer-protocol assignment (v0).
pub fn encode_assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Result<Bytes, ProtocolError> {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(t, p)| {
                AssignedPartitions::default()
                    .with_topic(topic_name(t))
                    .with_partitions(p.clone())
            })
            .collect(),
    );
    encode_versioned(&a, 0)
}

/// Decodes a consumer-protocol assignment; empty bytes mean "nothing assigned".
pub fn decode_assignment(bytes: Bytes) -> Result<BTreeMap<String, Vec<i32>>, ProtocolError> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let a: ConsumerProtocolAssignment = decode_versioned(bytes, "consumer assignment")?;
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in a.assigned_partitions {
        out.entry(tp.topic.0.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    for p in out.values_mut() {
        p.sort_unstable();
    }
    Ok(out)
}

/// The range assignor: for every topic, the members subscribed to it (sorted by member id)
/// get contiguous ranges of its partitions, the first `count % members` one extra. Topics
/// missing from `partition_counts` are skipped. Every member gets an entry, maybe empty.
pub fn range_assign(
    subscriptions: &[(String, Vec<String>)],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .iter()
        .map(|(m, _)| (m.clone(), BTreeMap::new()))
        .collect();
    let mut subscribers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (member, topics) in subscriptions {
        for t in topics {
            subscribers.entry(t).or_default().insert(member);
        }
    }
    for (topic, members) in subscribers {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        let count = usize::try_from(count).unwrap_or(0);
        let n = members.len();
        if n == 0 || count == 0 {
            continue;
        }
        let (per, extra) = (count / n, count % n);
        let mut next = 0usize;
        for (i, member) in members.into_iter().enumerate() {
            let take = per + usize::from(i < extra);
            if take > 0 {
                let parts = (next..next + take)
                    .filter_map(|p| i32::try_from(p).ok())
                    .collect();
                if let Some(m) = out.get_mut(member) {
                    m.insert(topic.to_owned(), parts);
                }
            }
            next += take;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// GroupMember.

/// The leader's assignor of a [`GroupProtocol`]: given the JoinGroup answer (with every
/// member's metadata), the assignment bytes per member id.
pub type GroupAssignor = Arc<dyn Fn(&JoinGroupResult) -> Vec<(String, Bytes)> + Send + Sync>;

/// A group protocol of the caller's own instead of the consumer protocol (for leader election
/// among service nodes, as Confluent Schema Registry's `sr` protocol does).
#[derive(Clone)]
pub struct GroupProtocol {
    /// JoinGroup protocol type (e.g. `"sr"`; all members must agree).
    pub protocol_type: String,
    /// The one protocol name offered.
    pub name: String,
    /// This member's metadata.
    pub metadata: Bytes,
    /// Runs on the group leader.
    pub assign: GroupAssignor,
}

impl std::fmt::Debug for GroupProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupProtocol")
            .field("protocol_type", &self.protocol_type)
            .field("name", &self.name)
            .field("metadata_len", &self.metadata.len())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`GroupMember`].
#[derive(Debug, Clone)]
pub struct GroupMemberConfig {
    /// Group id.
    pub group_id: String,
    /// Topics this member subscribes to.
    pub topics: Vec<String>,
    /// Static membership id (survives restarts without a rebalance), if wanted.
    pub group_instance_id: Option<String>,
    /// The coordinator drops us after this long without a heartbeat (brokers allow 6s-30min
    /// by default).
    pub session_timeout: Duration,
    /// How long a rebalance may wait for members to rejoin.
    pub rebalance_timeout: Duration,
    /// Time between heartbeats (keep well under a third of the session timeout).
    pub heartbeat_interval: Duration,
    /// Pause between failed join attempts.
    pub retry_backoff: Duration,
    /// `None`: the consumer protocol with the range assignor over [`Self::topics`]; else
    /// this protocol (and `topics` is unused).
    pub protocol: Option<GroupProtocol>,
}

impl GroupMemberConfig {
    /// Defaults: 10 s session, 30 s rebalance, 3 s heartbeat, 500 ms back-off.
    pub fn new(group_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group_id: group_id.into(),
            topics,
            group_instance_id: None,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(3),
            retry_backoff: Duration::from_millis(500),
            protocol: None,
        }
    }
}

/// The outcome of one successful join + sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAssignment {
    /// Generation of the group.
    pub generation_id: i32,
    /// Our member id.
    pub member_id: String,
    /// The leader's member id.
    pub leader_id: String,
    /// Partitions assigned to us, by topic (consumer protocol; empty with a [`GroupProtocol`]).
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// The assignment bytes as the coordinator handed them to us.
    pub user_data: Bytes,
}

impl GroupAssignment {
    /// True when we lead this generation (and so may act as the single writer).
    pub fn is_leader(&self) -> bool {
        self.leader_id == self.member_id
    }
}

/// A live group membership: joined, synced and heartbeating in a background task that
/// rejoins on rebalances. The current assignment is `None` while (re)joining or after
/// heartbeats failed for a whole session timeout. Dropping it stops heartbeating without
/// leaving (the coordinator expires us); [`GroupMember::leave`] leaves cleanly.
#[derive(Debug)]
pub struct GroupMember {
    client: Client,
    config: GroupMemberConfig,
    state: watch::Receiver<Option<GroupAssignment>>,
    member_id: Arc<Mutex<String>>,
    confirmed: Arc<Mutex<Option<Instant>>>,
    task: JoinHandle<()>,
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GroupMember {
    /// Joins the group (returning the first join/sync error, if any), then keeps the
    /// membership alive in the background.
    pub async fn join(client: Client, config: GroupMemberConfig) -> Result<Self, ProtocolError> {
        let member_id = Arc::new(Mutex::new(String::new()));
        let sent = Instant::now();
        let first = join_and_sync(&client, &config, &member_id).await?;
        info!(group = %config.group_id, generation = first.generation_id,
            leader = first.is_leader(), "joined group");
        let confirmed = Arc::new(Mutex::new(Some(sent)));
        let (tx, state) = watch::channel(Some(first));
        let task = tokio::spawn(keep_alive(
            client.clone(),
            config.clone(),
            member_id.clone(),
            confirmed.clone(),
            tx,
        ));
        Ok(GroupMember {
            client,
            config,
            state,
            member_id,
            confirmed,
            task,
        })
    }

    /// The current assignment, `None` while rebalancing or out of touch with the coordinator.
    pub fn assignment(&self) -> Option<GroupAssignment> {
        self.state.borrow().clone()
    }

    /// The current generation, if in one.
    pub fn generation(&self) -> Option<i32> {
        self.state.borrow().as_ref().map(|a| a.generation_id)
    }

    /// True when we currently lead the group.
    pub fn is_leader(&self) -> bool {
        self.state
            .borrow()
            .as_ref()
            .is_some_and(GroupAssignment::is_leader)
    }

    /// When the request that last confirmed our membership (the JoinGroup of this generation
    /// or the last successful Heartbeat) was *sent*; `None` while out of the group. The
    /// coordinator processed it later, so it keeps us at least until this instant plus the
    /// session timeout: a lease a single writer can check before writing.
    pub fn confirmed_at(&self) -> Option<Instant> {
        *lock(&self.confirmed)
    }

    /// The configuration this member runs with.
    pub fn config(&self) -> &GroupMemberConfig {
        &self.config
    }

    /// A receiver that sees every change of the assignment.
    pub fn watch(&self) -> watch::Receiver<Option<GroupAssignment>> {
        self.state.clone()
    }

    /// Stops heartbeating and leaves the group so that the others rebalance at once.
    pub async fn leave(self) -> Result<(), ProtocolError> {
        self.task.abort();
        let member_id = lock(&self.member_id).clone();
        if member_id.is_empty() {
            return Ok(());
        }
        self.client
            .leave_group(
                &self.config.group_id,
                &member_id,
                self.config.group_instance_id.as_deref(),
            )
            .await
    }
}

/// One JoinGroup + SyncGroup round; as leader, computes the range assignment.
async fn join_and_sync(
    client: &Client,
    config: &GroupMemberConfig,
    member_id: &Mutex<String>,
) -> Result<GroupAssignment, ProtocolError> {
    let (protocol_type, protocols) = match &config.protocol {
        Some(p) => (
            p.protocol_type.as_str(),
            [(p.name.as_str(), p.metadata.clone())],
        ),
        None => (
            CONSUMER_PROTOCOL,
            [(RANGE_ASSIGNOR, encode_subscription(&config.topics)?)],
        ),
    };
    let current = lock(member_id).clone();
    let opts = JoinGroupOptions {
        group_id: &config.group_id,
        member_id: &current,
        group_instance_id: config.group_instance_id.as_deref(),
        session_timeout_ms: millis(config.session_timeout),
        rebalance_timeout_ms: millis(config.rebalance_timeout),
        protocol_type,
        protocols: &protocols,
    };
    let joined = match client.join_group(&opts).await {
        Ok(j) => j,
        Err(e) => {
            if matches!(
                broker_code(&e),
                Some(ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration)
            ) {
                lock(member_id).clear();
            }
            return Err(e);
        }
    };
    *lock(member_id) = joined.member_id.clone();
    let assignments = if joined.is_leader() && !joined.skip_assignment {
        match &config.protocol {
            Some(p) => (p.assign)(&joined),
            None => leader_assignments(client, &joined).await?,
        }
    } else {
        Vec::new()
    };
    let member = MemberRef {
        generation_id: joined.generation_id,
        member_id: &joined.member_id,
        group_instance_id: config.group_instance_id.as_deref(),
    };
    let bytes = client
        .sync_group(&SyncGroupOptions {
            group_id: &config.group_id,
            member,
            protocol_type: Some(protocol_type),
            protocol_name: joined.protocol_name.as_deref(),
            assignments: &assignments,
        })
        .await?;
    let partitions = match &config.protocol {
        Some(_) => BTreeMap::new(),
        None => decode_assignment(bytes.clone())?,
    };
    Ok(GroupAssignment {
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        leader_id: joined.leader_id.clone(),
        partitions,
        user_data: bytes,
    })
}

async fn leader_assignments(
    client: &Client,
    joined: &JoinGroupResult,
) -> Result<Vec<(String, Bytes)>, ProtocolError> {
    let subscriptions: Vec<(String, Vec<String>)> = joined
        .members
        .iter()
        .map(|m| {
            let topics = decode_subscription(m.metadata.clone()).unwrap_or_else(|e| {
                warn!(member = %m.member_id, error = %e, "unreadable subscription, assigning nothing");
                Vec::new()
            });
            (m.member_id.clone(), topics)
        })
        .collect();
    let topics: BTreeSet<&str> = subscriptions
        .iter()
        .flat_map(|(_, t)| t.iter().map(String::as_str))
        .collect();
    let topics: Vec<&str> = topics.into_iter().collect();
    let md = client.metadata(Some(&topics)).await?;
    let counts: BTreeMap<String, i32> = md
        .topics
        .values()
        .filter(|t| t.error_code == 0)
        .map(|t| {
            (
                t.name.clone(),
                i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
            )
        })
        .collect();
    range_assign(&subscriptions, &counts)
        .into_iter()
        .map(|(member, parts)| Ok((member, encode_assignment(&parts)?)))
        .collect()
}

/// Heartbeats; on REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION or a session
/// without a successful heartbeat, rejoins until it succeeds.
async fn keep_alive(
    client: Client,
    config: GroupMemberConfig,
    member_id: Arc<Mutex<String>>,
    confirmed: Arc<Mutex<Option<Instant>>>,
    state: watch::Sender<Option<GroupAssignment>>,
) {
    let group = config.group_id.as_str();
    let mut current = state.borrow().clone();
    let mut last_ok = Instant::now();
    loop {
        if let Some(a) = &current {
            tokio::time::sleep(config.heartbeat_interval).await;
            let member = MemberRef {
                generation_id: a.generation_id,
                member_id: &a.member_id,
                group_instance_id: config.group_instance_id.as_deref(),
            };
            let sent = Instant::now();
            match client.heartbeat(group, &member).await {
                Ok(()) => {
                    last_ok = Instant::now();
                    *lock(&confirmed) = Some(sent);
                    continue;
                }
                Err(e) => match broker_code(&e) {
                    Some(ErrorCode::RebalanceInProgress) => {
                        debug!(group, "rebalance in progress, rejoining");
                    }
                    Some(
                        ErrorCode::UnknownMemberId
                        | ErrorCode::IllegalGeneration
                        | ErrorCode::FencedInstanceId,
                    ) => {
                        warn!(group, error = %e, "fenced out of the group, rejoining");
                        if matches!(broker_code(&e), Some(ErrorCode::UnknownMemberId)) {
                            lock(&member_id).clear();
                        }
                    }
                    _ if last_ok.elapsed() < config.session_timeout => {
                        warn!(group, error = %e, "heartbeat failed");
                        continue;
                    }
                    _ => warn!(group, error = %e, "no heartbeat for a whole session, rejoining"),
                },
            }
            current = None;
            *lock(&confirmed) = None;
            state.send_replace(None);
        }
        let sent = Instant::now();
        match join_and_sync(&client, &config, &member_id).await {
            Ok(a) => {
                *lock(&confirmed) = Some(sent);
                info!(
                    group,
                    generation = a.generation_id,
                    leader = a.is_leader(),
                    "rejoined group"
                );
                last_ok = Instant::now();
                current = Some(a.clone());
                state.send_replace(Some(a));
            }
            Err(e) => {
                warn!(group, error = %e, "rejoining failed");
                tokio::time::sleep(config.retry_backoff).await;
            }
        }
    }
}
