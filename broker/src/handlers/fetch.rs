//! Fetch (with long polling on the high watermark) and ListOffsets.
//!
//! Reads return whole batches starting with the one that contains the fetch offset; the
//! client skips records before its offset. Only offsets below the high watermark are served,
//! which in durable mode means only what an fsync has covered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::select_all;
use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use gatehouse_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use gatehouse_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
};

use crate::state::BrokerState;

/// Longest a fetch may wait for data, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// Fetch v4-12.
pub(crate) async fn fetch(
    state: Arc<BrokerState>,
    req: FetchRequest,
    _version: i16,
) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let mut last_pass = false;
    loop {
        let mut watchers = Vec::new();
        let mut total = 0usize;
        let mut any_error = false;
        let mut responses = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let name = t.topic.0.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let base = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
                    .with_aborted_transactions(if req.isolation_level == 1 {
                        Some(vec![])
                    } else {
                        None
                    })
                    .with_preferred_read_replica((-1).into());
                let Some(partition) = state.topics.partition(&name, p.partition) else {
                    any_error = true;
                    parts.push(base.with_error_code(ErrorCode::UnknownTopicOrPartition.code()));
                    continue;
                };
                watchers.push(partition.subscribe());
                let remaining = max_bytes.saturating_sub(total);
                let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                if limit == 0 && total > 0 {
                    let hw = partition.high_watermark();
                    parts.push(
                        base.with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(partition.log_start_offset())
                            .with_records(Some(bytes::Bytes::new())),
                    );
                    continue;
                }
                let hw = partition.high_watermark();
                if p.fetch_offset == hw
                    || (p.fetch_offset > hw && p.fetch_offset <= partition.log_end_offset())
                {
                    parts.push(
                        base.with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(partition.log_start_offset())
                            .with_records(Some(bytes::Bytes::new())),
                    );
                    continue;
                }
                match partition.read(p.fetch_offset, limit.max(1), Some(hw)) {
                    Ok(r) => {
                        total += r.records.len();
                        parts.push(
                            base.with_high_watermark(r.high_watermark)
                                .with_last_stable_offset(r.last_stable_offset)
                                .with_log_start_offset(r.log_start_offset)
                                .with_records(Some(r.records)),
                        );
                    }
                    Err(e) => {
                        any_error = true;
                        tracing::debug!(topic = %name, partition = p.partition, offset = p.fetch_offset, error = %e, "Fetch failed.");
                        parts.push(
                            base.with_error_code(e.error_code().code())
                                .with_high_watermark(partition.high_watermark())
                                .with_last_stable_offset(partition.high_watermark())
                                .with_log_start_offset(partition.log_start_offset()),
                        );
                    }
                }
            }
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(parts),
            );
        }
        let now = Instant::now();
        if total >= min_bytes || any_error || last_pass || now >= deadline || watchers.is_empty() {
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
        let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout(deadline - now, changed).await.is_err() {
            // Deadline passed: one last read, then answer whatever there is.
            last_pass = true;
        }
    }
}

/// ListOffsets v1-7: latest (-1), earliest (-2), max timestamp (-3) or by timestamp.
pub(crate) fn list_offsets(
    state: &BrokerState,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        // The field exists from v4; the codec refuses a non-default value before.
                        .with_leader_epoch(if version >= 4 { 0 } else { -1 });
                    let Some(partition) = state.topics.partition(&name, p.partition_index) else {
                        return base.with_error_code(ErrorCode::UnknownTopicOrPartition.code());
                    };
                    match p.timestamp {
                        -1 => base.with_offset(partition.high_watermark()),
                        -2 => base.with_offset(partition.log_start_offset()),
                        -3 => match partition.max_timestamp() {
                            Some((off, ts)) => base.with_offset(off).with_timestamp(ts),
                            None => base,
                        },
                        ts if ts < 0 => base.with_error_code(ErrorCode::InvalidRequest.code()),
                        ts => match partition.offset_for_timestamp(ts) {
                            Some((off, found)) if off < partition.high_watermark() => {
                                base.with_offset(off).with_timestamp(found)
                            }
                            _ => base,
                        },
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
