//! Shared harness for the end-to-end tests: runs the real `gatehouse` binary as a child
//! process on free loopback ports with a temporary data directory, and gives the tests
//! ready-made real Kafka clients (rdkafka) plus a raw Kafka-protocol connection
//! (`kafka-protocol` messages over a `TcpStream`) for hand-made requests.
//!
//! Every wait here is a poll against a deadline; nothing sleeps a fixed time.
//! When a test panics, the broker's captured stderr is printed by `Drop`.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tempfile::TempDir;

/// How long a broker gets to answer `/health` with 200 after it was spawned.
pub const START_DEADLINE: Duration = Duration::from_secs(60);
/// Default deadline for one client operation (produce all, consume all, admin call).
pub const OP_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The broker process
// ---------------------------------------------------------------------------------------------

/// Options for `Broker::start_with`.
#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    /// `--log-flush durable|os`; `None` leaves the broker's default (durable).
    pub log_flush: Option<&'static str>,
    /// `--auto-create-topics true`.
    pub auto_create_topics: bool,
    /// Any further arguments, appended as given.
    pub extra_args: Vec<String>,
    /// Where to create the temporary directory (default: the system temp dir).
    pub base_dir: Option<PathBuf>,
    /// `RUST_LOG` for the broker when the environment does not set one (default `info`).
    pub log_level: Option<&'static str>,
    /// Run `gatehouse serve` (broker + registry + gateway) instead of `gatehouse broker`,
    /// with the admin password [`ADMIN_PASSWORD`] and a fixed test master key.
    pub serve: bool,
}

/// The `admin` super user's password under `serve` in the tests.
pub const ADMIN_PASSWORD: &str = "admin-secret-for-tests";
/// The master key the tests give `serve` (hex, 32 bytes).
pub const TEST_MASTER_KEY: &str =
    "4242424242424242424242424242424242424242424242424242424242424242";

/// A running `gatehouse broker` child process. Killed (SIGKILL) on drop.
pub struct Broker {
    /// Removed on drop unless the test failed (then kept for inspection).
    dir: Option<TempDir>,
    root: PathBuf,
    bin: PathBuf,
    broker_port: u16,
    admin_port: u16,
    gateway_port: u16,
    plain_port: u16,
    registry_port: u16,
    options: BrokerOptions,
    child: Option<Child>,
    starts: usize,
}

/// The binary under test: `GATEHOUSE_BIN` when set (e.g. a release build), else the
/// binary Cargo built for this test run.
pub fn gatehouse_bin() -> PathBuf {
    match std::env::var_os("GATEHOUSE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_gatehouse")),
    }
}

/// A currently free TCP port on 127.0.0.1 (bind port 0, read it back, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

impl Broker {
    /// Starts a broker with default options and waits until `/health` answers 200.
    pub fn start() -> Broker {
        Broker::start_with(BrokerOptions::default())
    }

    pub fn start_with(options: BrokerOptions) -> Broker {
        let mut builder = tempfile::Builder::new();
        builder.prefix("gatehouse-e2e-");
        let dir = match &options.base_dir {
            Some(base) => {
                fs::create_dir_all(base).expect("create base dir");
                builder.tempdir_in(base)
            }
            None => builder.tempdir(),
        }
        .expect("create temp dir");
        fs::create_dir_all(dir.path().join("data")).expect("create data dir");
        let root = dir.path().to_path_buf();
        let mut broker = Broker {
            dir: Some(dir),
            root,
            bin: gatehouse_bin(),
            broker_port: free_port(),
            admin_port: free_port(),
            gateway_port: free_port(),
            plain_port: free_port(),
            registry_port: free_port(),
            options,
            child: None,
            starts: 0,
        };
        broker.spawn_and_wait();
        broker
    }

