//! End-to-end: evidence packages and the self-check against the real `gatehouse serve`.
//!
//! * `evidence_package_from_a_serve_session`: a wrong admin password (Kafka SASL), a SCRAM
//!   user added, an ACL added and a schema registered over HTTPS; after SIGTERM,
//!   `gatehouse evidence` writes the package: each population holds the expected events,
//!   every manifest hash matches the file, `--check` passes, and a tampered trail is refused
//!   (exit 1, nothing written).
//! * `self_check_sees_a_tampered_sealed_segment`: `serve` with
//!   `[audit] self_check_interval_ms = 300`, restarted so the first segment is sealed; a
//!   flipped byte in it shows in `/metrics` (`gatehouse_audit_self_check_failures_total`)
//!   and the log (ERROR) within a few intervals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Broker, BrokerOptions};
use serde_json::Value;
use sha2::Digest;

fn gatehouse(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(common::gatehouse_bin());
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run gatehouse");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait");
    eprintln!(
        "$ gatehouse {} -> {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rfc3339(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs;
    gatehouse_compliance::Timestamp::from_unix_micros(now * 1_000_000).to_rfc3339()
}

fn population(dir: &Path, id: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("populations").join(format!("{id}.json")))
        .expect("population file");
    serde_json::from_str::<Value>(&text)
        .expect("population JSON")
        .as_array()
        .cloned()
        .expect("array")
}

