//! Tests of the client against an in-process fake Kafka server on 127.0.0.1:0.
//!
//! The fake answers with canned `kafka-protocol` responses; it checks the client's framing,
//! pipelining, correlation, version negotiation and routing, not broker behaviour.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::ErrorCode;
use crate::frame::FrameDecoder;
use crate::header::{RequestHeaderPeek, decode_body, encode_request, encode_response};

// ---------------------------------------------------------------------------------------------
// The fake server.

/// One request as the fake received it.
struct Req {
    peek: RequestHeaderPeek,
    body: Bytes,
}

impl Req {
    fn key(&self) -> i16 {
        self.peek.api_key
    }
    fn version(&self) -> i16 {
        self.peek.api_version
    }
    fn decode<M: Decodable>(&self) -> M {
        decode_body(self.body.clone(), self.version()).expect("request body decodes")
    }
    fn reply<M: Encodable + HeaderVersion>(&self, body: &M) -> Bytes {
        encode_response(self.peek.correlation_id, self.version(), body).expect("response encodes")
    }
}

/// What the fake does after a request.
enum Reply {
    /// Write these (complete, size-prefixed) frames, possibly none.
    Frames(Vec<Bytes>),
    /// Drop the connection.
    Close,
}

fn one(frame: Bytes) -> Reply {
    Reply::Frames(vec![frame])
}

type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

struct FakeBroker {
    addr: SocketAddr,
    /// (api key, version) of every request received, in order.
    log: Arc<Mutex<Vec<(i16, i16)>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBroker {
    async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.expect("bind")
    }

    fn serve(listener: TcpListener, handler: Handler) -> FakeBroker {
        let addr = listener.local_addr().expect("local addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_conn(stream, handler.clone(), log2.clone()));
            }
        });
        FakeBroker { addr, log, task }
    }

    async fn start(handler: Handler) -> FakeBroker {
        Self::serve(Self::bind().await, handler)
    }

    fn requests(&self) -> Vec<(i16, i16)> {
        self.log.lock().expect("log").clone()
    }

    fn count(&self, key: ApiKey) -> usize {
        self.requests()
            .iter()
            .filter(|(k, _)| *k == key as i16)
            .count()
    }
}

async fn serve_conn(
    mut stream: tokio::net::TcpStream,
    handler: Handler,
    log: Arc<Mutex<Vec<(i16, i16)>>>,
) {
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    loop {
        let frame = loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(_) => return,
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let peek = RequestHeaderPeek::parse(&frame).expect("request header");
        let body = frame.slice(peek.body_offset.expect("known api key")..);
        log.lock()
            .expect("log")
            .push((peek.api_key, peek.api_version));
        match handler(&Req { peek, body }) {
            Reply::Frames(frames) => {
                for f in frames {
                    if stream.write_all(&f).await.is_err() {
                        return;
                    }
                }
            }
            Reply::Close => return,
        }
    }
}

fn api_versions(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ranges
            .iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

const STANDARD: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
];

/// Answers ApiVersions with `ranges` and hands everything else to `inner`.
fn with_versions(
    ranges: &'static [(ApiKey, i16, i16)],
    inner: impl Fn(&Req) -> Reply + Send + Sync + 'static,
) -> Handler {
    Arc::new(move |req: &Req| {
        if req.key() == ApiKey::ApiVersions as i16 {
            one(req.reply(&api_versions(ranges)))
        } else {
            inner(req)
        }
    })
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Metadata naming `brokers` (id, port) on 127.0.0.1 and `topics` as (name, [(partition, leader)]).
fn metadata_response(brokers: &[(i32, u16)], topics: &[(&str, &[(i32, i32)])]) -> MetadataResponse {
    MetadataResponse::default()
        .with_controller_id(BrokerId(1))
        .with_cluster_id(Some(sb("fake-cluster")))
        .with_brokers(
            brokers
                .iter()
                .map(|(id, port)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(*id))
                        .with_host(sb("127.0.0.1"))
                        .with_port(i32::from(*port))
                })
                .collect(),
        )
        .with_topics(
            topics
                .iter()
                .map(|(name, parts)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(sb(name))))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|(p, leader)| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(*p)
                                        .with_leader_id(BrokerId(*leader))
                                        .with_replica_nodes(vec![BrokerId(*leader)])
                                        .with_isr_nodes(vec![BrokerId(*leader)])
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn fast_config() -> ConnectionConfig {
    ConnectionConfig {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..ConnectionConfig::default()
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test step took too long")
}

fn metadata_for(topic: &str) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(sb(topic)))),
        ]))
        .with_allow_auto_topic_creation(false)
}

