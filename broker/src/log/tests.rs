//! Tests of the partition log as a whole: append/read, rolling, recovery, durability,
//! idempotent producers, retention, DeleteRecords, compaction and timestamp lookups.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::records::{BatchBuilder, RawBatch, RawBatches, TimestampType};

use super::test_util::{batch, manager, open, producer_batch, simple_batch};
use super::*;

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Partition>();
    check::<LogManager>();
}

trait PushAll {
    fn push_all(self, recs: &[(&[u8], &[u8])], ts: i64) -> Bytes;
}

impl PushAll for BatchBuilder {
    fn push_all(mut self, recs: &[(&[u8], &[u8])], ts: i64) -> Bytes {
        for (k, v) in recs {
            self.push(Some(k), Some(v), &[], ts).unwrap();
        }
        self.build().unwrap()
    }
}

fn now() -> i64 {
    now_ms()
}

/// (offset, key, value) of every record in a record set.
fn records_of(set: &Bytes) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
    let mut out = Vec::new();
    for b in RawBatches::new(set.clone()) {
        let b = b.expect("batch");
        b.verify_crc().expect("crc");
        for r in b.records().expect("records") {
            out.push((r.offset(b.header()), r.key.clone(), r.value.clone()));
        }
    }
    out
}

fn batch_bases(set: &Bytes) -> Vec<(i64, i64)> {
    RawBatches::new(set.clone())
        .map(|b| {
            let b = b.expect("batch");
            (b.header().base_offset, b.header().last_offset())
        })
        .collect()
}

fn read_all(p: &Partition) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
    let r = p
        .read(p.log_start_offset(), usize::MAX / 2, None)
        .expect("read");
    records_of(&r.records)
}

fn segment_files(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == suffix))
        .collect();
    v.sort();
    v
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

#[tokio::test]
async fn append_and_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, &dir.path().join("t-0"), LogConfig::default());
    let ts = now();
    let a = p.append(simple_batch(3, ts), 1).await.unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.duplicate), (0, 2, false));
    assert_eq!(a.log_append_time, -1);
    let b = p.append(simple_batch(2, ts), 1).await.unwrap();
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    assert_eq!(p.log_end_offset(), 5);
    assert_eq!(p.high_watermark(), 5);
    let r = p.read(0, 1 << 20, None).unwrap();
    assert_eq!(batch_bases(&r.records), vec![(0, 2), (3, 4)]);
    let recs = records_of(&r.records);
    assert_eq!(recs.len(), 5);
    assert_eq!(recs[3].0, 3);
    assert_eq!(recs[3].2.as_deref(), Some(&b"value-0"[..]));
    assert_eq!(r.high_watermark, 5);
    assert_eq!(r.log_start_offset, 0);
    // Stored byte for byte apart from the offset and leader epoch.
    let stored = RawBatch::new(
        RawBatches::new(r.records.clone())
            .nth(1)
            .unwrap()
            .unwrap()
            .into_bytes(),
    )
    .unwrap();
    assert_eq!(stored.header().partition_leader_epoch, LEADER_EPOCH);
    // Reading at the end gives nothing; past it is out of range.
    assert!(p.read(5, 100, None).unwrap().records.is_empty());
    let err = p.read(6, 100, None).unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::OffsetOutOfRange);
    assert!(p.size_bytes() > 0);
}

#[tokio::test]
async fn read_semantics_mid_batch_max_bytes_and_max_offset() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), LogConfig::default());
    let ts = now();
    let mut sizes = Vec::new();
    for _ in 0..4 {
        let b = simple_batch(5, ts);
        sizes.push(b.len());
        p.append(b, 1).await.unwrap();
    }
    // Mid-batch: the whole containing batch comes back.
    let r = p.read(7, 1, None).unwrap();
    assert_eq!(batch_bases(&r.records), vec![(5, 9)]);
    // max_bytes smaller than the first batch still returns it, and only it.
    let r = p.read(0, 10, None).unwrap();
    assert_eq!(batch_bases(&r.records), vec![(0, 4)]);
    // Exactly two batches fit.
    let r = p.read(0, sizes[0] + sizes[1], None).unwrap();
    assert_eq!(batch_bases(&r.records), vec![(0, 4), (5, 9)]);
    let r = p.read(0, sizes[0] + sizes[1] + 10, None).unwrap();
    assert_eq!(batch_bases(&r.records).len(), 2);
    // max_offset is exclusive: batches reaching it are left out.
    let r = p.read(0, 1 << 20, Some(10)).unwrap();
    assert_eq!(batch_bases(&r.records), vec![(0, 4), (5, 9)]);
    let r = p.read(0, 1 << 20, Some(12)).unwrap();
    assert_eq!(batch_bases(&r.records), vec![(0, 4), (5, 9)]);
    let r = p.read(10, 1 << 20, Some(10)).unwrap();
    assert!(r.records.is_empty());
    let r = p.read(12, 1 << 20, Some(12)).unwrap();
    assert!(r.records.is_empty());
}

