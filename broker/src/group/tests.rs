//! Coordinator scenario tests. Every request and response goes through the wire codec at the
//! version under test, so a field set at a version that lacks it fails the test.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatehouse_protocol::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use gatehouse_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use gatehouse_protocol::messages::leave_group_request::MemberIdentity;
use gatehouse_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use gatehouse_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use gatehouse_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use gatehouse_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};

use super::offsets::LOG_FILE;
use super::{GroupConfig, GroupCoordinator};

const NONE: i16 = 0;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const ILLEGAL_GENERATION: i16 = 22;
const INVALID_GROUP_ID: i16 = 24;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;
const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

fn config() -> GroupConfig {
    GroupConfig {
        min_session_timeout_ms: 100,
        max_session_timeout_ms: 60_000,
        initial_rebalance_delay_ms: 100,
        offsets_retention_ms: 7 * 24 * 3600 * 1000,
    }
}

fn open(dir: &std::path::Path, config: GroupConfig) -> GroupCoordinator {
    GroupCoordinator::open(dir, config).unwrap()
}

/// Encodes and decodes `msg` at `version`, as the wire would.
fn wire<T: Encodable + Decodable>(msg: T, version: i16) -> T {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encoding at v{version}: {e}"));
    let mut bytes = buf.freeze();
    let decoded = T::decode(&mut bytes, version).unwrap();
    assert!(bytes.is_empty(), "trailing bytes at v{version}");
    decoded
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn join_req(
    group: &str,
    member: &str,
    v: i16,
    session_ms: i32,
    rebalance_ms: i32,
) -> JoinGroupRequest {
    let mut r = JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(session_ms)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from(format!("meta-of-{member}"))),
            JoinGroupRequestProtocol::default()
                .with_name(s("roundrobin"))
                .with_metadata(Bytes::from_static(b"rr")),
        ]);
    if v >= 1 {
        r = r.with_rebalance_timeout_ms(rebalance_ms);
    }
    r
}

async fn join(c: &GroupCoordinator, req: JoinGroupRequest, v: i16) -> JoinGroupResponse {
    let resp = c.join_group(wire(req, v), v, "client", "/127.0.0.1").await;
    wire(resp, v)
}

/// Joins as a new member, doing the MEMBER_ID_REQUIRED round trip when the version asks for it.
async fn join_new(
    c: &GroupCoordinator,
    group: &str,
    v: i16,
    session_ms: i32,
    rebalance_ms: i32,
) -> JoinGroupResponse {
    let first = join(c, join_req(group, "", v, session_ms, rebalance_ms), v).await;
    if first.error_code != MEMBER_ID_REQUIRED {
        return first;
    }
    assert!(v >= 4);
    join(
        c,
        join_req(group, &first.member_id, v, session_ms, rebalance_ms),
        v,
    )
    .await
}

async fn rejoin(
    c: &GroupCoordinator,
    group: &str,
    member: &str,
    v: i16,
    session_ms: i32,
    rebalance_ms: i32,
) -> JoinGroupResponse {
    join(c, join_req(group, member, v, session_ms, rebalance_ms), v).await
}

async fn sync(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member: &str,
    v: i16,
    assignments: &[(&str, &str)],
) -> SyncGroupResponse {
    let mut req = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        );
    if v >= 5 {
        req = req
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")));
    }
    wire(c.sync_group(wire(req, v), v).await, v)
}

async fn heartbeat(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member: &str,
    v: i16,
) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member));
    wire(c.heartbeat(wire(req, v), v).await, v).error_code
}

async fn leave(c: &GroupCoordinator, group: &str, member: &str, v: i16) -> i16 {
    let mut req = LeaveGroupRequest::default().with_group_id(gid(group));
    req = if v >= 3 {
        req.with_members(vec![MemberIdentity::default().with_member_id(s(member))])
    } else {
        req.with_member_id(s(member))
    };
    let resp = wire(c.leave_group(wire(req, v), v).await, v);
    if v >= 3 {
        assert_eq!(resp.error_code, NONE);
        assert_eq!(resp.members.len(), 1);
        resp.members[0].error_code
    } else {
        resp.error_code
    }
}

async fn commit(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member: &str,
    v: i16,
    parts: &[(&str, i32, i64, &str)],
) -> OffsetCommitResponse {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset, metadata) in parts {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(if v >= 6 { 7 } else { -1 })
            .with_committed_metadata(Some(s(metadata)));
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics);
    wire(c.offset_commit(wire(req, v), v).await, v)
}

