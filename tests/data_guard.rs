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
//! * Data contracts: a schema registered over REST with a `ruleSet` (CEL `CONDITION` rule)
//!   refuses records that fail the rule, naming the rule, the schema and the subject; the
//!   refused record lands in the topic's dead-letter topic with its error headers.
//! * The PAN guard finds a card number in an Avro `long` (decoded field), and never copies it
//!   to the dead-letter topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
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
const OTHER: &str = r#"{"type":"record","name":"Payment","namespace":"shop","fields":[{"name":"amount","type":"int"}]}"#;

fn serve() -> Broker {
    Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    })
}

/// Registers `schema` under `subject` (REST over HTTPS as admin), returns its id.
fn register(b: &Broker, subject: &str, schema: &str) -> i32 {
    register_body(b, subject, json!({ "schema": schema }))
}

/// Registers a request body (schema, ruleSet, metadata) under `subject`, returns its id.
fn register_body(b: &Broker, subject: &str, body: Value) -> i32 {
    use base64::Engine;
    let body = body.to_string();
    let config = gatehouse_gateway::tls::client_config(&b.ca_pem(), None).expect("tls config");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).expect("tls client");
    let tcp = TcpStream::connect_timeout(&b.registry_addr(), Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    write!(
        s,
        "POST /subjects/{subject}/versions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic {auth}\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => panic!("read: {e}"),
    }
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("http response");
    assert!(head.contains(" 200 "), "register failed: {raw}");
    let start = rest.find('{').expect("json body");
    let end = rest.rfind('}').expect("json body");
    let v: Value = serde_json::from_str(&rest[start..=end]).unwrap();
    v["id"].as_i64().expect("id") as i32
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
    let (code, message) = create_raw(conn, topic, configs).await;
    assert_eq!(code, 0, "{message}");
}