#[tokio::test]
async fn invalid_requests_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(
        &m,
        dir.path(),
        LogConfig {
            max_message_bytes: 2000,
            ..LogConfig::default()
        },
    );
    let ts = now();
    let good = simple_batch(2, ts);

    // Bad CRC in the second batch: nothing stored.
    let mut bad = simple_batch(2, ts).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut req = good.to_vec();
    req.extend_from_slice(&bad);
    let e = p.append(Bytes::from(req), 1).await.unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::CorruptMessage);
    assert_eq!(p.log_end_offset(), 0);

    // Trailing partial batch.
    let mut req = good.to_vec();
    req.extend_from_slice(&good[..30]);
    let e = p.append(Bytes::from(req), 1).await.unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::CorruptMessage);

    // Too large.
    let big = vec![7u8; 3000];
    let e = p
        .append(batch(&[(Some(b"k"), Some(&big), ts)]), 1)
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::MessageTooLarge);

    // Wrong magic.
    let mut v1 = good.to_vec();
    v1[16] = 1;
    let e = p.append(Bytes::from(v1), 1).await.unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::UnsupportedForMessageFormat);

    // No records.
    let empty = BatchBuilder::new().build().unwrap();
    let e = p.append(empty, 1).await.unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::InvalidRecord);

    // Empty request.
    assert!(p.append(Bytes::new(), 1).await.is_err());

    assert_eq!(p.log_end_offset(), 0);
    assert_eq!(p.size_bytes(), 0);
    p.append(good, 1).await.unwrap();
    assert_eq!(p.log_end_offset(), 2);
}

#[tokio::test]
async fn keyless_records_rejected_on_compacted_topics() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    };
    let p = open(&m, dir.path(), cfg);
    let e = p
        .append(
            batch(&[(Some(b"k"), Some(b"v"), 1), (None, Some(b"v"), 1)]),
            1,
        )
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::InvalidRecord);
    p.append(batch(&[(Some(b"k"), None, 1)]), 1).await.unwrap();
}

#[tokio::test]
async fn log_append_time_is_stamped_with_a_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(
        &m,
        dir.path(),
        LogConfig {
            message_timestamp_type_log_append: true,
            ..LogConfig::default()
        },
    );
    let before = now();
    let a = p.append(simple_batch(2, 5), 1).await.unwrap();
    assert!(a.log_append_time >= before);
    let r = p.read(0, 1 << 20, None).unwrap();
    let b = RawBatches::new(r.records).next().unwrap().unwrap();
    b.verify_crc().unwrap();
    assert_eq!(b.header().timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(b.header().max_timestamp, a.log_append_time);
}

#[tokio::test]
async fn rolls_segments_by_size_and_reads_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), small_config());
    let ts = now();
    let mut n = 0;
    for _ in 0..40 {
        let a = p.append(simple_batch(4, ts), 1).await.unwrap();
        assert_eq!(a.base_offset, n);
        n += 4;
    }
    let logs = segment_files(dir.path(), "log");
    assert!(logs.len() > 3, "{logs:?}");
    for l in &logs {
        assert!(std::fs::metadata(l).unwrap().len() <= 1024);
    }
    assert_eq!(segment_files(dir.path(), "index").len(), logs.len());
    assert_eq!(segment_files(dir.path(), "timeindex").len(), logs.len());
    assert!(
        logs[1]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(".log")
            && logs[0].file_name().unwrap().to_string_lossy() == "00000000000000000000.log"
    );
    let all = read_all(&p);
    assert_eq!(all.len(), 160);
    assert!(all.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    // Every offset reads back from its own batch.
    for off in [0, 3, 37, 77, 120, 159] {
        let r = p.read(off, 1, None).unwrap();
        let bases = batch_bases(&r.records);
        assert_eq!(bases.len(), 1);
        assert!(bases[0].0 <= off && off <= bases[0].1);
    }
    // The sparse index has entries.
    let st = p.inner.lock_state();
    assert!(st.segments.values().any(|s| s.index_entries() > 0));
}