fn commit_errors(resp: &OffsetCommitResponse) -> Vec<i16> {
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

async fn simple_commit(c: &GroupCoordinator, group: &str, parts: &[(&str, i32, i64, &str)]) {
    let resp = commit(c, group, -1, "", 8, parts).await;
    assert!(commit_errors(&resp).iter().all(|e| *e == NONE), "{resp:?}");
}

/// (topic, partition, offset, leader epoch, metadata) from a v1-7 response.
fn fetched(resp: &OffsetFetchResponse) -> Vec<(String, i32, i64, i32, String)> {
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata.as_deref().unwrap_or("<null>").to_string(),
                )
            })
        })
        .collect()
}

async fn fetch_v(
    c: &GroupCoordinator,
    group: &str,
    v: i16,
    topics: Option<&[(&str, &[i32])]>,
) -> OffsetFetchResponse {
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        }));
    wire(c.offset_fetch(wire(req, v), v).await, v)
}

async fn describe(c: &GroupCoordinator, group: &str, v: i16) -> DescribeGroupsResponse {
    let req = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    wire(c.describe_groups(wire(req, v), v).await, v)
}

async fn list(c: &GroupCoordinator, v: i16, states: &[&str], types: &[&str]) -> ListGroupsResponse {
    let mut req = ListGroupsRequest::default();
    if v >= 4 {
        req = req.with_states_filter(states.iter().map(|x| s(x)).collect());
    }
    if v >= 5 {
        req = req.with_types_filter(types.iter().map(|x| s(x)).collect());
    }
    wire(c.list_groups(wire(req, v), v).await, v)
}

async fn delete(c: &GroupCoordinator, group: &str, v: i16) -> i16 {
    let req = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
    let resp = wire(c.delete_groups(wire(req, v), v).await, v);
    resp.results[0].error_code
}

/// Two members join together and sync; returns (leader, follower, generation).
async fn stable_pair(c: &GroupCoordinator, group: &str) -> (String, String, i32) {
    let (a, b) = tokio::join!(
        join_new(c, group, 5, 10_000, 5_000),
        join_new(c, group, 5, 10_000, 5_000)
    );
    assert_eq!(a.error_code, NONE, "{a:?}");
    assert_eq!(b.error_code, NONE, "{b:?}");
    assert_eq!(a.generation_id, b.generation_id);
    let (leader, follower) = if a.leader == a.member_id {
        (a, b)
    } else {
        (b, a)
    };
    let generation = leader.generation_id;
    let l = leader.member_id.to_string();
    let f = follower.member_id.to_string();
    let assignments = [(l.as_str(), "for-leader"), (f.as_str(), "for-follower")];
    let (sl, sf) = tokio::join!(
        sync(c, group, generation, &l, 5, &assignments),
        sync(c, group, generation, &f, 5, &[])
    );
    assert_eq!(sl.error_code, NONE);
    assert_eq!(sf.error_code, NONE);
    (l, f, generation)
}

