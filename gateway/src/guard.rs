//! The produce path's data guard: records that break their topic's policy never reach the log.
//!
//! For each topic of an authorized Produce request whose governance configs ask for it
//! (`governance.rs`), every record batch is decoded (compressed batches are decompressed to
//! check; the bytes forwarded are the ones the producer sent) and each record's key and value
//! are validated against the schema registry (`gatehouse_registry::validate::Validator`):
//! Confluent's wire format, the id registered under the subject the strategy names, and with
//! `full` the payload decoded against the schema. A partition with any bad record is refused
//! whole (Kafka's batch atomicity) with INVALID_RECORD (87), one `record_errors` entry per bad
//! record and an `error_message` a developer can act on; the other partitions go on. The
//! payload is never quoted: messages name the record index, the schema id, the subject and the
//! reason.
//!
//! Data-quality rules of the record's schema (CEL, see `gatehouse_registry::rules`) run in the
//! validator. With `gatehouse.pan.guard=true`, header values and sides without a schema are
//! scanned as raw bytes; a side validated against a known schema is checked on its decoded
//! fields instead ([`crate::pan::FieldGuard`]: strings and integers, optionally only tagged
//! fields, never allowlisted field paths), falling back to the raw scan when it does not decode.
//! Refused records are copied to the topic's dead-letter topic (or a failed rule's
//! `dlq.topic`) by `dlq.rs`, never when the partition had a PAN refusal or the topic is
//! encrypted.
//!
//! A topic whose creation is still pending (its governance state not stored yet) is refused
//! with the retriable LEADER_NOT_AVAILABLE.

use std::sync::Arc;

use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use gatehouse_protocol::records::{RawBatches, Record};
use gatehouse_registry::validate::{
    FieldScanner, KeyOrValue, ValidationError, ValidationMode, ValidationPolicy, Validator,
};

use crate::authz::ProduceRequestParts;
use crate::dlq::DeadLetter;
use crate::governance::{Governance, TopicPolicy};

/// INVALID_RECORD.
const INVALID_RECORD: i16 = 87;
/// CORRUPT_MESSAGE.
const CORRUPT_MESSAGE: i16 = 2;
/// LEADER_NOT_AVAILABLE (retriable).
const LEADER_NOT_AVAILABLE: i16 = 5;
/// At most this many bad records are listed per partition.
const MAX_RECORD_ERRORS: usize = 100;

/// One refused partition, for the audit trail and the counters.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub topic: String,
    pub partition: i32,
    /// Bad records in the partition.
    pub records: usize,
    /// The first reason (never payload bytes).
    pub reason: String,
    /// Refused records by reason label ([`reason_label`]), for the counters.
    pub reasons: std::collections::BTreeMap<&'static str, u64>,
}

/// The `reason` label of a record the registry's validation refused.
pub(crate) fn reason_label(e: &ValidationError) -> &'static str {
    match e {
        ValidationError::NoSchemaId(_) => "no_schema_id",
        ValidationError::GuidUnsupported(..)
        | ValidationError::UnknownGuid(_)
        | ValidationError::UnknownSchemaId(_) => "unknown_id",
        ValidationError::WrongSubject { .. } | ValidationError::NoRecordName { .. } => {
            "wrong_subject"
        }
        ValidationError::SchemaUnusable { .. } => "schema_unusable",
        ValidationError::PayloadMismatch { .. } => "decode",
        ValidationError::RuleFailed { .. } | ValidationError::RuleInvalid { .. } => "rule",
        ValidationError::FieldRefused { .. } => "pan",
        ValidationError::Store(_) => "registry_unavailable",
    }
}

