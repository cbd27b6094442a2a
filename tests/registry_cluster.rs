//! Two `gatehouse serve` registry nodes sharing one Kafka: one writer of `_schemas`, elected
//! through Kafka group membership; the follower forwards writes to it.
//!
//! Topology: a standalone `gatehouse broker` (the shared Kafka), node A and node B both
//! `serve --upstream-bootstrap <broker>`, sharing the master key (the harness's
//! `TEST_MASTER_KEY`) and A's certificate (B gets `gateway.tls_cert` / `tls_key` and
//! `registry.forward_ca`). The Kafka is a process of its own so that either node can be
//! stopped: with A's bundled broker as the shared Kafka, stopping A would stop the cluster.
//!
//! Asserted: one leader shown by `GET /v1/metadata/leader` on both nodes; registrations
//! alternating between the nodes and concurrent ones from several threads against both yield
//! unique ids; the same schema gets the same id whichever node is asked; both nodes answer
//! every id at once (read-your-writes on the follower); SIGTERM to the leader → the other
//! node leads and accepts writes within the session timeout, ids stay unique and above every
//! earlier id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{Value, json};

/// `registry.session_timeout_ms` of both nodes.
const SESSION_MS: u64 = 6000;

struct Answer {
    status: u16,
    body: Value,
}

/// One HTTPS/1.1 request, trusting `ca`, as the admin user.
fn https(ca: &Path, addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let config = gatehouse_gateway::tls::client_config(ca, None).expect("client config");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(&config), name).expect("tls client");
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let payload = body.map(Value::to_string).unwrap_or_default();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic {auth}\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => panic!("read: {e}"),
    }
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, rest) = text.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    Answer {
        status,
        body: serde_json::from_str(rest).unwrap_or(Value::Null),
    }
}

fn schema(name: &str) -> Value {
    json!({"schema": json!({"type":"record","name":name,"fields":[{"name":"f","type":"long"}]}).to_string()})
}

fn register(ca: &Path, addr: SocketAddr, subject: &str, name: &str) -> i64 {
    let a = https(
        ca,
        addr,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(&schema(name)),
    );
    assert_eq!(a.status, 200, "register {subject} on {addr}: {}", a.body);
    a.body["id"].as_i64().expect("id")
}

fn leader(ca: &Path, addr: SocketAddr) -> Value {
    https(ca, addr, "GET", "/v1/metadata/leader", None).body
}

fn url(addr: SocketAddr) -> String {
    format!("https://localhost:{}", addr.port())
}

/// Waits until both nodes agree on one leader among `nodes`; returns its index.
fn agreed_leader(ca: &Path, nodes: &[SocketAddr], deadline: Duration) -> usize {
    poll_until(deadline, "both nodes agree on one leader", || {
        let views: Vec<Value> = nodes.iter().map(|a| leader(ca, *a)).collect();
        let leaders: Vec<usize> = views
            .iter()
            .enumerate()
            .filter(|(_, v)| v["is_leader"] == json!(true))
            .map(|(i, _)| i)
            .collect();
        if leaders.len() != 1 {
            return None;
        }
        let l = leaders[0];
        let want = json!(url(nodes[l]));
        views.iter().all(|v| v["leader"] == want).then_some(l)
    })
}

fn serve_node(
    broker: &Broker,
    config: Option<&str>,
    dir: &Path,
    name: &str,
) -> (Broker, Option<PathBuf>) {
    let mut extra = vec!["--upstream-bootstrap".to_string(), broker.bootstrap()];
    let path = config.map(|text| {
        let p = dir.join(format!("{name}.toml"));
        std::fs::write(&p, text).expect("write config");
        extra.push("--config".into());
        extra.push(p.display().to_string());
        p
    });
    let node = Broker::start_with(BrokerOptions {
        serve: true,
        extra_args: extra,
        ..Default::default()
    });
    (node, path)
}