/// Heartbeats until the answer is `want` (or gives up after a few seconds).
async fn heartbeat_until(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member: &str,
    want: i16,
) {
    for _ in 0..200 {
        if heartbeat(c, group, generation, member, 4).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("heartbeat of {member} never returned {want}");
}

#[tokio::test]
async fn two_members_joining_together_share_one_generation() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    let (a, b) = tokio::join!(
        join_new(&c, "g", 7, 10_000, 5_000),
        join_new(&c, "g", 7, 10_000, 5_000)
    );
    assert_eq!((a.error_code, b.error_code), (NONE, NONE));
    assert_eq!(a.generation_id, 1);
    assert_eq!(b.generation_id, 1);
    assert_eq!(a.leader, b.leader);
    assert_eq!(a.protocol_name.as_deref(), Some("range"));
    assert_eq!(a.protocol_type.as_deref(), Some("consumer"));
    let (leader, follower) = if a.leader == a.member_id {
        (a, b)
    } else {
        (b, a)
    };
    assert!(follower.members.is_empty());
    let mut ids: Vec<String> = leader
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    ids.sort();
    let mut want = vec![leader.member_id.to_string(), follower.member_id.to_string()];
    want.sort();
    assert_eq!(ids, want);
    for m in &leader.members {
        assert_eq!(
            m.metadata,
            Bytes::from(format!("meta-of-{}", m.member_id.as_str()))
        );
    }

    // The follower's SyncGroup waits for the leader's.
    let (l, f) = (leader.member_id.to_string(), follower.member_id.to_string());
    let c2 = c.clone();
    let f2 = f.clone();
    let waiting = tokio::spawn(async move { sync(&c2, "g", 1, &f2, 5, &[]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    assert_eq!(
        describe(&c, "g", 5).await.groups[0].group_state.as_str(),
        "CompletingRebalance"
    );
    let sl = sync(&c, "g", 1, &l, 5, &[(&l, "L"), (&f, "F")]).await;
    assert_eq!(sl.error_code, NONE);
    assert_eq!(sl.assignment, Bytes::from_static(b"L"));
    assert_eq!(sl.protocol_name.as_deref(), Some("range"));
    let sf = waiting.await.unwrap();
    assert_eq!(sf.error_code, NONE);
    assert_eq!(sf.assignment, Bytes::from_static(b"F"));
    assert_eq!(sf.protocol_type.as_deref(), Some("consumer"));

    let d = describe(&c, "g", 5).await;
    let g = &d.groups[0];
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.protocol_type.as_str(), "consumer");
    assert_eq!(g.protocol_data.as_str(), "range");
    assert_eq!(g.members.len(), 2);
    let fm = g
        .members
        .iter()
        .find(|m| m.member_id.as_str() == f)
        .unwrap();
    assert_eq!(fm.member_assignment, Bytes::from_static(b"F"));
    assert_eq!(fm.client_id.as_str(), "client");
    assert_eq!(fm.client_host.as_str(), "/127.0.0.1");
    assert_eq!(fm.member_metadata, Bytes::from(format!("meta-of-{f}")));

    assert_eq!(heartbeat(&c, "g", 1, &f, 4).await, NONE);
    assert_eq!(heartbeat(&c, "g", 0, &f, 4).await, ILLEGAL_GENERATION);
    assert_eq!(heartbeat(&c, "g", 1, "nobody", 4).await, UNKNOWN_MEMBER_ID);
    assert_eq!(
        sync(&c, "g", 0, &f, 5, &[]).await.error_code,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        sync(&c, "g", 1, "nobody", 5, &[]).await.error_code,
        UNKNOWN_MEMBER_ID
    );
    // A Stable group answers a late SyncGroup with the stored assignment.
    assert_eq!(
        sync(&c, "g", 1, &f, 3, &[]).await.assignment,
        Bytes::from_static(b"F")
    );
}

#[tokio::test]
async fn a_third_member_triggers_a_rebalance_seen_through_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    let (l, f, generation) = stable_pair(&c, "g").await;

    let c2 = c.clone();
    let newcomer = tokio::spawn(async move { join_new(&c2, "g", 5, 10_000, 5_000).await });
    heartbeat_until(&c, "g", generation, &l, REBALANCE_IN_PROGRESS).await;
    assert_eq!(
        heartbeat(&c, "g", generation, &f, 4).await,
        REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        describe(&c, "g", 5).await.groups[0].group_state.as_str(),
        "PreparingRebalance"
    );
    // SyncGroup during the rebalance is refused.
    assert_eq!(
        sync(&c, "g", generation, &f, 5, &[]).await.error_code,
        REBALANCE_IN_PROGRESS
    );
    assert!(!newcomer.is_finished());

    let (rl, rf) = tokio::join!(
        rejoin(&c, "g", &l, 5, 10_000, 5_000),
        rejoin(&c, "g", &f, 5, 10_000, 5_000)
    );
    let n = newcomer.await.unwrap();
    for r in [&rl, &rf, &n] {
        assert_eq!(r.error_code, NONE, "{r:?}");
        assert_eq!(r.generation_id, generation + 1);
        // The leader is kept while present.
        assert_eq!(r.leader.as_str(), l);
    }
    assert_eq!(rl.members.len(), 3);
    assert!(rf.members.is_empty() && n.members.is_empty());
}

#[tokio::test]
async fn a_member_that_does_not_rejoin_is_dropped_after_the_rebalance_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    let (a, b) = tokio::join!(
        join_new(&c, "g", 5, 30_000, 300),
        join_new(&c, "g", 5, 30_000, 300)
    );
    let generation = a.generation_id;
    let (l, f) = if a.leader == a.member_id {
        (a.member_id.to_string(), b.member_id.to_string())
    } else {
        (b.member_id.to_string(), a.member_id.to_string())
    };
    let (_, _) = tokio::join!(
        sync(&c, "g", generation, &l, 5, &[]),
        sync(&c, "g", generation, &f, 5, &[])
    );
    let c2 = c.clone();
    let newcomer = tokio::spawn(async move { join_new(&c2, "g", 5, 30_000, 300).await });
    heartbeat_until(&c, "g", generation, &l, REBALANCE_IN_PROGRESS).await;
    let started = std::time::Instant::now();
    let rl = rejoin(&c, "g", &l, 5, 30_000, 300).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    let n = newcomer.await.unwrap();
    assert_eq!(rl.generation_id, generation + 1);
    assert_eq!(n.generation_id, generation + 1);
    assert_eq!(rl.members.len(), 2);
    assert_eq!(
        heartbeat(&c, "g", generation, &f, 4).await,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        rejoin(&c, "g", &f, 5, 30_000, 300).await.error_code,
        UNKNOWN_MEMBER_ID
    );
}

