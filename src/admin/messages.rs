//! `GET /v1/topics/{name}/messages?partition=&offset=&limit=`: the records of one partition
//! **as the caller sees them**. Like every `/v1/topics…` endpoint it reads through the
//! gateway's plaintext listener logged in as the caller (see [`super::rest`]), so the gateway's
//! fetch path decides: READ on the topic is required, internal topics are refused, and records
//! of an encrypted topic (`gatehouse.encryption=true`) come back decrypted only when the
//! principal may read plaintext (everyone allowed to read with `readers=all`, holders of the
//! `plaintext-reader` role with `readers=role`); anyone else gets the envelope ciphertext as
//! stored, which this endpoint marks `"encrypted": true` (the record still carries the
//! `gatehouse.enc` header, `docs/keys.md`). Nothing here decrypts, decodes or hides anything.
//!
//! Without `offset` the answer holds the last `limit` records of the partition (default 20,
//! at most 100); with it, the first `limit` records from that offset on (from the log start
//! when the offset is older). Each key and value is `{"encoding": "text"|"base64", "data",
//! "encrypted", "schema_id", "size", "truncated"}`: `text` when the bytes are UTF-8 without
//! control characters, `schema_id` when the bytes are in Confluent's wire format (magic byte 0
//! and a 4-byte big-endian schema id), at most [`MAX_SHOWN`] bytes of `data`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use gatehouse_compliance::vault::envelope::{ENC_HEADER, EncHeader, FLAG_KEY, FLAG_VALUE};
use gatehouse_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use gatehouse_protocol::messages::{FetchRequest, TopicName};
use gatehouse_protocol::records::{RawBatches, Record, TimestampType};
use serde_json::{Value, json};

use super::rest::{Kafka, authenticate, kafka_fail, sb};
use super::topics::{metadata, watermarks};
use super::{AdminState, fail};

/// Records answered when `limit` is not given.
pub(super) const DEFAULT_LIMIT: usize = 20;
/// Most records one call answers.
pub(super) const MAX_LIMIT: usize = 100;
/// Most bytes of a key or value returned (`truncated` says when more were there).
pub(super) const MAX_SHOWN: usize = 64 * 1024;
/// `max_bytes` of one Fetch (the broker still returns a larger first batch whole).
const FETCH_BYTES: i32 = 1024 * 1024;
/// Most Fetch requests one read makes.
const MAX_FETCHES: usize = 16;
/// How often the window of "the last N records" is widened (offsets taken by transaction
/// markers or compacted away hold no record).
const TAIL_ROUNDS: u32 = 4;
/// RESOURCE_NOT_FOUND, as the gateway answers a partition whose records' key is unknown or
/// destroyed.
const KEY_NOT_FOUND: i16 = 91;

/// The validated query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Params {
    pub partition: i32,
    pub offset: Option<i64>,
    pub limit: usize,
}

/// Checks the query parameters; the message says what is wrong and what is accepted.
pub(super) fn params(q: &BTreeMap<String, String>) -> Result<Params, String> {
    if let Some(k) = q
        .keys()
        .find(|k| !matches!(k.as_str(), "partition" | "offset" | "limit"))
    {
        return Err(format!(
            "unknown query parameter '{k}': use partition, offset and limit"
        ));
    }
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let digits = |v: &str| v.bytes().all(|b| b.is_ascii_digit());
    let partition = match get("partition") {
        None => 0,
        Some(v) => v
            .parse::<i32>()
            .ok()
            .filter(|p| *p >= 0 && digits(v))
            .ok_or_else(|| format!("partition must be a whole number from 0 to {}", i32::MAX))?,
    };
    let offset = match get("offset") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|o| *o >= 0 && digits(v))
                .ok_or_else(|| {
                    "offset must be a whole number of at least 0 (leave it out for the last records)"
                        .to_string()
                })?,
        ),
    };
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n) && digits(v))
            .ok_or_else(|| format!("limit must be a whole number from 1 to {MAX_LIMIT}"))?,
    };
    Ok(Params {
        partition,
        offset,
        limit,
    })
}

/// One record as read: offset, timestamp and its type, the record.
struct Read {
    offset: i64,
    timestamp: i64,
    log_append: bool,
    record: Record,
}

