//! Encryption at rest in the gateway: record values of topics with `gatehouse.encryption=true`
//! are encrypted on produce (after validation: the registry never needs plaintext it has not
//! seen anyway) and decrypted on fetch for principals that may read them.
//!
//! Produce: each non-control batch of such a topic is decoded, every non-null value replaced by
//! its envelope ciphertext (`compliance::vault::Envelope`, one DEK reservation per batch; the
//! DEK id, flags and origin topic go into the `gatehouse.enc` / `gatehouse.topic` headers), and
//! the batch re-encoded with the same header (producer id, epoch, base sequence, attributes
//! and codec, timestamps, offsets) and a new CRC. Tombstones stay tombstones. Keys are
//! encrypted only with `gatehouse.encryption.key=true` (refused together with
//! `cleanup.policy=compact`, at creation and in later config changes: compaction needs
//! stable keys), and the values of the
//! headers named in `gatehouse.encryption.headers` (listed in `gatehouse.enc.headers`).
//! A topic without a key-encryption key gets one named after it on first use.
//!
//! Fetch: batches of such topics are decoded and values carrying `gatehouse.enc` decrypted,
//! the two headers removed, the batch re-encoded with its original offsets. With
//! `gatehouse.encryption.readers=role` only principals bound to the `plaintext-reader` role
//! (which super users do not imply) get plaintext; others get the ciphertext as stored.
//! Control batches, a truncated last batch and records without the header pass untouched. An
//! unknown or destroyed key answers the partition with an error and no records — never a
//! partial batch, never a panic.

use bytes::{Bytes, BytesMut};
use gatehouse_compliance::vault::envelope::{
    DecryptCache, ENC_HEADER, ENC_HEADERS_HEADER, EncHeader, Envelope, FLAG_HEADERS, FLAG_KEY,
    FLAG_VALUE, Field, TOPIC_HEADER,
};
use gatehouse_policy::{Authorizer, Principal, ResourceType};
use gatehouse_protocol::header::{decode_body, encode_response, split_response};
use gatehouse_protocol::kafka_protocol::protocol::{HeaderVersion, StrBytes};
use gatehouse_protocol::messages::FetchResponse;
use gatehouse_protocol::messages::produce_response::PartitionProduceResponse;
use gatehouse_protocol::records::{BatchBuilder, RawBatches, Record, RecordHeader, TimestampType};

use crate::authz::ProduceRequestParts;
use crate::governance::{Governance, TopicPolicy};
use crate::guard::Rejection;
use crate::metrics::CryptCounters;

/// Batches and records that went through the cipher (for the counters).
#[derive(Default)]
struct Tally {
    batches: u64,
    records: u64,
}

/// The role whose holders get plaintext on `readers=role` topics.
pub const PLAINTEXT_READER: &str = "plaintext-reader";
/// KAFKA_STORAGE_ERROR-like refusal for key failures on produce (retriable for clients).
const KMS_UNAVAILABLE: i16 = 56;
/// RESOURCE_NOT_FOUND: a fetched record's key is unknown or destroyed.
const KEY_NOT_FOUND: i16 = 91;

fn record_timestamp(rec: &Record, header: &gatehouse_protocol::records::BatchHeader) -> i64 {
    match header.timestamp_type() {
        TimestampType::LogAppendTime => header.max_timestamp,
        TimestampType::CreateTime => header.base_timestamp.wrapping_add(rec.timestamp_delta),
    }
}