#[tokio::test]
async fn roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(
        &m,
        dir.path(),
        LogConfig {
            segment_ms: 30,
            ..LogConfig::default()
        },
    );
    p.append(simple_batch(1, now()), 1).await.unwrap();
    std::thread::sleep(Duration::from_millis(40));
    p.maintain().unwrap();
    assert_eq!(segment_files(dir.path(), "log").len(), 2);
    // An append also rolls when due.
    p.append(simple_batch(1, now()), 1).await.unwrap();
    std::thread::sleep(Duration::from_millis(40));
    p.append(simple_batch(1, now()), 1).await.unwrap();
    assert_eq!(segment_files(dir.path(), "log").len(), 3);
    assert_eq!(read_all(&p).len(), 3);
}

/// Appends `batches` batches of 3 records to a fresh log with small segments and drops it
/// without closing (a crash). Returns the log end offset.
async fn fill_and_crash(dir: &Path, batches: usize) -> i64 {
    let m = manager(FlushMode::Os);
    let p = open(&m, dir, small_config());
    for _ in 0..batches {
        p.append(simple_batch(3, now()), 1).await.unwrap();
    }
    p.log_end_offset()
}

#[tokio::test]
async fn recovery_truncates_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill_and_crash(dir.path(), 60).await;
    assert_eq!(end, 180);
    let logs = segment_files(dir.path(), "log");
    let last = logs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    // Cut the last batch in half.
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), small_config());
    assert_eq!(p.log_end_offset(), 177);
    let all = read_all(&p);
    assert_eq!(all.len(), 177);
    assert!(all.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    // Appends continue right after the surviving data.
    let a = p.append(simple_batch(1, now()), 1).await.unwrap();
    assert_eq!(a.base_offset, 177);
}

#[tokio::test]
async fn recovery_truncates_a_corrupt_tail_and_rebuilds_indexes() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_crash(dir.path(), 60).await;
    let logs = segment_files(dir.path(), "log");
    let last = logs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    // Flip a byte inside the last batch's records.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(last)
        .unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, len - 5).unwrap();
    byte[0] ^= 0x55;
    f.write_all_at(&byte, len - 5).unwrap();
    drop(f);
    // Also damage an index: garbage positions must not be trusted.
    let idx = segment_files(dir.path(), "index");
    std::fs::write(idx.last().unwrap(), [0xffu8; 13]).unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), small_config());
    assert_eq!(p.log_end_offset(), 177);
    assert_eq!(read_all(&p).len(), 177);
    for off in [0, 50, 100, 150, 176] {
        let r = p.read(off, 1, None).unwrap();
        let bases = batch_bases(&r.records);
        assert!(bases[0].0 <= off && off <= bases[0].1);
    }
    let len = std::fs::metadata(idx.last().unwrap()).unwrap().len();
    assert_eq!(len % 8, 0);
}

#[tokio::test]
async fn corruption_in_a_middle_segment_drops_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_crash(dir.path(), 60).await;
    let logs = segment_files(dir.path(), "log");
    assert!(logs.len() >= 3);
    let victim = &logs[1];
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(victim)
        .unwrap();
    f.write_all_at(&[0xde, 0xad], 200).unwrap();
    drop(f);
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), small_config());
    let all = read_all(&p);
    assert!(!all.is_empty());
    assert!(all.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    assert_eq!(p.log_end_offset(), all.len() as i64);
    assert_eq!(segment_files(dir.path(), "log").len(), 2);
}

