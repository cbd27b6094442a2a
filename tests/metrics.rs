//! `/metrics` end to end against the real `gatehouse serve`: a client session with librdkafka
//! (plaintext records over TLS, records to an encrypted and validated topic over the plain
//! listener with one poison pill, consumption of both), one failed SASL login, a schema
//! registered and read back over the registry's HTTPS API; then the page is scraped, parsed as
//! Prometheus text exposition (format 0.0.4) by a small parser below, and the counters each
//! part should have moved are checked: per-listener connections and refusals, response errors
//! by API and error, data-guard rejections by reason, encryption and decryption, registry
//! requests by route template and their latency histogram, broker log sizes and fsyncs, the
//! audit queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use gatehouse_protocol::client::{Connection, ConnectionConfig, SaslCredentials, SaslMechanism};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

const SCHEMA: &str =
    r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"}]}"#;

// ---------------------------------------------------------------------------------------------
// A Prometheus text-format parser (just enough to check the page's shape)
// ---------------------------------------------------------------------------------------------

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed page: samples in order, and the TYPE of each family.
#[derive(Debug, Default)]
struct Page {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        v => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// `k="v",k2="v2"` (escapes `\\`, `\"`, `\n`), up to the closing brace; returns the rest.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = &s[..eq];
        if !valid_name(key) || key.starts_with("__") {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        s = &s[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// The family a sample belongs to (histogram series carry suffixes).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| t == "histogram")
        {
            return base;
        }
    }
    name
}

fn parse_page(text: &str) -> Result<Page, String> {
    let mut page = Page::default();
    let mut helps = std::collections::HashSet::new();
    let mut seen: std::collections::HashSet<(String, BTreeMap<String, String>)> =
        std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, arg) = (parts.next(), parts.next(), parts.next());
            let name = name.ok_or_else(|| at("comment without a name".into()))?;
            if !valid_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            match kw {
                Some("HELP") if !helps.insert(name.to_string()) => {
                    return Err(at("HELP twice".into()));
                }
                Some("TYPE") => {
                    let t = arg.ok_or_else(|| at("TYPE without a type".into()))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(at(format!("unknown type {t}")));
                    }
                    if page
                        .samples
                        .iter()
                        .any(|s| family_of(&s.name, &page.types) == name)
                    {
                        return Err(at("TYPE after the family's samples".into()));
                    }
                    if page.types.insert(name.to_string(), t.to_string()).is_some() {
                        return Err(at("TYPE twice".into()));
                    }
                }
                _ => {}
            }
            continue;
        }
        let (name, labels, rest) = match line.find(['{', ' ']) {
            Some(i) if line.as_bytes()[i] == b'{' => {
                let (labels, rest) = parse_labels(&line[i + 1..]).map_err(at)?;
                (&line[..i], labels, rest)
            }
            Some(i) => (&line[..i], BTreeMap::new(), &line[i..]),
            None => return Err(at("sample without a value".into())),
        };
        if !valid_name(name) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = family_of(name, &page.types);
        let kind = page
            .types
            .get(family)
            .ok_or_else(|| at(format!("no TYPE for {family}")))?;
        if kind == "counter" && !(name.ends_with("_total") && value >= 0.0) {
            return Err(at("a counter is named *_total and never negative".into()));
        }
        if !seen.insert((name.to_string(), labels.clone())) {
            return Err(at("series twice".into()));
        }
        page.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    check_histograms(&page)?;
    Ok(page)
}

/// Every histogram series: buckets ascending and cumulative, `+Inf` equal to `_count`.
fn check_histograms(page: &Page) -> Result<(), String> {
    for (family, _) in page.types.iter().filter(|(_, t)| *t == "histogram") {
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        let bucket = format!("{family}_bucket");
        for s in page.samples.iter().filter(|s| s.name == bucket) {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").ok_or(format!("{bucket} without le"))?;
            series
                .entry(labels)
                .or_default()
                .push((parse_value(&le)?, s.value));
        }
        for (labels, buckets) in series {
            if !buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            {
                return Err(format!(
                    "{family}{labels:?}: buckets not cumulative: {buckets:?}"
                ));
            }
            let inf = buckets.last().filter(|(le, _)| le.is_infinite());
            let count = page
                .samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .map(|s| s.value);
            let sum = page
                .samples
                .iter()
                .any(|s| s.name == format!("{family}_sum") && s.labels == labels);
            match (inf, count) {
                (Some((_, n)), Some(c)) if *n == c && sum => {}
                _ => {
                    return Err(format!(
                        "{family}{labels:?}: +Inf, _sum and _count disagree"
                    ));
                }
            }
        }
    }
    Ok(())
}

