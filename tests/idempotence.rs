//! The idempotent producer (`enable.idempotence=true`: InitProducerId, sequence numbers,
//! up to 5 in-flight requests per connection): every record stored once, in order, at the
//! offset its acknowledgement reported.

mod common;

use common::*;
use rdkafka::message::Message;

#[test]
fn idempotent_producer_many_records_once_in_order() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique("idem");
    let parts = 3;
    create_topic(&bs, &topic, parts, &[]);
    let p = producer(
        &bs,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "5"),
            ("batch.num.messages", "100"),
        ],
    );
    let n = 20_000usize;
    let recs: Vec<Rec> = (0..n)
        .map(|i| Rec {
            partition: Some((i % parts as usize) as i32),
            key: Some(format!("k{}", i % 97).into_bytes()),
            value: Some(format!("{i:08}").into_bytes()),
            ..Rec::default()
        })
        .collect();
    let acks = produce_all(&p, &topic, &recs).expect("idempotent produce");
    for (i, (part, off)) in acks.iter().enumerate() {
        assert_eq!(*part, (i % parts as usize) as i32);
        assert_eq!(
            *off,
            (i / parts as usize) as i64,
            "ack offset of record {i}"
        );
    }

    let msgs = consume_n(&bs, &topic, parts, n);
    assert_eq!(msgs.len(), n, "record count (duplicates?)");
    let mut next = vec![0usize; parts as usize];
    for m in &msgs {
        let i: usize = payload_str(m).parse().expect("numeric payload");
        let pn = m.partition() as usize;
        assert_eq!(i % parts as usize, pn, "record {i} in partition {pn}");
        assert_eq!(
            i / parts as usize,
            next[pn],
            "partition {pn}: expected record #{} next, got {i}",
            next[pn]
        );
        assert_eq!(m.offset(), next[pn] as i64);
        next[pn] += 1;
    }
    for pn in 0..parts {
        assert_eq!(
            watermarks(&bs, &topic, pn).1,
            (n / parts as usize) as i64 + i64::from(pn < (n % parts as usize) as i32)
        );
    }
}

#[test]
fn two_idempotent_producers_get_distinct_ids() {
    // Two producers writing the same partition interleave; neither one's sequence numbers
    // may be mistaken for the other's (that would drop records as "duplicates").
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique("idem2");
    create_topic(&bs, &topic, 1, &[]);
    let cfg = [("enable.idempotence", "true"), ("acks", "all")];
    let p1 = producer(&bs, &cfg);
    let p2 = producer(&bs, &cfg);
    let n = 2000usize;
    for round in 0..4 {
        let a: Vec<Rec> = (0..n / 8)
            .map(|i| Rec::value(format!("p1-{round}-{i}")))
            .collect();
        let b: Vec<Rec> = (0..n / 8)
            .map(|i| Rec::value(format!("p2-{round}-{i}")))
            .collect();
        produce_all(&p1, &topic, &a).expect("p1");
        produce_all(&p2, &topic, &b).expect("p2");
    }
    let msgs = consume_n(&bs, &topic, 1, n);
    assert_eq!(msgs.len(), n);
    for (who, _) in [("p1", 0), ("p2", 1)] {
        let mine: Vec<String> = msgs
            .iter()
            .map(payload_str)
            .filter(|s| s.starts_with(who))
            .collect();
        let want: Vec<String> = (0..4)
            .flat_map(|r| (0..n / 8).map(move |i| format!("{who}-{r}-{i}")))
            .collect();
        assert_eq!(mine, want, "records of {who} lost, duplicated or reordered");
    }
}
