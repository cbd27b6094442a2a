//! End-to-end: `gatehouse user add|delete|list` and `gatehouse acl add|remove|list` (the real
//! binary) against the real `gatehouse serve`, over the gateway's plaintext SASL listener.
//!
//! * `user_and_acl_lifecycle`: add a user (password on stdin), list it, grant it WRITE on a
//!   topic (and a prefixed `--subject` binding, Gatehouse's resource type 100), list the ACLs,
//!   produce as that user with rdkafka over SASL_PLAINTEXT + SCRAM-SHA-512, remove the ACLs
//!   (exactly, then `--all-matching`) and the user, which then cannot log in.
//! * `refusals_and_connection_errors`: a non-admin user running `acl add` / `acl list` /
//!   `user add` exits 1 with CLUSTER_AUTHORIZATION_FAILED; a wrong admin password, an
//!   unreachable gateway and bad flags exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{ADMIN_PASSWORD, Broker, BrokerOptions, Rec};
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;

/// What one CLI run left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `gatehouse ARGS` against `broker`'s plaintext gateway listener, with the admin password
/// in GATEHOUSE_ADMIN_PASSWORD, `env` added and `stdin` piped in.
fn gatehouse(broker: &Broker, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(args)
        .env("GATEHOUSE_BOOTSTRAP", broker.gateway_plain())
        .env("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run gatehouse");
    // A command that exits before reading (usage errors) may close stdin first: ignore EPIPE.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait for gatehouse");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ gatehouse {} -> {}\n{}{}",
        args.join(" "),
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

/// Asserts the exit code, showing the output when it differs.
fn expect(run: &Run, code: i32) {
    assert_eq!(
        run.code, code,
        "exit code\n--- stdout ---\n{}--- stderr ---\n{}",
        run.stdout, run.stderr
    );
}

/// librdkafka settings for SASL_PLAINTEXT + SCRAM-SHA-512 as `user`.
fn sasl(user: &str, password: &str) -> Vec<(String, String)> {
    vec![
        ("security.protocol".into(), "SASL_PLAINTEXT".into()),
        ("sasl.mechanisms".into(), "SCRAM-SHA-512".into()),
        ("sasl.username".into(), user.into()),
        ("sasl.password".into(), password.into()),
    ]
}

fn refs(kv: &[(String, String)]) -> Vec<(&str, &str)> {
    kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Creates `topic` through the gateway as the admin user.
fn create_topic_as_admin(broker: &Broker, topic: &str) {
    let mut c = common::client_config(&broker.gateway_plain());
    for (k, v) in sasl("admin", ADMIN_PASSWORD) {
        c.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = c.create().expect("admin client");
    let res = common::runtime()
        .block_on(admin.create_topics(
            [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &common::admin_opts(),
        ))
        .expect("CreateTopics");
    for r in res {
        r.unwrap_or_else(|(t, code)| panic!("create topic {t}: {code:?}"));
    }
}

/// Produces one record to `topic` as `user`; the delivery result.
fn produce_as(broker: &Broker, user: &str, password: &str, topic: &str) -> Result<(), String> {
    let mut extra = sasl(user, password);
    extra.push(("message.timeout.ms".into(), "15000".into()));
    let p = common::producer(&broker.gateway_plain(), &refs(&extra));
    common::produce_all(&p, topic, &[Rec::value("hello from the CLI test")])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn json(run: &Run) -> Vec<Value> {
    match serde_json::from_str::<Value>(&run.stdout) {
        Ok(Value::Array(a)) => a,
        other => panic!("expected a JSON array, got {other:?}\n{}", run.stdout),
    }
}

#[test]
fn user_and_acl_lifecycle() {
    let broker = Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    });
    let topic = common::unique("cli-acl");
    let alice_pw = "alice-pw-123";
    let alice_env = [("ALICE_PW", alice_pw)];
    create_topic_as_admin(&broker, &topic);

    // Both commands are wired into main.rs.
    expect(&gatehouse(&broker, &["user", "--help"], &[], ""), 0);
    let help = gatehouse(&broker, &["acl", "add", "--help"], &[], "");
    expect(&help, 0);
    assert!(help.stdout.contains("Plaintext only"), "{}", help.stdout);

    // user add (password on stdin), user list.
    let r = gatehouse(
        &broker,
        &["user", "add", "alice"],
        &[],
        &format!("{alice_pw}\n"),
    );
    expect(&r, 0);
    assert!(
        r.stdout.contains("SCRAM-SHA-256 credential set"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("SCRAM-SHA-512 credential set"),
        "{}",
        r.stdout
    );
    let r = gatehouse(&broker, &["user", "list"], &[], "");
    expect(&r, 0);
    assert!(r.stdout.starts_with("USER"), "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["alice", "SCRAM-SHA-512", "8192"]),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("admin"), "{}", r.stdout);
    let r = gatehouse(&broker, &["user", "list", "alice", "--json"], &[], "");
    expect(&r, 0);
    let rows = json(&r);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|v| v["user"] == "alice" && v["iterations"] == 8192)
    );

    // Without an ACL alice can log in but not write.
    let denied = produce_as(&broker, "alice", alice_pw, &topic);
    assert!(denied.is_err(), "alice produced without an ACL");
    let r = gatehouse(
        &broker,
        &[
            "acl",
            "list",
            "--user",
            "alice",
            "--password-env",
            "ALICE_PW",
        ],
        &alice_env,
        "",
    );
    expect(&r, 1);
    assert!(
        r.stderr.contains("CLUSTER_AUTHORIZATION_FAILED"),
        "{}",
        r.stderr
    );

    // acl add: topic WRITE + DESCRIBE, and a prefixed subject binding (resource type 100).
    let r = gatehouse(
        &broker,
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--allow",
            "--operation",
            "write,DESCRIBE",
            "--topic",
            &topic,
        ],
        &[],
        "",
    );
    expect(&r, 0);
    assert_eq!(r.stdout.matches("added: ").count(), 2, "{}", r.stdout);
    let r = gatehouse(
        &broker,
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--allow",
            "--operation",
            "READ",
            "--subject",
            "alice-",
            "--prefixed",
        ],
        &[],
        "",
    );
    expect(&r, 0);

    // acl list: table by principal, JSON by topic (MATCH: what applies to the topic).
    let r = gatehouse(
        &broker,
        &["acl", "list", "--principal", "User:alice"],
        &[],
        "",
    );
    expect(&r, 0);
    let lines: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines.first().map(Vec::as_slice),
        Some(
            &[
                "PRINCIPAL",
                "PERMISSION",
                "OPERATION",
                "RESOURCE_TYPE",
                "RESOURCE_NAME",
                "PATTERN",
                "HOST"
            ][..]
        )
    );
    assert!(
        lines.contains(&vec![
            "User:alice",
            "ALLOW",
            "WRITE",
            "TOPIC",
            topic.as_str(),
            "LITERAL",
            "*"
        ]),
        "{}",
        r.stdout
    );
    assert!(
        lines.contains(&vec![
            "User:alice",
            "ALLOW",
            "READ",
            "SUBJECT",
            "alice-",
            "PREFIXED",
            "*"
        ]),
        "{}",
        r.stdout
    );
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    let r = gatehouse(
        &broker,
        &["acl", "list", "--topic", &topic, "--json"],
        &[],
        "",
    );
    expect(&r, 0);
    let acls = json(&r);
    assert_eq!(acls.len(), 2, "{acls:?}");
    assert!(acls.iter().any(|a| a["principal"] == "User:alice"
        && a["operation"] == "WRITE"
        && a["permission"] == "ALLOW"
        && a["resource_type"] == "TOPIC"
        && a["resource_name"] == topic.as_str()
        && a["pattern_type"] == "LITERAL"
        && a["host"] == "*"));

    // The new user can now do the allowed thing.
    produce_as(&broker, "alice", alice_pw, &topic).expect("alice produces after the ACL");

    // acl remove: exactly those bindings; again is an error; --all-matching takes the rest.
    let remove = [
        "acl",
        "remove",
        "--principal",
        "User:alice",
        "--allow",
        "--operation",
        "WRITE,DESCRIBE",
        "--topic",
        &topic,
    ];
    let r = gatehouse(&broker, &remove, &[], "");
    expect(&r, 0);
    assert_eq!(r.stdout.matches("removed: ").count(), 2, "{}", r.stdout);
    let r = gatehouse(&broker, &remove, &[], "");
    expect(&r, 1);
    assert!(r.stderr.contains("no such ACL"), "{}", r.stderr);
    let r = gatehouse(
        &broker,
        &[
            "acl",
            "remove",
            "--all-matching",
            "--principal",
            "User:alice",
        ],
        &[],
        "",
    );
    expect(&r, 0);
    assert!(
        r.stdout
            .contains("removed: ALLOW User:alice READ on SUBJECT alice-"),
        "{}",
        r.stdout
    );
    let r = gatehouse(
        &broker,
        &[
            "acl",
            "list",
            "--principal",
            "User:alice",
            "--output",
            "json",
        ],
        &[],
        "",
    );
    expect(&r, 0);
    assert!(json(&r).is_empty(), "{}", r.stdout);

    // user delete: gone from the list, and alice can no longer log in.
    let r = gatehouse(&broker, &["user", "delete", "alice"], &[], "");
    expect(&r, 0);
    assert!(
        r.stdout.contains("SCRAM-SHA-512 credential deleted"),
        "{}",
        r.stdout
    );
    let r = gatehouse(&broker, &["user", "list", "alice"], &[], "");
    expect(&r, 1);
    assert!(r.stderr.contains("RESOURCE_NOT_FOUND"), "{}", r.stderr);
    let r = gatehouse(&broker, &["user", "delete", "alice"], &[], "");
    expect(&r, 1);
    let r = gatehouse(
        &broker,
        &[
            "acl",
            "list",
            "--user",
            "alice",
            "--password-env",
            "ALICE_PW",
        ],
        &alice_env,
        "",
    );
    expect(&r, 2);
}

