//! The key vault's admin API and `gatehouse key` end to end, against the real `gatehouse serve`:
//!
//! * encrypted records keep flowing while `key rotate` adds a version (producer and consumer
//!   both keep working; records of both versions decrypt);
//! * after a restart everything still decrypts (the keys live in `_gatehouse_keys`);
//! * `key destroy` crypto-shreds: a consumer through the gateway gets an error for the
//!   partition (RESOURCE_NOT_FOUND, no records) and never plaintext, the segments hold no
//!   plaintext, `key status` says destroyed;
//! * refusals: 401 without or with wrong credentials, 403 without `ALTER` / `DESCRIBE` on the
//!   cluster, 404/409/422 for bad requests; every change and refusal is in the audit trail;
//! * `/metrics` exposes the gateway's counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gatehouse_protocol::client::{Connection, ConnectionConfig, SaslCredentials, SaslMechanism};
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use gatehouse_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use gatehouse_protocol::messages::{BrokerId, CreateTopicsRequest, FetchRequest, TopicName};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

const MARKER: &str = "SECRET-PLAINTEXT-MARKER";

fn serve() -> Broker {
    Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `gatehouse ARGS` against `b`'s admin listener (and plaintext gateway listener), as admin
/// unless `env` overrides the password.
fn gatehouse(b: &Broker, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let mut cmd = Command::new(gatehouse_bin());
    cmd.args(args)
        .env("GATEHOUSE_ADMIN_URL", format!("http://{}", b.admin_addr()))
        .env("GATEHOUSE_BOOTSTRAP", b.gateway_plain())
        .env("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD)
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
    let out = child.wait_with_output().expect("wait for gatehouse");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ gatehouse {} -> {}\n{}{}",
        args.join(" "),
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

fn expect(run: &Run, code: i32) {
    assert_eq!(
        run.code, code,
        "exit code\n--- stdout ---\n{}--- stderr ---\n{}",
        run.stdout, run.stderr
    );
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

/// `key status NAME --json`.
fn status(b: &Broker, name: &str) -> Value {
    let r = gatehouse(b, &["key", "status", name, "--json"], &[], "");
    expect(&r, 0);
    json(&r)
}

/// A raw HTTP/1.1 request to the admin listener: (status, headers, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<&str>,
) -> (u16, String, String) {
    use base64::Engine;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {enc}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, head.to_string(), rest.to_string())
}

async fn admin_conn(b: &Broker) -> Connection {
    Connection::connect(
        b.gateway_plain().as_str(),
        ConnectionConfig {
            sasl: Some(SaslCredentials::new(
                SaslMechanism::ScramSha512,
                "admin",
                ADMIN_PASSWORD,
            )),
            ..Default::default()
        },
    )
    .await
    .expect("admin connection")
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// Creates a one-partition topic with `gatehouse.encryption=true` through the gateway.
fn create_encrypted_topic(b: &Broker, topic: &str) {
    runtime().block_on(async {
        let conn = admin_conn(b).await;
        let t = CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(s("gatehouse.encryption"))
                    .with_value(Some(s("true"))),
            ]);
        let r = conn
            .send(
                CreateTopicsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(10_000),
                None,
            )
            .await
            .expect("CreateTopics");
        for t in r.topics {
            assert_eq!(t.error_code, 0, "{:?}", t.error_message);
        }
    });
}

/// Fetches partition 0 from offset 0 through the gateway as admin: (error code, record bytes).
fn gateway_fetch(b: &Broker, topic: &str) -> (i16, usize) {
    runtime().block_on(async {
        let conn = admin_conn(b).await;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(s(topic)))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(8 << 20),
                    ]),
            ]);
        let resp = conn.send(req, Some(12)).await.expect("Fetch");
        let p = &resp.responses[0].partitions[0];
        (p.error_code, p.records.as_ref().map_or(0, |r| r.len()))
    })
}

