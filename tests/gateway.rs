//! The security gateway end to end, against the real `gatehouse serve` binary.
//!
//! * librdkafka (the `rdkafka` crate) over TLS with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN:
//!   produce, consume, and a consumer group, all through the gateway; Metadata shows only the
//!   gateway's address.
//! * mTLS: a client certificate from a CA the gateway trusts maps to a principal with Kafka's
//!   `ssl.principal.mapping.rules`; ACLs then apply to that principal.
//! * Users and ACLs administered over the Kafka protocol (AlterUserScramCredentials,
//!   CreateAcls) with the protocol crate's client, then enforced on librdkafka clients.
//! * Bad input on raw sockets: requests before authentication, an oversized frame before
//!   authentication, a TLS handshake on the plaintext port, garbage on the TLS port, a flood
//!   of connections — each refused while other clients keep working.
//! * The ApiVersions answer (intersection with the broker, SASL and ACL APIs added) and the
//!   audit trail (authentications and denials recorded, `gatehouse audit verify` passes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use gatehouse_protocol::client::{Connection, ConnectionConfig, SaslCredentials, SaslMechanism};
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use gatehouse_protocol::messages::create_acls_request::AclCreation;
use gatehouse_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, CreateAclsRequest, MetadataRequest,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

fn serve() -> Broker {
    Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    })
}

/// librdkafka settings for a SASL client of the gateway.
fn secure(b: &Broker, tls: bool, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    let mut c = client_config(&if tls {
        b.gateway_tls()
    } else {
        b.gateway_plain()
    });
    c.set(
        "security.protocol",
        if tls { "SASL_SSL" } else { "SASL_PLAINTEXT" },
    )
    .set("sasl.mechanisms", mechanism)
    .set("sasl.username", user)
    .set("sasl.password", password);
    if tls {
        c.set("ssl.ca.location", b.ca_pem().to_str().unwrap());
    }
    c
}

fn admin_cfg(b: &Broker) -> ClientConfig {
    secure(b, true, "SCRAM-SHA-512", "admin", ADMIN_PASSWORD)
}

fn make_producer(mut c: ClientConfig) -> FutureProducer {
    c.set("linger.ms", "5")
        .set("message.timeout.ms", "20000")
        .set("request.timeout.ms", "10000");
    c.create().expect("producer")
}

fn produce(p: &FutureProducer, topic: &str, n: usize) -> Result<(), KafkaError> {
    let rt = runtime();
    rt.block_on(async {
        for i in 0..n {
            let payload = format!("value-{i}");
            let key = format!("key-{i}");
            p.send(
                FutureRecord::to(topic).payload(&payload).key(&key),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| e)?;
        }
        Ok(())
    })
}

fn create_topic_as(c: &ClientConfig, name: &str, partitions: i32) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = c.create().expect("admin client");
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let res = runtime()
        .block_on(admin.create_topics([&t], &admin_opts()))
        .map_err(|e| e.to_string())?;
    for r in res {
        if let Err((_, code)) = r {
            return Err(format!("{code:?}"));
        }
    }
    Ok(())
}

