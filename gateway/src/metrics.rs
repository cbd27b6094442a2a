//! Gateway counters: connections, authentications (and failures by mechanism), requests by
//! API, produce and fetch bytes, denials and every kind of refusal, so an operator can see
//! what flows and what was turned away and why (exported on `/metrics` by the binary).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters.
#[derive(Default)]
pub(crate) struct Metrics {
    accepted: AtomicU64,
    active: AtomicU64,
    authenticated: AtomicU64,
    denied: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    rejected: Mutex<BTreeMap<String, u64>>,
    auth_failed: Mutex<BTreeMap<String, u64>>,
    /// Requests by API key (keys beyond the table are counted in the last slot).
    requests: ApiCounters,
    produce_bytes: AtomicU64,
    fetch_bytes: AtomicU64,
}

/// API keys counted one by one (Kafka's keys are below 100).
const API_SLOTS: usize = 100;

/// One counter per API key.
struct ApiCounters([AtomicU64; API_SLOTS]);

impl Default for ApiCounters {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// A copy of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Successful authentications.
    pub authenticated: u64,
    /// Authorization denials (one per denied resource).
    pub denied: u64,
    /// Refusals by reason (`tls_handshake`, `authentication_failed`, `connection_limit`, ...).
    pub refused: BTreeMap<String, u64>,
    /// Records rejected by a topic's policy (poison pills), per topic.
    pub rejected_records: BTreeMap<String, u64>,
    /// Failed authentications by SASL mechanism.
    pub authentication_failures: BTreeMap<String, u64>,
    /// Requests by API key (only keys seen).
    pub requests: BTreeMap<i16, u64>,
    /// Bytes of Produce requests from clients.
    pub produce_bytes: u64,
    /// Bytes of Fetch responses to clients.
    pub fetch_bytes: u64,
}

impl Metrics {
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn authenticated(&self) {
        self.authenticated.fetch_add(1, Ordering::Relaxed);
    }

    pub fn denied(&self, n: usize) {
        self.denied.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn authentication_failed(&self, mechanism: &str) {
        let mut map = self.auth_failed.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(mechanism.to_string()).or_default() += 1;
    }

    pub fn request(&self, api_key: i16) {
        let slot = usize::try_from(api_key)
            .unwrap_or(API_SLOTS - 1)
            .min(API_SLOTS - 1);
        self.requests.0[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub fn produce_bytes(&self, n: usize) {
        self.produce_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn fetch_bytes(&self, n: usize) {
        self.fetch_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn refused(&self, reason: &'static str) {
        let mut map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(reason).or_default() += 1;
    }

    pub fn rejected(&self, topic: &str, records: usize) {
        let mut map = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(topic.to_string()).or_default() += records as u64;
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        MetricsSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            authenticated: self.authenticated.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            refused,
            rejected_records: self
                .rejected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            authentication_failures: self
                .auth_failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            requests: self
                .requests
                .0
                .iter()
                .enumerate()
                .filter_map(|(k, v)| {
                    let v = v.load(Ordering::Relaxed);
                    (v > 0).then(|| (i16::try_from(k).unwrap_or(i16::MAX), v))
                })
                .collect(),
            produce_bytes: self.produce_bytes.load(Ordering::Relaxed),
            fetch_bytes: self.fetch_bytes.load(Ordering::Relaxed),
        }
    }
}
