//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs and DeleteRecords.

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use gatehouse_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use gatehouse_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use gatehouse_protocol::messages::delete_topics_response::DeletableTopicResult;
use gatehouse_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use gatehouse_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName,
    alter_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;

use crate::state::BrokerState;
use crate::topic_config;
use crate::topics::{AlterError, CreateError};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn create_error(e: &CreateError, name: &str) -> (ErrorCode, String) {
    match e {
        CreateError::Exists => (
            ErrorCode::TopicAlreadyExists,
            format!("topic '{name}' already exists"),
        ),
        CreateError::Unknown => (
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        ),
        CreateError::InvalidName(m) => (ErrorCode::InvalidTopicException, m.clone()),
        CreateError::InvalidPartitions(m) => (ErrorCode::InvalidPartitions, m.clone()),
        CreateError::InvalidConfig(m) => (ErrorCode::InvalidConfig, m.clone()),
        CreateError::Storage(m) => (ErrorCode::UnknownServerError, format!("storage error: {m}")),
    }
}

/// CreateTopics v2-7.
pub(crate) async fn create_topics(
    state: Arc<BrokerState>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let partitions = if !t.assignments.is_empty() {
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            state.config.default_partitions.max(1)
        } else {
            t.num_partitions
        };
        let bad_assignment = t.assignments.iter().any(|a| {
            a.broker_ids.iter().any(|b| b.0 != state.config.node_id) || a.broker_ids.len() > 1
        });
        let mut configs = BTreeMap::new();
        let mut config_error = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => config_error = Some(format!("config '{}' has a null value", c.name)),
            }
        }
        let outcome: Result<(), (ErrorCode, String)> = if t.replication_factor > 1 {
            Err((
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {} is larger than the number of brokers (1); the bundled broker keeps one copy, fsynced",
                    t.replication_factor
                ),
            ))
        } else if t.replication_factor == 0 || t.replication_factor < -1 {
            Err((
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor must be 1 or -1, got {}",
                    t.replication_factor
                ),
            ))
        } else if bad_assignment {
            Err((
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "replica assignments may only name broker {}",
                    state.config.node_id
                ),
            ))
        } else if let Some(m) = config_error {
            Err((ErrorCode::InvalidConfig, m))
        } else if req.validate_only {
            state
                .topics
                .check_create(&name, partitions, &configs)
                .map_err(|e| create_error(&e, &name))
        } else {
            state
                .topics
                .create(&name, partitions, configs.clone())
                .await
                .map(|topic| {
                    result.topic_id = uuid::Uuid::from_bytes(topic.id);
                })
                .map_err(|e| create_error(&e, &name))
        };
        match outcome {
            Ok(()) => {
                result.num_partitions = partitions;
                result.replication_factor = 1;
                if version >= 5 {
                    let described = topic_config::describe(&configs, state.topics.defaults());
                    result.configs = Some(
                        described
                            .into_iter()
                            .map(|e| {
                                CreatableTopicConfigs::default()
                                    .with_name(s(e.name))
                                    .with_value(Some(s(e.value)))
                                    .with_config_source(if e.is_default {
                                        SOURCE_DEFAULT
                                    } else {
                                        SOURCE_TOPIC
                                    })
                            })
                            .collect(),
                    );
                }
            }
            Err((code, message)) => {
                tracing::info!(topic = %name, ?code, %message, "CreateTopics refused.");
                result.error_code = code.code();
                result.error_message = Some(s(message));
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// DeleteTopics v1-6 (by name, or by id from v6).
pub(crate) async fn delete_topics(
    state: Arc<BrokerState>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = Vec::new();
    if version >= 6 {
        for t in &req.topics {
            targets.push((t.name.as_ref().map(|n| n.0.to_string()), t.topic_id));
        }
    } else {
        for n in &req.topic_names {
            targets.push((Some(n.0.to_string()), uuid::Uuid::nil()));
        }
    }
    let mut responses = Vec::new();
    for (name, id) in targets {
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => state.topics.get_by_id(id.as_bytes()).map(|t| t.name),
        };
        let mut r = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(s(n))))
            .with_topic_id(id);
        match resolved {
            None => {
                r.error_code = ErrorCode::UnknownTopicId.code();
                r.error_message = Some(s(format!("no topic has id {id}")));
            }
            Some(n) => match state.topics.delete(&n).await {
                Ok(t) => {
                    let groups = state.groups.clone();
                    let topic = n.clone();
                    let _ = tokio::task::spawn_blocking(move || groups.forget_topic(&topic)).await;
                    r.topic_id = uuid::Uuid::from_bytes(t.id);
                    r.name = Some(TopicName(s(n)));
                }
                Err(crate::BrokerError::UnknownTopic(_)) => {
                    r.error_code = ErrorCode::UnknownTopicOrPartition.code();
                    r.error_message = Some(s(format!("topic '{n}' does not exist")));
                }
                Err(e) => {
                    tracing::error!(topic = %n, error = %e, "Deleting a topic failed.");
                    r.error_code = ErrorCode::UnknownServerError.code();
                    r.error_message = Some(s(e.to_string()));
                }
            },
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// CreatePartitions v0-3.
pub(crate) async fn create_partitions(
    state: Arc<BrokerState>,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let bad_assignment = t.assignments.as_ref().is_some_and(|a| {
            a.iter()
                .any(|x| x.broker_ids.iter().any(|b| b.0 != state.config.node_id))
        });
        let outcome = if bad_assignment {
            Err((
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "replica assignments may only name broker {}",
                    state.config.node_id
                ),
            ))
        } else {
            state
                .topics
                .add_partitions(&name, t.count, req.validate_only)
                .await
                .map_err(|e| create_error(&e, &name))
        };
        if let Err((code, message)) = outcome {
            r.error_code = code.code();
            r.error_message = Some(s(message));
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}

fn broker_configs(state: &BrokerState) -> Vec<(&'static str, String)> {
    let d = state.topics.defaults();
    vec![
        (
            "auto.create.topics.enable",
            state.config.auto_create_topics.to_string(),
        ),
        ("broker.id", state.config.node_id.to_string()),
        ("log.retention.ms", d.retention_ms.to_string()),
        ("log.retention.bytes", d.retention_bytes.to_string()),
        ("log.segment.bytes", d.segment_bytes.to_string()),
        ("log.roll.ms", d.segment_ms.to_string()),
        ("message.max.bytes", d.max_message_bytes.to_string()),
        (
            "num.partitions",
            state.config.default_partitions.to_string(),
        ),
        (
            "socket.request.max.bytes",
            state.config.max_request_bytes.to_string(),
        ),
    ]
}

/// DescribeConfigs v1-4 for topics and this broker.
pub(crate) fn describe_configs(
    state: &BrokerState,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let wanted = |n: &str| {
                // Null or empty means every config, as Kafka treats it.
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == n))
            };
            let base = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match res.resource_type {
                RESOURCE_TOPIC => {
                    let name = res.resource_name.to_string();
                    let Some(topic) = state.topics.get(&name) else {
                        return base
                            .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
                            .with_error_message(Some(s(format!("topic '{name}' does not exist"))));
                    };
                    let configs = topic_config::describe(&topic.configs, state.topics.defaults())
                        .into_iter()
                        .filter(|e| wanted(e.name))
                        .map(|e| {
                            let mut r = DescribeConfigsResourceResult::default()
                                .with_name(s(e.name))
                                .with_value(Some(s(e.value)))
                                .with_config_source(if e.is_default {
                                    SOURCE_DEFAULT
                                } else {
                                    SOURCE_TOPIC
                                })
                                .with_config_type(e.config_type);
                            if version == 0 {
                                r.config_source = if e.is_default {
                                    SOURCE_DEFAULT
                                } else {
                                    SOURCE_TOPIC
                                };
                            }
                            if req.include_documentation {
                                r.documentation = Some(s(e.documentation));
                            }
                            r
                        })
                        .collect();
                    base.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let name = res.resource_name.to_string();
                    if !name.is_empty() && name != state.config.node_id.to_string() {
                        return base
                            .with_error_code(ErrorCode::InvalidRequest.code())
                            .with_error_message(Some(s(format!(
                                "broker '{name}' is not this node ({})",
                                state.config.node_id
                            ))));
                    }
                    let configs = broker_configs(state)
                        .into_iter()
                        .filter(|(n, _)| wanted(n))
                        .map(|(n, v)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(s(n))
                                .with_value(Some(s(v)))
                                .with_read_only(true)
                                .with_config_source(SOURCE_STATIC_BROKER)
                        })
                        .collect();
                    base.with_configs(configs)
                }
                other => base
                    .with_error_code(ErrorCode::InvalidRequest.code())
                    .with_error_message(Some(s(format!(
                        "resource type {other} has no configs here"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn alter_error(e: AlterError, name: &str) -> (ErrorCode, String) {
    match e {
        AlterError::Unknown => (
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        ),
        AlterError::Invalid(m) => (ErrorCode::InvalidConfig, m),
        AlterError::Storage(m) => (ErrorCode::UnknownServerError, format!("storage error: {m}")),
    }
}

async fn alter_one(
    state: &BrokerState,
    resource_type: i8,
    name: &str,
    changes: Result<Vec<(String, Option<String>)>, String>,
    incremental: bool,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    if resource_type == RESOURCE_BROKER {
        return Err((
            ErrorCode::InvalidConfig,
            "broker configs are read-only here; set them in the gatehouse config file".into(),
        ));
    }
    if resource_type != RESOURCE_TOPIC {
        return Err((
            ErrorCode::InvalidRequest,
            format!("resource type {resource_type} has no configs here"),
        ));
    }
    let changes = changes.map_err(|m| (ErrorCode::InvalidConfig, m))?;
    state
        .topics
        .alter_configs(name, changes, incremental, validate_only)
        .await
        .map_err(|e| alter_error(e, name))
}

/// AlterConfigs v0-2: replaces a topic's whole config set.
pub(crate) async fn alter_configs(
    state: Arc<BrokerState>,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let changes = Ok(res
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect());
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Err((code, message)) = alter_one(
            &state,
            res.resource_type,
            &name,
            changes,
            false,
            req.validate_only,
        )
        .await
        {
            r.error_code = code.code();
            r.error_message = Some(s(message));
        }
        responses.push(r);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs v0-1: SET (0), DELETE (1), APPEND (2), SUBTRACT (3).
pub(crate) async fn incremental_alter_configs(
    state: Arc<BrokerState>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let current = state
            .topics
            .get(&name)
            .map(|t| t.configs)
            .unwrap_or_default();
        let mut changes = Vec::new();
        let mut bad = None;
        for c in &res.configs {
            let key = c.name.to_string();
            let value = c.value.as_ref().map(|v| v.to_string());
            match c.config_operation {
                0 => changes.push((key, value)),
                1 => changes.push((key, None)),
                2 | 3 if key == "cleanup.policy" => {
                    let existing = current
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| "delete".into());
                    let mut items: Vec<String> = existing
                        .split(',')
                        .map(|x| x.trim().to_owned())
                        .filter(|x| !x.is_empty())
                        .collect();
                    for v in value
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                    {
                        if c.config_operation == 2 {
                            if !items.iter().any(|i| i == v) {
                                items.push(v.to_owned());
                            }
                        } else {
                            items.retain(|i| i != v);
                        }
                    }
                    changes.push((
                        key,
                        if items.is_empty() {
                            None
                        } else {
                            Some(items.join(","))
                        },
                    ));
                }
                2 | 3 => {
                    bad = Some(format!(
                        "APPEND and SUBTRACT apply to list configs only; '{key}' is not a list"
                    ))
                }
                op => bad = Some(format!("unknown config operation {op} for '{key}'")),
            }
        }
        let changes = match bad {
            Some(m) => Err(m),
            None => Ok(changes),
        };
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Err((code, message)) = alter_one(
            &state,
            res.resource_type,
            &name,
            changes,
            true,
            req.validate_only,
        )
        .await
        {
            r.error_code = code.code();
            r.error_message = Some(s(message));
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// DeleteRecords v0-2: moves the log start offset forward.
pub(crate) async fn delete_records(
    state: Arc<BrokerState>,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(partition) = state.topics.partition(&name, p.partition_index) else {
                        return r.with_error_code(ErrorCode::UnknownTopicOrPartition.code());
                    };
                    let hw = partition.high_watermark();
                    let target = if p.offset == -1 { hw } else { p.offset };
                    if target < 0 || target > hw {
                        return r.with_error_code(ErrorCode::OffsetOutOfRange.code());
                    }
                    match partition.delete_records(target) {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => r.with_error_code(e.error_code().code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