/// CreateTopics for one topic; its error code and message.
async fn create_raw(conn: &Connection, topic: &str, configs: &[(&str, &str)]) -> (i16, String) {
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
        .send(
            CreateTopicsRequest::default()
                .with_topics(vec![t])
                .with_timeout_ms(10_000),
            None,
        )
        .await
        .expect("CreateTopics");
    r.topics
        .first()
        .map(|t| {
            (
                t.error_code,
                t.error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .unwrap_or((-1, "no topic in the answer".into()))
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
        p.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
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
        create(
            &conn,
            &topic,
            &[("confluent.value.schema.validation", "true")],
        )
        .await;
        let id = register(&b, &format!("{topic}-value"), SCHEMA);
        let other = register(&b, "payments-value", OTHER);

        // Valid records pass.
        let (code, msg, _) = produce(&conn, &topic, &[wire(id, &[0x0a]), wire(id, &[0x02])]).await;
        assert_eq!(code, 0, "{msg}");

        // Raw bytes, then an unknown id, then another subject's id: each batch refused whole.
        let (code, msg, errs) =
            produce(&conn, &topic, &[wire(id, &[0x0a]), b"hello".to_vec()]).await;
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
        let id = register(&b, &format!("{topic}-value"), SCHEMA);
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
        assert_eq!(
            r.responses[0].error_code, 0,
            "{:?}",
            r.responses[0].error_message
        );
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
        assert!(
            configs.contains_key("retention.ms"),
            "upstream configs are still there"
        );
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
fn idempotent_librdkafka_producer_goes_on_after_a_rejection() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let b = serve();
    let topic = unique("strict");
    runtime().block_on(async {
        let conn = admin_conn(&b).await;
        create(
            &conn,
            &topic,
            &[("confluent.value.schema.validation", "true")],
        )
        .await;
    });
    let id = register(&b, &format!("{topic}-value"), SCHEMA);
    let mut c = client_config(&b.gateway_tls());
    c.set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", b.ca_pem().to_str().unwrap())
        .set("sasl.mechanisms", "SCRAM-SHA-256")
        .set("sasl.username", "admin")
        .set("sasl.password", ADMIN_PASSWORD)
        .set("message.timeout.ms", "15000")
        .set("enable.idempotence", "true");
    let p: FutureProducer = c.create().unwrap();
    let send = |payload: Vec<u8>| -> Result<(), rdkafka::error::KafkaError> {
        runtime()
            .block_on(p.send(
                FutureRecord::<(), _>::to(&topic).payload(&payload),
                Duration::from_secs(15),
            ))
            .map(|_| ())
            .map_err(|(e, _)| e)
    };
    send(wire(id, &[0x02])).expect("a valid record before");
    let err = send(b"not avro".to_vec()).expect_err("refused");
    assert!(format!("{err:?}").contains("InvalidRecord"), "{err:?}");
    // The idempotent producer's sequence has a gap now; it must recover and go on.
    for i in 0..3u8 {
        send(wire(id, &[i * 2]))
            .unwrap_or_else(|e| panic!("record {i} after the rejection: {e:?}"));
    }
}

#[test]
fn pan_guard_refuses_card_numbers_without_echoing_them() {
    let b = serve();
    runtime().block_on(async {
        let conn = admin_conn(&b).await;
        let topic = unique("payments");
        create(
            &conn,
            &topic,
            &[
                ("gatehouse.pan.guard", "true"),
                ("gatehouse.pan.guard.allowlist", "6011000990139424"),
            ],
        )
        .await;
        let (code, msg, errs) = produce(
            &conn,
            &topic,
            &[
                br#"{"order":"A-17","amount":12}"#.to_vec(),
                br#"{"card":"4111 1111 1111 1111"}"#.to_vec(),
            ],
        )
        .await;
        assert_eq!(code, 87, "{msg}");
        assert_eq!(errs, vec![1]);
        assert!(
            msg.contains("card number") && msg.contains("keyed hash"),
            "{msg}"
        );
        assert!(!msg.contains("4111"), "the number is never echoed: {msg}");
        // Allowlisted look-alikes and ordinary numbers pass.
        let (code, msg, _) = produce(
            &conn,
            &topic,
            &[br#"{"order":6011000990139424,"ts":1732550400000}"#.to_vec()],
        )
        .await;
        assert_eq!(code, 0, "{msg}");
    });
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

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn encrypted_topics_hold_only_ciphertext_on_disk() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let b = serve();
    let topic = unique("cards");
    runtime().block_on(async {
        let conn = admin_conn(&b).await;
        create(&conn, &topic, &[("gatehouse.encryption", "true")]).await;
    });
    let secure = || {
        let mut c = client_config(&b.gateway_tls());
        c.set("security.protocol", "SASL_SSL")
            .set("ssl.ca.location", b.ca_pem().to_str().unwrap())
            .set("sasl.mechanisms", "SCRAM-SHA-256")
            .set("sasl.username", "admin")
            .set("sasl.password", ADMIN_PASSWORD);
        c
    };
    let mut pc = secure();
    pc.set("compression.type", "lz4").set("linger.ms", "20");
    let p: FutureProducer = pc.create().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let values: Vec<(String, String)> = (0..20)
            .map(|i| {
                (
                    format!("SECRET-PLAINTEXT-MARKER-{i:02}"),
                    format!("key-{i}"),
                )
            })
            .collect();
        let mut futs = Vec::new();
        for (v, k) in &values {
            futs.push(p.send(
                FutureRecord::to(&topic).payload(v).key(k),
                Duration::from_secs(15),
            ));
        }
        for f in futs {
            f.await.expect("delivered");
        }
        // A tombstone stays a tombstone.
        p.send(
            FutureRecord::<_, ()>::to(&topic).key("key-0"),
            Duration::from_secs(15),
        )
        .await
        .expect("tombstone");
    });
    let disk = segment_bytes(&b, &topic);
    assert!(!disk.is_empty(), "the topic has segment files");
    assert!(
        !contains(&disk, b"SECRET-PLAINTEXT-MARKER"),
        "no plaintext on disk"
    );
    assert!(
        contains(&disk, b"gatehouse.enc"),
        "records carry the envelope header"
    );

    // Consumers through the gateway read plaintext, without the gateway's headers.
    let mut cc = secure();
    cc.set("group.id", unique("g"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true");
    let c: BaseConsumer = cc.create().unwrap();
    c.subscribe(&[&topic]).unwrap();
    let mut got = Vec::new();
    let mut tombstones = 0;
    let until = std::time::Instant::now() + OP_DEADLINE;
    while got.len() + tombstones < 21 && std::time::Instant::now() < until {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("fetch");
            match m.payload() {
                Some(v) => got.push(String::from_utf8_lossy(v).to_string()),
                None => tombstones += 1,
            }
            if let Some(h) = m.headers() {
                for i in 0..h.count() {
                    assert!(
                        !h.get(i).key.starts_with("gatehouse."),
                        "gateway headers removed"
                    );
                }
            }
        }
    }
    assert_eq!(tombstones, 1);
    assert_eq!(got.len(), 20);
    assert_eq!(got[3], "SECRET-PLAINTEXT-MARKER-03");
}

#[test]
fn encrypted_batches_that_outgrow_the_limit_are_split() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let b = serve();
    let topic = unique("bulk-enc");
    runtime().block_on(async {
        let conn = admin_conn(&b).await;
        create(&conn, &topic, &[("gatehouse.encryption", "true")]).await;
    });
    let secure = || {
        let mut c = client_config(&b.gateway_plain());
        c.set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanisms", "PLAIN")
            .set("sasl.username", "admin")
            .set("sasl.password", ADMIN_PASSWORD);
        c
    };
    // Full 1 MB batches of 1,000-byte values: encrypted, each grows past the broker's limit.
    let mut pc = secure();
    pc.set("linger.ms", "200")
        .set("batch.size", "1000000")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000");
    let p: FutureProducer = pc.create().unwrap();
    let payload = vec![b'x'; 1000];
    let n = 3000;
    // Enqueue everything first (send_result does not wait), then collect the reports.
    let futs: Vec<_> = (0..n)
        .map(|_| {
            p.send_result(FutureRecord::<(), _>::to(&topic).payload(&payload))
                .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"))
        })
        .collect();
    runtime().block_on(async {
        for f in futs {
            f.await
                .expect("delivery report")
                .unwrap_or_else(|(e, _)| panic!("delivered despite the growth: {e}"));
        }
    });
    let mut cc = secure();
    cc.set("group.id", unique("g"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = cc.create().unwrap();
    c.subscribe(&[&topic]).unwrap();
    let mut got = 0;
    let until = std::time::Instant::now() + OP_DEADLINE;
    while got < n && std::time::Instant::now() < until {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            use rdkafka::message::Message;
            let m = m.expect("fetch");
            assert_eq!(m.payload().map(<[u8]>::len), Some(1000));
            got += 1;
        }
    }
    assert_eq!(got, n);

    // A topic with its own, smaller max.message.bytes: batches that fit it in clear (190 KB
    // under 200 KB) outgrow it once encrypted and are split under *its* limit, read from
    // the upstream, not under the broker default.
    let small = unique("small-enc");
    runtime().block_on(async {
        let conn = admin_conn(&b).await;
        create(
            &conn,
            &small,
            &[
                ("gatehouse.encryption", "true"),
                ("max.message.bytes", "200000"),
            ],
        )
        .await;
    });
    let mut pc = secure();
    pc.set("linger.ms", "200")
        .set("batch.size", "190000")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000");
    let p: FutureProducer = pc.create().unwrap();
    let futs: Vec<_> = (0..1000)
        .map(|_| {
            p.send_result(FutureRecord::<(), _>::to(&small).payload(&payload))
                .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"))
        })
        .collect();
    runtime().block_on(async {
        for f in futs {
            f.await
                .expect("delivery report")
                .unwrap_or_else(|(e, _)| panic!("delivered under the topic's limit: {e}"));
        }
    });
    let (low, high) = rdkafka_admin_consumer(&b)
        .fetch_watermarks(&small, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!(high - low, 1000);
}

/// Appends Avro's zig-zag varint encoding of `v`.
fn avro_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn avro_longs(values: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        avro_long(&mut out, *v);
    }
    out
}

/// The records of partition 0 of `topic` (waits until `n` are there).
fn read_records(b: &Broker, topic: &str, n: usize) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message;
    let c = rdkafka_admin_consumer(b);
    poll_until(OP_DEADLINE, "the dead-letter topic has records", || {
        c.fetch_watermarks(topic, 0, Duration::from_secs(2))
            .ok()
            .filter(|(lo, hi)| hi - lo >= n as i64)
    });
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let until = std::time::Instant::now() + OP_DEADLINE;
    while got.len() < n && std::time::Instant::now() < until {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("fetch");
            assert!(m.payload().is_some());
            got.push(m.detach());
        }
    }
    assert_eq!(got.len(), n, "records of {topic}");
    got
}

fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::{Headers, Message};
    let h = m.headers()?;
    (0..h.count())
        .map(|i| h.get(i))
        .find(|h| h.key == name)
        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).to_string()))
}

