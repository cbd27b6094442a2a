//! The classic rebalance protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, and the timers
//! that drive a group through Empty → PreparingRebalance → CompletingRebalance → Stable.
//!
//! This follows Kafka's `GroupCoordinator`:
//!
//! - A join moves an Empty group to PreparingRebalance behind `group.initial.rebalance.delay.ms`
//!   (extended while members keep arriving, up to the rebalance timeout), and a Stable or
//!   CompletingRebalance group to PreparingRebalance for at most the longest member rebalance
//!   timeout. The rebalance completes as soon as every known member has rejoined; when the
//!   timeout fires instead, members that did not rejoin are removed.
//! - Completion bumps the generation, selects the protocol and answers every waiting JoinGroup;
//!   only the leader gets the member list. Members that do not send SyncGroup within the
//!   rebalance timeout are removed.
//! - Existing members learn of a rebalance from Heartbeat (REBALANCE_IN_PROGRESS).
//! - Sessions expire `session_timeout_ms` after the last heartbeat, except while a member's
//!   JoinGroup or SyncGroup is parked in the coordinator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::join_group_response::JoinGroupResponseMember;
use gatehouse_protocol::messages::leave_group_response::MemberResponse;
use gatehouse_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use super::member::{
    Group, GroupState, InitialDelay, JoinOutcome, Member, PendingMember, SyncOutcome,
};
use super::{Inner, millis, now_ms};

/// A call answered right away, or one that waits for the group.
enum Start<T> {
    Done(T),
    Wait(oneshot::Receiver<T>),
}

/// The timers a group can have armed (at most one at a time).
#[derive(Debug, Clone, Copy)]
enum TimerKind {
    /// `group.initial.rebalance.delay.ms` after leaving Empty.
    InitialDelay,
    /// The rebalance timeout of a PreparingRebalance group.
    Rebalance,
    /// The rebalance timeout for members to send SyncGroup after a join completed.
    PendingSync,
}

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The JoinGroup parameters of one member.
struct JoinParams {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
}

pub(super) async fn join_group(
    inner: &Arc<Inner>,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    debug!(
        group = %req.group_id.as_str(),
        member = %req.member_id.as_str(),
        client_id,
        version,
        reason = req.reason.as_deref().unwrap_or(""),
        "JoinGroup"
    );
    let outcome = match join_locked(inner, &req, version, client_id, client_host) {
        Start::Done(o) => o,
        Start::Wait(rx) => rx.await.unwrap_or_else(|_| {
            JoinOutcome::error(ErrorCode::CoordinatorNotAvailable, req.member_id.as_str())
        }),
    };
    debug!(
        group = %req.group_id.as_str(),
        member = %outcome.member_id,
        generation = outcome.generation_id,
        error = ?outcome.error,
        "JoinGroup answered"
    );
    join_response(outcome, version)
}

