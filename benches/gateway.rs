//! The gateway's cost: `cargo bench --bench gateway` (or `scripts/bench-gateway.sh`).
//!
//! One release `gatehouse serve --broker-open --log-flush os` (so disk noise does not hide the
//! gateway's cost), and the same librdkafka producer/consumer run three ways in one command:
//!
//! 1. `direct`: plaintext straight to the bundled broker (the baseline);
//! 2. `gw-plain`: through the gateway's plaintext listener, SASL/PLAIN as a super user;
//! 3. `gw-tls-scram-acl`: through the TLS listener with SCRAM-SHA-512 as an ordinary user
//!    whose every request is checked against prefixed ACLs.
//!
//! First the memory of 1,000 idle authenticated client connections (the process's RSS before
//! and after, measured before anything else runs); then throughput; then produce latency at
//! half of the direct 1 KiB peak with acks=1 and the throughput runs' producer settings (p50/p99
//! per record from send to delivery report, direct vs TLS + SCRAM + ACLs). Prints the ratios the project tracks: TLS + auth + ACLs
//! at >= 0.8 of direct throughput, added p99 produce latency < 1 ms. No assertion: it reports.
//!
//! Environment: `BENCH_MIB` (data per run, default 256).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Broker, BrokerOptions, client_config, runtime};
use gatehouse_protocol::client::{Connection, ConnectionConfig, SaslCredentials, SaslMechanism};
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use gatehouse_protocol::messages::create_acls_request::AclCreation;
use gatehouse_protocol::messages::{AlterUserScramCredentialsRequest, CreateAclsRequest};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

const PARTITIONS: i32 = 4;
const MIB: f64 = 1024.0 * 1024.0;
const USER: &str = "bench-user";
const USER_PASSWORD: &str = "bench-user-password";

fn main() {
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    // BENCH_DIR=/dev/shm/... keeps the broker's log in memory: disk write-back stalls then
    // stop swinging the throughput figures, which should show the gateway's CPU cost.
    let base = std::env::var_os("BENCH_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-gateway"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&base).expect("bench dir");
    let b = Broker::start_with(BrokerOptions {
        serve: true,
        log_flush: Some("os"),
        base_dir: Some(base),
        log_level: Some("warn"),
        extra_args: vec!["--broker-open".into()],
        ..Default::default()
    });
    if let Some(pid) = b.pid() {
        let _ = SERVER_PID.set(pid);
    }
    setup_user(&b);
    let direct = || client_config(&b.bootstrap());
    let plain = || {
        let mut c = client_config(&b.gateway_plain());
        c.set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanisms", "PLAIN")
            .set("sasl.username", "admin")
            .set("sasl.password", ADMIN_PASSWORD);
        c
    };
    let secure = || {
        let mut c = client_config(&b.gateway_tls());
        c.set("security.protocol", "SASL_SSL")
            .set("ssl.ca.location", b.ca_pem().to_str().expect("utf-8 path"))
            .set("sasl.mechanisms", "SCRAM-SHA-512")
            .set("sasl.username", USER)
            .set("sasl.password", USER_PASSWORD);
        c
    };
    // `BENCH_ONLY=guard` runs the data-guard comparison alone (it has its own baseline).
    if std::env::var("BENCH_ONLY").as_deref() == Ok("guard") {
        print_guard(&data_guard(&b, &plain, mib));
        return;
    }
    // Before the throughput runs, so the allocator has not grown yet.
    idle_connections(&b, 1000);
    println!(
        "gateway bench: {mib} MiB per run, {PARTITIONS} partitions, acks=all, linger 5 ms, --log-flush os"
    );
    let mut rows = Vec::new();
    for size in [1024usize, 16 * 1024] {
        for (label, cfg) in [
            ("direct", &direct as &dyn Fn() -> ClientConfig),
            ("gw-plain", &plain),
            ("gw-tls-scram-acl", &secure),
        ] {
            let r = run(label, cfg(), &b, size, mib);
            rows.push(r);
        }
    }
    println!(
        "\n{:<18} {:>7} {:>13} {:>13} {:>13}",
        "path", "record", "produce MB/s", "consume MB/s", "vs direct"
    );
    for r in &rows {
        let d = rows
            .iter()
            .find(|x| x.label == "direct" && x.size == r.size)
            .map_or(1.0, |d| d.produce_mbps);
        println!(
            "{:<18} {:>6}K {:>13.1} {:>13.1} {:>12.2}x",
            r.label,
            r.size / 1024,
            r.produce_mbps,
            r.consume_mbps,
            r.produce_mbps / d
        );
    }
    print_guard(&data_guard(&b, &plain, mib));
    // Latency at half of the direct 1 KiB peak, acks=1.
    let peak = rows
        .iter()
        .find(|x| x.label == "direct" && x.size == 1024)
        .map_or(10_000.0, |r| r.produce_rps);
    let rate = (peak / 2.0).max(100.0);
    let (d50, d99) = latency("direct", direct(), &b, rate);
    let (g50, g99) = latency("gw-tls-scram-acl", secure(), &b, rate);
    // The same at half of the secure path's own 1 KiB peak (the rate above can exceed it).
    let secure_peak = rows
        .iter()
        .find(|x| x.label == "gw-tls-scram-acl" && x.size == 1024)
        .map_or(10_000.0, |r| r.produce_rps);
    let rate2 = (secure_peak / 2.0).max(100.0);
    let (d50b, d99b) = latency("direct", direct(), &b, rate2);
    let (g50b, g99b) = latency("gw-tls-scram-acl", secure(), &b, rate2);
    println!(
        "\nproduce latency at {rate2:.0} rec/s (half of the secure path's peak), acks=1, 1 KiB:\n  direct           p50 {d50b:.3} ms  p99 {d99b:.3} ms\n  gw-tls-scram-acl p50 {g50b:.3} ms  p99 {g99b:.3} ms\n  added p99 = {:.3} ms (goal < 1 ms) {}",
        g99b - d99b,
        if g99b - d99b < 1.0 { "met" } else { "NOT met" }
    );
    println!(
        "\nproduce latency at {rate:.0} rec/s (half of direct peak), acks=1, 1 KiB:\n  direct           p50 {d50:.3} ms  p99 {d99:.3} ms\n  gw-tls-scram-acl p50 {g50:.3} ms  p99 {g99:.3} ms\n  added p99 = {:.3} ms (goal < 1 ms) {}",
        g99 - d99,
        if g99 - d99 < 1.0 { "met" } else { "NOT met" }
    );
    for size in [1024usize, 16 * 1024] {
        let get = |l: &str| {
            rows.iter()
                .find(|x| x.label == l && x.size == size)
                .map(|r| r.produce_mbps)
        };
        if let (Some(d), Some(s)) = (get("direct"), get("gw-tls-scram-acl")) {
            let ratio = s / d;
            println!(
                "{:>2}K: TLS + SCRAM + ACLs / direct = {ratio:.2}x (goal >= 0.8x) {}",
                size / 1024,
                if ratio >= 0.8 { "met" } else { "NOT met" }
            );
        }
    }
}