#[tokio::test]
async fn clean_shutdown_and_missing_indexes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let m = manager(FlushMode::Durable);
        let p = open(&m, dir.path(), small_config());
        for _ in 0..50 {
            p.append(simple_batch(3, now()), -1).await.unwrap();
        }
        m.shutdown().unwrap();
        assert!(p.is_closed());
        assert!(p.append(simple_batch(1, 1), 1).await.is_err());
    }
    assert!(dir.path().join(".clean_shutdown").exists());
    // Clean reopen.
    {
        let m = manager(FlushMode::Durable);
        let p = open(&m, dir.path(), small_config());
        assert!(!dir.path().join(".clean_shutdown").exists());
        assert_eq!(p.log_end_offset(), 150);
        assert_eq!(p.high_watermark(), 150);
        assert_eq!(read_all(&p).len(), 150);
        m.shutdown().unwrap();
    }
    // Delete every index file: a clean reopen must rebuild them.
    for f in segment_files(dir.path(), "index")
        .into_iter()
        .chain(segment_files(dir.path(), "timeindex"))
    {
        std::fs::remove_file(f).unwrap();
    }
    let m = manager(FlushMode::Durable);
    let p = open(&m, dir.path(), small_config());
    assert_eq!(p.log_end_offset(), 150);
    for off in [0, 31, 64, 99, 149] {
        let r = p.read(off, 1, None).unwrap();
        let bases = batch_bases(&r.records);
        assert!(bases[0].0 <= off && off <= bases[0].1, "{off} {bases:?}");
    }
    let st = p.inner.lock_state();
    assert!(
        st.segments
            .values()
            .all(|s| s.size == 0 || s.max_timestamp > 0)
    );
    assert!(st.segments.values().any(|s| s.index_entries() > 0));
    drop(st);
    assert_eq!(
        segment_files(dir.path(), "index").len(),
        segment_files(dir.path(), "log").len()
    );
    // Same after a crash (no marker).
    drop(p);
    drop(m);
    for f in segment_files(dir.path(), "index") {
        std::fs::remove_file(f).unwrap();
    }
    let m = manager(FlushMode::Durable);
    let p = open(&m, dir.path(), small_config());
    assert_eq!(read_all(&p).len(), 150);
}

#[tokio::test]
async fn durable_mode_acks_all_waits_for_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::new(LogManagerConfig {
        flush_mode: FlushMode::Durable,
        flush_window: Duration::from_millis(300),
    });
    let p = open(&m, dir.path(), LogConfig::default());
    let mut hw_rx = p.subscribe();
    assert_eq!(*hw_rx.borrow(), 0);

    // acks=1: returns at once; the high watermark waits for the flusher.
    let started = std::time::Instant::now();
    let a = p.append(simple_batch(2, now()), 1).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(250));
    assert_eq!(a.last_offset, 1);
    assert_eq!(p.log_end_offset(), 2);
    assert_eq!(p.high_watermark(), 0);
    // Consumers bounded by the high watermark see nothing yet.
    let hw = p.high_watermark();
    assert!(p.read(0, 1 << 20, Some(hw)).unwrap().records.is_empty());

    // acks=-1: resolves only once the durable offset covers it.
    let p2 = p.clone();
    let t = tokio::spawn(async move { p2.append(simple_batch(3, now()), -1).await });
    let a2 = t.await.unwrap().unwrap();
    assert_eq!((a2.base_offset, a2.last_offset), (2, 4));
    assert!(p.high_watermark() >= 5);
    hw_rx.changed().await.unwrap();
    assert_eq!(*hw_rx.borrow_and_update(), 5);

    // A window of 300 ms groups concurrent appends into one fsync round.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.append(simple_batch(1, now()), -1).await
        }));
    }
    for t in tasks {
        let info = t.await.unwrap().unwrap();
        assert!(p.high_watermark() > info.last_offset);
    }
    assert_eq!(p.high_watermark(), 15);
    assert_eq!(
        p.read(0, 1 << 20, Some(p.high_watermark()))
            .unwrap()
            .records
            .len(),
        p.read(0, 1 << 20, None).unwrap().records.len()
    );
}

#[tokio::test]
async fn durable_mode_flush_and_short_window() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Durable);
    let p = open(&m, dir.path(), small_config());
    for _ in 0..30 {
        // Acks=0 writes are flushed by the flusher within the window too.
        p.append(simple_batch(5, now()), 0).await.unwrap();
    }
    let mut rx = p.subscribe();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|hw| *hw == 150))
        .await
        .unwrap()
        .unwrap();
    p.append(simple_batch(5, now()), 1).await.unwrap();
    p.flush().unwrap();
    assert_eq!(p.high_watermark(), 155);
}

#[tokio::test]
async fn os_mode_high_watermark_is_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), LogConfig::default());
    let mut rx = p.subscribe();
    p.append(simple_batch(2, now()), -1).await.unwrap();
    assert_eq!(p.high_watermark(), 2);
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 2);
}

