//! The schema registry's authentication and ACLs against the real `gatehouse serve`: HTTPS with
//! the gateway's certificate, HTTP Basic for SCRAM users (created through the gateway with
//! AlterUserScramCredentials), Bearer tokens refused without OIDC, and `Subject` ACLs (created
//! with CreateAcls) deciding reads, writes and what the listings show. The `gatehouse schema`
//! CLI is exercised over HTTPS with `--ca-cert` and `--user`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::*;
use gatehouse_protocol::client::{Connection, ConnectionConfig, SaslCredentials, SaslMechanism};
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use gatehouse_protocol::messages::create_acls_request::AclCreation;
use gatehouse_protocol::messages::{AlterUserScramCredentialsRequest, CreateAclsRequest};
use serde_json::{Value, json};

const SUBJECT_TYPE: i8 = 100;
const LITERAL: i8 = 3;
const READ: i8 = 3;

const ORDERS: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;
const PAYMENTS: &str =
    r#"{"type":"record","name":"Payment","fields":[{"name":"amount","type":"long"}]}"#;

struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// One HTTPS/1.1 request to the registry (trusting the serve CA), `Connection: close`.
fn https(b: &Broker, auth: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let config = gatehouse_gateway::tls::client_config(&b.ca_pem(), None).expect("client config");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(&config), name).expect("tls client");
    let tcp = TcpStream::connect_timeout(&b.registry_addr(), Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
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
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(rest).unwrap_or(Value::Null),
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn kafka_conn(b: &Broker) -> Connection {
    Connection::connect(
        b.gateway_plain().as_str(),
        ConnectionConfig {
            sasl: Some(SaslCredentials::new(
                SaslMechanism::ScramSha256,
                "admin",
                ADMIN_PASSWORD,
            )),
            ..Default::default()
        },
    )
    .await
    .expect("admin connection to the gateway")
}

/// A SCRAM user (both mechanisms) through AlterUserScramCredentials as admin.
fn add_user(b: &Broker, user: &str, password: &str) {
    runtime().block_on(async {
        let conn = kafka_conn(b).await;
        let salt = b"0123456789abcdef".to_vec();
        let mut s256 = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, 4096, &mut s256);
        let mut s512 = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, 4096, &mut s512);
        let upsertions = [(1i8, s256.to_vec()), (2i8, s512.to_vec())]
            .into_iter()
            .map(|(code, salted)| {
                ScramCredentialUpsertion::default()
                    .with_name(StrBytes::from_string(user.to_string()))
                    .with_mechanism(code)
                    .with_iterations(4096)
                    .with_salt(salt.clone().into())
                    .with_salted_password(salted.into())
            })
            .collect();
        let resp = conn
            .send(
                AlterUserScramCredentialsRequest::default().with_upsertions(upsertions),
                None,
            )
            .await
            .expect("AlterUserScramCredentials");
        for r in resp.results {
            assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        }
    });
}

/// CreateAcls as admin: an ALLOW binding from any host.
fn allow(b: &Broker, principal: &str, rtype: i8, name: &str, op: i8) {
    runtime().block_on(async {
        let conn = kafka_conn(b).await;
        let c = AclCreation::default()
            .with_resource_type(rtype)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_resource_pattern_type(LITERAL)
            .with_principal(StrBytes::from_string(principal.to_string()))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(op)
            .with_permission_type(3);
        let resp = conn
            .send(CreateAclsRequest::default().with_creations(vec![c]), None)
            .await
            .expect("CreateAcls");
        for r in resp.results {
            assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        }
    });
}

