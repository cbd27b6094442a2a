//! `AuditEvent`: one audit record as a CloudEvents 1.0 JSON object (schema
//! `docs/audit-event.schema.json`, id [`DATA_SCHEMA`]), its builder, and its canonical
//! serialisation.
//!
//! The envelope carries `specversion` "1.0", `id` (`{nodeId}-{sequence}`, unique per node),
//! `source` (`gatehouse://{nodeId}/{service}`), `type` (`io.gatehouse.*`), `time` (RFC 3339,
//! microseconds, UTC), `datacontenttype` and `dataschema`. `data` holds the PCI DSS 10.2.2
//! fields: who (principal, auth mechanism), what (service, method, operation, resource), where
//! from (client address, client id, correlation id), the decision (granted, outcome, matched
//! rule) and the ordering facts (node id, sequence as a decimal string, clock source).
//! Audit events never carry message payloads.
//!
//! The canonical form (sorted keys, no whitespace, 64-bit integers as strings; see
//! `docs/audit.md`) is what the log stores and hashes. Verification hashes the stored
//! bytes; it never re-serialises an event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::canonical::{key_order, write_str, write_u64, write_u64_str};
use super::time::Timestamp;

/// CloudEvents `specversion`.
pub const SPEC_VERSION: &str = "1.0";
/// CloudEvents `datacontenttype`.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// CloudEvents `dataschema`: the `$id` of `docs/audit-event.schema.json` (version 1).
pub const DATA_SCHEMA: &str = "urn:gatehouse:schema:audit-event:v1";

/// The kind of audited action (CloudEvents `type`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `io.gatehouse.authentication`: sign-in attempts (SASL, mTLS, OIDC, admin login).
    Authentication,
    /// `io.gatehouse.authorization`: an access decision (ACL/RBAC check).
    Authorization,
    /// `io.gatehouse.topic`: topic create/delete/alter.
    Topic,
    /// `io.gatehouse.acl`: ACL and role-binding changes.
    Acl,
    /// `io.gatehouse.schema`: schema registry changes.
    Schema,
    /// `io.gatehouse.key`: key lifecycle (create, rotate, retire, destroy; ids only).
    Key,
    /// `io.gatehouse.poison_pill`: a record rejected by a data policy (never its content).
    PoisonPill,
    /// `io.gatehouse.lifecycle`: the audit trail itself started, stopped or rotated keys.
    Lifecycle,
    /// `io.gatehouse.audit_access`: reads, exports and verifications of the audit trail.
    AuditAccess,
    /// Any other non-empty type string (tolerant reader).
    Other(String),
}

impl EventType {
    /// The CloudEvents `type` string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Authentication => "io.gatehouse.authentication",
            Self::Authorization => "io.gatehouse.authorization",
            Self::Topic => "io.gatehouse.topic",
            Self::Acl => "io.gatehouse.acl",
            Self::Schema => "io.gatehouse.schema",
            Self::Key => "io.gatehouse.key",
            Self::PoisonPill => "io.gatehouse.poison_pill",
            Self::Lifecycle => "io.gatehouse.lifecycle",
            Self::AuditAccess => "io.gatehouse.audit_access",
            Self::Other(s) => s,
        }
    }

    /// Parses a CloudEvents `type` string.
    pub fn parse(s: &str) -> Result<Self, EventError> {
        Ok(match s {
            "io.gatehouse.authentication" => Self::Authentication,
            "io.gatehouse.authorization" => Self::Authorization,
            "io.gatehouse.topic" => Self::Topic,
            "io.gatehouse.acl" => Self::Acl,
            "io.gatehouse.schema" => Self::Schema,
            "io.gatehouse.key" => Self::Key,
            "io.gatehouse.poison_pill" => Self::PoisonPill,
            "io.gatehouse.lifecycle" => Self::Lifecycle,
            "io.gatehouse.audit_access" => Self::AuditAccess,
            "" => return Err(EventError::Invalid("empty type")),
            other => Self::Other(other.to_owned()),
        })
    }
}

/// The resource acted on (`data.resource`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Resource type, e.g. `Topic`, `Group`, `Cluster`, `Subject`, `TransactionalId`, `Key`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Resource name, e.g. the topic name.
    pub name: String,
}