#[tokio::test]
async fn leave_triggers_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    let (l, f, generation) = stable_pair(&c, "g").await;
    assert_eq!(leave(&c, "g", &f, 3).await, NONE);
    assert_eq!(
        heartbeat(&c, "g", generation, &l, 4).await,
        REBALANCE_IN_PROGRESS
    );
    let r = rejoin(&c, "g", &l, 5, 10_000, 5_000).await;
    assert_eq!(r.error_code, NONE);
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(r.members.len(), 1);
    // v0-2 report a single member's error at the top level.
    assert_eq!(leave(&c, "g", &f, 1).await, UNKNOWN_MEMBER_ID);
    assert_eq!(leave(&c, "nope", &f, 2).await, UNKNOWN_MEMBER_ID);
    assert_eq!(leave(&c, "nope", &f, 4).await, UNKNOWN_MEMBER_ID);
    // The last member leaving empties the group.
    assert_eq!(leave(&c, "g", &l, 0).await, NONE);
    let d = describe(&c, "g", 0).await;
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    assert!(d.groups[0].members.is_empty());
}

#[tokio::test]
async fn session_timeout_removes_a_silent_member() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    let (a, b) = tokio::join!(
        join_new(&c, "g", 5, 300, 5_000),
        join_new(&c, "g", 5, 300, 5_000)
    );
    let generation = a.generation_id;
    let (l, f) = if a.leader == a.member_id {
        (a.member_id.to_string(), b.member_id.to_string())
    } else {
        (b.member_id.to_string(), a.member_id.to_string())
    };
    let (_, _) = tokio::join!(
        sync(&c, "g", generation, &l, 5, &[]),
        sync(&c, "g", generation, &f, 5, &[])
    );
    // Only the leader keeps heartbeating.
    let mut seen = NONE;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = heartbeat(&c, "g", generation, &l, 4).await;
        if seen != NONE {
            break;
        }
    }
    assert_eq!(seen, REBALANCE_IN_PROGRESS);
    assert_eq!(
        heartbeat(&c, "g", generation, &f, 4).await,
        UNKNOWN_MEMBER_ID
    );
    let r = rejoin(&c, "g", &l, 5, 300, 5_000).await;
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(r.members.len(), 1);
}

#[tokio::test]
async fn member_id_required_from_v4_and_direct_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.initial_rebalance_delay_ms = 0;
    let c = open(dir.path(), cfg);
    let first = join(&c, join_req("g", "", 4, 10_000, 5_000), 4).await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert_eq!(first.generation_id, -1);
    assert!(
        first.member_id.starts_with("client-"),
        "{}",
        first.member_id.as_str()
    );
    assert!(first.member_id.len() > "client-".len() + 30);
    // The group is still Empty until the member comes back.
    assert_eq!(
        describe(&c, "g", 4).await.groups[0].group_state.as_str(),
        "Empty"
    );
    let again = join(&c, join_req("g", &first.member_id, 4, 10_000, 5_000), 4).await;
    assert_eq!(again.error_code, NONE);
    assert_eq!(again.member_id, first.member_id);
    assert_eq!(again.leader, first.member_id);
    assert_eq!(again.generation_id, 1);

    let old = join(&c, join_req("h", "", 3, 10_000, 5_000), 3).await;
    assert_eq!(old.error_code, NONE);
    assert!(old.member_id.starts_with("client-"));
    assert_eq!(old.generation_id, 1);
    assert_eq!(old.members.len(), 1);

    assert_eq!(
        join(&c, join_req("g", "made-up", 4, 10_000, 5_000), 4)
            .await
            .error_code,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        join(&c, join_req("new", "made-up", 4, 10_000, 5_000), 4)
            .await
            .error_code,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        join(&c, join_req("g", "", 4, 10, 5_000), 4)
            .await
            .error_code,
        INVALID_SESSION_TIMEOUT
    );
    assert_eq!(
        join(&c, join_req("g", "", 4, 600_000, 5_000), 4)
            .await
            .error_code,
        INVALID_SESSION_TIMEOUT
    );
    assert_eq!(
        join(&c, join_req("", "", 4, 10_000, 5_000), 4)
            .await
            .error_code,
        INVALID_GROUP_ID
    );
    assert_eq!(heartbeat(&c, "", 1, "x", 0).await, INVALID_GROUP_ID);
    let mut bad = join_req("g", "", 3, 10_000, 5_000);
    bad.protocol_type = s("connect");
    assert_eq!(join(&c, bad, 3).await.error_code, 23);
}