/// The data-guard rows as ratios against the first (no policy) row of the same run.
fn print_guard(guard: &[Row]) {
    let base = guard.first().map_or(1.0, |r| r.produce_mbps);
    let base_c = guard.first().map_or(1.0, |r| r.consume_mbps);
    let cpu_p = guard.first().map_or(1.0, |r| r.produce_cpu_ms_per_mib);
    let cpu_c = guard.first().map_or(1.0, |r| r.consume_cpu_ms_per_mib);
    println!(
        "\ndata guard (1 KiB Avro, through the gateway, plaintext SASL; median of the rounds).\n\
         Throughput swings with scheduling on 2 shared cores; the server's CPU per MiB is the\n\
         steadier figure: its inverse is the throughput a CPU-bound server keeps (\"capacity\")."
    );
    for r in guard {
        println!(
            "  {:<16} produce {:>7.1} MB/s ({:.2}x), capacity {:.2}x | consume {:>7.1} MB/s ({:.2}x), capacity {:.2}x",
            r.label,
            r.produce_mbps,
            r.produce_mbps / base,
            cpu_p / r.produce_cpu_ms_per_mib,
            r.consume_mbps,
            r.consume_mbps / base_c,
            cpu_c / r.consume_cpu_ms_per_mib
        );
    }
}

