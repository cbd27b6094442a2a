//! Gateway counters: connections (per listener), authentications (and failures by
//! mechanism), requests by API, responses carrying a Kafka error code (per listener, API and
//! error), produce and fetch bytes, denials, records refused by the data guard by reason,
//! encryption and decryption work, and every kind of refusal, so an operator can see what
//! flows and what was turned away and why (exported on `/metrics` by the binary).
//!
//! Labels are bounded: listener kinds, API keys, Kafka error names, fixed reason strings and
//! topic names (never principals or record data).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gatehouse_protocol::header::{decode_body, split_response};
use gatehouse_protocol::kafka_protocol::error::ResponseError;
use gatehouse_protocol::kafka_protocol::protocol::{Decodable, HeaderVersion};
use gatehouse_protocol::messages::{
    ApiKey, CreateTopicsResponse, DeleteTopicsResponse, FetchResponse, FindCoordinatorResponse,
    HeartbeatResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse,
    ListOffsetsResponse, MetadataResponse, OffsetCommitResponse, OffsetFetchResponse,
    ProduceResponse, SyncGroupResponse,
};

use crate::ListenerKind;

/// The label value of a listener kind.
pub(crate) fn listener_label(kind: ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Tls => "tls",
        ListenerKind::Plain => "plain",
    }
}

/// Per-listener connection counters.
#[derive(Default)]
struct ListenerCounters {
    accepted: AtomicU64,
    active: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

/// Encryption and decryption work of the gateway (`crypt.rs`).
#[derive(Default)]
pub(crate) struct CryptCounters {
    encrypted_records: AtomicU64,
    encrypted_batches: AtomicU64,
    encryption_failures: AtomicU64,
    decrypted_records: AtomicU64,
    decrypted_batches: AtomicU64,
    decryption_failures: AtomicU64,
    decryption_withheld: AtomicU64,
}

impl CryptCounters {
    /// `records` records in `batches` batches were encrypted.
    pub fn encrypted(&self, batches: u64, records: u64) {
        self.encrypted_batches.fetch_add(batches, Ordering::Relaxed);
        self.encrypted_records.fetch_add(records, Ordering::Relaxed);
    }

