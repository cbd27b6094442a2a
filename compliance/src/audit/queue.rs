//! Counters of the audit writer's queue, for `/metrics`: how many queue entries wait for the
//! writer thread, how many events were accepted but are not durable yet, how old the oldest
//! of them is (the trail's lag), and how many events became durable or failed since start.
//!
//! [`crate::AuditLog`] keeps one set of counters; [`crate::AuditLog::queue_metrics`] reads one
//! log, [`snapshot`] every log open in this process (one per node under `serve`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// What the audit queue looks like now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditQueueSnapshot {
    /// Queue entries (appends or batches) waiting for the writer thread.
    pub depth: u64,
    /// The queue's length limit, in entries.
    pub capacity: u64,
    /// Events accepted by `append`/`append_batch` that are not fsynced yet.
    pub pending_events: u64,
    /// Seconds since the oldest of those was accepted (0 when none waits).
    pub lag_seconds: f64,
    /// Events made durable since start.
    pub durable_events: u64,
    /// Events not confirmed durable: queue full, writer failed or closed, or the caller
    /// stopped waiting (its fate is then unknown here).
    pub failed_events: u64,
}

/// The live counters of one audit log.
#[derive(Default)]
pub(crate) struct QueueStats {
    next_ticket: AtomicU64,
    /// Accepted and not yet answered: ticket → (accepted at, events).
    pending: Mutex<BTreeMap<u64, (Instant, u64)>>,
    pending_events: AtomicU64,
    durable_events: AtomicU64,
    failed_events: AtomicU64,
}

/// One accepted append; counted as pending until [`Ticket::done`] or drop (a dropped ticket,
/// e.g. a cancelled caller, is counted as failed: its fate is unknown to the caller).
pub(crate) struct Ticket<'a> {
    stats: &'a QueueStats,
    id: u64,
    events: u64,
    finished: bool,
}

impl QueueStats {
    /// Starts tracking an append of `events` events.
    pub(crate) fn enter(&self, events: usize) -> Ticket<'_> {
        let events = events as u64;
        let id = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (Instant::now(), events));
        self.pending_events.fetch_add(events, Ordering::Relaxed);
        Ticket {
            stats: self,
            id,
            events,
            finished: false,
        }
    }

    fn leave(&self, id: u64, events: u64, durable: bool) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        self.pending_events.fetch_sub(events, Ordering::Relaxed);
        let counter = if durable {
            &self.durable_events
        } else {
            &self.failed_events
        };
        counter.fetch_add(events, Ordering::Relaxed);
    }

    /// The counters, with the queue's `depth` and `capacity` (read from the channel).
    pub(crate) fn snapshot(&self, depth: usize, capacity: usize) -> AuditQueueSnapshot {
        let oldest = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|(at, _)| *at)
            .min();
        AuditQueueSnapshot {
            depth: depth as u64,
            capacity: capacity as u64,
            pending_events: self.pending_events.load(Ordering::Relaxed),
            lag_seconds: oldest.map_or(0.0, |at| at.elapsed().as_secs_f64()),
            durable_events: self.durable_events.load(Ordering::Relaxed),
            failed_events: self.failed_events.load(Ordering::Relaxed),
        }
    }
}

impl Ticket<'_> {
    /// The append was answered: `durable` if the events were fsynced.
    pub(crate) fn done(mut self, durable: bool) {
        self.finished = true;
        self.stats.leave(self.id, self.events, durable);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.leave(self.id, self.events, false);
        }
    }
}

/// The queue counters of every audit log open in this process, added up (the lag is the
/// largest); `None` when no log is open here.
pub fn snapshot() -> Option<AuditQueueSnapshot> {
    super::log::all_queue_metrics()
}

/// Adds `b` to `a` (several logs in one process).
pub(crate) fn add(a: &mut AuditQueueSnapshot, b: &AuditQueueSnapshot) {
    a.depth += b.depth;
    a.capacity += b.capacity;
    a.pending_events += b.pending_events;
    a.lag_seconds = a.lag_seconds.max(b.lag_seconds);
    a.durable_events += b.durable_events;
    a.failed_events += b.failed_events;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_track_pending_events_and_lag() {
        let s = QueueStats::default();
        assert_eq!(s.snapshot(0, 8).lag_seconds, 0.0);
        let a = s.enter(3);
        let b = s.enter(1);
        let snap = s.snapshot(2, 8);
        assert_eq!((snap.depth, snap.capacity, snap.pending_events), (2, 8, 4));
        assert!(snap.lag_seconds >= 0.0);
        a.done(true);
        drop(b);
        let snap = s.snapshot(0, 8);
        assert_eq!(snap.pending_events, 0);
        assert_eq!(snap.lag_seconds, 0.0);
        assert_eq!((snap.durable_events, snap.failed_events), (3, 1));
    }
}