/// The ordinary user the secure path signs in as, with prefixed ACLs on `bench` topics and
/// groups (so every request is really checked).
fn setup_user(b: &Broker) {
    runtime().block_on(async {
        let conn = Connection::connect(
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
        .expect("admin connection");
        let salt = b"bench-salt-01234".to_vec();
        let mut salted = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<sha2::Sha512>(USER_PASSWORD.as_bytes(), &salt, 4096, &mut salted);
        let r = conn
            .send(
                AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                    ScramCredentialUpsertion::default()
                        .with_name(StrBytes::from_static_str(USER))
                        .with_mechanism(2)
                        .with_iterations(4096)
                        .with_salt(salt.into())
                        .with_salted_password(salted.to_vec().into()),
                ]),
                None,
            )
            .await
            .expect("user");
        assert!(r.results.iter().all(|x| x.error_code == 0));
        // (resource type, name, pattern, operation): prefixed "bench" topics and groups.
        let acls = [
            (2i8, "bench", 4i8, 4i8),
            (2, "bench", 4, 3),
            (2, "bench", 4, 5),
            (3, "bench", 4, 3),
        ];
        let creations = acls
            .iter()
            .map(|(rt, name, pt, op)| {
                AclCreation::default()
                    .with_resource_type(*rt)
                    .with_resource_name(StrBytes::from_static_str(name))
                    .with_resource_pattern_type(*pt)
                    .with_principal(StrBytes::from_string(format!("User:{USER}")))
                    .with_host(StrBytes::from_static_str("*"))
                    .with_operation(*op)
                    .with_permission_type(3)
            })
            .collect();
        let r = conn
            .send(CreateAclsRequest::default().with_creations(creations), None)
            .await
            .expect("acls");
        assert!(r.results.iter().all(|x| x.error_code == 0));
    });
}

struct Row {
    label: &'static str,
    size: usize,
    produce_mbps: f64,
    produce_rps: f64,
    consume_mbps: f64,
    /// CPU time of the `serve` process (gateway + broker + registry) per MiB produced.
    produce_cpu_ms_per_mib: f64,
    /// The same while consuming.
    consume_cpu_ms_per_mib: f64,
}

/// The `serve` process whose CPU time the runs measure.
static SERVER_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// CPU time so far of every thread of the `serve` process, in milliseconds (Linux
/// `schedstat`, nanosecond resolution; 0 where it cannot be read).
fn server_cpu_ms() -> f64 {
    let Some(pid) = SERVER_PID.get() else {
        return 0.0;
    };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e6
}

#[derive(Clone)]
struct Ctx(Arc<Counting>);
struct Counting {
    ok: AtomicU64,
    failed: AtomicU64,
    latencies: Mutex<Vec<f64>>,
}
impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, r: &DeliveryResult<'_>, sent: Box<Instant>) {
        match r {
            Ok(_) => {
                self.0.ok.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = self.0.latencies.lock() {
                    l.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn create_topic(b: &Broker, name: &str) {
    use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let a: AdminClient<DefaultClientContext> =
        client_config(&b.bootstrap()).create().expect("admin");
    let t = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1));
    let res = runtime()
        .block_on(a.create_topics([&t], &common::admin_opts()))
        .expect("CreateTopics");
    for r in res {
        if let Err((topic, code)) = r {
            panic!("create topic {topic}: {code:?}");
        }
    }
    common::wait_topic_visible(&b.bootstrap(), name, PARTITIONS);
}

fn run(label: &'static str, cfg: ClientConfig, b: &Broker, size: usize, mib: usize) -> Row {
    let topic = common::unique(&format!("bench-{label}-{}k", size / 1024));
    create_topic(b, &topic);
    let payload: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 23) as u8)
        .collect();
    run_on(label, cfg, &topic, payload, mib)
}

/// Creates `topic` through the gateway (so governance configs apply) as admin.
fn create_governed_topic(b: &Broker, topic: &str, configs: &[(&str, &str)]) {
    use gatehouse_protocol::messages::CreateTopicsRequest;
    use gatehouse_protocol::messages::create_topics_request::{
        CreatableTopic, CreatableTopicConfig,
    };
    runtime().block_on(async {
        let conn = admin_conn(b).await;
        let t = CreatableTopic::default()
            .with_name(gatehouse_protocol::messages::TopicName(
                StrBytes::from_string(topic.to_string()),
            ))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            );
        let r = conn
            .send(
                CreateTopicsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(30_000),
                None,
            )
            .await
            .expect("CreateTopics");
        assert!(r.topics.iter().all(|t| t.error_code == 0), "{:?}", r.topics);
    });
    common::wait_topic_visible(&b.bootstrap(), topic, PARTITIONS);
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

