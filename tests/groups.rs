//! Consumer groups with a real client: a second member triggers a rebalance, both members
//! get partitions and every record is consumed exactly once across them; committed
//! offsets survive `kill -9` of the broker.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

fn assigned(c: &BaseConsumer) -> Vec<i32> {
    let mut v: Vec<i32> = c
        .assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Polls one consumer once; returns (partition, offset, payload) of a message if any.
fn poll_one(c: &BaseConsumer, name: &str) -> Option<(i32, i64, String)> {
    match c.poll(Duration::from_millis(50)) {
        Some(Ok(m)) => Some((
            m.partition(),
            m.offset(),
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        )),
        Some(Err(e)) => panic!("consumer {name}: {e}"),
        None => None,
    }
}

#[test]
fn two_members_rebalance_and_consume_exactly_once() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique("grp");
    let group = unique("group");
    let parts = 4;
    create_topic(&bs, &topic, parts, &[]);
    let p = producer(&bs, &[("acks", "all")]);

    // Phase 1: one member owns every partition.
    let a = group_consumer(&bs, &group, &[("client.id", "member-a")]);
    a.subscribe(&[&topic]).expect("subscribe a");
    let batch1: Vec<Rec> = (0..100)
        .map(|i| Rec {
            partition: Some(i % parts),
            value: Some(format!("b1-{i}").into_bytes()),
            ..Rec::default()
        })
        .collect();
    produce_all(&p, &topic, &batch1).expect("produce batch 1");
    let mut seen_a: Vec<(i32, i64, String)> = Vec::new();
    let until = Instant::now() + OP_DEADLINE;
    while seen_a.len() < batch1.len() {
        assert!(
            Instant::now() < until,
            "member a consumed {} of {} (assignment {:?})",
            seen_a.len(),
            batch1.len(),
            assigned(&a)
        );
        if let Some(r) = poll_one(&a, "a") {
            seen_a.push(r);
        }
    }
    assert_eq!(
        assigned(&a),
        (0..parts).collect::<Vec<_>>(),
        "a alone must own all partitions"
    );
    a.commit_consumer_state(CommitMode::Sync).expect("commit a");

    // Phase 2: a second member joins; poll both until the group has settled with both
    // owning a disjoint, complete share.
    let b = group_consumer(&bs, &group, &[("client.id", "member-b")]);
    b.subscribe(&[&topic]).expect("subscribe b");
    let mut seen_b: Vec<(i32, i64, String)> = Vec::new();
    let until = Instant::now() + OP_DEADLINE;
    loop {
        if let Some(r) = poll_one(&a, "a") {
            seen_a.push(r);
        }
        if let Some(r) = poll_one(&b, "b") {
            seen_b.push(r);
        }
        let (pa, pb) = (assigned(&a), assigned(&b));
        let mut all: Vec<i32> = pa.iter().chain(pb.iter()).copied().collect();
        all.sort_unstable();
        if !pa.is_empty() && !pb.is_empty() && all == (0..parts).collect::<Vec<_>>() {
            break;
        }
        assert!(
            Instant::now() < until,
            "group did not rebalance: a={pa:?} b={pb:?}"
        );
    }
    let (pa, pb) = (assigned(&a), assigned(&b));

    let batch2: Vec<Rec> = (0..400)
        .map(|i| Rec {
            partition: Some(i % parts),
            value: Some(format!("b2-{i}").into_bytes()),
            ..Rec::default()
        })
        .collect();
    produce_all(&p, &topic, &batch2).expect("produce batch 2");
    let until = Instant::now() + OP_DEADLINE;
    let count_b2 =
        |v: &Vec<(i32, i64, String)>| v.iter().filter(|r| r.2.starts_with("b2-")).count();
    while count_b2(&seen_a) + count_b2(&seen_b) < batch2.len() {
        assert!(
            Instant::now() < until,
            "consumed {}+{} of {} after the rebalance (a={pa:?} b={pb:?})",
            count_b2(&seen_a),
            count_b2(&seen_b),
            batch2.len()
        );
        if let Some(r) = poll_one(&a, "a") {
            seen_a.push(r);
        }
        if let Some(r) = poll_one(&b, "b") {
            seen_b.push(r);
        }
    }
    // Keep polling a little to catch duplicates.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        if let Some(r) = poll_one(&a, "a") {
            seen_a.push(r);
        }
        if let Some(r) = poll_one(&b, "b") {
            seen_b.push(r);
        }
    }

    assert!(
        count_b2(&seen_a) > 0,
        "member a got no record after the rebalance (a={pa:?})"
    );
    assert!(
        count_b2(&seen_b) > 0,
        "member b got no record after the rebalance (b={pb:?})"
    );
    for (who, seen, parts_owned) in [("a", &seen_a, &pa), ("b", &seen_b, &pb)] {
        for r in seen.iter().filter(|r| r.2.starts_with("b2-")) {
            assert!(
                parts_owned.contains(&r.0),
                "member {who} got {r:?} from a partition it does not own"
            );
        }
    }
    let mut all: Vec<&String> = seen_a.iter().chain(seen_b.iter()).map(|r| &r.2).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        total,
        "some record was consumed twice across the group"
    );
    assert_eq!(
        total,
        batch1.len() + batch2.len(),
        "not every record was consumed"
    );
}

#[test]
fn committed_offsets_survive_kill_9() {
    let mut broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique("commit");
    let group = unique("group");
    create_topic(&bs, &topic, 1, &[]);
    let p = producer(&bs, &[("acks", "all")]);
    let recs: Vec<Rec> = (0..50).map(|i| Rec::value(format!("{i}"))).collect();
    produce_all(&p, &topic, &recs).expect("produce");
    drop(p);

    {
        let c = group_consumer(&bs, &group, &[]);
        c.subscribe(&[&topic]).expect("subscribe");
        let mut last = -1;
        let until = Instant::now() + OP_DEADLINE;
        while last < 19 {
            assert!(Instant::now() < until, "consumed up to {last} only");
            if let Some(m) = c.poll(Duration::from_millis(100)) {
                let m = m.expect("consume");
                last = m.offset();
            }
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(20))
            .expect("tpl");
        c.commit(&tpl, CommitMode::Sync).expect("commit offset 20");
        let committed = c.committed(Duration::from_secs(10)).expect("committed");
        assert_eq!(
            committed.find_partition(&topic, 0).map(|e| e.offset()),
            Some(Offset::Offset(20))
        );
    } // the consumer leaves the group here

    broker.kill9();
    broker.restart();

    let c = group_consumer(&bs, &group, &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed = poll_until(OP_DEADLINE, "OffsetFetch after restart", || {
        c.committed_offsets(tpl.clone(), Duration::from_secs(5))
            .ok()
    });
    assert_eq!(
        committed.find_partition(&topic, 0).map(|e| e.offset()),
        Some(Offset::Offset(20)),
        "committed offset lost by the restart"
    );
    c.subscribe(&[&topic]).expect("subscribe");
    let mut got = Vec::new();
    let until = Instant::now() + OP_DEADLINE;
    while got.len() < 30 {
        assert!(
            Instant::now() < until,
            "after restart consumed only {got:?}"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            got.push((
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    assert_eq!(
        got[0].0, 20,
        "the group must resume at its committed offset"
    );
    let want: Vec<(i64, String)> = (20..50).map(|i| (i, i.to_string())).collect();
    assert_eq!(got, want);
}
