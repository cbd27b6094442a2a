//! Produce and consume with a real client (rdkafka / librdkafka 2.12): every compression
//! codec, keys, headers (duplicates and order), several partitions, acks=all/1/0.

mod common;

use common::*;
use kafka_protocol::records::Compression;
use rdkafka::message::{Headers, Message};

fn compressible(i: usize) -> Vec<u8> {
    format!("record {i:05} ").repeat(40).into_bytes()
}

/// Produces with `codec`, reads it back with the client, and checks with a raw Fetch
/// that the broker stored (and serves) the batches compressed with that codec.
fn roundtrip_codec(codec: &str, expected: Compression) {
    let broker = Broker::start();
    let topic = unique(&format!("codec-{codec}"));
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let p = producer(
        &broker.bootstrap(),
        &[("compression.type", codec), ("acks", "all")],
    );
    let recs: Vec<Rec> = (0..500)
        .map(|i| Rec {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(compressible(i)),
            ..Rec::default()
        })
        .collect();
    let acks = produce_all(&p, &topic, &recs).expect("produce");
    for (i, (part, off)) in acks.iter().enumerate() {
        assert_eq!((*part, *off), (0, i as i64), "ack of record {i}");
    }
    let msgs = consume_n(&broker.bootstrap(), &topic, 1, recs.len());
    assert_eq!(msgs.len(), recs.len(), "record count (duplicates?)");
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.offset(), i as i64);
        assert_eq!(m.key(), Some(format!("k{i}").as_bytes()));
        assert_eq!(
            m.payload(),
            Some(compressible(i).as_slice()),
            "payload of record {i}"
        );
    }
    let mut conn = RawConn::connect(broker.broker_addr());
    let (err, set) = raw_fetch(&mut conn, &topic, 0, 0);
    assert_eq!(err, 0, "raw fetch error code");
    let codecs = batch_compressions(&set);
    assert!(!codecs.is_empty(), "raw fetch returned no batch");
    assert!(
        codecs.iter().all(|c| *c == expected),
        "stored batches are {codecs:?}, expected all {expected:?} (a client that sends uncompressed \
         batches usually means Produce v0 is not advertised, see KAFKA-18659)"
    );
}

#[test]
fn codec_none() {
    roundtrip_codec("none", Compression::None);
}

#[test]
fn codec_gzip() {
    roundtrip_codec("gzip", Compression::Gzip);
}

#[test]
fn codec_snappy() {
    roundtrip_codec("snappy", Compression::Snappy);
}

#[test]
fn codec_lz4() {
    roundtrip_codec("lz4", Compression::Lz4);
}

#[test]
fn codec_zstd() {
    roundtrip_codec("zstd", Compression::Zstd);
}

#[test]
fn keys_and_headers_keep_order_and_duplicates() {
    let broker = Broker::start();
    let topic = unique("headers");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let p = producer(&broker.bootstrap(), &[("acks", "all")]);
    let headers: Vec<(String, Option<Vec<u8>>)> = vec![
        ("trace".into(), Some(b"a".to_vec())),
        ("dup".into(), Some(b"first".to_vec())),
        ("empty".into(), Some(Vec::new())),
        ("null".into(), None),
        ("dup".into(), Some(b"second".to_vec())),
        ("bin".into(), Some(vec![0, 255, 1, 254])),
        ("dup".into(), Some(b"third".to_vec())),
    ];
    let recs = vec![
        Rec {
            key: Some(b"key-1".to_vec()),
            value: Some(b"v1".to_vec()),
            headers: headers.clone(),
            ..Rec::default()
        },
        // Null key, null value (a tombstone-shaped record) with headers.
        Rec {
            headers: headers.clone(),
            ..Rec::default()
        },
        // Empty key and value, no headers.
        Rec {
            key: Some(Vec::new()),
            value: Some(Vec::new()),
            ..Rec::default()
        },
    ];
    produce_all(&p, &topic, &recs).expect("produce");
    let msgs = consume_n(&broker.bootstrap(), &topic, 1, recs.len());
    assert_eq!(msgs.len(), 3);

    assert_eq!(msgs[0].key(), Some(&b"key-1"[..]));
    assert_eq!(msgs[0].payload(), Some(&b"v1"[..]));
    assert_eq!(msgs[1].key(), None, "null key must stay null");
    assert_eq!(msgs[1].payload(), None, "null value must stay null");
    assert_eq!(
        msgs[2].key(),
        Some(&b""[..]),
        "empty key must stay empty (not null)"
    );
    assert_eq!(
        msgs[2].payload(),
        Some(&b""[..]),
        "empty value must stay empty (not null)"
    );
    assert!(msgs[2].headers().is_none_or(|h| h.count() == 0));

    for m in &msgs[..2] {
        let got: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .expect("headers present")
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
            .collect();
        assert_eq!(
            got, headers,
            "headers must come back in order, duplicates kept"
        );
    }
}