/// Appends the records of `records` (a Fetch answer's record set) at or after `from` to
/// `out`, at most `room` of them. Returns the offset to fetch next, or `None` when the set
/// held no complete batch.
fn take_records(
    records: Bytes,
    from: i64,
    room: usize,
    out: &mut Vec<Read>,
) -> Result<Option<i64>, String> {
    let mut next = None;
    let mut taken = 0;
    for batch in RawBatches::new(records) {
        let batch = batch.map_err(|e| format!("a record batch does not decode: {e}"))?;
        let header = *batch.header();
        next = Some(header.last_offset().saturating_add(1).max(from));
        if header.is_control() {
            continue;
        }
        let recs = batch
            .records()
            .map_err(|e| format!("the records of a batch do not decode: {e}"))?;
        for record in recs {
            let offset = record.offset(&header);
            if offset < from {
                continue;
            }
            if taken == room {
                return Ok(Some(offset));
            }
            out.push(Read {
                offset,
                timestamp: record.timestamp(&header),
                log_append: header.timestamp_type() == TimestampType::LogAppendTime,
                record,
            });
            taken += 1;
        }
    }
    Ok(next)
}

/// The partition being read.
struct Target<'a> {
    topic: &'a str,
    partition: i32,
    /// The Fetch topic naming it: by name, or by id from Fetch v13 on.
    fetch_topic: FetchTopic,
}

/// Reads records from `from` up to `end` (exclusive), at most `room`. Returns them and the
/// offset to read next.
async fn read(
    k: &Kafka,
    t: &Target<'_>,
    from: i64,
    end: i64,
    room: usize,
) -> Result<(Vec<Read>, i64), Response> {
    let mut out = Vec::new();
    let mut next = from;
    for _ in 0..MAX_FETCHES {
        if next >= end || out.len() >= room {
            break;
        }
        let topic = t.fetch_topic.clone().with_partitions(vec![
            FetchPartition::default()
                .with_partition(t.partition)
                .with_fetch_offset(next)
                .with_partition_max_bytes(FETCH_BYTES),
        ]);
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_BYTES)
            .with_isolation_level(0)
            .with_topics(vec![topic]);
        let resp = k.send(req).await?;
        if resp.error_code != 0 {
            return Err(kafka_fail(resp.error_code, None));
        }
        let Some(p) = resp
            .responses
            .iter()
            .flat_map(|r| r.partitions.iter())
            .find(|p| p.partition_index == t.partition)
        else {
            return Err(fail(
                StatusCode::BAD_GATEWAY,
                50213,
                "The Fetch answer has no result for the partition",
            ));
        };
        if p.error_code == KEY_NOT_FOUND {
            return Err(fail(
                StatusCode::NOT_FOUND,
                40410,
                "RESOURCE_NOT_FOUND: the records could not be decrypted: their encryption key is unknown or destroyed",
            ));
        }
        if p.error_code != 0 {
            return Err(kafka_fail(p.error_code, None));
        }
        let records = p.records.clone().unwrap_or_default();
        let room_left = room - out.len();
        match take_records(records, next, room_left, &mut out) {
            Ok(Some(n)) if n > next => next = n,
            Ok(_) => break,
            Err(why) => {
                tracing::warn!(topic = %t.topic, partition = t.partition, %why, "Fetched records do not decode.");
                return Err(fail(
                    StatusCode::BAD_GATEWAY,
                    50213,
                    format!("The fetched records do not decode: {why}"),
                ));
            }
        }
    }
    Ok((out, next))
}

/// Whether `bytes` reads as text (UTF-8 without control characters other than white space).
fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| {
        !s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    })
}