#[tokio::test]
async fn static_member_replaces_its_old_member_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.initial_rebalance_delay_ms = 0;
    let c = open(dir.path(), cfg);
    let leader = join_new(&c, "g", 5, 10_000, 5_000).await;
    let l = leader.member_id.to_string();
    assert_eq!(leader.generation_id, 1);
    let c2 = c.clone();
    let static_join = tokio::spawn(async move {
        let req = join_req("g", "", 5, 10_000, 5_000).with_group_instance_id(Some(s("instance-1")));
        join(&c2, req, 5).await
    });
    heartbeat_until(&c, "g", 1, &l, REBALANCE_IN_PROGRESS).await;
    let rl = rejoin(&c, "g", &l, 5, 10_000, 5_000).await;
    let st = static_join.await.unwrap();
    assert_eq!(st.error_code, NONE);
    assert!(st.member_id.starts_with("instance-1-"));
    let old_id = st.member_id.to_string();
    let generation = rl.generation_id;
    let instance = rl
        .members
        .iter()
        .find(|m| m.member_id.as_str() == old_id)
        .unwrap();
    assert_eq!(instance.group_instance_id.as_deref(), Some("instance-1"));
    let assignments = [(l.as_str(), "L"), (old_id.as_str(), "S")];
    let (_, _) = tokio::join!(
        sync(&c, "g", generation, &l, 5, &assignments),
        sync(&c, "g", generation, &old_id, 5, &[])
    );

    // The instance restarts: same instance id, no member id. No rebalance for a follower.
    let req = join_req("g", "", 5, 10_000, 5_000).with_group_instance_id(Some(s("instance-1")));
    let again = join(&c, req, 5).await;
    assert_eq!(again.error_code, NONE);
    assert_eq!(again.generation_id, generation);
    assert_ne!(again.member_id.as_str(), old_id);
    let new_id = again.member_id.to_string();
    let hb = HeartbeatRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id(generation)
        .with_member_id(s(&old_id))
        .with_group_instance_id(Some(s("instance-1")));
    assert_eq!(c.heartbeat(hb, 4).await.error_code, FENCED_INSTANCE_ID);
    assert_eq!(heartbeat(&c, "g", generation, &l, 4).await, NONE);
    let sn = sync(&c, "g", generation, &new_id, 5, &[]).await;
    assert_eq!(sn.assignment, Bytes::from_static(b"S"));
}

#[tokio::test]
async fn offsets_commit_and_fetch_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    let big = "x".repeat(4097);
    let resp = commit(
        &c,
        "g",
        -1,
        "",
        8,
        &[("t", 0, 42, "meta-0"), ("t", 1, 43, &big), ("u", 0, 7, "")],
    )
    .await;
    assert_eq!(
        commit_errors(&resp),
        vec![NONE, OFFSET_METADATA_TOO_LARGE, NONE]
    );
    assert_eq!(resp.topics[0].name.0.as_str(), "t");

    let r = fetch_v(&c, "g", 6, Some(&[("t", &[0, 1, 5]), ("nope", &[0])])).await;
    assert_eq!(r.error_code, NONE);
    assert_eq!(
        fetched(&r),
        vec![
            ("t".into(), 0, 42, 7, "meta-0".into()),
            ("t".into(), 1, -1, -1, "".into()),
            ("t".into(), 5, -1, -1, "".into()),
            ("nope".into(), 0, -1, -1, "".into()),
        ]
    );
    // Null topics: everything committed.
    let all = fetch_v(&c, "g", 7, None).await;
    assert_eq!(
        fetched(&all),
        vec![
            ("t".into(), 0, 42, 7, "meta-0".into()),
            ("u".into(), 0, 7, 7, "".into())
        ]
    );
    // Leader epochs appear from v5 only.
    let v4 = fetch_v(&c, "g", 4, Some(&[("t", &[0])])).await;
    assert_eq!(fetched(&v4), vec![("t".into(), 0, 42, -1, "meta-0".into())]);
    let v1 = fetch_v(&c, "g", 1, Some(&[("t", &[0])])).await;
    assert_eq!(fetched(&v1)[0].2, 42);
    // Unknown group: -1, no error.
    let unknown = fetch_v(&c, "other", 3, Some(&[("t", &[0])])).await;
    assert_eq!(fetched(&unknown), vec![("t".into(), 0, -1, -1, "".into())]);

    // v8+: several groups at once.
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("g"))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("other"))
            .with_topics(Some(vec![
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![3]),
            ])),
    ]);
    let r = wire(c.offset_fetch(wire(req.clone(), 8), 8).await, 8);
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[0].topics.len(), 2);
    let p = &r.groups[0].topics[0].partitions[0];
    assert_eq!((p.committed_offset, p.committed_leader_epoch), (42, 7));
    assert_eq!(p.metadata.as_deref(), Some("meta-0"));
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, -1);
    let r9 = wire(c.offset_fetch(wire(req, 9), 9).await, 9);
    assert_eq!(r9.groups[0].error_code, NONE);

    // v2-5 commits carry no leader epoch.
    commit(&c, "g", -1, "", 2, &[("t", 0, 50, "old")]).await;
    let r = fetch_v(&c, "g", 6, Some(&[("t", &[0])])).await;
    assert_eq!(fetched(&r), vec![("t".into(), 0, 50, -1, "old".into())]);
    assert_eq!(
        c.committed_offsets("g"),
        vec![("t".into(), 0, 50), ("u".into(), 0, 7)]
    );
}

