//! `gatehouse audit ...` as an auditor runs it: on a copy of a trail, offline, exit codes that a
//! script can act on, and the first bad place named on any change.

use std::path::Path;
use std::process::Command;

use gatehouse_compliance::{AuditEvent, AuditLog, AuditLogConfig, EventType, MasterKey};

fn gatehouse(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .output()
        .expect("run gatehouse")
}

async fn write_trail(dir: &Path, events: u64) {
    let mut config = AuditLogConfig::new("node-test");
    config.segment_max_bytes = 16 << 10;
    config.checkpoint_every_events = 50;
    config.min_free_bytes = 0;
    let (log, _report) = AuditLog::open(dir, config, MasterKey::generate().expect("master key"))
        .expect("open trail");
    for i in 0..events {
        let e = AuditEvent::builder(EventType::Authorization)
            .service("gateway")
            .method("kafka.Produce")
            .principal(format!("User:app-{}", i % 3))
            .resource("Topic", "orders")
            .operation("Write")
            .granted(i % 5 != 0)
            .build()
            .expect("event");
        log.append(e).await.expect("append");
    }
    log.close().await.expect("close");
}

#[tokio::test]
async fn verify_accepts_an_intact_trail_and_names_a_tampered_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    write_trail(&dir, 300).await;
    let d = dir.to_str().expect("utf-8 path");

    let ok = gatehouse(&["audit", "verify", d]);
    assert!(
        ok.status.success(),
        "intact trail must verify: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let q = gatehouse(&[
        "audit",
        "query",
        d,
        "--principal",
        "User:app-1",
        "--granted",
        "false",
    ]);
    assert!(q.status.success());
    let lines = String::from_utf8_lossy(&q.stdout).lines().count();
    assert!(lines > 0 && lines < 300, "query filters events ({lines})");

    let proof = gatehouse(&["audit", "prove", "--event", "7", d]);
    assert!(
        proof.status.success(),
        "{}",
        String::from_utf8_lossy(&proof.stderr)
    );
    let proof_file = tmp.path().join("proof.json");
    std::fs::write(&proof_file, &proof.stdout).expect("write proof");
    let checked = gatehouse(&["audit", "verify-proof", proof_file.to_str().expect("path")]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    // Flip one byte in the middle of the first segment.
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("segments dir")
        .map(|e| e.expect("entry").path())
        .collect();
    segments.sort();
    let first = &segments[0];
    let mut bytes = std::fs::read(first).expect("read segment");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(first, bytes).expect("write segment");

    let bad = gatehouse(&["audit", "verify", d]);
    assert!(
        !bad.status.success(),
        "a flipped byte must fail verification"
    );
    let msg = String::from_utf8_lossy(&bad.stderr);
    let name = first
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    assert!(
        msg.contains(name),
        "the report names the bad segment {name}: {msg}"
    );
}
