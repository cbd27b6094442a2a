//! End-to-end: the schema registry (`gatehouse_registry::server::start`, in process) against
//! the real `gatehouse` broker binary. Avro, Protobuf and JSON schemas are registered over
//! HTTP and read back; an incompatible schema gets 409/40901; after `kill -9` of the broker
//! and a fresh registry instance everything is back with unchanged ids, and a hard-deleted
//! schema's id is not reused. `gatehouse serve` restarts with its local registry index
//! present, deleted and corrupted, and answers with the same ids and versions; a lookup that
//! misses while the broker is down is 500/50002, not 404.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gatehouse_registry::StoreOptions;
use gatehouse_registry::kafka::StartKind;
use gatehouse_registry::server::{RegistryServerConfig, ServerError, start, start_with_store};
use serde_json::{Value, json};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One HTTP/1.1 request over a fresh connection; returns (status, JSON body).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, rest) = text.split_once("\r\n\r\n").expect("header end");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    (status, json)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (len, rest) = s.split_once("\r\n").expect("chunk size");
        let n = usize::from_str_radix(len.trim(), 16).expect("hex size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

const AVRO_V1: &str =
    r#"{"type":"record","name":"User","namespace":"e2e","fields":[{"name":"id","type":"long"}]}"#;
const AVRO_V2: &str = r#"{"type":"record","name":"User","namespace":"e2e","fields":[{"name":"id","type":"long"},{"name":"email","type":["null","string"],"default":null}]}"#;
const AVRO_BAD: &str = r#"{"type":"record","name":"User","namespace":"e2e","fields":[{"name":"id","type":"long"},{"name":"age","type":"int"}]}"#;
const PROTO: &str = "syntax = \"proto3\";\npackage e2e;\n\nmessage Order {\n  string id = 1;\n  int64 amount = 2;\n}\n";
const JSON_SCHEMA: &str =
    r#"{"type":"object","properties":{"sku":{"type":"string"}},"required":["sku"]}"#;
const DOOMED: &str = r#"{"type":"record","name":"Doomed","fields":[{"name":"x","type":"int"}]}"#;

fn register(addr: SocketAddr, subject: &str, body: Value) -> (u16, Value) {
    http(
        addr,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(&body),
    )
}

#[test]
fn registry_survives_broker_kill9_and_restart() {
    let rt = rt();
    let mut broker = common::Broker::start();
    let t0 = Instant::now();
    let reg = common::start_registry(&rt, &broker.bootstrap());
    eprintln!("registry started (empty topic) in {:?}", t0.elapsed());
    let addr = reg.local_addr();

    let (st, v) = register(addr, "users-value", json!({"schema": AVRO_V1}));
    assert_eq!(st, 200, "{v}");
    let avro1 = v["id"].as_i64().unwrap();
    let (st, v) = register(addr, "users-value", json!({"schema": AVRO_V2}));
    assert_eq!(st, 200, "{v}");
    let avro2 = v["id"].as_i64().unwrap();
    let (st, v) = register(
        addr,
        "orders-value",
        json!({"schema": PROTO, "schemaType": "PROTOBUF"}),
    );
    assert_eq!(st, 200, "{v}");
    let proto = v["id"].as_i64().unwrap();
    let (st, v) = register(
        addr,
        "skus-value",
        json!({"schema": JSON_SCHEMA, "schemaType": "JSON"}),
    );
    assert_eq!(st, 200, "{v}");
    let json_id = v["id"].as_i64().unwrap();
    let ids = [avro1, avro2, proto, json_id];
    assert_eq!(ids, [1, 2, 3, 4]);

    // Idempotent re-registration.
    let (st, v) = register(addr, "users-value", json!({"schema": AVRO_V1}));
    assert_eq!((st, v["id"].as_i64()), (200, Some(avro1)));

    // Incompatible (new required field without default under BACKWARD).
    let (st, v) = register(addr, "users-value", json!({"schema": AVRO_BAD}));
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error_code"], 40901);

    // A schema that is hard-deleted: its id must never come back.
    let (st, v) = register(addr, "doomed-value", json!({"schema": DOOMED}));
    assert_eq!(st, 200, "{v}");
    let doomed = v["id"].as_i64().unwrap();
    assert_eq!(doomed, 5);
    let (st, _) = http(addr, "DELETE", "/subjects/doomed-value", None);
    assert_eq!(st, 200);
    let (st, v) = http(
        addr,
        "DELETE",
        "/subjects/doomed-value?permanent=true",
        None,
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = http(addr, "GET", &format!("/schemas/ids/{doomed}"), None);
    assert_eq!((st, v["error_code"].as_i64()), (404, Some(40403)));

    // Config and a soft-deleted version survive too.
    let (st, _) = http(
        addr,
        "PUT",
        "/config/skus-value",
        Some(&json!({"compatibility": "FULL"})),
    );
    assert_eq!(st, 200);

    let check = |addr: SocketAddr| {
        let (st, v) = http(addr, "GET", &format!("/schemas/ids/{avro1}"), None);
        assert_eq!(st, 200, "{v}");
        let got: Value = serde_json::from_str(v["schema"].as_str().unwrap()).unwrap();
        assert_eq!(got["name"], "User");
        let (st, v) = http(addr, "GET", &format!("/schemas/ids/{proto}"), None);
        assert_eq!(
            (st, v["schemaType"].as_str()),
            (200, Some("PROTOBUF")),
            "{v}"
        );
        assert!(v["schema"].as_str().unwrap().contains("message Order"));
        let (st, v) = http(addr, "GET", &format!("/schemas/ids/{json_id}"), None);
        assert_eq!((st, v["schemaType"].as_str()), (200, Some("JSON")), "{v}");
        let (st, v) = http(addr, "GET", "/subjects/users-value/versions/latest", None);
        assert_eq!(st, 200);
        assert_eq!(
            (v["version"].as_i64(), v["id"].as_i64()),
            (Some(2), Some(avro2))
        );
        let (st, v) = http(addr, "GET", "/subjects/orders-value/versions/1", None);
        assert_eq!((st, v["id"].as_i64()), (200, Some(proto)));
        let (st, v) = http(addr, "GET", "/subjects", None);
        assert_eq!(st, 200);
        assert_eq!(
            v,
            json!(["orders-value", "skus-value", "users-value"]),
            "doomed-value is gone"
        );
        let (st, v) = http(addr, "GET", "/config/skus-value", None);
        assert_eq!((st, v["compatibilityLevel"].as_str()), (200, Some("FULL")));
        let (st, v) = http(addr, "GET", &format!("/schemas/ids/{doomed}"), None);
        assert_eq!((st, v["error_code"].as_i64()), (404, Some(40403)));
    };
    check(addr);

    // A second registry instance on the same topic answers a miss by reading the log.
    let other = common::start_registry(&rt, &broker.bootstrap());
    check(other.local_addr());
    rt.block_on(other.shutdown()).unwrap();

    // kill -9 the broker, restart it, start a NEW registry instance.
    rt.block_on(reg.shutdown()).unwrap();
    broker.kill9();
    broker.restart();
    let t1 = Instant::now();
    let reg = common::start_registry(&rt, &broker.bootstrap());
    eprintln!(
        "registry replayed after broker restart in {:?}",
        t1.elapsed()
    );
    let addr = reg.local_addr();
    check(addr);

    // Ids continue above the hard-deleted one; re-registering the deleted schema gets a new id.
    let (st, v) = register(addr, "doomed-value", json!({"schema": DOOMED}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["id"].as_i64(), Some(6), "id {doomed} must not be reused");
    let (st, v) = http(addr, "GET", "/schemas/ids/6?fetchMaxId=true", None);
    assert_eq!((st, v["maxId"].as_i64()), (200, Some(6)), "{v}");
    rt.block_on(reg.shutdown()).unwrap();
}

#[test]
fn non_loopback_listener_is_refused() {
    let rt = rt();
    let err = rt
        .block_on(start(RegistryServerConfig {
            listen: "0.0.0.0:0".parse().unwrap(),
            bootstrap: "127.0.0.1:1".into(),
            sasl: None,
            tls: None,
            auth: None,
        }))
        .unwrap_err();
    assert!(matches!(err, ServerError::NotLoopback(_)), "{err}");
    assert!(err.to_string().contains("loopback"));
}

#[test]
fn multi_partition_schema_topic_is_refused() {
    let rt = rt();
    let broker = common::Broker::start();
    common::create_topic(
        &broker.bootstrap(),
        "_schemas",
        3,
        &[("cleanup.policy", "compact")],
    );
    let err = rt
        .block_on(start(RegistryServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            bootstrap: broker.bootstrap(),
            sasl: None,
            tls: None,
            auth: None,
        }))
        .unwrap_err();
    assert!(err.to_string().contains("3 partitions"), "{err}");
}

#[test]
fn delete_policy_schema_topic_is_refused() {
    let rt = rt();
    let broker = common::Broker::start();
    common::create_topic(
        &broker.bootstrap(),
        "_schemas",
        1,
        &[("cleanup.policy", "delete")],
    );
    let err = rt
        .block_on(start(RegistryServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            bootstrap: broker.bootstrap(),
            sasl: None,
            tls: None,
            auth: None,
        }))
        .unwrap_err();
    assert!(err.to_string().contains("cleanup.policy"), "{err}");
}

/// One HTTPS request to the `serve` registry as `admin` (trusting the serve CA).
fn https(b: &common::Broker, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    use base64::Engine;
    use std::sync::Arc;
    let config = gatehouse_gateway::tls::client_config(&b.ca_pem(), None).expect("client config");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(&config), name).expect("tls client");
    let tcp = TcpStream::connect_timeout(&b.registry_addr(), Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let payload = body.map(Value::to_string).unwrap_or_default();
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("admin:{}", common::ADMIN_PASSWORD));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic {auth}\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => panic!("read: {e}"),
    }
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, rest) = text.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn replay_lines(b: &common::Broker) -> Vec<String> {
    b.log()
        .lines()
        .filter(|l| l.contains("schema topic replayed"))
        .map(str::to_string)
        .collect()
}

