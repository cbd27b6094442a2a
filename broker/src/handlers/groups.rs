//! Consumer-group requests that need more than the coordinator: OffsetCommit answers
//! UNKNOWN_TOPIC_OR_PARTITION for partitions that do not exist (as Kafka does) and passes the
//! rest on.

use std::sync::Arc;

use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use gatehouse_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::state::BrokerState;

/// OffsetCommit.
pub(crate) async fn offset_commit(
    state: Arc<BrokerState>,
    mut req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let mut unknown: Vec<OffsetCommitResponseTopic> = Vec::new();
    for t in req.topics.iter_mut() {
        let name = t.name.0.to_string();
        let (known, missing): (Vec<_>, Vec<_>) = t
            .partitions
            .drain(..)
            .partition(|p| state.topics.partition(&name, p.partition_index).is_some());
        t.partitions = known;
        if !missing.is_empty() {
            unknown.push(
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        missing
                            .into_iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
                            })
                            .collect(),
                    ),
            );
        }
    }
    req.topics.retain(|t| !t.partitions.is_empty());
    let mut resp = if req.topics.is_empty() && !unknown.is_empty() {
        OffsetCommitResponse::default()
    } else {
        state.groups.offset_commit(req, version).await
    };
    for u in unknown {
        match resp.topics.iter_mut().find(|t| t.name == u.name) {
            Some(t) => t.partitions.extend(u.partitions),
            None => resp.topics.push(u),
        }
    }
    resp
}
