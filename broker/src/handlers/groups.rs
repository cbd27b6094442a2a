//! Consumer-group requests that need more than the coordinator: SyncGroup and OffsetCommit
//! check the topics they name.

use std::sync::Arc;

use gatehouse_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse,
};

use crate::state::BrokerState;

/// SyncGroup.
pub(crate) async fn sync(state: Arc<BrokerState>, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    state.groups.sync_group(req, version).await
}

/// OffsetCommit.
pub(crate) async fn offset_commit(state: Arc<BrokerState>, req: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    state.groups.offset_commit(req, version).await
}