    /// A partition could not be encrypted (it was refused).
    pub fn encryption_failed(&self) {
        self.encryption_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// `records` records in `batches` batches were decrypted.
    pub fn decrypted(&self, batches: u64, records: u64) {
        self.decrypted_batches.fetch_add(batches, Ordering::Relaxed);
        self.decrypted_records.fetch_add(records, Ordering::Relaxed);
    }

    /// A fetched partition could not be decrypted (answered with an error).
    pub fn decryption_failed(&self) {
        self.decryption_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A fetched partition stayed ciphertext: the reader is not a `plaintext-reader`.
    pub fn decryption_withheld(&self) {
        self.decryption_withheld.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CryptoSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CryptoSnapshot {
            encrypted_records: l(&self.encrypted_records),
            encrypted_batches: l(&self.encrypted_batches),
            encryption_failures: l(&self.encryption_failures),
            decrypted_records: l(&self.decrypted_records),
            decrypted_batches: l(&self.decrypted_batches),
            decryption_failures: l(&self.decryption_failures),
            decryption_withheld: l(&self.decryption_withheld),
        }
    }
}

/// Live counters.
#[derive(Default)]
pub(crate) struct Metrics {
    accepted: AtomicU64,
    active: AtomicU64,
    authenticated: AtomicU64,
    denied: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    rejected: Mutex<BTreeMap<String, u64>>,
    auth_failed: Mutex<BTreeMap<String, u64>>,
    /// Requests by API key (keys beyond the table are counted in the last slot).
    requests: ApiCounters,
    produce_bytes: AtomicU64,
    fetch_bytes: AtomicU64,
    /// Index 0: TLS, 1: plain.
    listeners: [ListenerCounters; 2],
    /// Responses with a non-zero error code: (listener, API key, error code) → count.
    errors: Mutex<BTreeMap<(&'static str, i16, i16), u64>>,
    /// Records refused by the data guard, by reason.
    validation: Mutex<BTreeMap<&'static str, u64>>,
    crypt: Arc<CryptCounters>,
}

/// API keys counted one by one (Kafka's keys are below 100).
const API_SLOTS: usize = 100;

/// One counter per API key.
struct ApiCounters([AtomicU64; API_SLOTS]);

impl Default for ApiCounters {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// A copy of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Successful authentications.
    pub authenticated: u64,
    /// Authorization denials (one per denied resource).
    pub denied: u64,
    /// Refusals by reason (`tls_handshake`, `authentication_failed`, `connection_limit`, ...).
    pub refused: BTreeMap<String, u64>,
    /// Records rejected by a topic's policy (poison pills), per topic.
    pub rejected_records: BTreeMap<String, u64>,
    /// Failed authentications by SASL mechanism.
    pub authentication_failures: BTreeMap<String, u64>,
    /// Requests by API key (only keys seen).
    pub requests: BTreeMap<i16, u64>,
    /// Bytes of Produce requests from clients.
    pub produce_bytes: u64,
    /// Bytes of Fetch responses to clients.
    pub fetch_bytes: u64,
    /// Connection counters by listener (`tls`, `plain`).
    pub listeners: BTreeMap<String, ListenerSnapshot>,
    /// Error codes in responses sent to clients, per (listener, API key, error code): one per
    /// partition, topic or group entry that carries the code.
    pub response_errors: BTreeMap<(String, i16, i16), u64>,
    /// Records refused by the data guard, by reason (`no_schema_id`, `unknown_id`,
    /// `wrong_subject`, `decode`, `rule`, `pan`, ...).
    pub validation_rejections: BTreeMap<String, u64>,
    /// Encryption and decryption work.
    pub crypto: CryptoSnapshot,
}

/// One listener's connection counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerSnapshot {
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections (or their requests) refused, by reason.
    pub refused: BTreeMap<String, u64>,
}

/// Encryption at rest, as counted by the gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CryptoSnapshot {
    /// Records whose fields were encrypted on produce.
    pub encrypted_records: u64,
    /// Record batches encrypted on produce (one DEK reservation each).
    pub encrypted_batches: u64,
    /// Produce partitions refused because they could not be encrypted.
    pub encryption_failures: u64,
    /// Records decrypted on fetch.
    pub decrypted_records: u64,
    /// Record batches decrypted on fetch.
    pub decrypted_batches: u64,
    /// Fetched partitions answered with an error because they could not be decrypted.
    pub decryption_failures: u64,
    /// Fetched partitions left as ciphertext (the reader is not a `plaintext-reader`).
    pub decryption_withheld: u64,
}

/// The `error` label of a Kafka error code: its name (`InvalidRecord`), or the number when
/// this build does not know it.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "None".to_string(),
        Some(ResponseError::Unknown(c)) => c.to_string(),
        Some(e) => e.to_string(),
    }
}

fn decode<M: Decodable + HeaderVersion>(framed: &Bytes, version: i16) -> Option<M> {
    let frame = framed.get(4..).map(|_| framed.slice(4..))?;
    let (_, body) = split_response(frame, M::header_version(version)).ok()?;
    decode_body(body, version).ok()
}

