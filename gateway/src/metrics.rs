//! Gateway counters: connections, authentications, denials and every kind of refusal, so an
//! operator can see what was turned away and why (exported on `/metrics` by the binary).

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
        }
    }
}