/// Registers an Avro schema `{data: bytes}` under `subject` (HTTPS, admin); returns its id.
fn register_blob_schema(b: &Broker, subject: &str) -> i32 {
    use std::io::{Read, Write};
    let schema = r#"{"type":"record","name":"Blob","namespace":"bench","fields":[{"name":"data","type":"bytes"}]}"#;
    let body = serde_json::json!({ "schema": schema }).to_string();
    let config = gatehouse_gateway::tls::client_config(&b.ca_pem(), None).expect("tls config");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).expect("tls client");
    let tcp = std::net::TcpStream::connect(b.registry_addr()).expect("registry");
    let mut s = rustls::StreamOwned::new(conn, tcp);
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    write!(
        s,
        "POST /subjects/{subject}/versions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let json = &text[text.find('{').expect("json")..=text.rfind('}').expect("json")];
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    v["id"].as_i64().expect("id") as i32
}

/// A 1 KiB Confluent-framed Avro record `{data: bytes}` for schema `id`.
fn blob_record(id: i32, size: usize) -> Vec<u8> {
    let data_len = size - 5 - 2;
    let mut v = vec![0u8];
    v.extend_from_slice(&id.to_be_bytes());
    // Avro bytes: zigzag varint length, then the bytes.
    let mut n = (data_len as u64) << 1;
    while n >= 0x80 {
        v.push((n as u8) | 0x80);
        n >>= 7;
    }
    v.push(n as u8);
    v.extend((0..data_len).map(|i| (i % 251) as u8));
    v
}

/// The data guard's cost: the same 1 KiB Avro records through the gateway (plaintext SASL)
/// to topics with no policy, schema-id validation, full validation, full validation with
/// encryption, and every data access audited (`gatehouse.audit.data.access=all`).
fn data_guard(b: &Broker, cfg: &dyn Fn() -> ClientConfig, mib: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    // The baseline runs first and again last: a drift between the two (page cache, allocator
    // growth, a noisy neighbour) shows in the same table instead of passing for policy cost.
    let modes: [(&'static str, &[(&str, &str)]); 6] = [
        ("guard-none", &[]),
        (
            "guard-schema-id",
            &[("confluent.value.schema.validation", "true")],
        ),
        (
            "guard-full",
            &[("gatehouse.value.schema.validation", "full")],
        ),
        (
            "guard-full-enc",
            &[
                ("gatehouse.value.schema.validation", "full"),
                ("gatehouse.encryption", "true"),
            ],
        ),
        (
            "audit-all-access",
            &[("gatehouse.audit.data.access", "all")],
        ),
        ("guard-none-again", &[]),
    ];
    // Short runs through one gateway swing by ±30% from run to run, so every mode runs
    // `BENCH_ROUNDS` times (default 3), the modes interleaved, and the median counts.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    // BENCH_MODES=guard-none,guard-full-enc runs only the named modes (for profiling).
    let only = std::env::var("BENCH_MODES").ok();
    let modes: Vec<_> = modes
        .into_iter()
        .filter(|(l, _)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|m| m == *l))
        })
        .collect();
    let mut runs: Vec<Vec<Row>> = modes.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (label, configs)) in modes.iter().enumerate() {
            let topic = common::unique(&format!("bench-{label}"));
            create_governed_topic(b, &topic, configs);
            let id = register_blob_schema(b, &format!("{topic}-value"));
            runs[i].push(run_on(label, cfg(), &topic, blob_record(id, 1024), mib));
        }
    }
    for (i, (label, _)) in modes.iter().enumerate() {
        let median = |f: fn(&Row) -> f64| {
            let mut v: Vec<f64> = runs[i].iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        rows.push(Row {
            label,
            size: 1024,
            produce_mbps: median(|r| r.produce_mbps),
            produce_rps: median(|r| r.produce_rps),
            consume_mbps: median(|r| r.consume_mbps),
            produce_cpu_ms_per_mib: median(|r| r.produce_cpu_ms_per_mib),
            consume_cpu_ms_per_mib: median(|r| r.consume_cpu_ms_per_mib),
        });
    }
    rows
}