    /// `127.0.0.1:PORT` of the Kafka listener (the clients' bootstrap list).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    pub fn broker_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.broker_port))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin_port))
    }

    /// Under `serve`: the gateway's TLS listener.
    pub fn gateway_tls(&self) -> String {
        format!("localhost:{}", self.gateway_port)
    }

    /// Under `serve`: the gateway's plaintext (SASL) listener.
    pub fn gateway_plain(&self) -> String {
        format!("127.0.0.1:{}", self.plain_port)
    }

    /// Under `serve`: the gateway's plaintext listener as a socket address.
    pub fn gateway_plain_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.plain_port))
    }

    /// Under `serve`: the gateway's TLS listener as a socket address.
    pub fn gateway_tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.gateway_port))
    }

    /// Under `serve`: the registry's address.
    pub fn registry_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.registry_port))
    }

    /// Under `serve`: the CA certificate clients trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.data_dir().join("tls").join("ca.pem")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.as_path().join("data")
    }

    /// A scratch directory that lives as long as the broker (outside the data dir).
    pub fn scratch_dir(&self) -> &Path {
        self.root.as_path()
    }

    fn log_path(&self) -> PathBuf {
        self.root.as_path().join("broker-stderr.log")
    }

    /// Everything the broker wrote to stdout/stderr so far, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `max_lines` lines of the broker log (for failure messages).
    pub fn log_tail(&self, max_lines: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let skip = lines.len().saturating_sub(max_lines);
        let mut out = String::new();
        if skip > 0 {
            out.push_str(&format!(
                "[... {skip} earlier lines in {} ...]\n",
                self.log_path().display()
            ));
        }
        for l in &lines[skip..] {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    fn spawn_and_wait(&mut self) {
        self.starts += 1;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open broker log");
        let mut header = log.try_clone().expect("clone log handle");
        let _ = writeln!(header, "===== gatehouse start #{} =====", self.starts);
        let mut cmd = Command::new(&self.bin);
        if self.options.serve {
            cmd.arg("serve")
                .arg("--gateway-listen")
                .arg(format!("127.0.0.1:{}", self.gateway_port))
                .arg("--gateway-plain-listen")
                .arg(format!("127.0.0.1:{}", self.plain_port))
                .arg("--gateway-advertised-host")
                .arg("localhost")
                .arg("--registry-listen")
                .arg(format!("127.0.0.1:{}", self.registry_port))
                .env("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("GATEHOUSE_MASTER_KEY", TEST_MASTER_KEY);
        } else {
            cmd.arg("broker");
        }
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .arg("--broker-listen")
            .arg(format!("127.0.0.1:{}", self.broker_port))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", self.admin_port));
        if let Some(mode) = self.options.log_flush {
            cmd.arg("--log-flush").arg(mode);
        }
        if self.options.auto_create_topics {
            cmd.arg("--auto-create-topics").arg("true");
        }
        cmd.args(&self.options.extra_args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", self.options.log_level.unwrap_or("info"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot spawn {} (build it with `cargo build --bin gatehouse`): {e}",
                self.bin.display()
            )
        });
        self.child = Some(child);
        self.wait_healthy(START_DEADLINE);
    }

    /// Polls `GET /health` until it answers 200; panics (with the broker log) at the
    /// deadline or when the process exits first.
    pub fn wait_healthy(&mut self, deadline: Duration) {
        let until = Instant::now() + deadline;
        let mut last: String;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "gatehouse exited with {status} before /health answered 200\n--- broker log ---\n{}",
                    self.log_tail(200)
                );
            }
            match http_get_status(self.admin_addr(), "/health") {
                Ok(200) => return,
                Ok(code) => last = format!("HTTP {code}"),
                Err(e) => last = e,
            }
            if Instant::now() >= until {
                panic!(
                    "gatehouse did not become healthy within {deadline:?} (last: {last})\n--- broker log ---\n{}",
                    self.log_tail(200)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM the process and wait (up to 30 s) for it to exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL the broker (like `kill -9`) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same data dir and ports (killing it first if it
    /// still runs) and waits for `/health`.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn_and_wait();
    }

    /// True while the child process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Panics (with the log) if the broker process has died.
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            panic!(
                "gatehouse is not running any more\n--- broker log ---\n{}",
                self.log_tail(200)
            );
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                let _ = d.keep();
            }
            eprintln!(
                "--- gatehouse log (tail; data dir and full log kept in {}) ---\n{}--- end of gatehouse log ---",
                self.root.display(),
                self.log_tail(200)
            );
        }
    }
}

