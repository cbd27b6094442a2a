//! [`Election`]: which registry node writes `_schemas`, decided through Kafka group membership.
//!
//! Every node joins one Kafka group ([`ElectionConfig::group_id`], `_gatehouse_registry` by
//! default) with its own group protocol (type [`PROTOCOL_TYPE`]): its member metadata carries
//! its advertised URL and whether it may lead. The Kafka group leader runs the assignor
//! ([`choose_leader`]): the group leader itself when it is eligible, else the eligible member
//! with the smallest member id. Every member gets the same assignment back: the generation, the
//! registry leader's member id and URL. A node is the writer while the assignment of its
//! *current* generation names it; the others forward writes to the URL.
//!
//! With a key ([`ElectionConfig::mac_key`], derived from the deployment's master key under
//! `gatehouse serve`) the metadata and the assignment carry an HMAC-SHA256: a client that joins
//! the group through the gateway cannot make itself (or a URL of its choice) the leader, so
//! forwarded requests and their credentials only go to nodes of the deployment. Without a key
//! (library use, tests) nothing is signed.
//!
//! [`Election::permit`] is the check right before a write is produced: this node leads the
//! group's current generation, and the membership was confirmed (JoinGroup or Heartbeat sent)
//! less than the session timeout minus [`LEASE_MARGIN`] ago — the coordinator cannot have
//! handed leadership to another node before that lease runs out. See
//! `docs/adr/0006-registry-single-writer.md` for what this guarantees and what not.
//!
//! No election ([`Election::solo`]): `registry.group_id = ""`, or a broker that has no group
//! APIs while this node is eligible; the node is the only writer (as before this module).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::client::{
    Client, GroupAssignment, GroupMember, GroupMemberConfig, GroupProtocol, JoinGroupResult,
    broker_code,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// JoinGroup protocol type of the registry group.
pub const PROTOCOL_TYPE: &str = "gatehouse-registry";
/// The one protocol (version) offered.
pub const PROTOCOL_NAME: &str = "v1";
/// Default group id (`registry.group_id`).
pub const DEFAULT_GROUP_ID: &str = "_gatehouse_registry";
/// Time kept free at the end of the lease for the produce request to reach the broker.
pub const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// Domain separator of the MACs (the `topic` argument of [`gatehouse_policy::store::record_mac`]).
const MAC_DOMAIN: &str = "gatehouse-registry-election";

/// Settings of an [`Election`].
#[derive(Clone)]
pub struct ElectionConfig {
    /// Kafka group id; empty: no election, this node is the only writer.
    pub group_id: String,
    /// The URL other nodes forward writes to (`https://host:port`).
    pub advertised_url: String,
    /// May this node become the writer?
    pub eligible: bool,
    /// Key of the metadata and assignment MACs (all nodes must share it).
    pub mac_key: Option<[u8; 32]>,
    /// Group session timeout: a node that stops heartbeating loses leadership after this.
    pub session_timeout: Duration,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
}

impl std::fmt::Debug for ElectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectionConfig")
            .field("group_id", &self.group_id)
            .field("advertised_url", &self.advertised_url)
            .field("eligible", &self.eligible)
            .field("signed", &self.mac_key.is_some())
            .field("session_timeout", &self.session_timeout)
            .finish()
    }
}

impl ElectionConfig {
    /// Defaults: group [`DEFAULT_GROUP_ID`], eligible, unsigned, 10 s session, 1 s heartbeat.
    pub fn new(advertised_url: impl Into<String>) -> Self {
        Self {
            group_id: DEFAULT_GROUP_ID.to_string(),
            advertised_url: advertised_url.into(),
            eligible: true,
            mac_key: None,
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
        }
    }
}

/// Who writes, as this node sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leadership {
    /// Group generation (0 without election).
    pub generation: i32,
    /// The writer's URL; `None` when no member may lead (or the assignment was unreadable).
    pub leader_url: Option<String>,
    /// This node is the writer.
    pub is_self: bool,
}