/// Validates the records of `parts` against their topics' policies, moving refused
/// partitions into `parts.refused`. Returns the rejections; the refused records bound for a
/// dead-letter topic are appended to `dead_letters`.
pub(crate) async fn check_produce(
    parts: &mut ProduceRequestParts,
    governance: &Governance,
    validator: Option<&Validator>,
    pan_key: &[u8; 32],
    dead_letters: &mut Vec<DeadLetter>,
) -> Vec<Rejection> {
    let mut rejections = Vec::new();
    let mut changed = false;
    for topic in &mut parts.request.topic_data {
        let name = topic.name.to_string();
        if governance.is_pending(&name) {
            let refused: Vec<PartitionProduceResponse> = topic
                .partition_data
                .drain(..)
                .map(|p| {
                    partition_error(
                        p.index,
                        LEADER_NOT_AVAILABLE,
                        "the topic is being created; retry".to_string(),
                        Vec::new(),
                    )
                })
                .collect();
            push_refused(&mut parts.refused, &topic.name, refused);
            changed = true;
            continue;
        }
        let Some(policy) = governance.policy(&name) else {
            continue;
        };
        if policy.value.is_none() && policy.key.is_none() && !policy.pan_guard {
            continue;
        }
        let mut refused = Vec::new();
        let mut kept = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data.drain(..) {
            let Some(records) = p.records.clone() else {
                kept.push(p);
                continue;
            };
            match check_partition(
                &name,
                p.index,
                &records,
                &policy,
                validator,
                pan_key,
                dead_letters,
            )
            .await
            {
                Ok(()) => kept.push(p),
                Err(PartitionRefusal {
                    code,
                    message,
                    record_errors,
                    reasons,
                }) => {
                    rejections.push(Rejection {
                        topic: name.clone(),
                        partition: p.index,
                        records: record_errors.len().max(1),
                        reason: message.clone(),
                        reasons,
                    });
                    refused.push(partition_error(p.index, code, message, record_errors));
                }
            }
        }
        topic.partition_data = kept;
        if !refused.is_empty() {
            changed = true;
            push_refused(&mut parts.refused, &topic.name, refused);
        }
    }
    if changed {
        parts
            .request
            .topic_data
            .retain(|t| !t.partition_data.is_empty());
        parts.modified = true;
    }
    rejections
}

fn push_refused(
    refused: &mut Vec<TopicProduceResponse>,
    name: &gatehouse_protocol::messages::TopicName,
    partitions: Vec<PartitionProduceResponse>,
) {
    match refused.iter_mut().find(|t| &t.name == name) {
        Some(t) => t.partition_responses.extend(partitions),
        None => refused.push(
            TopicProduceResponse::default()
                .with_name(name.clone())
                .with_partition_responses(partitions),
        ),
    }
}

fn partition_error(
    index: i32,
    code: i16,
    message: String,
    record_errors: Vec<BatchIndexAndErrorMessage>,
) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_record_errors(record_errors)
        .with_error_message(Some(StrBytes::from_string(message)))
}

/// The PAN guard's message for a number found in `what` (never the number itself).
fn pan_message(what: &str, f: &crate::pan::Finding, key: &[u8; 32]) -> String {
    format!(
        "{what}: contains what looks like a plaintext card number (PAN, keyed hash {}); \
         tokenize or encrypt it before producing",
        f.keyed_hash(key)
    )
}

/// The raw-byte PAN guard over a record's header values.
fn pan_check_headers(
    rec: &Record,
    allowlist: &std::collections::HashSet<String>,
    key: &[u8; 32],
) -> Option<String> {
    for h in &rec.headers {
        if let Some(f) = h
            .value
            .as_deref()
            .and_then(|v| crate::pan::scan(v, allowlist))
        {
            return Some(pan_message(
                &format!("header {}", String::from_utf8_lossy(&h.key)),
                &f,
                key,
            ));
        }
    }
    None
}

/// Whether any part of a record holds a PAN in its raw bytes (dead letters are never sent then).
fn raw_pan_anywhere(rec: &Record, allowlist: &std::collections::HashSet<String>) -> bool {
    rec.key
        .iter()
        .chain(rec.value.iter())
        .chain(rec.headers.iter().filter_map(|h| h.value.as_ref()))
        .any(|b| crate::pan::scan(b, allowlist).is_some())
}

/// One side of a record to validate: which, its bytes, its policy.
type Side<'a> = (KeyOrValue, Option<&'a [u8]>, Option<&'a ValidationPolicy>);

struct PartitionRefusal {
    code: i16,
    message: String,
    record_errors: Vec<BatchIndexAndErrorMessage>,
    /// Refused records by reason label.
    reasons: std::collections::BTreeMap<&'static str, u64>,
}

