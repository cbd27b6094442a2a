//! kcat 1.7.1 (Debian's, built on librdkafka 2.0.2: an old, real client whose ApiVersions v3
//! parsing is strict) against the broker: metadata, produce and consume with every codec.
//! kcat must be on PATH (`apt-get install kcat`); a missing kcat fails these tests.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::records::Compression;

const KCAT_DEADLINE: Duration = Duration::from_secs(60);

fn kcat_path() -> String {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kcat"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => p.to_string_lossy().into_owned(),
        None => panic!(
            "kcat is not on PATH. These tests need Debian's kcat 1.7.1 \
             (`apt-get install -y kcat`; .ci/run installs it)."
        ),
    }
}

/// Runs kcat with `args`, feeding `stdin`, killing it at the deadline.
fn kcat(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(kcat_path());
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn kcat");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().expect("kcat stdin");
        si.write_all(input).expect("write kcat stdin");
    } // stdin closed here: kcat -P flushes and exits
    // Drain the pipes on threads so a chatty kcat cannot block on a full pipe.
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let until = Instant::now() + KCAT_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait kcat") {
            break s;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            let err = t_err.join().unwrap_or_default();
            panic!(
                "kcat {args:?} did not finish within {KCAT_DEADLINE:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: kcat exited with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kcat_is_installed() {
    let out = kcat(&["-V"], None);
    let text = ok(&out, "kcat -V");
    assert!(text.contains("kcat") || String::from_utf8_lossy(&out.stderr).contains("kcat"));
}

#[test]
fn kcat_lists_metadata() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique("kcat-md");
    create_topic(&bs, &topic, 3, &[]);

    let text = ok(&kcat(&["-b", &bs, "-L", "-m", "10"], None), "kcat -L");
    assert!(
        text.contains(&format!("topic \"{topic}\" with 3 partitions")),
        "kcat -L output:\n{text}"
    );
    assert!(
        text.contains(&bs),
        "kcat -L must show the advertised address {bs}:\n{text}"
    );

    let json = ok(
        &kcat(&["-b", &bs, "-L", "-J", "-t", &topic, "-m", "10"], None),
        "kcat -L -J",
    );
    let v: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("kcat -J output is not JSON ({e}):\n{json}"));
    let brokers = v["brokers"].as_array().expect("brokers array");
    assert_eq!(brokers.len(), 1, "{json}");
    assert!(
        brokers[0]["name"].as_str().is_some_and(|n| n.contains(&bs)),
        "advertised address in {json}"
    );
    let t = v["topics"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["topic"] == topic.as_str()))
        .unwrap_or_else(|| panic!("topic missing from {json}"));
    assert_eq!(t["partitions"].as_array().map(|p| p.len()), Some(3));
}

fn produce_consume(codec: &str, expected: Compression) {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique(&format!("kcat-{codec}"));
    create_topic(&bs, &topic, 1, &[]);

    let n = 200;
    let input: String = (0..n)
        .map(|i| format!("key{i}:value {i} {}\n", "abc".repeat(20)))
        .collect();
    let out = kcat(
        &[
            "-b", &bs, "-P", "-t", &topic, "-p", "0", "-K", ":", "-z", codec, "-H", "h=1", "-H",
            "h=2", "-X", "acks=all",
        ],
        Some(input.as_bytes()),
    );
    ok(&out, &format!("kcat -P -z {codec}"));

    let out = kcat(
        &[
            "-b",
            &bs,
            "-C",
            "-t",
            &topic,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%o|%k|%s|%h\\n",
        ],
        None,
    );
    let text = ok(&out, "kcat -C -e");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        n,
        "kcat consumed {} of {n} records:\n{text}",
        lines.len()
    );
    for (i, line) in lines.iter().enumerate() {
        let want = format!("{i}|key{i}|value {i} {}|h=1,h=2", "abc".repeat(20));
        assert_eq!(*line, want, "record {i}");
    }

    let mut conn = RawConn::connect(broker.broker_addr());
    let (err, set) = raw_fetch(&mut conn, &topic, 0, 0);
    assert_eq!(err, 0);
    let codecs = batch_compressions(&set);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| *c == expected),
        "kcat -z {codec}: stored batches are {codecs:?} (librdkafka 2.0.2 silently drops compression \
         when Produce v0 is not advertised, KAFKA-18659)"
    );
}

#[test]
fn kcat_codec_none() {
    produce_consume("none", Compression::None);
}

#[test]
fn kcat_codec_gzip() {
    produce_consume("gzip", Compression::Gzip);
}

#[test]
fn kcat_codec_snappy() {
    produce_consume("snappy", Compression::Snappy);
}

#[test]
fn kcat_codec_lz4() {
    produce_consume("lz4", Compression::Lz4);
}

#[test]
fn kcat_codec_zstd() {
    produce_consume("zstd", Compression::Zstd);
}

#[test]
fn kcat_consumer_group() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = unique("kcat-grp");
    create_topic(&bs, &topic, 2, &[]);
    let input: String = (0..50).map(|i| format!("{i}\n")).collect();
    ok(
        &kcat(&["-b", &bs, "-P", "-t", &topic], Some(input.as_bytes())),
        "kcat -P",
    );
    let group = unique("kcat-group");
    let out = kcat(
        &[
            "-b",
            &bs,
            "-G",
            &group,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%s\\n",
            "-X",
            "auto.offset.reset=earliest",
            &topic,
        ],
        None,
    );
    let text = ok(&out, "kcat -G");
    let mut got: Vec<u32> = text.lines().map(|l| l.parse().expect("number")).collect();
    got.sort_unstable();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}