/// Encrypts the record values of every topic of `parts` whose policy asks for it. Partitions
/// that cannot be encrypted are refused (never forwarded in clear).
pub(crate) async fn encrypt_produce(
    parts: &mut ProduceRequestParts,
    governance: &Governance,
    envelope: Option<&Envelope>,
    limits: &crate::limits::TopicLimits,
    counters: &CryptCounters,
) -> Vec<Rejection> {
    let mut rejections = Vec::new();
    let mut changed = false;
    for topic in &mut parts.request.topic_data {
        let name = topic.name.to_string();
        let Some(policy) = governance.policy(&name).filter(|p| p.encryption) else {
            continue;
        };
        let mut refused = Vec::new();
        let mut kept = Vec::with_capacity(topic.partition_data.len());
        for mut p in topic.partition_data.drain(..) {
            let Some(records) = p.records.clone() else {
                kept.push(p);
                continue;
            };
            let mut tally = Tally::default();
            let result = match envelope {
                None => Err(
                    "encryption is required for this topic but no key vault is configured"
                        .to_string(),
                ),
                Some(env) => {
                    let limit = limits.max_message_bytes(&name).await;
                    encrypt_records(
                        &name,
                        records,
                        env,
                        &policy,
                        crate::limits::split_threshold(limit),
                        &mut tally,
                    )
                    .await
                }
            };
            match result {
                Ok(encrypted) => {
                    counters.encrypted(tally.batches, tally.records);
                    p.records = Some(encrypted);
                    changed = true;
                    kept.push(p);
                }
                Err(why) => {
                    counters.encryption_failed();
                    rejections.push(Rejection {
                        topic: name.clone(),
                        partition: p.index,
                        records: 0,
                        reason: why.clone(),
                        reasons: Default::default(),
                    });
                    refused.push(
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(KMS_UNAVAILABLE)
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(-1)
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "the batch was not written: {why}"
                            )))),
                    );
                }
            }
        }
        topic.partition_data = kept;
        if !refused.is_empty() {
            changed = true;
            match parts.refused.iter_mut().find(|t| t.name == topic.name) {
                Some(t) => t.partition_responses.extend(refused),
                None => parts.refused.push(
                    gatehouse_protocol::messages::produce_response::TopicProduceResponse::default()
                        .with_name(topic.name.clone())
                        .with_partition_responses(refused),
                ),
            }
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

/// Where the ciphertexts of one record go.
#[derive(Default)]
struct Sealed {
    value: bool,
    key: bool,
    /// Indexes of encrypted headers in the record's header list.
    headers: Vec<usize>,
}

async fn encrypt_records(
    topic: &str,
    records: Bytes,
    env: &Envelope,
    policy: &TopicPolicy,
    split_at: usize,
    tally: &mut Tally,
) -> Result<Bytes, String> {
    if !env.encrypts(topic) {
        match env.store().create_kek(topic).await {
            Ok(_) => tracing::info!(topic, "Created the topic's key-encryption key."),
            // Another connection or node created it meanwhile.
            Err(e) if env.encrypts(topic) => tracing::debug!(topic, error = %e, "KEK exists."),
            Err(e) => return Err(format!("no key-encryption key for {topic}: {e}")),
        }
    }
    let mut out = BytesMut::with_capacity(records.len() + 64);
    let mut batches = RawBatches::new(records);
    for batch in batches.by_ref() {
        let batch = batch.map_err(|e| format!("record batch does not decode: {e}"))?;
        let header = *batch.header();
        if header.is_control() {
            out.extend_from_slice(batch.bytes());
            continue;
        }
        let recs = batch
            .records()
            .map_err(|e| format!("records do not decode: {e}"))?;
        // Ciphertext is larger and does not compress: a batch that fit the broker's limit may
        // not after encryption, so it is split into several batches (sequence numbers carried
        // on), each under the topic's `max.message.bytes` (see `limits.rs`).
        let codec = header.compression().map_err(|e| e.to_string())?;
        let new_builder = |first_sequence: i32| {
            let mut b = BatchBuilder::new()
                .compression(codec)
                .producer(header.producer_id, header.producer_epoch, first_sequence)
                .transactional(header.is_transactional())
                .timestamp_type(header.timestamp_type());
            if header.timestamp_type() == TimestampType::LogAppendTime {
                b = b.log_append_time(header.max_timestamp);
            }
            b
        };
        let mut b = new_builder(header.base_sequence);
        // Ciphertext adds IV, tag and three headers per record.
        b.reserve((batch.bytes().len() + 96 * recs.len()).min(split_at));
        let mut pushed: i32 = 0;
        // Every field of the batch under one DEK reservation (tombstones and null keys stay
        // clear): values, then keys and named headers when the topic asks for them.
        let mut fields: Vec<(Field<'_>, &[u8])> = Vec::new();
        let mut sealed: Vec<Sealed> = Vec::with_capacity(recs.len());
        for rec in &recs {
            let mut s = Sealed::default();
            if let Some(v) = rec.value.as_deref() {
                fields.push((Field::Value, v));
                s.value = true;
            }
            if policy.encrypt_key
                && let Some(k) = rec.key.as_deref()
            {
                fields.push((Field::Key, k));
                s.key = true;
            }
            for (i, h) in rec.headers.iter().enumerate() {
                if let (Some(v), Some(name)) = (
                    h.value.as_deref(),
                    policy
                        .encrypt_headers
                        .iter()
                        .find(|n| n.as_bytes() == h.key.as_ref()),
                ) {
                    fields.push((Field::Header(name), v));
                    s.headers.push(i);
                }
            }
            sealed.push(s);
        }
        let enc = if fields.is_empty() {
            None
        } else {
            Some(
                env.encrypt_many(topic, &fields)
                    .await
                    .map_err(|e| format!("encryption failed: {e}"))?,
            )
        };
        let dek_id = enc.as_ref().map(|e| e.dek_id);
        if dek_id.is_some() {
            tally.batches += 1;
        }
        let topic_header = Bytes::copy_from_slice(topic.as_bytes());
        let mut ciphertexts = enc
            .map(|e| e.ciphertexts)
            .unwrap_or_default()
            .into_iter()
            .map(Bytes::from);
        let mut next = || {
            ciphertexts
                .next()
                .ok_or_else(|| "encryption returned too few fields".to_string())
        };
        for (mut rec, s) in recs.into_iter().zip(sealed) {
            if let Some(dek_id) = dek_id
                && (s.value || s.key || !s.headers.is_empty())
            {
                tally.records += 1;
                let mut flags = 0u8;
                if s.value {
                    rec.value = Some(next()?);
                    flags |= FLAG_VALUE;
                }
                if s.key {
                    rec.key = Some(next()?);
                    flags |= FLAG_KEY;
                }
                let mut names = Vec::with_capacity(s.headers.len());
                for &i in &s.headers {
                    let ct = next()?;
                    if let Some(h) = rec.headers.get_mut(i) {
                        names.push(String::from_utf8_lossy(&h.key).into_owned());
                        h.value = Some(ct);
                    }
                }
                if !names.is_empty() {
                    flags |= FLAG_HEADERS;
                    rec.headers.push(RecordHeader::new(
                        Bytes::from_static(ENC_HEADERS_HEADER.as_bytes()),
                        Some(Bytes::from(names.join(","))),
                    ));
                }
                rec.headers.push(RecordHeader::new(
                    Bytes::from_static(ENC_HEADER.as_bytes()),
                    Some(Bytes::copy_from_slice(
                        &EncHeader { dek_id, flags }.encode(),
                    )),
                ));
                rec.headers.push(RecordHeader::new(
                    Bytes::from_static(TOPIC_HEADER.as_bytes()),
                    Some(topic_header.clone()),
                ));
            }
            let ts = record_timestamp(&rec, &header);
            if !b.is_empty() && b.uncompressed_size() + record_size(&rec) > split_at {
                b.build_into(&mut out).map_err(|e| e.to_string())?;
                let next_sequence = if header.base_sequence >= 0 {
                    header.base_sequence.wrapping_add(pushed)
                } else {
                    -1
                };
                b = new_builder(next_sequence);
            }
            b.push_record(&rec, ts).map_err(|e| e.to_string())?;
            pushed = pushed.saturating_add(1);
        }
        b.build_into(&mut out).map_err(|e| e.to_string())?;
    }
    out.extend_from_slice(batches.remaining());
    Ok(out.freeze())
}

/// An upper bound of a record's encoded size.
fn record_size(rec: &Record) -> usize {
    let h: usize = rec
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 10)
        .sum();
    32 + rec.key.as_ref().map_or(0, |k| k.len()) + rec.value.as_ref().map_or(0, |v| v.len()) + h
}

/// Who is fetching (for the `plaintext-reader` rule).
pub(crate) struct Reader {
    pub principal: Principal,
    pub authorizer: Authorizer,
}

/// Decrypts the records of encrypted topics in a Fetch response (size-prefixed frame).
pub(crate) async fn decrypt_fetch(
    framed: Bytes,
    version: i16,
    governance: Governance,
    envelope: Option<Envelope>,
    reader: Reader,
    counters: std::sync::Arc<CryptCounters>,
) -> Result<Bytes, String> {
    let (correlation_id, body) =
        split_response(framed.slice(4..), FetchResponse::header_version(version))
            .map_err(|e| e.to_string())?;
    let mut resp: FetchResponse = decode_body(body, version).map_err(|e| e.to_string())?;
    let mut changed = false;
    for t in &mut resp.responses {
        let name = t.topic.to_string();
        let Some(policy) = governance.policy(&name) else {
            continue;
        };
        if !policy.encryption {
            continue;
        }
        if policy.readers_role
            && !reader.authorizer.has_role(
                &reader.principal,
                PLAINTEXT_READER,
                ResourceType::Topic,
                &name,
            )
        {
            for p in &t.partitions {
                if p.error_code == 0 && p.records.as_ref().is_some_and(|r| !r.is_empty()) {
                    counters.decryption_withheld();
                }
            }
            continue;
        }
        for p in &mut t.partitions {
            let Some(records) = p.records.clone() else {
                continue;
            };
            if p.error_code != 0 || records.is_empty() {
                continue;
            }
            let mut tally = Tally::default();
            let result = match &envelope {
                None => Err("no key vault is configured".to_string()),
                Some(env) => decrypt_records(&name, records, env, &mut tally).await,
            };
            match result {
                Ok(Some(plain)) => {
                    counters.decrypted(tally.batches, tally.records);
                    p.records = Some(plain);
                    changed = true;
                }
                Ok(None) => {}
                Err(why) => {
                    counters.decryption_failed();
                    tracing::warn!(topic = %name, partition = p.partition_index, %why,
                        "Fetched records could not be decrypted; answering the partition with an error.");
                    p.error_code = KEY_NOT_FOUND;
                    p.records = Some(Bytes::new());
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return Ok(framed);
    }
    encode_response(correlation_id, version, &resp).map_err(|e| e.to_string())
}

/// `Ok(None)`: nothing in the records was encrypted.
async fn decrypt_records(
    topic: &str,
    records: Bytes,
    env: &Envelope,
    tally: &mut Tally,
) -> Result<Option<Bytes>, String> {
    let mut out = BytesMut::with_capacity(records.len());
    let mut any = false;
    let mut keys = DecryptCache::default();
    let mut batches = RawBatches::new(records);
    for batch in batches.by_ref() {
        let batch = batch.map_err(|e| format!("record batch does not decode: {e}"))?;
        let header = *batch.header();
        if header.is_control() {
            out.extend_from_slice(batch.bytes());
            continue;
        }
        let recs = batch
            .records()
            .map_err(|e| format!("records do not decode: {e}"))?;
        if !recs.iter().any(|r| {
            r.headers
                .iter()
                .any(|h| h.key.as_ref() == ENC_HEADER.as_bytes())
        }) {
            out.extend_from_slice(batch.bytes());
            continue;
        }
        any = true;
        tally.batches += 1;
        let mut b = BatchBuilder::like(&header).map_err(|e| e.to_string())?;
        b.reserve(batch.bytes().len());
        for mut rec in recs {
            let enc = rec
                .headers
                .iter()
                .find(|h| h.key.as_ref() == ENC_HEADER.as_bytes())
                .and_then(|h| h.value.clone());
            if let Some(enc) = enc {
                tally.records += 1;
                let h = EncHeader::decode(&enc).map_err(|e| e.to_string())?;
                // A handle on the header's bytes (no copy), so the headers can change below.
                let origin_bytes = rec
                    .headers
                    .iter()
                    .find(|h| h.key.as_ref() == TOPIC_HEADER.as_bytes())
                    .and_then(|h| h.value.clone());
                let origin = origin_bytes
                    .as_deref()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .unwrap_or(topic);
                if h.flags & FLAG_VALUE != 0
                    && let Some(ct) = rec.value.take()
                {
                    let plain = env
                        .decrypt_cached(&mut keys, origin, Field::Value, &h.dek_id, &ct)
                        .await
                        .map_err(|e| e.to_string())?;
                    rec.value = Some(Bytes::from(plain));
                }
                if h.flags & FLAG_KEY != 0
                    && let Some(ct) = rec.key.take()
                {
                    let plain = env
                        .decrypt_cached(&mut keys, origin, Field::Key, &h.dek_id, &ct)
                        .await
                        .map_err(|e| e.to_string())?;
                    rec.key = Some(Bytes::from(plain));
                }
                if h.flags & FLAG_HEADERS != 0 {
                    let names: Vec<String> = rec
                        .headers
                        .iter()
                        .find(|x| x.key.as_ref() == ENC_HEADERS_HEADER.as_bytes())
                        .and_then(|x| x.value.as_deref())
                        .map(|v| {
                            String::from_utf8_lossy(v)
                                .split(',')
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    for hdr in rec.headers.iter_mut() {
                        let Some(name) = names.iter().find(|n| n.as_bytes() == hdr.key.as_ref())
                        else {
                            continue;
                        };
                        if let Some(ct) = hdr.value.take() {
                            let plain = env
                                .decrypt_cached(
                                    &mut keys,
                                    origin,
                                    Field::Header(name),
                                    &h.dek_id,
                                    &ct,
                                )
                                .await
                                .map_err(|e| e.to_string())?;
                            hdr.value = Some(Bytes::from(plain));
                        }
                    }
                }
                rec.headers.retain(|x| {
                    x.key.as_ref() != ENC_HEADER.as_bytes()
                        && x.key.as_ref() != TOPIC_HEADER.as_bytes()
                        && x.key.as_ref() != ENC_HEADERS_HEADER.as_bytes()
                });
            }
            let ts = record_timestamp(&rec, &header);
            b.push_same_offset(&rec, ts).map_err(|e| e.to_string())?;
        }
        b.build_into(&mut out).map_err(|e| e.to_string())?;
    }
    if !any {
        return Ok(None);
    }
    // A truncated last batch passes untouched.
    out.extend_from_slice(batches.remaining());
    Ok(Some(out.freeze()))
}
