//! The node's audit trail around the schema registry.
//!
//! * `registry_changes_are_audited_in_process`: `audit_service` (compiled in from
//!   `src/audit_service.rs`) with the registry's REST router over an in-memory store, served
//!   with `ConnectInfo`; a register, an incompatible register (409/40901) and a subject delete
//!   land in the trail between the service's start and stop, the trail verifies, and a
//!   different master key is refused with the fingerprint message.
//! * `master_key_file_is_created_private_and_reused`: the key-file path.
//! * `serve_audits_registry_changes`: the same against the real `gatehouse serve` binary, over
//!   HTTPS (the serve CA) as `admin` with HTTP Basic (SIGTERM, then `gatehouse audit verify`
//!   and `gatehouse audit query`; the events carry `User:admin`).
//! * `sigkill_during_heavy_auditing_keeps_every_acknowledged_event`: a produce stream to a
//!   topic whose every access is audited, the server SIGKILLed mid-stream, restarted; the
//!   trail verifies and records at least every acknowledged record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[allow(dead_code)]
#[path = "../src/audit_service.rs"]
mod audit_service;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_compliance::{QueryFilter, query, verify_dir};
use gatehouse_registry::api::{MemoryStore, router_with_audit};
use serde_json::{Value, json};

const KEY_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const KEY_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

const V1: &str =
    r#"{"type":"record","name":"User","namespace":"a","fields":[{"name":"id","type":"long"}]}"#;
const BAD: &str = r#"{"type":"record","name":"User","namespace":"a","fields":[{"name":"id","type":"long"},{"name":"age","type":"int"}]}"#;

/// How `exercise` reaches the registry: plain HTTP, or HTTPS trusting `ca` with an
/// `Authorization` header.
#[derive(Clone)]
enum Via {
    Plain,
    Https {
        ca: std::path::PathBuf,
        auth: String,
    },
}