fn requested_topic(req: &Req) -> String {
    let m: MetadataRequest = req.decode();
    m.topics
        .and_then(|t| t.first().and_then(|t| t.name.clone()))
        .map(|n| n.0.to_string())
        .unwrap_or_default()
}

fn echo_topic(req: &Req) -> Bytes {
    let t = requested_topic(req);
    req.reply(&metadata_response(&[], &[(&t, &[])]))
}

fn first_topic(r: &MetadataResponse) -> String {
    r.topics
        .first()
        .and_then(|t| t.name.as_ref())
        .map(|n| n.0.to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Connection: negotiation, pipelining, failures.

#[tokio::test]
async fn negotiates_versions_on_connect() {
    const RANGES: &[(ApiKey, i16, i16)] = &[
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::Metadata, 0, 9),
        (ApiKey::Produce, 3, 8),
        (ApiKey::Fetch, 0, 3),
    ];
    let server = FakeBroker::start(with_versions(RANGES, |req| one(echo_topic(req)))).await;
    let conn = within(Connection::connect(server.addr, fast_config()))
        .await
        .expect("connect");
    assert_eq!(conn.api_versions_version(), Some(3));
    assert_eq!(server.requests(), vec![(ApiKey::ApiVersions as i16, 3)]);

    assert_eq!(conn.version_for::<MetadataRequest>().expect("metadata"), 9);
    assert_eq!(conn.version_for::<ProduceRequest>().expect("produce"), 8);
    // Fetch: broker 0-3, we 4-18: no overlap.
    let e = conn.version_for::<FetchRequest>().expect_err("no overlap");
    assert_eq!(broker_code(&e), Some(ErrorCode::UnsupportedVersion), "{e}");
    // Not advertised at all.
    let e = conn.version_for::<JoinGroupRequest>().expect_err("absent");
    assert_eq!(broker_code(&e), Some(ErrorCode::UnsupportedVersion), "{e}");

    // Negotiated send uses v9; a pinned version is used as is; one outside the broker's
    // range is refused before anything is sent.
    let r = within(conn.send(metadata_for("a"), None))
        .await
        .expect("send");
    assert_eq!(first_topic(&r), "a");
    let r = within(conn.send(metadata_for("b"), 4))
        .await
        .expect("pinned");
    assert_eq!(first_topic(&r), "b");
    let e = within(conn.send(metadata_for("c"), 10))
        .await
        .expect_err("v10 is beyond the broker");
    assert_eq!(broker_code(&e), Some(ErrorCode::UnsupportedVersion));
    assert_eq!(
        server.requests(),
        vec![
            (18, 3),
            (ApiKey::Metadata as i16, 9),
            (ApiKey::Metadata as i16, 4)
        ]
    );
}

#[tokio::test]
async fn api_versions_falls_back_to_v0() {
    const RANGES: &[(ApiKey, i16, i16)] = &[(ApiKey::ApiVersions, 0, 0), (ApiKey::Metadata, 0, 5)];
    let handler: Handler = Arc::new(|req: &Req| {
        if req.key() == ApiKey::ApiVersions as i16 {
            if req.version() > 0 {
                // What Kafka does: UNSUPPORTED_VERSION in a v0 body listing its own range.
                let body = api_versions(&[(ApiKey::ApiVersions, 0, 0)]).with_error_code(35);
                let frame = encode_response(req.peek.correlation_id, 0, &body).expect("encode");
                return one(frame);
            }
            return one(req.reply(&api_versions(RANGES)));
        }
        one(echo_topic(req))
    });
    let server = FakeBroker::start(handler).await;
    let conn = within(Connection::connect(server.addr, fast_config()))
        .await
        .expect("connect after fallback");
    assert_eq!(conn.api_versions_version(), Some(0));
    assert_eq!(server.requests(), vec![(18, 3), (18, 0)]);
    assert_eq!(conn.version_for::<MetadataRequest>().expect("metadata"), 5);
    let r = within(conn.send(metadata_for("x"), None))
        .await
        .expect("send");
    assert_eq!(first_topic(&r), "x");
}

#[tokio::test]
async fn pipelined_requests_answered_out_of_order() {
    const N: usize = 8;
    let held: Arc<Mutex<Vec<Bytes>>> = Arc::new(Mutex::new(Vec::new()));
    let server = FakeBroker::start(with_versions(STANDARD, move |req| {
        let mut held = held.lock().expect("held");
        held.push(echo_topic(req));
        if held.len() < N {
            return Reply::Frames(Vec::new());
        }
        // All N requests are in flight at once: answer them last-first.
        let mut all: Vec<Bytes> = held.drain(..).collect();
        all.reverse();
        Reply::Frames(all)
    }))
    .await;
    let conn = Arc::new(
        within(Connection::connect(server.addr, fast_config()))
            .await
            .expect("connect"),
    );
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let topic = format!("topic-{i}");
                let r = conn
                    .send(metadata_for(&topic), None)
                    .await
                    .expect("response");
                assert_eq!(
                    first_topic(&r),
                    topic,
                    "response matched to the wrong request"
                );
            })
        })
        .collect();
    for t in tasks {
        within(t).await.expect("task");
    }
    assert_eq!(server.count(ApiKey::Metadata), N);
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn dropped_connection_fails_every_pending_request() {
    let seen = Arc::new(AtomicUsize::new(0));
    let server = FakeBroker::start(with_versions(STANDARD, move |_req| {
        if seen.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
            Reply::Close
        } else {
            Reply::Frames(Vec::new())
        }
    }))
    .await;
    let conn = Arc::new(
        within(Connection::connect(server.addr, fast_config()))
            .await
            .expect("connect"),
    );
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.send(metadata_for(&format!("t{i}")), None).await })
        })
        .collect();
    let started = std::time::Instant::now();
    for t in tasks {
        let e = within(t).await.expect("task").expect_err("must fail");
        assert!(is_io(&e), "{e}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waiters must fail when the connection drops, not on their timeout"
    );
    assert!(conn.is_closed());
    let e = within(conn.send(metadata_for("late"), None))
        .await
        .expect_err("closed connection");
    assert!(is_io(&e), "{e}");
}