#[tokio::test]
async fn idempotent_producer_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), LogConfig::default());
    let ts = now();
    let recs = [
        (Some(&b"k"[..]), Some(&b"v"[..]), ts),
        (Some(b"k"), Some(b"w"), ts),
    ];
    let pid = 1000;
    p.append(simple_batch(1, ts), 1).await.unwrap(); // non-idempotent noise at offset 0
    let a = p.append(producer_batch(&recs, pid, 0, 0), 1).await.unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.duplicate), (1, 2, false));
    let b = p.append(producer_batch(&recs, pid, 0, 2), 1).await.unwrap();
    assert_eq!(b.base_offset, 3);
    // Retry of the first batch: original offsets, nothing stored.
    let d = p
        .append(producer_batch(&recs, pid, 0, 0), -1)
        .await
        .unwrap();
    assert_eq!((d.base_offset, d.last_offset, d.duplicate), (1, 2, true));
    assert_eq!(p.log_end_offset(), 5);
    // Gap.
    let e = p
        .append(producer_batch(&recs, pid, 0, 7), 1)
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::OutOfOrderSequenceNumber);
    // Unknown producer starting mid-sequence on a log that starts at 0.
    let e = p
        .append(producer_batch(&recs, 2000, 0, 5), 1)
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::OutOfOrderSequenceNumber);
    // Epoch bump must restart at 0.
    let e = p
        .append(producer_batch(&recs, pid, 1, 4), 1)
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::OutOfOrderSequenceNumber);
    p.append(producer_batch(&recs, pid, 1, 0), 1).await.unwrap();
    // The old epoch is fenced.
    let e = p
        .append(producer_batch(&recs, pid, 0, 4), 1)
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::InvalidProducerEpoch);
    assert_eq!(p.producer_state(pid), Some((1, 1)));
    assert_eq!(p.producer_state(99), None);
    // Two batches of one producer in one request are checked in order.
    let mut req = producer_batch(&recs, 3000, 0, 0).to_vec();
    req.extend_from_slice(&producer_batch(&recs, 3000, 0, 2));
    let a = p.append(Bytes::from(req), 1).await.unwrap();
    assert_eq!(a.last_offset - a.base_offset, 3);
    assert_eq!(p.producer_state(3000), Some((0, 3)));
    let end = p.log_end_offset();
    drop(p);
    drop(m);

    // State rebuilt from the log after a crash.
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), LogConfig::default());
    assert_eq!(p.log_end_offset(), end);
    assert_eq!(p.producer_state(pid), Some((1, 1)));
    assert_eq!(p.producer_state(3000), Some((0, 3)));
    let d = p.append(producer_batch(&recs, pid, 1, 0), 1).await.unwrap();
    assert!(d.duplicate);
    let e = p
        .append(producer_batch(&recs, pid, 0, 4), 1)
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::InvalidProducerEpoch);
    p.append(producer_batch(&recs, pid, 1, 2), 1).await.unwrap();
    m.shutdown().unwrap();

    // And from the snapshot after a clean shutdown.
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), LogConfig::default());
    assert_eq!(p.producer_state(pid), Some((1, 3)));
    assert!(
        p.append(producer_batch(&recs, pid, 1, 2), 1)
            .await
            .unwrap()
            .duplicate
    );
    p.append(producer_batch(&recs, pid, 1, 4), 1).await.unwrap();
}

#[tokio::test]
async fn unknown_producer_accepted_mid_sequence_once_log_start_moved() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), small_config());
    for _ in 0..40 {
        p.append(simple_batch(3, now()), 1).await.unwrap();
    }
    p.delete_records(60).unwrap();
    let recs = [(Some(&b"k"[..]), Some(&b"v"[..]), now())];
    p.append(producer_batch(&recs, 77, 3, 42), 1).await.unwrap();
    assert_eq!(p.producer_state(77), Some((3, 42)));
}