fn join_response(o: JoinOutcome, version: i16) -> JoinGroupResponse {
    let protocol_name = match o.protocol_name {
        Some(name) => Some(StrBytes::from_string(name)),
        // Nullable only from v7.
        None if version >= 7 => None,
        None => Some(StrBytes::default()),
    };
    let members = o
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(if version >= 5 {
                    m.group_instance_id.map(StrBytes::from_string)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(o.error.code())
        .with_generation_id(o.generation_id)
        .with_protocol_type(if version >= 7 {
            o.protocol_type.map(StrBytes::from_string)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(StrBytes::from_string(o.leader))
        .with_skip_assignment(false)
        .with_member_id(StrBytes::from_string(o.member_id))
        .with_members(members)
}

/// Protocols in the member's order, first occurrence of each name kept.
fn member_protocols(req: &JoinGroupRequest) -> Vec<(String, Bytes)> {
    let mut out: Vec<(String, Bytes)> = Vec::with_capacity(req.protocols.len());
    for p in &req.protocols {
        if !out.iter().any(|(n, _)| n == p.name.as_str()) {
            out.push((p.name.to_string(), p.metadata.clone()));
        }
    }
    out
}

fn join_locked(
    inner: &Arc<Inner>,
    req: &JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> Start<JoinOutcome> {
    let member_id = req.member_id.as_str();
    let fail = |e: ErrorCode| Start::Done(JoinOutcome::error(e, member_id));
    if inner.is_closed() {
        return fail(ErrorCode::CoordinatorNotAvailable);
    }
    let group_id = req.group_id.as_str();
    if group_id.is_empty() {
        return fail(ErrorCode::InvalidGroupId);
    }
    let cfg = &inner.config;
    if req.session_timeout_ms < cfg.min_session_timeout_ms
        || req.session_timeout_ms > cfg.max_session_timeout_ms
    {
        return fail(ErrorCode::InvalidSessionTimeout);
    }
    let session_timeout = millis(req.session_timeout_ms);
    let params = JoinParams {
        instance_id: if version >= 5 {
            req.group_instance_id.as_ref().map(|s| s.to_string())
        } else {
            None
        },
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout: if version >= 1 && req.rebalance_timeout_ms > 0 {
            millis(req.rebalance_timeout_ms)
        } else {
            session_timeout
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: member_protocols(req),
    };

    let mut groups = inner.lock_groups();
    let created = !groups.contains_key(group_id);
    if created {
        if !member_id.is_empty() {
            return fail(ErrorCode::UnknownMemberId);
        }
        groups.insert(group_id.to_string(), Group::new(group_id, now_ms()));
    }
    let Some(group) = groups.get_mut(group_id) else {
        return fail(ErrorCode::UnknownServerError);
    };
    if group.state == GroupState::Dead {
        return fail(ErrorCode::CoordinatorNotAvailable);
    }
    if !group.supports_protocols(&params.protocol_type, &params.protocols) {
        if created {
            groups.remove(group_id);
        }
        return fail(ErrorCode::InconsistentGroupProtocol);
    }

    if member_id.is_empty() {
        if let Some(instance) = params.instance_id.clone() {
            if let Some(old) = group.static_members.get(&instance).cloned() {
                return replace_static_member(inner, group, &old, &instance, params);
            }
            let new_id = inner.new_member_id(&instance);
            return add_member_and_rebalance(inner, group, new_id, params);
        }
        let new_id = inner.new_member_id(client_id);
        if version >= 4 {
            // KIP-394: hand out the id and let the client come back with it, so that a client
            // that never returns leaves only a pending id behind.
            group.pending_members.insert(
                new_id.clone(),
                PendingMember {
                    since: Instant::now(),
                    session_timeout,
                },
            );
            debug!(group = %group.id, member = %new_id, "member id required");
            return Start::Done(JoinOutcome::error(ErrorCode::MemberIdRequired, &new_id));
        }
        return add_member_and_rebalance(inner, group, new_id, params);
    }

    if group.pending_members.remove(member_id).is_some() {
        return add_member_and_rebalance(inner, group, member_id.to_string(), params);
    }
    if group.is_static_member_fenced(member_id, params.instance_id.as_deref()) {
        return fail(ErrorCode::FencedInstanceId);
    }
    let Some(member) = group.members.get(member_id) else {
        return fail(ErrorCode::UnknownMemberId);
    };
    let unchanged = member.protocols == params.protocols;
    match group.state {
        GroupState::PreparingRebalance => {
            update_member_and_rebalance(inner, group, member_id, params)
        }
        GroupState::CompletingRebalance if unchanged => {
            // The member lost our JoinGroup answer; give it again.
            Start::Done(group.current_join_outcome(member_id))
        }
        GroupState::Stable if unchanged && !group.is_leader(member_id) => {
            Start::Done(group.current_join_outcome(member_id))
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            update_member_and_rebalance(inner, group, member_id, params)
        }
        GroupState::Empty | GroupState::Dead => fail(ErrorCode::UnknownMemberId),
    }
}

fn add_member_and_rebalance(
    inner: &Arc<Inner>,
    group: &mut Group,
    member_id: String,
    params: JoinParams,
) -> Start<JoinOutcome> {
    let (tx, rx) = oneshot::channel();
    if group.members.is_empty() {
        group.protocol_type = Some(params.protocol_type.clone());
    }
    let join_seq = group.take_join_seq();
    if let Some(instance) = &params.instance_id {
        group
            .static_members
            .insert(instance.clone(), member_id.clone());
    }
    info!(
        group = %group.id,
        member = %member_id,
        client_id = %params.client_id,
        client_host = %params.client_host,
        instance = ?params.instance_id,
        "member joined"
    );
    group.members.insert(
        member_id.clone(),
        Member {
            member_id: member_id.clone(),
            group_instance_id: params.instance_id,
            client_id: params.client_id,
            client_host: params.client_host,
            session_timeout: params.session_timeout,
            rebalance_timeout: params.rebalance_timeout,
            protocols: params.protocols,
            assignment: Bytes::new(),
            last_heartbeat: Instant::now(),
            join_seq,
            awaiting_join: Some(tx),
            awaiting_sync: None,
        },
    );
    group.elect_leader();
    group.touched = Instant::now();
    if group.state == GroupState::PreparingRebalance
        && let Some(delay) = group.initial_delay.as_mut()
    {
        delay.new_member_added = true;
    }
    maybe_prepare_rebalance(inner, group, "new member joined");
    Start::Wait(rx)
}

fn update_member_and_rebalance(
    inner: &Arc<Inner>,
    group: &mut Group,
    member_id: &str,
    params: JoinParams,
) -> Start<JoinOutcome> {
    let (tx, rx) = oneshot::channel();
    if let Some(m) = group.members.get_mut(member_id) {
        if let Some(previous) = m.awaiting_join.replace(tx) {
            // A second JoinGroup from the same member supersedes the first.
            let _ = previous.send(JoinOutcome::error(
                ErrorCode::RebalanceInProgress,
                member_id,
            ));
        }
        m.protocols = params.protocols;
        m.session_timeout = params.session_timeout;
        m.rebalance_timeout = params.rebalance_timeout;
        m.client_id = params.client_id;
        m.client_host = params.client_host;
        m.last_heartbeat = Instant::now();
    }
    debug!(group = %group.id, member = %member_id, "member rejoined");
    maybe_prepare_rebalance(inner, group, "member rejoined");
    Start::Wait(rx)
}

/// A static member came back with an empty member id: its new id replaces the old one
/// (KIP-345). A Stable group whose follower rejoins unchanged does not rebalance; the member
/// then fetches its old assignment with SyncGroup.
fn replace_static_member(
    inner: &Arc<Inner>,
    group: &mut Group,
    old_id: &str,
    instance: &str,
    params: JoinParams,
) -> Start<JoinOutcome> {
    let Some(mut member) = group.members.remove(old_id) else {
        group.static_members.remove(instance);
        let new_id = inner.new_member_id(instance);
        return add_member_and_rebalance(inner, group, new_id, params);
    };
    let new_id = inner.new_member_id(instance);
    member.finish_join(JoinOutcome::error(ErrorCode::FencedInstanceId, old_id));
    member.finish_sync(SyncOutcome::error(ErrorCode::FencedInstanceId));
    let unchanged = member.protocols == params.protocols;
    member.member_id = new_id.clone();
    member.protocols = params.protocols;
    member.session_timeout = params.session_timeout;
    member.rebalance_timeout = params.rebalance_timeout;
    member.client_id = params.client_id;
    member.client_host = params.client_host;
    member.last_heartbeat = Instant::now();
    if group.is_leader(old_id) {
        group.leader_id = Some(new_id.clone());
    }
    group
        .static_members
        .insert(instance.to_string(), new_id.clone());
    if group.pending_sync.remove(old_id) {
        group.pending_sync.insert(new_id.clone());
    }
    info!(group = %group.id, instance, old = %old_id, new = %new_id, "static member rejoined");
    match group.state {
        GroupState::Stable if unchanged && !group.is_leader(&new_id) => {
            group.members.insert(new_id.clone(), member);
            Start::Done(group.current_join_outcome(&new_id))
        }
        _ => {
            let (tx, rx) = oneshot::channel();
            member.awaiting_join = Some(tx);
            group.members.insert(new_id, member);
            maybe_prepare_rebalance(inner, group, "static member rejoined");
            Start::Wait(rx)
        }
    }
}

fn maybe_prepare_rebalance(inner: &Arc<Inner>, group: &mut Group, reason: &str) {
    match group.state {
        GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(inner, group, reason)
        }
        GroupState::PreparingRebalance => try_complete_join(inner, group),
        GroupState::Dead => {}
    }
}

fn prepare_rebalance(inner: &Arc<Inner>, group: &mut Group, reason: &str) {
    if group.state == GroupState::CompletingRebalance {
        for m in group.members.values_mut() {
            m.assignment = Bytes::new();
            m.finish_sync(SyncOutcome::error(ErrorCode::RebalanceInProgress));
        }
    }
    let was_empty = group.state == GroupState::Empty;
    group.state = GroupState::PreparingRebalance;
    group.pending_sync.clear();
    info!(
        group = %group.id,
        generation = group.generation_id,
        members = group.members.len(),
        reason,
        "preparing to rebalance"
    );
    if was_empty {
        let delay = millis(inner.config.initial_rebalance_delay_ms);
        group.initial_delay = Some(InitialDelay {
            remaining: group.rebalance_timeout().saturating_sub(delay),
            new_member_added: false,
        });
        schedule(inner, group, TimerKind::InitialDelay, delay);
    } else {
        group.initial_delay = None;
        let timeout = group.rebalance_timeout();
        schedule(inner, group, TimerKind::Rebalance, timeout);
        try_complete_join(inner, group);
    }
}

fn try_complete_join(inner: &Arc<Inner>, group: &mut Group) {
    if group.state == GroupState::PreparingRebalance
        && group.initial_delay.is_none()
        && group.all_members_joined()
    {
        complete_join(inner, group);
    }
}

/// Ends PreparingRebalance: members that did not rejoin go, a new generation starts.
fn complete_join(inner: &Arc<Inner>, group: &mut Group) {
    group.initial_delay = None;
    let missing: Vec<String> = group
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none())
        .map(|m| m.member_id.clone())
        .collect();
    for id in missing {
        info!(group = %group.id, member = %id, "member did not rejoin in time; removing it");
        drop_member(group, &id);
    }
    group.generation_id = group.generation_id.wrapping_add(1);
    if group.members.is_empty() {
        become_empty(group);
        return;
    }
    let Some(protocol) = group.select_protocol() else {
        // Cannot happen: every join checked that a common protocol exists. Never start a
        // generation without one.
        error!(group = %group.id, "no protocol common to all members; emptying the group");
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            if let Some(mut m) = group.members.remove(&id) {
                m.finish_join(JoinOutcome::error(
                    ErrorCode::InconsistentGroupProtocol,
                    &id,
                ));
            }
        }
        group.static_members.clear();
        group.leader_id = None;
        become_empty(group);
        return;
    };
    group.protocol_name = Some(protocol.clone());
    group.state = GroupState::CompletingRebalance;
    group.pending_sync = group.members.keys().cloned().collect();
    let leader = group.leader_id.clone().unwrap_or_default();
    let all = group.joined_members();
    let generation_id = group.generation_id;
    let protocol_type = group.protocol_type.clone();
    let now = Instant::now();
    for m in group.members.values_mut() {
        m.last_heartbeat = now;
        m.assignment = Bytes::new();
        let outcome = JoinOutcome {
            error: ErrorCode::None,
            generation_id,
            protocol_type: protocol_type.clone(),
            protocol_name: Some(protocol.clone()),
            leader: leader.clone(),
            member_id: m.member_id.clone(),
            members: if m.member_id == leader {
                all.clone()
            } else {
                Vec::new()
            },
        };
        m.finish_join(outcome);
    }
    info!(
        group = %group.id,
        generation = generation_id,
        protocol = %protocol,
        leader = %leader,
        members = group.members.len(),
        "rebalance completed; awaiting assignment"
    );
    let timeout = group.rebalance_timeout();
    schedule(inner, group, TimerKind::PendingSync, timeout);
}

fn become_empty(group: &mut Group) {
    group.protocol_name = None;
    group.state = GroupState::Empty;
    group.pending_sync.clear();
    group.empty_since_ms = now_ms();
    group.touched = Instant::now();
    group.timer_epoch += 1;
    info!(group = %group.id, generation = group.generation_id, "group is empty");
}

/// Removes a member without any state transition, answering its parked calls.
fn drop_member(group: &mut Group, member_id: &str) -> bool {
    let Some(mut m) = group.members.remove(member_id) else {
        return false;
    };
    m.finish_join(JoinOutcome::error(ErrorCode::UnknownMemberId, member_id));
    m.finish_sync(SyncOutcome::error(ErrorCode::UnknownMemberId));
    if let Some(instance) = &m.group_instance_id
        && group.static_members.get(instance).map(String::as_str) == Some(member_id)
    {
        group.static_members.remove(instance);
    }
    group.pending_sync.remove(member_id);
    group.elect_leader();
    group.touched = Instant::now();
    true
}

/// Removes a member and lets the group react (rebalance, or complete the one in progress).
fn remove_member(inner: &Arc<Inner>, group: &mut Group, member_id: &str, reason: &str) {
    if !drop_member(group, member_id) {
        return;
    }
    info!(group = %group.id, member = %member_id, reason, "member removed");
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(inner, group, reason)
        }
        GroupState::PreparingRebalance => try_complete_join(inner, group),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// Arms the group's timer, superseding any other.
fn schedule(inner: &Arc<Inner>, group: &mut Group, kind: TimerKind, delay: Duration) {
    group.timer_epoch += 1;
    let epoch = group.timer_epoch;
    let weak = Arc::downgrade(inner);
    let group_id = group.id.clone();
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(inner) = weak.upgrade() {
                    on_timer(&inner, &group_id, epoch, kind);
                }
            });
        }
        Err(_) => error!(group = %group.id, ?kind, "no tokio runtime: group timer not armed"),
    }
}