#[test]
fn refusals_and_connection_errors() {
    let broker = Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    });
    let bob = [("BOB_PW", "bob-pw-456")];
    let as_bob = ["--user", "bob", "--password-env", "BOB_PW"];

    let r = gatehouse(
        &broker,
        &[
            "user",
            "add",
            "bob",
            "--mechanism",
            "SCRAM-SHA-512",
            "--new-password-env",
            "BOB_PW",
            "--iterations",
            "4096",
        ],
        &bob,
        "",
    );
    expect(&r, 0);
    let r = gatehouse(&broker, &["user", "list", "bob", "--json"], &[], "");
    expect(&r, 0);
    let rows = json(&r);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["mechanism"], "SCRAM-SHA-512");
    assert_eq!(rows[0]["iterations"], 4096);

    // A non-admin user: the gateway refuses, exit 1 with Kafka's error name and message.
    let mut args = vec![
        "acl",
        "add",
        "--principal",
        "User:bob",
        "--allow",
        "--operation",
        "ALL",
        "--cluster",
    ];
    args.extend(as_bob);
    let r = gatehouse(&broker, &args, &bob, "");
    expect(&r, 1);
    assert!(
        r.stderr
            .contains("CLUSTER_AUTHORIZATION_FAILED: Not authorized to create ACLs."),
        "{}",
        r.stderr
    );
    let mut args = vec!["user", "add", "mallory", "--new-password-env", "BOB_PW"];
    args.extend(as_bob);
    let r = gatehouse(&broker, &args, &bob, "");
    expect(&r, 1);
    assert!(
        r.stderr.contains("CLUSTER_AUTHORIZATION_FAILED"),
        "{}",
        r.stderr
    );
    let mut args = vec![
        "acl",
        "remove",
        "--all-matching",
        "--principal",
        "User:admin",
    ];
    args.extend(as_bob);
    let r = gatehouse(&broker, &args, &bob, "");
    expect(&r, 1);
    assert!(
        r.stderr.contains("CLUSTER_AUTHORIZATION_FAILED"),
        "{}",
        r.stderr
    );

    // A wrong admin password: exit 2 with what to check.
    let r = gatehouse(
        &broker,
        &["acl", "list", "--password-env", "WRONG_PW"],
        &[("WRONG_PW", "nope")],
        "",
    );
    expect(&r, 2);
    assert!(
        r.stderr.contains("refused to log in user 'admin'"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("WRONG_PW"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("nope"),
        "the password leaked: {}",
        r.stderr
    );
    let r = gatehouse(
        &broker,
        &["user", "list", "--password-env", "UNSET_PW_VAR"],
        &[],
        "",
    );
    expect(&r, 2);
    assert!(r.stderr.contains("UNSET_PW_VAR"), "{}", r.stderr);

    // Nobody listening: exit 2, naming the listener flag.
    let closed = format!("127.0.0.1:{}", common::free_port());
    let r = gatehouse(&broker, &["user", "list", "--bootstrap", &closed], &[], "");
    expect(&r, 2);
    assert!(
        r.stderr.contains("cannot reach the gateway"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--gateway-plain-listen"), "{}", r.stderr);

    // Usage errors: exit 2 before anything is sent.
    for args in [
        &[
            "acl",
            "add",
            "--principal",
            "alice",
            "--allow",
            "--operation",
            "READ",
            "--topic",
            "t",
        ][..],
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "READ",
            "--topic",
            "t",
        ][..],
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--allow",
            "--operation",
            "FLY",
            "--topic",
            "t",
        ][..],
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--allow",
            "--operation",
            "READ",
        ][..],
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--allow",
            "--operation",
            "READ",
            "--topic",
            "t",
            "--group",
            "g",
        ][..],
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--allow",
            "--operation",
            "READ",
            "--topic",
            "t",
            "--host",
            "nowhere",
        ][..],
        &["acl", "remove", "--all-matching"][..],
        &["user", "add", "carol", "--iterations", "100"][..],
    ] {
        let r = gatehouse(&broker, args, &[], "");
        expect(&r, 2);
    }
    // No password on stdin.
    let r = gatehouse(&broker, &["user", "add", "carol"], &[], "");
    expect(&r, 2);
    assert!(r.stderr.contains("--new-password-env"), "{}", r.stderr);
}

