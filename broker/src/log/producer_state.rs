//! Idempotent-producer state of one partition (KIP-98, KIP-360).
//!
//! Per producer id the partition remembers the current epoch and the sequence ranges and
//! offsets of the last [`MAX_CACHED_BATCHES`] batches. That is enough to recognise a retried
//! batch (answered with its original offsets, stored once), to reject gaps
//! (`OUT_OF_ORDER_SEQUENCE_NUMBER`) and to fence old producer instances
//! (`INVALID_PRODUCER_EPOCH`). The state is rebuilt from the batch headers of the log on open,
//! or loaded from a snapshot written at clean shutdown.

use std::collections::{HashMap, VecDeque};

use gatehouse_protocol::records::BatchHeader;
use serde::{Deserialize, Serialize};

use super::error::LogError;

/// How many recent batches per producer are kept for duplicate detection (Kafka's 5, the
/// maximum `max.in.flight.requests.per.connection` with idempotence).
pub(crate) const MAX_CACHED_BATCHES: usize = 5;

/// Sequence range and offsets of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchMeta {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
}

/// What the partition knows about one producer id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<BatchMeta>,
    /// Timestamp of the last append (ms), for expiring idle producers.
    pub(crate) last_timestamp: i64,
    /// Last offset written by this producer (for dropping state below the log start).
    pub(crate) last_offset: i64,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_timestamp: -1,
            last_offset: -1,
        }
    }

    /// Records a batch: a new epoch forgets the previous epoch's batches.
    fn apply(&mut self, epoch: i16, meta: Option<BatchMeta>, timestamp: i64, last_offset: i64) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        if let Some(m) = meta {
            self.batches.push_back(m);
            while self.batches.len() > MAX_CACHED_BATCHES {
                self.batches.pop_front();
            }
        }
        self.last_timestamp = self.last_timestamp.max(timestamp);
        self.last_offset = self.last_offset.max(last_offset);
    }
}

/// The sequence number following `seq`, wrapping at `i32::MAX` as Kafka does.
pub(crate) fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

/// Outcome of validating a batch against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// A new batch in order.
    Append,
    /// A retry of a batch already stored at these offsets.
    Duplicate(BatchMeta),
}

/// Producer ids → state, for one partition.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// Some producer's state was dropped (expiry or log start advance), so an unknown
    /// producer id may be one we forgot.
    state_dropped: bool,
}

/// Changes of one append request, applied to the manager only once the data is written.
#[derive(Debug, Default)]
pub(crate) struct PendingProducerUpdates {
    entries: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    /// The (epoch, last sequence) of a producer, if known.
    pub(crate) fn get(&self, producer_id: i64) -> Option<(i16, i32)> {
        self.producers
            .get(&producer_id)
            .map(|e| (e.epoch, e.batches.back().map_or(-1, |b| b.last_seq)))
    }