/// The non-zero error codes of a size-prefixed response frame (top level and per topic,
/// partition, group or member), for the APIs whose answers carry them. Other APIs, and
/// frames that do not decode, give none.
pub(crate) fn response_error_codes(api_key: i16, version: i16, framed: &Bytes) -> Vec<i16> {
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Vec::new();
    };
    let codes: Vec<i16> = match key {
        ApiKey::Produce => decode::<ProduceResponse>(framed, version)
            .map(|r| {
                r.responses
                    .iter()
                    .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
                    .collect()
            })
            .unwrap_or_default(),
        ApiKey::Fetch => decode::<FetchResponse>(framed, version)
            .map(|r| {
                std::iter::once(r.error_code)
                    .chain(
                        r.responses
                            .iter()
                            .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                    )
                    .collect()
            })
            .unwrap_or_default(),
        ApiKey::ListOffsets => decode::<ListOffsetsResponse>(framed, version)
            .map(|r| {
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                    .collect()
            })
            .unwrap_or_default(),
        ApiKey::Metadata => decode::<MetadataResponse>(framed, version)
            .map(|r| {
                std::iter::once(r.error_code)
                    .chain(r.topics.iter().map(|t| t.error_code))
                    .collect()
            })
            .unwrap_or_default(),
        ApiKey::OffsetCommit => decode::<OffsetCommitResponse>(framed, version)
            .map(|r| {
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                    .collect()
            })
            .unwrap_or_default(),
        ApiKey::OffsetFetch => decode::<OffsetFetchResponse>(framed, version)
            .map(|r| {
                let mut v = vec![r.error_code];
                v.extend(
                    r.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                );
                for g in &r.groups {
                    v.push(g.error_code);
                    v.extend(
                        g.topics
                            .iter()
                            .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                    );
                }
                v
            })
            .unwrap_or_default(),
        ApiKey::FindCoordinator => decode::<FindCoordinatorResponse>(framed, version)
            .map(|r| {
                std::iter::once(r.error_code)
                    .chain(r.coordinators.iter().map(|c| c.error_code))
                    .collect()
            })
            .unwrap_or_default(),
        ApiKey::JoinGroup => decode::<JoinGroupResponse>(framed, version)
            .map(|r| vec![r.error_code])
            .unwrap_or_default(),
        ApiKey::SyncGroup => decode::<SyncGroupResponse>(framed, version)
            .map(|r| vec![r.error_code])
            .unwrap_or_default(),
        ApiKey::Heartbeat => decode::<HeartbeatResponse>(framed, version)
            .map(|r| vec![r.error_code])
            .unwrap_or_default(),
        ApiKey::LeaveGroup => decode::<LeaveGroupResponse>(framed, version)
            .map(|r| {
                std::iter::once(r.error_code)
                    .chain(r.members.iter().map(|m| m.error_code))
                    .collect()
            })
            .unwrap_or_default(),
        ApiKey::InitProducerId => decode::<InitProducerIdResponse>(framed, version)
            .map(|r| vec![r.error_code])
            .unwrap_or_default(),
        ApiKey::CreateTopics => decode::<CreateTopicsResponse>(framed, version)
            .map(|r| r.topics.iter().map(|t| t.error_code).collect())
            .unwrap_or_default(),
        ApiKey::DeleteTopics => decode::<DeleteTopicsResponse>(framed, version)
            .map(|r| r.responses.iter().map(|t| t.error_code).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    codes.into_iter().filter(|c| *c != 0).collect()
}

impl Metrics {
    fn listener(&self, kind: ListenerKind) -> &ListenerCounters {
        match kind {
            ListenerKind::Tls => &self.listeners[0],
            ListenerKind::Plain => &self.listeners[1],
        }
    }

    pub fn accepted(&self, kind: ListenerKind) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        let l = self.listener(kind);
        l.accepted.fetch_add(1, Ordering::Relaxed);
        l.active.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self, kind: ListenerKind) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.listener(kind).active.fetch_sub(1, Ordering::Relaxed);
    }

    /// A refusal on a listener: counted in the totals by reason and in the listener's.
    pub fn refused_on(&self, kind: ListenerKind, reason: &'static str) {
        self.refused(reason);
        let mut map = self
            .listener(kind)
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *map.entry(reason).or_default() += 1;
    }

    /// Counts the error codes of a response sent to a client (size-prefixed frame).
    pub fn response(&self, kind: ListenerKind, api_key: i16, version: i16, framed: &Bytes) {
        let codes = response_error_codes(api_key, version, framed);
        if codes.is_empty() {
            return;
        }
        let mut map = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        for code in codes {
            *map.entry((listener_label(kind), api_key, code))
                .or_default() += 1;
        }
    }

    /// Records refused by the data guard, by reason.
    pub fn validation_rejected(&self, reasons: &BTreeMap<&'static str, u64>) {
        if reasons.is_empty() {
            return;
        }
        let mut map = self.validation.lock().unwrap_or_else(|p| p.into_inner());
        for (reason, n) in reasons {
            *map.entry(reason).or_default() += n;
        }
    }

    /// The encryption counters (shared with fetch tasks).
    pub fn crypt(&self) -> &Arc<CryptCounters> {
        &self.crypt
    }

    pub fn authenticated(&self) {
        self.authenticated.fetch_add(1, Ordering::Relaxed);
    }

    pub fn denied(&self, n: usize) {
        self.denied.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn authentication_failed(&self, mechanism: &str) {
        let mut map = self.auth_failed.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(mechanism.to_string()).or_default() += 1;
    }

    pub fn request(&self, api_key: i16) {
        let slot = usize::try_from(api_key)
            .unwrap_or(API_SLOTS - 1)
            .min(API_SLOTS - 1);
        self.requests.0[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub fn produce_bytes(&self, n: usize) {
        self.produce_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn fetch_bytes(&self, n: usize) {
        self.fetch_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn refused(&self, reason: &'static str) {
        let mut map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(reason).or_default() += 1;
    }

    pub fn rejected(&self, topic: &str, records: usize) {
        let mut map = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(topic.to_string()).or_default() += records as u64;
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        MetricsSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            authenticated: self.authenticated.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            refused,
            rejected_records: self
                .rejected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            authentication_failures: self
                .auth_failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            requests: self
                .requests
                .0
                .iter()
                .enumerate()
                .filter_map(|(k, v)| {
                    let v = v.load(Ordering::Relaxed);
                    (v > 0).then(|| (i16::try_from(k).unwrap_or(i16::MAX), v))
                })
                .collect(),
            produce_bytes: self.produce_bytes.load(Ordering::Relaxed),
            fetch_bytes: self.fetch_bytes.load(Ordering::Relaxed),
            listeners: [ListenerKind::Tls, ListenerKind::Plain]
                .into_iter()
                .map(|kind| {
                    let l = self.listener(kind);
                    let refused = l
                        .refused
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), *v))
                        .collect();
                    (
                        listener_label(kind).to_string(),
                        ListenerSnapshot {
                            accepted: l.accepted.load(Ordering::Relaxed),
                            active: l.active.load(Ordering::Relaxed),
                            refused,
                        },
                    )
                })
                .collect(),
            response_errors: self
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|((l, api, code), v)| (((*l).to_string(), *api, *code), *v))
                .collect(),
            validation_rejections: self
                .validation
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            crypto: self.crypt.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use gatehouse_protocol::header::encode_response;
    use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
    use gatehouse_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use gatehouse_protocol::messages::{HeartbeatResponse, TopicName};

    use super::*;

    #[test]
    fn listeners_are_counted_apart() {
        let m = Metrics::default();
        m.accepted(ListenerKind::Tls);
        m.accepted(ListenerKind::Plain);
        m.accepted(ListenerKind::Plain);
        m.closed(ListenerKind::Plain);
        m.refused_on(ListenerKind::Tls, "tls_handshake");
        let s = m.snapshot();
        assert_eq!((s.accepted, s.active), (3, 2));
        assert_eq!(s.listeners["tls"].accepted, 1);
        assert_eq!(s.listeners["tls"].active, 1);
        assert_eq!(s.listeners["tls"].refused["tls_handshake"], 1);
        assert_eq!(s.listeners["plain"].accepted, 2);
        assert_eq!(s.listeners["plain"].active, 1);
        assert!(s.listeners["plain"].refused.is_empty());
        assert_eq!(s.refused["tls_handshake"], 1);
    }

    #[test]
    fn response_errors_are_counted_per_partition() {
        let partition = |index: i32, code: i16| {
            PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(code)
        };
        let resp = ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_name(TopicName::from(StrBytes::from_static_str("t")))
                .with_partition_responses(vec![
                    partition(0, 0),
                    partition(1, 87),
                    partition(2, 87),
                ]),
        ]);
        let m = Metrics::default();
        for version in [3, 9, 12] {
            let framed = encode_response(7, version, &resp).unwrap();
            assert_eq!(response_error_codes(0, version, &framed), vec![87, 87]);
        }
        let framed = encode_response(7, 9, &resp).unwrap();
        m.response(ListenerKind::Plain, 0, 9, &framed);
        let ok = encode_response(8, 4, &HeartbeatResponse::default()).unwrap();
        m.response(ListenerKind::Tls, ApiKey::Heartbeat as i16, 4, &ok);
        let s = m.snapshot();
        assert_eq!(
            s.response_errors,
            [(("plain".to_string(), 0, 87), 2)].into()
        );
        // Garbage and unknown APIs count nothing.
        assert!(response_error_codes(0, 9, &Bytes::from_static(b"\0\0")).is_empty());
        assert!(response_error_codes(999, 0, &framed).is_empty());
    }

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(87), "InvalidRecord");
        assert_eq!(error_name(29), "TopicAuthorizationFailed");
        assert_eq!(error_name(-1), "UnknownServerError");
        assert_eq!(error_name(4242), "4242");
    }

    #[test]
    fn validation_and_crypto_counters() {
        let m = Metrics::default();
        m.validation_rejected(&[("pan", 2), ("rule", 1)].into());
        m.validation_rejected(&[("pan", 1)].into());
        m.crypt().encrypted(2, 10);
        m.crypt().decrypted(1, 4);
        m.crypt().decryption_failed();
        m.crypt().decryption_withheld();
        m.crypt().encryption_failed();
        let s = m.snapshot();
        assert_eq!(
            s.validation_rejections,
            [("pan".to_string(), 3), ("rule".to_string(), 1)].into()
        );
        assert_eq!(
            s.crypto,
            CryptoSnapshot {
                encrypted_records: 10,
                encrypted_batches: 2,
                encryption_failures: 1,
                decrypted_records: 4,
                decrypted_batches: 1,
                decryption_failures: 1,
                decryption_withheld: 1,
            }
        );
    }
}