/// The election's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionState {
    /// Not in a generation yet (joining or rebalancing).
    Joining,
    /// In a generation.
    Member(Leadership),
    /// No election: this node is the only writer.
    Solo,
    /// No election, and this node may not write (not eligible, broker without groups).
    Disabled,
}

/// Why [`Election::permit`] refused a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotLeader {
    /// Joining or rebalancing.
    #[error("the registry group is rebalancing; no leader is known yet")]
    NoGeneration,
    /// Another node leads (or nobody).
    #[error("this node is not the registry leader (generation {generation}, leader {leader})")]
    Follower {
        /// Current generation.
        generation: i32,
        /// The leader's URL or `none`.
        leader: String,
    },
    /// The last confirmation of our membership is too old.
    #[error(
        "this node's group membership was last confirmed {age_ms} ms ago (lease {lease_ms} ms); refusing to write"
    )]
    LeaseExpired {
        /// Age of the confirmation.
        age_ms: u64,
        /// The lease.
        lease_ms: u64,
    },
    /// This node may not write at all.
    #[error("this node may not write: it is not eligible for leadership and no election runs")]
    Disabled,
}

/// A node's member metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    v: u8,
    url: String,
    eligible: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

/// The assignment every member gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Assignment {
    v: u8,
    generation: i32,
    /// Member id of the writer; `None` when no member is eligible.
    leader: Option<String>,
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

fn mac(key: &[u8; 32], parts: &[&str]) -> String {
    let joined = parts.join("\n");
    hex::encode(gatehouse_policy::store::record_mac(
        key,
        MAC_DOMAIN,
        joined.as_bytes(),
        None,
    ))
}

fn mac_ok(key: Option<&[u8; 32]>, parts: &[&str], got: Option<&str>) -> bool {
    match key {
        None => true,
        Some(k) => {
            let want = mac(k, parts);
            got.is_some_and(|g| constant_time_eq(want.as_bytes(), g.as_bytes()))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn identity_parts(i: &Identity) -> [String; 3] {
    [
        "identity".to_string(),
        i.url.clone(),
        i.eligible.to_string(),
    ]
}

fn assignment_parts(a: &Assignment) -> [String; 4] {
    [
        "assignment".to_string(),
        a.generation.to_string(),
        a.leader.clone().unwrap_or_default(),
        a.url.clone().unwrap_or_default(),
    ]
}

fn as_strs<const N: usize>(p: &[String; N]) -> Vec<&str> {
    p.iter().map(String::as_str).collect()
}

/// This node's member metadata.
fn encode_identity(config: &ElectionConfig) -> Bytes {
    let mut id = Identity {
        v: 1,
        url: config.advertised_url.clone(),
        eligible: config.eligible,
        mac: None,
    };
    if let Some(k) = &config.mac_key {
        id.mac = Some(mac(k, &as_strs(&identity_parts(&id))));
    }
    Bytes::from(serde_json::to_vec(&id).unwrap_or_default())
}

/// The assignor (runs on the Kafka group leader): see the module documentation.
fn choose_leader(joined: &JoinGroupResult, key: Option<&[u8; 32]>) -> Vec<(String, Bytes)> {
    let mut eligible: Vec<(&str, String)> = Vec::new();
    for m in &joined.members {
        match serde_json::from_slice::<Identity>(&m.metadata) {
            Ok(id) if !mac_ok(key, &as_strs(&identity_parts(&id)), id.mac.as_deref()) => {
                warn!(member = %m.member_id, "registry group: member metadata with a bad MAC ignored");
            }
            Ok(id) if id.eligible => eligible.push((m.member_id.as_str(), id.url)),
            Ok(_) => {}
            Err(e) => {
                warn!(member = %m.member_id, error = %e, "registry group: unreadable member metadata ignored")
            }
        }
    }
    eligible.sort();
    let chosen = eligible
        .iter()
        .find(|(m, _)| *m == joined.member_id)
        .or_else(|| eligible.first());
    let mut a = Assignment {
        v: 1,
        generation: joined.generation_id,
        leader: chosen.map(|(m, _)| (*m).to_string()),
        url: chosen.map(|(_, u)| u.clone()),
        mac: None,
    };
    if let Some(k) = key {
        a.mac = Some(mac(k, &as_strs(&assignment_parts(&a))));
    }
    let bytes = Bytes::from(serde_json::to_vec(&a).unwrap_or_default());
    joined
        .members
        .iter()
        .map(|m| (m.member_id.clone(), bytes.clone()))
        .collect()
}

/// What an assignment means to the member that received it.
fn leadership(a: &GroupAssignment, key: Option<&[u8; 32]>) -> Leadership {
    let unknown = Leadership {
        generation: a.generation_id,
        leader_url: None,
        is_self: false,
    };
    let parsed: Assignment = match serde_json::from_slice(&a.user_data) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "registry group: unreadable assignment; no leader this generation");
            return unknown;
        }
    };
    if !mac_ok(
        key,
        &as_strs(&assignment_parts(&parsed)),
        parsed.mac.as_deref(),
    ) {
        warn!(
            "registry group: assignment with a bad MAC (a member without the deployment's key leads the group?); no leader this generation"
        );
        return unknown;
    }
    if parsed.generation != a.generation_id {
        warn!(
            assigned = parsed.generation,
            current = a.generation_id,
            "registry group: assignment of another generation; no leader this generation"
        );
        return unknown;
    }
    Leadership {
        generation: a.generation_id,
        is_self: parsed.leader.as_deref() == Some(a.member_id.as_str()),
        leader_url: parsed.url,
    }
}

