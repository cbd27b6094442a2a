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
//! A topic whose creation is still pending (its governance state not stored yet) is refused
//! with the retriable LEADER_NOT_AVAILABLE.

use std::sync::Arc;

use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use gatehouse_protocol::records::RawBatches;
use gatehouse_registry::validate::{KeyOrValue, ValidationMode, ValidationPolicy, Validator};

use crate::authz::ProduceRequestParts;
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
}

/// Validates the records of `parts` against their topics' policies, moving refused
/// partitions into `parts.refused`. Returns the rejections.
pub(crate) async fn check_produce(
    parts: &mut ProduceRequestParts,
    governance: &Governance,
    validator: Option<&Validator>,
    pan_key: &[u8; 32],
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
            match check_partition(&name, &records, &policy, validator, pan_key).await {
                Ok(()) => kept.push(p),
                Err(PartitionRefusal {
                    code,
                    message,
                    record_errors,
                }) => {
                    rejections.push(Rejection {
                        topic: name.clone(),
                        partition: p.index,
                        records: record_errors.len().max(1),
                        reason: message.clone(),
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

/// The PAN guard over a record's key, value and header values; the message names where the
/// number was found and its keyed hash, never the number.
fn pan_check(
    rec: &gatehouse_protocol::records::Record,
    allowlist: &std::collections::HashSet<String>,
    key: &[u8; 32],
) -> Option<String> {
    let found = |what: &str, f: crate::pan::Finding| {
        format!(
            "{what}: contains what looks like a plaintext card number (PAN, keyed hash {}); \
             tokenize or encrypt it before producing",
            f.keyed_hash(key)
        )
    };
    if let Some(f) = rec
        .value
        .as_deref()
        .and_then(|v| crate::pan::scan(v, allowlist))
    {
        return Some(found("value", f));
    }
    if let Some(f) = rec
        .key
        .as_deref()
        .and_then(|v| crate::pan::scan(v, allowlist))
    {
        return Some(found("key", f));
    }
    for h in &rec.headers {
        if let Some(f) = h
            .value
            .as_deref()
            .and_then(|v| crate::pan::scan(v, allowlist))
        {
            return Some(found(
                &format!("header {}", String::from_utf8_lossy(&h.key)),
                f,
            ));
        }
    }
    None
}

/// One side of a record to validate: which, its bytes, its policy.
type Side<'a> = (KeyOrValue, Option<&'a [u8]>, Option<&'a ValidationPolicy>);

struct PartitionRefusal {
    code: i16,
    message: String,
    record_errors: Vec<BatchIndexAndErrorMessage>,
}

async fn check_partition(
    topic: &str,
    records: &bytes::Bytes,
    policy: &Arc<TopicPolicy>,
    validator: Option<&Validator>,
    pan_key: &[u8; 32],
) -> Result<(), PartitionRefusal> {
    let needs_registry = policy.value.is_some() || policy.key.is_some();
    if needs_registry && validator.is_none() {
        return Err(PartitionRefusal {
            code: INVALID_RECORD,
            message: format!(
                "topic {topic} requires schema validation but no schema registry is available"
            ),
            record_errors: Vec::new(),
        });
    };
    let mut index: i32 = 0;
    let mut errors = Vec::new();
    let mut first: Option<String> = None;
    let mut bad = 0usize;
    // Schema-id validation depends only on (key or value, the 5-byte wire prefix) when no
    // header carries an id: decide each distinct prefix once per batch.
    let mut validated: std::collections::HashSet<(KeyOrValue, [u8; 5])> =
        std::collections::HashSet::new();
    for batch in RawBatches::new(records.clone()) {
        let batch = batch.map_err(|e| PartitionRefusal {
            code: CORRUPT_MESSAGE,
            message: format!("record batch does not decode: {e}"),
            record_errors: Vec::new(),
        })?;
        if batch.header().is_control() {
            continue;
        }
        let recs = batch.records().map_err(|e| PartitionRefusal {
            code: CORRUPT_MESSAGE,
            message: format!("records do not decode: {e}"),
            record_errors: Vec::new(),
        })?;
        for rec in recs {
            if policy.pan_guard
                && let Some(message) = pan_check(&rec, &policy.pan_allowlist, pan_key)
            {
                let message = format!("record {index} {message}");
                bad += 1;
                if errors.len() < MAX_RECORD_ERRORS {
                    errors.push(
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(index)
                            .with_batch_index_error_message(Some(StrBytes::from_string(
                                message.clone(),
                            ))),
                    );
                }
                first.get_or_insert(message);
                index = index.saturating_add(1);
                continue;
            }
            let Some(validator) = validator else {
                index = index.saturating_add(1);
                continue;
            };
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
            for (kind, bytes, side_policy) in sides {
                // Null keys and tombstones carry no schema.
                let (Some(bytes), Some(side_policy)) = (bytes, side_policy) else {
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
                let result = validator
                    .validate(topic, kind, bytes, &headers, side_policy)
                    .await;
                if let (Ok(_), Some(p)) = (&result, prefix) {
                    validated.insert(p);
                }
                if let Err(e) = result {
                    let message = format!("record {index} {}: {e}", kind.as_str());
                    bad += 1;
                    if errors.len() < MAX_RECORD_ERRORS {
                        errors.push(
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(index)
                                .with_batch_index_error_message(Some(StrBytes::from_string(
                                    message.clone(),
                                ))),
                        );
                    }
                    first.get_or_insert(message);
                    break;
                }
            }
            index = index.saturating_add(1);
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err(PartitionRefusal {
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
        }),
    }
}
