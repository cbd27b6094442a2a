//! The gateway's data guard end to end (`gatehouse serve`): governance topic configs set with
//! Kafka's admin APIs, and poison pills refused before they reach the log.
//!
//! * `confluent.value.schema.validation=true` (set at CreateTopics): records without
//!   Confluent's wire format, with an unknown id, or with an id registered under another
//!   subject are refused with INVALID_RECORD, per-record errors and a message naming the
//!   record, the schema and the subject; nothing of the batch is stored (the high watermark
//!   does not move); valid records pass.
//! * `gatehouse.value.schema.validation=full` (set with IncrementalAlterConfigs): a payload
//!   that does not decode against its schema is refused; DescribeConfigs shows the setting;
//!   deleting it turns validation off again.
//! * librdkafka sees INVALID_RECORD too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use gatehouse_protocol::client::{Connection, ConnectionConfig, SaslCredentials, SaslMechanism};
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use gatehouse_protocol::messages::describe_configs_request::DescribeConfigsResource;
use gatehouse_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use gatehouse_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use gatehouse_protocol::messages::{
    CreateTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, ProduceRequest,
    ProduceResponse, TopicName,
};
use gatehouse_protocol::records::BatchBuilder;
use serde_json::{Value, json};

const SCHEMA: &str =
    r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"}]}"#;
const OTHER: &str =
    r#"{"type":"record","name":"Payment","namespace":"shop","fields":[{"name":"amount","type":"int"}]}"#;

fn serve() -> Broker {
    Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    })
}

/// Registers `schema` under `subject` (REST), returns its id.
fn register(addr: SocketAddr, subject: &str, schema: &str) -> i32 {
    let body = json!({ "schema": schema }).to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /subjects/{subject}/versions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Basic {}\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        basic_admin(),
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("http response");
    assert!(head.contains(" 200 "), "register failed: {raw}");
    let start = rest.find('{').expect("json body");
    let end = rest.rfind('}').expect("json body");
    let v: Value = serde_json::from_str(&rest[start..=end]).unwrap();
    v["id"].as_i64().expect("id") as i32
}

fn basic_admin() -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("admin:{ADMIN_PASSWORD}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

async fn create(conn: &Connection, topic: &str, configs: &[(&str, &str)]) {
    let t = CreatableTopic::default()
        .with_name(TopicName(s(topic)))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        );
    let r = conn
        .send(CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000), None)
        .await
        .expect("CreateTopics");
    for t in r.topics {
        assert_eq!(t.error_code, 0, "{:?}", t.error_message);
    }
}

fn wire(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Produces `values` in one batch; returns (error code, message, record error indexes).
async fn produce(conn: &Connection, topic: &str, values: &[Vec<u8>]) -> (i16, String, Vec<i32>) {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(None, Some(v.as_slice()), &[], 0).unwrap();
    }
    let records: Bytes = b.build().unwrap();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let resp: ProduceResponse = conn.send(req, Some(9)).await.expect("Produce");
    let p = &resp.responses[0].partition_responses[0];
    (
        p.error_code,
        p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default(),
        p.record_errors.iter().map(|e| e.batch_index).collect(),
    )
}

#[test]
fn poison_pills_never_reach_the_log() {
    let b = serve();
    let rt = runtime();
    let topic = rt.block_on(async {
        let conn = admin_conn(&b).await;
        let topic = unique("orders");
        create(&conn, &topic, &[("confluent.value.schema.validation", "true")]).await;
        let id = register(b.registry_addr(), &format!("{topic}-value"), SCHEMA);
        let other = register(b.registry_addr(), "payments-value", OTHER);

        // Valid records pass.
        let (code, msg, _) = produce(&conn, &topic, &[wire(id, &[0x0a]), wire(id, &[0x02])]).await;
        assert_eq!(code, 0, "{msg}");

        // Raw bytes, then an unknown id, then another subject's id: each batch refused whole.
        let (code, msg, errs) = produce(&conn, &topic, &[wire(id, &[0x0a]), b"hello".to_vec()]).await;
        assert_eq!(code, 87, "INVALID_RECORD: {msg}");
        assert_eq!(errs, vec![1], "record 1 is the bad one");
        assert!(msg.contains("record 1"), "{msg}");
        let (code, msg, _) = produce(&conn, &topic, &[wire(999_999, &[0x0a])]).await;
        assert_eq!(code, 87);
        assert!(msg.contains("999999"), "{msg}");
        let (code, msg, _) = produce(&conn, &topic, &[wire(other, &[0x02])]).await;
        assert_eq!(code, 87);
        assert!(
            msg.contains("payments-value") && msg.contains(&format!("{topic}-value")),
            "the message names both subjects: {msg}"
        );
        // Schema-id mode does not decode: a truncated payload passes...
        let (code, msg, _) = produce(&conn, &topic, &[wire(id, &[])]).await;
        assert_eq!(code, 0, "{msg}");
        topic
    });
    // Three valid records were stored, nothing else.
    use rdkafka::consumer::Consumer;
    let c = rdkafka_admin_consumer(&b);
    let (lo, hi) = c
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!(hi - lo, 3, "only the valid records are in the log");
}