#[tokio::test]
async fn retention_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let cfg = LogConfig {
        retention_bytes: 4096,
        ..small_config()
    };
    let p = open(&m, dir.path(), cfg);
    for _ in 0..100 {
        p.append(simple_batch(3, now()), 1).await.unwrap();
    }
    let before = segment_files(dir.path(), "log").len();
    let deleted = p.apply_retention().unwrap();
    assert!(deleted > 0);
    assert_eq!(segment_files(dir.path(), "log").len(), before - deleted);
    // Kafka semantics: a segment goes only if the log stays at least retention.bytes large.
    assert!(p.size_bytes() >= 4096, "{}", p.size_bytes());
    assert!(p.size_bytes() < 4096 + 1024, "{}", p.size_bytes());
    let start = p.log_start_offset();
    assert!(start > 0);
    let first_base = segment_files(dir.path(), "log")[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .parse::<i64>()
        .unwrap();
    assert_eq!(start, first_base);
    assert_eq!(
        p.read(0, 100, None).unwrap_err().error_code(),
        ErrorCode::OffsetOutOfRange
    );
    assert_eq!(read_all(&p)[0].0, start);
    assert_eq!(p.apply_retention().unwrap(), 0);
    // Reopen keeps the log start.
    drop(p);
    let p2 = open(&manager(FlushMode::Os), dir.path(), small_config());
    assert_eq!(p2.log_start_offset(), start);
}

#[tokio::test]
async fn retention_by_time_including_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Durable);
    let cfg = LogConfig {
        retention_ms: 60_000,
        ..small_config()
    };
    let p = open(&m, dir.path(), cfg);
    let old = now() - 3_600_000;
    for _ in 0..30 {
        p.append(simple_batch(3, old), -1).await.unwrap();
    }
    let old_segments = segment_files(dir.path(), "log").len();
    for _ in 0..3 {
        p.append(simple_batch(3, now()), -1).await.unwrap();
    }
    // Recent records keep their segment (and so the active one).
    let deleted = p.apply_retention().unwrap();
    assert!(deleted >= old_segments - 1 && deleted > 0);
    assert!(read_all(&p).iter().any(|r| r.0 == 90));

    // Everything old, active segment included: rolled, then deleted.
    let dir2 = tempfile::tempdir().unwrap();
    let p = open(
        &m,
        dir2.path(),
        LogConfig {
            retention_ms: 60_000,
            ..LogConfig::default()
        },
    );
    for _ in 0..3 {
        p.append(simple_batch(3, old), -1).await.unwrap();
    }
    assert_eq!(p.apply_retention().unwrap(), 1);
    assert_eq!(p.log_start_offset(), 9);
    assert_eq!(p.log_end_offset(), 9);
    assert!(p.read(9, 100, None).unwrap().records.is_empty());
    let a = p.append(simple_batch(1, now()), -1).await.unwrap();
    assert_eq!(a.base_offset, 9);
    let logs = segment_files(dir2.path(), "log");
    assert_eq!(logs.len(), 1);
    assert!(logs[0].ends_with("00000000000000000009.log"));
}

#[tokio::test]
async fn delete_records_advances_and_persists_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), small_config());
    for _ in 0..60 {
        p.append(simple_batch(3, now()), 1).await.unwrap();
    }
    let segs = segment_files(dir.path(), "log").len();
    assert_eq!(p.delete_records(100).unwrap(), 100);
    assert_eq!(p.log_start_offset(), 100);
    assert!(segment_files(dir.path(), "log").len() < segs);
    // Lower values do nothing; beyond the high watermark is out of range.
    assert_eq!(p.delete_records(50).unwrap(), 100);
    assert_eq!(
        p.delete_records(1000).unwrap_err().error_code(),
        ErrorCode::OffsetOutOfRange
    );
    assert_eq!(
        p.read(99, 10, None).unwrap_err().error_code(),
        ErrorCode::OffsetOutOfRange
    );
    // Reading at the log start gives the batch containing it.
    let r = p.read(100, 1, None).unwrap();
    assert_eq!(r.log_start_offset, 100);
    let bases = batch_bases(&r.records);
    assert!(bases[0].0 <= 100 && 100 <= bases[0].1);
    drop(p);
    drop(m);
    // Survives a crash-reopen via the checkpoint.
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), small_config());
    assert_eq!(p.log_start_offset(), 100);
    // -1 means the high watermark.
    assert_eq!(p.delete_records(-1).unwrap(), 180);
    assert_eq!(p.log_start_offset(), 180);
    assert!(p.read(180, 10, None).unwrap().records.is_empty());
    drop(p);
    let p = open(&manager(FlushMode::Os), dir.path(), small_config());
    assert_eq!((p.log_start_offset(), p.log_end_offset()), (180, 180));
    assert_eq!(
        p.append(simple_batch(1, now()), 1)
            .await
            .unwrap()
            .base_offset,
        180
    );
}