const AMOUNT_SCHEMA: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"amount","type":"long"}]}"#;

#[test]
fn cel_rules_refuse_records_and_copy_them_to_the_dead_letter_topic() {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message;
    let b = serve();
    let topic = unique("contracts");
    let dlq = format!("{topic}-dlq");
    let id = register_body(
        &b,
        &format!("{topic}-value"),
        json!({
            "schema": AMOUNT_SCHEMA,
            "ruleSet": {"domainRules": [{
                "name": "positive_amount", "kind": "CONDITION", "mode": "WRITE",
                "type": "CEL", "expr": "message.amount > 0"
            }]}
        }),
    );
    let bad = wire(id, &avro_longs(&[2, -3]));
    runtime().block_on(async {
        let conn = admin_conn(&b).await;
        create(
            &conn,
            &topic,
            &[
                ("confluent.value.schema.validation", "true"),
                ("gatehouse.dead.letter.topic", dlq.as_str()),
            ],
        )
        .await;
        // A record that passes the rule is stored.
        let (code, msg, _) = produce(&conn, &topic, &[wire(id, &avro_longs(&[1, 5]))]).await;
        assert_eq!(code, 0, "{msg}");
        // One that fails it refuses the batch, naming the rule, the schema and the subject.
        let (code, msg, errs) = produce(&conn, &topic, std::slice::from_ref(&bad)).await;
        assert_eq!(code, 87, "{msg}");
        assert_eq!(errs, vec![0]);
        assert!(
            msg.contains(&format!(
                "record fails data-quality rule 'positive_amount' (CEL: message.amount > 0) \
                 of schema {id} ({topic}-value)"
            )),
            "{msg}"
        );
        // Internal topics are refused as dead-letter topics.
        let r = conn
            .send(
                IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(&topic))
                        .with_configs(vec![
                            AlterableConfig::default()
                                .with_name(s("gatehouse.dead.letter.topic"))
                                .with_config_operation(0)
                                .with_value(Some(s("_schemas"))),
                        ]),
                ]),
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.responses[0].error_code, 40, "INVALID_CONFIG");
    });
    // Only the passing record is in the log.
    let c = rdkafka_admin_consumer(&b);
    let (lo, hi) = c
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!(hi - lo, 1, "the refused record was not stored");
    // The refused record is in the dead-letter topic, as sent, with its error.
    let [m] = <[_; 1]>::try_from(read_records(&b, &dlq, 1)).unwrap();
    assert_eq!(m.payload(), Some(bad.as_slice()));
    let error = header(&m, "__gatehouse.error").expect("error header");
    assert!(error.contains("positive_amount"), "{error}");
    assert_eq!(
        header(&m, "__gatehouse.topic").as_deref(),
        Some(topic.as_str())
    );
    assert_eq!(header(&m, "__gatehouse.partition").as_deref(), Some("0"));
    assert_eq!(header(&m, "__gatehouse.schema_id"), Some(id.to_string()));
}

