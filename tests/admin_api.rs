//! The admin REST API (issue 7) end to end, against the real `gatehouse serve`:
//!
//! * `topics_groups_users_acls_as_the_caller`: as admin, create a topic with
//!   `confluent.value.schema.validation=true` and `gatehouse.encryption=true`, see its governance
//!   state in the listing and the description, alter configs, produce and consume a few records
//!   with rdkafka under a consumer group and watch its lag (0 after the commit, then the new
//!   records); create a user, grant it DESCRIBE on the topic through the API and check that it
//!   sees only what it may (403 before the ACL, 403 on changes); delete the topic with a wrong
//!   and then the right confirmation; the ACL and the user are deleted (the user then gets 401);
//!   401 without or with wrong credentials; the REST-layer refusals are in the audit trail.
//! * `openapi_describes_every_route_and_status`: every route registered in `src/admin.rs` and
//!   `src/admin/*.rs` is in `/openapi.json`, and every operation the document lists is called
//!   (with valid auth and bodies, creating before deleting) and answers a status it lists, and
//!   401 without credentials where it requires authentication.
//! * `bearer_tokens_act_as_the_token_principal`: with `--oidc-issuer` (the test-only issuer in
//!   `tests/oidc`, skipped without Node.js and its modules), a Bearer token logs in to the
//!   gateway with OAUTHBEARER as the token's principal.
//! * `works_when_the_gateway_expects_proxy_protocol`: with `gateway.proxy_protocol` the API
//!   sends a PROXY v2 header and the gateway audits the HTTP client's address.
//! * `topic_and_group_cli`: `gatehouse topic …` / `gatehouse group …` and their exit codes.
//! * `under_broker_the_rest_api_is_unavailable_but_described`: 503/50303 under `broker`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

fn serve() -> Broker {
    Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    })
}

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

const ADMIN: Auth<'static> = Auth::Basic("admin", ADMIN_PASSWORD);