fn on_timer(inner: &Arc<Inner>, group_id: &str, epoch: u64, kind: TimerKind) {
    if inner.is_closed() {
        return;
    }
    let mut groups = inner.lock_groups();
    let Some(group) = groups.get_mut(group_id) else {
        return;
    };
    if group.timer_epoch != epoch {
        return;
    }
    match kind {
        TimerKind::InitialDelay => {
            if group.state != GroupState::PreparingRebalance {
                return;
            }
            if let Some(d) = group.initial_delay
                && d.new_member_added
                && !d.remaining.is_zero()
            {
                let delay = millis(inner.config.initial_rebalance_delay_ms).min(d.remaining);
                group.initial_delay = Some(InitialDelay {
                    remaining: d.remaining.saturating_sub(delay),
                    new_member_added: false,
                });
                schedule(inner, group, TimerKind::InitialDelay, delay);
                return;
            }
            complete_join(inner, group);
        }
        TimerKind::Rebalance => {
            if group.state == GroupState::PreparingRebalance {
                complete_join(inner, group);
            }
        }
        TimerKind::PendingSync => {
            if matches!(
                group.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) {
                let late: Vec<String> = group.pending_sync.drain().collect();
                for id in late {
                    remove_member(
                        inner,
                        group,
                        &id,
                        "did not send SyncGroup within the rebalance timeout",
                    );
                }
            }
        }
    }
}

