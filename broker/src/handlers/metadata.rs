//! Metadata, FindCoordinator and DescribeCluster: this node leads every partition and
//! coordinates every group.

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use gatehouse_protocol::messages::find_coordinator_response::Coordinator;
use gatehouse_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use gatehouse_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::state::BrokerState;
use crate::topics::{Topic, validate_topic_name};

const NO_OPERATIONS: i32 = i32::MIN;

/// True when `name` exists, creating it first if auto-creation is on and the name is valid.
pub(crate) async fn ensure_topic(state: &BrokerState, name: &str) -> bool {
    if state.topics.get(name).is_some() {
        return true;
    }
    if !state.config.auto_create_topics || validate_topic_name(name).is_err() {
        return false;
    }
    match state
        .topics
        .create(
            name,
            state.config.default_partitions.max(1),
            BTreeMap::new(),
        )
        .await
    {
        Ok(_) => true,
        Err(crate::topics::CreateError::Exists) => true,
        Err(e) => {
            tracing::warn!(topic = name, error = ?e, "Auto-creating a topic failed.");
            false
        }
    }
}

fn node(state: &BrokerState) -> BrokerId {
    BrokerId(state.config.node_id)
}

fn topic_entry(state: &BrokerState, t: &Topic) -> MetadataResponseTopic {
    let partitions = (0..t.partitions.len() as i32)
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(node(state))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node(state)])
                .with_isr_nodes(vec![node(state)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(uuid::Uuid::from_bytes(t.id))
        .with_is_internal(t.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(NO_OPERATIONS)
}

/// Metadata: the one broker and the requested (or all) topics.
pub(crate) async fn metadata(
    state: Arc<BrokerState>,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let mut topics = Vec::new();
    if all {
        for t in state.topics.all() {
            topics.push(topic_entry(&state, &t));
        }
    } else {
        for rt in req.topics.unwrap_or_default() {
            let by_id = (!rt.topic_id.is_nil())
                .then(|| state.topics.get_by_id(rt.topic_id.as_bytes()))
                .flatten();
            let name = rt.name.as_ref().map(|n| n.0.to_string());
            let found = match (&by_id, &name) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(n)) => {
                    let auto = version < 4 || req.allow_auto_topic_creation;
                    if auto {
                        ensure_topic(&state, n).await;
                    }
                    state.topics.get(n)
                }
                (None, None) => None,
            };
            match found {
                Some(t) => topics.push(topic_entry(&state, &t)),
                None => {
                    let code = match &name {
                        Some(n) if validate_topic_name(n).is_err() => {
                            ErrorCode::InvalidTopicException
                        }
                        Some(_) => ErrorCode::UnknownTopicOrPartition,
                        None => ErrorCode::UnknownTopicId,
                    };
                    topics.push(
                        MetadataResponseTopic::default()
                            .with_error_code(code.code())
                            .with_name(rt.name.clone())
                            .with_topic_id(rt.topic_id)
                            .with_topic_authorized_operations(NO_OPERATIONS),
                    );
                }
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(node(&state))
                .with_host(StrBytes::from_string(state.advertised_host.clone()))
                .with_port(state.advertised_port),
        ])
        .with_cluster_id(Some(StrBytes::from_string(state.cluster_id.clone())))
        .with_controller_id(node(&state))
        .with_topics(topics)
        .with_cluster_authorized_operations(NO_OPERATIONS)
}

/// FindCoordinator: this node for every group; transactions are not supported.
pub(crate) fn find_coordinator(
    state: &BrokerState,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = StrBytes::from_string(state.advertised_host.clone());
    let answer = |key: StrBytes| -> Coordinator {
        if req.key_type != 0 {
            Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::from_static_str(""))
                .with_port(-1)
                .with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "transactions are not supported by the bundled broker",
                )))
        } else {
            Coordinator::default()
                .with_key(key)
                .with_node_id(node(state))
                .with_host(host.clone())
                .with_port(state.advertised_port)
        }
    };
    if version >= 4 {
        let coordinators = req.coordinator_keys.iter().cloned().map(answer).collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let c = answer(req.key.clone());
        FindCoordinatorResponse::default()
            .with_error_code(c.error_code)
            .with_error_message(c.error_message)
            .with_node_id(c.node_id)
            .with_host(c.host)
            .with_port(c.port)
    }
}

/// DescribeCluster (KIP-700).
pub(crate) fn describe_cluster(
    state: &BrokerState,
    _req: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(state.cluster_id.clone()))
        .with_controller_id(node(state))
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(node(state))
                .with_host(StrBytes::from_string(state.advertised_host.clone()))
                .with_port(state.advertised_port),
        ])
        .with_cluster_authorized_operations(NO_OPERATIONS)
}