/// One HTTP/1.1 request to the admin listener: (status, lower-cased head, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
) -> (u16, String, String) {
    use base64::Engine;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    match auth {
        Auth::None => {}
        Auth::Basic(u, p) => {
            let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req.push_str(&format!("Authorization: Basic {enc}\r\n"));
        }
        Auth::Bearer(t) => req.push_str(&format!("Authorization: Bearer {t}\r\n")),
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("http response");
    let head = head.to_ascii_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let shown: String = body.chars().take(300).collect();
    eprintln!("{method} {path} -> {code} {shown}");
    (code, head, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A request that must answer `want`; returns the JSON body (`null` when empty or not JSON).
fn call(
    b: &Broker,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
    want: u16,
) -> Value {
    let (code, _, text) = http(b.admin_addr(), method, path, auth, body.as_ref());
    assert_eq!(code, want, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// librdkafka settings for the plaintext SASL listener as admin (SCRAM-SHA-512).
fn kafka_config(b: &Broker) -> rdkafka::config::ClientConfig {
    let mut c = client_config(&b.gateway_plain());
    c.set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", "admin")
        .set("sasl.password", ADMIN_PASSWORD);
    c
}

fn produce(b: &Broker, topic: &str, n: usize, tag: &str) {
    let mut c = kafka_config(b);
    c.set("message.timeout.ms", "30000").set("linger.ms", "5");
    let p: FutureProducer = c.create().unwrap();
    let rt = runtime();
    for i in 0..n {
        rt.block_on(
            p.send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&format!("{tag}-{i}")),
                Duration::from_secs(30),
            ),
        )
        .unwrap_or_else(|e| panic!("produce {tag}-{i}: {:?}", e.0));
    }
}

/// Joins `group`, reads `n` records and commits them synchronously; returns the consumer.
fn consume_and_commit(b: &Broker, topic: &str, group: &str, n: usize) -> BaseConsumer {
    let mut c = kafka_config(b);
    c.set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500");
    let consumer: BaseConsumer = c.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut got = 0;
    let until = Instant::now() + OP_DEADLINE;
    while got < n {
        assert!(Instant::now() < until, "only {got} of {n} records arrived");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.unwrap_or_else(|e| panic!("consumer error: {e}"));
            got += 1;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    consumer
}

fn audit_events(b: &Broker) -> Vec<Value> {
    gatehouse_compliance::query(
        &b.data_dir().join("audit"),
        &gatehouse_compliance::QueryFilter::default(),
    )
    .expect("audit query")
    .iter()
    .map(|e| serde_json::from_slice(&e.to_canonical_json()).unwrap())
    .collect()
}

#[test]
fn topics_groups_users_acls_as_the_caller() {
    let mut b = serve();
    let topic = unique("api-topic");
    let group = unique("api-group");

    // Unauthenticated and wrongly authenticated callers.
    let (code, head, _) = http(b.admin_addr(), "GET", "/v1/topics", Auth::None, None);
    assert_eq!(code, 401);
    assert!(head.contains("www-authenticate: basic"), "{head}");
    call(
        &b,
        "GET",
        "/v1/topics",
        Auth::Basic("admin", "wrong"),
        None,
        401,
    );

    // Create a governed topic.
    let created = call(
        &b,
        "POST",
        "/v1/topics",
        ADMIN,
        Some(json!({
            "name": topic,
            "partitions": 2,
            "configs": {
                "confluent.value.schema.validation": "true",
                "gatehouse.encryption": true,
            }
        })),
        201,
    );
    assert_eq!(created["partitions"], 2, "{created}");
    let again = call(
        &b,
        "POST",
        "/v1/topics",
        ADMIN,
        Some(json!({"name": topic, "partitions": 1})),
        409,
    );
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .starts_with("TOPIC_ALREADY_EXISTS"),
        "{again}"
    );
    call(
        &b,
        "POST",
        "/v1/topics",
        ADMIN,
        Some(json!({"partitions": 1})),
        422,
    );

    // The listing shows it with its governance state (the gateway stores it asynchronously
    // with the creation, so poll briefly).
    let row = poll_until(OP_DEADLINE, "topic with governance in the listing", || {
        let list = call(&b, "GET", "/v1/topics", ADMIN, None, 200);
        let row = list["topics"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == topic.as_str())?
            .clone();
        (row["governance"]["encryption"] == true).then_some(row)
    });
    assert_eq!(row["partitions"], 2, "{row}");
    assert_eq!(row["internal"], false, "{row}");
    assert_eq!(row["governance"]["value_validation"], "schema-id", "{row}");
    assert_eq!(row["governance"]["key_validation"], "none", "{row}");
    assert_eq!(row["governance"]["pan_guard"], false, "{row}");
    let list = call(&b, "GET", "/v1/topics", ADMIN, None, 200);
    assert!(
        !list["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"].as_str().unwrap().starts_with("_gatehouse")),
        "internal topics are not shown: {list}"
    );

    let detail = call(&b, "GET", &format!("/v1/topics/{topic}"), ADMIN, None, 200);
    assert_eq!(
        detail["partitions"].as_array().unwrap().len(),
        2,
        "{detail}"
    );
    assert_eq!(detail["partitions"][0]["latest_offset"], 0, "{detail}");
    assert_eq!(detail["configs"]["gatehouse.encryption"]["value"], "true");
    assert_eq!(
        detail["configs"]["gatehouse.encryption"]["governance"],
        true
    );
    assert_eq!(
        detail["configs"]["confluent.value.schema.validation"]["source"],
        "DYNAMIC_TOPIC_CONFIG"
    );
    call(&b, "GET", "/v1/topics/no-such-topic-xyz", ADMIN, None, 404);

    // Alter configs: validation off (plain test records), retention set; bad patches refused.
    let patched = call(
        &b,
        "PATCH",
        &format!("/v1/topics/{topic}/configs"),
        ADMIN,
        Some(
            json!({"set": {"confluent.value.schema.validation": "false", "retention.ms": 3600000}}),
        ),
        200,
    );
    assert_eq!(patched["set"]["retention.ms"], "3600000", "{patched}");
    call(
        &b,
        "PATCH",
        &format!("/v1/topics/{topic}/configs"),
        ADMIN,
        Some(json!({})),
        422,
    );
    call(
        &b,
        "PATCH",
        &format!("/v1/topics/{topic}/configs"),
        ADMIN,
        Some(json!({"set": {"retention.ms": "not-a-number"}})),
        422,
    );
    let detail = call(&b, "GET", &format!("/v1/topics/{topic}"), ADMIN, None, 200);
    assert_eq!(
        detail["configs"]["retention.ms"]["value"], "3600000",
        "{detail}"
    );
    assert_eq!(detail["governance"]["value_validation"], "none", "{detail}");
    assert_eq!(detail["governance"]["encryption"], true, "{detail}");

    // Produce, consume under a group, commit: lag 0; three more records: lag 3.
    produce(&b, &topic, 5, "a");
    let consumer = consume_and_commit(&b, &topic, &group, 5);
    let groups = call(&b, "GET", "/v1/groups", ADMIN, None, 200);
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group_id"] == group.as_str()),
        "{groups}"
    );
    let g = call(&b, "GET", &format!("/v1/groups/{group}"), ADMIN, None, 200);
    assert_eq!(g["total_lag"], 0, "{g}");
    assert_eq!(g["state"], "Stable", "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 1, "{g}");
    let committed: i64 = g["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["committed_offset"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(committed, 5, "{g}");
    produce(&b, &topic, 3, "b");
    let g = call(&b, "GET", &format!("/v1/groups/{group}"), ADMIN, None, 200);
    assert_eq!(g["total_lag"], 3, "{g}");
    // Partition 1 (assigned, empty) is listed whether or not the consumer committed it; when
    // not committed it has no offset and no lag.
    let p1 = g["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["partition"] == 1)
        .unwrap_or_else(|| panic!("assigned partition 1 is listed: {g}"));
    assert!(
        p1["committed_offset"].is_null() == p1["lag"].is_null(),
        "{g}"
    );
    drop(consumer);
    call(&b, "GET", "/v1/groups/no-such-group-xyz", ADMIN, None, 404);

    // A user, who sees only what its ACLs allow.
    let created = call(
        &b,
        "POST",
        "/v1/users",
        ADMIN,
        Some(json!({"name": "bob", "password": "bob-secret-pw"})),
        201,
    );
    assert!(!created.to_string().contains("bob-secret-pw"), "{created}");
    assert_eq!(created["mechanisms"].as_array().unwrap().len(), 2);
    let users = call(&b, "GET", "/v1/users", ADMIN, None, 200);
    assert!(
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "bob"),
        "{users}"
    );
    call(
        &b,
        "POST",
        "/v1/users",
        ADMIN,
        Some(json!({"name": "carol"})),
        422,
    );
    let bob = Auth::Basic("bob", "bob-secret-pw");
    let denied = call(&b, "GET", &format!("/v1/topics/{topic}"), bob, None, 403);
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .starts_with("TOPIC_AUTHORIZATION_FAILED"),
        "{denied}"
    );
    let seen = call(&b, "GET", "/v1/topics", bob, None, 200);
    assert_eq!(seen["topics"], json!([]), "{seen}");
    call(&b, "GET", "/v1/users", bob, None, 403);
    call(&b, "GET", "/v1/acls", bob, None, 403);

    let acl = json!({
        "principal": "User:bob",
        "resource_type": "topic",
        "resource_name": topic,
        "operation": "describe",
    });
    call(&b, "POST", "/v1/acls", bob, Some(acl.clone()), 403);
    let made = call(&b, "POST", "/v1/acls", ADMIN, Some(acl.clone()), 201);
    assert_eq!(made["permission"], "ALLOW", "{made}");
    assert_eq!(made["resource_type"], "TOPIC", "{made}");
    let listed = call(&b, "GET", "/v1/acls?principal=User:bob", ADMIN, None, 200);
    assert_eq!(listed["acls"].as_array().unwrap().len(), 1, "{listed}");
    call(&b, "GET", "/v1/acls?operation=fly", ADMIN, None, 422);
    call(
        &b,
        "POST",
        "/v1/acls",
        ADMIN,
        Some(json!({"principal": "bob"})),
        422,
    );

    let other = unique("api-other");
    call(
        &b,
        "POST",
        "/v1/topics",
        ADMIN,
        Some(json!({"name": other, "partitions": 1})),
        201,
    );
    let seen = poll_until(OP_DEADLINE, "bob sees the topic", || {
        let v = call(&b, "GET", "/v1/topics", bob, None, 200);
        (!v["topics"].as_array()?.is_empty()).then_some(v)
    });
    let names: Vec<&str> = seen["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![topic.as_str()],
        "only the topic bob may describe"
    );
    let d = call(&b, "GET", &format!("/v1/topics/{topic}"), bob, None, 200);
    assert_eq!(d["partitions"].as_array().unwrap().len(), 2, "{d}");
    call(&b, "GET", &format!("/v1/topics/{other}"), bob, None, 403);
    call(
        &b,
        "DELETE",
        &format!("/v1/topics/{topic}?confirm={topic}"),
        bob,
        None,
        403,
    );
    call(
        &b,
        "POST",
        "/v1/topics",
        bob,
        Some(json!({"name": unique("bob-topic")})),
        403,
    );

    // Delete: the confirmation must repeat the name.
    call(
        &b,
        "DELETE",
        &format!("/v1/topics/{topic}"),
        ADMIN,
        None,
        422,
    );
    call(
        &b,
        "DELETE",
        &format!("/v1/topics/{topic}?confirm={other}"),
        ADMIN,
        None,
        422,
    );
    call(&b, "GET", &format!("/v1/topics/{topic}"), ADMIN, None, 200);
    call(
        &b,
        "DELETE",
        &format!("/v1/topics/{topic}?confirm={topic}"),
        ADMIN,
        None,
        200,
    );
    poll_until(OP_DEADLINE, "the topic is gone", || {
        let (code, _, _) = http(
            b.admin_addr(),
            "GET",
            &format!("/v1/topics/{topic}"),
            ADMIN,
            None,
        );
        (code == 404).then_some(())
    });
    call(
        &b,
        "DELETE",
        &format!("/v1/topics/{other}?confirm={other}"),
        ADMIN,
        None,
        200,
    );

    // ACL and user deleted.
    let deleted = call(&b, "DELETE", "/v1/acls", ADMIN, Some(acl.clone()), 200);
    assert_eq!(deleted["deleted"].as_array().unwrap().len(), 1, "{deleted}");
    call(&b, "DELETE", "/v1/acls", ADMIN, Some(acl), 404);
    let listed = call(&b, "GET", "/v1/acls?principal=User:bob", ADMIN, None, 200);
    assert_eq!(listed["acls"], json!([]), "{listed}");
    call(&b, "DELETE", "/v1/users/bob", ADMIN, None, 200);
    call(&b, "DELETE", "/v1/users/bob", ADMIN, None, 404);
    call(&b, "GET", "/v1/topics", bob, None, 401);

    // Cluster and schema overviews.
    let cluster = call(&b, "GET", "/v1/cluster", ADMIN, None, 200);
    assert!(cluster["cluster_id"].is_string(), "{cluster}");
    assert!(
        !cluster["brokers"].as_array().unwrap().is_empty(),
        "{cluster}"
    );
    assert_eq!(
        cluster["listeners"]["gateway_plain"],
        b.gateway_plain().as_str(),
        "{cluster}"
    );
    let schemas = call(&b, "GET", "/v1/schemas", ADMIN, None, 200);
    let url = schemas["registry_url"].as_str().unwrap();
    assert!(url.starts_with("https://"), "{schemas}");
    assert_eq!(schemas["links"]["subjects"], format!("{url}/subjects"));

    // The REST layer's own refusals are audited; the Kafka operations by the gateway.
    b.terminate();
    let events = audit_events(&b);
    let admin_event = |method: &str, code: &str| {
        events.iter().any(|e| {
            e["data"]["service"] == "admin"
                && e["data"]["method"] == method
                && e["data"]["outcome"]["errorCode"] == code
        })
    };
    assert!(admin_event("topic.list", "40101"), "401 audited");
    assert!(
        admin_event("topic.delete", "42211"),
        "unconfirmed delete audited"
    );
    assert!(admin_event("topic.create", "42212"), "invalid body audited");
    assert!(
        !events
            .iter()
            .any(|e| e.to_string().contains("bob-secret-pw")),
        "passwords never audited"
    );
    assert!(
        events.iter().any(|e| e["data"]["service"] == "gateway"
            && e["data"]["principal"] == "User:bob"
            && e["data"]["granted"] == false),
        "the gateway audited bob's denials"
    );
}

/// `(METHOD, path)` of every `.route("PATH", ...)` in the admin listener's sources.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![root.join("admin.rs")];
    for e in std::fs::read_dir(root.join("admin")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            // The call's text up to its closing parenthesis.
            let mut depth = 1;
            let mut end = rest.len();
            for (j, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &rest[..end];
            let Some(path) = call.split('"').nth(1) else {
                continue;
            };
            let bytes = call.as_bytes();
            for m in ["get", "post", "put", "patch", "delete"] {
                let pat = format!("{m}(");
                let mut from = 0;
                while let Some(k) = call[from..].find(&pat) {
                    let at = from + k;
                    let before = if at == 0 { b' ' } else { bytes[at - 1] };
                    if !(before.is_ascii_alphanumeric() || before == b'_') {
                        out.insert((m.to_uppercase(), path.to_string()));
                    }
                    from = at + pat.len();
                }
            }
        }
    }
    out
}

/// A request the conformance test makes for a documented operation: path (with parameters
/// filled in), body, and the status it must answer (also listed in the document).
struct Probe {
    path: String,
    body: Option<Value>,
    want: u16,
}

#[test]
fn openapi_describes_every_route_and_status() {
    let b = serve();
    let doc = call(&b, "GET", "/openapi.json", Auth::None, None, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (p, ops) in paths {
        for m in ops.as_object().unwrap().keys() {
            documented.push((m.to_uppercase(), p.clone()));
        }
    }
    // Every route in the code is documented (and nothing undocumented is routed).
    let in_code = routes_in_source();
    assert!(in_code.len() > 20, "route parsing found {in_code:?}");
    let in_doc: BTreeSet<(String, String)> = documented.iter().cloned().collect();
    let missing: Vec<_> = in_code.difference(&in_doc).collect();
    assert!(
        missing.is_empty(),
        "routes not in /openapi.json: {missing:?}"
    );
    let stale: Vec<_> = in_doc.difference(&in_code).collect();
    assert!(stale.is_empty(), "documented but not routed: {stale:?}");

    // Concrete requests, in an order that makes sense (create before delete).
    let topic = unique("oa-topic");
    let key = unique("oa-key");
    let user = unique("oa-user");
    let role = json!({"principal": format!("User:{user}"), "role": "developer-read",
        "resource_type": "topic", "resource_name": topic, "pattern_type": "literal"});
    let acl = json!({"principal": format!("User:{user}"), "resource_type": "TOPIC",
        "resource_name": topic, "operation": "READ"});
    let probe = |path: &str, body: Option<Value>, want: u16| Probe {
        path: path.to_string(),
        body,
        want,
    };
    // The last hour and the next: the evidence package covers this test's own events.
    let now = gatehouse_compliance::Timestamp::now().unix_micros();
    let evidence = format!(
        "/v1/audit/evidence?from={}&to={}",
        gatehouse_compliance::Timestamp::from_unix_micros(now - 3_600_000_000).to_rfc3339(),
        gatehouse_compliance::Timestamp::from_unix_micros(now + 3_600_000_000).to_rfc3339()
    );
    let plan: Vec<(&str, &str, Probe)> = vec![
        ("GET", "/health", probe("/health", None, 200)),
        ("GET", "/health/ready", probe("/health/ready", None, 200)),
        ("GET", "/health/live", probe("/health/live", None, 200)),
        ("GET", "/metrics", probe("/metrics", None, 200)),
        ("GET", "/openapi.json", probe("/openapi.json", None, 200)),
        ("GET", "/v1/cluster", probe("/v1/cluster", None, 200)),
        ("GET", "/v1/schemas", probe("/v1/schemas", None, 200)),
        (
            "POST",
            "/v1/topics",
            probe(
                "/v1/topics",
                Some(
                    json!({"name": topic, "partitions": 1, "configs": {"gatehouse.pan.guard": "true"}}),
                ),
                201,
            ),
        ),
        ("GET", "/v1/topics", probe("/v1/topics", None, 200)),
        (
            "GET",
            "/v1/topics/{name}",
            probe(&format!("/v1/topics/{topic}"), None, 200),
        ),
        (
            "PATCH",
            "/v1/topics/{name}/configs",
            probe(
                &format!("/v1/topics/{topic}/configs"),
                Some(json!({"set": {"retention.ms": "60000"}})),
                200,
            ),
        ),
        (
            "GET",
            "/v1/topics/{name}/messages",
            probe(&format!("/v1/topics/{topic}/messages"), None, 200),
        ),
        ("GET", "/v1/groups", probe("/v1/groups", None, 200)),
        (
            "GET",
            "/v1/groups/{id}",
            probe("/v1/groups/no-such-group", None, 404),
        ),
        (
            "POST",
            "/v1/users",
            probe(
                "/v1/users",
                Some(
                    json!({"name": user, "password": "pw-for-openapi", "mechanism": "SCRAM-SHA-512"}),
                ),
                201,
            ),
        ),
        ("GET", "/v1/users", probe("/v1/users", None, 200)),
        (
            "POST",
            "/v1/acls",
            probe("/v1/acls", Some(acl.clone()), 201),
        ),
        ("GET", "/v1/acls", probe("/v1/acls", None, 200)),
        (
            "POST",
            "/v1/authz/explain",
            probe(
                "/v1/authz/explain",
                Some(
                    json!({"principal": format!("User:{user}"), "resource_type": "topic",
                    "resource_name": topic, "operation": "read"}),
                ),
                200,
            ),
        ),
        ("DELETE", "/v1/acls", probe("/v1/acls", Some(acl), 200)),
        ("GET", "/v1/roles", probe("/v1/roles", None, 200)),
        (
            "POST",
            "/v1/roles",
            probe("/v1/roles", Some(role.clone()), 200),
        ),
        (
            "POST",
            "/v1/roles/unbind",
            probe("/v1/roles/unbind", Some(role), 200),
        ),
        (
            "DELETE",
            "/v1/users/{name}",
            probe(&format!("/v1/users/{user}"), None, 200),
        ),
        (
            "DELETE",
            "/v1/topics/{name}",
            probe(&format!("/v1/topics/{topic}?confirm={topic}"), None, 200),
        ),
        (
            "POST",
            "/v1/keys",
            probe("/v1/keys", Some(json!({"name": key})), 201),
        ),
        ("GET", "/v1/keys", probe("/v1/keys", None, 200)),
        (
            "GET",
            "/v1/keys/{name}",
            probe(&format!("/v1/keys/{key}"), None, 200),
        ),
        (
            "POST",
            "/v1/keys/{name}/rotate",
            probe(&format!("/v1/keys/{key}/rotate"), None, 200),
        ),
        (
            "POST",
            "/v1/keys/{name}/retire",
            probe(&format!("/v1/keys/{key}/retire"), None, 200),
        ),
        (
            "POST",
            "/v1/keys/{name}/destroy",
            probe(
                &format!("/v1/keys/{key}/destroy"),
                Some(json!({"confirm": key})),
                200,
            ),
        ),
        ("GET", "/v1/audit/evidence", probe(&evidence, None, 200)),
    ];
    let planned: BTreeMap<(String, String), &Probe> = plan
        .iter()
        .map(|(m, p, probe)| ((m.to_string(), p.to_string()), probe))
        .collect();
    let listed = |m: &str, p: &str| -> Vec<u16> {
        doc["paths"][p][m.to_lowercase()]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|c| c.parse().ok())
            .collect()
    };
    let secured = |m: &str, p: &str| -> bool {
        let op = &doc["paths"][p][m.to_lowercase()];
        let security = op.get("security").unwrap_or(&doc["security"]);
        security.as_array().is_some_and(|s| !s.is_empty())
    };
    let mut exercised = BTreeSet::new();
    // Planned operations first, in plan order.
    for (m, p, probe) in &plan {
        assert!(
            in_doc.contains(&(m.to_string(), p.to_string())),
            "the plan names {m} {p}, which is not documented"
        );
        let statuses = listed(m, p);
        let (code, _, text) = http(b.admin_addr(), m, &probe.path, ADMIN, probe.body.as_ref());
        assert_eq!(code, probe.want, "{m} {}: {text}", probe.path);
        assert!(
            statuses.contains(&code),
            "{m} {p} answered {code}, not among {statuses:?}"
        );
        exercised.insert((m.to_string(), p.to_string()));
    }
    // Operations without a plan entry (added elsewhere): GETs without path parameters are
    // called as admin; anything else needs a plan entry.
    for (m, p) in &documented {
        if planned.contains_key(&(m.clone(), p.clone())) {
            continue;
        }
        assert!(
            m == "GET" && !p.contains('{'),
            "no conformance request for {m} {p}: add one to the plan"
        );
        let (code, _, text) = http(b.admin_addr(), m, p, ADMIN, None);
        let statuses = listed(m, p);
        assert!(
            statuses.contains(&code),
            "{m} {p} answered {code} ({text}), not among {statuses:?}"
        );
        exercised.insert((m.clone(), p.clone()));
    }
    assert_eq!(exercised, in_doc, "every documented operation was called");
    // Without credentials: 401 where the document requires authentication, and listed.
    for (m, p) in &documented {
        let path = planned
            .get(&(m.clone(), p.clone()))
            .map_or_else(|| p.clone(), |probe| probe.path.clone());
        let body = planned
            .get(&(m.clone(), p.clone()))
            .and_then(|probe| probe.body.clone());
        let (code, _, _) = http(b.admin_addr(), m, &path, Auth::None, body.as_ref());
        if secured(m, p) {
            assert_eq!(code, 401, "{m} {path} without credentials");
        }
        assert!(
            listed(m, p).contains(&code),
            "{m} {path} without credentials answered {code}, not listed"
        );
    }
    // Every response code refers to a described response.
    for (m, p) in &documented {
        for (code, r) in doc["paths"][p][m.to_lowercase()]["responses"]
            .as_object()
            .unwrap()
        {
            let described = r.get("description").is_some()
                || r["$ref"].as_str().is_some_and(|x| {
                    let name = x.rsplit('/').next().unwrap();
                    doc["components"]["responses"][name]["description"].is_string()
                });
            assert!(described, "{m} {p} {code} has no description");
        }
    }
}

/// The test-only OpenID provider (`tests/oidc/issuer.mjs`), killed on drop.
struct Issuer {
    child: std::process::Child,
    url: String,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the issuer, or `None` when Node.js or its modules are missing (the test is skipped).
fn start_issuer() -> Option<Issuer> {
    use std::io::BufRead;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    if !dir.join("node_modules/oidc-provider").is_dir() {
        eprintln!("skipped: tests/oidc/node_modules is missing (npm ci --prefix tests/oidc)");
        return None;
    }
    let mut child = std::process::Command::new("node")
        .arg(dir.join("issuer.mjs"))
        .arg("0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("skipped: cannot run node: {e}"))
        .ok()?;
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("READY ") {
            url = Some(u.trim().to_string());
            break;
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let url = url.expect("the OIDC issuer printed READY");
    Some(Issuer { child, url })
}

/// A plain HTTP/1.1 request to the issuer: (status, body).
fn issuer_request(
    issuer: &Issuer,
    method: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> (u16, String) {
    let hostport = issuer.url.trim_start_matches("http://");
    let addr: SocketAddr = hostport.parse().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (code, body)
}

/// A client-credentials access token for `gateway-test` (principal `User:gateway-test`).
fn fetch_token(issuer: &Issuer) -> String {
    use base64::Engine;
    let (code, body) = issuer_request(issuer, "GET", "/.well-known/openid-configuration", "", "");
    assert_eq!(code, 200, "{body}");
    let conf: Value = serde_json::from_str(&body).unwrap();
    let endpoint = conf["token_endpoint"].as_str().unwrap();
    let path = endpoint.trim_start_matches(&issuer.url).to_string();
    let basic = base64::engine::general_purpose::STANDARD.encode("gateway-test:secret-123");
    let (code, body) = issuer_request(
        issuer,
        "POST",
        &path,
        &format!(
            "Authorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        ),
        "grant_type=client_credentials&scope=kafka",
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

#[test]
fn bearer_tokens_act_as_the_token_principal() {
    let Some(issuer) = start_issuer() else {
        return;
    };
    let b = Broker::start_with(BrokerOptions {
        serve: true,
        extra_args: vec![
            "--oidc-issuer".into(),
            issuer.url.clone(),
            "--oidc-audience".into(),
            "urn:kafka:gateway".into(),
        ],
        ..Default::default()
    });
    let token = fetch_token(&issuer);
    let bearer = Auth::Bearer(&token);
    let cluster = call(&b, "GET", "/v1/cluster", bearer, None, 200);
    assert_eq!(cluster["principal"], "User:gateway-test", "{cluster}");

    let topic = unique("bearer-topic");
    call(
        &b,
        "POST",
        "/v1/topics",
        ADMIN,
        Some(json!({"name": topic, "partitions": 1})),
        201,
    );
    call(&b, "GET", &format!("/v1/topics/{topic}"), bearer, None, 403);
    call(
        &b,
        "POST",
        "/v1/acls",
        ADMIN,
        Some(
            json!({"principal": "User:gateway-test", "resource_type": "TOPIC",
            "resource_name": topic, "operation": "DESCRIBE"}),
        ),
        201,
    );
    let d = call(&b, "GET", &format!("/v1/topics/{topic}"), bearer, None, 200);
    assert_eq!(d["name"], topic.as_str(), "{d}");
    let (code, head, _) = http(
        b.admin_addr(),
        "GET",
        "/v1/topics",
        Auth::Bearer("not-a-token"),
        None,
    );
    assert_eq!(code, 401);
    assert!(head.contains("bearer realm"), "{head}");
}

/// `gatehouse ARGS` against `b`'s admin listener as admin: (exit code, stdout, stderr).
fn cli(b: &Broker, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(gatehouse_bin());
    cmd.args(args)
        .env("GATEHOUSE_ADMIN_URL", format!("http://{}", b.admin_addr()))
        .env("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run gatehouse");
    let r = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ gatehouse {} -> {}\n{}{}", args.join(" "), r.0, r.1, r.2);
    r
}

#[test]
fn topic_and_group_cli() {
    let b = serve();
    let t = unique("cli-topic");
    let (code, out, _) = cli(
        &b,
        &[
            "topic",
            "create",
            &t,
            "--partitions",
            "2",
            "--config",
            "gatehouse.pan.guard=true",
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("2 partitions"), "{out}");
    let (code, out, _) = cli(&b, &["topic", "create", &t], &[]);
    assert_eq!(code, 1, "{out}");
    let row = poll_until(OP_DEADLINE, "the topic's governance in the table", || {
        let (code, out, _) = cli(&b, &["topic", "list"], &[]);
        assert_eq!(code, 0);
        out.lines()
            .find(|l| l.starts_with(&t) && l.contains("pan-guard"))
            .map(str::to_string)
    });
    assert!(row.contains(" 2 "), "{row}");
    let (code, out, _) = cli(&b, &["topic", "list", "--output", "json"], &[]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert!(
        v["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == t.as_str())
    );
    let (code, out, _) = cli(
        &b,
        &["topic", "alter", &t, "--set", "retention.ms=60000"],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("set retention.ms=60000"), "{out}");
    let (code, out, _) = cli(&b, &["topic", "describe", &t], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("PARTITION") && out.contains("retention.ms"),
        "{out}"
    );
    assert!(out.contains("60000"), "{out}");
    assert_eq!(cli(&b, &["topic", "alter", &t], &[]).0, 2);
    assert_eq!(
        cli(&b, &["topic", "delete", &t, "--confirm", "other"], &[]).0,
        2
    );
    assert_eq!(cli(&b, &["topic", "describe", "no-such-topic-q"], &[]).0, 1);
    let (code, _, err) = cli(
        &b,
        &["topic", "list"],
        &[("GATEHOUSE_ADMIN_PASSWORD", "wrong")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    assert_eq!(
        cli(
            &b,
            &["topic", "list"],
            &[("GATEHOUSE_ADMIN_URL", "http://127.0.0.1:1")]
        )
        .0,
        2
    );
    let (code, out, _) = cli(&b, &["group", "list"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("GROUP"), "{out}");
    assert_eq!(cli(&b, &["group", "describe", "no-such-group-q"], &[]).0, 1);
    assert_eq!(cli(&b, &["topic", "delete", &t, "--confirm", &t], &[]).0, 0);
}

#[test]
fn works_when_the_gateway_expects_proxy_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, "[gateway]\nproxy_protocol = true\n").unwrap();
    let mut b = Broker::start_with(BrokerOptions {
        serve: true,
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let t = unique("proxied");
    call(
        &b,
        "POST",
        "/v1/topics",
        ADMIN,
        Some(json!({"name": t, "partitions": 1})),
        201,
    );
    let d = call(&b, "GET", &format!("/v1/topics/{t}"), ADMIN, None, 200);
    assert_eq!(d["name"], t.as_str(), "{d}");
    // The gateway saw (and audited) the HTTP client's address from the PROXY header.
    b.terminate();
    assert!(
        audit_events(&b)
            .iter()
            .any(|e| e["data"]["service"] == "gateway"
                && e["data"]["principal"] == "User:admin"
                && e["data"]["clientAddress"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("127.0.0.1:"))
                && e.to_string().contains(&t)),
        "the topic creation was audited by the gateway: {:?}",
        audit_events(&b)
            .iter()
            .filter(|e| e.to_string().contains(&t))
            .collect::<Vec<_>>()
    );
}

#[test]
fn under_broker_the_rest_api_is_unavailable_but_described() {
    let b = Broker::start();
    let v = call(&b, "GET", "/v1/topics", ADMIN, None, 503);
    assert_eq!(v["error_code"], 50303, "{v}");
    let doc = call(&b, "GET", "/openapi.json", Auth::None, None, 200);
    assert!(doc["paths"]["/v1/topics"]["get"]["responses"]["503"].is_object());
}

/// `/v1/audit/status` and `/v1/audit/events`: an auditor (role `auditor` on the cluster)
/// reads the trail; every read is itself in the trail (`io.gatehouse.audit_access`), a user
/// without the role gets 403, bad filters 422.
#[test]
fn audit_trail_through_the_admin_api() {
    let b = serve();
    // A user with the auditor role, and one without.
    call(
        &b,
        "POST",
        "/v1/users",
        ADMIN,
        Some(json!({"name": "auditor1", "password": "auditor-pass"})),
        201,
    );
    call(
        &b,
        "POST",
        "/v1/users",
        ADMIN,
        Some(json!({"name": "dev1", "password": "dev-pass"})),
        201,
    );
    call(
        &b,
        "POST",
        "/v1/roles",
        ADMIN,
        Some(json!({"principal": "User:auditor1", "role": "auditor",
                    "resource_type": "cluster", "resource_name": "kafka-cluster"})),
        200,
    );
    let auditor = Auth::Basic("auditor1", "auditor-pass");
    let status = call(&b, "GET", "/v1/audit/status", auditor, None, 200);
    assert!(status.get("checkpoint").is_some(), "{status}");
    assert_eq!(status["self_check"]["failures_total"], 0, "{status}");

    let got = call(
        &b,
        "GET",
        "/v1/audit/events?method=kafka.AlterUserScramCredentials&limit=10",
        auditor,
        None,
        200,
    );
    let events = got["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{got}");
    assert!(
        events
            .iter()
            .all(|e| e.to_string().contains("kafka.AlterUserScramCredentials")),
        "{got}"
    );
    assert!(
        !got.to_string().contains("auditor-pass"),
        "no secret in the trail"
    );
    // The read above is in the trail now, with who asked and the filter.
    let reads = call(
        &b,
        "GET",
        "/v1/audit/events?method=audit.query",
        auditor,
        None,
        200,
    );
    assert!(
        reads["events"].as_array().unwrap().iter().any(|e| {
            let s = e.to_string();
            s.contains("io.gatehouse.audit_access")
                && s.contains("User:auditor1")
                && s.contains("kafka.AlterUserScramCredentials")
        }),
        "{reads}"
    );
    // Refusals.
    call(
        &b,
        "GET",
        "/v1/audit/events",
        Auth::Basic("dev1", "dev-pass"),
        None,
        403,
    );
    call(&b, "GET", "/v1/audit/events", Auth::None, None, 401);
    call(
        &b,
        "GET",
        "/v1/audit/events?from=yesterday",
        auditor,
        None,
        422,
    );
    call(&b, "GET", "/v1/audit/events?limit=0", auditor, None, 422);
}

/// `GET /v1/topics/{name}/messages` reads through the gateway's fetch path as the caller:
/// plaintext and wire-format values with their keys and headers, the last records by default
/// and pages from an offset; on an encrypted topic with `gatehouse.encryption.readers=role`
/// the admin (a super user, which does not imply the role) gets the ciphertext marked
/// `encrypted` until it is bound to `plaintext-reader`, then plaintext, while a reader with
/// READ but without the role keeps getting ciphertext. Bad parameters 422, unknown topic or
/// partition 404, no READ 403. `GET /v1/topics/{name}` counts the records the data guard
/// refused (`rejected_records`).
#[test]
fn topic_messages_as_the_caller_sees_them() {
    let b = serve();
    let plain = unique("msg-plain");
    let secret = unique("msg-secret");
    let guarded = unique("msg-guarded");
    for (name, configs) in [
        (&plain, json!({})),
        (
            &secret,
            json!({"gatehouse.encryption": "true", "gatehouse.encryption.readers": "role"}),
        ),
        (
            &guarded,
            json!({"confluent.value.schema.validation": "true"}),
        ),
    ] {
        call(
            &b,
            "POST",
            "/v1/topics",
            ADMIN,
            Some(json!({"name": name, "partitions": 1, "configs": configs})),
            201,
        );
    }
    // The governance configs reach the gateway with the creation, asynchronously: produce
    // only once it applies them (a record produced before would be stored in clear).
    for (name, key, want) in [
        (&secret, "encryption", json!(true)),
        (&guarded, "value_validation", json!("schema-id")),
    ] {
        poll_until(OP_DEADLINE, "the topic's governance applies", || {
            let d = call(&b, "GET", &format!("/v1/topics/{name}"), ADMIN, None, 200);
            (d["governance"][key] == want).then_some(())
        });
    }
    let mut c = kafka_config(&b);
    c.set("message.timeout.ms", "30000").set("linger.ms", "5");
    let producer: FutureProducer = c.create().unwrap();
    let wire = [&[0u8, 0, 0, 0, 42][..], br#"{"id":1}"#].concat();
    let mut recs: Vec<Rec> = (0..30)
        .map(|i| Rec {
            partition: Some(0),
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("plain-{i}").into_bytes()),
            headers: vec![
                ("trace".to_string(), Some(b"t-1".to_vec())),
                ("bin".to_string(), Some(vec![0xff, 0xfe])),
            ],
            ..Rec::default()
        })
        .collect();
    recs.push(Rec {
        partition: Some(0),
        value: Some(wire),
        ..Rec::default()
    });
    produce_all(&producer, &plain, &recs).unwrap();
    produce_all(
        &producer,
        &secret,
        &[Rec {
            partition: Some(0),
            value: Some(b"card-holder data".to_vec()),
            ..Rec::default()
        }],
    )
    .unwrap();
    assert!(
        produce_all(&producer, &guarded, &[Rec::value("not in wire format")]).is_err(),
        "the poison pill is refused"
    );

    // The last 20 records by default, oldest first.
    let page = call(
        &b,
        "GET",
        &format!("/v1/topics/{plain}/messages"),
        ADMIN,
        None,
        200,
    );
    let records = page["records"].as_array().unwrap();
    let offsets: Vec<i64> = records
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, (11..31).collect::<Vec<_>>(), "{page}");
    assert_eq!(page["latest_offset"], 31, "{page}");
    assert_eq!(page["earliest_offset"], 0, "{page}");
    assert_eq!(page["next_offset"], 31, "{page}");
    let first = &records[0];
    assert_eq!(first["value"]["data"], "plain-11", "{first}");
    assert_eq!(first["value"]["encoding"], "text", "{first}");
    assert_eq!(first["value"]["encrypted"], false, "{first}");
    assert_eq!(first["value"]["schema_id"], Value::Null, "{first}");
    assert_eq!(first["key"]["data"], "k11", "{first}");
    assert!(
        first["timestamp"].as_i64().unwrap() > 1_600_000_000_000,
        "{first}"
    );
    assert_eq!(first["headers"][0]["name"], "trace", "{first}");
    assert_eq!(first["headers"][0]["value"], "t-1", "{first}");
    assert_eq!(first["headers"][1]["name"], "bin", "{first}");
    assert_eq!(first["headers"][1]["encoding"], "base64", "{first}");
    let last = &records[19];
    assert_eq!(last["value"]["schema_id"], 42, "{last}");
    assert_eq!(last["value"]["encoding"], "base64", "{last}");
    assert_eq!(last["key"], Value::Null, "{last}");

    // Pages from an offset.
    let page = call(
        &b,
        "GET",
        &format!("/v1/topics/{plain}/messages?partition=0&offset=3&limit=5"),
        ADMIN,
        None,
        200,
    );
    let values: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"]["data"].as_str().unwrap())
        .collect();
    assert_eq!(
        values,
        ["plain-3", "plain-4", "plain-5", "plain-6", "plain-7"],
        "{page}"
    );
    assert_eq!(page["next_offset"], 8, "{page}");
    let page = call(
        &b,
        "GET",
        &format!("/v1/topics/{plain}/messages?offset=29&limit=100"),
        ADMIN,
        None,
        200,
    );
    assert_eq!(page["records"].as_array().unwrap().len(), 2, "{page}");
    let page = call(
        &b,
        "GET",
        &format!("/v1/topics/{plain}/messages?offset=31"),
        ADMIN,
        None,
        200,
    );
    assert_eq!(page["records"], json!([]), "{page}");

    // Bad parameters, unknown topic or partition.
    for bad in [
        "limit=0",
        "limit=101",
        "partition=-1",
        "offset=abc",
        "offset=-3",
        "offest=1",
    ] {
        let e = call(
            &b,
            "GET",
            &format!("/v1/topics/{plain}/messages?{bad}"),
            ADMIN,
            None,
            422,
        );
        assert_eq!(e["error_code"], 42212, "{bad}: {e}");
    }
    let e = call(
        &b,
        "GET",
        &format!("/v1/topics/{plain}/messages?partition=3"),
        ADMIN,
        None,
        404,
    );
    assert!(
        e["message"].as_str().unwrap().contains("no partition 3"),
        "{e}"
    );
    call(
        &b,
        "GET",
        "/v1/topics/no-such-topic-xyz/messages",
        ADMIN,
        None,
        404,
    );
    call(
        &b,
        "GET",
        &format!("/v1/topics/{plain}/messages"),
        Auth::None,
        None,
        401,
    );

    // Encrypted with readers=role: the admin is a super user, which does not imply the role.
    let value_of = |who: Auth<'_>| {
        let page = call(
            &b,
            "GET",
            &format!("/v1/topics/{secret}/messages"),
            who,
            None,
            200,
        );
        assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
        page["records"][0].clone()
    };
    let r = value_of(ADMIN);
    assert_eq!(r["value"]["encrypted"], true, "{r}");
    assert_ne!(r["value"]["data"], "card-holder data", "{r}");
    assert!(
        r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "gatehouse.enc"),
        "{r}"
    );
    call(
        &b,
        "POST",
        "/v1/roles",
        ADMIN,
        Some(
            json!({"principal": "User:admin", "role": "plaintext-reader",
            "resource_type": "topic", "resource_name": secret, "pattern_type": "literal"}),
        ),
        200,
    );
    let r = poll_until(OP_DEADLINE, "the admin reads plaintext", || {
        let r = value_of(ADMIN);
        (r["value"]["encrypted"] == false).then_some(r)
    });
    assert_eq!(r["value"]["data"], "card-holder data", "{r}");
    assert_eq!(r["value"]["encoding"], "text", "{r}");

    // A reader with READ on the topic but without the role gets the ciphertext.
    call(
        &b,
        "POST",
        "/v1/users",
        ADMIN,
        Some(json!({"name": "reader1", "password": "reader1-pw"})),
        201,
    );
    let reader = Auth::Basic("reader1", "reader1-pw");
    call(
        &b,
        "GET",
        &format!("/v1/topics/{secret}/messages"),
        reader,
        None,
        403,
    );
    call(
        &b,
        "POST",
        "/v1/acls",
        ADMIN,
        Some(
            json!({"principal": "User:reader1", "resource_type": "topic",
            "resource_name": secret, "operation": "read"}),
        ),
        201,
    );
    let r = poll_until(OP_DEADLINE, "the reader may read", || {
        let (code, _, text) = http(
            b.admin_addr(),
            "GET",
            &format!("/v1/topics/{secret}/messages"),
            reader,
            None,
        );
        (code == 200).then(|| serde_json::from_str::<Value>(&text).unwrap())
    });
    let v = &r["records"][0]["value"];
    assert_eq!(v["encrypted"], true, "{r}");
    assert_eq!(v["encoding"], "base64", "{r}");
    assert_eq!(v["schema_id"], Value::Null, "{r}");
    call(
        &b,
        "GET",
        &format!("/v1/topics/{plain}/messages"),
        reader,
        None,
        403,
    );

    // The data guard's refusals are counted per topic.
    let d = call(
        &b,
        "GET",
        &format!("/v1/topics/{guarded}"),
        ADMIN,
        None,
        200,
    );
    assert_eq!(d["rejected_records"], 1, "{d}");
    let d = call(&b, "GET", &format!("/v1/topics/{plain}"), ADMIN, None, 200);
    assert_eq!(d["rejected_records"], 0, "{d}");
}
/// One GET to the admin listener with the raw body: (status, lower-cased head, body bytes).
fn http_bytes(addr: SocketAddr, path: &str, auth: Auth<'_>) -> (u16, String, Vec<u8>) {
    use base64::Engine;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Auth::Basic(u, p) = auth {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {enc}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http response");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "the package is sent with a length: {head}"
    );
    (code, head, raw[split + 4..].to_vec())
}

/// `POST /v1/authz/explain`: the gateway's authorizer explains ALLOWs (ACL and role
/// bindings), a DENY that wins over an ALLOW, deny by default, internal topics and super
/// users; the caller needs DESCRIBE on the cluster; every call is in the trail. Keys show
/// their rotation history with who rotated. `GET /v1/audit/evidence`: an auditor downloads the
/// period's package as a .tar.gz that unpacks into a package `gatehouse evidence --check`
/// accepts, holding the download's own access event; bad periods are 422.
#[test]
fn explain_keys_history_and_evidence_download() {
    let b = serve();
    let bob = unique("bob");
    let topic = unique("ex-orders");
    let pay = unique("ex-pay");
    for (name, pw) in [(bob.as_str(), "bob-pass-1"), ("auditor2", "auditor-pass-2")] {
        call(
            &b,
            "POST",
            "/v1/users",
            ADMIN,
            Some(json!({"name": name, "password": pw})),
            201,
        );
    }
    let principal = format!("User:{bob}");
    for acl in [
        json!({"principal": principal, "resource_type": "topic", "resource_name": topic,
               "operation": "read"}),
        json!({"principal": principal, "resource_type": "topic", "resource_name": pay,
               "operation": "write"}),
        json!({"principal": principal, "resource_type": "topic", "resource_name": "ex-pay",
               "pattern_type": "prefixed", "operation": "write", "permission": "deny"}),
    ] {
        call(&b, "POST", "/v1/acls", ADMIN, Some(acl), 201);
    }
    call(
        &b,
        "POST",
        "/v1/roles",
        ADMIN,
        Some(json!({"principal": principal, "role": "developer-read",
                    "resource_type": "group", "resource_name": "ex-", "pattern_type": "prefixed"})),
        200,
    );
    call(
        &b,
        "POST",
        "/v1/roles",
        ADMIN,
        Some(json!({"principal": "User:auditor2", "role": "auditor",
                    "resource_type": "cluster", "resource_name": "kafka-cluster"})),
        200,
    );
    let explain =
        |body: Value, want: u16| call(&b, "POST", "/v1/authz/explain", ADMIN, Some(body), want);
    let ask = |rt: &str, name: &str, op: &str| {
        explain(
            json!({"principal": principal, "resource_type": rt, "resource_name": name,
                   "operation": op}),
            200,
        )
    };

    // An ALLOW by an ACL binding, named with its pattern type, permission and source.
    let a = ask("topic", &topic, "read");
    assert_eq!(a["decision"], "allow", "{a}");
    let m = &a["matched"][0];
    assert_eq!(
        (
            m["source"].as_str(),
            m["permission"].as_str(),
            m["pattern_type"].as_str()
        ),
        (Some("acl"), Some("ALLOW"), Some("LITERAL")),
        "{a}"
    );
    assert_eq!(m["resource_name"], topic.as_str());
    assert_eq!(m["resource_type"], "TOPIC");
    assert!(a["considered"].as_u64().unwrap() >= 3, "{a}");
    // READ implies DESCRIBE.
    let a = ask("topic", &topic, "describe");
    assert_eq!(a["decision"], "allow");
    assert!(a["reason"].as_str().unwrap().contains("implies"), "{a}");
    // The prefixed DENY wins over the literal ALLOW, and says so.
    let a = ask("topic", &pay, "write");
    assert_eq!(a["decision"], "deny", "{a}");
    assert_eq!(a["matched"][0]["permission"], "DENY");
    assert_eq!(a["matched"][0]["pattern_type"], "PREFIXED");
    assert_eq!(a["overridden"][0]["permission"], "ALLOW");
    assert_eq!(a["overridden"][0]["resource_name"], pay.as_str());
    assert!(a["reason"].as_str().unwrap().contains("wins over"), "{a}");
    // Deny by default.
    let a = ask("topic", "ex-nothing", "read");
    assert_eq!(a["decision"], "deny");
    assert!(a["matched"].as_array().unwrap().is_empty());
    assert!(
        a["reason"].as_str().unwrap().contains("no binding allows"),
        "{a}"
    );
    // A role binding.
    let a = ask("group", "ex-group-1", "read");
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["matched"][0]["source"], "role");
    assert_eq!(a["matched"][0]["role"], "developer-read");
    // The gateway's own rule for internal topics, and super users.
    let a = explain(
        json!({"principal": "User:admin", "resource_type": "topic", "resource_name": "_schemas",
               "operation": "read"}),
        200,
    );
    assert_eq!(a["decision"], "deny");
    assert!(
        a["reason"].as_str().unwrap().contains("internal topic"),
        "{a}"
    );
    let a = explain(
        json!({"principal": "User:admin", "resource_type": "cluster", "operation": "alter"}),
        200,
    );
    assert_eq!(
        (a["decision"].as_str(), a["super_user"].as_bool()),
        (Some("allow"), Some(true))
    );
    // Bad questions, and who may ask.
    explain(json!({"resource_type": "topic", "operation": "read"}), 422);
    explain(
        json!({"principal": principal, "resource_type": "topic", "resource_name": "t",
               "operation": "fly"}),
        422,
    );
    let q = json!({"principal": principal, "resource_type": "topic", "resource_name": topic,
                   "operation": "read"});
    call(
        &b,
        "POST",
        "/v1/authz/explain",
        Auth::Basic(&bob, "bob-pass-1"),
        Some(q.clone()),
        403,
    );
    call(&b, "POST", "/v1/authz/explain", Auth::None, Some(q), 401);
    let events = audit_events(&b);
    let explained: Vec<&Value> = events
        .iter()
        .filter(|e| e["data"]["method"] == "authz.explain")
        .collect();
    assert!(
        explained.iter().any(|e| e["data"]["granted"] == true
            && e["data"]["principal"] == "User:admin"
            && e["data"]["attributes"]["explainDecision"] == "deny"
            && e["data"]["attributes"]["explainResource"] == format!("Topic:{pay}")),
        "{explained:?}"
    );
    assert!(
        explained
            .iter()
            .any(|e| e["data"]["granted"] == false && e["data"]["principal"] == principal),
        "{explained:?}"
    );

    // Keys: the rotation history names each version, when, and who.
    let key = unique("ex-key");
    call(
        &b,
        "POST",
        "/v1/keys",
        ADMIN,
        Some(json!({"name": key})),
        201,
    );
    call(
        &b,
        "POST",
        &format!("/v1/keys/{key}/rotate"),
        ADMIN,
        None,
        200,
    );
    let k = call(&b, "GET", &format!("/v1/keys/{key}"), ADMIN, None, 200);
    let history = k["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{k}");
    assert_eq!(history[0]["action"], "created");
    assert_eq!(history[1]["action"], "rotated");
    assert_eq!(history[1]["by"], "User:admin");
    assert_eq!(k["versions"][1]["created_by"], "User:admin");
    assert_eq!(k["rotated"], history[1]["time"]);
    let listed = call(&b, "GET", "/v1/keys", ADMIN, None, 200);
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == key.as_str() && x["history"].as_array().unwrap().len() == 2),
        "{listed}"
    );

    // Evidence: bad periods, then a download that verifies.
    let auditor = Auth::Basic("auditor2", "auditor-pass-2");
    let now = gatehouse_compliance::Timestamp::now().unix_micros();
    let at = |offset_s: i64| {
        gatehouse_compliance::Timestamp::from_unix_micros(now + offset_s * 1_000_000).to_rfc3339()
    };
    for (q, why) in [
        (String::new(), "from is required"),
        (format!("?from={}", at(-60)), "to is required"),
        (format!("?from=yesterday&to={}", at(60)), "RFC 3339"),
        (
            format!("?from={}&to={}", at(60), at(-60)),
            "period is empty",
        ),
        (
            format!("?from={}&to={}", at(-400 * 86_400), at(60)),
            "longer than 366 days",
        ),
    ] {
        let e = call(
            &b,
            "GET",
            &format!("/v1/audit/evidence{q}"),
            auditor,
            None,
            422,
        );
        assert!(e["message"].as_str().unwrap().contains(why), "{e}");
    }
    let path = format!("/v1/audit/evidence?from={}&to={}", at(-3600), at(3600));
    call(&b, "GET", &path, Auth::Basic(&bob, "bob-pass-1"), None, 403);
    call(&b, "GET", &path, Auth::None, None, 401);
    let (code, head, body) = http_bytes(b.admin_addr(), &path, auditor);
    assert_eq!(code, 200, "{head} {}", String::from_utf8_lossy(&body));
    assert!(head.contains("content-type: application/gzip"), "{head}");
    assert!(
        head.contains("content-disposition: attachment; filename=\"gatehouse-evidence-"),
        "{head}"
    );
    assert!(
        head.contains("x-gatehouse-evidence-verdict: passed"),
        "{head}"
    );
    let out = b.scratch_dir().join("evidence-download");
    tar::Archive::new(flate2::read::GzDecoder::new(&body[..]))
        .unpack(&out)
        .unwrap();
    let tops: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(tops.len(), 1, "one top directory");
    let pkg = tops[0].as_ref().unwrap().path();
    assert!(
        pkg.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("gatehouse-evidence-")
    );
    // The package verifies as the CLI's does.
    let check = std::process::Command::new(gatehouse_bin())
        .args(["evidence", "--check", pkg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    gatehouse_compliance::audit::evidence::check_manifest(&pkg).unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(pkg.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["verdict"], "PASSED");
    assert_eq!(manifest["operator"], "User:auditor2");
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(pkg.join("configuration.json")).unwrap()).unwrap();
    assert_eq!(cfg["included"], true, "{cfg}");
    // The checkpoint was signed after the download was recorded: the package holds it.
    let access: Value = serde_json::from_slice(
        &std::fs::read(pkg.join("populations").join("audit-access.json")).unwrap(),
    )
    .unwrap();
    assert!(
        access.as_array().unwrap().iter().any(|e| {
            e["data"]["method"] == "audit.evidence" && e["data"]["principal"] == "User:auditor2"
        }),
        "{access}"
    );
    let changes: Value = serde_json::from_slice(
        &std::fs::read(pkg.join("populations").join("access-changes.json")).unwrap(),
    )
    .unwrap();
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["data"]["method"] == "kafka.CreateAcls"),
        "{changes}"
    );
    // No secret in any file of the package.
    let mut dirs = vec![pkg.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            for secret in ["auditor-pass-2", "bob-pass-1", ADMIN_PASSWORD] {
                assert!(!text.contains(secret), "{}", p.display());
            }
        }
    }
}