/// Removes members whose session expired and pending member ids that never came back.
pub(super) fn expire_sessions(inner: &Arc<Inner>) {
    let now = Instant::now();
    let mut groups = inner.lock_groups();
    for group in groups.values_mut() {
        let expired: Vec<String> = group
            .members
            .values()
            .filter(|m| {
                !m.is_waiting() && now.duration_since(m.last_heartbeat) >= m.session_timeout
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            remove_member(inner, group, &id, "session timeout expired");
        }
        let before = group.pending_members.len();
        group
            .pending_members
            .retain(|_, p| now.duration_since(p.since) < p.session_timeout);
        if group.pending_members.len() != before {
            debug!(group = %group.id, expired = before - group.pending_members.len(), "pending member ids expired");
            try_complete_join(inner, group);
        }
    }
}

/// Shutdown: answers every parked call with NOT_COORDINATOR and disarms the timers.
pub(super) fn unload(group: &mut Group) {
    group.timer_epoch += 1;
    for m in group.members.values_mut() {
        let id = m.member_id.clone();
        m.finish_join(JoinOutcome::error(ErrorCode::NotCoordinator, &id));
        m.finish_sync(SyncOutcome::error(ErrorCode::NotCoordinator));
    }
}

pub(super) async fn sync_group(
    inner: &Arc<Inner>,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let outcome = match sync_locked(inner, &req, version) {
        Start::Done(o) => o,
        Start::Wait(rx) => rx
            .await
            .unwrap_or_else(|_| SyncOutcome::error(ErrorCode::CoordinatorNotAvailable)),
    };
    debug!(
        group = %req.group_id.as_str(),
        member = %req.member_id.as_str(),
        error = ?outcome.error,
        bytes = outcome.assignment.len(),
        "SyncGroup answered"
    );
    SyncGroupResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(outcome.error.code())
        .with_protocol_type(if version >= 5 {
            outcome.protocol_type.map(StrBytes::from_string)
        } else {
            None
        })
        .with_protocol_name(if version >= 5 {
            outcome.protocol_name.map(StrBytes::from_string)
        } else {
            None
        })
        .with_assignment(outcome.assignment)
}

fn sync_locked(inner: &Arc<Inner>, req: &SyncGroupRequest, version: i16) -> Start<SyncOutcome> {
    let fail = |e: ErrorCode| Start::Done(SyncOutcome::error(e));
    if inner.is_closed() {
        return fail(ErrorCode::CoordinatorNotAvailable);
    }
    let group_id = req.group_id.as_str();
    if group_id.is_empty() {
        return fail(ErrorCode::InvalidGroupId);
    }
    let member_id = req.member_id.as_str();
    let instance_id = if version >= 3 {
        req.group_instance_id.as_ref().map(|s| s.as_str())
    } else {
        None
    };
    let mut groups = inner.lock_groups();
    let Some(group) = groups.get_mut(group_id) else {
        return fail(ErrorCode::UnknownMemberId);
    };
    if group.state == GroupState::Dead {
        return fail(ErrorCode::CoordinatorNotAvailable);
    }
    if group.is_static_member_fenced(member_id, instance_id) {
        return fail(ErrorCode::FencedInstanceId);
    }
    if !group.members.contains_key(member_id) {
        return fail(ErrorCode::UnknownMemberId);
    }
    if req.generation_id != group.generation_id {
        return fail(ErrorCode::IllegalGeneration);
    }
    if version >= 5 {
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_deref() != Some(t.as_str()));
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| group.protocol_name.as_deref() != Some(n.as_str()));
        if type_mismatch || name_mismatch {
            return fail(ErrorCode::InconsistentGroupProtocol);
        }
    }
    match group.state {
        GroupState::Empty => fail(ErrorCode::UnknownMemberId),
        GroupState::PreparingRebalance => fail(ErrorCode::RebalanceInProgress),
        GroupState::Dead => fail(ErrorCode::CoordinatorNotAvailable),
        GroupState::Stable => {
            group.pending_sync.remove(member_id);
            let assignment = match group.members.get_mut(member_id) {
                Some(m) => {
                    m.last_heartbeat = Instant::now();
                    m.assignment.clone()
                }
                None => Bytes::new(),
            };
            Start::Done(group.sync_outcome(assignment))
        }
        GroupState::CompletingRebalance => {
            group.pending_sync.remove(member_id);
            if group.is_leader(member_id) {
                Start::Done(complete_sync(group, req, member_id))
            } else {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = group.members.get_mut(member_id)
                    && let Some(previous) = m.awaiting_sync.replace(tx)
                {
                    let _ = previous.send(SyncOutcome::error(ErrorCode::RebalanceInProgress));
                }
                Start::Wait(rx)
            }
        }
    }
}

