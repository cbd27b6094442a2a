//! `/v1/groups…`: consumer groups the caller may describe (ListGroups), and one group's state,
//! members, committed offsets and lag (DescribeGroups, OffsetFetch, ListOffsets), as the
//! caller, through the gateway (see [`super::rest`]). Lag is the partition's log end offset
//! minus the committed offset (never negative).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gatehouse_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use gatehouse_protocol::messages::{
    DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetFetchRequest,
};
use serde_json::{Value, json};

use super::AdminState;
use super::rest::{authenticate, kafka_fail, sb};
use super::topics::watermarks;

/// `GET /v1/groups`.
pub(super) async fn list(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "group.list", ("Group", "*")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let resp = match k.send(ListGroupsRequest::default()).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if resp.error_code != 0 {
        return kafka_fail(resp.error_code, None);
    }
    let mut groups: Vec<Value> = resp
        .groups
        .iter()
        .map(|g| {
            json!({
                "group_id": g.group_id.0.to_string(),
                "protocol_type": g.protocol_type.to_string(),
                "state": (!g.group_state.is_empty()).then(|| g.group_state.to_string()),
            })
        })
        .collect();
    groups.sort_by(|a, b| a["group_id"].as_str().cmp(&b["group_id"].as_str()));
    Json(json!({ "groups": groups })).into_response()
}

/// Committed offsets of `group`: (topic, partition) → offset (`-1`: none).
type Committed = BTreeMap<(String, i32), i64>;

/// `GET /v1/groups/{id}`.
pub(super) async fn describe(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "group.describe", ("Group", &id)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let resp = match k
        .send(DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(&id))]))
        .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(g) = resp.groups.first() else {
        return kafka_fail(-1, None);
    };
    if g.error_code != 0 {
        return kafka_fail(g.error_code, g.error_message.as_ref());
    }
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let assignment = if g.protocol_type.as_str() == "consumer" {
                gatehouse_protocol::client::decode_assignment(m.member_assignment.clone())
                    .map(|a| json!(a))
                    .unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            json!({
                "member_id": m.member_id.to_string(),
                "group_instance_id": m.group_instance_id.as_ref().map(|x| x.to_string()),
                "client_id": m.client_id.to_string(),
                "client_host": m.client_host.to_string(),
                "assignment": assignment,
            })
        })
        .collect();
    // Committed offsets (all topics of the group).
    let version = match k.version::<OffsetFetchRequest>() {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let req = if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(sb(&id)))
                .with_topics(None),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(sb(&id)))
            .with_topics(None)
    };
    let offsets = match k.send(req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut committed: Committed = BTreeMap::new();
    if version >= 8 {
        for grp in &offsets.groups {
            if grp.error_code != 0 {
                return kafka_fail(grp.error_code, None);
            }
            for t in &grp.topics {
                for p in &t.partitions {
                    if p.error_code == 0 {
                        committed.insert(
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                }
            }
        }
    } else {
        if offsets.error_code != 0 {
            return kafka_fail(offsets.error_code, None);
        }
        for t in &offsets.topics {
            for p in &t.partitions {
                if p.error_code == 0 {
                    committed.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
    }
    if g.group_state.as_str() == "Dead" && g.members.is_empty() && committed.is_empty() {
        return kafka_fail(69, None);
    }
    // Partitions assigned to a member but never committed are listed too, with no committed
    // offset and no lag (where such a consumer starts depends on its `auto.offset.reset`,
    // which the server does not know), as `kafka-consumer-groups --describe` shows them.
    let mut assigned: BTreeMap<(String, i32), ()> = BTreeMap::new();
    for m in &members {
        if let Some(a) = m["assignment"].as_object() {
            for (topic, parts) in a {
                for p in parts.as_array().into_iter().flatten() {
                    if let Some(p) = p.as_i64().and_then(|p| i32::try_from(p).ok()) {
                        assigned.insert((topic.clone(), p), ());
                    }
                }
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in committed.keys().chain(assigned.keys()) {
        let parts = by_topic.entry(t.clone()).or_default();
        if !parts.contains(p) {
            parts.push(*p);
        }
    }
    let marks = match watermarks(&k, &by_topic).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut total_lag: i64 = 0;
    let uncommitted = assigned
        .keys()
        .filter(|k| !committed.contains_key(*k))
        .map(|k| (k, None));
    let offsets: Vec<Value> = committed
        .iter()
        .map(|(k, o)| (k, Some(*o)))
        .chain(uncommitted)
        .map(|((topic, partition), offset)| {
            let end = marks
                .get(&(topic.clone(), *partition))
                .and_then(|(_, hi)| *hi);
            let lag = match (end, offset) {
                (Some(e), Some(o)) if o >= 0 => Some((e - o).max(0)),
                (Some(e), Some(_)) => Some(e.max(0)),
                _ => None,
            };
            total_lag = total_lag.saturating_add(lag.unwrap_or(0));
            json!({
                "topic": topic,
                "partition": partition,
                "committed_offset": offset.filter(|o| *o >= 0),
                "log_end_offset": end,
                "lag": lag,
            })
        })
        .collect();
    Json(json!({
        "group_id": id,
        "state": g.group_state.to_string(),
        "protocol_type": g.protocol_type.to_string(),
        "protocol": g.protocol_data.to_string(),
        "members": members,
        "offsets": offsets,
        "total_lag": total_lag,
    }))
    .into_response()
}