/// The result of the action (`data.outcome`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// `SUCCESS`, `DENIED`, `FAILURE`, `REJECTED`, ...
    pub status: String,
    /// Protocol error code or name, e.g. Kafka `TOPIC_AUTHORIZATION_FAILED` or `29`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// A short human-readable message (never secrets or payload content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Outcome {
    /// `{status: "SUCCESS"}`.
    pub fn success() -> Self {
        Self::status("SUCCESS")
    }
    /// `{status: "DENIED"}`.
    pub fn denied() -> Self {
        Self::status("DENIED")
    }
    /// An outcome with the given status and nothing else.
    pub fn status(status: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            error_code: None,
            message: None,
        }
    }
    /// Sets the error code.
    pub fn with_error_code(mut self, code: impl Into<String>) -> Self {
        self.error_code = Some(code.into());
        self
    }
    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// One audit event. Build it with [`AuditEvent::builder`]; `node_id` and `sequence` are
/// assigned by the [`super::log::AuditLog`] that appends it (values set by the caller are
/// ignored there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// CloudEvents `type`.
    pub event_type: EventType,
    /// When the action happened (UTC, microseconds).
    pub time: Timestamp,
    /// The node that recorded the event.
    pub node_id: String,
    /// Position in the node's audit log (= Merkle leaf index).
    pub sequence: u64,
    /// Who: e.g. `User:alice`.
    pub principal: String,
    /// How they authenticated, e.g. `SASL_SSL/SCRAM-SHA-256`, `mTLS`, `OIDC`.
    pub auth_mechanism: Option<String>,
    /// The emitting service: `gateway`, `registry`, `broker`, `admin`, `audit`, ...
    pub service: String,
    /// The protocol method, e.g. `kafka.CreateTopics`, `registry.RegisterSchema`.
    pub method: String,
    /// The resource acted on.
    pub resource: Resource,
    /// The operation, e.g. Kafka ACL operation `Read`, `Write`, `Create`, `Alter`.
    pub operation: String,
    /// Client address (`ip:port`).
    pub client_address: Option<String>,
    /// Client id as the client announced it.
    pub client_id: Option<String>,
    /// Request correlation id.
    pub correlation_id: Option<String>,
    /// Whether access was granted.
    pub granted: bool,
    /// The result.
    pub outcome: Outcome,
    /// The ACL/RBAC/policy rule that decided, if any.
    pub matched_rule: Option<String>,
    /// Where `time` came from, e.g. `system`, `ntp`, `ptp` (PCI DSS 10.6).
    pub clock_source: String,
    /// Further string attributes (partition, counts, policy id, ...). Never payloads.
    pub attributes: BTreeMap<String, String>,
}