/// The leader's SyncGroup: store every member's assignment, answer the waiting followers and
/// become Stable.
fn complete_sync(group: &mut Group, req: &SyncGroupRequest, leader_id: &str) -> SyncOutcome {
    let mut missing = 0usize;
    for m in group.members.values_mut() {
        m.assignment = match req
            .assignments
            .iter()
            .find(|a| a.member_id.as_str() == m.member_id)
        {
            Some(a) => a.assignment.clone(),
            None => {
                missing += 1;
                Bytes::new()
            }
        };
    }
    if missing > 0 {
        warn!(group = %group.id, missing, "leader sent no assignment for some members; they get an empty one");
    }
    group.state = GroupState::Stable;
    let protocol_type = group.protocol_type.clone();
    let protocol_name = group.protocol_name.clone();
    let now = Instant::now();
    let mut own = Bytes::new();
    for m in group.members.values_mut() {
        m.last_heartbeat = now;
        if m.member_id == leader_id {
            own = m.assignment.clone();
        }
        m.finish_sync(SyncOutcome {
            error: ErrorCode::None,
            assignment: m.assignment.clone(),
            protocol_type: protocol_type.clone(),
            protocol_name: protocol_name.clone(),
        });
    }
    info!(group = %group.id, generation = group.generation_id, "group is stable");
    group.sync_outcome(own)
}

