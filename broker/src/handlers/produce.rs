//! Produce and InitProducerId.
//!
//! Appends happen in request order on the connection task; the wait for the group-commit fsync
//! (acks=all in durable mode) is handed to the connection's writer, so pipelined requests share
//! one fsync.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::header::RequestHeaderPeek;
use gatehouse_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use gatehouse_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Outcome, respond};
use crate::log::{AppendInfo, LogError};
use crate::state::BrokerState;

type AppendFuture = Pin<Box<dyn Future<Output = Result<AppendInfo, LogError>> + Send>>;

enum Slot {
    Done(PartitionProduceResponse),
    Waiting(i32, AppendFuture),
}

fn error_partition(
    index: i32,
    code: ErrorCode,
    message: Option<String>,
) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(StrBytes::from_string))
}

fn from_append(index: i32, r: Result<AppendInfo, LogError>) -> PartitionProduceResponse {
    match r {
        Ok(info) => PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(info.base_offset)
            .with_log_append_time_ms(info.log_append_time)
            .with_log_start_offset(info.log_start_offset),
        Err(e) => {
            let code = e.error_code();
            tracing::info!(partition = index, error = %e, "Produce rejected.");
            error_partition(index, code, Some(e.to_string()))
        }
    }
}

/// Handles a decoded Produce request (v3+).
pub(crate) async fn handle(
    state: Arc<BrokerState>,
    h: &RequestHeaderPeek,
    req: ProduceRequest,
) -> Outcome {
    let acks = req.acks;

    let mut topics: Vec<(kafka_protocol::messages::TopicName, Vec<Slot>)> = Vec::new();
    for td in req.topic_data {
        let name = td.name.0.to_string();
        let mut slots = Vec::with_capacity(td.partition_data.len());
        let topic_known = super::metadata::ensure_topic(&state, &name).await;
        for pd in td.partition_data {
            let index = pd.index;
            if req.transactional_id.is_some() {
                slots.push(Slot::Done(error_partition(
                    index,
                    ErrorCode::TransactionalIdAuthorizationFailed,
                    Some("transactions are not supported by the bundled broker".into()),
                )));
                continue;
            }
            if !matches!(acks, -1..=1) {
                slots.push(Slot::Done(error_partition(
                    index,
                    ErrorCode::InvalidRequiredAcks,
                    Some(format!("acks must be -1, 0 or 1, got {acks}")),
                )));
                continue;
            }
            let partition = if topic_known {
                state.topics.partition(&name, index)
            } else {
                None
            };
            let Some(partition) = partition else {
                slots.push(Slot::Done(error_partition(
                    index,
                    ErrorCode::UnknownTopicOrPartition,
                    Some(format!("topic '{name}' partition {index} does not exist")),
                )));
                continue;
            };
            let Some(records) = pd.records.filter(|r| !r.is_empty()) else {
                slots.push(Slot::Done(error_partition(
                    index,
                    ErrorCode::InvalidRecord,
                    Some("the request carries no records for this partition".into()),
                )));
                continue;
            };
            let mut fut: AppendFuture =
                Box::pin(async move { partition.append(records, acks).await });
            // Poll once here so the append itself happens now, in request order.
            let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            match first {
                Poll::Ready(r) => slots.push(Slot::Done(from_append(index, r))),
                Poll::Pending => slots.push(Slot::Waiting(index, fut)),
            }
        }
        topics.push((td.name, slots));
    }
    if acks == 0 {
        // No response; still let durability waits complete in the background.
        let waits: Vec<AppendFuture> = topics
            .into_iter()
            .flat_map(|(_, s)| s)
            .filter_map(|s| match s {
                Slot::Waiting(_, f) => Some(f),
                Slot::Done(_) => None,
            })
            .collect();
        if !waits.is_empty() {
            tokio::spawn(async move {
                for w in waits {
                    let _ = w.await;
                }
            });
        }
        return Outcome::none();
    }
    let correlation_id = h.correlation_id;
    let h2 = h.clone();
    Outcome::Respond(Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, slots) in topics {
            let mut parts = Vec::with_capacity(slots.len());
            for s in slots {
                parts.push(match s {
                    Slot::Done(p) => p,
                    Slot::Waiting(index, f) => from_append(index, f.await),
                });
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(parts),
            );
        }
        let resp = ProduceResponse::default().with_responses(responses);
        match respond(&h2, &resp) {
            Outcome::Respond(f) | Outcome::RespondAndClose(f, _) => f.await,
            Outcome::Close(reason) => {
                tracing::warn!(correlation_id, %reason, "Produce response not encodable.");
                None
            }
        }
    }))
}

