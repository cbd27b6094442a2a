//! Broker metrics for `/metrics`: the bytes held by the partition logs (by topic and in
//! total) and the durability work — group-commit rounds of the flusher thread, and each
//! partition's fsync round (segments and directory) with its latency in a histogram.
//!
//! The fsync counters are process-wide (one process serves one node); log sizes are read
//! from the brokers running in this process when a snapshot is taken ([`snapshot`]) or from
//! one broker ([`crate::Broker::metrics`]). Labels are topic names only, never partitions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::state::BrokerState;

/// Upper bounds (seconds) of the fsync latency histogram's buckets (`+Inf` is implied).
pub const FSYNC_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Process-wide fsync counters.
struct Fsyncs {
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: [AtomicU64; FSYNC_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
    failures: AtomicU64,
    rounds: AtomicU64,
}

static FSYNCS: Fsyncs = Fsyncs {
    buckets: [const { AtomicU64::new(0) }; FSYNC_BUCKETS.len() + 1],
    count: AtomicU64::new(0),
    sum_micros: AtomicU64::new(0),
    failures: AtomicU64::new(0),
    rounds: AtomicU64::new(0),
};

/// The brokers of this process (weak: a stopped broker drops out).
static BROKERS: Mutex<Vec<Weak<BrokerState>>> = Mutex::new(Vec::new());

/// Records one partition fsync round that took `elapsed` (`ok`: it succeeded).
pub(crate) fn observe_fsync(elapsed: Duration, ok: bool) {
    let secs = elapsed.as_secs_f64();
    let slot = FSYNC_BUCKETS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(FSYNC_BUCKETS.len());
    FSYNCS.buckets[slot].fetch_add(1, Ordering::Relaxed);
    FSYNCS.count.fetch_add(1, Ordering::Relaxed);
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    FSYNCS.sum_micros.fetch_add(micros, Ordering::Relaxed);
    if !ok {
        FSYNCS.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records one group-commit round of the flusher thread.
pub(crate) fn flush_round() {
    FSYNCS.rounds.fetch_add(1, Ordering::Relaxed);
}

/// Makes a running broker's logs visible to [`snapshot`].
pub(crate) fn register(state: &Arc<BrokerState>) {
    let mut brokers = BROKERS.lock().unwrap_or_else(PoisonError::into_inner);
    brokers.retain(|w| w.strong_count() > 0);
    brokers.push(Arc::downgrade(state));
}

/// A latency histogram: cumulative counts per upper bound (seconds), as Prometheus wants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations <= bound)`, ascending, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of the observations in seconds.
    pub sum_seconds: f64,
}

/// What the broker reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerMetricsSnapshot {
    /// Bytes of all segments, by topic.
    pub topic_bytes: BTreeMap<String, u64>,
    /// Bytes of all segments of all topics.
    pub log_bytes: u64,
    /// Open partition logs.
    pub partitions: u64,
    /// Latency of partition fsync rounds (segment data and, after a roll, the directory).
    pub fsync: HistogramSnapshot,
    /// Partition fsync rounds that failed (the partition went offline).
    pub fsync_failures: u64,
    /// Group-commit rounds of the flusher thread (each covers one or more partitions).
    pub flush_rounds: u64,
}

fn fsync_snapshot() -> (HistogramSnapshot, u64, u64) {
    let mut cumulative = 0u64;
    let buckets = FSYNC_BUCKETS
        .iter()
        .zip(&FSYNCS.buckets)
        .map(|(bound, n)| {
            cumulative += n.load(Ordering::Relaxed);
            (*bound, cumulative)
        })
        .collect();
    let inf = FSYNCS.buckets[FSYNC_BUCKETS.len()].load(Ordering::Relaxed);
    (
        HistogramSnapshot {
            buckets,
            // Consistent with the buckets even while observations race in.
            count: cumulative + inf,
            sum_seconds: FSYNCS.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        },
        FSYNCS.failures.load(Ordering::Relaxed),
        FSYNCS.rounds.load(Ordering::Relaxed),
    )
}

/// Adds the log sizes of one broker to `out`.
fn add_sizes(state: &BrokerState, out: &mut BrokerMetricsSnapshot) {
    for topic in state.topics.all() {
        let bytes: u64 = topic.partitions.iter().map(|p| p.size_bytes()).sum();
        *out.topic_bytes.entry(topic.name.clone()).or_default() += bytes;
        out.log_bytes += bytes;
        out.partitions += topic.partitions.len() as u64;
    }
}

fn with_fsyncs() -> BrokerMetricsSnapshot {
    let (fsync, fsync_failures, flush_rounds) = fsync_snapshot();
    BrokerMetricsSnapshot {
        fsync,
        fsync_failures,
        flush_rounds,
        ..BrokerMetricsSnapshot::default()
    }
}

/// One broker's log sizes with the process-wide fsync counters.
pub(crate) fn of(state: &BrokerState) -> BrokerMetricsSnapshot {
    let mut out = with_fsyncs();
    add_sizes(state, &mut out);
    out
}

/// The log sizes of every broker running in this process, with the fsync counters; `None`
/// when no broker runs here (e.g. `serve` in front of an external Kafka cluster).
pub fn snapshot() -> Option<BrokerMetricsSnapshot> {
    let brokers: Vec<Arc<BrokerState>> = BROKERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    if brokers.is_empty() {
        return None;
    }
    let mut out = with_fsyncs();
    for b in &brokers {
        add_sizes(b, &mut out);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsyncs_fall_into_cumulative_buckets() {
        let (before, failures_before, _) = fsync_snapshot();
        observe_fsync(Duration::from_micros(50), true);
        observe_fsync(Duration::from_millis(3), true);
        observe_fsync(Duration::from_secs(10), false);
        let (after, failures_after, _) = fsync_snapshot();
        // Other tests of this process may fsync meanwhile: compare at least.
        assert!(after.count >= before.count + 3);
        assert!(failures_after > failures_before);
        assert!(after.sum_seconds >= before.sum_seconds + 10.003);
        let at = |s: &HistogramSnapshot, bound: f64| {
            s.buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, n)| *n)
                .unwrap_or_default()
        };
        assert!(at(&after, 0.0001) > at(&before, 0.0001));
        assert!(at(&after, 0.005) >= at(&before, 0.005) + 2);
        // Cumulative: never decreasing, the last bound below the total (one in +Inf).
        assert!(after.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        let last = after.buckets.last().map(|(_, n)| *n).unwrap_or_default();
        assert!(last < after.count);
    }
}