#[tokio::test]
async fn oversized_response_frame_is_refused() {
    let server = FakeBroker::start(with_versions(STANDARD, |req| {
        let mut f = BytesMut::new();
        f.put_i32(1_000_000);
        f.put_i32(req.peek.correlation_id);
        f.put_slice(&[0u8; 64]);
        one(f.freeze())
    }))
    .await;
    let config = ConnectionConfig {
        max_frame_size: 1024,
        ..fast_config()
    };
    let conn = within(Connection::connect(server.addr, config))
        .await
        .expect("connect");
    let e = within(conn.send(metadata_for("big"), None))
        .await
        .expect_err("oversized frame");
    assert!(
        matches!(
            e,
            ProtocolError::FrameTooLarge {
                size: 1_000_000,
                max: 1024
            }
        ),
        "{e}"
    );
    assert!(conn.is_closed());
}

#[tokio::test]
async fn timed_out_request_does_not_poison_the_connection() {
    let held: Arc<Mutex<Option<Bytes>>> = Arc::new(Mutex::new(None));
    let server = FakeBroker::start(with_versions(STANDARD, move |req| {
        let mut held = held.lock().expect("held");
        match held.take() {
            // First request: hold the answer back.
            None => {
                *held = Some(echo_topic(req));
                Reply::Frames(Vec::new())
            }
            // Second: answer the stale one first, then this one.
            Some(stale) => Reply::Frames(vec![stale, echo_topic(req)]),
        }
    }))
    .await;
    let config = ConnectionConfig {
        request_timeout: Duration::from_millis(200),
        ..fast_config()
    };
    let conn = within(Connection::connect(server.addr, config))
        .await
        .expect("connect");
    let e = within(conn.send(metadata_for("slow"), None))
        .await
        .expect_err("times out");
    let ProtocolError::Io(io) = &e else {
        panic!("expected a timeout, got {e}");
    };
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    let r = within(conn.send(metadata_for("fast"), None))
        .await
        .expect("second request");
    assert_eq!(first_topic(&r), "fast");
}