#[tokio::test]
async fn offset_for_timestamp_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), small_config());
    assert_eq!(p.offset_for_timestamp(0), None);
    assert_eq!(p.max_timestamp(), None);
    // Batch i holds records with timestamps 1000 + 10*i + j for j in 0..3.
    for i in 0..60i64 {
        let recs: Vec<_> = (0..3)
            .map(|j| (Some(&b"key"[..]), Some(&b"value"[..]), 1000 + 10 * i + j))
            .collect();
        p.append(batch(&recs), 1).await.unwrap();
    }
    assert_eq!(p.offset_for_timestamp(0), Some((0, 1000)));
    assert_eq!(p.offset_for_timestamp(1000), Some((0, 1000)));
    assert_eq!(p.offset_for_timestamp(1001), Some((1, 1001)));
    assert_eq!(p.offset_for_timestamp(1003), Some((3, 1010)));
    assert_eq!(p.offset_for_timestamp(1302), Some((92, 1302)));
    assert_eq!(p.offset_for_timestamp(1592), Some((179, 1592)));
    assert_eq!(p.offset_for_timestamp(1593), None);
    assert_eq!(p.max_timestamp(), Some((179, 1592)));
    // After a clean reopen, the time index gives the same answers.
    m.shutdown().unwrap();
    let p = open(&manager(FlushMode::Os), dir.path(), small_config());
    assert_eq!(p.offset_for_timestamp(1302), Some((92, 1302)));
    assert_eq!(p.max_timestamp(), Some((179, 1592)));
}

#[tokio::test]
async fn compaction_keeps_the_latest_value_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: 2048,
        index_interval_bytes: 128,
        delete_retention_ms: 60_000,
        ..LogConfig::default()
    };
    let p = open(&m, dir.path(), cfg);
    let ts = now();
    let old = ts - 3_600_000;
    let mut expected = std::collections::BTreeMap::new();
    let mut offset = 0i64;
    for round in 0..30 {
        let mut recs = Vec::new();
        let vals: Vec<(String, String)> = (0..4)
            .map(|k| (format!("key-{}", (round + k) % 7), format!("v{round}-{k}")))
            .collect();
        for (k, v) in &vals {
            recs.push((Some(k.as_bytes()), Some(v.as_bytes()), ts));
            expected.insert(k.clone(), (offset, v.clone()));
            offset += 1;
        }
        p.append(batch(&recs), 1).await.unwrap();
    }
    // A tombstone old enough to be dropped and a recent one that stays.
    p.append(batch(&[(Some(b"gone"), Some(b"x"), ts)]), 1)
        .await
        .unwrap();
    p.append(batch(&[(Some(b"gone"), None, old)]), 1)
        .await
        .unwrap();
    p.append(batch(&[(Some(b"deleted-recently"), Some(b"x"), ts)]), 1)
        .await
        .unwrap();
    p.append(batch(&[(Some(b"deleted-recently"), None, ts)]), 1)
        .await
        .unwrap();
    let offset = p.log_end_offset();
    // A compressed batch: its survivors keep the codec.
    p.append(
        BatchBuilder::new()
            .compression(gatehouse_protocol::records::Compression::Gzip)
            .push_all(&[(b"zip-a", b"1"), (b"zip-b", b"1"), (b"zip-a", b"2")], ts),
        1,
    )
    .await
    .unwrap();
    expected.insert("zip-a".into(), (offset + 2, "2".into()));
    expected.insert("zip-b".into(), (offset + 1, "1".into()));
    // Enough filler to push everything above into closed segments.
    for i in 0..30 {
        let k = format!("filler-{i}");
        p.append(batch(&[(Some(k.as_bytes()), Some(&[0u8; 100]), ts)]), 1)
            .await
            .unwrap();
    }
    let end = p.log_end_offset();
    let before = read_all(&p);
    let size_before = p.size_bytes();
    assert!(p.compaction_due(&p.config()));
    let stats = p.compact().unwrap();
    assert!(stats.segments_cleaned > 0, "{stats:?}");
    assert!(stats.records_removed >= 120 - 7);
    assert!(p.size_bytes() < size_before);
    assert_eq!(p.log_end_offset(), end);
    let after = read_all(&p);
    // Offsets strictly increase and are a subset of the originals.
    assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
    let originals: std::collections::HashSet<i64> = before.iter().map(|r| r.0).collect();
    assert!(after.iter().all(|r| originals.contains(&r.0)));
    // The latest value of every key survives, at its original offset, and nothing older.
    for (k, (off, v)) in &expected {
        let found: Vec<_> = after
            .iter()
            .filter(|r| r.1.as_deref() == Some(k.as_bytes()))
            .collect();
        assert_eq!(found.len(), 1, "{k}");
        assert_eq!(found[0].0, *off);
        assert_eq!(found[0].2.as_deref(), Some(v.as_bytes()));
    }
    assert!(!after.iter().any(|r| r.1.as_deref() == Some(&b"gone"[..])));
    let recent: Vec<_> = after
        .iter()
        .filter(|r| r.1.as_deref() == Some(&b"deleted-recently"[..]))
        .collect();
    assert_eq!(recent.len(), 1);
    assert!(recent[0].2.is_none());
    let r = p.read(offset, 1, None).unwrap();
    let zipped = RawBatches::new(r.records).next().unwrap().unwrap();
    assert_eq!(
        zipped.header().compression().unwrap(),
        gatehouse_protocol::records::Compression::Gzip
    );
    // Reads from a removed offset land on the next surviving batch.
    let r = p.read(1, 1, None).unwrap();
    assert!(batch_bases(&r.records)[0].1 >= 1);
    // Idempotent: a second pass removes nothing, and the background check sees nothing
    // new to clean.
    assert_eq!(p.compact().unwrap().records_removed, 0);
    assert!(!p.compaction_due(&p.config()));
    // Survives an unclean reopen (indexes rebuilt from the cleaned files).
    drop(p);
    drop(m);
    let m = manager(FlushMode::Os);
    let p = open(
        &m,
        dir.path(),
        LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..LogConfig::default()
        },
    );
    assert_eq!(read_all(&p), after);
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".cleaned")
    }));
}

