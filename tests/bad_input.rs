//! Hostile and malformed input over raw TCP, with requests encoded by hand through
//! `kafka-protocol`: the broker answers with the right Kafka error code or closes that one
//! connection, and always keeps serving everyone else.

mod common;

use std::io::Write;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::Compression;

const UNSUPPORTED_VERSION: i16 = 35;
const CORRUPT_MESSAGE: i16 = 2;
const MESSAGE_TOO_LARGE: i16 = 10;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// A fresh connection still gets a proper ApiVersions answer.
fn assert_serving(broker: &mut Broker) {
    broker.assert_running();
    let mut c = RawConn::connect(broker.broker_addr());
    let v = c.api_versions();
    assert!(
        v.contains_key(&(ApiKey::Produce as i16)),
        "broker stopped serving"
    );
}

fn produce_raw(conn: &mut RawConn, topic: &str, partition: i32, batch: Bytes) -> ProduceResponse {
    let version = conn.negotiate(ApiKey::Produce, 3..=9);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch)),
                ]),
        ]);
    conn.call(&req, version)
}

fn partition_error(resp: &ProduceResponse) -> i16 {
    resp.responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map(|p| p.error_code)
        .expect("produce response has one partition")
}

#[test]
fn garbage_bytes_close_only_that_connection() {
    let mut broker = Broker::start();
    // An idle, healthy connection that must survive the others' misbehaviour.
    let mut bystander = RawConn::connect(broker.broker_addr());
    bystander.api_versions();

    // HTTP to the Kafka port: "GET " reads as a 1.2 GB frame size.
    let mut c = RawConn::connect(broker.broker_addr());
    c.stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "HTTP garbage: connection not closed"
    );

    // A plausible frame size with random content (nonsense api key / version).
    let mut c = RawConn::connect(broker.broker_addr());
    let junk: Vec<u8> = (0u32..64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    c.send_frame(&junk).expect("write");
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "random frame: connection not closed"
    );

    // Negative frame size.
    let mut c = RawConn::connect(broker.broker_addr());
    c.stream.write_all(&(-1i32).to_be_bytes()).expect("write");
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "negative size: connection not closed"
    );

    // A header whose client-id length runs past the end of the frame.
    let mut c = RawConn::connect(broker.broker_addr());
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::ApiVersions as i16);
    f.put_i16(1);
    f.put_i32(7);
    f.put_i16(1000); // client id length, but no bytes follow
    c.send_frame(&f).expect("write");
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "truncated header: connection not closed"
    );

    // A frame announced but never completed, then the client goes away.
    {
        let mut c = RawConn::connect(broker.broker_addr());
        c.stream.write_all(&100i32.to_be_bytes()).expect("write");
        c.stream.write_all(&[0u8; 10]).expect("write");
    }

    let v = bystander.api_versions();
    assert!(!v.is_empty(), "the bystander connection must keep working");
    assert_serving(&mut broker);
}

#[test]
fn oversized_frame_is_refused_without_reading_it() {
    let mut broker = Broker::start();
    let mut c = RawConn::connect(broker.broker_addr());
    // 1 GiB announced (Kafka's socket.request.max.bytes default is 100 MiB); only 4 KiB sent.
    c.stream
        .write_all(&(1i32 << 30).to_be_bytes())
        .expect("write");
    let _ = c.stream.write_all(&[0u8; 4096]);
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "oversized frame: connection not closed"
    );
    assert_serving(&mut broker);
}

#[test]
fn unknown_api_key_is_closed_or_answered() {
    let mut broker = Broker::start();
    let mut c = RawConn::connect(broker.broker_addr());
    let mut f = BytesMut::new();
    f.put_i16(9999); // api key
    f.put_i16(0); // version
    f.put_i32(42); // correlation id
    f.put_i16(4);
    f.put_slice(b"test");
    f.put_slice(&[0u8; 16]);
    c.send_frame(&f).expect("write");
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    match c.read_frame() {
        Ok(None) | Err(_) => {} // closed, as Apache Kafka does
        Ok(Some(mut resp)) => {
            assert!(resp.len() >= 4, "short response to an unknown api key");
            assert_eq!(
                resp.get_i32(),
                42,
                "response to an unknown api key must carry its correlation id"
            );
        }
    }
    assert_serving(&mut broker);
}