#[test]
fn multiple_partitions_keep_per_partition_order() {
    let broker = Broker::start();
    let topic = unique("parts");
    let parts = 4;
    create_topic(&broker.bootstrap(), &topic, parts, &[]);
    let p = producer(&broker.bootstrap(), &[("acks", "all")]);
    let n = 2000usize;
    let recs: Vec<Rec> = (0..n)
        .map(|i| Rec {
            partition: Some((i % parts as usize) as i32),
            value: Some(format!("{i}").into_bytes()),
            ..Rec::default()
        })
        .collect();
    let acks = produce_all(&p, &topic, &recs).expect("produce");
    for (i, (part, off)) in acks.iter().enumerate() {
        assert_eq!(*part, (i % parts as usize) as i32);
        assert_eq!(*off, (i / parts as usize) as i64, "offset of record {i}");
    }
    let msgs = consume_n(&broker.bootstrap(), &topic, parts, n);
    assert_eq!(msgs.len(), n, "record count (duplicates?)");
    let mut last = vec![-1i64; parts as usize];
    for m in &msgs {
        let i: usize = payload_str(m).parse().expect("numeric payload");
        assert_eq!(
            m.partition(),
            (i % parts as usize) as i32,
            "record {i} in the wrong partition"
        );
        assert_eq!(
            m.offset(),
            (i / parts as usize) as i64,
            "record {i} at the wrong offset"
        );
        let l = &mut last[m.partition() as usize];
        assert!(m.offset() > *l, "partition {} out of order", m.partition());
        *l = m.offset();
    }
    for pn in 0..parts {
        assert_eq!(
            watermarks(&broker.bootstrap(), &topic, pn),
            (0, (n / parts as usize) as i64)
        );
    }
}

fn produce_with_acks(acks: &str) {
    let broker = Broker::start();
    let topic = unique(&format!("acks{acks}"));
    create_topic(&broker.bootstrap(), &topic, 2, &[]);
    let p = producer(&broker.bootstrap(), &[("acks", acks)]);
    let n = 300usize;
    let recs: Vec<Rec> = (0..n)
        .map(|i| Rec {
            partition: Some((i % 2) as i32),
            value: Some(format!("{i}").into_bytes()),
            ..Rec::default()
        })
        .collect();
    let acked = produce_all(&p, &topic, &recs).expect("produce");
    if acks != "0" {
        for (i, (_, off)) in acked.iter().enumerate() {
            assert_eq!(*off, (i / 2) as i64, "offset of record {i}");
        }
    }
    let msgs = consume_n(&broker.bootstrap(), &topic, 2, n);
    assert_eq!(msgs.len(), n);
    let mut seen: Vec<usize> = msgs
        .iter()
        .map(|m| payload_str(m).parse().expect("numeric"))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    // With acks=0 the broker must not answer produce requests; the client would see a
    // stray response. A second produce on the same connection proves the stream is in sync.
    let more = produce_all(
        &p,
        &topic,
        &[Rec {
            partition: Some(0),
            value: Some(b"after".to_vec()),
            ..Rec::default()
        }],
    )
    .expect("second produce");
    assert_eq!(more.len(), 1);
    let _ = consume_n(&broker.bootstrap(), &topic, 2, n + 1);
}

#[test]
fn acks_all() {
    produce_with_acks("all");
}

#[test]
fn acks_one() {
    produce_with_acks("1");
}

#[test]
fn acks_zero() {
    produce_with_acks("0");
}

#[test]
fn large_records_across_fetches() {
    // 40 records of 256 KiB: more than one fetch response, batches larger than the
    // client's default partition fetch size must still be returned whole.
    let broker = Broker::start();
    let topic = unique("large");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let p = producer(
        &broker.bootstrap(),
        &[("acks", "all"), ("batch.size", "1048576")],
    );
    let recs: Vec<Rec> = (0..40)
        .map(|i| Rec::value(vec![b'a' + (i % 26) as u8; 256 * 1024]))
        .collect();
    produce_all(&p, &topic, &recs).expect("produce");
    let c = consume_n(&broker.bootstrap(), &topic, 1, 40);
    assert_eq!(c.len(), 40);
    for (i, m) in c.iter().enumerate() {
        assert_eq!(m.payload().map(|p| p.len()), Some(256 * 1024));
        assert_eq!(
            m.payload().and_then(|p| p.first()).copied(),
            Some(b'a' + (i % 26) as u8)
        );
    }
}
