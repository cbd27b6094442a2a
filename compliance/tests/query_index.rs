//! The sled query index (`audit::index`): indexed queries return exactly what the plain
//! verifying scan returns, on a generated trail of 20,000 events with many filters; a stale,
//! foreign or damaged index is rebuilt or bypassed; a tampered indexed event is not served.
//! An ignored test measures a selective query on 200,000 events.

// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use gatehouse_compliance::audit::index::{
    index_exists, index_path, query_indexed, query_indexed_stored, rebuild, update, update_verified,
};
use gatehouse_compliance::{
    AuditEvent, AuditLog, AuditLogConfig, EventType, MasterKey, QueryFilter, Timestamp, query,
};

const BASE_MICROS: i64 = 1_700_000_000_000_000;

fn event(i: u64) -> AuditEvent {
    let methods = [
        "kafka.Produce",
        "kafka.Fetch",
        "kafka.CreateTopics",
        "kafka.DeleteTopics",
        "kafka.CreateAcls",
    ];
    let types = ["Topic", "Group", "Cluster"];
    AuditEvent::builder(EventType::Acl)
        .service("gateway")
        .method(methods[(i % 5) as usize])
        .principal(format!("User:p{}", (i * 7) % 100))
        .resource(types[(i % 3) as usize], format!("r{}", i % 37))
        .operation("Write")
        .granted(!i.is_multiple_of(11))
        // Times mostly increase, with some out of order and some equal.
        .time(Timestamp::from_unix_micros(
            BASE_MICROS + (i as i64 / 2) * 1_000 - ((i % 7) as i64) * 3_000,
        ))
        .build()
        .unwrap()
}

fn config(name: &str) -> AuditLogConfig {
    let mut cfg = AuditLogConfig::new(name);
    cfg.segment_max_bytes = 256 << 10;
    cfg.checkpoint_every_events = 1_000;
    cfg.min_free_bytes = 0;
    cfg
}

async fn append(dir: &Path, name: &str, range: std::ops::Range<u64>, close: bool) -> AuditLog {
    let (log, _) = AuditLog::open(dir, config(name), MasterKey::from_bytes([9; 32])).unwrap();
    let mut i = range.start;
    while i < range.end {
        let end = (i + 1_000).min(range.end);
        log.append_batch((i..end).map(event).collect())
            .await
            .unwrap();
        i = end;
    }
    if close {
        log.clone().close().await.unwrap();
    }
    log
}

fn t(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_micros(BASE_MICROS + offset_ms * 1_000)
}

fn filters() -> Vec<QueryFilter> {
    let mut out = vec![QueryFilter::default()];
    for p in ["User:p0", "User:p42", "User:p99", "User:nobody"] {
        out.push(QueryFilter {
            principal: Some(p.into()),
            ..Default::default()
        });
    }
    for m in [
        "kafka.Fetch",
        "kafka.CreateAcls",
        "audit.self_check",
        "lifecycle.start",
    ] {
        out.push(QueryFilter {
            method: Some(m.into()),
            ..Default::default()
        });
    }
    for r in [
        "r5",
        "Topic:r6",
        "Group:r6",
        "Cluster:r0",
        "Nope:r1",
        "r36",
        "x:y:z",
    ] {
        out.push(QueryFilter {
            resource: Some(r.into()),
            ..Default::default()
        });
    }
    out.push(QueryFilter {
        from: Some(t(2_000)),
        to: Some(t(2_500)),
        ..Default::default()
    });
    out.push(QueryFilter {
        from: Some(t(9_990)),
        ..Default::default()
    });
    out.push(QueryFilter {
        to: Some(t(10)),
        ..Default::default()
    });
    out.push(QueryFilter {
        granted: Some(false),
        ..Default::default()
    });
    out.push(QueryFilter {
        principal: Some("User:p7".into()),
        method: Some("kafka.Fetch".into()),
        granted: Some(true),
        ..Default::default()
    });
    out.push(QueryFilter {
        principal: Some("User:p14".into()),
        resource: Some("Topic:r2".into()),
        from: Some(t(100)),
        to: Some(t(9_000)),
        ..Default::default()
    });
    out.push(QueryFilter {
        method: Some("kafka.Produce".into()),
        from: Some(t(5_000)),
        to: Some(t(5_100)),
        granted: Some(false),
        ..Default::default()
    });
    out
}