/// A key or value as the caller got it.
pub(super) fn field(bytes: &[u8], encrypted: bool) -> Value {
    let schema_id = (!encrypted && bytes.len() >= 5 && bytes[0] == 0)
        .then(|| i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
        .filter(|id| *id >= 0);
    let truncated = bytes.len() > MAX_SHOWN;
    let (encoding, data) = if is_text(bytes) {
        let mut end = bytes.len().min(MAX_SHOWN);
        while end < bytes.len() && (bytes[end] & 0xC0) == 0x80 {
            end -= 1;
        }
        ("text", String::from_utf8_lossy(&bytes[..end]).into_owned())
    } else {
        (
            "base64",
            base64::engine::general_purpose::STANDARD.encode(&bytes[..bytes.len().min(MAX_SHOWN)]),
        )
    };
    json!({
        "encoding": encoding,
        "data": data,
        "encrypted": encrypted,
        "schema_id": schema_id,
        "size": bytes.len(),
        "truncated": truncated,
    })
}

/// The `gatehouse.enc` flags of a record (an unreadable header counts as key and value
/// encrypted: what it covers cannot be told, so nothing is presented as plaintext).
fn enc_flags(r: &Record) -> u8 {
    r.headers_named(ENC_HEADER.as_bytes())
        .next()
        .map_or(0, |h| {
            h.value
                .as_deref()
                .and_then(|v| EncHeader::decode(v).ok())
                .map_or(FLAG_VALUE | FLAG_KEY, |e| e.flags)
        })
}

fn record_json(r: &Read) -> Value {
    let flags = enc_flags(&r.record);
    let headers: Vec<Value> = r
        .record
        .headers
        .iter()
        .map(|h| {
            let name = String::from_utf8_lossy(&h.key).into_owned();
            match h.value.as_deref() {
                None => json!({"name": name, "value": null, "encoding": null}),
                Some(v) => match std::str::from_utf8(v) {
                    Ok(t) => json!({"name": name, "value": t, "encoding": "text"}),
                    Err(_) => json!({"name": name,
                        "value": base64::engine::general_purpose::STANDARD.encode(v),
                        "encoding": "base64"}),
                },
            }
        })
        .collect();
    json!({
        "offset": r.offset,
        "timestamp": r.timestamp,
        "timestamp_type": if r.log_append { "LogAppendTime" } else { "CreateTime" },
        "key": r.record.key.as_deref().map(|k| field(k, flags & FLAG_KEY != 0)),
        "headers": headers,
        "value": r.record.value.as_deref().map(|v| field(v, flags & FLAG_VALUE != 0)),
    })
}

/// `GET /v1/topics/{name}/messages?partition=&offset=&limit=`.
pub(super) async fn list(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "topic.messages", ("Topic", &name)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let p = match params(&q) {
        Ok(p) => p,
        Err(m) => return fail(StatusCode::UNPROCESSABLE_ENTITY, 42212, m),
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let md = match metadata(&k, Some(std::slice::from_ref(&name))).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(t) = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
    else {
        return kafka_fail(3, None);
    };
    if t.error_code != 0 {
        return kafka_fail(t.error_code, None);
    }
    if !t
        .partitions
        .iter()
        .any(|x| x.partition_index == p.partition)
    {
        return fail(
            StatusCode::NOT_FOUND,
            40410,
            format!(
                "UNKNOWN_TOPIC_OR_PARTITION: {name} has no partition {} (it has {})",
                p.partition,
                t.partitions.len()
            ),
        );
    }
    let marks = match watermarks(&k, &BTreeMap::from([(name.clone(), vec![p.partition])])).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (Some(earliest), Some(latest)) = marks
        .get(&(name.clone(), p.partition))
        .copied()
        .unwrap_or((None, None))
    else {
        return fail(
            StatusCode::BAD_GATEWAY,
            50213,
            format!(
                "The offsets of partition {} could not be listed",
                p.partition
            ),
        );
    };
    let version = match k.version::<FetchRequest>() {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let fetch_topic = if version >= 13 {
        FetchTopic::default().with_topic_id(t.topic_id)
    } else {
        FetchTopic::default().with_topic(TopicName(sb(&name)))
    };
    let target = Target {
        topic: &name,
        partition: p.partition,
        fetch_topic,
    };
    let (start, records, next) = match p.offset {
        Some(o) => {
            let start = o.max(earliest);
            match read(&k, &target, start, latest, p.limit).await {
                Ok((r, next)) => (start, r, next),
                Err(r) => return r,
            }
        }
        None => {
            // The last `limit` records: read a window before the high watermark, widened
            // while it holds fewer records than asked (markers, compacted offsets).
            let mut window = i64::try_from(p.limit).unwrap_or(i64::MAX);
            let mut round = 0;
            loop {
                let start = latest.saturating_sub(window).max(earliest);
                let room = usize::try_from(latest - start).unwrap_or(usize::MAX);
                let (mut r, next) = match read(&k, &target, start, latest, room).await {
                    Ok(x) => x,
                    Err(r) => return r,
                };
                round += 1;
                if r.len() >= p.limit || start == earliest || round == TAIL_ROUNDS {
                    let cut = r.len().saturating_sub(p.limit);
                    r.drain(..cut);
                    let first = r.first().map_or(start, |x| x.offset);
                    break (first, r, next);
                }
                window = window.saturating_mul(4);
            }
        }
    };
    Json(json!({
        "topic": name,
        "partition": p.partition,
        "earliest_offset": earliest,
        "latest_offset": latest,
        "start_offset": start,
        "next_offset": next,
        "limit": p.limit,
        "records": records.iter().map(record_json).collect::<Vec<_>>(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_protocol::records::{BatchBuilder, RecordHeader};

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn params_are_checked() {
        assert_eq!(
            params(&q(&[])).expect("defaults"),
            Params {
                partition: 0,
                offset: None,
                limit: DEFAULT_LIMIT
            }
        );
        assert_eq!(
            params(&q(&[
                ("partition", "2"),
                ("offset", "17"),
                ("limit", "100")
            ]))
            .expect("ok"),
            Params {
                partition: 2,
                offset: Some(17),
                limit: 100
            }
        );
        assert_eq!(params(&q(&[("offset", "")])).expect("empty").offset, None);
        for bad in [
            ("partition", "-1"),
            ("partition", "x"),
            ("partition", "+1"),
            ("partition", "9999999999"),
            ("offset", "-5"),
            ("offset", "1.5"),
            ("limit", "0"),
            ("limit", "101"),
            ("limit", "ten"),
            ("offest", "1"),
        ] {
            let e = params(&q(&[bad])).expect_err("refused");
            assert!(e.contains(bad.0), "{e}");
        }
    }

    #[test]
    fn fields_say_what_they_hold() {
        let v = field(b"hello", false);
        assert_eq!(v["encoding"], "text");
        assert_eq!(v["data"], "hello");
        assert_eq!(v["schema_id"], Value::Null);
        let wire = [&[0u8, 0, 0, 0, 7][..], br#"{"a":1}"#].concat();
        let v = field(&wire, false);
        assert_eq!(v["schema_id"], 7);
        assert_eq!(v["encoding"], "base64", "the magic byte is not text");
        let v = field(&wire, true);
        assert_eq!(v["schema_id"], Value::Null, "ciphertext has no schema id");
        assert_eq!(v["encrypted"], true);
        let big = vec![b'x'; MAX_SHOWN + 10];
        let v = field(&big, false);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["size"], MAX_SHOWN + 10);
        assert_eq!(v["data"].as_str().map(str::len), Some(MAX_SHOWN));
        // A multi-byte character at the cut is not split.
        let mut text = vec![b'a'; MAX_SHOWN - 1];
        text.extend_from_slice("é".as_bytes());
        let v = field(&text, false);
        assert_eq!(v["data"].as_str().map(str::len), Some(MAX_SHOWN - 1));
    }

    #[test]
    fn records_are_taken_from_the_offset_on() {
        let mut b = BatchBuilder::new().base_offset(10);
        for i in 0..5u8 {
            b.push(
                None,
                Some(&[b'a' + i]),
                &[RecordHeader::new(
                    Bytes::from_static(b"h"),
                    Some(Bytes::from_static(b"v")),
                )],
                1_700_000_000_000,
            )
            .expect("push");
        }
        let batch = b.build().expect("batch");
        let mut out = Vec::new();
        let next = take_records(batch.clone(), 12, 2, &mut out).expect("decodes");
        assert_eq!(
            out.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![12, 13]
        );
        assert_eq!(next, Some(14));
        let mut out = Vec::new();
        let next = take_records(batch, 12, 10, &mut out).expect("decodes");
        assert_eq!(out.len(), 3);
        assert_eq!(next, Some(15));
        let j = record_json(&out[0]);
        assert_eq!(j["value"]["data"], "c");
        assert_eq!(j["headers"][0]["name"], "h");
        assert_eq!(j["headers"][0]["value"], "v");
        assert_eq!(j["key"], Value::Null);
        let mut out = Vec::new();
        assert_eq!(take_records(Bytes::new(), 0, 10, &mut out), Ok(None));
    }
}