#[tokio::test]
async fn member_commits_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    let (a, b) = tokio::join!(
        join_new(&c, "g", 5, 10_000, 5_000),
        join_new(&c, "g", 5, 10_000, 5_000)
    );
    let generation = a.generation_id;
    let (l, f) = if a.leader == a.member_id {
        (a.member_id.to_string(), b.member_id.to_string())
    } else {
        (b.member_id.to_string(), a.member_id.to_string())
    };
    let part = [("t", 0, 1, "")];
    // Joined but not yet synced.
    assert_eq!(
        commit_errors(&commit(&c, "g", generation, &f, 8, &part).await),
        vec![REBALANCE_IN_PROGRESS]
    );
    let (_, _) = tokio::join!(
        sync(&c, "g", generation, &l, 5, &[]),
        sync(&c, "g", generation, &f, 5, &[])
    );
    assert_eq!(
        commit_errors(&commit(&c, "g", generation, &f, 8, &part).await),
        vec![NONE]
    );
    assert_eq!(
        commit_errors(&commit(&c, "g", generation + 1, &f, 8, &part).await),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(
        commit_errors(&commit(&c, "g", generation, "ghost", 8, &part).await),
        vec![UNKNOWN_MEMBER_ID]
    );
    // Simple commits are only for groups without members.
    assert_eq!(
        commit_errors(&commit(&c, "g", -1, "", 8, &part).await),
        vec![UNKNOWN_MEMBER_ID]
    );
    // Unknown group with a generation: a stale member.
    assert_eq!(
        commit_errors(&commit(&c, "gone", 3, "m", 8, &part).await),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(c.committed_offsets("g"), vec![("t".into(), 0, 1)]);
}

#[tokio::test]
async fn committed_offsets_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = open(dir.path(), config());
        simple_commit(&c, "g", &[("t", 0, 10, "a"), ("t", 1, 11, "b")]).await;
        simple_commit(&c, "g", &[("t", 0, 12, "c")]).await;
        simple_commit(&c, "h", &[("u", 3, 99, "")]).await;
    }
    let c = open(dir.path(), config());
    assert_eq!(
        c.committed_offsets("g"),
        vec![("t".into(), 0, 12), ("t".into(), 1, 11)]
    );
    assert_eq!(c.committed_offsets("h"), vec![("u".into(), 3, 99)]);
    let r = fetch_v(&c, "g", 7, None).await;
    assert_eq!(
        fetched(&r),
        vec![
            ("t".into(), 0, 12, 7, "c".into()),
            ("t".into(), 1, 11, 7, "b".into())
        ]
    );
    // Groups with offsets exist after a restart, Empty.
    let l = list(&c, 4, &[], &[]).await;
    let names: Vec<(&str, &str)> = l
        .groups
        .iter()
        .map(|g| (g.group_id.as_str(), g.group_state.as_str()))
        .collect();
    assert_eq!(names, vec![("g", "Empty"), ("h", "Empty")]);
    c.shutdown().await;
    let c = open(dir.path(), config());
    assert_eq!(c.committed_offsets("g").len(), 2);
}

#[tokio::test]
async fn a_torn_last_record_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = open(dir.path(), config());
        simple_commit(&c, "g", &[("t", 0, 10, "")]).await;
        simple_commit(&c, "g", &[("t", 1, 20, "")]).await;
    }
    let path = dir.path().join(LOG_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    {
        let c = open(dir.path(), config());
        assert_eq!(c.committed_offsets("g"), vec![("t".into(), 0, 10)]);
        simple_commit(&c, "g", &[("t", 2, 30, "")]).await;
    }
    let c = open(dir.path(), config());
    assert_eq!(
        c.committed_offsets("g"),
        vec![("t".into(), 0, 10), ("t".into(), 2, 30)]
    );
}