/// A malformed event or a builder call missing a required field.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A required builder field was not set.
    #[error("audit event is missing required field {0}")]
    Missing(&'static str),
    /// A field has a value the format does not allow.
    #[error("invalid audit event: {0}")]
    Invalid(&'static str),
    /// Not JSON of the expected shape.
    #[error("audit event JSON does not match the schema: {0}")]
    Json(#[from] serde_json::Error),
}

/// Identifiers embedded in URIs (`node_id`, `service`): 1..=64 of `[A-Za-z0-9._-]`.
pub(crate) fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl AuditEvent {
    /// Starts building an event of the given type. `time` defaults to now, `clock_source` to
    /// `system`, `granted` to false and `outcome` to `SUCCESS`/`DENIED` following `granted`.
    pub fn builder(event_type: EventType) -> AuditEventBuilder {
        AuditEventBuilder {
            event: AuditEvent {
                event_type,
                time: Timestamp::now(),
                node_id: String::new(),
                sequence: 0,
                principal: String::new(),
                auth_mechanism: None,
                service: String::new(),
                method: String::new(),
                resource: Resource {
                    resource_type: String::new(),
                    name: String::new(),
                },
                operation: String::new(),
                client_address: None,
                client_id: None,
                correlation_id: None,
                granted: false,
                outcome: Outcome::success(),
                matched_rule: None,
                clock_source: "system".to_owned(),
                attributes: BTreeMap::new(),
            },
            outcome_set: false,
        }
    }

    /// CloudEvents `id`: `{node_id}-{sequence}`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.node_id, self.sequence)
    }

    /// CloudEvents `source`: `gatehouse://{node_id}/{service}`.
    pub fn source(&self) -> String {
        format!("gatehouse://{}/{}", self.node_id, self.service)
    }

    /// The canonical JSON bytes of this event as it stands.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_canonical(&mut out, &self.node_id, self.sequence);
        out
    }

    /// Appends the canonical JSON of this event with `node_id` and `sequence` replaced.
    /// Keys are written in their sorted order by hand (checked by a test against the
    /// generic canonicaliser).
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>, node_id: &str, sequence: u64) {
        fn key(out: &mut Vec<u8>, k: &str) {
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
        }
        fn opt(out: &mut Vec<u8>, k: &str, v: &Option<String>) {
            if let Some(v) = v {
                key(out, k);
                write_str(out, v);
                out.push(b',');
            }
        }
        out.extend_from_slice(b"{\"data\":{");
        if !self.attributes.is_empty() {
            key(out, "attributes");
            out.push(b'{');
            let mut attrs: Vec<(&String, &String)> = self.attributes.iter().collect();
            if !attrs.iter().all(|(k, _)| k.is_ascii()) {
                attrs.sort_by(|a, b| key_order(a.0, b.0));
            }
            for (i, (k, v)) in attrs.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_str(out, v);
            }
            out.extend_from_slice(b"},");
        }
        opt(out, "authMechanism", &self.auth_mechanism);
        opt(out, "clientAddress", &self.client_address);
        opt(out, "clientId", &self.client_id);
        key(out, "clockSource");
        write_str(out, &self.clock_source);
        out.push(b',');
        opt(out, "correlationId", &self.correlation_id);
        key(out, "granted");
        out.extend_from_slice(if self.granted { b"true," } else { b"false," });
        opt(out, "matchedRule", &self.matched_rule);
        key(out, "method");
        write_str(out, &self.method);
        out.extend_from_slice(b",\"nodeId\":");
        write_str(out, node_id);
        out.extend_from_slice(b",\"operation\":");
        write_str(out, &self.operation);
        out.extend_from_slice(b",\"outcome\":{");
        opt(out, "errorCode", &self.outcome.error_code);
        opt(out, "message", &self.outcome.message);
        key(out, "status");
        write_str(out, &self.outcome.status);
        out.extend_from_slice(b"},\"principal\":");
        write_str(out, &self.principal);
        out.extend_from_slice(b",\"resource\":{\"name\":");
        write_str(out, &self.resource.name);
        out.extend_from_slice(b",\"type\":");
        write_str(out, &self.resource.resource_type);
        out.extend_from_slice(b"},\"sequence\":");
        write_u64_str(out, sequence);
        out.extend_from_slice(b",\"service\":");
        write_str(out, &self.service);
        out.extend_from_slice(b"},\"datacontenttype\":\"");
        out.extend_from_slice(DATA_CONTENT_TYPE.as_bytes());
        out.extend_from_slice(b"\",\"dataschema\":\"");
        out.extend_from_slice(DATA_SCHEMA.as_bytes());
        // node_id and service are restricted to URI-safe identifier characters.
        out.extend_from_slice(b"\",\"id\":\"");
        out.extend_from_slice(node_id.as_bytes());
        out.push(b'-');
        write_u64(out, sequence);
        out.extend_from_slice(b"\",\"source\":\"gatehouse://");
        out.extend_from_slice(node_id.as_bytes());
        out.push(b'/');
        out.extend_from_slice(self.service.as_bytes());
        out.extend_from_slice(b"\",\"specversion\":\"1.0\",\"time\":\"");
        self.time.write_rfc3339(out);
        out.extend_from_slice(b"\",\"type\":");
        write_str(out, self.event_type.as_str());
        out.push(b'}');
    }

    /// Parses an event from JSON (any member order; unknown members are ignored). Checks
    /// `specversion`, and that `id` and `source` agree with `data`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let w: WireEvent = serde_json::from_slice(bytes)?;
        if w.specversion != SPEC_VERSION {
            return Err(EventError::Invalid("specversion is not 1.0"));
        }
        let d = w.data;
        let sequence = parse_u64_str(&d.sequence).ok_or(EventError::Invalid("sequence"))?;
        let time = Timestamp::parse_rfc3339(&w.time).map_err(|_| EventError::Invalid("time"))?;
        if w.id != format!("{}-{}", d.node_id, sequence) {
            return Err(EventError::Invalid("id does not match nodeId and sequence"));
        }
        if w.source != format!("gatehouse://{}/{}", d.node_id, d.service) {
            return Err(EventError::Invalid(
                "source does not match nodeId and service",
            ));
        }
        Ok(AuditEvent {
            event_type: EventType::parse(&w.event_type)?,
            time,
            node_id: d.node_id,
            sequence,
            principal: d.principal,
            auth_mechanism: d.auth_mechanism,
            service: d.service,
            method: d.method,
            resource: d.resource,
            operation: d.operation,
            client_address: d.client_address,
            client_id: d.client_id,
            correlation_id: d.correlation_id,
            granted: d.granted,
            outcome: d.outcome,
            matched_rule: d.matched_rule,
            clock_source: d.clock_source,
            attributes: d.attributes,
        })
    }
}