pub(super) fn heartbeat(
    inner: &Arc<Inner>,
    req: &HeartbeatRequest,
    version: i16,
) -> HeartbeatResponse {
    let error = heartbeat_locked(inner, req, version);
    if !error.is_ok() {
        debug!(group = %req.group_id.as_str(), member = %req.member_id.as_str(), ?error, "heartbeat");
    }
    HeartbeatResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(error.code())
}

fn heartbeat_locked(inner: &Arc<Inner>, req: &HeartbeatRequest, version: i16) -> ErrorCode {
    if inner.is_closed() {
        return ErrorCode::CoordinatorNotAvailable;
    }
    let group_id = req.group_id.as_str();
    if group_id.is_empty() {
        return ErrorCode::InvalidGroupId;
    }
    let member_id = req.member_id.as_str();
    let instance_id = if version >= 3 {
        req.group_instance_id.as_ref().map(|s| s.as_str())
    } else {
        None
    };
    let mut groups = inner.lock_groups();
    let Some(group) = groups.get_mut(group_id) else {
        return ErrorCode::UnknownMemberId;
    };
    if group.state == GroupState::Dead {
        return ErrorCode::CoordinatorNotAvailable;
    }
    if group.is_static_member_fenced(member_id, instance_id) {
        return ErrorCode::FencedInstanceId;
    }
    if group.state == GroupState::Empty {
        return ErrorCode::UnknownMemberId;
    }
    let generation = group.generation_id;
    let state = group.state;
    let Some(member) = group.members.get_mut(member_id) else {
        return ErrorCode::UnknownMemberId;
    };
    if req.generation_id != generation {
        return ErrorCode::IllegalGeneration;
    }
    member.last_heartbeat = Instant::now();
    match state {
        GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
        GroupState::Stable => {
            group.pending_sync.remove(member_id);
            ErrorCode::None
        }
        _ => ErrorCode::None,
    }
}

