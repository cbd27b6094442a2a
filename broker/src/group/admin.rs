//! DescribeGroups, ListGroups and DeleteGroups.
//!
//! As in Kafka, DescribeGroups reports member metadata and assignments only for a Stable group,
//! and an unknown group is reported as state "Dead" with no error up to v5; v6 answers
//! GROUP_ID_NOT_FOUND. DeleteGroups deletes only Empty groups and removes their committed
//! offsets durably before answering.

use std::sync::Arc;

use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::delete_groups_response::DeletableGroupResult;
use gatehouse_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use gatehouse_protocol::messages::list_groups_response::ListedGroup;
use gatehouse_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    ListGroupsRequest, ListGroupsResponse,
};
use tracing::{error, info};

use super::member::{Group, GroupState, Member};
use super::membership::sb;
use super::offsets::Record;
use super::{Inner, now_ms};

/// The `group_type` of every group this coordinator manages.
const CLASSIC: &str = "classic";

pub(super) fn describe_groups(
    inner: &Arc<Inner>,
    req: &DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = inner.lock_groups();
    let described = req
        .groups
        .iter()
        .map(|id| {
            let base = DescribedGroup::default().with_group_id(id.clone());
            if inner.is_closed() {
                return base.with_error_code(ErrorCode::CoordinatorNotAvailable.code());
            }
            match groups.get(id.as_str()) {
                None if version >= 6 => base
                    .with_error_code(ErrorCode::GroupIdNotFound.code())
                    .with_error_message(Some(sb(&format!("Group {} not found.", id.as_str()))))
                    .with_group_state(sb(GroupState::Dead.name())),
                None => base.with_group_state(sb(GroupState::Dead.name())),
                Some(group) => describe(base, group, version),
            }
        })
        .collect();
    DescribeGroupsResponse::default()
        .with_throttle_time_ms(0)
        .with_groups(described)
}

fn describe(base: DescribedGroup, group: &Group, version: i16) -> DescribedGroup {
    let stable = group.state == GroupState::Stable;
    let protocol = if stable {
        group.protocol_name.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let mut members: Vec<&Member> = group.members.values().collect();
    members.sort_by_key(|m| m.join_seq);
    let members = members
        .into_iter()
        .map(|m| {
            let (metadata, assignment) = if stable {
                (m.metadata_for(&protocol), m.assignment.clone())
            } else {
                Default::default()
            };
            DescribedGroupMember::default()
                .with_member_id(sb(&m.member_id))
                .with_group_instance_id(if version >= 4 {
                    m.group_instance_id.as_deref().map(sb)
                } else {
                    None
                })
                .with_client_id(sb(&m.client_id))
                .with_client_host(sb(&m.client_host))
                .with_member_metadata(metadata)
                .with_member_assignment(assignment)
        })
        .collect();
    base.with_error_code(0)
        .with_group_state(sb(group.state.name()))
        .with_protocol_type(sb(group.protocol_type.as_deref().unwrap_or_default()))
        .with_protocol_data(StrBytes::from_string(protocol))
        .with_members(members)
}

pub(super) fn list_groups(
    inner: &Arc<Inner>,
    req: &ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    if inner.is_closed() {
        return ListGroupsResponse::default()
            .with_throttle_time_ms(0)
            .with_error_code(ErrorCode::CoordinatorNotAvailable.code());
    }
    let states: Vec<String> = if version >= 4 {
        req.states_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let types_ok = version < 5
        || req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(CLASSIC));
    let groups = inner.lock_groups();
    let mut listed: Vec<&Group> = if types_ok {
        groups
            .values()
            .filter(|g| states.is_empty() || states.contains(&g.state.name().to_ascii_lowercase()))
            .collect()
    } else {
        Vec::new()
    };
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    let listed = listed
        .into_iter()
        .map(|g| {
            ListedGroup::default()
                .with_group_id(sb(&g.id).into())
                .with_protocol_type(sb(g.protocol_type.as_deref().unwrap_or_default()))
                .with_group_state(if version >= 4 {
                    sb(g.state.name())
                } else {
                    StrBytes::default()
                })
                .with_group_type(if version >= 5 {
                    StrBytes::from_static_str(CLASSIC)
                } else {
                    StrBytes::default()
                })
        })
        .collect();
    ListGroupsResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(0)
        .with_groups(listed)
}

pub(super) async fn delete_groups(
    inner: &Arc<Inner>,
    req: &DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in &req.groups_names {
        let error = delete_one(inner, id.as_str()).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(error.code()),
        );
    }
    DeleteGroupsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results)
}

async fn delete_one(inner: &Arc<Inner>, id: &str) -> ErrorCode {
    if inner.is_closed() {
        return ErrorCode::CoordinatorNotAvailable;
    }
    let removed = {
        let mut groups = inner.lock_groups();
        match groups.get(id).map(|g| g.state) {
            None | Some(GroupState::Dead) => return ErrorCode::GroupIdNotFound,
            Some(GroupState::Empty) => match groups.remove(id) {
                Some(mut g) => {
                    g.state = GroupState::Dead;
                    g.timer_epoch += 1;
                    g
                }
                None => return ErrorCode::GroupIdNotFound,
            },
            Some(_) => return ErrorCode::NonEmptyGroup,
        }
    };
    let has_offsets = inner.store.table().contains_key(id);
    if has_offsets {
        let record = Record::DeleteGroup {
            group: id.to_string(),
        };
        if let Err(e) = inner.store.write(record).await {
            error!(group = %id, error = %e, "deleting the offsets of a group failed");
            // Keep the group: its offsets are still there.
            let mut groups = inner.lock_groups();
            groups
                .entry(id.to_string())
                .or_insert_with(|| Group::new(&removed.id, now_ms()));
            return ErrorCode::NotCoordinator;
        }
    }
    info!(group = %id, "group deleted");
    ErrorCode::None
}