#[test]
fn evidence_package_from_a_serve_session() {
    let mut b = Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    });
    let from = rfc3339(-3600);
    let plain = b.gateway_plain();
    // A wrong admin password over SASL/SCRAM: an authentication failure.
    let out = gatehouse(
        &["acl", "list"],
        &[
            ("GATEHOUSE_BOOTSTRAP", &plain),
            ("GATEHOUSE_ADMIN_PASSWORD", "not-the-password"),
        ],
        "",
    );
    assert!(!out.status.success());
    let admin_env = [
        ("GATEHOUSE_BOOTSTRAP", plain.as_str()),
        ("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    // A user and an ACL: access changes.
    let out = gatehouse(&["user", "add", "alice"], &admin_env, "alice-pw-123456\n");
    assert!(out.status.success());
    let out = gatehouse(
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--allow",
            "--operation",
            "WRITE",
            "--topic",
            "payments",
        ],
        &admin_env,
        "",
    );
    assert!(out.status.success());
    // A schema over REST (HTTPS, Basic): a schema change.
    let schema = b.scratch_dir().join("v1.avsc");
    std::fs::write(
        &schema,
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#,
    )
    .unwrap();
    let url = format!("https://localhost:{}", b.registry_addr().port());
    let ca = b.ca_pem();
    let out = gatehouse(
        &[
            "schema",
            "register",
            "orders-value",
            "--file",
            schema.to_str().unwrap(),
            "--registry-url",
            &url,
            "--ca-cert",
            ca.to_str().unwrap(),
            "--user",
            "admin",
        ],
        &[("GATEHOUSE_REGISTRY_PASSWORD", ADMIN_PASSWORD)],
        "",
    );
    assert!(out.status.success());
    b.terminate();

    let data = b.data_dir();
    let audit = data.join("audit");
    let key = audit.join("keys/signing.pub");
    let pkg = b.scratch_dir().join("evidence");
    let to = rfc3339(3600);
    let started = Instant::now();
    let out = gatehouse(
        &[
            "evidence",
            "--from",
            &from,
            "--to",
            &to,
            "--out",
            pkg.to_str().unwrap(),
            "--audit-dir",
            audit.to_str().unwrap(),
            "--public-key",
            key.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
        "",
    );
    eprintln!("evidence took {:?}", started.elapsed());
    assert!(out.status.success());

    let auth = population(&pkg, "authentication-failures");
    assert!(
        auth.iter().any(
            |e| e["data"]["outcome"]["errorCode"] == "SASL_AUTHENTICATION_FAILED"
                && e["data"]["granted"] == false
                && e["data"]["method"] == "kafka.Authenticate"
                // Who tried: the claimed name, while the principal stays unauthenticated.
                && e["data"]["attributes"]["attempted_user"] == "admin"
                && e["data"]["principal"] == "User:unknown"
        ),
        "{auth:?}"
    );
    let access = population(&pkg, "access-changes");
    assert!(
        access
            .iter()
            .any(|e| e["data"]["method"] == "kafka.AlterUserScramCredentials"
                && e["data"]["outcome"]["status"] == "SUCCESS"),
        "{access:?}"
    );
    assert!(
        access
            .iter()
            .any(|e| e["data"]["method"] == "kafka.CreateAcls"
                && e["data"]["resource"]["name"]
                    .as_str()
                    .is_some_and(|n| n.contains("payments"))),
        "{access:?}"
    );
    let schemas = population(&pkg, "schema-changes");
    assert!(
        schemas
            .iter()
            .any(|e| e["data"]["method"] == "schema.register"
                && e["data"]["resource"]["name"] == "orders-value"
                && e["data"]["principal"] == "User:admin"),
        "{schemas:?}"
    );
    let admin_changes = population(&pkg, "admin-changes");
    assert!(admin_changes.len() >= access.len() + schemas.len());
    let lifecycle = population(&pkg, "audit-lifecycle");
    assert!(
        lifecycle
            .iter()
            .any(|e| e["data"]["method"] == "audit.Started")
    );
    // No secret in any file.
    for entry in walk(&pkg) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(!text.contains(ADMIN_PASSWORD), "{}", entry.display());
        assert!(!text.contains("alice-pw-123456"), "{}", entry.display());
        assert!(!text.contains("not-the-password"), "{}", entry.display());
    }
    // The manifest lists every file with its SHA-256.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(pkg.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_object().unwrap();
    assert_eq!(files.len() + 1, walk(&pkg).len());
    for (rel, sha) in files {
        let got = hex(&sha2::Sha256::digest(std::fs::read(pkg.join(rel)).unwrap()));
        assert_eq!(Some(got.as_str()), sha.as_str(), "{rel}");
    }
    assert_eq!(manifest["verdict"], "PASSED");
    let v: Value =
        serde_json::from_slice(&std::fs::read(pkg.join("verification.json")).unwrap()).unwrap();
    assert_eq!(v["trustedKeysPinned"], true);
    let html = std::fs::read_to_string(pkg.join("index.html")).unwrap();
    assert!(html.contains("PASSED") && html.contains("10.2.1.4") && html.contains("CC6.2"));
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(pkg.join("configuration.json")).unwrap()).unwrap();
    assert_eq!(cfg["included"], true);
    assert_eq!(cfg["snapshot"]["gateway"]["tlsMinVersion"], "TLSv1.2");
    let out = gatehouse(&["evidence", "--check", pkg.to_str().unwrap()], &[], "");
    assert!(out.status.success());

    // A tampered trail: refused, nothing written.
    let seg = audit.join("segments").join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[60] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let pkg2 = b.scratch_dir().join("evidence2");
    let out = gatehouse(
        &[
            "evidence",
            "--from",
            &from,
            "--to",
            &to,
            "--out",
            pkg2.to_str().unwrap(),
            "--audit-dir",
            audit.to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not verify") && err.contains("00000000000000000000.seg"),
        "{err}"
    );
    assert!(!pkg2.exists());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn metrics(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn self_check_sees_a_tampered_sealed_segment() {
    let base = tempfile::tempdir().unwrap();
    let cfg = base.path().join("gatehouse.toml");
    std::fs::write(&cfg, "[audit]\nself_check_interval_ms = 300\n").unwrap();
    let mut b = Broker::start_with(BrokerOptions {
        serve: true,
        extra_args: vec!["--config".into(), cfg.to_str().unwrap().into()],
        ..Default::default()
    });
    // Stop and start again: the first run's segment is now sealed.
    b.terminate();
    b.restart();
    let admin = b.admin_addr();
    let healthy = common::poll_until(Duration::from_secs(30), "a passing self-check", || {
        let t = metrics(admin);
        (metric(&t, "gatehouse_audit_verified_events").unwrap_or(0) > 0
            && metric(&t, "gatehouse_audit_self_check_healthy") == Some(1))
        .then_some(t)
    });
    assert_eq!(
        metric(&healthy, "gatehouse_audit_self_check_failures_total"),
        Some(0),
        "{healthy}"
    );
    assert!(metric(&healthy, "gatehouse_audit_last_verified_timestamp_seconds").unwrap() > 0);

    let seg = b
        .data_dir()
        .join("audit/segments")
        .join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[60] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let tampered_at = Instant::now();
    let t = common::poll_until(Duration::from_secs(10), "a failed self-check", || {
        let t = metrics(admin);
        (metric(&t, "gatehouse_audit_self_check_failures_total").unwrap_or(0) > 0).then_some(t)
    });
    eprintln!("tampering detected after {:?}", tampered_at.elapsed());
    assert_eq!(
        metric(&t, "gatehouse_audit_self_check_healthy"),
        Some(0),
        "{t}"
    );
    common::poll_until(Duration::from_secs(5), "the ERROR log line", || {
        let log = b.log();
        log.contains("AUDIT TRAIL SELF-CHECK FAILED")
            .then_some(())
            .filter(|()| log.contains("00000000000000000000.seg"))
    });
    b.terminate();
}

#[test]
fn archive_refuses_young_segments_and_both_parts_verify() {
    let mut b = Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    });
    b.terminate();
    b.restart();
    b.terminate();
    let audit = b.data_dir().join("audit");
    let arch = b.scratch_dir().join("archive");
    // The default retention (365 days) refuses today's segments.
    let out = gatehouse(
        &[
            "audit",
            "archive",
            "--before",
            &rfc3339(0),
            "--to",
            arch.to_str().unwrap(),
            audit.to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("minimum retention of 365 days"));
    assert!(!arch.exists());
    // With a configured retention of 0 days everything sealed before now moves.
    let cfg = b.scratch_dir().join("retention.toml");
    std::fs::write(&cfg, "[audit]\nretention_min_days = 0\n").unwrap();
    // The cut-off has whole seconds: let the last checkpoint's second pass.
    std::thread::sleep(Duration::from_millis(1100));
    let out = gatehouse(
        &[
            "audit",
            "archive",
            "--before",
            &rfc3339(0),
            "--to",
            arch.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            audit.to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Archived 2 segments"));
    let key = audit.join("keys/signing.pub");
    for dir in [&arch, &audit] {
        let out = gatehouse(
            &[
                "audit",
                "verify",
                dir.to_str().unwrap(),
                "--trusted-key",
                key.to_str().unwrap(),
            ],
            &[],
            "",
        );
        assert!(out.status.success(), "{}", dir.display());
    }
    // serve resumes on the anchored trail, which keeps verifying.
    b.restart();
    b.terminate();
    let out = gatehouse(&["audit", "verify", audit.to_str().unwrap()], &[], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("anchor:"));
}

/// Keys of every record in `_gatehouse_audit` (read straight from the open bundled broker),
/// with whether each carries the MAC header.
fn mirrored(bootstrap: &str) -> Vec<(String, bool)> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};
    let c = common::plain_consumer(bootstrap, &[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("_gatehouse_audit", 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let mac = m
                .headers()
                .is_some_and(|h| h.iter().any(|x| x.key == "gh-mac" && x.value.is_some()));
            out.push((key, mac));
        }
    }
    out
}

#[test]
fn mirror_ships_events_and_checkpoints_to_the_audit_topic() {
    let base = tempfile::tempdir().unwrap();
    let cfg = base.path().join("gatehouse.toml");
    std::fs::write(&cfg, "[audit]\nmirror_topic = true\n").unwrap();
    let mut b = Broker::start_with(BrokerOptions {
        serve: true,
        extra_args: vec![
            "--config".into(),
            cfg.to_str().unwrap().into(),
            "--broker-open".into(),
        ],
        ..Default::default()
    });
    // The start is checkpointed at once: event 0 and checkpoint 1 leave the node.
    common::poll_until(
        Duration::from_secs(20),
        "the first mirrored checkpoint",
        || {
            let got = mirrored(&b.bootstrap());
            (got.iter().any(|(k, _)| k == "event/0")
                && got.iter().any(|(k, _)| k == "checkpoint/1"))
            .then_some(())
        },
    );
    b.terminate();
    let size = gatehouse_compliance::verify_dir(&b.data_dir().join("audit"), None)
        .unwrap()
        .tree_size;
    // The final checkpoint of the stopped run was shipped before the broker stopped.
    b.restart();
    let got = mirrored(&b.bootstrap());
    assert!(
        got.iter().any(|(k, _)| *k == format!("checkpoint/{size}")),
        "checkpoint/{size} missing: {got:?}"
    );
    for seq in 0..size {
        assert!(
            got.iter().any(|(k, _)| *k == format!("event/{seq}")),
            "event/{seq} missing"
        );
    }
    assert!(got.iter().all(|(_, mac)| *mac));
    let t = metrics(b.admin_addr());
    assert_eq!(
        metric(&t, "gatehouse_audit_mirror_failures_total"),
        Some(0),
        "{t}"
    );
    b.terminate();
}
