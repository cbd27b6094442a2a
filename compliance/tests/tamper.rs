//! Tamper campaign and crash recovery for the audit trail.
//!
//! The campaign generates one trail (~2,000 events, several sealed segments, one key
//! rotation), then applies 1,000 random mutations (deterministic seed), each to a fresh copy
//! of the directory, and requires `verify_dir` to fail at exactly the mutated place.

// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ed25519_dalek::SigningKey;
use ed25519_dalek::ed25519::signature::Signer as _;
use gatehouse_compliance::audit::merkle::leaf_hash;
use gatehouse_compliance::{
    AuditEvent, AuditLog, AuditLogConfig, Checkpoint, EventType, ExportFormat, MasterKey,
    PublicKey, QueryFilter, Timestamp, export, verify_dir,
};
use sha2::{Digest, Sha256};

/// SplitMix64: a small deterministic generator for the campaign.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn event(i: u64) -> AuditEvent {
    let methods = [
        "kafka.Produce",
        "kafka.Fetch",
        "kafka.CreateTopics",
        "kafka.Authenticate",
    ];
    AuditEvent::builder(if i % 4 == 3 {
        EventType::Authentication
    } else {
        EventType::Authorization
    })
    .service("gateway")
    .method(methods[(i % 4) as usize])
    .principal(format!("User:app-{}", i % 13))
    .auth_mechanism("SASL_SSL/SCRAM-SHA-512")
    .resource("Topic", format!("payments-{}", i % 5))
    .operation(if i.is_multiple_of(2) { "Write" } else { "Read" })
    .client_address(format!("10.1.{}.{}:{}", i % 7, i % 200, 40000 + i % 1000))
    .client_id(format!("client-{}", i % 11))
    .correlation_id(i.to_string())
    .granted(!i.is_multiple_of(9))
    .matched_rule("acl:allow:User:*:Topic:payments-*")
    .time(Timestamp::from_unix_micros(
        1_735_689_600_000_000 + i as i64 * 1_000,
    ))
    .attribute("partition", (i % 6).to_string())
    .build()
    .unwrap()
}

fn config() -> AuditLogConfig {
    let mut c = AuditLogConfig::new("node-7");
    c.segment_max_bytes = 64 << 10;
    c.checkpoint_every_events = 100;
    c.min_free_bytes = 0;
    c
}

fn master() -> MasterKey {
    MasterKey::from_bytes([0x42; 32])
}

/// One record (or trailer) of a segment file as laid out on disk.
#[derive(Clone, Debug)]
struct Frame {
    offset: usize,
    len: usize,
    /// The record's sequence, or for the trailer the next sequence.
    seq: u64,
}

#[derive(Clone, Debug)]
struct Segment {
    name: String,
    first: u64,
    bytes: Vec<u8>,
    records: Vec<Frame>,
    trailer: Option<Frame>,
}

/// Parses segment files independently of the library (the documented format).
fn parse_segment(name: &str, bytes: Vec<u8>) -> Segment {
    let first = name.trim_end_matches(".seg").parse().unwrap();
    assert_eq!(&bytes[..8], b"GHAUDSG1");
    let mut pos = 8;
    let mut records = Vec::new();
    let mut trailer = None;
    while pos < bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let seq = u64::from_be_bytes(bytes[pos + 4..pos + 12].try_into().unwrap());
        let f = Frame {
            offset: pos,
            len: 16 + len,
            seq,
        };
        pos += f.len;
        if len == 0 {
            trailer = Some(f);
        } else {
            records.push(f);
        }
    }
    assert_eq!(pos, bytes.len());
    Segment {
        name: name.to_owned(),
        first,
        bytes,
        records,
        trailer,
    }
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    copy_tree(from, to, false);
}