/// Every filter: the indexed query equals `query` (called directly for a few filters; for
/// the rest `query` is the verified scan of everything filtered by `QueryFilter::matches`,
/// which is its definition, to keep the test fast).
fn assert_same(dir: &Path, label: &str, expect_indexed: bool) {
    let all = query(dir, &QueryFilter::default()).unwrap();
    for (i, f) in filters().into_iter().enumerate() {
        let plain: Vec<AuditEvent> = if i % 8 == 1 {
            query(dir, &f).unwrap()
        } else {
            all.iter().filter(|e| f.matches(e)).cloned().collect()
        };
        let (fast, stats) = query_indexed_stored(dir, &f).unwrap();
        assert_eq!(stats.indexed, expect_indexed, "{label}: {f:?}");
        assert_eq!(fast.len(), plain.len(), "{label}: {f:?}");
        assert!(
            fast.iter().map(|v| &v.event).eq(plain.iter()),
            "{label}: {f:?}"
        );
        if i % 8 == 1 {
            assert!(query_indexed(dir, &f).unwrap() == plain);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_queries_equal_the_scan_and_stale_indexes_are_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    append(&dir, "n1", 0..20_000, true).await;
    assert_eq!(index_path(&dir), tmp.path().join("audit-index"));
    assert!(!index_exists(&dir));
    // Without an index: the plain scan.
    let (_, stats) = query_indexed_stored(&dir, &QueryFilter::default()).unwrap();
    assert!(!stats.indexed);

    let r = update(&dir).unwrap();
    assert!(r.rebuilt);
    let size = r.indexed_size;
    assert!(size >= 20_000, "{r:?}");
    assert_eq!(r.added, size);
    assert!(index_exists(&dir));
    // The trail directory holds no index files.
    assert!(!dir.join("audit-index").exists());
    let f = QueryFilter {
        principal: Some("User:p42".into()),
        ..Default::default()
    };
    let (ev, stats) = query_indexed_stored(&dir, &f).unwrap();
    assert!(stats.indexed, "{stats:?}");
    assert_eq!(stats.candidates, ev.len() as u64);
    assert_eq!(ev.len(), 200);
    for v in &ev {
        assert_eq!(AuditEvent::from_json(&v.stored).unwrap(), v.event);
    }
    assert_same(&dir, "fully indexed", true);

    // Nothing new: no change.
    let r = update_verified(&dir).unwrap();
    assert_eq!((r.rebuilt, r.added, r.indexed_size), (false, 0, size));

    // More events: some indexed later, the rest (after the last checkpoint too) scanned.
    let log = append(&dir, "n1", 20_000..21_500, false).await;
    assert_same(&dir, "tail not indexed", true);
    let (_, stats) = query_indexed_stored(&dir, &f).unwrap();
    assert!(stats.indexed && stats.tail_scanned > 1_000, "{stats:?}");
    let r = update_verified(&dir).unwrap();
    assert!(!r.rebuilt && r.added > 0 && r.indexed_size > size, "{r:?}");
    assert_same(&dir, "partly indexed, live tail", true);
    log.close().await.unwrap();
    let r = update(&dir).unwrap();
    assert!(!r.rebuilt);
    assert_same(&dir, "closed", true);
    let size = r.indexed_size;

    // A rebuild gives the same state.
    let r = rebuild(&dir).unwrap();
    assert!(r.rebuilt && r.indexed_size == size && r.added == size);
    assert_same(&dir, "rebuilt", true);

    // A foreign index (of another log) is not used, and rebuilt by the next update.
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let other_dir = other.join("audit");
    append(&other_dir, "n2", 0..1_500, true).await;
    update(&other_dir).unwrap();
    fs::remove_dir_all(index_path(&dir)).unwrap();
    copy_dir(&index_path(&other_dir), &index_path(&dir));
    let (_, stats) = query_indexed_stored(&dir, &f).unwrap();
    assert!(!stats.indexed, "a foreign index must not be used");
    assert_same(&dir, "foreign index", false);
    let r = update(&dir).unwrap();
    assert!(r.rebuilt && r.indexed_size == size, "{r:?}");
    assert_same(&dir, "rebuilt after foreign", true);

    // A damaged index database falls back to the scan.
    let idx = index_path(&dir);
    for e in fs::read_dir(&idx).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            fs::write(&p, b"garbage").unwrap();
        }
    }
    assert_same(&dir, "damaged index", false);
    fs::remove_dir_all(&idx).unwrap();
    update(&dir).unwrap();

    // An indexed event changed on disk: the index is not trusted, the scan reports it.
    let seg = dir.join("segments").join(format!("{:020}.seg", 0));
    let mut bytes = fs::read(&seg).unwrap();
    let at = bytes.windows(8).position(|w| w == b"User:p0\"").unwrap();
    bytes[at + 6] = b'1'; // "User:p0" -> "User:p1" (CRC now wrong)
    fs::write(&seg, &bytes).unwrap();
    let f0 = QueryFilter {
        principal: Some("User:p0".into()),
        ..Default::default()
    };
    assert!(query(&dir, &f0).is_err());
    assert!(query_indexed(&dir, &f0).is_err());
    assert!(update(&dir).is_err());
}

/// A trail shortened to an older state (its later checkpoints and segments removed) makes
/// the index stale: it is not used and is rebuilt.
#[tokio::test]
async fn a_shrunk_trail_makes_the_index_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    append(&dir, "n1", 0..2_500, true).await;
    let snapshot = tmp.path().join("snap");
    copy_dir(&dir, &snapshot);
    append(&dir, "n1", 2_500..5_000, true).await;
    let r = update(&dir).unwrap();
    assert!(r.indexed_size > 5_000);
    fs::remove_dir_all(&dir).unwrap();
    fs::rename(&snapshot, &dir).unwrap();
    let f = QueryFilter {
        method: Some("kafka.Fetch".into()),
        ..Default::default()
    };
    let (_, stats) = query_indexed_stored(&dir, &f).unwrap();
    assert!(!stats.indexed);
    assert_eq!(query_indexed(&dir, &f).unwrap(), query(&dir, &f).unwrap());
    let r = update(&dir).unwrap();
    assert!(r.rebuilt && r.indexed_size < 5_000, "{r:?}");
    assert_same(&dir, "after shrink", true);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