fn get_str(b: &mut Bytes) -> Option<Bytes> {
    if b.remaining() < 2 {
        return None;
    }
    let len = b.get_i16();
    if len < 0 {
        return Some(Bytes::new());
    }
    let len = len as usize;
    if b.remaining() < len {
        return None;
    }
    Some(b.split_to(len))
}

/// Produce v0-2 stay advertised (KAFKA-18659) but use the pre-v2 message format we do not
/// store: answer each partition UNSUPPORTED_VERSION in the request's own response format.
pub(crate) fn unsupported_old_version(h: &RequestHeaderPeek, frame: &Bytes) -> Outcome {
    let Some(off) = h.body_offset else {
        return Outcome::Close("Produce without body".into());
    };
    let mut b = frame.slice(off..);
    type OldProduce = (i16, Vec<(Bytes, Vec<i32>)>);
    let parsed = (|| -> Option<OldProduce> {
        if b.remaining() < 6 {
            return None;
        }
        let acks = b.get_i16();
        let _timeout = b.get_i32();
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_i32();
        let mut topics = Vec::new();
        for _ in 0..n.clamp(0, 100_000) {
            let name = get_str(&mut b)?;
            if b.remaining() < 4 {
                return None;
            }
            let np = b.get_i32();
            let mut parts = Vec::new();
            for _ in 0..np.clamp(0, 100_000) {
                if b.remaining() < 8 {
                    return None;
                }
                parts.push(b.get_i32());
                let len = b.get_i32();
                if len > 0 {
                    if b.remaining() < len as usize {
                        return None;
                    }
                    b.advance(len as usize);
                }
            }
            topics.push((name, parts));
        }
        Some((acks, topics))
    })();
    let Some((acks, topics)) = parsed else {
        return Outcome::Close(format!(
            "malformed Produce v{} request (this version is refused anyway: use v3 or later)",
            h.api_version
        ));
    };
    tracing::info!(
        version = h.api_version,
        "Refusing Produce below v3 (message format v0/v1) with UNSUPPORTED_VERSION."
    );
    if acks == 0 {
        return Outcome::none();
    }
    let mut out = BytesMut::new();
    out.put_i32(0); // size, patched below
    out.put_i32(h.correlation_id);
    out.put_i32(topics.len() as i32);
    for (name, parts) in topics {
        out.put_i16(name.len() as i16);
        out.put_slice(&name);
        out.put_i32(parts.len() as i32);
        for p in parts {
            out.put_i32(p);
            out.put_i16(ErrorCode::UnsupportedVersion.code());
            out.put_i64(-1);
            if h.api_version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if h.api_version >= 1 {
        out.put_i32(0); // throttle_time_ms
    }
    let size = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    Outcome::ready(out.freeze())
}

/// InitProducerId for idempotent producers. As Kafka does for a null transactional id, every
/// call (including the KIP-360 epoch-bump form) gets a fresh producer id with epoch 0, so a
/// producer whose sequence broke can always start clean.
pub(crate) fn init_producer_id(
    state: &BrokerState,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
    }
    match state.producer_ids.allocate() {
        Ok(id) => {
            tracing::debug!(
                producer_id = id,
                previous = req.producer_id.0,
                "Producer id allocated."
            );
            InitProducerIdResponse::default()
                .with_producer_id(id.into())
                .with_producer_epoch(0)
        }
        Err(e) => {
            tracing::error!(error = %e, "Could not reserve producer ids; check the data directory.");
            InitProducerIdResponse::default()
                .with_error_code(ErrorCode::UnknownServerError.code())
                .with_producer_id((-1).into())
                .with_producer_epoch(-1)
        }
    }
}