/// Copies a directory tree. With `link`, files are hard links to the originals: cheap, and
/// safe because every mutation replaces a file (unlink + write) instead of writing into it;
/// the campaign checks at the end that no original changed.
fn copy_tree(from: &Path, to: &Path, link: bool) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target, link);
        } else if link {
            fs::hard_link(e.path(), &target).unwrap();
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Replaces a file with new contents (a new inode: never writes through a hard link).
fn rewrite(path: &Path, bytes: &[u8]) {
    fs::remove_file(path).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Sequence of the frame containing byte `offset` (the magic counts as the first record).
fn seq_at(seg: &Segment, offset: usize) -> u64 {
    if offset < 8 {
        return seg.first;
    }
    seg.records
        .iter()
        .chain(seg.trailer.iter())
        .find(|f| offset < f.offset + f.len)
        .map(|f| f.seq)
        .unwrap()
}

#[derive(Debug)]
enum Expect {
    Segment(String, u64),
    Checkpoint(String),
}

fn resign(cp_bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut cp = Checkpoint::from_json(cp_bytes).unwrap();
    let mut seed = [0u8; 32];
    for b in &mut seed {
        *b = rng.next() as u8;
    }
    let attacker = SigningKey::from_bytes(&seed);
    match rng.below(3) {
        0 => cp.time = "2031-01-01T00:00:00.000000Z".into(),
        1 => cp.root_hash[rng.below(32)] ^= 0x10,
        _ => {}
    }
    if rng.below(2) == 0 {
        // Attacker's own key, correctly labelled.
        let vk = attacker.verifying_key();
        cp.public_key = vk.to_bytes();
        cp.key_id = hex::encode(Sha256::digest(vk.to_bytes()));
    }
    cp.signature = attacker.sign(&cp.signing_input()).to_bytes();
    cp.to_file_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tamper_campaign_every_mutation_detected_at_its_place() {
    let tmp = tempfile::tempdir().unwrap();
    let trail = tmp.path().join("trail");
    let t0 = Instant::now();
    let (log, _) = AuditLog::open(&trail, config(), master()).unwrap();
    for chunk in 0..10u64 {
        log.append_batch((chunk * 100..chunk * 100 + 100).map(event).collect())
            .await
            .unwrap();
    }
    log.rotate_key().await.unwrap();
    for chunk in 10..20u64 {
        log.append_batch((chunk * 100..chunk * 100 + 100).map(event).collect())
            .await
            .unwrap();
    }
    log.close().await.unwrap();
    let genesis = {
        let history = fs::read_to_string(trail.join("keys/history.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(history.lines().next().unwrap()).unwrap();
        PublicKey::from_hex(first["publicKey"].as_str().unwrap()).unwrap()
    };
    let pinned = [genesis];
    let report = verify_dir(&trail, Some(&pinned)).unwrap();
    assert_eq!(
        report.tree_size, 2003,
        "Started + 1000 + KeyRotated + 1000 + Stopped"
    );
    assert!(report.segments >= 10, "{report}");
    assert!(report.checkpoints >= 20, "{report}");
    assert_eq!(report.key_ids.len(), 2);
    assert_eq!(report.unanchored_events, 0);
    let generated = t0.elapsed();

    let segments: Vec<Segment> = list(&trail.join("segments"))
        .iter()
        .map(|n| parse_segment(n, fs::read(trail.join("segments").join(n)).unwrap()))
        .collect();
    let checkpoints = list(&trail.join("checkpoints"));
    let pristine: BTreeMap<PathBuf, Vec<u8>> = ["segments", "checkpoints", "keys"]
        .iter()
        .flat_map(|d| {
            let sub = trail.join(d);
            list(&sub).into_iter().map(move |n| sub.join(n))
        })
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();

    let mut rng = Rng(0x6a09_e667_f3bc_c908);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let work = tmp.path().join("work");
    let mut verify_time = std::time::Duration::ZERO;
    const MUTATIONS: usize = 1000;
    for round in 0..MUTATIONS {
        if work.exists() {
            fs::remove_dir_all(&work).unwrap();
        }
        copy_tree(&trail, &work, true);
        let sdir = work.join("segments");
        let cdir = work.join("checkpoints");
        let seg = &segments[rng.below(segments.len())];
        let spath = sdir.join(&seg.name);
        let kind = rng.below(9);
        let (label, expect) = match kind {
            0 => {
                let off = rng.below(seg.bytes.len());
                let mut b = seg.bytes.clone();
                b[off] ^= (1 + rng.below(255)) as u8;
                rewrite(&spath, &b);
                (
                    "flip segment byte",
                    Expect::Segment(seg.name.clone(), seq_at(seg, off)),
                )
            }
            1 => {
                let r = &seg.records[rng.below(seg.records.len())];
                let mut b = seg.bytes.clone();
                b.drain(r.offset..r.offset + r.len);
                rewrite(&spath, &b);
                ("delete event", Expect::Segment(seg.name.clone(), r.seq))
            }
            2 => {
                let r = &seg.records[rng.below(seg.records.len())];
                let mut b = seg.bytes.clone();
                let copy = b[r.offset..r.offset + r.len].to_vec();
                b.splice(r.offset + r.len..r.offset + r.len, copy);
                rewrite(&spath, &b);
                (
                    "duplicate event",
                    Expect::Segment(seg.name.clone(), r.seq + 1),
                )
            }
            3 => {
                let n = seg.records.len();
                let i = rng.below(n);
                let mut j = rng.below(n - 1);
                if j >= i {
                    j += 1;
                }
                let (a, z) = (&seg.records[i.min(j)], &seg.records[i.max(j)]);
                let b = &seg.bytes;
                let mut out = b[..a.offset].to_vec();
                out.extend_from_slice(&b[z.offset..z.offset + z.len]);
                out.extend_from_slice(&b[a.offset + a.len..z.offset]);
                out.extend_from_slice(&b[a.offset..a.offset + a.len]);
                out.extend_from_slice(&b[z.offset + z.len..]);
                rewrite(&spath, &out);
                ("swap events", Expect::Segment(seg.name.clone(), a.seq))
            }
            4 => {
                let cut = rng.below(seg.bytes.len());
                rewrite(&spath, &seg.bytes[..cut]);
                // The first frame not wholly kept is the first affected one.
                let seq = if cut < 8 {
                    seg.first
                } else {
                    seg.records
                        .iter()
                        .chain(seg.trailer.iter())
                        .find(|f| f.offset + f.len > cut)
                        .map(|f| f.seq)
                        .unwrap()
                };
                ("truncate segment", Expect::Segment(seg.name.clone(), seq))
            }
            5 => {
                fs::remove_file(&spath).unwrap();
                (
                    "delete segment",
                    Expect::Segment(seg.name.clone(), seg.first),
                )
            }
            6 => {
                let c = &checkpoints[rng.below(checkpoints.len())];
                fs::remove_file(cdir.join(c)).unwrap();
                ("delete checkpoint", Expect::Checkpoint(c.clone()))
            }
            7 => {
                let c = &checkpoints[rng.below(checkpoints.len())];
                let mut b = fs::read(cdir.join(c)).unwrap();
                let off = rng.below(b.len());
                b[off] ^= (1 + rng.below(255)) as u8;
                rewrite(&cdir.join(c), &b);
                ("alter checkpoint", Expect::Checkpoint(c.clone()))
            }
            _ => {
                let c = &checkpoints[rng.below(checkpoints.len())];
                let b = resign(&fs::read(cdir.join(c)).unwrap(), &mut rng);
                rewrite(&cdir.join(c), &b);
                ("re-sign checkpoint", Expect::Checkpoint(c.clone()))
            }
        };
        *counts.entry(label).or_default() += 1;
        let tv = Instant::now();
        let verdict = verify_dir(&work, Some(&pinned));
        verify_time += tv.elapsed();
        let err = match verdict {
            Ok(r) => panic!("round {round}: {label} ({expect:?}) NOT detected:\n{r}"),
            Err(e) => e,
        };
        let ok = match &expect {
            Expect::Segment(name, seq) => {
                err.segment() == Some(name.as_str()) && err.sequence() == Some(*seq)
            }
            Expect::Checkpoint(name) => err.checkpoint() == Some(name.as_str()),
        };
        assert!(
            ok,
            "round {round}: {label}: expected {expect:?}, got: {err}"
        );
    }
    // The copies never touched the original.
    for (p, b) in &pristine {
        assert_eq!(&fs::read(p).unwrap(), b, "{}", p.display());
    }
    verify_dir(&trail, Some(&pinned)).unwrap();
    eprintln!(
        "tamper campaign: {MUTATIONS} mutations, all detected at the mutated place {counts:?}; \
         trail of {} events in {} segments / {} checkpoints generated in {:?}, campaign {:?} (verify {:?})",
        report.tree_size,
        segments.len(),
        checkpoints.len(),
        generated,
        t0.elapsed() - generated,
        verify_time
    );
    assert_eq!(counts.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_truncates_torn_tail_and_keeps_acknowledged_events() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let mut cfg = config();
    cfg.segment_max_bytes = 1 << 20;
    cfg.checkpoint_every_events = 1_000_000;
    let (log, _) = AuditLog::open(&live, cfg.clone(), master()).unwrap();

    // Acknowledged events, appended from a task.
    let appender = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in 0..40u64 {
                receipts.push(log.append(event(i)).await.unwrap());
            }
            for chunk in 0..4u64 {
                let batch = (100 + chunk * 50..150 + chunk * 50).map(event).collect();
                receipts.extend(log.append_batch(batch).await.unwrap());
            }
            receipts
        })
    };
    let acknowledged = appender.await.unwrap();
    assert_eq!(acknowledged.len(), 240);
    let last_ack = acknowledged.last().unwrap().sequence;

    // More events in flight while the "crash" snapshot is taken.
    let in_flight = {
        let log = log.clone();
        tokio::spawn(async move { log.append_batch((1000..1100).map(event).collect()).await })
    };
    let crashed = tmp.path().join("crashed");
    copy_dir(&live, &crashed);
    in_flight.await.unwrap().unwrap();
    log.close().await.unwrap();

    // Tear the tail: cut the first record after the last acknowledged one in half, or, if
    // the snapshot caught none, append half a record as a torn write would leave it.
    let seg_dir = crashed.join("segments");
    let name = list(&seg_dir).pop().unwrap();
    let path = seg_dir.join(&name);
    let seg = parse_segment(&name, fs::read(&path).unwrap());
    assert!(seg.trailer.is_none(), "the live segment is not sealed");
    let after = seg.records.iter().find(|r| r.seq > last_ack).cloned();
    let mut bytes = seg.bytes.clone();
    let cut_at = match &after {
        Some(r) => {
            bytes.truncate(r.offset + r.len / 2);
            r.offset
        }
        None => {
            let r = seg.records.last().unwrap().clone();
            let half = bytes[r.offset..r.offset + r.len / 2].to_vec();
            bytes.extend_from_slice(&half);
            seg.bytes.len()
        }
    };
    fs::write(&path, &bytes).unwrap();

    let (reopened, report) = AuditLog::open(&crashed, cfg, master()).unwrap();
    let torn = report.torn_tail.clone().expect("torn tail reported");
    assert_eq!(torn.segment, name);
    assert_eq!(torn.offset, cut_at as u64);
    assert_eq!(torn.bytes_truncated, (bytes.len() - cut_at) as u64);
    assert!(torn.first_lost_sequence > last_ack);
    let resumed = reopened.append(event(5000)).await.unwrap();
    assert_eq!(
        resumed.sequence,
        torn.first_lost_sequence + 1,
        "after audit.Started"
    );
    reopened.close().await.unwrap();

    let report = verify_dir(&crashed, None).unwrap();
    assert_eq!(report.unanchored_events, 0);
    let mut out = Vec::new();
    export(
        &crashed,
        ExportFormat::Jsonl,
        &QueryFilter::default(),
        &mut out,
    )
    .unwrap();
    let leaves: Vec<[u8; 32]> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(leaf_hash)
        .collect();
    for r in &acknowledged {
        assert_eq!(
            leaves.get(r.sequence as usize),
            Some(&r.leaf_hash),
            "acknowledged event {} lost or changed",
            r.sequence
        );
    }
    let started = gatehouse_compliance::query(
        &crashed,
        &QueryFilter {
            method: Some("audit.Started".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(started.len(), 2);
    assert_eq!(
        started[1]
            .attributes
            .get("recoveredTornTail")
            .map(String::as_str),
        Some("true")
    );
}