#[tokio::test]
async fn send_raw_restores_the_callers_correlation_id() {
    let server = FakeBroker::start(with_versions(STANDARD, |req| one(echo_topic(req)))).await;
    let conn = within(Connection::connect(server.addr, fast_config()))
        .await
        .expect("connect");
    // Take a correlation id the connection is about to use itself, to prove it is swapped.
    let framed = encode_request(ApiKey::Metadata, 12, 1, Some("proxy"), &metadata_for("raw"))
        .expect("encode");
    let response = within(conn.send_raw(framed.slice(4..)))
        .await
        .expect("raw roundtrip");
    assert_eq!(&response[..4], &1i32.to_be_bytes());
    let (_, body) = crate::header::split_response(response, MetadataResponse::header_version(12))
        .expect("split");
    let r: MetadataResponse = decode_body(body, 12).expect("decode");
    assert_eq!(first_topic(&r), "raw");
}

// ---------------------------------------------------------------------------------------------
// Client: routing and typed calls.

struct Cluster {
    a: FakeBroker,
    b: FakeBroker,
    client: Client,
}

/// Two brokers: 1 (bootstrap, leads t-0) and 2 (leads t-1). Broker 1 fails the first
/// produce with NOT_LEADER_OR_FOLLOWER to exercise the retry.
async fn cluster() -> Cluster {
    let (la, lb) = (FakeBroker::bind().await, FakeBroker::bind().await);
    let ports = [
        (1, la.local_addr().expect("addr").port()),
        (2, lb.local_addr().expect("addr").port()),
    ];
    let handler = move |node: i32| {
        let produced = Arc::new(AtomicUsize::new(0));
        with_versions(STANDARD, move |req| {
            let key = ApiKey::try_from(req.key()).expect("known key");
            let frame = match key {
                ApiKey::Metadata => {
                    req.reply(&metadata_response(&ports, &[("t", &[(0, 1), (1, 2)])]))
                }
                ApiKey::Produce => {
                    let r: ProduceRequest = req.decode();
                    let partition = r.topic_data[0].partition_data[0].index;
                    let (code, offset) = match (node, produced.fetch_add(1, Ordering::SeqCst)) {
                        (1, 0) => (6, -1),
                        (1, _) => (0, 5),
                        _ => (0, 42),
                    };
                    req.reply(&ProduceResponse::default().with_responses(vec![
                        TopicProduceResponse::default()
                            .with_name(TopicName(sb("t")))
                            .with_partition_responses(vec![
                                PartitionProduceResponse::default()
                                    .with_index(partition)
                                    .with_error_code(code)
                                    .with_base_offset(offset),
                            ]),
                    ]))
                }
                ApiKey::Fetch => {
                    let r: FetchRequest = req.decode();
                    let p = &r.topics[0].partitions[0];
                    let (code, records) = if p.fetch_offset > 100 {
                        (1, None)
                    } else {
                        (0, Some(Bytes::from_static(b"batches")))
                    };
                    req.reply(&FetchResponse::default().with_responses(vec![
                        FetchableTopicResponse::default()
                            .with_topic(TopicName(sb("t")))
                            .with_partitions(vec![
                                PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_error_code(code)
                                    .with_high_watermark(43)
                                    .with_last_stable_offset(43)
                                    .with_log_start_offset(3)
                                    .with_records(records),
                            ]),
                    ]))
                }
                ApiKey::ListOffsets => {
                    let r: ListOffsetsRequest = req.decode();
                    let p = &r.topics[0].partitions[0];
                    let offset = if p.timestamp == EARLIEST_OFFSET {
                        3
                    } else {
                        43
                    };
                    req.reply(&ListOffsetsResponse::default().with_topics(vec![
                        ListOffsetsTopicResponse::default()
                            .with_name(TopicName(sb("t")))
                            .with_partitions(vec![
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_offset(offset)
                                    .with_timestamp(-1),
                            ]),
                    ]))
                }
                ApiKey::CreateTopics => {
                    let r: CreateTopicsRequest = req.decode();
                    let t = &r.topics[0];
                    let code = if t.name.0.as_str() == "t" { 36 } else { 0 };
                    assert_eq!(t.replication_factor, -1);
                    req.reply(&CreateTopicsResponse::default().with_topics(vec![
                        CreatableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(code),
                    ]))
                }
                other => panic!("fake broker got unexpected {other:?}"),
            };
            one(frame)
        })
    };
    let a = FakeBroker::serve(la, handler(1));
    let b = FakeBroker::serve(lb, handler(2));
    let mut config = ClientConfig::new([a.addr.to_string()]);
    config.connection = fast_config();
    config.retry_backoff = Duration::from_millis(1);
    let client = within(Client::connect(config)).await.expect("client");
    Cluster { a, b, client }
}

