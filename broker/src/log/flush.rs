//! The group-commit flusher: one dedicated OS thread that fsyncs dirty partitions.
//!
//! Appends register their partition here. The thread wakes on the first registration, waits
//! until the group-commit window (counted from that first registration) has passed to gather
//! more, then asks every registered partition to fsync its dirty files once and advance its
//! durable offset (which wakes `acks=all` producers and, in durable mode, publishes the new
//! high watermark). When an fsync takes longer than the window, the writes that arrived
//! meanwhile are flushed right away by the next round.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::partition::PartitionInner;

#[derive(Default)]
struct Queue {
    pending: HashMap<u64, Arc<PartitionInner>>,
    first_at: Option<Instant>,
    shutdown: bool,
}

/// State shared between the flusher thread, the partitions and the log manager.
pub(crate) struct FlushShared {
    queue: Mutex<Queue>,
    wake: Condvar,
    window: Duration,
}

impl FlushShared {
    pub(crate) fn new(window: Duration) -> Self {
        FlushShared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            window,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a partition with dirty data. Returns false once the flusher has stopped, in
    /// which case the caller flushes by itself.
    pub(crate) fn request(&self, partition: &Arc<PartitionInner>) -> bool {
        let mut q = self.lock();
        if q.shutdown {
            return false;
        }
        let was_empty = q.pending.is_empty();
        q.pending
            .entry(partition.id())
            .or_insert_with(|| Arc::clone(partition));
        if was_empty {
            q.first_at = Some(Instant::now());
            self.wake.notify_one();
        }
        true
    }

    /// Asks the thread to flush what is pending and exit.
    pub(crate) fn shutdown(&self) {
        let mut q = self.lock();
        q.shutdown = true;
        self.wake.notify_all();
    }

    /// Takes the next group of partitions to flush, None when shut down and drained.
    fn next_group(&self) -> Option<Vec<Arc<PartitionInner>>> {
        let mut q = self.lock();
        while q.pending.is_empty() && !q.shutdown {
            q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
        if q.pending.is_empty() {
            return None;
        }
        if let Some(first) = q.first_at {
            let deadline = first + self.window;
            loop {
                let now = Instant::now();
                if now >= deadline || q.shutdown {
                    break;
                }
                q = self
                    .wake
                    .wait_timeout(q, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        q.first_at = None;
        Some(std::mem::take(&mut q.pending).into_values().collect())
    }
}

/// Starts the flusher thread.
pub(crate) fn spawn(shared: Arc<FlushShared>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("log-flusher".into())
        .spawn(move || run(&shared))
}

fn run(shared: &FlushShared) {
    tracing::debug!(
        window_us = shared.window.as_micros() as u64,
        "Log flusher started."
    );
    while let Some(group) = shared.next_group() {
        let started = Instant::now();
        for p in &group {
            if let Err(e) = p.flush_pending() {
                tracing::error!(
                    dir = %p.dir().display(),
                    error = %e,
                    "Group-commit fsync failed; the partition is now offline."
                );
            }
        }
        crate::metrics::flush_round();
        tracing::trace!(
            partitions = group.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "Group commit done."
        );
    }
    tracing::debug!("Log flusher stopped.");
}