/// A running election (see the module documentation).
pub struct Election {
    config: ElectionConfig,
    state: watch::Receiver<ElectionState>,
    member: Arc<Mutex<Option<GroupMember>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("config", &self.config)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Election {
    /// No election: this node is the only writer.
    pub fn solo(advertised_url: impl Into<String>) -> Self {
        let (_tx, state) = watch::channel(ElectionState::Solo);
        Self {
            config: ElectionConfig {
                group_id: String::new(),
                ..ElectionConfig::new(advertised_url)
            },
            state,
            member: Arc::new(Mutex::new(None)),
            task: Mutex::new(None),
        }
    }

    /// Starts joining the group in the background (returns at once; the state is
    /// [`ElectionState::Joining`] until the first generation). With an empty group id:
    /// [`Election::solo`] (or [`ElectionState::Disabled`] when not eligible).
    pub fn start(client: Client, config: ElectionConfig) -> Self {
        if config.group_id.is_empty() {
            return Self::fixed(config);
        }
        let (tx, state) = watch::channel(ElectionState::Joining);
        let member = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run(client, config.clone(), member.clone(), tx));
        Self {
            config,
            state,
            member,
            task: Mutex::new(Some(task)),
        }
    }

    /// Without a group: [`ElectionState::Solo`] when eligible, else [`ElectionState::Disabled`].
    fn fixed(config: ElectionConfig) -> Self {
        let first = if config.eligible {
            ElectionState::Solo
        } else {
            ElectionState::Disabled
        };
        let (_tx, state) = watch::channel(first);
        Self {
            config,
            state,
            member: Arc::new(Mutex::new(None)),
            task: Mutex::new(None),
        }
    }

    /// This node's advertised URL.
    pub fn advertised_url(&self) -> &str {
        &self.config.advertised_url
    }