impl Page {
    /// The value of the series `name` whose labels include `labels`, summed over the rest.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }
}

#[test]
fn the_parser_accepts_good_pages_and_refuses_bad_ones() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
    let page = parse_page(good).unwrap();
    assert_eq!(page.get("a_total", &[("x", "q\"\\\n")]), 3.0);
    for bad in [
        "a_total 1\n",                                                       // no TYPE
        "# TYPE a counter\na 1\n",      // counter without _total
        "# TYPE a gauge\na{x=\"1} 1\n", // unterminated
        "# TYPE a gauge\na 1\na 2\n",   // series twice
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", // count
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE a gauge\na one\n",
    ] {
        assert!(parse_page(bad).is_err(), "accepted: {bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

fn serve() -> Broker {
    Broker::start_with(BrokerOptions {
        serve: true,
        ..Default::default()
    })
}

/// Plain HTTP GET on the admin listener: (status, body).
fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, body.to_string())
}

/// One HTTPS request to the registry as admin: (status, JSON body or Null).
fn registry(b: &Broker, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    use base64::Engine;
    let body = body.map(Value::to_string).unwrap_or_default();
    let config = gatehouse_gateway::tls::client_config(&b.ca_pem(), None).expect("tls config");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).expect("tls client");
    let tcp = TcpStream::connect_timeout(&b.registry_addr(), Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic {auth}\r\n\
         Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => panic!("read: {e}"),
    }
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let json = match (rest.find('{'), rest.rfind('}')) {
        (Some(a), Some(z)) if a < z => serde_json::from_str(&rest[a..=z]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (code, json)
}

/// librdkafka over the TLS listener (SASL_SSL, SCRAM-SHA-256) as admin.
fn tls_client(b: &Broker) -> rdkafka::config::ClientConfig {
    let mut c = client_config(&b.gateway_tls());
    c.set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", b.ca_pem().to_str().unwrap())
        .set("sasl.mechanisms", "SCRAM-SHA-256")
        .set("sasl.username", "admin")
        .set("sasl.password", ADMIN_PASSWORD);
    c
}

/// librdkafka over the plain listener (SASL_PLAINTEXT, SCRAM-SHA-512) as admin.
fn plain_client(b: &Broker) -> rdkafka::config::ClientConfig {
    let mut c = client_config(&b.gateway_plain());
    c.set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", "admin")
        .set("sasl.password", ADMIN_PASSWORD);
    c
}

fn create_topics(b: &Broker, topics: &[(&str, &[(&str, &str)])]) {
    use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = plain_client(b).create().expect("admin");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, configs)| {
            configs.iter().fold(
                NewTopic::new(name, 1, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    for r in runtime()
        .block_on(admin.create_topics(&new, &admin_opts()))
        .expect("CreateTopics")
    {
        r.expect("topic created");
    }
}

fn producer_from(mut c: rdkafka::config::ClientConfig) -> FutureProducer {
    c.set("message.timeout.ms", "20000").set("linger.ms", "0");
    c.create().expect("producer")
}

/// Sends one record and waits for its answer (one Produce request per record).
fn send(p: &FutureProducer, topic: &str, value: &[u8]) -> Result<(), String> {
    runtime()
        .block_on(p.send(
            FutureRecord::<(), _>::to(topic).payload(value),
            Duration::from_secs(20),
        ))
        .map(|_| ())
        .map_err(|(e, _)| format!("{e:?}"))
}

/// Reads `n` records of `topic` from the start; returns their values.
fn read_n(c: rdkafka::config::ClientConfig, topic: &str, n: usize) -> Vec<Vec<u8>> {
    let mut c = c;
    c.set("group.id", unique("g"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = c.create().expect("consumer");
    c.subscribe(&[topic]).unwrap();
    let mut got = Vec::new();
    let until = Instant::now() + OP_DEADLINE;
    while got.len() < n {
        assert!(
            Instant::now() < until,
            "only {} of {n} records of {topic} arrived",
            got.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap_or_else(|e| panic!("consumer error: {e}"));
            got.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    got
}

fn wire(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn a_client_session_moves_every_family_on_the_metrics_page() {
    let b = serve();
    let plain_topic = unique("metrics-plain");
    let secure_topic = unique("metrics-secure");
    create_topics(
        &b,
        &[
            (plain_topic.as_str(), &[]),
            (
                secure_topic.as_str(),
                &[
                    ("gatehouse.encryption", "true"),
                    ("confluent.value.schema.validation", "true"),
                ],
            ),
        ],
    );

    // The registry: one registration, one read, one miss.
    let subject = format!("{secure_topic}-value");
    let (code, reg) = registry(
        &b,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(&json!({ "schema": SCHEMA })),
    );
    assert_eq!(code, 200, "{reg}");
    let id = reg["id"].as_i64().expect("id") as i32;
    let (code, got) = registry(&b, "GET", &format!("/schemas/ids/{id}"), None);
    assert_eq!(code, 200, "{got}");
    let (code, _) = registry(&b, "GET", "/subjects/no-such-subject/versions/1", None);
    assert_eq!(code, 404);

    // Plaintext records over TLS.
    let p = producer_from(tls_client(&b));
    for i in 0..5 {
        send(&p, &plain_topic, format!("plain-{i}").as_bytes()).expect("plain record");
    }
    drop(p);
    // Encrypted and validated over the plain listener: three good records, one poison pill.
    let p = producer_from(plain_client(&b));
    for i in 0..3u8 {
        send(&p, &secure_topic, &wire(id, &[i * 2])).expect("valid record");
    }
    let err = send(&p, &secure_topic, b"not avro at all").expect_err("poison pill refused");
    assert!(err.contains("InvalidRecord"), "{err}");
    drop(p);
    // Consume both (the secure topic decrypted by the gateway).
    assert_eq!(read_n(tls_client(&b), &plain_topic, 5).len(), 5);
    let values = read_n(plain_client(&b), &secure_topic, 3);
    assert_eq!(values[0], wire(id, &[0]), "plaintext after decryption");

    // An upstream error on the forwarded path: metadata of a topic that does not exist.
    let missing = unique("metrics-missing");
    let c: BaseConsumer = {
        let mut c = tls_client(&b);
        c.set("group.id", unique("g"))
            .set("allow.auto.create.topics", "false");
        c.create().expect("consumer")
    };
    let md = c
        .fetch_metadata(Some(&missing), Duration::from_secs(10))
        .expect("metadata");
    assert!(
        md.topics().iter().all(|t| t.error().is_some()),
        "the topic does not exist"
    );
    drop(c);

    // One failed login on the plain listener.
    let failed = runtime().block_on(Connection::connect(
        b.gateway_plain().as_str(),
        ConnectionConfig {
            sasl: Some(SaslCredentials::new(
                SaslMechanism::ScramSha512,
                "admin",
                "not-the-password",
            )),
            ..Default::default()
        },
    ));
    assert!(failed.is_err(), "a wrong password is refused");

    // Scrape. The audit trail and the fsyncs settle shortly after the answers: poll.
    let page = poll_until(OP_DEADLINE, "metrics with the session's counters", || {
        let (code, text) = admin_get(b.admin_addr(), "/metrics");
        assert_eq!(code, 200);
        let page = parse_page(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let settled = page.sum("gatehouse_gateway_decrypted_records_total", &[])? >= 3.0
            && page.sum("gatehouse_audit_pending_events", &[]) == Some(0.0);
        settled.then_some(page)
    });
    let get = |name: &str, labels: &[(&str, &str)]| page.get(name, labels);

    // Gateway: per-listener connections and refusals.
    assert!(
        get(
            "gatehouse_gateway_listener_connections_accepted_total",
            &[("listener", "tls")]
        ) >= 2.0
    );
    assert!(
        get(
            "gatehouse_gateway_listener_connections_accepted_total",
            &[("listener", "plain")]
        ) >= 3.0
    );
    let _ = get(
        "gatehouse_gateway_listener_connections_active",
        &[("listener", "tls")],
    );
    assert_eq!(
        get(
            "gatehouse_gateway_listener_refusals_total",
            &[("listener", "plain"), ("reason", "authentication_failed")]
        ),
        1.0
    );
    assert_eq!(
        page.sum(
            "gatehouse_gateway_listener_refusals_total",
            &[("listener", "tls"), ("reason", "authentication_failed")]
        ),
        None,
        "the TLS listener saw no failed login"
    );
    assert_eq!(
        get(
            "gatehouse_gateway_authentication_failures_total",
            &[("mechanism", "SCRAM-SHA-512")]
        ),
        1.0
    );
    // Errors by API and error: exactly the poison pill's partition.
    assert_eq!(
        get(
            "gatehouse_gateway_response_errors_total",
            &[
                ("listener", "plain"),
                ("api", "Produce"),
                ("error", "InvalidRecord")
            ]
        ),
        1.0
    );
    assert_eq!(
        page.sum(
            "gatehouse_gateway_response_errors_total",
            &[("listener", "tls"), ("api", "Produce")]
        ),
        None,
        "every plaintext record was accepted"
    );
    assert!(
        get(
            "gatehouse_gateway_response_errors_total",
            &[
                ("listener", "tls"),
                ("api", "Metadata"),
                ("error", "UnknownTopicOrPartition")
            ]
        ) >= 1.0
    );
    // The data guard: one record, no schema id.
    assert_eq!(
        get(
            "gatehouse_gateway_validation_rejections_total",
            &[("reason", "no_schema_id")]
        ),
        1.0
    );
    assert_eq!(
        get("gatehouse_gateway_validation_rejections_total", &[]),
        1.0
    );
    assert_eq!(
        get(
            "gatehouse_gateway_rejected_records_total",
            &[("topic", &secure_topic)]
        ),
        1.0
    );
    // Encryption: three records in (at least) three batches; decryption on the way out.
    assert!(get("gatehouse_gateway_encrypted_records_total", &[]) >= 3.0);
    assert!(get("gatehouse_gateway_encrypted_batches_total", &[]) >= 3.0);
    assert!(get("gatehouse_gateway_decrypted_records_total", &[]) >= 3.0);
    assert!(get("gatehouse_gateway_decrypted_batches_total", &[]) >= 1.0);
    assert_eq!(
        get(
            "gatehouse_gateway_crypto_failures_total",
            &[("operation", "encrypt")]
        ),
        0.0
    );
    assert_eq!(
        get(
            "gatehouse_gateway_crypto_failures_total",
            &[("operation", "decrypt")]
        ),
        0.0
    );
    assert_eq!(get("gatehouse_gateway_decryption_withheld_total", &[]), 0.0);
    // What flowed.
    assert!(get("gatehouse_gateway_requests_total", &[("api", "Produce")]) >= 9.0);
    assert!(get("gatehouse_gateway_requests_total", &[("api", "Fetch")]) >= 1.0);
    assert!(get("gatehouse_gateway_produce_bytes_total", &[]) > 0.0);
    assert!(get("gatehouse_gateway_fetch_bytes_total", &[]) > 0.0);

    // Registry: route templates, never raw paths; status classes; the latency histogram.
    let route = |method: &str, route: &str, status: &str| {
        get(
            "gatehouse_registry_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(route("POST", "/subjects/{subject}/versions", "2xx"), 1.0);
    assert_eq!(route("GET", "/schemas/ids/{id}", "2xx"), 1.0);
    assert_eq!(
        route("GET", "/subjects/{subject}/versions/{version}", "4xx"),
        1.0
    );
    assert!(
        !page
            .samples
            .iter()
            .any(|s| s.labels.get("route").is_some_and(|r| r.contains(&subject))),
        "raw paths never become labels"
    );
    assert_eq!(
        get(
            "gatehouse_registry_http_request_duration_seconds_count",
            &[
                ("method", "POST"),
                ("route", "/subjects/{subject}/versions")
            ]
        ),
        1.0
    );
    assert!(
        get(
            "gatehouse_registry_http_request_duration_seconds_sum",
            &[
                ("method", "POST"),
                ("route", "/subjects/{subject}/versions")
            ]
        ) > 0.0
    );

    // Broker: sizes by topic, the total, fsyncs (durable mode by default).
    assert!(
        get(
            "gatehouse_broker_topic_log_bytes",
            &[("topic", &plain_topic)]
        ) > 0.0
    );
    assert!(
        get(
            "gatehouse_broker_topic_log_bytes",
            &[("topic", &secure_topic)]
        ) > 0.0
    );
    assert!(
        get("gatehouse_broker_log_bytes", &[])
            >= get(
                "gatehouse_broker_topic_log_bytes",
                &[("topic", &plain_topic)]
            )
    );
    assert!(get("gatehouse_broker_partitions", &[]) >= 2.0);
    assert!(get("gatehouse_broker_log_fsync_duration_seconds_count", &[]) >= 1.0);
    assert!(get("gatehouse_broker_log_flushes_total", &[]) >= 1.0);
    assert_eq!(get("gatehouse_broker_log_fsync_failures_total", &[]), 0.0);

    // Audit queue: events made durable, nothing waiting now.
    assert!(get("gatehouse_audit_events_total", &[]) > 0.0);
    assert!(get("gatehouse_audit_queue_capacity", &[]) > 0.0);
    assert_eq!(get("gatehouse_audit_pending_events", &[]), 0.0);
    assert_eq!(get("gatehouse_audit_lag_seconds", &[]), 0.0);
    let _ = get("gatehouse_audit_queue_depth", &[]);
    assert_eq!(get("gatehouse_audit_append_failures_total", &[]), 0.0);
    assert_eq!(get("gatehouse_up", &[]), 1.0);

    // No principal ever becomes a label.
    assert!(
        !page
            .samples
            .iter()
            .any(|s| s.labels.values().any(|v| v.contains("admin"))),
        "principals are never labels"
    );
}
