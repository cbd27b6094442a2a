//! Crash safety: SIGKILL the broker (durable mode, the default) in the middle of an
//! acks=all idempotent produce stream, restart it on the same data dir, and check that every
//! acknowledged record is there, in order, exactly once, at the offset its ack reported,
//! and that a consumer group resumes from its committed offsets.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const PARTS: i32 = 2;

#[derive(Default)]
struct Outcome {
    /// record number -> (partition, offset) for acknowledged records
    acked: BTreeMap<usize, (i32, i64)>,
    /// record number -> error for records whose delivery failed
    failed: BTreeMap<usize, String>,
}

/// Makes the producer wait at record `pause_at` until `go` is set, so the test can line up
/// the crash with a stream that is certainly still running.
struct Gate {
    pause_at: usize,
    paused: AtomicBool,
    go: AtomicBool,
}

/// Produces records `0..n` in chunks (each chunk enqueued at once, then awaited, so every
/// chunk costs at least one round trip and the stream lasts long enough to be interrupted).
fn spawn_producer(
    bs: String,
    topic: String,
    n: usize,
    chunk: usize,
    out: Arc<Mutex<Outcome>>,
    gate: Arc<Gate>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use rdkafka::producer::FutureRecord;
        let p = producer(
            &bs,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("message.timeout.ms", "60000"),
                ("request.timeout.ms", "5000"),
            ],
        );
        let rt = runtime();
        let mut i = 0;
        while i < n {
            if i >= gate.pause_at && !gate.go.load(Ordering::SeqCst) {
                gate.paused.store(true, Ordering::SeqCst);
                let until = Instant::now() + Duration::from_secs(120);
                while !gate.go.load(Ordering::SeqCst) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let end = (i + chunk).min(n);
            let values: Vec<String> = (i..end)
                .map(|k| format!("{k:08}-{}", "x".repeat(100)))
                .collect();
            let futs: Vec<_> = (i..end)
                .map(|k| {
                    let rec = FutureRecord::<(), str>::to(&topic)
                        .partition((k % PARTS as usize) as i32)
                        .payload(values[k - i].as_str());
                    p.send_result(rec).map_err(|(e, _)| e.to_string())
                })
                .collect();
            rt.block_on(async {
                for (k, f) in (i..end).zip(futs) {
                    let res = match f {
                        Ok(f) => match f.await {
                            Ok(Ok(d)) => Ok((d.partition, d.offset)),
                            Ok(Err((e, _))) => Err(e.to_string()),
                            Err(_) => Err("delivery future canceled".to_string()),
                        },
                        Err(e) => Err(e),
                    };
                    let mut o = out.lock().expect("outcome lock");
                    match res {
                        Ok(po) => {
                            o.acked.insert(k, po);
                        }
                        Err(e) => {
                            o.failed.insert(k, e);
                        }
                    }
                }
            });
            i = end;
        }
    })
}

fn record_number(payload: &[u8]) -> usize {
    let s = String::from_utf8_lossy(payload);
    s.split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad payload {s:?}"))
}