#[tokio::test]
async fn forget_topic_drops_offsets_durably() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = open(dir.path(), config());
        simple_commit(&c, "g", &[("t", 0, 10, ""), ("u", 0, 5, "")]).await;
        simple_commit(&c, "h", &[("t", 0, 1, "")]).await;
        let c2 = c.clone();
        tokio::task::spawn_blocking(move || c2.forget_topic("t"))
            .await
            .unwrap();
        assert_eq!(c.committed_offsets("g"), vec![("u".into(), 0, 5)]);
        assert!(c.committed_offsets("h").is_empty());
    }
    let c = open(dir.path(), config());
    assert_eq!(c.committed_offsets("g"), vec![("u".into(), 0, 5)]);
    assert!(c.committed_offsets("h").is_empty());
}

#[tokio::test]
async fn describe_list_and_delete_groups() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    let (_l, _f, _) = stable_pair(&c, "busy").await;
    simple_commit(&c, "idle", &[("t", 0, 1, "")]).await;

    let d = describe(&c, "missing", 5).await;
    assert_eq!(d.groups[0].error_code, NONE);
    assert_eq!(d.groups[0].group_state.as_str(), "Dead");
    let d6 = describe(&c, "missing", 6).await;
    assert_eq!(d6.groups[0].error_code, GROUP_ID_NOT_FOUND);
    assert!(d6.groups[0].error_message.is_some());
    let idle = describe(&c, "idle", 3).await;
    assert_eq!(idle.groups[0].group_state.as_str(), "Empty");
    assert_eq!(idle.groups[0].protocol_type.as_str(), "");

    let all = list(&c, 0, &[], &[]).await;
    let ids: Vec<&str> = all.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(ids, vec!["busy", "idle"]);
    assert_eq!(all.groups[0].protocol_type.as_str(), "consumer");
    let stable = list(&c, 4, &["stable"], &[]).await;
    let ids: Vec<&str> = stable.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(ids, vec!["busy"]);
    let v5 = list(&c, 5, &["Empty"], &[]).await;
    assert_eq!(v5.groups.len(), 1);
    assert_eq!(v5.groups[0].group_type.as_str(), "classic");
    assert_eq!(v5.groups[0].group_state.as_str(), "Empty");
    assert!(list(&c, 5, &[], &["consumer"]).await.groups.is_empty());
    assert_eq!(list(&c, 5, &[], &["Classic"]).await.groups.len(), 2);

    assert_eq!(delete(&c, "busy", 2).await, NON_EMPTY_GROUP);
    assert_eq!(delete(&c, "missing", 0).await, GROUP_ID_NOT_FOUND);
    assert_eq!(delete(&c, "idle", 1).await, NONE);
    assert!(c.committed_offsets("idle").is_empty());
    assert_eq!(list(&c, 3, &[], &[]).await.groups.len(), 1);
    drop(c);
    let c = open(dir.path(), config());
    assert!(c.committed_offsets("idle").is_empty());
    assert_eq!(
        describe(&c, "idle", 5).await.groups[0].group_state.as_str(),
        "Dead"
    );
}

/// One member through join, sync, heartbeat, commit, fetch, describe, list and leave at every
/// version of every API.
#[tokio::test]
async fn every_api_version_encodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.initial_rebalance_delay_ms = 0;
    let c = open(dir.path(), cfg);
    for v in 0..=9i16 {
        let group = format!("g{v}");
        let j = join_new(&c, &group, v, 10_000, 5_000).await;
        assert_eq!(j.error_code, NONE, "join v{v}");
        assert_eq!(j.members.len(), 1);
        let m = j.member_id.to_string();
        let sv = v.min(5);
        let sr = sync(&c, &group, j.generation_id, &m, sv, &[(&m, "a")]).await;
        assert_eq!(sr.error_code, NONE, "sync v{sv}");
        assert_eq!(
            heartbeat(&c, &group, j.generation_id, &m, v.min(4)).await,
            NONE
        );
        let cv = v.clamp(2, 9);
        let cr = commit(&c, &group, j.generation_id, &m, cv, &[("t", 0, 5, "m")]).await;
        assert_eq!(commit_errors(&cr), vec![NONE], "commit v{cv}");
        let fv = v.clamp(1, 7);
        let fr = fetch_v(&c, &group, fv, Some(&[("t", &[0])])).await;
        assert_eq!(fetched(&fr)[0].2, 5, "fetch v{fv}");
        let d = describe(&c, &group, v.min(6)).await;
        assert_eq!(d.groups[0].group_state.as_str(), "Stable");
        assert_eq!(
            d.groups[0].members[0].member_assignment,
            Bytes::from_static(b"a")
        );
        list(&c, v.min(5), &[], &[]).await;
        assert_eq!(
            leave(&c, &group, &m, v.min(5)).await,
            NONE,
            "leave v{}",
            v.min(5)
        );
        assert_eq!(delete(&c, &group, v.min(2)).await, NONE);
    }
}