fn consume(c: ClientConfig, group: Option<&str>, topic: &str, n: usize) -> Vec<String> {
    let mut c = c;
    c.set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("session.timeout.ms", "10000")
        .set(
            "group.id",
            group.map_or_else(|| unique("g"), str::to_string),
        );
    let consumer: BaseConsumer = c.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut got = Vec::new();
    let until = std::time::Instant::now() + OP_DEADLINE;
    while got.len() < n && std::time::Instant::now() < until {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    if group.is_some() {
        consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
            .expect("commit");
    }
    got
}

/// The protocol crate's client, signed in to the plaintext listener.
async fn kafka_conn(b: &Broker, user: &str, password: &str) -> Connection {
    Connection::connect(
        b.gateway_plain().as_str(),
        ConnectionConfig {
            sasl: Some(SaslCredentials::new(
                SaslMechanism::ScramSha256,
                user,
                password,
            )),
            ..Default::default()
        },
    )
    .await
    .expect("admin connection to the gateway")
}

/// Creates a SCRAM user (both mechanisms) through AlterUserScramCredentials as admin. The
/// wire carries the salt and the salted password (PBKDF2), never the password.
fn add_user(b: &Broker, user: &str, password: &str) {
    let rt = runtime();
    rt.block_on(async {
        let conn = kafka_conn(b, "admin", ADMIN_PASSWORD).await;
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

/// CreateAcls as admin: (principal, resource type code, name, pattern code, op code, allow).
fn add_acl(b: &Broker, principal: &str, rtype: i8, name: &str, pattern: i8, op: i8, allow: bool) {
    let rt = runtime();
    rt.block_on(async {
        let conn = kafka_conn(b, "admin", ADMIN_PASSWORD).await;
        let c = AclCreation::default()
            .with_resource_type(rtype)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_resource_pattern_type(pattern)
            .with_principal(StrBytes::from_string(principal.to_string()))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(op)
            .with_permission_type(if allow { 3 } else { 2 });
        let resp = conn
            .send(CreateAclsRequest::default().with_creations(vec![c]), None)
            .await
            .expect("CreateAcls");
        for r in resp.results {
            assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        }
    });
}

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;

#[test]
fn librdkafka_over_tls_with_every_sasl_mechanism() {
    let b = serve();
    let topic = unique("tls-orders");
    create_topic_as(&admin_cfg(&b), &topic, 2).expect("admin creates a topic");
    let mut expected = 0;
    for (tls, mech) in [
        (true, "SCRAM-SHA-512"),
        (true, "SCRAM-SHA-256"),
        (true, "PLAIN"),
        (false, "SCRAM-SHA-256"),
    ] {
        let p = make_producer(secure(&b, tls, mech, "admin", ADMIN_PASSWORD));
        produce(&p, &topic, 5).unwrap_or_else(|e| panic!("{mech} tls={tls}: {e}"));
        expected += 5;
    }
    let got = consume(admin_cfg(&b), None, &topic, expected);
    assert_eq!(got.len(), expected);
    // Metadata only ever names the gateway.
    let c: BaseConsumer = admin_cfg(&b).create().unwrap();
    let md = c
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .expect("metadata");
    for broker in md.brokers() {
        assert_eq!(broker.host(), "localhost");
        assert_eq!(
            broker.port() as u16,
            b.gateway_tls_addr().port(),
            "the broker is advertised at the gateway's port"
        );
    }
}

#[test]
fn consumer_group_resumes_through_the_gateway() {
    let b = serve();
    let topic = unique("grp");
    create_topic_as(&admin_cfg(&b), &topic, 2).unwrap();
    let p = make_producer(admin_cfg(&b));
    produce(&p, &topic, 10).unwrap();
    let group = unique("group");
    let first = consume(admin_cfg(&b), Some(&group), &topic, 10);
    assert_eq!(first.len(), 10);
    produce(&p, &topic, 3).unwrap();
    let second = consume(admin_cfg(&b), Some(&group), &topic, 3);
    assert_eq!(
        second.len(),
        3,
        "the group resumes after its committed offsets"
    );
    assert!(second.iter().all(|v| v.starts_with("value-")));
}

#[test]
fn acls_decide_what_a_user_may_do() {
    let b = serve();
    let allowed = unique("team-a.orders");
    let other = unique("secret");
    create_topic_as(&admin_cfg(&b), &allowed, 1).unwrap();
    create_topic_as(&admin_cfg(&b), &other, 1).unwrap();
    add_user(&b, "alice", "alice-pw");
    // Alice may write to every topic starting with "team-a." and read them with any group
    // starting with "team-a".
    add_acl(&b, "User:alice", TOPIC, "team-a.", PREFIXED, WRITE, true);
    add_acl(&b, "User:alice", TOPIC, "team-a.", PREFIXED, READ, true);
    add_acl(&b, "User:alice", GROUP, "team-a", PREFIXED, READ, true);
    let alice = || secure(&b, true, "SCRAM-SHA-256", "alice", "alice-pw");
    let p = make_producer(alice());
    produce(&p, &allowed, 3).expect("alice writes under her prefix");
    let err = produce(&p, &other, 1).expect_err("alice may not write elsewhere");
    assert!(
        matches!(
            err,
            KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)
        ),
        "{err:?}"
    );
    let got = consume(alice(), Some("team-a-readers"), &allowed, 3);
    assert_eq!(got.len(), 3);
    // A group outside her prefix is refused.
    let mut c = alice();
    c.set("group.id", "other-group")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = c.create().unwrap();
    consumer.subscribe(&[&allowed]).unwrap();
    let err = poll_until(
        OP_DEADLINE,
        "a group authorization error",
        || match consumer.poll(Duration::from_millis(200)) {
            Some(Err(e)) => Some(e),
            _ => None,
        },
    );
    assert!(
        format!("{err:?}").contains("GroupAuthorizationFailed"),
        "{err:?}"
    );
    // Metadata hides what she may not describe.
    let c: BaseConsumer = alice().create().unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
    assert!(names.contains(&allowed.as_str()), "{names:?}");
    assert!(!names.contains(&other.as_str()), "{names:?}");
    // A DENY wins over the ALLOW.
    add_acl(&b, "User:alice", TOPIC, &allowed, LITERAL, WRITE, false);
    let p2 = make_producer(alice());
    let err = produce(&p2, &allowed, 1).expect_err("deny wins");
    assert!(
        format!("{err:?}").contains("TopicAuthorizationFailed"),
        "{err:?}"
    );
    // Wrong password.
    let p3 = make_producer(secure(&b, true, "SCRAM-SHA-256", "alice", "wrong"));
    let err = produce(&p3, &allowed, 1).expect_err("wrong password");
    assert!(
        format!("{err:?}").contains("Authentication")
            || format!("{err:?}").contains("MessageTimedOut"),
        "{err:?}"
    );
}

#[test]
fn internal_topics_are_closed_to_every_client() {
    let b = serve();
    let p = make_producer(admin_cfg(&b));
    for t in ["_gatehouse_users", "_schemas"] {
        let err = produce(&p, t, 1).expect_err("admin may not write an internal topic");
        assert!(
            format!("{err:?}").contains("TopicAuthorization"),
            "{t}: {err:?}"
        );
    }
    let c: BaseConsumer = admin_cfg(&b).create().unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    for t in md.topics() {
        assert!(
            !t.name().starts_with("_gatehouse_") && t.name() != "_schemas",
            "internal topic {} listed",
            t.name()
        );
    }
    // The registry's election group is closed too: no client can join, describe or delete it.
    use rdkafka::admin::AdminClient;
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = admin_cfg(&b).create().unwrap();
    let res = runtime()
        .block_on(admin.delete_groups(&["_gatehouse_registry"], &admin_opts()))
        .expect("DeleteGroups request");
    assert!(
        matches!(
            &res[0],
            Err((_, RDKafkaErrorCode::GroupAuthorizationFailed))
        ),
        "{res:?}"
    );
}

/// Writes a CA and a client certificate signed by it; returns (ca.pem, cert.pem, key.pem).
fn client_pki(dir: &Path, cn: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "test client CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    // Most significant first, as CAs issue them; RFC 2253 prints it reversed:
    // "CN=<cn>,OU=ServiceUsers,O=Acme".
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::OrganizationName, "Acme");
    leaf.distinguished_name
        .push(DnType::OrganizationalUnitName, "ServiceUsers");
    leaf.distinguished_name.push(DnType::CommonName, cn);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("client-ca.pem"),
        dir.join("client.pem"),
        dir.join("client.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (
        paths.0.display().to_string(),
        paths.1.display().to_string(),
        paths.2.display().to_string(),
    )
}

#[test]
fn mtls_principals_come_from_mapping_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = client_pki(dir.path(), "billing-svc");
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nclient_ca = {ca:?}\nprincipal_mapping_rules = \"RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,DEFAULT\"\n"
        ),
    )
    .unwrap();
    let b = Broker::start_with(BrokerOptions {
        serve: true,
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let topic = unique("billing");
    create_topic_as(&admin_cfg(&b), &topic, 1).unwrap();
    let mtls = || {
        let mut c = client_config(&b.gateway_tls());
        c.set("security.protocol", "SSL")
            .set("ssl.ca.location", b.ca_pem().to_str().unwrap())
            .set("ssl.certificate.location", &cert)
            .set("ssl.key.location", &key);
        c
    };
    let p = make_producer(mtls());
    let err = produce(&p, &topic, 1).expect_err("no ACL yet");
    assert!(format!("{err:?}").contains("TopicAuthorization"), "{err:?}");
    add_acl(&b, "User:billing-svc", TOPIC, &topic, LITERAL, WRITE, true);
    let p = make_producer(mtls());
    produce(&p, &topic, 2).expect("the mapped principal may write now");
}

fn raw_plain(b: &Broker) -> TcpStream {
    let s = TcpStream::connect(b.gateway_plain_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// True when the peer closed the connection (EOF or reset) without sending anything more.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn frame<M>(api: ApiKey, version: i16, body: &M) -> Vec<u8>
where
    M: gatehouse_protocol::kafka_protocol::protocol::Encodable
        + gatehouse_protocol::kafka_protocol::protocol::HeaderVersion,
{
    let bytes = gatehouse_protocol::header::encode_request(api, version, 7, Some("raw"), body)
        .unwrap_or_else(|_| panic!("encode"));
    bytes.to_vec()
}

#[test]
fn bad_input_is_refused_and_others_keep_working() {
    let mut b = serve();
    // A Kafka request before authentication closes the connection.
    let mut s = raw_plain(&b);
    s.write_all(&frame(ApiKey::Metadata, 9, &MetadataRequest::default()))
        .unwrap();
    assert!(
        closed(&mut s),
        "Metadata before SASL must close the connection"
    );
    // A huge size prefix before authentication closes the connection at once.
    let mut s = raw_plain(&b);
    s.write_all(&(64 * 1024 * 1024i32).to_be_bytes()).unwrap();
    assert!(
        closed(&mut s),
        "an oversized frame must close the connection"
    );
    // A TLS ClientHello on the plaintext port.
    let mut s = raw_plain(&b);
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0, 0, 1, 0])
        .unwrap();
    assert!(
        closed(&mut s),
        "TLS on the plaintext port must close the connection"
    );
    // Plaintext Kafka on the TLS port.
    let mut s = TcpStream::connect(b.gateway_tls_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame(ApiKey::Metadata, 9, &MetadataRequest::default()))
        .unwrap();
    assert!(
        closed(&mut s),
        "plaintext on the TLS port must fail the handshake"
    );
    // A flood of idle connections, then a real client still works.
    let flood: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(b.gateway_plain_addr()).unwrap())
        .collect();
    let topic = unique("after-flood");
    create_topic_as(&admin_cfg(&b), &topic, 1).unwrap();
    let p = make_producer(admin_cfg(&b));
    produce(&p, &topic, 3).expect("clients are served during a flood");
    drop(flood);
    b.assert_running();
}