/// `gatehouse schema ...` with `--registry-url https://localhost:PORT --ca-cert ca.pem`.
fn schema_cli(b: &Broker, args: &[&str], password: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(gatehouse_bin());
    cmd.arg("schema")
        .args(args)
        .arg("--registry-url")
        .arg(format!("https://localhost:{}", b.registry_addr().port()))
        .arg("--ca-cert")
        .arg(b.ca_pem())
        .env_remove("GATEHOUSE_REGISTRY_URL")
        .env_remove("GATEHOUSE_REGISTRY_USER");
    match password {
        Some(p) => cmd.env("GATEHOUSE_REGISTRY_PASSWORD", p),
        None => cmd.env_remove("GATEHOUSE_REGISTRY_PASSWORD"),
    };
    let out = cmd.output().expect("run gatehouse schema");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn registry_requires_credentials_and_enforces_subject_acls() {
    let b = Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    });
    let admin = basic("admin", ADMIN_PASSWORD);

    // Authentication.
    let a = https(&b, None, "GET", "/subjects", None);
    assert_eq!(
        (a.status, &a.body["error_code"]),
        (401, &json!(40101)),
        "{}",
        a.body
    );
    assert!(
        a.head
            .contains("www-authenticate: basic realm=\"gatehouse\""),
        "{}",
        a.head
    );
    let a = https(&b, Some(&basic("admin", "wrong")), "GET", "/subjects", None);
    assert_eq!((a.status, &a.body["error_code"]), (401, &json!(40101)));
    let a = https(&b, Some("Bearer not.a.jwt"), "GET", "/subjects", None);
    assert_eq!((a.status, &a.body["error_code"]), (401, &json!(40101)));
    // `/` stays open.
    assert_eq!(https(&b, None, "GET", "/", None).status, 200);
    // Plain HTTP is not served on the registry port.
    assert!(
        http_get_status(b.registry_addr(), "/") != Ok(200),
        "plain HTTP must not be answered"
    );

    // The admin (super user) registers two subjects.
    let a = https(
        &b,
        Some(&admin),
        "POST",
        "/subjects/orders-value/versions",
        Some(&json!({"schema": ORDERS})),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let orders_id = a.body["id"].as_i64().unwrap();
    let a = https(
        &b,
        Some(&admin),
        "POST",
        "/subjects/payments-value/versions",
        Some(&json!({"schema": PAYMENTS})),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let payments_id = a.body["id"].as_i64().unwrap();
    assert_ne!(orders_id, payments_id);

    // A reader of orders-value.
    add_user(&b, "alice", "alice-secret");
    allow(&b, "User:alice", SUBJECT_TYPE, "orders-value", READ);
    let alice = basic("alice", "alice-secret");
    let a = https(
        &b,
        Some(&alice),
        "GET",
        "/subjects/orders-value/versions/latest",
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"].as_i64(), Some(orders_id));
    let a = https(
        &b,
        Some(&alice),
        "POST",
        "/subjects/orders-value",
        Some(&json!({"schema": ORDERS})),
    );
    assert_eq!(a.status, 200, "lookup: {}", a.body);
    let a = https(
        &b,
        Some(&alice),
        "GET",
        &format!("/schemas/ids/{orders_id}"),
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);

    // ... who may not write to it, nor read other subjects, nor change global settings.
    let a = https(
        &b,
        Some(&alice),
        "POST",
        "/subjects/orders-value/versions",
        Some(&json!({"schema": ORDERS})),
    );
    assert_eq!(
        (a.status, &a.body["error_code"]),
        (403, &json!(40301)),
        "{}",
        a.body
    );
    assert_eq!(
        a.body["message"],
        "User is denied operation Write on Subject: orders-value"
    );
    let a = https(
        &b,
        Some(&alice),
        "GET",
        "/subjects/payments-value/versions/latest",
        None,
    );
    assert_eq!((a.status, &a.body["error_code"]), (403, &json!(40301)));
    let a = https(
        &b,
        Some(&alice),
        "GET",
        &format!("/schemas/ids/{payments_id}"),
        None,
    );
    assert_eq!((a.status, &a.body["error_code"]), (403, &json!(40301)));
    let a = https(
        &b,
        Some(&alice),
        "PUT",
        "/config",
        Some(&json!({"compatibility": "NONE"})),
    );
    assert_eq!(a.status, 403, "{}", a.body);

    // Listings show only what the caller may see.
    let a = https(&b, Some(&alice), "GET", "/subjects", None);
    assert_eq!((a.status, a.body), (200, json!(["orders-value"])));
    let a = https(&b, Some(&alice), "GET", "/schemas", None);
    let subjects: Vec<&str> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["orders-value"]);
    let a = https(&b, Some(&admin), "GET", "/subjects", None);
    assert_eq!(a.body, json!(["orders-value", "payments-value"]));

    // The CLI over HTTPS with Basic credentials from the environment.
    let (code, out, err) = schema_cli(&b, &["list", "--user", "alice"], Some("alice-secret"));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "orders-value");
    let (code, _, err) = schema_cli(&b, &["list"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("40101"), "{err}");
    let (code, _, err) = schema_cli(&b, &["list", "--user", "alice"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("GATEHOUSE_REGISTRY_PASSWORD"), "{err}");
    let file = b.scratch_dir().join("orders.avsc");
    std::fs::write(&file, ORDERS).unwrap();
    let file = file.to_str().unwrap();
    let (code, _, err) = schema_cli(
        &b,
        &[
            "register",
            "orders-value",
            "--file",
            file,
            "--user",
            "alice",
        ],
        Some("alice-secret"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("40301"), "{err}");
    let (code, out, err) = schema_cli(
        &b,
        &[
            "register",
            "orders-value",
            "--file",
            file,
            "--user",
            "admin",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(ADMIN_PASSWORD) && !err.contains(ADMIN_PASSWORD));
}