#[test]
fn two_nodes_one_writer_forwarding_and_failover() {
    let kafka = Broker::start();
    let common_toml = format!("[registry]\nsession_timeout_ms = {SESSION_MS}\n");
    let (mut a, _) = serve_node(&kafka, Some(&common_toml), kafka.scratch_dir(), "a");
    let ca = a.ca_pem();
    let tls = a.data_dir().join("tls");
    let b_toml = format!(
        "[gateway]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n[registry]\nsession_timeout_ms = {SESSION_MS}\nforward_ca = \"{}\"\n",
        tls.join("server.pem").display(),
        tls.join("server.key").display(),
        ca.display()
    );
    let (mut b, _) = serve_node(&kafka, Some(&b_toml), kafka.scratch_dir(), "b");
    let nodes = [a.registry_addr(), b.registry_addr()];

    // One leader, the same on both nodes.
    let l = agreed_leader(&ca, &nodes, Duration::from_secs(30));
    let f = 1 - l;
    eprintln!("leader: node {l} ({}), follower {}", nodes[l], nodes[f]);
    assert_eq!(leader(&ca, nodes[f])["state"], json!("member"));

    // Alternating registrations: unique ids; the follower answers at once (read your writes).
    let mut ids = BTreeSet::new();
    for i in 0..10 {
        let node = nodes[i % 2];
        let id = register(&ca, node, &format!("alt-{i}"), &format!("Alt{i}"));
        assert!(ids.insert(id), "id {id} given twice");
        for n in nodes {
            let a = https(&ca, n, "GET", &format!("/schemas/ids/{id}"), None);
            assert_eq!(a.status, 200, "id {id} on {n}: {}", a.body);
        }
        let v = https(
            &ca,
            node,
            "GET",
            &format!("/subjects/alt-{i}/versions/latest"),
            None,
        );
        assert_eq!(v.status, 200, "read-your-write on {node}");
        assert_eq!(v.body["id"].as_i64(), Some(id));
    }

    // The same schema gets the same id whichever node is asked (and under other subjects).
    let same_a = register(&ca, nodes[0], "same-1", "Same");
    let same_b = register(&ca, nodes[1], "same-2", "Same");
    let again = register(&ca, nodes[f], "same-1", "Same");
    assert_eq!(same_a, same_b);
    assert_eq!(same_a, again);
    ids.insert(same_a);

    // Config and mode writes are forwarded too.
    let put = https(
        &ca,
        nodes[f],
        "PUT",
        "/config/alt-0",
        Some(&json!({"compatibility": "NONE"})),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let got = https(&ca, nodes[f], "GET", "/config/alt-0", None);
    assert_eq!(got.body["compatibilityLevel"], json!("NONE"));

    // Concurrent registrations from several threads against both nodes.
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let ca = ca.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| {
                        let node = nodes[(t + i) % 2];
                        let subject = format!("conc-{t}-{i}");
                        (
                            subject.clone(),
                            register(&ca, node, &subject, &format!("C{t}x{i}")),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut concurrent: HashMap<String, i64> = HashMap::new();
    for t in threads {
        for (s, id) in t.join().expect("thread") {
            assert!(ids.insert(id), "id {id} given twice (subject {s})");
            concurrent.insert(s, id);
        }
    }
    assert_eq!(concurrent.len(), 30);
    for (s, id) in &concurrent {
        for n in nodes {
            let a = https(&ca, n, "GET", &format!("/schemas/ids/{id}/subjects"), None);
            assert_eq!(a.status, 200);
            assert_eq!(a.body, json!([s]), "id {id} on {n}");
        }
    }
    let max_before = *ids.iter().max().expect("ids");

    // Stop the leader: the other node leads and accepts writes.
    let (leader_node, survivor) = if l == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let survivor_addr = survivor.registry_addr();
    let stopped = Instant::now();
    leader_node.terminate();
    let took_over = poll_until(
        Duration::from_millis(SESSION_MS + 15_000),
        "the survivor leads",
        || {
            let v = leader(&ca, survivor_addr);
            (v["is_leader"] == json!(true)).then(Instant::now)
        },
    );
    let id = register(&ca, survivor_addr, "after-failover", "AfterFailover");
    let writable = Instant::now();
    eprintln!(
        "failover: leader after {} ms, first write acknowledged after {} ms",
        (took_over - stopped).as_millis(),
        (writable - stopped).as_millis()
    );
    assert!(
        writable - stopped < Duration::from_millis(SESSION_MS + 5_000),
        "failover took {:?}",
        writable - stopped
    );
    assert!(
        leader_node.log().contains("left the registry group"),
        "the stopped leader did not leave the group"
    );
    assert!(
        id > max_before,
        "id {id} after failover is not above {max_before}"
    );
    assert!(ids.insert(id));
    let id2 = register(&ca, survivor_addr, "after-failover-2", "AfterFailover2");
    assert!(id2 > id);
    // Every earlier id is still answered by the survivor.
    for old in &ids {
        let a = https(
            &ca,
            survivor_addr,
            "GET",
            &format!("/schemas/ids/{old}"),
            None,
        );
        assert_eq!(a.status, 200, "id {old}");
    }
    survivor.assert_running();
}

#[test]
fn follower_without_leader_answers_50003() {
    // A node that may not lead, alone in its group: writes fail with Confluent's forwarding
    // error; reads work.
    let kafka = Broker::start();
    let toml =
        format!("[registry]\nsession_timeout_ms = {SESSION_MS}\nleader_eligibility = false\n");
    let (node, _) = serve_node(&kafka, Some(&toml), kafka.scratch_dir(), "solo-follower");
    let ca = node.ca_pem();
    let addr = node.registry_addr();
    poll_until(Duration::from_secs(30), "joined", || {
        (leader(&ca, addr)["state"] == json!("member")).then_some(())
    });
    let v = leader(&ca, addr);
    assert_eq!(v["leader"], Value::Null);
    assert_eq!(v["is_leader"], json!(false));
    let a = https(
        &ca,
        addr,
        "POST",
        "/subjects/x/versions",
        Some(&schema("X")),
    );
    assert_eq!(a.status, 500, "{}", a.body);
    assert_eq!(a.body["error_code"], json!(50003));
    assert!(
        a.body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Error while forwarding the request to the leader: "),
        "{}",
        a.body
    );
    assert_eq!(https(&ca, addr, "GET", "/subjects", None).status, 200);
}

#[test]
fn killed_leader_is_replaced_after_the_session_timeout() {
    // kill -9: no LeaveGroup, so the coordinator waits for the session to expire.
    let kafka = Broker::start();
    let common_toml = format!("[registry]\nsession_timeout_ms = {SESSION_MS}\n");
    let (mut a, _) = serve_node(&kafka, Some(&common_toml), kafka.scratch_dir(), "a");
    let ca = a.ca_pem();
    let tls = a.data_dir().join("tls");
    let b_toml = format!(
        "[gateway]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n[registry]\nsession_timeout_ms = {SESSION_MS}\nforward_ca = \"{}\"\n",
        tls.join("server.pem").display(),
        tls.join("server.key").display(),
        ca.display()
    );
    let (mut b, _) = serve_node(&kafka, Some(&b_toml), kafka.scratch_dir(), "b");
    let nodes = [a.registry_addr(), b.registry_addr()];
    let l = agreed_leader(&ca, &nodes, Duration::from_secs(30));
    let before = register(&ca, nodes[1 - l], "k-before", "KBefore");
    let (leader_node, survivor) = if l == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let survivor_addr = survivor.registry_addr();
    let killed = Instant::now();
    leader_node.kill9();
    // Until the session expires the survivor still forwards to the dead leader: 50003.
    let early = https(
        &ca,
        survivor_addr,
        "POST",
        "/subjects/k-early/versions",
        Some(&schema("KEarly")),
    );
    if early.status != 200 {
        assert_eq!(early.body["error_code"], json!(50003), "{}", early.body);
    }
    poll_until(
        Duration::from_millis(SESSION_MS * 3),
        "the survivor leads",
        || (leader(&ca, survivor_addr)["is_leader"] == json!(true)).then_some(()),
    );
    let id = register(&ca, survivor_addr, "k-after", "KAfter");
    let took = killed.elapsed();
    eprintln!(
        "failover after kill -9: first write acknowledged after {} ms",
        took.as_millis()
    );
    assert!(id > before);
    assert!(
        took < Duration::from_millis(SESSION_MS * 3),
        "took {took:?}"
    );
}

#[test]
fn bundled_broker_node_and_upstream_node() {
    // Node A with its bundled broker opened to B (`--broker-open`), node B in front of it.
    let conf_dir = tempfile::tempdir().expect("dir");
    let a_toml = conf_dir.path().join("a.toml");
    std::fs::write(
        &a_toml,
        format!("[registry]\nsession_timeout_ms = {SESSION_MS}\n"),
    )
    .expect("write");
    let mut a = Broker::start_with(BrokerOptions {
        serve: true,
        extra_args: vec![
            "--broker-open".into(),
            "--config".into(),
            a_toml.display().to_string(),
        ],
        ..Default::default()
    });
    let ca = a.ca_pem();
    let tls = a.data_dir().join("tls");
    let b_toml = format!(
        "[gateway]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n[registry]\nsession_timeout_ms = {SESSION_MS}\nforward_ca = \"{}\"\n",
        tls.join("server.pem").display(),
        tls.join("server.key").display(),
        ca.display()
    );
    let (b, _) = serve_node(&a, Some(&b_toml), a.scratch_dir(), "b");
    let nodes = [a.registry_addr(), b.registry_addr()];
    agreed_leader(&ca, &nodes, Duration::from_secs(60));
    let mut ids = BTreeSet::new();
    for i in 0..6 {
        let id = register(&ca, nodes[i % 2], &format!("bundled-{i}"), &format!("B{i}"));
        assert!(ids.insert(id));
        for n in nodes {
            let got = https(&ca, n, "GET", &format!("/schemas/ids/{id}"), None);
            assert_eq!(got.status, 200, "GET id {id} on {n}: {}", got.body);
        }
    }
    assert_eq!(
        register(&ca, nodes[0], "bundled-same-a", "BSame"),
        register(&ca, nodes[1], "bundled-same-b", "BSame")
    );
    a.assert_running();
}