/// A minimal HTTP/1.1 GET over a raw socket; returns the status code.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("");
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))
}

/// Polls `f` until it returns `Some`, panicking with `what` at the deadline.
pub fn poll_until<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= until {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A name unique within this test run, for topics and groups.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// rdkafka helpers
// ---------------------------------------------------------------------------------------------

/// A tokio runtime for driving rdkafka futures from synchronous tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "500");
    c
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(bootstrap);
    c.set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("request.timeout.ms", "10000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("create producer")
}

/// A consumer for `assign`-based reading. librdkafka wants a `group.id` even for `assign`;
/// the group is never joined and nothing is committed.
pub fn plain_consumer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("group.id", unique("assign-only"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("create consumer")
}

/// A group consumer (subscribe), manual commits, reading from the earliest offset.
pub fn group_consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("create group consumer")
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap)
        .create()
        .expect("create admin client")
}

pub fn admin_opts() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(20)))
}

/// Creates a topic and panics unless the broker reports success.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = runtime()
        .block_on(admin.create_topics([&t], &admin_opts()))
        .expect("CreateTopics request");
    for r in res {
        if let Err((topic, code)) = r {
            panic!("create topic {topic} failed: {code:?}");
        }
    }
    wait_topic_visible(bootstrap, name, partitions);
}

/// Polls Metadata until `topic` shows `partitions` partitions, each with a leader.
pub fn wait_topic_visible(bootstrap: &str, topic: &str, partitions: i32) {
    let c = plain_consumer(bootstrap, &[]);
    poll_until(OP_DEADLINE, &format!("topic {topic} in metadata"), || {
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        (t.error().is_none()
            && t.partitions().len() == partitions as usize
            && t.partitions().iter().all(|p| p.leader() >= 0))
        .then_some(())
    });
}