#[test]
fn serve_restarts_from_its_registry_index_and_rebuilds_it() {
    let mut b = common::Broker::start_with(common::BrokerOptions {
        serve: true,
        ..Default::default()
    });
    let index_dir = b.data_dir().join("registry-index");
    // The first write waits for the registry group's first generation.
    let mut ids = Vec::new();
    for (subject, schema) in [
        ("users-value", AVRO_V1),
        ("users-value", AVRO_V2),
        ("doomed-value", DOOMED),
    ] {
        let (st, v) = https(
            &b,
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(&json!({"schema": schema})),
        );
        assert_eq!(st, 200, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    let (st, v) = https(
        &b,
        "POST",
        "/subjects/orders-value/versions",
        Some(&json!({"schema": PROTO, "schemaType": "PROTOBUF"})),
    );
    assert_eq!(st, 200, "{v}");
    ids.push(v["id"].as_i64().unwrap());
    assert_eq!(ids, [1, 2, 3, 4]);
    // A hard delete (tombstones) and a config.
    assert_eq!(https(&b, "DELETE", "/subjects/doomed-value", None).0, 200);
    let (st, v) = https(&b, "DELETE", "/subjects/doomed-value?permanent=true", None);
    assert_eq!(st, 200, "{v}");
    let (st, _) = https(
        &b,
        "PUT",
        "/config/users-value",
        Some(&json!({"compatibility": "FULL"})),
    );
    assert_eq!(st, 200);
    assert!(index_dir.is_dir(), "serve keeps its index in {index_dir:?}");

    let check = |b: &common::Broker, when: &str, skus: bool| {
        let (st, v) = https(b, "GET", "/subjects", None);
        let subjects = if skus {
            json!(["orders-value", "skus-value", "users-value"])
        } else {
            json!(["orders-value", "users-value"])
        };
        assert_eq!((st, v), (200, subjects), "{when}");
        let (st, v) = https(b, "GET", "/subjects/users-value/versions", None);
        assert_eq!((st, v), (200, json!([1, 2])), "{when}");
        for (path, id) in [
            ("/subjects/users-value/versions/1", 1),
            ("/subjects/users-value/versions/2", 2),
            ("/subjects/orders-value/versions/1", 4),
        ] {
            let (st, v) = https(b, "GET", path, None);
            assert_eq!(
                (st, v["id"].as_i64()),
                (200, Some(id)),
                "{when}: {path} {v}"
            );
        }
        let (st, v) = https(b, "GET", "/schemas/ids/3", None);
        assert_eq!((st, v["error_code"].as_i64()), (404, Some(40403)), "{when}");
        let (st, v) = https(b, "GET", "/config/users-value", None);
        assert_eq!(
            (st, v["compatibilityLevel"].as_str()),
            (200, Some("FULL")),
            "{when}"
        );
    };
    check(&b, "before any restart", false);
    assert!(
        replay_lines(&b)
            .last()
            .is_some_and(|l| l.contains("Rebuilt")),
        "the first start builds the index"
    );

    // 1. Clean restart (SIGTERM flushes the index): loaded from it, nothing read after it.
    b.terminate();
    b.restart();
    check(&b, "restart with the index", false);
    let last = replay_lines(&b).last().cloned().unwrap_or_default();
    assert!(last.contains("FromIndex"), "{last}");
    assert!(last.contains("tail: 0"), "{last}");

    // New writes continue the id sequence (the hard-deleted id stays burnt).
    let (st, v) = https(
        &b,
        "POST",
        "/subjects/skus-value/versions",
        Some(&json!({"schema": JSON_SCHEMA, "schemaType": "JSON"})),
    );
    assert_eq!((st, v["id"].as_i64()), (200, Some(5)), "{v}");

    // 2. kill -9 (the index may lag the topic): still the same answers.
    b.kill9();
    b.restart();
    check(&b, "restart after kill -9", true);
    let (st, v) = https(&b, "GET", "/schemas/ids/5", None);
    assert_eq!(st, 200, "{v}");
    assert!(
        replay_lines(&b)
            .last()
            .is_some_and(|l| l.contains("FromIndex"))
    );

    // 3. Index deleted: rebuilt from the topic.
    b.terminate();
    std::fs::remove_dir_all(&index_dir).unwrap();
    b.restart();
    check(&b, "restart without the index", true);
    let last = replay_lines(&b).last().cloned().unwrap_or_default();
    assert!(last.contains("Rebuilt"), "{last}");
    assert!(index_dir.is_dir());

    // 4. Index files overwritten with garbage: rebuilt, same answers.
    b.terminate();
    for e in std::fs::read_dir(&index_dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::write(e.path(), b"garbage").unwrap();
        }
    }
    b.restart();
    check(&b, "restart with a corrupt index", true);
    let last = replay_lines(&b).last().cloned().unwrap_or_default();
    assert!(last.contains("Rebuilt"), "{last}");
    let (st, v) = https(&b, "GET", "/schemas/ids/5", None);
    assert_eq!(st, 200, "{v}");
    b.terminate();
}

#[test]
fn a_miss_while_the_broker_is_down_is_50002_not_404() {
    let rt = rt();
    let mut broker = common::Broker::start();
    let reg = rt
        .block_on(start_with_store(
            RegistryServerConfig::plain("127.0.0.1:0".parse().unwrap(), broker.bootstrap(), None),
            StoreOptions {
                lag_bound: Duration::from_secs(2),
                ..StoreOptions::default()
            },
        ))
        .unwrap();
    let addr = reg.local_addr();
    let (st, v) = register(addr, "users-value", json!({"schema": AVRO_V1}));
    assert_eq!(st, 200, "{v}");
    let (st, v) = http(addr, "GET", "/schemas/ids/99", None);
    assert_eq!((st, v["error_code"].as_i64()), (404, Some(40403)));
    broker.kill9();
    let t = Instant::now();
    let (st, v) = http(addr, "GET", "/schemas/ids/99", None);
    assert_eq!((st, v["error_code"].as_i64()), (500, Some(50002)), "{v}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let (st, v) = http(addr, "GET", "/subjects/nobody/versions/1", None);
    assert_eq!((st, v["error_code"].as_i64()), (500, Some(50002)), "{v}");
    // What is known is still served.
    let (st, v) = http(addr, "GET", "/schemas/ids/1", None);
    assert_eq!(st, 200, "{v}");
    drop(reg);
}

/// An index built on one cluster, then pointed at another cluster's `_schemas` (a recreated
/// topic): rebuilt, never answering with the first cluster's schemas — with the new topic
/// shorter than the index and longer. The bundled broker has topic ids, so the id decides
/// here; the offset (past the high watermark, before the log start) and last-record checks
/// for brokers without ids are covered by the `kafka::index` unit tests.
#[test]
fn an_index_from_another_topic_is_rebuilt() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("registry-index");
    let plain = |b: &common::Broker| {
        RegistryServerConfig::plain("127.0.0.1:0".parse().unwrap(), b.bootstrap(), None)
    };
    let a = common::Broker::start();
    let reg = rt
        .block_on(start_with_store(
            plain(&a),
            StoreOptions::with_index(&index),
        ))
        .unwrap();
    for (i, subject) in ["a1-value", "a2-value", "a3-value"].iter().enumerate() {
        let schema = format!(r#"{{"type":"record","name":"A{i}","fields":[]}}"#);
        let (st, v) = register(reg.local_addr(), subject, json!({"schema": schema}));
        assert_eq!(st, 200, "{v}");
    }
    rt.block_on(reg.shutdown()).unwrap();
    drop(a);

    for (case, n) in [("shorter topic", 1), ("longer topic", 6)] {
        let b = common::Broker::start();
        let reg = rt.block_on(start(plain(&b))).unwrap();
        for i in 0..n {
            let schema = format!(r#"{{"type":"record","name":"B{i}","fields":[]}}"#);
            let (st, v) = register(
                reg.local_addr(),
                &format!("b{i}-value"),
                json!({"schema": schema}),
            );
            assert_eq!(st, 200, "{v}");
        }
        rt.block_on(reg.shutdown()).unwrap();
        let reg = rt
            .block_on(start_with_store(
                plain(&b),
                StoreOptions::with_index(&index),
            ))
            .unwrap();
        match reg.store().start_kind() {
            StartKind::Rebuilt(why) => eprintln!("{case}: rebuilt: {why}"),
            other => panic!("{case}: {other:?}"),
        }
        let (st, v) = http(reg.local_addr(), "GET", "/subjects", None);
        assert_eq!(st, 200);
        let subjects: Vec<String> = serde_json::from_value(v).unwrap();
        assert_eq!(subjects.len(), n, "{case}: {subjects:?}");
        assert!(
            subjects.iter().all(|s| s.starts_with('b')),
            "{case}: {subjects:?}"
        );
        rt.block_on(reg.shutdown()).unwrap();
        // Restarting on the same topic now uses the rebuilt index.
        let reg = rt
            .block_on(start_with_store(
                plain(&b),
                StoreOptions::with_index(&index),
            ))
            .unwrap();
        assert!(
            matches!(reg.store().start_kind(), StartKind::FromIndex { .. }),
            "{case}: {:?}",
            reg.store().start_kind()
        );
        rt.block_on(reg.shutdown()).unwrap();
    }
}
