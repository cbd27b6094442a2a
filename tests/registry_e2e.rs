//! End-to-end: the schema registry (`gatehouse_registry::server::start`, in process) against
//! the real `gatehouse` broker binary. Avro, Protobuf and JSON schemas are registered over
//! HTTP and read back; an incompatible schema gets 409/40901; after `kill -9` of the broker
//! and a fresh registry instance everything is back with unchanged ids, and a hard-deleted
//! schema's id is not reused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gatehouse_registry::server::{RegistryServerConfig, ServerError, start};
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
