//! In-memory state of one classic group and its members.
//!
//! Nothing here does I/O or spawns timers: this is the data the coordinator mutates under its
//! lock, plus the pure rules Kafka applies to it (protocol support and selection, leader
//! election, static-member fencing).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_protocol::ErrorCode;
use tokio::sync::oneshot;

/// The states of a classic group, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join before a new generation.
    PreparingRebalance,
    /// A generation exists; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Being removed.
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One member of the leader's JoinGroup response.
#[derive(Debug, Clone)]
pub(crate) struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a JoinGroup call learns, independent of the response version.
#[derive(Debug, Clone)]
pub(crate) struct JoinOutcome {
    pub error: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
}

impl JoinOutcome {
    /// A failed join for `member_id`.
    pub(crate) fn error(error: ErrorCode, member_id: &str) -> Self {
        JoinOutcome {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// What a SyncGroup call learns, independent of the response version.
#[derive(Debug, Clone)]
pub(crate) struct SyncOutcome {
    pub error: ErrorCode,
    pub assignment: Bytes,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
}

impl SyncOutcome {
    pub(crate) fn error(error: ErrorCode) -> Self {
        SyncOutcome {
            error,
            assignment: Bytes::new(),
            protocol_type: None,
            protocol_name: None,
        }
    }
}

/// A member of a group.
#[derive(Debug)]
pub(crate) struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// Supported protocols, most preferred first, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// The assignment of the current generation (empty until the leader's SyncGroup).
    pub assignment: Bytes,
    /// Last sign of life; the session expires `session_timeout` after it.
    pub last_heartbeat: Instant,
    /// Order of joining, for leader election.
    pub join_seq: u64,
    /// Set while the member's JoinGroup waits for the rebalance to complete.
    pub awaiting_join: Option<oneshot::Sender<JoinOutcome>>,
    /// Set while the member's SyncGroup waits for the leader's assignment.
    pub awaiting_sync: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    /// The metadata this member sent for `protocol`.
    pub(crate) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// True when the member is inside a rebalance and so needs no heartbeats.
    pub(crate) fn is_waiting(&self) -> bool {
        self.awaiting_join.is_some() || self.awaiting_sync.is_some()
    }

    /// Answers a pending JoinGroup, if any.
    pub(crate) fn finish_join(&mut self, outcome: JoinOutcome) {
        if let Some(tx) = self.awaiting_join.take() {
            // The client may have disconnected; nothing to do then.
            let _ = tx.send(outcome);
        }
    }

    /// Answers a pending SyncGroup, if any.
    pub(crate) fn finish_sync(&mut self, outcome: SyncOutcome) {
        if let Some(tx) = self.awaiting_sync.take() {
            let _ = tx.send(outcome);
        }
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED that has not rejoined yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingMember {
    pub since: Instant,
    pub session_timeout: Duration,
}

/// Bookkeeping of group.initial.rebalance.delay.ms while a group leaves Empty.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitialDelay {
    /// Rebalance time left after the current delay.
    pub remaining: Duration,
    /// A member joined during the current delay: wait another delay.
    pub new_member_added: bool,
}

/// One classic group.
#[derive(Debug)]
pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub members: HashMap<String, Member>,
    pub pending_members: HashMap<String, PendingMember>,
    /// group.instance.id → member id of static members.
    pub static_members: HashMap<String, String>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub pending_sync: HashSet<String>,
    /// Bumped whenever a timer is (re)armed; a timer whose epoch no longer matches is stale.
    pub timer_epoch: u64,
    pub initial_delay: Option<InitialDelay>,
    /// Wall-clock milliseconds at which the group last became Empty.
    pub empty_since_ms: i64,
    /// Last membership change or commit, for dropping idle empty groups.
    pub touched: Instant,
    next_join_seq: u64,
}

impl Group {
    pub(crate) fn new(id: &str, now_ms: i64) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: HashMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            pending_sync: HashSet::new(),
            timer_epoch: 0,
            initial_delay: None,
            empty_since_ms: now_ms,
            touched: Instant::now(),
            next_join_seq: 0,
        }
    }

