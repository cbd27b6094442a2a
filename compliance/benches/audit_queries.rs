//! What an auditor waits for on a large trail (200,000 events by default): the evidence
//! package and a selective query, scanned and through the index, each beside the baseline of
//! the same run: verifying the trail once (every evidence package and every plain query verifies
//! or scans everything). Run with `cargo bench -p gatehouse-compliance --bench audit_queries`
//! (`AUDIT_BENCH_EVENTS=N` to change the size); not part of any test run. The checks that these
//! paths give the right answers run in the test suites (`tests/query_index.rs`, the evidence
//! unit tests); this only measures.

use std::time::Instant;

use gatehouse_compliance::audit::evidence::{EvidenceRequest, build_evidence};
use gatehouse_compliance::audit::index::{query_indexed_stored, update};
use gatehouse_compliance::{
    AuditEvent, AuditLog, AuditLogConfig, EventType, MasterKey, QueryFilter, Timestamp, query,
    verify_dir,
};

const BASE_MICROS: i64 = 1_700_000_000_000_000;

/// Mixed event kinds, 100 principals, times mostly increasing (some out of order).
fn event(i: u64) -> AuditEvent {
    let kinds = [
        (EventType::Authentication, "kafka.Authenticate", false),
        (EventType::Authorization, "kafka.Produce", false),
        (EventType::Acl, "kafka.CreateAcls", true),
        (EventType::Topic, "kafka.CreateTopics", true),
        (EventType::Schema, "schema.register", true),
    ];
    let (t, method, granted) = kinds[(i % 5) as usize].clone();
    AuditEvent::builder(t)
        .service("gateway")
        .method(method)
        .principal(format!("User:p{}", (i * 7) % 100))
        .resource("Topic", format!("r{}", i % 37))
        .operation("Write")
        .granted(granted)
        .time(Timestamp::from_unix_micros(
            BASE_MICROS + (i as i64 / 2) * 1_000 - ((i % 7) as i64) * 3_000,
        ))
        .build()
        .unwrap_or_else(|e| panic!("event: {e}"))
}

fn main() {
    let events: u64 = std::env::var("AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let tmp = std::env::temp_dir().join(format!("gatehouse-audit-queries-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let dir = tmp.join("audit");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    // The defaults: 64 MiB segments, a checkpoint every 10,000 events.
    let mut cfg = AuditLogConfig::new("bench");
    cfg.min_free_bytes = 0;
    let start = Instant::now();
    rt.block_on(async {
        let (log, _) = AuditLog::open(&dir, cfg, MasterKey::from_bytes([9; 32]))
            .unwrap_or_else(|e| panic!("open: {e}"));
        let mut i = 0;
        while i < events {
            let end = (i + 1_000).min(events);
            log.append_batch((i..end).map(event).collect())
                .await
                .unwrap_or_else(|e| panic!("append: {e}"));
            i = end;
        }
        log.close().await.unwrap_or_else(|e| panic!("close: {e}"));
    });
    println!("wrote {events} events in {:.2?}", start.elapsed());

    let s = Instant::now();
    let report = verify_dir(&dir, None).unwrap_or_else(|e| panic!("verify: {e}"));
    let t_verify = s.elapsed();
    println!(
        "baseline  verify_dir: {} events in {t_verify:.2?}",
        report.tree_size
    );

    let out = tmp.join("evidence");
    let s = Instant::now();
    let summary = build_evidence(&EvidenceRequest {
        audit_dir: &dir,
        out_dir: &out,
        from: Timestamp::from_unix_micros(0),
        to: Timestamp::from_unix_micros(i64::MAX / 2),
        trusted_keys: None,
        configuration: None,
        generator: "bench".into(),
        operator: None,
    })
    .unwrap_or_else(|e| panic!("evidence: {e}"));
    let t_evidence = s.elapsed();
    println!(
        "evidence  package: {} events ({} in populations) in {t_evidence:.2?} = {:.1}x verify",
        summary.report.tree_size,
        summary.counts.iter().map(|c| c.1).sum::<u64>(),
        t_evidence.as_secs_f64() / t_verify.as_secs_f64()
    );

    let s = Instant::now();
    update(&dir).unwrap_or_else(|e| panic!("index: {e}"));
    let t_index = s.elapsed();
    println!(
        "index     build (verify + index): {t_index:.2?} = {:.1}x verify",
        t_index.as_secs_f64() / t_verify.as_secs_f64()
    );
    let filter = QueryFilter {
        principal: Some("User:p42".into()),
        ..Default::default()
    };
    let s = Instant::now();
    let plain = query(&dir, &filter).unwrap_or_else(|e| panic!("query: {e}"));
    let t_plain = s.elapsed();
    let s = Instant::now();
    let (fast, stats) = query_indexed_stored(&dir, &filter).unwrap_or_else(|e| panic!("{e}"));
    let t_fast = s.elapsed();
    assert!(stats.indexed, "the index answered");
    assert_eq!(fast.len(), plain.len(), "indexed and scanned answers agree");
    println!(
        "query     one principal of 100 ({} hits): scan {t_plain:.2?}, indexed {t_fast:.2?} = {:.1}x faster",
        plain.len(),
        t_plain.as_secs_f64() / t_fast.as_secs_f64().max(1e-9)
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