fn rdkafka_admin_consumer(b: &Broker) -> rdkafka::consumer::BaseConsumer {
    let mut c = client_config(&b.gateway_plain());
    c.set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", "admin")
        .set("sasl.password", ADMIN_PASSWORD)
        .set("group.id", unique("g"));
    c.create().expect("consumer")
}

#[test]
fn full_validation_is_set_and_read_with_admin_apis() {
    let b = serve();
    let rt = runtime();
    rt.block_on(async {
        let conn = admin_conn(&b).await;
        let topic = unique("events");
        create(&conn, &topic, &[]).await;
        let id = register(b.registry_addr(), &format!("{topic}-value"), SCHEMA);
        // No policy yet: anything goes.
        let (code, _, _) = produce(&conn, &topic, &[b"raw".to_vec()]).await;
        assert_eq!(code, 0);
        // Turn on full validation with IncrementalAlterConfigs.
        let alter = |op: i8, value: Option<&str>| {
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(&topic))
                    .with_configs(vec![
                        AlterableConfig::default()
                            .with_name(s("gatehouse.value.schema.validation"))
                            .with_config_operation(op)
                            .with_value(value.map(s)),
                    ]),
            ])
        };
        let r = conn.send(alter(0, Some("full")), None).await.unwrap();
        assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
        // A bad value is refused with INVALID_CONFIG.
        let r = conn.send(alter(0, Some("sometimes")), None).await.unwrap();
        assert_eq!(r.responses[0].error_code, 40);
        // DescribeConfigs shows it.
        let d = conn
            .send(
                DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(&topic)),
                ]),
                None,
            )
            .await
            .unwrap();
        let configs: HashMap<String, Option<String>> = d.results[0]
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        assert_eq!(
            configs.get("gatehouse.value.schema.validation"),
            Some(&Some("full".to_string())),
            "{configs:?}"
        );
        assert!(configs.contains_key("retention.ms"), "upstream configs are still there");
        // Full mode decodes: a truncated Avro long is refused, a good one passes.
        let (code, msg, _) = produce(&conn, &topic, &[wire(id, &[])]).await;
        assert_eq!(code, 87, "{msg}");
        assert!(msg.contains("does not match schema"), "{msg}");
        let (code, msg, _) = produce(&conn, &topic, &[wire(id, &[0x0a])]).await;
        assert_eq!(code, 0, "{msg}");
        // Deleting the setting turns validation off.
        let r = conn.send(alter(1, None), None).await.unwrap();
        assert_eq!(r.responses[0].error_code, 0);
        let (code, _, _) = produce(&conn, &topic, &[b"raw again".to_vec()]).await;
        assert_eq!(code, 0);
    });
}

#[test]
fn librdkafka_sees_invalid_record() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let b = serve();
    let topic = unique("strict");
    runtime().block_on(async {
        let conn = admin_conn(&b).await;
        create(&conn, &topic, &[("confluent.value.schema.validation", "true")]).await;
    });
    let mut c = client_config(&b.gateway_tls());
    c.set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", b.ca_pem().to_str().unwrap())
        .set("sasl.mechanisms", "SCRAM-SHA-256")
        .set("sasl.username", "admin")
        .set("sasl.password", ADMIN_PASSWORD)
        .set("message.timeout.ms", "10000")
        .set("enable.idempotence", "true");
    let p: FutureProducer = c.create().unwrap();
    let err = runtime()
        .block_on(p.send(
            FutureRecord::<(), _>::to(&topic).payload("not avro"),
            Duration::from_secs(10),
        ))
        .expect_err("refused");
    assert!(format!("{:?}", err.0).contains("InvalidRecord"), "{:?}", err.0);
}