fn secure(b: &Broker) -> rdkafka::config::ClientConfig {
    let mut c = client_config(&b.gateway_tls());
    c.set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", b.ca_pem().to_str().unwrap())
        .set("sasl.mechanisms", "SCRAM-SHA-256")
        .set("sasl.username", "admin")
        .set("sasl.password", ADMIN_PASSWORD);
    c
}

fn secure_producer(b: &Broker) -> FutureProducer {
    let mut c = secure(b);
    c.set("message.timeout.ms", "20000").set("linger.ms", "5");
    c.create().unwrap()
}

fn secure_consumer(b: &Broker, topic: &str) -> BaseConsumer {
    let mut c = secure(b);
    c.set("group.id", unique("g"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = c.create().unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

fn send(p: &FutureProducer, topic: &str, value: &str) {
    runtime()
        .block_on(p.send(
            FutureRecord::<(), _>::to(topic).payload(value),
            Duration::from_secs(20),
        ))
        .unwrap_or_else(|e| panic!("produce {value}: {:?}", e.0));
}

/// Polls until `n` records arrived (panics on a consumer error or at the deadline).
fn read_n(c: &BaseConsumer, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let until = Instant::now() + OP_DEADLINE;
    while got.len() < n {
        assert!(
            Instant::now() < until,
            "only {} of {n} records arrived: {got:?}",
            got.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap_or_else(|e| panic!("consumer error after {} records: {e}", got.len()));
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    got
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every `.log` segment of `topic` in the bundled broker's data dir, concatenated.
fn segment_bytes(b: &Broker, topic: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(b.data_dir().join("broker")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with(&format!("{topic}-")) {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "log") {
                out.extend(std::fs::read(&f).unwrap());
            }
        }
    }
    out
}

fn expected_values(n_before: usize, n_after: usize) -> Vec<String> {
    (0..n_before)
        .map(|i| format!("{MARKER}-a-{i:03}"))
        .chain((0..n_after).map(|i| format!("{MARKER}-b-{i:03}")))
        .collect()
}

#[test]
fn rotate_while_flowing_restart_then_shred() {
    let mut b = serve();
    let topic = unique("vault");
    create_encrypted_topic(&b, &topic);

    // (a) Records before the rotation; the gateway creates the topic's KEK on first produce.
    let p = secure_producer(&b);
    const BEFORE: usize = 15;
    const AFTER: usize = 25;
    for i in 0..BEFORE {
        send(&p, &topic, &format!("{MARKER}-a-{i:03}"));
    }
    let st = status(&b, &topic);
    assert_eq!(st["state"], "active", "{st}");
    assert_eq!(st["versions"].as_array().unwrap().len(), 1, "{st}");
    let kek_id = st["id"].as_str().unwrap().to_string();
    assert_eq!(kek_id.len(), 32, "{st}");
    let listed = gatehouse(&b, &["key", "list"], &[], "");
    expect(&listed, 0);
    assert!(listed.stdout.starts_with("NAME "), "{}", listed.stdout);
    assert!(listed.stdout.contains(&topic) && listed.stdout.contains(&kek_id));

    // A consumer and a producer run while the key is rotated.
    let consumer = secure_consumer(&b, &topic);
    let first = read_n(&consumer, BEFORE);
    assert_eq!(first, expected_values(BEFORE, 0));
    let produced = Arc::new(AtomicUsize::new(0));
    let rotated = Arc::new(AtomicBool::new(false));
    let producer = {
        let (topic, produced, rotated) = (topic.clone(), produced.clone(), rotated.clone());
        std::thread::spawn(move || {
            for i in 0..AFTER {
                // Half of them only once the rotation is done.
                if i == AFTER / 2 {
                    let until = Instant::now() + OP_DEADLINE;
                    while !rotated.load(Ordering::SeqCst) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                send(&p, &topic, &format!("{MARKER}-b-{i:03}"));
                produced.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    poll_until(OP_DEADLINE, "records produced before the rotation", || {
        (produced.load(Ordering::SeqCst) >= 3).then_some(())
    });
    let r = gatehouse(&b, &["key", "rotate", &topic], &[], "");
    rotated.store(true, Ordering::SeqCst);
    expect(&r, 0);
    assert!(
        r.stdout.contains("rotated") && r.stdout.contains("version 2"),
        "{}",
        r.stdout
    );
    let second = read_n(&consumer, AFTER);
    producer.join().expect("producer thread");
    assert_eq!(
        second,
        expected_values(0, AFTER),
        "both versions decrypt, in order"
    );
    let st = status(&b, &topic);
    assert_eq!(st["id"], kek_id.as_str(), "rotation keeps the KEK id");
    assert_eq!(st["current_version"], 2, "{st}");
    assert_eq!(st["versions"].as_array().unwrap().len(), 2, "{st}");
    drop(consumer);

    // (e) /metrics shows the gateway's counters.
    let (code, head, text) = http(b.admin_addr(), "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(text.lines().any(|l| l == "gatehouse_up 1"), "{text}");
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert!(
        value("gatehouse_gateway_connections_accepted_total") >= 2,
        "{text}"
    );
    assert!(
        value("gatehouse_gateway_authentications_total") >= 2,
        "{text}"
    );
    let _ = value("gatehouse_gateway_connections_active");
    let _ = value("gatehouse_gateway_denials_total");
    assert!(
        text.contains("# TYPE gatehouse_gateway_refusals_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE gatehouse_gateway_rejected_records_total counter"),
        "{text}"
    );
    assert!(text.contains("gatehouse_keys{state=\"active\"}"), "{text}");
    // Requests by API and the bytes that moved (records were produced and fetched above).
    let labelled = |prefix: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
    };
    assert!(
        labelled("gatehouse_gateway_requests_total{api=\"Produce\"}") >= 1,
        "{text}"
    );
    assert!(
        labelled("gatehouse_gateway_requests_total{api=\"Fetch\"}") >= 1,
        "{text}"
    );
    assert!(value("gatehouse_gateway_produce_bytes_total") > 0, "{text}");
    assert!(value("gatehouse_gateway_fetch_bytes_total") > 0, "{text}");
    assert!(
        text.contains("# TYPE gatehouse_gateway_authentication_failures_total counter"),
        "{text}"
    );

    // (b) Restart: every record still decrypts.
    b.terminate();
    b.restart();
    let c = secure_consumer(&b, &topic);
    assert_eq!(read_n(&c, BEFORE + AFTER), expected_values(BEFORE, AFTER));
    drop(c);
    let st = status(&b, &topic);
    assert_eq!(
        (st["id"].as_str(), st["current_version"].as_u64()),
        (Some(kek_id.as_str()), Some(2))
    );

    // (c) Destroy. A typo cannot shred: the CLI and the API both want the name confirmed.
    let r = gatehouse(
        &b,
        &["key", "destroy", &topic, "--confirm", "vault"],
        &[],
        "",
    );
    expect(&r, 2);
    let (code, _, body) = http(
        b.admin_addr(),
        "POST",
        &format!("/v1/keys/{topic}/destroy"),
        Some(("admin", ADMIN_PASSWORD)),
        Some("{}"),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("42203"), "{body}");
    assert_eq!(status(&b, &topic)["state"], "active");
    let r = gatehouse(
        &b,
        &["key", "destroy", &topic, "--confirm", &topic],
        &[],
        "",
    );
    expect(&r, 0);
    assert!(r.stdout.contains("destroyed"), "{}", r.stdout);

    let st = status(&b, &topic);
    assert_eq!(st["state"], "destroyed", "{st}");
    assert_eq!(st["id"], kek_id.as_str());
    assert!(
        st["versions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["destroyed"] == true),
        "{st}"
    );
    let plain = gatehouse(&b, &["key", "status", &topic], &[], "");
    expect(&plain, 0);
    assert!(plain.stdout.contains("destroyed"), "{}", plain.stdout);

    // The gateway answers the partition with RESOURCE_NOT_FOUND and no records.
    let (code, bytes) = gateway_fetch(&b, &topic);
    assert_eq!((code, bytes), (91, 0), "RESOURCE_NOT_FOUND, no records");
    // librdkafka sees an error, never the plaintext.
    let c = secure_consumer(&b, &topic);
    let mut errors = 0;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && errors < 2 {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            match m {
                Ok(m) => {
                    let v = m.payload().unwrap_or_default();
                    assert!(!contains(v, MARKER.as_bytes()), "plaintext after shredding");
                    panic!("a record was delivered after shredding ({} bytes)", v.len());
                }
                Err(e) => {
                    eprintln!("consumer error after shredding (expected): {e}");
                    assert!(format!("{e:?}").contains("ResourceNotFound"), "{e:?}");
                    errors += 1;
                }
            }
        }
    }
    assert!(
        errors > 0,
        "the consumer was told the partition cannot be read"
    );
    drop(c);
    // The log never held plaintext.
    let disk = segment_bytes(&b, &topic);
    assert!(!disk.is_empty(), "the topic has segment files");
    assert!(!contains(&disk, MARKER.as_bytes()), "no plaintext on disk");
    // Destroying twice: nothing left under that name.
    let r = gatehouse(
        &b,
        &["key", "destroy", &topic, "--confirm", &topic],
        &[],
        "",
    );
    expect(&r, 1);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
    // The trail has the admin's changes (principal, not the system).
    b.terminate();
    let events = audit_events(&b);
    for m in ["key.rotate", "key.destroy"] {
        assert!(
            events.iter().any(|e| e["data"]["method"] == m
                && e["data"]["service"] == "admin"
                && e["data"]["principal"] == "User:admin"
                && e["data"]["outcome"]["status"] == "SUCCESS"),
            "{m} audited"
        );
    }
    assert!(
        events.iter().any(|e| e["data"]["method"] == "key.destroy"
            && e["data"]["outcome"]["errorCode"] == "42203"),
        "the unconfirmed destroy is audited as a failure"
    );
}

fn audit_events(b: &Broker) -> Vec<Value> {
    gatehouse_compliance::query(
        &b.data_dir().join("audit"),
        &gatehouse_compliance::QueryFilter::default(),
    )
    .expect("audit query")
    .iter()
    .map(|e| serde_json::from_slice(&e.to_canonical_json()).unwrap())
    .collect()
}

#[test]
fn refusals_and_errors() {
    let mut b = serve();
    let alice_pw = "alice-pw-123";
    let alice = [("ALICE_PW", alice_pw)];
    let as_alice = ["--user", "alice", "--password-env", "ALICE_PW"];
    let r = gatehouse(&b, &["user", "add", "alice"], &[], &format!("{alice_pw}\n"));
    expect(&r, 0);

    // /health stays open; the key API does not.
    assert_eq!(http_get_status(b.admin_addr(), "/health"), Ok(200));
    let (code, head, body) = http(b.admin_addr(), "GET", "/v1/keys", None, None);
    assert_eq!(code, 401, "{body}");
    assert!(head.contains("Basic realm=\"gatehouse\""), "{head}");
    assert!(body.contains("40101"), "{body}");

    // Wrong password: 401, exit 1; the password never shows.
    let r = gatehouse(
        &b,
        &["key", "list"],
        &[("GATEHOUSE_ADMIN_PASSWORD", "wrong-pw-xyz")],
        "",
    );
    expect(&r, 1);
    assert!(
        r.stderr.contains("401") && r.stderr.contains("40101"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wrong-pw-xyz") && !r.stdout.contains("wrong-pw-xyz"));

    // A user without cluster rights: 403 for reads and changes.
    let mut args = vec!["key", "list"];
    args.extend(as_alice);
    let r = poll_until(OP_DEADLINE, "alice to be known", || {
        let r = gatehouse(&b, &args, &alice, "");
        (!r.stderr.contains("401")).then_some(r)
    });
    expect(&r, 1);
    assert!(
        r.stderr.contains("403") && r.stderr.contains("40301"),
        "{}",
        r.stderr
    );
    let mut args = vec!["key", "create", "alice-topic"];
    args.extend(as_alice);
    let r = gatehouse(&b, &args, &alice, "");
    expect(&r, 1);
    assert!(r.stderr.contains("403"), "{}", r.stderr);

    // DESCRIBE on the cluster lets her read, not change.
    let r = gatehouse(
        &b,
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--allow",
            "--operation",
            "DESCRIBE",
            "--cluster",
        ],
        &[],
        "",
    );
    expect(&r, 0);
    let mut args = vec!["key", "list", "--output", "json"];
    args.extend(as_alice);
    let r = poll_until(OP_DEADLINE, "the ACL to apply", || {
        let r = gatehouse(&b, &args, &alice, "");
        (r.code == 0).then_some(r)
    });
    assert!(json(&r)["keys"].is_array());

    // The admin creates a template key; errors map to 409, 404, 422.
    let r = gatehouse(&b, &["key", "create", "orders-*", "--json"], &[], "");
    expect(&r, 0);
    let created = json(&r);
    assert_eq!(
        (created["name"].as_str(), created["state"].as_str()),
        (Some("orders-*"), Some("active"))
    );
    assert!(created.get("material").is_none() && !r.stdout.contains("blob"));
    let mut args = vec!["key", "rotate", "orders-*"];
    args.extend(as_alice);
    let r = gatehouse(&b, &args, &alice, "");
    expect(&r, 1);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    let r = gatehouse(&b, &["key", "create", "orders-*"], &[], "");
    expect(&r, 1);
    assert!(r.stderr.contains("409"), "{}", r.stderr);
    let r = gatehouse(&b, &["key", "status", "no-such-key"], &[], "");
    expect(&r, 1);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
    let r = gatehouse(&b, &["key", "create", "bad name/x"], &[], "");
    expect(&r, 1);
    assert!(r.stderr.contains("422"), "{}", r.stderr);
    let r = gatehouse(&b, &["key", "retire", "orders-*"], &[], "");
    expect(&r, 0);
    assert_eq!(status(&b, "orders-*")["state"], "retired");
    let (code, _, body) = http(
        b.admin_addr(),
        "POST",
        "/v1/keys",
        Some(("admin", ADMIN_PASSWORD)),
        Some("not json"),
    );
    assert_eq!(code, 400, "{body}");

    // Connection errors and usage: exit 2.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let r = gatehouse(&b, &["key", "list", "--admin-url", &closed], &[], "");
    expect(&r, 2);
    let r = gatehouse(
        &b,
        &["key", "list", "--password-env", "UNSET_PW_VAR_XYZ"],
        &[],
        "",
    );
    expect(&r, 2);

    // Every refusal and change is in the trail; no password anywhere in it.
    b.terminate();
    let events = audit_events(&b);
    let has = |f: &dyn Fn(&Value) -> bool| events.iter().any(f);
    assert!(has(&|e| e["type"] == "io.gatehouse.authentication"
        && e["data"]["service"] == "admin"
        && e["data"]["principal"] == "User:admin"
        && e["data"]["granted"] == false));
    assert!(has(&|e| e["type"] == "io.gatehouse.authorization"
        && e["data"]["service"] == "admin"
        && e["data"]["principal"] == "User:alice"
        && e["data"]["method"] == "key.rotate"));
    assert!(has(&|e| e["type"] == "io.gatehouse.key"
        && e["data"]["method"] == "key.create"
        && e["data"]["principal"] == "User:admin"
        && e["data"]["outcome"]["status"] == "SUCCESS"));
    assert!(has(&|e| e["type"] == "io.gatehouse.key"
        && e["data"]["method"] == "key.create"
        && e["data"]["outcome"]["errorCode"] == "40901"));
    let all = serde_json::to_string(&events).unwrap();
    assert!(
        !all.contains("wrong-pw-xyz") && !all.contains(alice_pw) && !all.contains(ADMIN_PASSWORD)
    );
}