#[test]
fn api_versions_v0_v3_v4_and_future_version() {
    let broker = Broker::start();
    let mut c = RawConn::connect(broker.broker_addr());
    for v in [0i16, 1, 2, 3, 4] {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("gatehouse-e2e"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        let resp: ApiVersionsResponse = c.call(&req, v);
        assert_eq!(resp.error_code, 0, "ApiVersions v{v}");
        let find = |k: ApiKey| {
            resp.api_keys
                .iter()
                .find(|a| a.api_key == k as i16)
                .map(|a| (a.min_version, a.max_version))
        };
        let produce = find(ApiKey::Produce).expect("Produce advertised");
        assert_eq!(
            produce.0, 0,
            "Produce must be advertised from v0 (KAFKA-18659, librdkafka compression check)"
        );
        assert!(
            produce.1 >= 7,
            "Produce max {} < 7 (zstd needs 7)",
            produce.1
        );
        let fetch = find(ApiKey::Fetch).expect("Fetch advertised");
        assert!(
            fetch.1 <= 12 && fetch.1 >= 10,
            "Fetch max {} outside 10..=12",
            fetch.1
        );
        let av = find(ApiKey::ApiVersions).expect("ApiVersions advertised");
        assert!(av.0 == 0 && av.1 >= 3, "ApiVersions range {av:?}");
        for k in [
            ApiKey::Metadata,
            ApiKey::ListOffsets,
            ApiKey::FindCoordinator,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::LeaveGroup,
            ApiKey::OffsetCommit,
            ApiKey::OffsetFetch,
            ApiKey::CreateTopics,
            ApiKey::DeleteTopics,
            ApiKey::InitProducerId,
            ApiKey::DescribeConfigs,
            ApiKey::AlterConfigs,
            ApiKey::IncrementalAlterConfigs,
            ApiKey::CreatePartitions,
            ApiKey::DeleteRecords,
        ] {
            let r = find(k).unwrap_or_else(|| panic!("{k:?} not advertised"));
            assert!(r.0 <= r.1, "{k:?} range {r:?}");
        }
        let mut keys: Vec<i16> = resp.api_keys.iter().map(|a| a.api_key).collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "an api key is advertised twice");
    }

    // A version newer than the broker knows: UNSUPPORTED_VERSION in the v0 layout, with the
    // broker's real ranges so the client can retry (KIP-511).
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::ApiVersions as i16);
    f.put_i16(127);
    f.put_i32(9);
    f.put_i16(-1); // null client id
    f.put_slice(&[0u8; 8]); // whatever a future body looks like
    c.send_frame(&f).expect("write");
    let mut resp = c
        .read_frame()
        .expect("read")
        .expect("a response, not a closed socket");
    assert_eq!(resp.get_i32(), 9, "correlation id");
    let body = ApiVersionsResponse::decode(&mut resp, 0).expect("v0 layout");
    assert_eq!(body.error_code, UNSUPPORTED_VERSION);
    assert!(
        body.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::ApiVersions as i16)
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = Broker::start();
    let mut c = RawConn::connect(broker.broker_addr());
    let mut all = Vec::new();
    let mut corrs = Vec::new();
    for v in [3i16, 0, 3, 1, 3, 2, 3, 0, 3, 3] {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("pipeline"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let (corr, body) = c.encode_request(&req, v);
        all.extend_from_slice(&(body.len() as i32).to_be_bytes());
        all.extend_from_slice(&body);
        corrs.push(corr);
    }
    c.stream.write_all(&all).expect("write pipelined requests");
    for corr in corrs {
        let mut f = c.read_frame().expect("read").expect("response");
        assert_eq!(
            f.get_i32(),
            corr,
            "responses must come back in request order"
        );
    }
}

#[test]
fn produce_v2_gets_unsupported_version_not_a_dropped_socket() {
    let broker = Broker::start();
    let topic = unique("v2");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut c = RawConn::connect(broker.broker_addr());
    let batch = encode_batch(&[raw_record(0, None, b"old client")], Compression::None);
    // Produce v2 by hand (kafka-protocol only encodes v3+): header v1, then
    // acks, timeout, [topic [partition records]].
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::Produce as i16);
    f.put_i16(2);
    f.put_i32(77);
    f.put_i16(3);
    f.put_slice(b"old");
    f.put_i16(-1);
    f.put_i32(5000);
    f.put_i32(1);
    f.put_i16(topic.len() as i16);
    f.put_slice(topic.as_bytes());
    f.put_i32(1);
    f.put_i32(0);
    put_bytes(&mut f, &batch);
    c.send_frame(&f).expect("write");
    let mut resp = c
        .read_frame()
        .expect("read")
        .expect("Produce v2 must be answered with UNSUPPORTED_VERSION, not a closed socket");
    assert_eq!(resp.get_i32(), 77, "correlation id");
    // Produce response v2: [topic [partition error_code base_offset log_append_time]] throttle.
    assert_eq!(resp.get_i32(), 1, "one topic in the response");
    let n = resp.get_i16() as usize;
    assert_eq!(&resp[..n], topic.as_bytes());
    resp.advance(n);
    assert_eq!(resp.get_i32(), 1, "one partition in the response");
    assert_eq!(resp.get_i32(), 0, "partition index");
    assert_eq!(resp.get_i16(), UNSUPPORTED_VERSION, "partition error code");
    // The connection stays usable and nothing was stored.
    let v = c.api_versions();
    assert!(!v.is_empty());
    assert_eq!(
        watermarks(&broker.bootstrap(), &topic, 0),
        (0, 0),
        "a rejected v2 produce stored data"
    );
}