/// Parses a canonical decimal `u64` (digits only, no leading zeros except "0").
pub(crate) fn parse_u64_str(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

/// The `data.sequence` of a canonical event, found without a full parse: in canonical
/// form the last occurrence of `"sequence":"` is `data.sequence`, because the only members
/// that sort after it (`data.service` and the top-level envelope attributes) are strings,
/// inside which a quote is always escaped.
pub(crate) fn canonical_sequence(payload: &[u8]) -> Option<u64> {
    const PAT: &str = "\"sequence\":\"";
    // `str` searching is compiled (optimised) in the standard library, which keeps this
    // fast even in unoptimised builds of this crate.
    let text = std::str::from_utf8(payload).ok()?;
    let at = memchr::memmem::rfind(payload, PAT.as_bytes())? + PAT.len();
    let rest = text.get(at..)?;
    parse_u64_str(&rest[..rest.find('"')?])
}

#[derive(Deserialize)]
struct WireEvent {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    time: String,
    data: WireData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireData {
    principal: String,
    #[serde(default)]
    auth_mechanism: Option<String>,
    service: String,
    method: String,
    resource: Resource,
    operation: String,
    #[serde(default)]
    client_address: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    granted: bool,
    outcome: Outcome,
    #[serde(default)]
    matched_rule: Option<String>,
    node_id: String,
    sequence: String,
    clock_source: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// Builds an [`AuditEvent`]; see [`AuditEvent::builder`].
#[derive(Clone, Debug)]
pub struct AuditEventBuilder {
    event: AuditEvent,
    outcome_set: bool,
}

impl AuditEventBuilder {
    /// The emitting service (required; `[A-Za-z0-9._-]`, e.g. `gateway`).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.event.service = service.into();
        self
    }
    /// The method (required), e.g. `kafka.Produce`.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.event.method = method.into();
        self
    }
    /// The principal (required), e.g. `User:alice`.
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.event.principal = principal.into();
        self
    }
    /// The authentication mechanism.
    pub fn auth_mechanism(mut self, mechanism: impl Into<String>) -> Self {
        self.event.auth_mechanism = Some(mechanism.into());
        self
    }
    /// The resource (required), e.g. `("Topic", "payments")`.
    pub fn resource(mut self, resource_type: impl Into<String>, name: impl Into<String>) -> Self {
        self.event.resource = Resource {
            resource_type: resource_type.into(),
            name: name.into(),
        };
        self
    }
    /// The operation (required), e.g. `Write`.
    pub fn operation(mut self, operation: impl Into<String>) -> Self {
        self.event.operation = operation.into();
        self
    }
    /// The client address (`ip:port`).
    pub fn client_address(mut self, address: impl Into<String>) -> Self {
        self.event.client_address = Some(address.into());
        self
    }
    /// The client id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.event.client_id = Some(client_id.into());
        self
    }
    /// The request correlation id.
    pub fn correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.event.correlation_id = Some(correlation_id.into());
        self
    }
    /// Whether access was granted (default false).
    pub fn granted(mut self, granted: bool) -> Self {
        self.event.granted = granted;
        self
    }
    /// The outcome (default `SUCCESS` when granted, else `DENIED`).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.event.outcome = outcome;
        self.outcome_set = true;
        self
    }
    /// The rule that decided.
    pub fn matched_rule(mut self, rule: impl Into<String>) -> Self {
        self.event.matched_rule = Some(rule.into());
        self
    }
    /// The clock source (default `system`).
    pub fn clock_source(mut self, source: impl Into<String>) -> Self {
        self.event.clock_source = source.into();
        self
    }
    /// The event time (default: when the builder was created).
    pub fn time(mut self, time: Timestamp) -> Self {
        self.event.time = time;
        self
    }
    /// Adds a string attribute to `data.attributes`.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.event.attributes.insert(key.into(), value.into());
        self
    }

    /// Checks the required fields and returns the event.
    pub fn build(mut self) -> Result<AuditEvent, EventError> {
        let e = &self.event;
        if e.service.is_empty() {
            return Err(EventError::Missing("service"));
        }
        if !valid_ident(&e.service) {
            return Err(EventError::Invalid(
                "service must be 1..=64 of [A-Za-z0-9._-]",
            ));
        }
        for (name, v) in [
            ("method", &e.method),
            ("principal", &e.principal),
            ("resource.type", &e.resource.resource_type),
            ("resource.name", &e.resource.name),
            ("operation", &e.operation),
            ("clockSource", &e.clock_source),
        ] {
            if v.is_empty() {
                return Err(EventError::Missing(name));
            }
        }
        if e.outcome.status.is_empty() {
            return Err(EventError::Missing("outcome.status"));
        }
        if !self.outcome_set {
            self.event.outcome = if self.event.granted {
                Outcome::success()
            } else {
                Outcome::denied()
            };
        }
        Ok(self.event)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::canonical::write_value;
    use serde_json::Value;

    pub(crate) fn sample(seq: u64) -> AuditEvent {
        let mut e = AuditEvent::builder(EventType::Authorization)
            .service("gateway")
            .method("kafka.Produce")
            .principal("User:alice")
            .auth_mechanism("SASL_SSL/SCRAM-SHA-256")
            .resource("Topic", "payments")
            .operation("Write")
            .client_address("10.0.0.7:53122")
            .client_id("producer-1")
            .correlation_id("42")
            .granted(true)
            .matched_rule("acl:User:alice:Write:Topic:payments")
            .time(Timestamp::from_unix_micros(1_700_000_000_123_456))
            .attribute("partition", "3")
            .build()
            .unwrap();
        e.node_id = "node-1".into();
        e.sequence = seq;
        e
    }

    #[test]
    fn golden_canonical_form() {
        let e = sample(18_446_744_073_709_551_615);
        let s = String::from_utf8(e.to_canonical_json()).unwrap();
        assert_eq!(
            s,
            concat!(
                r#"{"data":{"attributes":{"partition":"3"},"authMechanism":"SASL_SSL/SCRAM-SHA-256","#,
                r#""clientAddress":"10.0.0.7:53122","clientId":"producer-1","clockSource":"system","#,
                r#""correlationId":"42","granted":true,"matchedRule":"acl:User:alice:Write:Topic:payments","#,
                r#""method":"kafka.Produce","nodeId":"node-1","operation":"Write","outcome":{"status":"SUCCESS"},"#,
                r#""principal":"User:alice","resource":{"name":"payments","type":"Topic"},"#,
                r#""sequence":"18446744073709551615","service":"gateway"},"datacontenttype":"application/json","#,
                r#""dataschema":"urn:gatehouse:schema:audit-event:v1","id":"node-1-18446744073709551615","#,
                r#""source":"gatehouse://node-1/gateway","specversion":"1.0","#,
                r#""time":"2023-11-14T22:13:20.123456Z","type":"io.gatehouse.authorization"}"#
            )
        );
    }

    fn variants() -> Vec<AuditEvent> {
        let mut minimal = AuditEvent::builder(EventType::Lifecycle)
            .service("audit")
            .method("audit.Started")
            .principal("System:gatehouse")
            .resource("AuditLog", "node-1")
            .operation("Start")
            .granted(true)
            .build()
            .unwrap();
        minimal.node_id = "n".into();
        let mut odd = sample(7);
        odd.principal = "User:\"quoted\"\\ \n\u{1}é😀 \"sequence\":\"99\"".into();
        odd.attributes.insert("sequence".into(), "12".into());
        odd.attributes.insert("\u{ff01}".into(), "x".into());
        odd.attributes.insert("😀".into(), "y".into());
        odd.outcome = Outcome::status("FAILURE")
            .with_error_code("TOPIC_AUTHORIZATION_FAILED")
            .with_message("denied by rule");
        odd.event_type = EventType::Other("com.example.custom".into());
        vec![sample(0), sample(123), minimal, odd]
    }

    #[test]
    fn hand_written_form_is_canonical_and_round_trips() {
        for e in variants() {
            let bytes = e.to_canonical_json();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let mut generic = Vec::new();
            write_value(&mut generic, &v).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&generic),
                String::from_utf8_lossy(&bytes)
            );
            let back = AuditEvent::from_json(&bytes).unwrap();
            assert_eq!(back, e);
            assert_eq!(back.to_canonical_json(), bytes);
            assert_eq!(canonical_sequence(&bytes), Some(e.sequence));
        }
    }

    #[test]
    fn builder_requires_fields_and_defaults_outcome() {
        let err = AuditEvent::builder(EventType::Acl)
            .service("admin")
            .method("kafka.CreateAcls")
            .resource("Topic", "t")
            .operation("Alter")
            .build()
            .unwrap_err();
        assert!(matches!(err, EventError::Missing("principal")));
        assert!(matches!(
            AuditEvent::builder(EventType::Acl).service("a b").build(),
            Err(EventError::Invalid(_))
        ));
        let e = AuditEvent::builder(EventType::Acl)
            .service("admin")
            .method("kafka.CreateAcls")
            .principal("User:bob")
            .resource("Topic", "t")
            .operation("Alter")
            .build()
            .unwrap();
        assert!(!e.granted);
        assert_eq!(e.outcome.status, "DENIED");
    }

    #[test]
    fn from_json_rejects_inconsistent_envelopes() {
        let good = String::from_utf8(sample(5).to_canonical_json()).unwrap();
        for (from, to) in [
            ("\"id\":\"node-1-5\"", "\"id\":\"node-1-6\""),
            ("gatehouse://node-1/gateway", "gatehouse://node-2/gateway"),
            ("\"specversion\":\"1.0\"", "\"specversion\":\"0.3\""),
            ("\"sequence\":\"5\"", "\"sequence\":\"05\""),
            ("\"granted\":true", "\"granted\":\"true\""),
            ("2023-11-14T22:13:20.123456Z", "yesterday"),
        ] {
            let bad = good.replace(from, to);
            assert_ne!(bad, good);
            assert!(AuditEvent::from_json(bad.as_bytes()).is_err(), "{to}");
        }
    }

    /// A small structural JSON Schema check: `type`, `required`, `properties`,
    /// `additionalProperties: false`, `const`, `enum` and `pattern` anchored digit strings.
    fn check(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => v.is_object(),
                "string" => v.is_string(),
                "boolean" => v.is_boolean(),
                "array" => v.is_array(),
                "integer" => v.is_i64() || v.is_u64(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{path}: expected {t}"));
                return;
            }
        }
        if let Some(c) = schema.get("const")
            && c != v
        {
            errors.push(format!("{path}: expected const {c}"));
        }
        if let Some(Value::Array(options)) = schema.get("enum")
            && !options.contains(v)
        {
            errors.push(format!("{path}: not in enum"));
        }
        if let (Some("^(0|[1-9][0-9]*)$"), Some(s)) =
            (schema.get("pattern").and_then(Value::as_str), v.as_str())
            && parse_u64_str(s).is_none()
        {
            errors.push(format!("{path}: not a decimal string"));
        }
        if let Some(obj) = v.as_object() {
            if let Some(Value::Array(req)) = schema.get("required") {
                for r in req.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(r) {
                        errors.push(format!("{path}: missing required {r}"));
                    }
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, child) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check(s, child, &format!("{path}.{k}"), errors),
                    None => {
                        if let Some(extra) = schema.get("additionalProperties") {
                            if extra == &Value::Bool(false) {
                                errors.push(format!("{path}: unexpected member {k}"));
                            } else if extra.is_object() {
                                check(extra, child, &format!("{path}.{k}"), errors);
                            }
                        }
                    }
                }
            }
        }
    }

    fn schema() -> Value {
        serde_json::from_str(include_str!("../../../docs/audit-event.schema.json")).unwrap()
    }

    #[test]
    fn serialised_events_match_published_schema() {
        let schema = schema();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["$id"], DATA_SCHEMA);
        for e in variants() {
            let v: Value = serde_json::from_slice(&e.to_canonical_json()).unwrap();
            let mut errors = Vec::new();
            check(&schema, &v, "$", &mut errors);
            assert!(errors.is_empty(), "{errors:?}");
        }
        // The check is not vacuous.
        let mut v: Value = serde_json::from_slice(&sample(1).to_canonical_json()).unwrap();
        v["data"].as_object_mut().unwrap().remove("principal");
        v["data"]["sequence"] = Value::from(1);
        v["extra"] = Value::from("x");
        let mut errors = Vec::new();
        check(&schema, &v, "$", &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