#[tokio::test]
async fn compaction_keeps_the_latest_batch_of_each_producer() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: 1024,
        ..LogConfig::default()
    };
    let p = open(&m, dir.path(), cfg.clone());
    let ts = now();
    p.append(producer_batch(&[(Some(b"a"), Some(b"1"), ts)], 5, 0, 0), 1)
        .await
        .unwrap();
    for i in 0..40 {
        let v = format!("{i}");
        p.append(batch(&[(Some(b"a"), Some(v.as_bytes()), ts)]), 1)
            .await
            .unwrap();
    }
    p.compact().unwrap();
    // The producer's batch (offset 0) is superseded but kept for its sequence numbers.
    assert_eq!(read_all(&p)[0].0, 0);
    drop(p);
    drop(m);
    let p = open(&manager(FlushMode::Os), dir.path(), cfg);
    assert_eq!(p.producer_state(5), Some((0, 0)));
}

#[tokio::test]
async fn background_task_applies_retention() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(
        &m,
        dir.path(),
        LogConfig {
            retention_ms: 1000,
            ..small_config()
        },
    );
    for _ in 0..40 {
        p.append(simple_batch(3, now() - 10_000), 1).await.unwrap();
    }
    let p2 = p.clone();
    m.start_background(move || vec![p2.clone()], Duration::from_millis(20));
    let mut rx = p.subscribe();
    let _ = &mut rx;
    for _ in 0..200 {
        if p.log_start_offset() == 120 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(p.log_start_offset(), 120);
    m.shutdown().unwrap();
}

#[tokio::test]
async fn delete_removes_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-3");
    let m = manager(FlushMode::Durable);
    let p = open(&m, &dir, LogConfig::default());
    p.append(simple_batch(2, now()), -1).await.unwrap();
    let other = p.clone();
    p.delete().unwrap();
    assert!(!dir.exists());
    assert!(other.append(simple_batch(1, now()), -1).await.is_err());
    assert!(other.read(0, 10, None).is_err());
}

#[tokio::test]
async fn reopening_an_open_directory_returns_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(FlushMode::Os);
    let p = open(&m, dir.path(), LogConfig::default());
    p.append(simple_batch(2, now()), 1).await.unwrap();
    let q = open(
        &m,
        dir.path(),
        LogConfig {
            retention_ms: 5,
            ..LogConfig::default()
        },
    );
    assert_eq!(q.log_end_offset(), 2);
    assert_eq!(p.config().retention_ms, 5);
}