/// One HTTP/1.1 request over a fresh connection; returns (status, JSON body).
fn http(
    addr: SocketAddr,
    via: &Via,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = match via {
        Via::Plain => String::new(),
        Via::Https { auth, .. } => format!("Authorization: {auth}\r\n"),
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    let mut raw = Vec::new();
    match via {
        Via::Plain => {
            let mut s = s;
            s.write_all(req.as_bytes()).unwrap();
            s.read_to_end(&mut raw).unwrap();
        }
        Via::Https { ca, .. } => {
            let config = gatehouse_gateway::tls::client_config(ca, None).unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(config, name).unwrap();
            let mut s = rustls::StreamOwned::new(conn, s);
            s.write_all(req.as_bytes()).unwrap();
            match s.read_to_end(&mut raw) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, rest) = text.split_once("\r\n\r\n").expect("header end");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut r = rest;
        loop {
            let (len, tail) = r.split_once("\r\n").expect("chunk size");
            let n = usize::from_str_radix(len.trim(), 16).expect("hex size");
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            r = &tail[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The three audited requests of both tests; checks their answers.
fn exercise(addr: SocketAddr, via: &Via) {
    let (s, b) = http(
        addr,
        via,
        "POST",
        "/subjects/users-value/versions",
        Some(&json!({"schema": V1})),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(
        addr,
        via,
        "POST",
        "/subjects/users-value/versions",
        Some(&json!({"schema": BAD})),
    );
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error_code"], 40901);
    // Reads are not audited.
    let (s, _) = http(addr, via, "GET", "/subjects", None);
    assert_eq!(s, 200);
    let (s, b) = http(addr, via, "DELETE", "/subjects/users-value", None);
    assert_eq!(s, 200, "{b}");
}

/// (type, service, method, resource, outcome status, error code) of each event.
type Row = (String, String, String, String, String, Option<String>);

fn rows(events: &[Value]) -> Vec<Row> {
    events
        .iter()
        .map(|e| {
            let d = &e["data"];
            (
                e["type"].as_str().unwrap().to_owned(),
                d["service"].as_str().unwrap().to_owned(),
                d["method"].as_str().unwrap().to_owned(),
                format!(
                    "{}:{}",
                    d["resource"]["type"].as_str().unwrap(),
                    d["resource"]["name"].as_str().unwrap()
                ),
                d["outcome"]["status"].as_str().unwrap().to_owned(),
                d["outcome"]["errorCode"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn row(t: &str, svc: &str, m: &str, r: &str, st: &str, code: Option<&str>) -> Row {
    (
        format!("io.gatehouse.{t}"),
        svc.into(),
        m.into(),
        r.into(),
        st.into(),
        code.map(str::to_owned),
    )
}

/// The whole trail of one serve run: audit start, service start, the three changes, stops.
fn expected(node: &str) -> Vec<Row> {
    let n = format!("Node:{node}");
    let a = format!("AuditLog:{node}");
    vec![
        row("lifecycle", "audit", "audit.Started", &a, "SUCCESS", None),
        row(
            "lifecycle",
            "gatehouse",
            "gatehouse.Started",
            &n,
            "SUCCESS",
            None,
        ),
        row(
            "schema",
            "registry",
            "schema.register",
            "Subject:users-value",
            "SUCCESS",
            None,
        ),
        row(
            "schema",
            "registry",
            "schema.register",
            "Subject:users-value",
            "FAILURE",
            Some("40901"),
        ),
        row(
            "schema",
            "registry",
            "subject.delete",
            "Subject:users-value",
            "SUCCESS",
            None,
        ),
        row(
            "lifecycle",
            "gatehouse",
            "gatehouse.Stopped",
            &n,
            "SUCCESS",
            None,
        ),
        row("lifecycle", "audit", "audit.Stopped", &a, "SUCCESS", None),
    ]
}

fn all_events(dir: &Path) -> Vec<Value> {
    query(dir, &QueryFilter::default())
        .unwrap()
        .iter()
        .map(|e| serde_json::from_slice(&e.to_canonical_json()).unwrap())
        .collect()
}

#[test]
fn registry_changes_are_audited_in_process() {
    let rt = common::runtime();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    rt.block_on(async {
        let audit = audit_service::open_with(&data, Some(KEY_A)).await.unwrap();
        let node = audit.node_id().to_owned();
        assert_eq!(audit.fingerprint().len(), 16);
        let app = router_with_audit(Arc::new(MemoryStore::new()), audit.sink());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
        });
        tokio::task::spawn_blocking(move || exercise(addr, &Via::Plain))
            .await
            .unwrap();
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        audit.close().await.unwrap();

        let dir = data.join("audit");
        verify_dir(&dir, None).unwrap();
        let events = all_events(&dir);
        assert_eq!(rows(&events), expected(&node));
        let reg = &events[2]["data"];
        assert_eq!(reg["principal"], "anonymous");
        assert_eq!(reg["granted"], true);
        assert!(
            reg["clientAddress"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:"),
            "{reg}"
        );
        assert_eq!(reg["attributes"]["schemaId"], "1");
        assert_eq!(
            events[1]["data"]["attributes"]["version"],
            env!("CARGO_PKG_VERSION")
        );

        // Another master key is refused, naming both fingerprints; the node id is stable.
        let err = audit_service::open_with(&data, Some(KEY_B))
            .await
            .err()
            .expect("a different master key must be refused");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("this data directory was created with master key fingerprint"),
            "{msg}"
        );
        assert!(!msg.contains(KEY_A) && !msg.contains(KEY_B), "{msg}");
        // The same key in base64 is the same key.
        let again =
            audit_service::open_with(&data, Some("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="))
                .await
                .unwrap();
        assert_eq!(again.node_id(), node);
        again.close().await.unwrap();
        verify_dir(&dir, None).unwrap();
    });
}

#[test]
fn master_key_file_is_created_private_and_reused() {
    let rt = common::runtime();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    rt.block_on(async {
        let a = audit_service::open_with(&data, None).await.unwrap();
        let fp = a.fingerprint().to_owned();
        a.close().await.unwrap();
        let key_file = data.join("keys/master.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim().len(), 64);
        assert_eq!(
            std::fs::read_to_string(data.join("keys/master.fingerprint"))
                .unwrap()
                .trim(),
            fp
        );
        let b = audit_service::open_with(&data, None).await.unwrap();
        assert_eq!(b.fingerprint(), fp);
        b.close().await.unwrap();
        let err = audit_service::open_with(&data, Some(KEY_B))
            .await
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains(&fp));
        verify_dir(&data.join("audit"), None).unwrap();
    });
}

struct Serve {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- gatehouse serve log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn spawn_serve(data: &Path, key: &str, log_name: &str) -> (Serve, SocketAddr, SocketAddr) {
    let (bp, ap, rp, gp, pp) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let log = data.parent().unwrap().join(log_name);
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(common::gatehouse_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .arg("--broker-listen")
        .arg(format!("127.0.0.1:{bp}"))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{ap}"))
        .arg("--registry-listen")
        .arg(format!("127.0.0.1:{rp}"))
        .arg("--gateway-listen")
        .arg(format!("127.0.0.1:{gp}"))
        .arg("--gateway-plain-listen")
        .arg(format!("127.0.0.1:{pp}"))
        .arg("--gateway-advertised-host")
        .arg("localhost")
        .env("GATEHOUSE_MASTER_KEY", key)
        .env("GATEHOUSE_ADMIN_PASSWORD", common::ADMIN_PASSWORD)
        .env_remove("GATEHOUSE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("spawn gatehouse serve");
    (
        Serve { child, log },
        SocketAddr::from(([127, 0, 0, 1], ap)),
        SocketAddr::from(([127, 0, 0, 1], rp)),
    )
}

fn audit_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::gatehouse_bin())
        .arg("audit")
        .args(args)
        .output()
        .expect("run gatehouse audit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_audits_registry_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut serve, admin, registry) = spawn_serve(&data, KEY_A, "serve-1.log");
    common::poll_until(common::START_DEADLINE, "serve /health 200", || {
        if let Ok(Some(status)) = serve.child.try_wait() {
            panic!("gatehouse serve exited with {status} before it was healthy");
        }
        matches!(common::http_get_status(admin, "/health"), Ok(200)).then_some(())
    });
    use base64::Engine;
    let via = Via::Https {
        ca: data.join("tls").join("ca.pem"),
        auth: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("admin:{}", common::ADMIN_PASSWORD))
        ),
    };
    exercise(registry, &via);

    let pid = serve.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = serve.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "serve exited with {status}");

    let dir = data.join("audit");
    let dir_s = dir.to_str().unwrap();
    let (ok, out, err) = audit_cli(&["verify", dir_s]);
    assert!(ok, "audit verify failed:\n{out}\n{err}");

    let (ok, out, err) = audit_cli(&["query", dir_s, "--method", "schema.register"]);
    assert!(ok, "audit query failed:\n{err}");
    let registers: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(registers.len(), 2, "{out}");
    assert_eq!(registers[0]["data"]["outcome"]["status"], "SUCCESS");
    assert_eq!(registers[0]["data"]["principal"], "User:admin");
    assert_eq!(registers[0]["data"]["authMechanism"], "HTTP/BASIC");
    assert_eq!(registers[1]["data"]["outcome"]["errorCode"], "40901");

    let (ok, out, err) = audit_cli(&["query", dir_s]);
    assert!(ok, "audit query failed:\n{err}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let node = std::fs::read_to_string(data.join("node-id")).unwrap();
    assert_eq!(rows(&events), expected(node.trim()));

    // Another master key: refused, with the fingerprint message.
    drop(serve);
    let (mut again, _, _) = spawn_serve(&data, KEY_B, "serve-2.log");
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = again.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < until,
            "serve with another key kept running"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(&again.log).unwrap();
    assert!(
        log.contains("this data directory was created with master key fingerprint"),
        "{log}"
    );
    assert!(!log.contains(KEY_A) && !log.contains(KEY_B));
}

/// SIGKILL during heavy auditing: a producer streams to a topic with
/// `gatehouse.audit.data.access=all` (each Produce is answered only once its audit event is
/// durable) while the server is killed. After a restart (which truncates and reports a torn
/// tail), the trail verifies and records at least every acknowledged record.
#[test]
fn sigkill_during_heavy_auditing_keeps_every_acknowledged_event() {
    use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let mut b = common::Broker::start_with(common::BrokerOptions {
        serve: true,
        ..Default::default()
    });
    let topic = common::unique("audited-stream");
    let conf = || {
        let mut c = common::client_config(&b.gateway_plain());
        c.set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanisms", "PLAIN")
            .set("sasl.username", "admin")
            .set("sasl.password", common::ADMIN_PASSWORD);
        c
    };
    let admin: AdminClient<DefaultClientContext> = conf().create().unwrap();
    let t = NewTopic::new(&topic, 1, TopicReplication::Fixed(1))
        .set("gatehouse.audit.data.access", "all");
    for r in common::runtime()
        .block_on(admin.create_topics([&t], &common::admin_opts()))
        .unwrap()
    {
        r.expect("topic created");
    }
    drop(admin);

    let acked = Arc::new(AtomicUsize::new(0));
    let producer: FutureProducer = {
        let mut c = conf();
        c.set("linger.ms", "1")
            .set("acks", "all")
            .set("message.timeout.ms", "5000")
            .set("retries", "0");
        c.create().unwrap()
    };
    let stream = {
        let acked = acked.clone();
        let topic = topic.clone();
        std::thread::spawn(move || {
            let rt = common::runtime();
            rt.block_on(async {
                // Small chunks, each awaited: many Produce requests, many audit group commits.
                for chunk in 0..2_000 {
                    let futs: Vec<_> = (0..20)
                        .map(|i| {
                            let v = format!("r-{chunk}-{i}");
                            producer
                                .send_result(FutureRecord::<(), _>::to(&topic).payload(&v))
                                .ok()
                        })
                        .collect();
                    let mut failed = false;
                    for f in futs.into_iter().flatten() {
                        match f.await {
                            Ok(Ok(_)) => {
                                acked.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => failed = true,
                        }
                    }
                    if failed {
                        break;
                    }
                }
            });
        })
    };
    // Let the stream run, then kill the server in the middle of it.
    let until = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::SeqCst) < 400 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        acked.load(Ordering::SeqCst) >= 400,
        "the stream did not start"
    );
    b.kill9();
    stream.join().unwrap();
    let acknowledged = acked.load(Ordering::SeqCst);

    // Restart (recovery of a torn tail), stop cleanly, then check offline.
    b.restart();
    b.terminate();
    let dir = b.data_dir().join("audit");
    verify_dir(&dir, None).expect("the trail verifies after the crash");
    let recorded: u64 = all_events(&dir)
        .iter()
        .filter(|e| {
            let s = e.to_string();
            s.contains("kafka.Produce") && s.contains(&topic) && s.contains("audit.data.access")
        })
        .filter_map(|e| {
            let s = e.to_string();
            let at = s.find("\"records\":\"")? + 11;
            s[at..].split('"').next()?.parse::<u64>().ok()
        })
        .sum();
    eprintln!("acknowledged {acknowledged}, recorded {recorded}");
    assert!(
        recorded >= acknowledged as u64,
        "{acknowledged} records were acknowledged but only {recorded} are in the trail"
    );
}