fn run_on(
    label: &'static str,
    mut cfg: ClientConfig,
    topic: &str,
    payload: Vec<u8>,
    mib: usize,
) -> Row {
    let topic = topic.to_string();
    let size = payload.len();
    let count = mib * (1 << 20) / size;
    let bytes = (count * size) as f64;
    let counting = Arc::new(Counting {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
    });
    let mut ccfg = cfg.clone();
    cfg.set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1048576")
        .set("compression.type", "none")
        .set("queue.buffering.max.kbytes", "524288")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000");
    let producer: ThreadedProducer<Ctx> = cfg
        .create_with_context(Ctx(counting.clone()))
        .expect("producer");
    let cpu0 = server_cpu_ms();
    let t = Instant::now();
    for i in 0..count {
        let mut rec: BaseRecord<'_, (), [u8], Box<Instant>> =
            BaseRecord::with_opaque_to(&topic, Box::new(Instant::now())).payload(&payload[..]);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => panic!("{label}: send record {i}: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(180)).expect("flush");
    let produce_secs = t.elapsed().as_secs_f64();
    let produce_cpu = server_cpu_ms() - cpu0;
    assert_eq!(
        counting.failed.load(Ordering::Relaxed),
        0,
        "{label}: failed deliveries"
    );
    drop(producer);
    ccfg.set("group.id", common::unique("bench"))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "16777216")
        .set("fetch.wait.max.ms", "10");
    let consumer: BaseConsumer = ccfg.create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .expect("tpl");
    }
    let cpu0 = server_cpu_ms();
    let t = Instant::now();
    consumer.assign(&tpl).expect("assign");
    let mut got = 0usize;
    let deadline = t + Duration::from_secs(180);
    while got < count {
        assert!(
            Instant::now() < deadline,
            "{label}: consumed {got} of {count}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.unwrap_or_else(|e| panic!("{label}: consume: {e}"));
            got += 1;
        }
    }
    let consume_secs = t.elapsed().as_secs_f64();
    let consume_cpu = server_cpu_ms() - cpu0;
    let mibs = bytes / MIB;
    let row = Row {
        label,
        size,
        produce_mbps: mibs / produce_secs,
        produce_rps: count as f64 / produce_secs,
        consume_mbps: mibs / consume_secs,
        produce_cpu_ms_per_mib: produce_cpu / mibs,
        consume_cpu_ms_per_mib: consume_cpu / mibs,
    };
    println!(
        "{label:<18} {:>2}K: produce {:>8.1} MB/s {:>9.0} rec/s {:>6.2} server-CPU-ms/MiB | consume {:>8.1} MB/s {:>6.2} server-CPU-ms/MiB",
        size / 1024,
        row.produce_mbps,
        row.produce_rps,
        row.produce_cpu_ms_per_mib,
        row.consume_mbps,
        row.consume_cpu_ms_per_mib
    );
    row
}

/// Per-record produce latency (send to delivery report) at a fixed rate for 5 seconds.
fn latency(label: &str, mut cfg: ClientConfig, b: &Broker, rate: f64) -> (f64, f64) {
    let topic = common::unique(&format!("bench-lat-{label}"));
    create_topic(b, &topic);
    let counting = Arc::new(Counting {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
    });
    // The throughput runs' producer settings (linger 5 ms), acks=1.
    cfg.set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1048576")
        .set("compression.type", "none");
    let producer: ThreadedProducer<Ctx> = cfg
        .create_with_context(Ctx(counting.clone()))
        .expect("producer");
    let payload = vec![7u8; 1024];
    // Warm up the connections.
    let warm: BaseRecord<'_, (), [u8], Box<Instant>> =
        BaseRecord::with_opaque_to(&topic, Box::new(Instant::now())).payload(&payload[..]);
    let _ = producer.send(warm);
    producer.flush(Duration::from_secs(30)).expect("flush");
    if let Ok(mut l) = counting.latencies.lock() {
        l.clear();
    }
    let total = (rate * 5.0) as u64;
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let mut rec: BaseRecord<'_, (), [u8], Box<Instant>> =
            BaseRecord::with_opaque_to(&topic, Box::new(Instant::now())).payload(&payload[..]);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let mut l = counting
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (pct(0.50), pct(0.99))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Opens `n` authenticated, idle client connections and reports the server's RSS growth.
fn idle_connections(b: &Broker, n: usize) {
    let Some(pid) = b.pid() else {
        return;
    };
    let before = rss_kib(pid).unwrap_or(0);
    let conns = runtime().block_on(async {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let c = Connection::connect(
                b.gateway_plain().as_str(),
                ConnectionConfig {
                    sasl: Some(SaslCredentials::plain("admin", ADMIN_PASSWORD)),
                    ..Default::default()
                },
            )
            .await
            .expect("idle connection");
            v.push(c);
        }
        v
    });
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(pid).unwrap_or(0);
    println!(
        "\n{n} idle authenticated connections: server RSS {:.1} MiB -> {:.1} MiB ({:.1} KiB per connection)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / n as f64
    );
    drop(conns);
}
