//! Audit trail throughput: append (group commit, checkpoints on) and offline verify.
//! Run with `cargo bench -p gatehouse-compliance --bench audit`; not part of any test run.
//! Uses only `std::time`. The producers run on one current-thread runtime (one core); the
//! writer thread is the second.

use std::time::Instant;

use gatehouse_compliance::{
    AuditEvent, AuditLog, AuditLogConfig, EventType, MasterKey, Timestamp, verify_dir,
};

fn template() -> AuditEvent {
    AuditEvent::builder(EventType::Authorization)
        .service("gateway")
        .method("kafka.Produce")
        .principal("User:payments-app")
        .auth_mechanism("SASL_SSL/SCRAM-SHA-512")
        .resource("Topic", "payments.card-authorisations")
        .operation("Write")
        .client_address("10.20.30.40:51234")
        .client_id("payments-producer-7")
        .correlation_id("123456")
        .granted(true)
        .matched_rule("acl:allow:User:payments-app:Write:Topic:payments.*")
        .time(Timestamp::now())
        .attribute("partition", "3")
        .build()
        .unwrap_or_else(|e| panic!("template event: {e}"))
}

/// CPU seconds (user + system) of the live thread named `name` (Linux `/proc`).
fn thread_cpu_seconds(name: &str) -> Option<f64> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        if std::fs::read_to_string(path.join("comm")).ok()?.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        return Some(ticks / 100.0);
    }
    None
}

fn main() {
    let events: u64 = std::env::var("AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = std::env::temp_dir().join(format!("gatehouse-audit-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let t = template();
    println!(
        "event size: {} bytes canonical JSON (+16 bytes framing)",
        t.to_canonical_json().len()
    );

    for mode in [
        "append (1024 concurrent callers, one event per call)",
        "append_batch (4 concurrent callers, 1000 events per call)",
    ] {
        let dir = tmp.join(mode.split(' ').next().unwrap_or("x"));
        let mut cfg = AuditLogConfig::new("bench-node");
        cfg.checkpoint_every_events = 10_000;
        cfg.min_free_bytes = 0;
        let (log, _) = AuditLog::open(&dir, cfg, MasterKey::from_bytes([7; 32]))
            .unwrap_or_else(|e| panic!("open: {e}"));
        let start = Instant::now();
        rt.block_on(async {
            let mut handles = Vec::new();
            if mode.starts_with("append_batch") {
                for _ in 0..4 {
                    let log = log.clone();
                    let t = t.clone();
                    handles.push(tokio::spawn(async move {
                        for _ in 0..events / 4000 {
                            let batch = (0..1000).map(|_| t.clone()).collect();
                            log.append_batch(batch)
                                .await
                                .unwrap_or_else(|e| panic!("{e}"));
                        }
                    }));
                }
            } else {
                let callers = 1024u64;
                for _ in 0..callers {
                    let log = log.clone();
                    let t = t.clone();
                    handles.push(tokio::spawn(async move {
                        for _ in 0..events / callers {
                            log.append(t.clone())
                                .await
                                .unwrap_or_else(|e| panic!("{e}"));
                        }
                    }));
                }
            }
            for h in handles {
                h.await.unwrap_or_else(|e| panic!("{e}"));
            }
        });
        let elapsed = start.elapsed();
        let writer_cpu = thread_cpu_seconds("audit-writer");
        rt.block_on(log.close())
            .unwrap_or_else(|e| panic!("close: {e}"));
        // Minus audit.Started and audit.Stopped.
        let n = verify_dir(&dir, None).map_or(0, |r| r.tree_size - 2);
        let checkpoints = std::fs::read_dir(dir.join("checkpoints")).map_or(0, |d| d.count());
        println!(
            "{mode}: {n} events in {:.2?} = {:.0} events/s durable ({} checkpoints){}",
            elapsed,
            n as f64 / elapsed.as_secs_f64(),
            checkpoints,
            writer_cpu
                .map(|s| format!(
                    "; writer thread CPU {:.2} us/event (= {:.0} events/s per core)",
                    s * 1e6 / n as f64,
                    n as f64 / s
                ))
                .unwrap_or_default()
        );

        let start = Instant::now();
        let report = verify_dir(&dir, None).unwrap_or_else(|e| panic!("verify: {e}"));
        let elapsed = start.elapsed();
        println!(
            "verify_dir: {} events, {} segments, {} checkpoints in {:.2?} = {:.0} events/s",
            report.tree_size,
            report.segments,
            report.checkpoints,
            elapsed,
            report.tree_size as f64 / elapsed.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
