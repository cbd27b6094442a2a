//! Helpers for the log tests: building produce batches and opening partitions.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_protocol::records::BatchBuilder;

use super::{FlushMode, LogConfig, LogManager, LogManagerConfig, Partition};

/// One test record: key, value, timestamp.
pub(crate) type Rec<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i64);

/// An uncompressed produce batch (base offset 0, as a client sends it).
pub(crate) fn batch(records: &[Rec<'_>]) -> Bytes {
    producer_batch(records, -1, -1, -1)
}

/// A batch of an idempotent producer.
pub(crate) fn producer_batch(records: &[Rec<'_>], pid: i64, epoch: i16, seq: i32) -> Bytes {
    let mut b = BatchBuilder::new().producer(pid, epoch, seq);
    for (k, v, ts) in records {
        b.push(*k, *v, &[], *ts).expect("push");
    }
    b.build().expect("build")
}

/// `n` records with values `v0..`, keys `k0..` and timestamps `ts`.
pub(crate) fn simple_batch(n: usize, ts: i64) -> Bytes {
    let vals: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("k{i}").into_bytes(),
                format!("value-{i}").into_bytes(),
            )
        })
        .collect();
    let recs: Vec<Rec<'_>> = vals
        .iter()
        .map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice()), ts))
        .collect();
    batch(&recs)
}

pub(crate) fn manager(mode: FlushMode) -> LogManager {
    LogManager::new(LogManagerConfig {
        flush_mode: mode,
        flush_window: Duration::from_millis(2),
    })
}

pub(crate) fn open(m: &LogManager, dir: &Path, config: LogConfig) -> Partition {
    m.open_partition(dir, config).expect("open partition")
}