#[tokio::test]
async fn client_routes_to_leaders_and_maps_results() {
    let Cluster { a, b, client } = cluster().await;

    let md = within(client.metadata(Some(&["t"])))
        .await
        .expect("metadata");
    assert_eq!(md.cluster_id.as_deref(), Some("fake-cluster"));
    assert_eq!(md.brokers.len(), 2);
    assert_eq!(md.leader_for("t", 1).map(|b| b.node_id), Some(2));
    assert_eq!(md.topic("t").map(|t| t.partitions.len()), Some(2));

    // t-1 lives on broker 2.
    let offset = within(client.produce("t", 1, Bytes::from_static(b"records"), -1))
        .await
        .expect("produce");
    assert_eq!(offset, 42);
    let fetched = within(client.fetch("t", 1, 0, 1 << 20, 10))
        .await
        .expect("fetch");
    assert_eq!(
        fetched,
        FetchedRecords {
            records: Bytes::from_static(b"batches"),
            high_watermark: 43,
            last_stable_offset: 43,
            log_start_offset: 3,
        }
    );
    assert_eq!(b.count(ApiKey::Produce), 1);
    assert_eq!(b.count(ApiKey::Fetch), 1);
    assert_eq!(a.count(ApiKey::Produce), 0);

    // t-0 lives on broker 1, which first answers NOT_LEADER_OR_FOLLOWER: retried.
    let offset = within(client.produce("t", 0, Bytes::from_static(b"records"), 1))
        .await
        .expect("produce after retry");
    assert_eq!(offset, 5);
    assert_eq!(a.count(ApiKey::Produce), 2);

    // Errors in the partition become typed broker errors.
    let e = within(client.fetch("t", 1, 500, 1 << 20, 10))
        .await
        .expect_err("out of range");
    assert_eq!(broker_code(&e), Some(ErrorCode::OffsetOutOfRange), "{e}");

    assert_eq!(
        within(client.list_offsets("t", 0, EARLIEST_OFFSET))
            .await
            .expect("earliest"),
        (3, -1)
    );
    assert_eq!(
        within(client.list_offsets("t", 0, LATEST_OFFSET))
            .await
            .expect("latest"),
        (43, -1)
    );

    assert_eq!(
        within(client.create_topic("t", 1, &[("cleanup.policy", "compact")]))
            .await
            .expect("create existing"),
        CreateTopicOutcome::AlreadyExists
    );
    assert_eq!(
        within(client.create_topic("u", 3, &[]))
            .await
            .expect("create new"),
        CreateTopicOutcome::Created
    );

    // Unknown partitions are reported, not guessed.
    let e = within(client.produce("t", 7, Bytes::new(), 1))
        .await
        .expect_err("no such partition");
    assert_eq!(broker_code(&e), Some(ErrorCode::UnknownTopicOrPartition));
}

// ---------------------------------------------------------------------------------------------
// Groups.