    /// Next join sequence number.
    pub(crate) fn take_join_seq(&mut self) -> u64 {
        self.next_join_seq += 1;
        self.next_join_seq
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol type and list;
    /// otherwise the type must match and one protocol must be supported by every member.
    pub(crate) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// Kafka's protocol selection: among the protocols every member supports, each member votes
    /// for the first one in its own preference order; most votes wins. Ties go to the protocol
    /// the longest-standing member prefers.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_seq);
        let first = members.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|name| {
                members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .collect();
        let mut votes: Vec<(&str, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in &members {
            let vote = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n.as_str()))
                .map(|(n, _)| n.as_str());
            if let Some(v) = vote
                && let Some(slot) = votes.iter_mut().find(|(c, _)| *c == v)
            {
                slot.1 += 1;
            }
        }
        // max_by_key keeps the last maximum; iterate reversed so the earliest preference wins.
        votes
            .iter()
            .rev()
            .max_by_key(|(_, n)| *n)
            .map(|(name, _)| (*name).to_string())
    }

    /// True when every member has rejoined and no MEMBER_ID_REQUIRED member is outstanding.
    pub(crate) fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// The longest rebalance timeout of the members.
    pub(crate) fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Makes the longest-standing member the leader when the leader is gone.
    pub(crate) fn elect_leader(&mut self) {
        if self
            .leader_id
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            return;
        }
        self.leader_id = self
            .members
            .values()
            .min_by_key(|m| m.join_seq)
            .map(|m| m.member_id.clone());
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Kafka's static-member fencing: the instance id belongs to a different member id.
    pub(crate) fn is_static_member_fenced(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> bool {
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(current) => current != member_id,
            None => false,
        }
    }

    /// Members with their metadata for the selected protocol, in joining order.
    pub(crate) fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_seq);
        members
            .into_iter()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(protocol),
            })
            .collect()
    }

    /// The JoinGroup answer for `member_id` in the current generation.
    pub(crate) fn current_join_outcome(&self, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error: ErrorCode::None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if self.is_leader(member_id) {
                self.joined_members()
            } else {
                Vec::new()
            },
        }
    }

    /// The SyncGroup answer carrying `assignment`.
    pub(crate) fn sync_outcome(&self, assignment: Bytes) -> SyncOutcome {
        SyncOutcome {
            error: ErrorCode::None,
            assignment,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(id: &str, seq: u64, protocols: &[&str]) -> Member {
        Member {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
            assignment: Bytes::new(),
            last_heartbeat: Instant::now(),
            join_seq: seq,
            awaiting_join: None,
            awaiting_sync: None,
        }
    }

    fn group_with(members: Vec<Member>) -> Group {
        let mut g = Group::new("g", 0);
        g.state = GroupState::Stable;
        g.protocol_type = Some("consumer".into());
        for m in members {
            g.members.insert(m.member_id.clone(), m);
        }
        g
    }

    #[test]
    fn protocol_selection_by_votes_among_common_protocols() {
        let g = group_with(vec![
            member("a", 1, &["range", "roundrobin", "sticky"]),
            member("b", 2, &["roundrobin", "range"]),
            member("c", 3, &["roundrobin", "range"]),
        ]);
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
        let g = group_with(vec![
            member("a", 1, &["range", "rr"]),
            member("b", 2, &["rr", "range"]),
        ]);
        // A tie goes to the longest-standing member's preference.
        assert_eq!(g.select_protocol().as_deref(), Some("range"));
        let g = group_with(vec![
            member("a", 1, &["sticky", "range"]),
            member("b", 2, &["range"]),
        ]);
        assert_eq!(g.select_protocol().as_deref(), Some("range"));
    }

    #[test]
    fn supports_protocols_rules() {
        let g = group_with(vec![
            member("a", 1, &["range", "rr"]),
            member("b", 2, &["rr"]),
        ]);
        let p = |n: &str| vec![(n.to_string(), Bytes::new())];
        assert!(g.supports_protocols("consumer", &p("rr")));
        assert!(!g.supports_protocols("consumer", &p("range")));
        assert!(!g.supports_protocols("connect", &p("rr")));
        let empty = Group::new("e", 0);
        assert!(empty.supports_protocols("anything", &p("x")));
        assert!(!empty.supports_protocols("", &p("x")));
        assert!(!empty.supports_protocols("consumer", &[]));
    }

    #[test]
    fn leader_reelection_picks_longest_standing() {
        let mut g = group_with(vec![
            member("a", 5, &["r"]),
            member("b", 2, &["r"]),
            member("c", 9, &["r"]),
        ]);
        g.elect_leader();
        assert_eq!(g.leader_id.as_deref(), Some("b"));
        g.members.remove("b");
        g.elect_leader();
        assert_eq!(g.leader_id.as_deref(), Some("a"));
    }
}