    /// Validates the batch `h` (already assigned `base_offset`) of an idempotent producer
    /// against the state plus the earlier batches of the same request in `pending`, and on
    /// success records it in `pending`.
    pub(crate) fn check_and_stage(
        &self,
        pending: &mut PendingProducerUpdates,
        h: &BatchHeader,
        base_offset: i64,
        log_start_offset: i64,
        now_ms: i64,
    ) -> Result<SequenceCheck, LogError> {
        let pid = h.producer_id;
        let current = pending
            .entries
            .get(&pid)
            .or_else(|| self.producers.get(&pid));
        let epoch = h.producer_epoch;
        let first_seq = h.base_sequence;
        let last_seq = h.last_sequence();
        let last_offset = base_offset + i64::from(h.last_offset_delta);
        let has_seq = first_seq >= 0;
        match current {
            Some(e) if epoch < e.epoch => {
                return Err(LogError::InvalidProducerEpoch {
                    producer_id: pid,
                    epoch,
                    current: e.epoch,
                });
            }
            Some(e) if epoch > e.epoch => {
                if has_seq && first_seq != 0 {
                    return Err(LogError::OutOfOrderSequence {
                        producer_id: pid,
                        epoch,
                        expected: 0,
                        received: first_seq,
                    });
                }
            }
            Some(e) if has_seq => {
                if let Some(dup) = e
                    .batches
                    .iter()
                    .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
                {
                    return Ok(SequenceCheck::Duplicate(*dup));
                }
                if let Some(last) = e.batches.back() {
                    let expected = next_sequence(last.last_seq);
                    if first_seq != expected {
                        return Err(LogError::OutOfOrderSequence {
                            producer_id: pid,
                            epoch,
                            expected,
                            received: first_seq,
                        });
                    }
                }
            }
            Some(_) => {}
            None => {
                // An unknown producer must start at 0, unless its state may have been removed
                // together with the segments below the log start offset.
                if has_seq && first_seq != 0 && log_start_offset == 0 && !self.state_dropped {
                    return Err(LogError::OutOfOrderSequence {
                        producer_id: pid,
                        epoch,
                        expected: 0,
                        received: first_seq,
                    });
                }
            }
        }
        let mut entry = current
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(epoch));
        let meta = has_seq.then_some(BatchMeta {
            first_seq,
            last_seq,
            base_offset,
            last_offset,
        });
        entry.apply(epoch, meta, now_ms, last_offset);
        pending.entries.insert(pid, entry);
        Ok(SequenceCheck::Append)
    }

    /// Applies the staged updates of a request whose data is now written.
    pub(crate) fn commit(&mut self, pending: PendingProducerUpdates) {
        self.producers.extend(pending.entries);
    }

    /// Replays a stored batch header (recovery). The producer counts as active at `now` (when
    /// it really wrote is unknown; batch timestamps are the client's).
    pub(crate) fn replay(&mut self, h: &BatchHeader, now: i64) {
        if !h.has_producer_id() || h.is_control() {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        if h.producer_epoch < entry.epoch {
            return;
        }
        let meta = (h.base_sequence >= 0).then_some(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        entry.apply(h.producer_epoch, meta, now, h.last_offset());
    }

    /// Forgets producers whose last write is below the new log start offset.
    pub(crate) fn truncate_head(&mut self, log_start_offset: i64) {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.last_offset >= log_start_offset);
        self.state_dropped |= self.producers.len() != before;
    }

    /// Forgets producers idle since before `cutoff_ms`.
    pub(crate) fn expire(&mut self, cutoff_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| e.last_timestamp >= cutoff_ms);
        let removed = before - self.producers.len();
        self.state_dropped |= removed > 0;
        removed
    }

    /// (producer id, last offset) of every producer's latest batch.
    pub(crate) fn last_offsets(&self) -> std::collections::HashSet<(i64, i64)> {
        self.producers
            .iter()
            .map(|(&id, e)| (id, e.last_offset))
            .collect()
    }

    pub(crate) fn clear(&mut self) {
        self.producers.clear();
    }

    /// Serialises the state for a clean-shutdown snapshot.
    pub(crate) fn to_snapshot(&self, offset: i64) -> Result<Vec<u8>, LogError> {
        let snap = Snapshot {
            offset,
            producers: self
                .producers
                .iter()
                .map(|(&id, e)| (id, e.clone()))
                .collect(),
        };
        serde_json::to_vec(&snap)
            .map_err(|e| LogError::Corrupt(format!("cannot encode producer state snapshot: {e}")))
    }

    /// Loads a snapshot; returns the offset it covers, or None if it cannot be parsed.
    pub(crate) fn from_snapshot(bytes: &[u8]) -> Option<(i64, Self)> {
        let snap: Snapshot = serde_json::from_slice(bytes).ok()?;
        Some((
            snap.offset,
            ProducerStateManager {
                producers: snap.producers.into_iter().collect(),
                state_dropped: false,
            },
        ))
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    offset: i64,
    producers: Vec<(i64, ProducerEntry)>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    fn stage(
        m: &mut ProducerStateManager,
        h: &BatchHeader,
        offset: i64,
    ) -> Result<SequenceCheck, LogError> {
        let mut p = PendingProducerUpdates::default();
        let r = m.check_and_stage(&mut p, h, offset, 0, 0)?;
        m.commit(p);
        Ok(r)
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut m = ProducerStateManager::default();
        assert!(matches!(
            stage(&mut m, &header(7, 0, 3, 1), 0),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            stage(&mut m, &header(7, 0, 0, 2), 0).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            stage(&mut m, &header(7, 0, 2, 3), 2).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(m.get(7), Some((0, 4)));
        match stage(&mut m, &header(7, 0, 0, 2), 9).unwrap() {
            SequenceCheck::Duplicate(b) => assert_eq!((b.base_offset, b.last_offset), (0, 1)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            stage(&mut m, &header(7, 0, 6, 1), 5),
            Err(LogError::OutOfOrderSequence { expected: 5, .. })
        ));
        assert!(matches!(
            stage(&mut m, &header(7, 1, 5, 1), 5),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            stage(&mut m, &header(7, 1, 0, 1), 5).unwrap(),
            SequenceCheck::Append
        );
        assert!(matches!(
            stage(&mut m, &header(7, 0, 5, 1), 6),
            Err(LogError::InvalidProducerEpoch { current: 1, .. })
        ));
        assert_eq!(m.get(7), Some((1, 0)));
    }

    #[test]
    fn forgotten_producers_may_resume_mid_sequence() {
        let mut m = ProducerStateManager::default();
        stage(&mut m, &header(1, 0, 0, 1), 0).unwrap();
        stage(&mut m, &header(2, 0, 0, 1), 1).unwrap();
        assert!(stage(&mut m, &header(3, 0, 9, 1), 2).is_err());
        // Producer 1 idle since before the cutoff; producer 2 active.
        m.producers.get_mut(&1).unwrap().last_timestamp = -10;
        m.producers.get_mut(&2).unwrap().last_timestamp = 100;
        assert_eq!(m.expire(0), 1);
        assert_eq!(m.get(1), None);
        assert_eq!(
            stage(&mut m, &header(1, 0, 57, 1), 2).unwrap(),
            SequenceCheck::Append
        );
        m.truncate_head(2);
        assert_eq!(m.get(2), None);
        assert_eq!(m.get(1), Some((0, 57)));
    }

    #[test]
    fn wraps_and_keeps_five() {
        let mut m = ProducerStateManager::default();
        let mut p = PendingProducerUpdates::default();
        m.check_and_stage(&mut p, &header(1, 0, i32::MAX - 1, 2), 0, 5, 0)
            .unwrap();
        m.commit(p);
        assert_eq!(m.get(1), Some((0, i32::MAX)));
        assert_eq!(
            stage(&mut m, &header(1, 0, 0, 1), 2).unwrap(),
            SequenceCheck::Append
        );
        for i in 1..10 {
            stage(&mut m, &header(1, 0, i, 1), 2 + i64::from(i)).unwrap();
        }
        assert_eq!(m.producers[&1].batches.len(), MAX_CACHED_BATCHES);
        let snap = m.to_snapshot(12).unwrap();
        let (off, back) = ProducerStateManager::from_snapshot(&snap).unwrap();
        assert_eq!(off, 12);
        assert_eq!(back.producers, m.producers);
    }
}