#[test]
fn range_assignor_splits_each_topic_over_its_subscribers() {
    let subs = vec![
        ("c".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
        ("a".to_owned(), vec!["x".to_owned(), "z".to_owned()]),
        ("b".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
    ];
    let counts = BTreeMap::from([("x".to_owned(), 7), ("y".to_owned(), 2)]);
    let plan = range_assign(&subs, &counts);
    let get = |m: &str, t: &str| plan.get(m).and_then(|p| p.get(t)).cloned();
    assert_eq!(get("a", "x"), Some(vec![0, 1, 2]));
    assert_eq!(get("b", "x"), Some(vec![3, 4]));
    assert_eq!(get("c", "x"), Some(vec![5, 6]));
    assert_eq!(get("b", "y"), Some(vec![0]));
    assert_eq!(get("c", "y"), Some(vec![1]));
    assert_eq!(get("a", "z"), None, "unknown topics are skipped");
    assert_eq!(plan.len(), 3);

    let enc = encode_subscription(&["x".to_owned(), "y".to_owned()]).expect("encode");
    assert_eq!(decode_subscription(enc).expect("decode"), vec!["x", "y"]);
    let mine = plan.get("a").cloned().unwrap_or_default();
    let enc = encode_assignment(&mine).expect("encode");
    assert_eq!(decode_assignment(enc).expect("decode"), mine);
    assert!(decode_assignment(Bytes::new()).expect("empty").is_empty());
}

/// A one-broker group coordinator: FindCoordinator points at itself, JoinGroup first demands
/// a member id, SyncGroup hands back what the leader assigned, Heartbeat answers
/// REBALANCE_IN_PROGRESS once when `rebalance` is set, offsets are kept in a map.
#[derive(Default)]
struct GroupState {
    generation: i32,
    assignments: HashMap<String, Bytes>,
    offsets: HashMap<(String, i32), i64>,
    rebalance: bool,
}

#[tokio::test]
async fn group_member_leads_assigns_and_rejoins() {
    let listener = FakeBroker::bind().await;
    let port = listener.local_addr().expect("addr").port();
    let state = Arc::new(Mutex::new(GroupState::default()));
    let st = state.clone();
    let handler = with_versions(STANDARD, move |req| {
        let key = ApiKey::try_from(req.key()).expect("known key");
        let mut st = st.lock().expect("state");
        let frame = match key {
            ApiKey::Metadata => req.reply(&metadata_response(
                &[(1, port)],
                &[("_schemas", &[(0, 1), (1, 1), (2, 1)])],
            )),
            ApiKey::FindCoordinator => {
                assert!(req.version() >= 4);
                req.reply(&FindCoordinatorResponse::default().with_coordinators(vec![
                    Coordinator::default()
                        .with_key(sb("g"))
                        .with_node_id(BrokerId(1))
                        .with_host(sb("127.0.0.1"))
                        .with_port(i32::from(port)),
                ]))
            }
            ApiKey::JoinGroup => {
                let r: JoinGroupRequest = req.decode();
                if r.member_id.is_empty() {
                    req.reply(
                        &JoinGroupResponse::default()
                            .with_error_code(79)
                            .with_member_id(sb("m-1")),
                    )
                } else {
                    assert_eq!(r.protocol_type.as_str(), "consumer");
                    st.generation += 1;
                    req.reply(
                        &JoinGroupResponse::default()
                            .with_generation_id(st.generation)
                            .with_protocol_type(Some(sb("consumer")))
                            .with_protocol_name(Some(r.protocols[0].name.clone()))
                            .with_leader(r.member_id.clone())
                            .with_member_id(r.member_id.clone())
                            .with_members(vec![
                                JoinGroupResponseMember::default()
                                    .with_member_id(r.member_id.clone())
                                    .with_metadata(r.protocols[0].metadata.clone()),
                            ]),
                    )
                }
            }
            ApiKey::SyncGroup => {
                let r: SyncGroupRequest = req.decode();
                assert_eq!(r.generation_id, st.generation);
                for a in &r.assignments {
                    st.assignments
                        .insert(a.member_id.to_string(), a.assignment.clone());
                }
                let mine = st
                    .assignments
                    .get(r.member_id.as_str())
                    .cloned()
                    .unwrap_or_default();
                req.reply(&SyncGroupResponse::default().with_assignment(mine))
            }
            ApiKey::Heartbeat => {
                let r: HeartbeatRequest = req.decode();
                let code = if std::mem::take(&mut st.rebalance) {
                    27
                } else if r.generation_id != st.generation {
                    22
                } else {
                    0
                };
                req.reply(&HeartbeatResponse::default().with_error_code(code))
            }
            ApiKey::LeaveGroup => req.reply(&LeaveGroupResponse::default()),
            ApiKey::OffsetCommit => {
                let r: OffsetCommitRequest = req.decode();
                let topics = r
                    .topics
                    .iter()
                    .map(|t| {
                        for p in &t.partitions {
                            st.offsets.insert(
                                (t.name.0.to_string(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                req.reply(&OffsetCommitResponse::default().with_topics(topics))
            }
            ApiKey::OffsetFetch => {
                assert_eq!(req.version(), 8, "groups form");
                let r: OffsetFetchRequest = req.decode();
                let g = &r.groups[0];
                let topics = g
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| {
                        OffsetFetchResponseTopics::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|p| {
                                        let off = st
                                            .offsets
                                            .get(&(t.name.0.to_string(), *p))
                                            .copied()
                                            .unwrap_or(-1);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(off)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                req.reply(&OffsetFetchResponse::default().with_groups(vec![
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_topics(topics),
                ]))
            }
            other => panic!("fake coordinator got unexpected {other:?}"),
        };
        one(frame)
    });
    let server = FakeBroker::serve(listener, handler);
    let mut config = ClientConfig::new([server.addr.to_string()]);
    config.connection = fast_config();
    let client = Client::new(config);

    let mut gm_config = GroupMemberConfig::new("g", vec!["_schemas".to_owned()]);
    gm_config.heartbeat_interval = Duration::from_millis(20);
    gm_config.retry_backoff = Duration::from_millis(10);
    let member = within(GroupMember::join(client.clone(), gm_config))
        .await
        .expect("join");
    let a = member.assignment().expect("assigned");
    assert!(member.is_leader());
    assert_eq!(a.member_id, "m-1");
    assert_eq!(a.generation_id, 1);
    assert_eq!(
        a.partitions,
        BTreeMap::from([("_schemas".to_owned(), vec![0, 1, 2])])
    );
    // MEMBER_ID_REQUIRED then the real join.
    assert_eq!(server.count(ApiKey::JoinGroup), 2);

    // A rebalance signalled through a heartbeat makes the member rejoin: generation 2.
    state.lock().expect("state").rebalance = true;
    let mut watch = member.watch();
    within(watch.wait_for(|a| a.as_ref().is_some_and(|a| a.generation_id == 2)))
        .await
        .expect("rejoined");
    assert!(member.is_leader());
    assert_eq!(member.generation(), Some(2));

    // Offsets through the same coordinator.
    let me = member.assignment().expect("assigned");
    let who = MemberRef {
        generation_id: me.generation_id,
        member_id: &me.member_id,
        group_instance_id: None,
    };
    within(client.offset_commit("g", &who, &[("_schemas", 0, 17), ("_schemas", 2, 4)]))
        .await
        .expect("commit");
    let committed = within(client.offset_fetch("g", &[("_schemas", 0), ("_schemas", 1)]))
        .await
        .expect("offset fetch");
    let got: Vec<(i32, i64)> = committed.iter().map(|c| (c.partition, c.offset)).collect();
    assert_eq!(got, vec![(0, 17), (1, -1)]);

    within(member.leave()).await.expect("leave");
    assert_eq!(server.count(ApiKey::LeaveGroup), 1);
}

// ---------------------------------------------------------------------------------------------
// SASL.

/// What the fake SCRAM server does in server-final.
#[derive(Clone, Copy, PartialEq)]
enum ScramServer {
    /// Checks the proof and signs honestly.
    Honest,
    /// Accepts any proof and sends a made-up signature (a server that lacks the password).
    Forger,
}

/// A fake broker that speaks SCRAM-SHA-512 for user "alice" / password "wonderland", checking
/// the client's proof with a mirror of the client computation.
fn scram_broker(mode: ScramServer) -> Handler {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    const RANGES: &[(ApiKey, i16, i16)] = &[
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::Metadata, 0, 12),
        (ApiKey::SaslHandshake, 0, 1),
        (ApiKey::SaslAuthenticate, 0, 2),
    ];
    // After client-first: (the client-final we expect, the server signature to send).
    type Expected = Option<(Vec<u8>, Vec<u8>)>;
    let expected: Arc<Mutex<Expected>> = Arc::new(Mutex::new(None));
    with_versions(RANGES, move |req| {
        if req.key() == ApiKey::SaslHandshake as i16 {
            let r: SaslHandshakeRequest = req.decode();
            let code = if r.mechanism.as_str() == "SCRAM-SHA-512" {
                0
            } else {
                33
            };
            return one(req.reply(
                &SaslHandshakeResponse::default()
                    .with_error_code(code)
                    .with_mechanisms(vec![sb("SCRAM-SHA-512")]),
            ));
        }
        if req.key() == ApiKey::SaslAuthenticate as i16 {
            let r: SaslAuthenticateRequest = req.decode();
            let mut state = expected.lock().expect("state");
            let resp = match state.take() {
                None => {
                    let first = std::str::from_utf8(&r.auth_bytes).expect("utf8");
                    let nonce = first
                        .strip_prefix("n,,n=alice,r=")
                        .expect("client-first for alice")
                        .to_owned();
                    let server_first = format!(
                        "r={nonce}Srv0nce,s={},i=4096",
                        B64.encode(b"NaCl-salt-bytes")
                    );
                    let mut mirror = super::sasl::ScramClient::new(
                        SaslMechanism::ScramSha512,
                        "alice",
                        "wonderland",
                        nonce,
                    )
                    .expect("mirror");
                    let client_final = mirror
                        .client_final(server_first.as_bytes())
                        .expect("mirror final");
                    let signature = mirror.server_signature().expect("signature").to_vec();
                    *state = Some((client_final, signature));
                    SaslAuthenticateResponse::default()
                        .with_auth_bytes(Bytes::from(server_first.into_bytes()))
                }
                Some((client_final, signature)) => {
                    if mode == ScramServer::Forger {
                        SaslAuthenticateResponse::default()
                            .with_auth_bytes(Bytes::from_static(b"v=AAAAAAAAAAAAAAAAAAAAAA=="))
                    } else if r.auth_bytes[..] == client_final[..] {
                        let v = format!("v={}", B64.encode(signature));
                        SaslAuthenticateResponse::default()
                            .with_auth_bytes(Bytes::from(v.into_bytes()))
                    } else {
                        SaslAuthenticateResponse::default()
                            .with_error_code(58)
                            .with_error_message(Some(sb(
                                "Authentication failed during authentication due to invalid \
                                 credentials with SASL mechanism SCRAM-SHA-512",
                            )))
                    }
                }
            };
            return one(req.reply(&resp));
        }
        one(echo_topic(req))
    })
}

fn scram_config(password: &str) -> ConnectionConfig {
    ConnectionConfig {
        sasl: Some(SaslCredentials::new(
            SaslMechanism::ScramSha512,
            "alice",
            password,
        )),
        ..fast_config()
    }
}

#[tokio::test]
async fn scram_sha512_authenticates_and_checks_the_server() {
    let server = FakeBroker::start(scram_broker(ScramServer::Honest)).await;
    let conn = within(Connection::connect(server.addr, scram_config("wonderland")))
        .await
        .expect("SCRAM authentication");
    let r = within(conn.send(metadata_for("after-auth"), None))
        .await
        .expect("metadata");
    assert_eq!(first_topic(&r), "after-auth");
    assert_eq!(
        server.requests(),
        vec![
            (ApiKey::ApiVersions as i16, 3),
            (ApiKey::SaslHandshake as i16, 1),
            (ApiKey::SaslAuthenticate as i16, 2),
            (ApiKey::SaslAuthenticate as i16, 2),
            (ApiKey::Metadata as i16, 12),
        ]
    );

    let server = FakeBroker::start(scram_broker(ScramServer::Honest)).await;
    let e = within(Connection::connect(
        server.addr,
        scram_config("looking-glass"),
    ))
    .await
    .expect_err("wrong password");
    assert_eq!(
        broker_code(&e),
        Some(ErrorCode::SaslAuthenticationFailed),
        "{e}"
    );
    assert!(e.to_string().contains("invalid credentials"), "{e}");
    assert!(!e.to_string().contains("looking-glass"), "{e}");

    let server = FakeBroker::start(scram_broker(ScramServer::Forger)).await;
    let e = within(Connection::connect(server.addr, scram_config("wonderland")))
        .await
        .expect_err("forged server signature");
    assert!(e.to_string().contains("server signature"), "{e}");

    // A mechanism the server lacks.
    let server = FakeBroker::start(scram_broker(ScramServer::Honest)).await;
    let config = ConnectionConfig {
        sasl: Some(SaslCredentials::plain("alice", "wonderland")),
        ..fast_config()
    };
    let e = within(Connection::connect(server.addr, config))
        .await
        .expect_err("PLAIN not enabled");
    assert_eq!(
        broker_code(&e),
        Some(ErrorCode::UnsupportedSaslMechanism),
        "{e}"
    );
    assert!(e.to_string().contains("SCRAM-SHA-512"), "{e}");
}