/// Reads every partition from the start and checks the log against the acks.
fn verify_log(bs: &str, topic: &str, outcome: &Outcome) {
    let hw: Vec<i64> = (0..PARTS).map(|p| watermarks(bs, topic, p).1).collect();
    let total: i64 = hw.iter().sum();
    let msgs = consume_n(bs, topic, PARTS, total as usize);
    assert_eq!(
        msgs.len() as i64,
        total,
        "more records than the high watermarks say"
    );
    let mut by_pos: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let mut last: Vec<Option<usize>> = vec![None; PARTS as usize];
    let mut next_off = vec![0i64; PARTS as usize];
    for m in &msgs {
        let pn = m.partition();
        let k = record_number(m.payload().unwrap_or_default());
        assert_eq!(
            k % PARTS as usize,
            pn as usize,
            "record {k} in partition {pn}"
        );
        assert_eq!(
            m.offset(),
            next_off[pn as usize],
            "partition {pn}: offsets must be contiguous"
        );
        next_off[pn as usize] += 1;
        if let Some(prev) = last[pn as usize] {
            assert!(
                k > prev,
                "partition {pn}: record {k} at offset {} after record {prev}: duplicate or reordering",
                m.offset()
            );
        }
        last[pn as usize] = Some(k);
        by_pos.insert((pn, m.offset()), k);
    }
    let mut missing = Vec::new();
    for (k, (pn, off)) in &outcome.acked {
        match by_pos.get(&(*pn, *off)) {
            Some(found) if found == k => {}
            Some(found) => {
                panic!("record {k} was acked at {pn}/{off}, but that offset holds record {found}")
            }
            None => missing.push((*k, *pn, *off)),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged records are missing after the crash, first ones: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

#[test]
fn kill_9_mid_stream_keeps_every_acked_record_once_in_order() {
    let mut broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique("crash");
    let group = unique("crash-group");
    create_topic(&bs, &topic, PARTS, &[]);

    let n = 30_000;
    let out = Arc::new(Mutex::new(Outcome::default()));
    let gate = Arc::new(Gate {
        pause_at: n / 3,
        paused: AtomicBool::new(false),
        go: AtomicBool::new(false),
    });
    let handle = spawn_producer(bs.clone(), topic.clone(), n, 200, out.clone(), gate.clone());

    // A group member consumes alongside and commits explicit offsets every few hundred records.
    let c = group_consumer(&bs, &group, &[]);
    c.subscribe(&[&topic]).expect("subscribe");
    let mut next = [0i64; PARTS as usize];
    let mut committed: Option<[i64; PARTS as usize]> = None;
    let mut since_commit = 0;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < until,
            "producer/consumer made too little progress before the kill"
        );
        assert!(
            !handle.is_finished(),
            "producer ended early: {:?}",
            out.lock().expect("lock").failed.iter().next()
        );
        if let Some(m) = c.poll(Duration::from_millis(20)) {
            let m = m.expect("consume before the crash");
            next[m.partition() as usize] = m.offset() + 1;
            since_commit += 1;
        }
        if since_commit >= 300 {
            let mut tpl = TopicPartitionList::new();
            for (pn, off) in next.iter().enumerate() {
                tpl.add_partition_offset(&topic, pn as i32, Offset::Offset(*off))
                    .expect("tpl");
            }
            c.commit(&tpl, CommitMode::Sync)
                .expect("commit before the crash");
            committed = Some(next);
            since_commit = 0;
        }
        if gate.paused.load(Ordering::SeqCst) && committed.is_some() && next.iter().all(|o| *o > 0)
        {
            break;
        }
    }
    let committed = committed.expect("a commit happened");

    // Let the stream run again and crash the broker in the middle of it.
    gate.go.store(true, Ordering::SeqCst);
    let resume_from = out.lock().expect("lock").acked.len();
    let until = Instant::now() + OP_DEADLINE;
    while out.lock().expect("lock").acked.len() < resume_from + 400 {
        assert!(Instant::now() < until, "the stream did not resume");
        std::thread::sleep(Duration::from_millis(1));
    }
    broker.kill9();
    let acked_at_kill = out.lock().expect("lock").acked.len();
    broker.restart();

    // The producer retries its in-flight batches against the restarted broker and goes on.
    let until = Instant::now() + Duration::from_secs(150);
    while !handle.is_finished() {
        if Instant::now() >= until {
            let o = out.lock().expect("lock");
            panic!(
                "the producer did not finish after the restart: {} of {n} acked ({} at the kill), {} failed (first: {:?})",
                o.acked.len(),
                acked_at_kill,
                o.failed.len(),
                o.failed.iter().next()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.join().expect("producer thread");
    drop(c); // leaves the group without committing

    let outcome = out.lock().expect("lock");
    assert!(
        acked_at_kill < n,
        "the kill happened after the stream ended; nothing was in flight"
    );
    verify_log(&bs, &topic, &outcome);

    // A new member of the group resumes exactly at the committed offsets.
    let c2 = group_consumer(&bs, &group, &[]);
    c2.subscribe(&[&topic]).expect("subscribe after restart");
    let mut first: [Option<i64>; PARTS as usize] = [None; PARTS as usize];
    let until = Instant::now() + OP_DEADLINE;
    while first.iter().any(|f| f.is_none()) {
        assert!(
            Instant::now() < until,
            "group did not resume on every partition: {first:?}"
        );
        if let Some(m) = c2.poll(Duration::from_millis(100)) {
            let m = m.expect("consume after restart");
            let slot = &mut first[m.partition() as usize];
            if slot.is_none() {
                *slot = Some(m.offset());
            }
        }
    }
    let first: Vec<i64> = first.iter().map(|f| f.unwrap_or(-1)).collect();
    assert_eq!(
        first,
        committed.to_vec(),
        "group must resume at its committed offsets"
    );

    assert!(
        outcome.failed.is_empty(),
        "{} deliveries failed although the broker came back (first: {:?})",
        outcome.failed.len(),
        outcome.failed.iter().next()
    );
    assert_eq!(outcome.acked.len(), n);
}

#[test]
fn repeated_kills_lose_nothing_acknowledged() {
    let mut broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique("rekill");
    create_topic(&bs, &topic, PARTS, &[]);
    let mut outcome = Outcome::default();
    for round in 0..3usize {
        let p = producer(&bs, &[("enable.idempotence", "true"), ("acks", "all")]);
        let base = round * 1000;
        let recs: Vec<Rec> = (base..base + 1000)
            .map(|k| Rec {
                partition: Some((k % PARTS as usize) as i32),
                value: Some(format!("{k:08}-r{round}").into_bytes()),
                ..Rec::default()
            })
            .collect();
        let acks = produce_all(&p, &topic, &recs).expect("produce");
        for (j, a) in acks.into_iter().enumerate() {
            outcome.acked.insert(base + j, a);
        }
        drop(p);
        broker.kill9();
        broker.restart();
    }
    verify_log(&bs, &topic, &outcome);
    for pn in 0..PARTS {
        assert_eq!(
            watermarks(&bs, &topic, pn).1,
            1500,
            "partition {pn} high watermark"
        );
    }
}

fn find_segment_files(dir: &Path, topic: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            find_segment_files(&path, topic, out);
        } else if path.extension().is_some_and(|x| x == "log")
            && path
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|d| d.to_string_lossy().starts_with(&format!("{topic}-")))
        {
            out.push(path);
        }
    }
}

#[test]
fn torn_tail_is_truncated_at_startup() {
    let mut broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique("torn");
    create_topic(&bs, &topic, 1, &[]);
    let p = producer(&bs, &[("acks", "all")]);
    let recs: Vec<Rec> = (0..100).map(|k| Rec::value(format!("{k:08}"))).collect();
    let acks = produce_all(&p, &topic, &recs).expect("produce");
    assert_eq!(acks.last(), Some(&(0, 99)));
    drop(p);
    broker.kill9();

    // Simulate a write torn by the crash: half a batch header at the end of the active segment.
    let mut segs = Vec::new();
    find_segment_files(&broker.data_dir(), &topic, &mut segs);
    segs.sort();
    let active = segs.last().unwrap_or_else(|| {
        panic!(
            "no <topic>-<partition>/<offset>.log segment under {}",
            broker.data_dir().display()
        )
    });
    let mut data = read_file(active);
    let mut torn = Vec::new();
    torn.extend_from_slice(&100i64.to_be_bytes()); // base offset
    torn.extend_from_slice(&4000i32.to_be_bytes()); // batch length, but the rest is missing
    torn.extend_from_slice(&[0, 0, 0, 0, 2, 0xde, 0xad]);
    data.extend_from_slice(&torn);
    std::fs::write(active, &data).expect("write torn tail");

    broker.restart();
    let msgs = consume_n(&bs, &topic, 1, 100);
    assert_eq!(
        msgs.len(),
        100,
        "records lost or garbage served after a torn tail"
    );
    for (k, m) in msgs.iter().enumerate() {
        assert_eq!((m.offset(), payload_str(m)), (k as i64, format!("{k:08}")));
    }
    // Appends continue right after the last good batch.
    let p = producer(&bs, &[("acks", "all")]);
    let more = produce_all(&p, &topic, &[Rec::value("after")]).expect("produce after recovery");
    assert_eq!(more, vec![(0, 100)]);
}