/// `gatehouse doctor` against a healthy `serve`: every check ok, exit 0, JSON output parses;
/// pointed at an admin port nobody listens on: that check fails and the exit code is 1.
/// `gatehouse completions bash` prints a script naming the subcommands.
#[test]
fn doctor_and_completions() {
    let broker = Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    });
    let data = broker.data_dir();
    let data = data.to_str().unwrap();
    let admin = broker.admin_addr().to_string();
    let gateway = broker.gateway_tls_addr().to_string();
    let registry = broker.registry_addr().to_string();
    let broker_addr = broker.broker_addr().to_string();
    let base = [
        "doctor",
        "--data-dir",
        data,
        "--admin-listen",
        &admin,
        "--gateway-listen",
        &gateway,
        "--registry-listen",
        &registry,
        "--broker-listen",
        &broker_addr,
    ];
    let mut args = base.to_vec();
    args.extend(["--output", "json"]);
    let run = gatehouse(&broker, &args, &[], "");
    expect(&run, 0);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["ok"], true, "{doc}");
    let checks = doc["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for want in [
        "admin /health",
        "clock skew",
        "gateway certificate",
        "gateway Kafka",
        "schema registry",
        "upstream",
        "audit trail",
        "disk space",
    ] {
        assert!(names.contains(&want), "{want} missing in {names:?}");
    }
    for c in checks {
        // Disk space may legitimately warn on a full CI disk; everything else must be ok.
        if c["name"] != "disk space" {
            assert_eq!(c["verdict"], "ok", "{c}");
        }
    }

    // The admin API is not where the flags say: that check fails, exit 1, table output.
    let dead = common::free_port().to_string();
    let dead_admin = format!("127.0.0.1:{dead}");
    let mut args = base.to_vec();
    args[4] = &dead_admin;
    let run = gatehouse(&broker, &args, &[], "");
    expect(&run, 1);
    assert!(run.stdout.starts_with("RESULT"), "{}", run.stdout);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("admin /health")),
        "{}",
        run.stdout
    );

    let run = gatehouse(&broker, &["completions", "bash"], &[], "");
    expect(&run, 0);
    for sub in [
        "serve", "doctor", "schema", "audit", "key", "topic", "group", "user", "acl", "role",
        "cluster",
    ] {
        assert!(run.stdout.contains(sub), "completion lacks {sub}");
    }
}