/// One record to produce.
#[derive(Clone, Debug, Default)]
pub struct Rec {
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

impl Rec {
    pub fn value(v: impl Into<Vec<u8>>) -> Rec {
        Rec {
            value: Some(v.into()),
            ..Rec::default()
        }
    }
}

/// Enqueues every record at once (so librdkafka batches them), then awaits every delivery
/// in order. Returns (partition, offset) per record, or the first delivery error.
pub fn produce_all(
    p: &FutureProducer,
    topic: &str,
    recs: &[Rec],
) -> Result<Vec<(i32, i64)>, KafkaError> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::future_producer::Delivery;
    let rt = runtime();
    rt.block_on(async {
        let mut futs = Vec::with_capacity(recs.len());
        for r in recs {
            let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            if let Some(pn) = r.partition {
                fr = fr.partition(pn);
            }
            if let Some(k) = &r.key {
                fr = fr.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                fr = fr.payload(v.as_slice());
            }
            if let Some(ts) = r.timestamp {
                fr = fr.timestamp(ts);
            }
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    h = h.insert(Header {
                        key: k,
                        value: v.as_deref(),
                    });
                }
                fr = fr.headers(h);
            }
            // Retry on a full local queue by polling deliveries.
            let mut pending = fr;
            let until = Instant::now() + OP_DEADLINE;
            loop {
                match p.send_result(pending) {
                    Ok(f) => {
                        futs.push(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        assert!(Instant::now() < until, "producer queue stayed full");
                        p.poll(Duration::from_millis(10));
                        pending = back;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        let mut out = Vec::with_capacity(futs.len());
        for f in futs {
            let res = tokio::time::timeout(OP_DEADLINE, f)
                .await
                .map_err(|_| KafkaError::Canceled)?
                .map_err(|_| KafkaError::Canceled)?;
            match res {
                Ok(Delivery {
                    partition, offset, ..
                }) => out.push((partition, offset)),
                Err((e, _)) => return Err(e),
            }
        }
        Ok(out)
    })
}

/// Assigns `topic`'s partitions `0..partitions` from the beginning and reads until
/// `expected` records arrived (panics at the deadline). Then reads briefly on to catch
/// any extra record (duplicates).
pub fn consume_n(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<OwnedMessage> {
    let c = plain_consumer(bootstrap, &[]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let until = Instant::now() + OP_DEADLINE;
    while out.len() < expected {
        assert!(
            Instant::now() < until,
            "consumed only {} of {expected} records from {topic} before the deadline",
            out.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m: BorrowedMessage<'_> = m.unwrap_or_else(|e| panic!("consume error: {e}"));
            out.push(m.detach());
        }
    }
    // Drain: anything beyond `expected` is a duplicate or a stray record.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            out.push(m.detach());
        }
    }
    out
}

/// Low and high watermark of a partition.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    plain_consumer(bootstrap, &[])
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("fetch watermarks")
}

pub fn payload_str(m: &OwnedMessage) -> String {
    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Raw Kafka protocol over TCP
// ---------------------------------------------------------------------------------------------

/// A blocking Kafka-protocol connection for hand-made requests.
pub struct RawConn {
    pub stream: TcpStream,
    next_corr: i32,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to broker");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(15)))
            .expect("write timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            next_corr: 1,
        }
    }

    /// Writes one size-prefixed frame.
    pub fn send_frame(&mut self, body: &[u8]) -> std::io::Result<()> {
        let mut f = Vec::with_capacity(body.len() + 4);
        f.extend_from_slice(&(body.len() as i32).to_be_bytes());
        f.extend_from_slice(body);
        self.stream.write_all(&f)
    }

    /// Reads one size-prefixed frame (None on a clean close).
    pub fn read_frame(&mut self) -> std::io::Result<Option<Bytes>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let n = i32::from_be_bytes(len);
        assert!(
            (0..=64 << 20).contains(&n),
            "response frame size {n} out of range"
        );
        let mut body = vec![0u8; n as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Some(Bytes::from(body)))
    }

    /// Encodes header + body for `Req` at `version`; returns the correlation id.
    pub fn encode_request<Req: Request>(&mut self, req: &Req, version: i16) -> (i32, Vec<u8>) {
        let corr = self.next_corr;
        self.next_corr += 1;
        let header = RequestHeader::default()
            .with_request_api_key(Req::KEY)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(StrBytes::from_static_str("gatehouse-e2e")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, Req::header_version(version))
            .expect("encode request header");
        req.encode(&mut buf, version).expect("encode request body");
        (corr, buf.to_vec())
    }

    /// Sends a request and decodes its response (panics on a closed socket).
    pub fn call<Req: Request>(&mut self, req: &Req, version: i16) -> Req::Response {
        self.try_call(req, version)
            .unwrap_or_else(|e| panic!("api key {} v{version}: {e}", Req::KEY))
    }

    pub fn try_call<Req: Request>(
        &mut self,
        req: &Req,
        version: i16,
    ) -> Result<Req::Response, String> {
        let (corr, body) = self.encode_request(req, version);
        self.send_frame(&body).map_err(|e| format!("send: {e}"))?;
        let mut frame = self
            .read_frame()
            .map_err(|e| format!("read: {e}"))?
            .ok_or_else(|| "connection closed by broker".to_string())?;
        let rh = ResponseHeader::decode(&mut frame, Req::Response::header_version(version))
            .map_err(|e| format!("decode response header: {e}"))?;
        if rh.correlation_id != corr {
            return Err(format!("correlation id {} != {corr}", rh.correlation_id));
        }
        let resp = Req::Response::decode(&mut frame, version)
            .map_err(|e| format!("decode response: {e}"))?;
        if frame.has_remaining() {
            return Err(format!(
                "{} trailing bytes after the response body",
                frame.remaining()
            ));
        }
        Ok(resp)
    }

    /// ApiVersions v3 and returns (key -> (min, max)).
    pub fn api_versions(&mut self) -> std::collections::HashMap<i16, (i16, i16)> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("gatehouse-e2e"))
            .with_client_software_version(StrBytes::from_static_str("0.1.0"));
        let resp: ApiVersionsResponse = self.call(&req, 3);
        assert_eq!(resp.error_code, 0, "ApiVersions v3 error");
        resp.api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect()
    }

    /// The highest version of `key` both the broker and `ours` support.
    pub fn negotiate(&mut self, key: ApiKey, ours: std::ops::RangeInclusive<i16>) -> i16 {
        let v = self.api_versions();
        let (min, max) = *v
            .get(&(key as i16))
            .unwrap_or_else(|| panic!("broker does not advertise {key:?}"));
        let hi = max.min(*ours.end());
        assert!(
            hi >= min.max(*ours.start()),
            "no common {key:?} version: broker {min}..={max}, test {ours:?}"
        );
        hi
    }

    /// True when the broker closes the connection (EOF or reset) before `deadline`.
    pub fn closed_within(&mut self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
            if Instant::now() >= until {
                return false;
            }
        }
    }
}