    /// The configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> ElectionState {
        self.state.borrow().clone()
    }

    /// Waits up to `timeout` for a state other than [`ElectionState::Joining`], then returns
    /// the state.
    pub async fn settled(&self, timeout: Duration) -> ElectionState {
        let mut rx = self.state.clone();
        let wait = rx.wait_for(|s| *s != ElectionState::Joining);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(s)) => s.clone(),
            _ => self.state(),
        }
    }

    /// Whether this node may produce a write now; `Ok(generation)` (0 without election). Read
    /// from the group membership itself (not a cached copy), right before producing.
    pub fn permit(&self) -> Result<i32, NotLeader> {
        match &*self.state.borrow() {
            ElectionState::Solo => return Ok(0),
            ElectionState::Disabled => return Err(NotLeader::Disabled),
            ElectionState::Joining | ElectionState::Member(_) => {}
        }
        let guard = lock(&self.member);
        let Some(member) = guard.as_ref() else {
            return Err(NotLeader::NoGeneration);
        };
        let (Some(a), Some(confirmed)) = (member.assignment(), member.confirmed_at()) else {
            return Err(NotLeader::NoGeneration);
        };
        let l = leadership(&a, self.config.mac_key.as_ref());
        if !l.is_self {
            return Err(NotLeader::Follower {
                generation: l.generation,
                leader: l.leader_url.unwrap_or_else(|| "none".into()),
            });
        }
        let lease = self.config.session_timeout.saturating_sub(LEASE_MARGIN);
        let age = confirmed.elapsed();
        if age >= lease {
            return Err(NotLeader::LeaseExpired {
                age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
            });
        }
        Ok(l.generation)
    }

    /// [`Election::permit`], waiting up to `max` while the answer may still turn into a yes:
    /// right after a join the lease counts from the JoinGroup request, which the coordinator
    /// may have held for a whole rebalance, so the first heartbeat of the generation renews it.
    pub async fn wait_permit(&self, max: Duration) -> Result<i32, NotLeader> {
        let until = tokio::time::Instant::now() + max;
        loop {
            match self.permit() {
                Err(NotLeader::LeaseExpired { .. } | NotLeader::NoGeneration)
                    if tokio::time::Instant::now() < until =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// Leaves the group (the others elect a new writer at once) and stops.
    pub async fn leave(&self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
        let member = lock(&self.member).take();
        if let Some(m) = member {
            match m.leave().await {
                Ok(()) => info!("left the registry group"),
                Err(e) => warn!(error = %e, "leaving the registry group failed"),
            }
        }
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
    }
}

/// Joins (retrying), then mirrors the membership's assignments into `state`.
async fn run(
    client: Client,
    config: ElectionConfig,
    slot: Arc<Mutex<Option<GroupMember>>>,
    state: watch::Sender<ElectionState>,
) {
    let key = config.mac_key;
    let mut gm = GroupMemberConfig::new(config.group_id.clone(), Vec::new());
    gm.session_timeout = config.session_timeout;
    gm.heartbeat_interval = config.heartbeat_interval;
    gm.rebalance_timeout = config.session_timeout;
    gm.protocol = Some(GroupProtocol {
        protocol_type: PROTOCOL_TYPE.to_string(),
        name: PROTOCOL_NAME.to_string(),
        metadata: encode_identity(&config),
        assign: Arc::new(move |joined: &JoinGroupResult| choose_leader(joined, key.as_ref())),
    });
    let mut backoff = Duration::from_millis(200);
    let member = loop {
        match GroupMember::join(client.clone(), gm.clone()).await {
            Ok(m) => break m,
            Err(e) if broker_code(&e) == Some(ErrorCode::UnsupportedVersion) => {
                if config.eligible {
                    warn!(error = %e, "the broker has no consumer-group APIs: this registry node is the only writer (run one registry node only)");
                    state.send_replace(ElectionState::Solo);
                } else {
                    warn!(error = %e, "the broker has no consumer-group APIs and registry.leader_eligibility is false: this node cannot accept writes");
                    state.send_replace(ElectionState::Disabled);
                }
                return;
            }
            Err(e) => {
                warn!(group = %config.group_id, error = %e, "joining the registry group failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    let mut watch = member.watch();
    *lock(&slot) = Some(member);
    let mut last: Option<ElectionState> = None;
    loop {
        let next = match &*watch.borrow_and_update() {
            None => ElectionState::Joining,
            Some(a) => ElectionState::Member(leadership(a, key.as_ref())),
        };
        if last.as_ref() != Some(&next) {
            if let ElectionState::Member(l) = &next {
                info!(
                    generation = l.generation,
                    leader = l.leader_url.as_deref().unwrap_or("none"),
                    is_leader = l.is_self,
                    "registry leader elected"
                );
            }
            state.send_replace(next.clone());
            last = Some(next);
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_protocol::client::JoinedMember;

    fn joined(me: &str, members: &[(&str, &ElectionConfig)]) -> JoinGroupResult {
        JoinGroupResult {
            generation_id: 7,
            protocol_type: Some(PROTOCOL_TYPE.into()),
            protocol_name: Some(PROTOCOL_NAME.into()),
            leader_id: me.into(),
            member_id: me.into(),
            skip_assignment: false,
            members: members
                .iter()
                .map(|(id, c)| JoinedMember {
                    member_id: (*id).into(),
                    group_instance_id: None,
                    metadata: encode_identity(c),
                })
                .collect(),
        }
    }

    fn assignment_for(member: &str, out: &[(String, Bytes)]) -> GroupAssignment {
        let bytes = out
            .iter()
            .find(|(m, _)| m == member)
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        GroupAssignment {
            generation_id: 7,
            member_id: member.into(),
            leader_id: "x".into(),
            partitions: Default::default(),
            user_data: bytes,
        }
    }

    fn cfg(url: &str, eligible: bool, key: Option<[u8; 32]>) -> ElectionConfig {
        ElectionConfig {
            eligible,
            mac_key: key,
            ..ElectionConfig::new(url)
        }
    }

    #[test]
    fn group_leader_leads_when_eligible_else_smallest_eligible_member() {
        let a = cfg("https://a:1", true, None);
        let b = cfg("https://b:1", true, None);
        let out = choose_leader(&joined("m-b", &[("m-a", &a), ("m-b", &b)]), None);
        let l = leadership(&assignment_for("m-b", &out), None);
        assert!(l.is_self);
        assert_eq!(l.leader_url.as_deref(), Some("https://b:1"));
        let la = leadership(&assignment_for("m-a", &out), None);
        assert!(!la.is_self);
        assert_eq!(la.leader_url.as_deref(), Some("https://b:1"));

        let b_no = cfg("https://b:1", false, None);
        let c = cfg("https://c:1", true, None);
        let out = choose_leader(
            &joined("m-b", &[("m-c", &c), ("m-b", &b_no), ("m-a", &a)]),
            None,
        );
        let l = leadership(&assignment_for("m-c", &out), None);
        assert_eq!(l.leader_url.as_deref(), Some("https://a:1"));
        assert!(!l.is_self);
        assert!(leadership(&assignment_for("m-a", &out), None).is_self);
    }

    #[test]
    fn nobody_eligible_means_no_leader() {
        let a = cfg("https://a:1", false, None);
        let out = choose_leader(&joined("m-a", &[("m-a", &a)]), None);
        let l = leadership(&assignment_for("m-a", &out), None);
        assert_eq!(l.leader_url, None);
        assert!(!l.is_self);
    }

    #[test]
    fn unsigned_or_forged_metadata_and_assignments_are_ignored_with_a_key() {
        let key = [7u8; 32];
        let good = cfg("https://a:1", true, Some(key));
        let intruder = cfg("https://evil:1", true, None);
        // The intruder is the group leader but only the signed member may lead.
        let out = choose_leader(
            &joined("m-0", &[("m-0", &intruder), ("m-a", &good)]),
            Some(&key),
        );
        let l = leadership(&assignment_for("m-a", &out), Some(&key));
        assert!(l.is_self);
        assert_eq!(l.leader_url.as_deref(), Some("https://a:1"));
        // An assignment computed without the key is refused by signed members.
        let forged = choose_leader(&joined("m-0", &[("m-0", &intruder)]), None);
        let l = leadership(&assignment_for("m-a", &forged), Some(&key));
        assert_eq!(l.leader_url, None);
        // A signed assignment of another generation is refused too.
        let mut stale = assignment_for("m-a", &out);
        stale.generation_id = 8;
        assert_eq!(leadership(&stale, Some(&key)).leader_url, None);
    }

    #[test]
    fn solo_and_disabled_permits() {
        assert_eq!(Election::solo("https://a:1").permit(), Ok(0));
        let mut c = cfg("https://a:1", false, None);
        c.group_id = String::new();
        assert_eq!(Election::fixed(c).permit(), Err(NotLeader::Disabled));
    }
}