#[test]
fn bad_crc_is_corrupt_message_and_nothing_is_stored() {
    let broker = Broker::start();
    let topic = unique("crc");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut c = RawConn::connect(broker.broker_addr());

    let good = encode_batch(&[raw_record(0, Some(b"k"), b"intact")], Compression::None);
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x5a; // inside the CRC-covered part
    let resp = produce_raw(&mut c, &topic, 0, Bytes::from(bad));
    assert_eq!(
        partition_error(&resp),
        CORRUPT_MESSAGE,
        "bad CRC must answer CORRUPT_MESSAGE"
    );
    assert_eq!(
        watermarks(&broker.bootstrap(), &topic, 0),
        (0, 0),
        "a corrupt batch was stored"
    );

    // Batch length field that disagrees with the bytes sent.
    let mut short = good.to_vec();
    short.truncate(good.len() - 3);
    let resp = produce_raw(&mut c, &topic, 0, Bytes::from(short));
    assert_eq!(
        partition_error(&resp),
        CORRUPT_MESSAGE,
        "truncated batch must answer CORRUPT_MESSAGE"
    );
    assert_eq!(
        watermarks(&broker.bootstrap(), &topic, 0),
        (0, 0),
        "a truncated batch was stored"
    );

    // The same connection then stores the intact batch at offset 0.
    let resp = produce_raw(&mut c, &topic, 0, good);
    assert_eq!(partition_error(&resp), 0);
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 0);
    let msgs = consume_n(&broker.bootstrap(), &topic, 1, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(payload_str(&msgs[0]), "intact");
}

#[test]
fn undecodable_compressed_batch_is_refused() {
    // Kafka decompresses on append to validate records; a batch flagged gzip, with a valid
    // CRC but a payload that is not gzip, must not be stored and later served to consumers.
    use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions};
    let broker = Broker::start();
    let topic = unique("gzbad");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut c = RawConn::connect(broker.broker_addr());
    let mut gz = BytesMut::new();
    let rec = raw_record(0, None, &[b'z'; 300]);
    let not_gzip =
        |_records: &mut BytesMut, out: &mut BytesMut, _: Compression| -> anyhow::Result<()> {
            out.put_slice(b"\x1f\x8b\x08\x00 this is not a gzip stream at all");
            Ok(())
        };
    RecordBatchEncoder::encode_with_custom_compression(
        &mut gz,
        [&rec],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::Gzip,
        },
        Some(not_gzip),
    )
    .expect("encode batch");
    let resp = produce_raw(&mut c, &topic, 0, gz.freeze());
    assert_ne!(
        partition_error(&resp),
        0,
        "an undecodable gzip batch must be refused"
    );
    assert_eq!(watermarks(&broker.bootstrap(), &topic, 0), (0, 0));
}

#[test]
fn record_over_max_message_bytes_is_message_too_large() {
    let broker = Broker::start();
    let topic = unique("big");
    create_topic(
        &broker.bootstrap(),
        &topic,
        1,
        &[("max.message.bytes", "1024")],
    );
    let mut c = RawConn::connect(broker.broker_addr());

    let big = encode_batch(&[raw_record(0, None, &[7u8; 4096])], Compression::None);
    let resp = produce_raw(&mut c, &topic, 0, big);
    assert_eq!(partition_error(&resp), MESSAGE_TOO_LARGE);
    assert_eq!(watermarks(&broker.bootstrap(), &topic, 0), (0, 0));

    let small = encode_batch(&[raw_record(0, None, &[7u8; 512])], Compression::None);
    let resp = produce_raw(&mut c, &topic, 0, small);
    assert_eq!(
        partition_error(&resp),
        0,
        "a batch under the limit is accepted"
    );
    assert_eq!(watermarks(&broker.bootstrap(), &topic, 0), (0, 1));
}

#[test]
fn produce_to_unknown_topic_or_partition() {
    let broker = Broker::start();
    let topic = unique("known");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut c = RawConn::connect(broker.broker_addr());
    let b = encode_batch(&[raw_record(0, None, b"x")], Compression::None);
    let resp = produce_raw(&mut c, &unique("nosuch"), 0, b.clone());
    assert_eq!(
        partition_error(&resp),
        UNKNOWN_TOPIC_OR_PARTITION,
        "auto-create is off by default"
    );
    let resp = produce_raw(&mut c, &topic, 5, b);
    assert_eq!(
        partition_error(&resp),
        UNKNOWN_TOPIC_OR_PARTITION,
        "partition 5 of a 1-partition topic"
    );
}

#[test]
fn many_bad_connections_do_not_exhaust_the_broker() {
    let mut broker = Broker::start();
    for i in 0..200u32 {
        let mut c = RawConn::connect(broker.broker_addr());
        let _ = c
            .stream
            .write_all(&i.wrapping_mul(0x9e37_79b9).to_be_bytes());
        let _ = c.stream.write_all(&[0xab; 32]);
    }
    assert_serving(&mut broker);
}