#[test]
fn pan_in_an_avro_long_is_refused_and_never_dead_lettered() {
    use rdkafka::consumer::Consumer;
    let b = serve();
    let topic = unique("cards-long");
    let dlq = format!("{topic}-dlq");
    let id = register(
        &b,
        &format!("{topic}-value"),
        r#"{"type":"record","name":"Charge","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"card","type":"long"}]}"#,
    );
    runtime().block_on(async {
        let conn = admin_conn(&b).await;
        create(
            &conn,
            &topic,
            &[
                ("confluent.value.schema.validation", "true"),
                ("gatehouse.pan.guard", "true"),
                ("gatehouse.dead.letter.topic", dlq.as_str()),
            ],
        )
        .await;
        let (code, msg, _) = produce(
            &conn,
            &topic,
            &[wire(id, &avro_longs(&[7, 4_111_111_111_111_111]))],
        )
        .await;
        assert_eq!(code, 87, "{msg}");
        assert!(
            msg.contains("field 'card'")
                && msg.contains("card number")
                && msg.contains("keyed hash"),
            "{msg}"
        );
        assert!(!msg.contains("4111"), "never echoed: {msg}");
        // Ordinary longs (timestamps) pass.
        let (code, msg, _) = produce(
            &conn,
            &topic,
            &[wire(id, &avro_longs(&[7, 1_732_550_400_000]))],
        )
        .await;
        assert_eq!(code, 0, "{msg}");
    });
    std::thread::sleep(Duration::from_secs(2));
    let c = rdkafka_admin_consumer(&b);
    let copied = c
        .fetch_watermarks(&dlq, 0, Duration::from_secs(5))
        .map(|(lo, hi)| hi - lo)
        .unwrap_or(0);
    assert_eq!(
        copied, 0,
        "card data is never copied to the dead-letter topic"
    );
}