#[test]
fn api_versions_intersect_and_add_the_gateways_own() {
    let b = serve();
    let mut conn = RawConn::connect(b.gateway_plain_addr());
    let versions = conn.api_versions();
    assert_eq!(
        versions.get(&(ApiKey::Produce as i16)).map(|v| v.1),
        Some(11)
    );
    assert_eq!(
        versions.get(&(ApiKey::Produce as i16)).map(|v| v.0),
        Some(0)
    );
    assert_eq!(versions.get(&(ApiKey::Fetch as i16)).map(|v| v.1), Some(12));
    assert_eq!(versions.get(&(ApiKey::SaslHandshake as i16)), Some(&(0, 1)));
    assert!(versions.contains_key(&(ApiKey::CreateAcls as i16)));
    assert!(versions.contains_key(&(ApiKey::AlterUserScramCredentials as i16)));
    // Nothing the gateway cannot authorize.
    for key in versions.keys() {
        assert!(
            ![
                ApiKey::OffsetForLeaderEpoch,
                ApiKey::AddPartitionsToTxn,
                ApiKey::EndTxn
            ]
            .iter()
            .any(|k| *k as i16 == *key),
            "API {key} advertised"
        );
    }
}

#[test]
fn security_decisions_land_in_the_audit_trail() {
    let mut b = serve();
    let mut bad = secure(&b, true, "SCRAM-SHA-256", "admin", "not-the-password");
    // One short attempt: failed logins are rate-limited per client address, and the admin
    // below signs in from the same address.
    bad.set("message.timeout.ms", "1500")
        .set("reconnect.backoff.ms", "1000")
        .set("reconnect.backoff.max.ms", "2000");
    let p: FutureProducer = bad.create().unwrap();
    let _ = produce(&p, "whatever", 1);
    drop(p);
    let p = make_producer(admin_cfg(&b));
    let _ = produce(&p, "_schemas", 1);
    let audited_topic = unique("audited");
    create_topic_as(&admin_cfg(&b), &audited_topic, 1).unwrap();
    // Stop the server cleanly (SIGTERM) so the trail is sealed, then query it offline.
    b.terminate();
    let bin = gatehouse_bin();
    let audit = b.data_dir().join("audit");
    let out = Command::new(&bin)
        .args(["audit", "query", audit.to_str().unwrap()])
        .output()
        .expect("audit query");
    let text = String::from_utf8_lossy(&out.stdout).to_string()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    assert!(text.contains("io.gatehouse.authentication"), "{text}");
    assert!(
        text.contains("\"granted\":false") || text.contains("\"granted\": false"),
        "{text}"
    );
    assert!(
        text.contains("_schemas"),
        "the denied internal-topic write is recorded: {text}"
    );
    assert!(
        text.lines().any(|l| l.contains("io.gatehouse.topic")
            && l.contains(&audited_topic)
            && l.contains("kafka.CreateTopics")),
        "the granted topic creation is recorded: {text}"
    );
    let verify = Command::new(&bin)
        .args(["audit", "verify", audit.to_str().unwrap()])
        .output()
        .expect("audit verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn sessions_expire_and_librdkafka_reauthenticates() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, "[gateway]\nsession_lifetime_ms = 2000\n").unwrap();
    let b = Broker::start_with(BrokerOptions {
        serve: true,
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let topic = unique("reauth");
    create_topic_as(&admin_cfg(&b), &topic, 1).unwrap();
    // librdkafka re-authenticates before the session ends (KIP-368): produce across 3 lifetimes.
    let p = make_producer(admin_cfg(&b));
    for _ in 0..6 {
        produce(&p, &topic, 1).expect("produce across re-authentications");
        std::thread::sleep(Duration::from_millis(1000));
    }
    // A client that does not re-authenticate is disconnected on its first request after expiry.
    runtime().block_on(async {
        let conn = kafka_conn(&b, "admin", ADMIN_PASSWORD).await;
        conn.send(
            MetadataRequest::default().with_topics(Some(Vec::new())),
            None,
        )
        .await
        .expect("within the session");
        // Poll until the session's end closes the connection (deadline well past 2 s).
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let mut after = Ok(());
        while after.is_ok() && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            after = conn
                .send(
                    MetadataRequest::default().with_topics(Some(Vec::new())),
                    None,
                )
                .await
                .map(|_| ());
        }
        assert!(after.is_err(), "the expired session must be closed");
    });
}

#[test]
fn deleting_a_user_closes_their_sessions() {
    use gatehouse_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion;
    let b = serve();
    add_user(&b, "carol", "carol-pw");
    runtime().block_on(async {
        let carol = kafka_conn(&b, "carol", "carol-pw").await;
        carol
            .send(
                MetadataRequest::default().with_topics(Some(Vec::new())),
                None,
            )
            .await
            .expect("carol is signed in");
        let admin = kafka_conn(&b, "admin", ADMIN_PASSWORD).await;
        let deletions = [1i8, 2]
            .into_iter()
            .map(|m| {
                ScramCredentialDeletion::default()
                    .with_name(StrBytes::from_static_str("carol"))
                    .with_mechanism(m)
            })
            .collect();
        let r = admin
            .send(
                AlterUserScramCredentialsRequest::default().with_deletions(deletions),
                None,
            )
            .await
            .expect("delete carol");
        assert!(
            r.results.iter().all(|x| x.error_code == 0),
            "{:?}",
            r.results
        );
        // Her open connection is closed at once, before she sends anything.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while !carol.is_closed() && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            carol.is_closed(),
            "the deleted user's session was not closed"
        );
    });
}

#[test]
fn proxy_protocol_carries_the_real_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, "[gateway]\nproxy_protocol = true\n").unwrap();
    let mut b = Broker::start_with(BrokerOptions {
        serve: true,
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let client: std::net::SocketAddr = "203.0.113.7:51000".parse().unwrap();
    runtime().block_on(async {
        // Through a "load balancer": the header first, then Kafka.
        let mut tcp = tokio::net::TcpStream::connect(b.gateway_plain_addr())
            .await
            .unwrap();
        let header = gatehouse_gateway::proxy::encode_header(client, b.gateway_plain_addr());
        tokio::io::AsyncWriteExt::write_all(&mut tcp, &header)
            .await
            .unwrap();
        let conn = Connection::from_stream(
            tcp,
            "gateway via proxy",
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
        .expect("signed in through the proxy header");
        conn.send(
            MetadataRequest::default().with_topics(Some(Vec::new())),
            None,
        )
        .await
        .expect("metadata");
        // Without the header the connection is refused.
        let direct = kafka_conn_result(&b).await;
        assert!(
            direct.is_err(),
            "a connection without a PROXY header must be refused"
        );
    });
    b.terminate();
    let out = Command::new(gatehouse_bin())
        .args([
            "audit",
            "query",
            b.data_dir().join("audit").to_str().unwrap(),
        ])
        .output()
        .expect("audit query");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("kafka.Authenticate") && l.contains("203.0.113.7:51000")),
        "the authentication event carries the client's address: {text}"
    );
}