impl PartitionRefusal {
    /// A refusal of the whole partition for one reason (counted once).
    fn whole(code: i16, message: String, reason: &'static str) -> Self {
        Self {
            code,
            message,
            record_errors: Vec::new(),
            reasons: [(reason, 1)].into(),
        }
    }
}

/// Why one record was refused.
struct BadRecord {
    message: String,
    schema_id: Option<i32>,
    /// The dead-letter topic a failed rule names.
    rule_dlq: Option<String>,
    /// Refused by the PAN guard: never copied anywhere.
    pan: bool,
    /// The reason label for the counters.
    reason: &'static str,
}

#[allow(clippy::too_many_arguments)]
async fn check_partition(
    topic: &str,
    partition: i32,
    records: &bytes::Bytes,
    policy: &Arc<TopicPolicy>,
    validator: Option<&Validator>,
    pan_key: &[u8; 32],
    dead_letters: &mut Vec<DeadLetter>,
) -> Result<(), PartitionRefusal> {
    let needs_registry = policy.value.is_some() || policy.key.is_some();
    if needs_registry && validator.is_none() {
        return Err(PartitionRefusal::whole(
            INVALID_RECORD,
            format!("topic {topic} requires schema validation but no schema registry is available"),
            "registry_unavailable",
        ));
    };
    let mut index: i32 = 0;
    let mut errors = Vec::new();
    let mut first: Option<String> = None;
    let mut bad = 0usize;
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut any_pan = false;
    let mut reasons: std::collections::BTreeMap<&'static str, u64> =
        std::collections::BTreeMap::new();
    let field_guard = crate::pan::FieldGuard {
        allowlist: &policy.pan_allowlist,
        tags: policy.pan_tags.as_ref(),
        exempt: &policy.pan_field_allowlist,
        key: pan_key,
    };
    let scanner: Option<&dyn FieldScanner> = if policy.pan_guard {
        Some(&field_guard)
    } else {
        None
    };
    // Schema-id validation depends only on (key or value, the 5-byte wire prefix) when no
    // header carries an id and the schema has no rules: decide each distinct prefix once per
    // batch.
    let mut validated: std::collections::HashSet<(KeyOrValue, [u8; 5])> =
        std::collections::HashSet::new();
    for batch in RawBatches::new(records.clone()) {
        let batch = batch.map_err(|e| {
            PartitionRefusal::whole(
                CORRUPT_MESSAGE,
                format!("record batch does not decode: {e}"),
                "corrupt_batch",
            )
        })?;
        if batch.header().is_control() {
            continue;
        }
        let recs = batch.records().map_err(|e| {
            PartitionRefusal::whole(
                CORRUPT_MESSAGE,
                format!("records do not decode: {e}"),
                "corrupt_batch",
            )
        })?;
        for rec in recs {
            let refused = check_record(
                topic,
                &rec,
                policy,
                validator,
                scanner,
                pan_key,
                &mut validated,
            )
            .await;
            if let Some(b) = refused {
                let message = format!("record {index} {}", b.message);
                bad += 1;
                any_pan |= b.pan;
                *reasons.entry(b.reason).or_default() += 1;
                if errors.len() < MAX_RECORD_ERRORS {
                    errors.push(
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(index)
                            .with_batch_index_error_message(Some(StrBytes::from_string(
                                message.clone(),
                            ))),
                    );
                }
                let target = b.rule_dlq.or_else(|| policy.dead_letter_topic.clone());
                if let Some(target) = target
                    && !b.pan
                    && !policy.encryption
                    && !(policy.pan_guard && raw_pan_anywhere(&rec, &policy.pan_allowlist))
                {
                    letters.push(DeadLetter {
                        dlq_topic: target,
                        source_topic: topic.to_string(),
                        partition,
                        key: rec.key.clone(),
                        value: rec.value.clone(),
                        headers: rec.headers.clone(),
                        error: message.clone(),
                        schema_id: b.schema_id,
                    });
                }
                first.get_or_insert(message);
            }
            index = index.saturating_add(1);
        }
    }
    match first {
        None => Ok(()),
        Some(first) => {
            // Card data is never copied: a partition with a PAN refusal sends no dead letter.
            if !any_pan {
                dead_letters.append(&mut letters);
            }
            Err(PartitionRefusal {
                code: INVALID_RECORD,
                message: if bad > 1 {
                    format!(
                        "{first} (and {} more bad records; the batch was not written)",
                        bad - 1
                    )
                } else {
                    format!("{first} (the batch was not written)")
                },
                record_errors: errors,
                reasons,
            })
        }
    }
}