pub(super) fn leave_group(
    inner: &Arc<Inner>,
    req: &LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let identities: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let (top, per_member) = leave_locked(inner, req.group_id.as_str(), &identities);
    let top = if version < 3 && top.is_ok() {
        per_member.first().copied().unwrap_or(ErrorCode::None)
    } else {
        top
    };
    let members = if version >= 3 {
        identities
            .iter()
            .zip(per_member.iter().copied().chain(std::iter::repeat(top)))
            .map(|((id, instance), e)| {
                MemberResponse::default()
                    .with_member_id(sb(id))
                    .with_group_instance_id(instance.as_deref().map(sb))
                    .with_error_code(e.code())
            })
            .collect()
    } else {
        Vec::new()
    };
    LeaveGroupResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(top.code())
        .with_members(members)
}

/// Returns the top-level error and, when the group was found, one error per identity.
fn leave_locked(
    inner: &Arc<Inner>,
    group_id: &str,
    identities: &[(String, Option<String>)],
) -> (ErrorCode, Vec<ErrorCode>) {
    if inner.is_closed() {
        return (ErrorCode::CoordinatorNotAvailable, Vec::new());
    }
    if group_id.is_empty() {
        return (ErrorCode::InvalidGroupId, Vec::new());
    }
    let mut groups = inner.lock_groups();
    let Some(group) = groups.get_mut(group_id) else {
        return (
            ErrorCode::None,
            vec![ErrorCode::UnknownMemberId; identities.len()],
        );
    };
    if group.state == GroupState::Dead {
        return (ErrorCode::CoordinatorNotAvailable, Vec::new());
    }
    let errors = identities
        .iter()
        .map(|(member_id, instance)| leave_one(inner, group, member_id, instance.as_deref()))
        .collect();
    (ErrorCode::None, errors)
}

fn leave_one(
    inner: &Arc<Inner>,
    group: &mut Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> ErrorCode {
    if member_id.is_empty() {
        // v3+: a static member may leave by instance id alone.
        let Some(id) = instance_id.and_then(|i| group.static_members.get(i).cloned()) else {
            return ErrorCode::UnknownMemberId;
        };
        remove_member(inner, group, &id, "static member left the group");
        return ErrorCode::None;
    }
    if group.is_static_member_fenced(member_id, instance_id) {
        return ErrorCode::FencedInstanceId;
    }
    if group.pending_members.remove(member_id).is_some() {
        try_complete_join(inner, group);
        return ErrorCode::None;
    }
    if group.members.contains_key(member_id) {
        remove_member(inner, group, member_id, "member left the group");
        return ErrorCode::None;
    }
    ErrorCode::UnknownMemberId
}