async fn kafka_conn_result(b: &Broker) -> Result<Connection, gatehouse_protocol::ProtocolError> {
    Connection::connect(
        b.gateway_plain().as_str(),
        ConnectionConfig {
            sasl: Some(SaslCredentials::new(
                SaslMechanism::ScramSha256,
                "admin",
                ADMIN_PASSWORD,
            )),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .await
}

/// `gatehouse.audit.data.access=all` (PCI DSS 10.2.1.1): every granted produce and fetch of
/// that topic is in the trail with principal, operation, partitions and record counts (never
/// content); a topic without the setting has none, and its denials are still recorded.
#[test]
fn data_access_is_audited_for_topics_that_ask() {
    use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let mut b = serve();
    let audited = unique("cardholder");
    let quiet = unique("metrics");
    let admin: AdminClient<DefaultClientContext> = admin_cfg(&b).create().expect("admin");
    let topics = [
        NewTopic::new(&audited, 2, TopicReplication::Fixed(1))
            .set("gatehouse.audit.data.access", "all"),
        NewTopic::new(&quiet, 1, TopicReplication::Fixed(1)),
    ];
    for r in runtime()
        .block_on(admin.create_topics(&topics, &admin_opts()))
        .expect("create topics")
    {
        r.expect("topic created");
    }
    // A bad value is refused with INVALID_CONFIG.
    let bad = NewTopic::new("x-bad-audit", 1, TopicReplication::Fixed(1))
        .set("gatehouse.audit.data.access", "sometimes");
    let res = runtime()
        .block_on(admin.create_topics([&bad], &admin_opts()))
        .expect("create topics");
    assert!(
        matches!(&res[0], Err((_, RDKafkaErrorCode::InvalidConfig))),
        "{res:?}"
    );
    let p = make_producer(admin_cfg(&b));
    produce(&p, &audited, 6).expect("produce audited");
    produce(&p, &quiet, 4).expect("produce quiet");
    drop(p);
    assert_eq!(consume(admin_cfg(&b), None, &audited, 6).len(), 6);
    assert_eq!(consume(admin_cfg(&b), None, &quiet, 4).len(), 4);
    b.terminate();

    let out = Command::new(gatehouse_bin())
        .args([
            "audit",
            "query",
            b.data_dir().join("audit").to_str().unwrap(),
            "--resource",
            &audited,
        ])
        .output()
        .expect("audit query");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e.to_string().contains("gatehouse.audit.data.access=all"))
        .collect();
    let sum = |method: &str, op: &str| -> i64 {
        events
            .iter()
            .filter(|e| {
                let s = e.to_string();
                s.contains(method) && s.contains(&format!("\"{op}\"")) && s.contains("User:admin")
            })
            .map(|e| {
                let s = e.to_string();
                let at = s.find("\"records\":\"").map(|i| i + 11).unwrap_or(0);
                s[at..]
                    .split('"')
                    .next()
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    assert_eq!(sum("kafka.Produce", "Write"), 6, "{text}");
    assert_eq!(sum("kafka.Fetch", "Read"), 6, "{text}");
    assert!(
        !text.contains("value-"),
        "record content in the trail: {text}"
    );
    let all = Command::new(gatehouse_bin())
        .args([
            "audit",
            "query",
            b.data_dir().join("audit").to_str().unwrap(),
        ])
        .output()
        .expect("audit query");
    let all = String::from_utf8_lossy(&all.stdout);
    assert!(
        !all.lines()
            .any(|l| l.contains(&quiet) && l.contains("gatehouse.audit.data.access")),
        "a topic without the setting has no data-access events"
    );
}