/// Encodes records as one RecordBatch v2 (magic 2) with the given compression.
pub fn encode_batch(
    records: &[kafka_protocol::records::Record],
    compression: kafka_protocol::records::Compression,
) -> Bytes {
    use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions};
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// A plain (non-idempotent) record for `encode_batch`.
pub fn raw_record(
    offset: i64,
    key: Option<&[u8]>,
    value: &[u8],
) -> kafka_protocol::records::Record {
    use kafka_protocol::records::{Record, TimestampType};
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: 1_700_000_000_000 + offset,
        key: key.map(Bytes::copy_from_slice),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Default::default(),
    }
}

/// Fetches one partition from `offset` with a raw Fetch request and returns the raw
/// record-set bytes (possibly several batches).
pub fn raw_fetch(conn: &mut RawConn, topic: &str, partition: i32, offset: i64) -> (i16, Bytes) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    let version = conn.negotiate(ApiKey::Fetch, 4..=12);
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(16 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(8 << 20),
                ]),
        ]);
    let resp = conn.call(&req, version);
    assert_eq!(resp.error_code, 0, "fetch top-level error");
    let t = resp.responses.first().expect("fetch response has a topic");
    let p = t
        .partitions
        .first()
        .expect("fetch response has a partition");
    (p.error_code, p.records.clone().unwrap_or_default())
}

/// The compression codec of every batch in a raw record set.
pub fn batch_compressions(records: &Bytes) -> Vec<kafka_protocol::records::Compression> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut b = records.clone();
    RecordBatchDecoder::decode_batch_info(&mut b)
        .expect("decode batch headers")
        .into_iter()
        .map(|i| i.compression)
        .collect()
}

/// Appends a big-endian i32 length and the bytes (Kafka BYTES / old-style framing).
pub fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// Reads a whole file (helper for log checks).
pub fn read_file(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .expect("read file");
    v
}

/// Starts an in-process schema registry against `bootstrap` on a free loopback port, retrying
/// for a while: right after a broker (re)start the `_schemas` topic may not be reachable yet.
pub fn start_registry(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
) -> gatehouse_registry::RunningRegistry {
    let config = gatehouse_registry::RegistryServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        bootstrap: bootstrap.to_string(),
        sasl: None,
        tls: None,
        auth: None,
    };
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match rt.block_on(gatehouse_registry::start(config.clone())) {
            Ok(r) => return r,
            Err(e) if Instant::now() < until => {
                eprintln!("registry start: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("registry did not start: {e}"),
        }
    }
}