#[tokio::test]
async fn offsets_expire_after_retention_once_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.offsets_retention_ms = 200;
    let c = open(dir.path(), cfg.clone());
    simple_commit(&c, "g", &[("t", 0, 1, "")]).await;
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if c.committed_offsets("g").is_empty() {
            gone = true;
            break;
        }
    }
    assert!(gone, "offsets never expired");
    let mut listed = true;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if list(&c, 4, &[], &[]).await.groups.is_empty() {
            listed = false;
            break;
        }
    }
    assert!(!listed, "expired group never forgotten");
    drop(c);
    let c = open(dir.path(), cfg);
    assert!(c.committed_offsets("g").is_empty());
}

#[tokio::test]
async fn shutdown_answers_parked_joins_and_refuses_new_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.initial_rebalance_delay_ms = 5_000;
    let c = open(dir.path(), cfg);
    let c2 = c.clone();
    let parked = tokio::spawn(async move { join_new(&c2, "g", 5, 10_000, 20_000).await });
    // Wait (bounded) until the join is parked in a rebalance, then shut down under it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while describe(&c, "g", 5).await.groups[0].group_state.as_str() != "PreparingRebalance" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the join never parked"
        );
        tokio::task::yield_now().await;
    }
    c.shutdown().await;
    assert_eq!(parked.await.unwrap().error_code, NOT_COORDINATOR);
    let r = commit(&c, "g", -1, "", 8, &[("t", 0, 1, "")]).await;
    assert_eq!(commit_errors(&r), vec![COORDINATOR_NOT_AVAILABLE]);
    assert_eq!(
        join_new(&c, "g", 5, 10_000, 5_000).await.error_code,
        COORDINATOR_NOT_AVAILABLE
    );
}

#[tokio::test]
async fn the_initial_delay_extends_while_members_keep_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.initial_rebalance_delay_ms = 200;
    let c = open(dir.path(), cfg);
    // The second member arrives in the first delay window (0-200 ms), the third in the second
    // one (200-400 ms) that the second member's arrival opened.
    let mut joins = Vec::new();
    for i in 0..3u64 {
        let c2 = c.clone();
        joins.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(130 * i)).await;
            join_new(&c2, "g", 5, 10_000, 5_000).await
        }));
    }
    let mut generations = Vec::new();
    let mut member_lists = Vec::new();
    for j in joins {
        let r = j.await.unwrap();
        assert_eq!(r.error_code, NONE);
        generations.push(r.generation_id);
        member_lists.push(r.members.len());
    }
    assert_eq!(generations, vec![1, 1, 1]);
    member_lists.sort();
    assert_eq!(member_lists, vec![0, 0, 3]);
}

#[tokio::test]
async fn a_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    let (a, b) = tokio::join!(
        join_new(&c, "g", 5, 30_000, 300),
        join_new(&c, "g", 5, 30_000, 300)
    );
    let generation = a.generation_id;
    let (l, f) = if a.leader == a.member_id {
        (a.member_id.to_string(), b.member_id.to_string())
    } else {
        (b.member_id.to_string(), a.member_id.to_string())
    };
    assert_eq!(sync(&c, "g", generation, &l, 5, &[]).await.error_code, NONE);
    heartbeat_until(&c, "g", generation, &l, REBALANCE_IN_PROGRESS).await;
    assert_eq!(
        heartbeat(&c, "g", generation, &f, 4).await,
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn the_coordinator_and_its_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), config());
    send_sync(&c);
    send(c.join_group(JoinGroupRequest::default(), 5, "c", "h"));
    send(c.sync_group(SyncGroupRequest::default(), 5));
    send(c.heartbeat(HeartbeatRequest::default(), 4));
    send(c.leave_group(LeaveGroupRequest::default(), 5));
    send(c.offset_commit(OffsetCommitRequest::default(), 8));
    send(c.offset_fetch(OffsetFetchRequest::default(), 8));
    send(c.describe_groups(DescribeGroupsRequest::default(), 5));
    send(c.list_groups(ListGroupsRequest::default(), 4));
    send(c.delete_groups(DeleteGroupsRequest::default(), 2));
    send(c.shutdown());
}