/// `gatehouse.encryption.key=true` and `gatehouse.encryption.headers=trace-id`: keys and the
/// named header are ciphertext on disk too, and come back as sent through the gateway; other
/// headers stay clear. Key encryption with `cleanup.policy=compact` is refused at creation and
/// in later config changes.
#[test]
fn keys_and_named_headers_are_encrypted_too() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let b = serve();
    let topic = unique("pii");
    let compacted = unique("pii-compact");
    let refused = runtime().block_on(async {
        let conn = admin_conn(&b).await;
        create(
            &conn,
            &topic,
            &[
                ("gatehouse.encryption", "true"),
                ("gatehouse.encryption.key", "true"),
                ("gatehouse.encryption.headers", "trace-id"),
            ],
        )
        .await;
        let refused = create_raw(
            &conn,
            &compacted,
            &[
                ("cleanup.policy", "compact"),
                ("gatehouse.encryption", "true"),
                ("gatehouse.encryption.key", "true"),
            ],
        )
        .await;
        // Later changes are refused too: compacting the key-encrypted topic (SET or APPEND),
        // or encrypting keys and compacting in one request; nothing of it is applied.
        let alter = |configs: &[(&str, i8, &str)]| {
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(&topic))
                    .with_configs(
                        configs
                            .iter()
                            .map(|(name, op, value)| {
                                AlterableConfig::default()
                                    .with_name(s(name))
                                    .with_config_operation(*op)
                                    .with_value(Some(s(value)))
                            })
                            .collect(),
                    ),
            ])
        };
        for configs in [
            &[("cleanup.policy", 0, "compact")][..],
            &[("cleanup.policy", 2, "compact")][..],
            &[("cleanup.policy", 0, "compact,delete")][..],
            &[
                ("gatehouse.encryption.key", 0, "true"),
                ("cleanup.policy", 0, "compact"),
            ][..],
        ] {
            let r = conn.send(alter(configs), None).await.unwrap();
            assert_eq!(r.responses[0].error_code, 40, "{configs:?}");
            let message = r.responses[0].error_message.as_deref().unwrap_or_default();
            assert!(message.contains("compact"), "{message}");
        }
        // Other config changes of the topic still pass.
        let r = conn
            .send(alter(&[("retention.ms", 0, "3600000")]), None)
            .await
            .unwrap();
        assert_eq!(
            r.responses[0].error_code, 0,
            "{:?}",
            r.responses[0].error_message
        );
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
        let policy = d.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == "cleanup.policy")
            .and_then(|c| c.value.as_deref().map(str::to_string));
        assert_eq!(
            policy.as_deref(),
            Some("delete"),
            "the refused change was not applied"
        );
        refused
    });
    assert_eq!(
        refused.0, 40,
        "INVALID_CONFIG for encrypted keys on a compacted topic"
    );
    assert!(refused.1.contains("compact"), "{}", refused.1);
    let secure = || {
        let mut c = client_config(&b.gateway_tls());
        c.set("security.protocol", "SASL_SSL")
            .set("ssl.ca.location", b.ca_pem().to_str().unwrap())
            .set("sasl.mechanisms", "SCRAM-SHA-256")
            .set("sasl.username", "admin")
            .set("sasl.password", ADMIN_PASSWORD);
        c
    };
    let p: FutureProducer = secure().create().unwrap();
    runtime().block_on(async {
        for i in 0..5 {
            let key = format!("CUSTOMER-KEY-MARKER-{i}");
            let value = format!("value-{i}");
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "trace-id",
                    value: Some(&format!("TRACE-SECRET-MARKER-{i}")),
                })
                .insert(Header {
                    key: "content-kind",
                    value: Some("CLEAR-HEADER-MARKER"),
                });
            p.send(
                FutureRecord::to(&topic)
                    .payload(&value)
                    .key(&key)
                    .headers(headers),
                Duration::from_secs(15),
            )
            .await
            .expect("delivered");
        }
    });
    let disk = segment_bytes(&b, &topic);
    assert!(
        !contains(&disk, b"CUSTOMER-KEY-MARKER"),
        "no plaintext key on disk"
    );
    assert!(
        !contains(&disk, b"TRACE-SECRET-MARKER"),
        "no plaintext header on disk"
    );
    assert!(
        contains(&disk, b"CLEAR-HEADER-MARKER"),
        "other headers stay clear"
    );

    let mut cc = secure();
    cc.set("group.id", unique("g"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = cc.create().unwrap();
    c.subscribe(&[&topic]).unwrap();
    let mut got = Vec::new();
    let until = std::time::Instant::now() + OP_DEADLINE;
    while got.len() < 5 && std::time::Instant::now() < until {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("fetch");
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let mut headers = Vec::new();
            if let Some(h) = m.headers() {
                for i in 0..h.count() {
                    let x = h.get(i);
                    headers.push((
                        x.key.to_string(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).to_string(),
                    ));
                }
            }
            got.push((key, headers));
        }
    }
    assert_eq!(got.len(), 5);
    for (key, headers) in got {
        let i = key
            .strip_prefix("CUSTOMER-KEY-MARKER-")
            .unwrap_or_else(|| panic!("key decrypted: {key}"));
        assert_eq!(
            headers,
            vec![
                ("trace-id".to_string(), format!("TRACE-SECRET-MARKER-{i}")),
                (
                    "content-kind".to_string(),
                    "CLEAR-HEADER-MARKER".to_string()
                ),
            ]
        );
    }
}