/// Checks one record: the PAN guard on its headers, then each side against its validation
/// policy (with the decoded-field PAN guard when a schema is known) or the raw PAN guard.
async fn check_record(
    topic: &str,
    rec: &Record,
    policy: &TopicPolicy,
    validator: Option<&Validator>,
    scanner: Option<&dyn FieldScanner>,
    pan_key: &[u8; 32],
    validated: &mut std::collections::HashSet<(KeyOrValue, [u8; 5])>,
) -> Option<BadRecord> {
    let pan_bad = |message: String| BadRecord {
        message,
        schema_id: None,
        rule_dlq: None,
        pan: true,
        reason: "pan",
    };
    if policy.pan_guard
        && let Some(m) = pan_check_headers(rec, &policy.pan_allowlist, pan_key)
    {
        return Some(pan_bad(m));
    }
    let headers: Vec<(&str, &[u8])> = rec
        .headers
        .iter()
        .filter_map(|h| {
            let k = std::str::from_utf8(&h.key).ok()?;
            Some((k, h.value.as_deref().unwrap_or_default()))
        })
        .collect();
    let sides: [Side<'_>; 2] = [
        (KeyOrValue::Key, rec.key.as_deref(), policy.key.as_ref()),
        (
            KeyOrValue::Value,
            rec.value.as_deref(),
            policy.value.as_ref(),
        ),
    ];
    // The raw PAN scan of one side; the message names the part, never the number.
    let raw_scan = |kind: KeyOrValue, bytes: &[u8]| {
        crate::pan::scan(bytes, &policy.pan_allowlist)
            .map(|f| pan_message(kind.as_str(), &f, pan_key))
    };
    for (kind, bytes, side_policy) in sides {
        // Null keys and tombstones carry no schema and no card number.
        let Some(bytes) = bytes else {
            continue;
        };
        let (Some(side_policy), Some(validator)) = (side_policy, validator) else {
            if policy.pan_guard
                && let Some(m) = raw_scan(kind, bytes)
            {
                return Some(pan_bad(m));
            }
            continue;
        };
        let prefix = (side_policy.mode == ValidationMode::SchemaId
            && !headers.iter().any(|(k, _)| k.ends_with("_schema_id"))
            && bytes.len() >= 5
            && bytes[0] == 0)
            .then(|| {
                let mut p = [0u8; 5];
                p.copy_from_slice(&bytes[..5]);
                (kind, p)
            });
        if prefix.is_some_and(|p| validated.contains(&p)) {
            continue;
        }
        match validator
            .validate_with(topic, kind, bytes, &headers, side_policy, scanner)
            .await
        {
            Ok(checked) => {
                if let Some(p) = prefix
                    && !checked.content_checked
                {
                    validated.insert(p);
                }
                if policy.pan_guard
                    && !checked.fields_scanned
                    && let Some(m) = raw_scan(kind, bytes)
                {
                    return Some(pan_bad(m));
                }
            }
            Err(e) => {
                let pan = matches!(e, ValidationError::FieldRefused { .. });
                return Some(BadRecord {
                    message: format!("{}: {e}", kind.as_str()),
                    schema_id: e.schema_id(),
                    rule_dlq: e.rule_dlq_topic().map(str::to_string),
                    pan,
                    reason: reason_label(&e),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use gatehouse_protocol::records::BatchBuilder;
    use gatehouse_registry::api::{MemoryStore, SchemaRequest, SchemaStore};

    use super::*;

    const PAY: &str = r#"{"type":"record","name":"Pay","namespace":"shop","fields":[{"name":"order_ref","type":"long"},{"name":"card","type":"long","confluent:tags":["PAN"]},{"name":"amount","type":"long"}]}"#;
    const NOTE: &str =
        r#"{"title":"Note","type":"object","properties":{"text":{"type":"string"}}}"#;
    const VISA: i64 = 4111111111111111;

    async fn register(
        store: &MemoryStore,
        subject: &str,
        ty: &str,
        schema: &str,
        rules: Option<&str>,
    ) -> i32 {
        let req = SchemaRequest {
            schema: Some(schema.to_string()),
            schema_type: Some(ty.to_string()),
            rule_set: rules.map(|r| serde_json::from_str(r).unwrap()),
            ..Default::default()
        };
        store.register(subject, req, false).await.unwrap().id
    }

    fn zigzag(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn pay(id: i32, order_ref: i64, card: i64, amount: i64) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&id.to_be_bytes());
        for x in [order_ref, card, amount] {
            zigzag(&mut v, x);
        }
        v
    }

    fn batch(values: &[Vec<u8>]) -> bytes::Bytes {
        let mut b = BatchBuilder::new();
        for v in values {
            b.push(Some(b"k"), Some(v.as_slice()), &[], 0).unwrap();
        }
        b.build().unwrap()
    }

    fn policy(configs: &[(&str, &str)]) -> Arc<TopicPolicy> {
        let c: BTreeMap<String, String> = configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(TopicPolicy::from_configs(&c))
    }

    async fn check(
        policy: &Arc<TopicPolicy>,
        v: &Validator,
        values: &[Vec<u8>],
    ) -> (Result<(), String>, Vec<DeadLetter>) {
        let mut letters = Vec::new();
        let r = check_partition(
            "pay",
            0,
            &batch(values),
            policy,
            Some(v),
            &[3; 32],
            &mut letters,
        )
        .await
        .map_err(|r| r.message);
        (r, letters)
    }

    #[tokio::test]
    async fn decoded_pan_guard_tags_and_field_allowlist() {
        let store = Arc::new(MemoryStore::new());
        let id = register(&store, "pay-value", "AVRO", PAY, None).await;
        let nid = register(&store, "notes-value", "JSON", NOTE, None).await;
        let v = Validator::new(store);
        let guarded = policy(&[
            ("gatehouse.value.schema.validation", "schema-id"),
            ("gatehouse.pan.guard", "true"),
            ("gatehouse.dead.letter.topic", "pay-dlq"),
        ]);
        // A PAN in an Avro long: found in decoded form, never echoed, never dead-lettered.
        let (r, letters) = check(&guarded, &v, &[pay(id, 1, 7, 5), pay(id, 2, VISA, 5)]).await;
        let msg = r.unwrap_err();
        assert!(
            msg.starts_with(&format!("record 1 value: field 'card' of schema {id} (pay-value) contains what looks like a plaintext card number (PAN, keyed hash")),
            "{msg}"
        );
        assert!(!msg.contains("4111"), "{msg}");
        assert!(letters.is_empty(), "card data is never copied");
        // Ordinary longs pass.
        let (r, _) = check(&guarded, &v, &[pay(id, 1732550400000, 7, 5)]).await;
        assert_eq!(r, Ok(()));
        // Tags: only the PAN-tagged field is checked; the allowlisted path is exempt.
        let tagged = policy(&[
            ("gatehouse.value.schema.validation", "full"),
            ("gatehouse.pan.guard", "true"),
            ("gatehouse.pan.guard.tags", "PAN"),
        ]);
        assert_eq!(check(&tagged, &v, &[pay(id, VISA, 7, 5)]).await.0, Ok(()));
        assert!(check(&tagged, &v, &[pay(id, 1, VISA, 5)]).await.0.is_err());
        let exempt = policy(&[
            ("gatehouse.value.schema.validation", "full"),
            ("gatehouse.pan.guard", "true"),
            ("gatehouse.pan.guard.allowlist.fields", "order_ref"),
        ]);
        assert_eq!(check(&exempt, &v, &[pay(id, VISA, 7, 5)]).await.0, Ok(()));
        assert!(check(&exempt, &v, &[pay(id, 1, 0, VISA)]).await.0.is_err());
        // A JSON string field.
        let mut note = vec![0u8];
        note.extend_from_slice(&nid.to_be_bytes());
        note.extend_from_slice(br#"{"text":"card 4111-1111-1111-1111"}"#);
        let notes = policy(&[
            ("gatehouse.value.schema.validation", "full"),
            ("gatehouse.pan.guard", "true"),
        ]);
        let mut letters = Vec::new();
        let r = check_partition(
            "notes",
            0,
            &batch(&[note]),
            &notes,
            Some(&v),
            &[3; 32],
            &mut letters,
        )
        .await;
        let msg = r.err().map(|r| r.message).unwrap_or_default();
        assert!(msg.contains("field 'text' of schema"), "{msg}");
    }

    #[tokio::test]
    async fn rule_failures_become_dead_letters() {
        let store = Arc::new(MemoryStore::new());
        let rules = r#"{"domainRules":[{"name":"positive_amount","kind":"CONDITION","mode":"WRITE","type":"CEL","expr":"message.amount > 0"}]}"#;
        let id = register(&store, "pay-value", "AVRO", PAY, Some(rules)).await;
        let v = Validator::new(store);
        let p = policy(&[
            ("confluent.value.schema.validation", "true"),
            ("gatehouse.dead.letter.topic", "pay-dlq"),
        ]);
        let (r, letters) = check(&p, &v, &[pay(id, 1, 2, 5), pay(id, 1, 2, -5)]).await;
        let msg = r.unwrap_err();
        assert!(
            msg.contains(&format!("record fails data-quality rule 'positive_amount' (CEL: message.amount > 0) of schema {id} (pay-value)")),
            "{msg}"
        );
        assert_eq!(letters.len(), 1, "only the bad record");
        let l = &letters[0];
        assert_eq!(
            (
                l.dlq_topic.as_str(),
                l.source_topic.as_str(),
                l.partition,
                l.schema_id
            ),
            ("pay-dlq", "pay", 0, Some(id))
        );
        assert_eq!(l.value.as_deref(), Some(pay(id, 1, 2, -5).as_slice()));
        assert!(
            l.error.starts_with("record 1 value: record fails"),
            "{}",
            l.error
        );
        // Without a dead-letter topic nothing is collected.
        let p = policy(&[("confluent.value.schema.validation", "true")]);
        let (r, letters) = check(&p, &v, &[pay(id, 1, 2, -5)]).await;
        assert!(r.is_err() && letters.is_empty());
    }
    #[tokio::test]
    async fn refused_records_are_counted_by_reason() {
        let store = Arc::new(MemoryStore::new());
        let rules = r#"{"domainRules":[{"name":"positive_amount","kind":"CONDITION","mode":"WRITE","type":"CEL","expr":"message.amount > 0"}]}"#;
        let id = register(&store, "pay-value", "AVRO", PAY, Some(rules)).await;
        let nid = register(&store, "notes-value", "JSON", NOTE, None).await;
        let v = Validator::new(store);
        let p = policy(&[
            ("confluent.value.schema.validation", "true"),
            ("gatehouse.pan.guard", "true"),
        ]);
        let mut wrong = pay(id, 1, 2, 5);
        wrong[1..5].copy_from_slice(&nid.to_be_bytes());
        let values = [
            pay(id, 1, 2, 5),
            b"plain text".to_vec(),
            pay(999, 1, 2, 5),
            wrong,
            vec![0, 0, 0, 0, id as u8, 0xff],
            pay(id, 1, 2, -5),
            pay(id, 1, VISA, 5),
        ];
        let mut letters = Vec::new();
        let refusal = check_partition(
            "pay",
            0,
            &batch(&values),
            &p,
            Some(&v),
            &[3; 32],
            &mut letters,
        )
        .await
        .err()
        .unwrap();
        let expected: std::collections::BTreeMap<&str, u64> = [
            ("no_schema_id", 1),
            ("unknown_id", 1),
            ("wrong_subject", 1),
            ("decode", 1),
            ("rule", 1),
            ("pan", 1),
        ]
        .into();
        assert_eq!(refusal.reasons, expected, "{}", refusal.message);
        assert_eq!(refusal.record_errors.len(), 6);
    }
}
