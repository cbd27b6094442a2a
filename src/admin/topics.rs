//! `/v1/topics…`: list, create, describe, delete (with a confirmation token) and alter configs
//! of topics, as the caller, through the gateway (see [`super::rest`]). Governance configs
//! (`confluent.*`, `gatehouse.*`) are ordinary topic configs here: the gateway stores them in
//! `_gatehouse_topics` and merges them into DescribeConfigs, and the listing summarizes them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_compliance::EventType;
use gatehouse_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use gatehouse_protocol::messages::delete_topics_request::DeleteTopicState;
use gatehouse_protocol::messages::describe_configs_request::DescribeConfigsResource;
use gatehouse_protocol::messages::describe_configs_response::DescribeConfigsResult;
use gatehouse_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use gatehouse_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use gatehouse_protocol::messages::metadata_request::MetadataRequestTopic;
use gatehouse_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    TopicName,
};
use serde_json::{Map, Value, json};

use super::rest::{Kafka, authenticate, kafka_fail, sb};
use super::{AdminState, body_json, fail};

/// DescribeConfigs / IncrementalAlterConfigs resource type of a topic.
const TOPIC: i8 = 2;
/// How long CreateTopics / DeleteTopics may take at the broker.
const TOPIC_TIMEOUT_MS: i32 = 30_000;

/// Metadata for `topics` (`None`: every topic the caller may describe).
pub(super) async fn metadata(
    k: &Kafka,
    topics: Option<&[String]>,
) -> Result<MetadataResponse, Response> {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|t| {
            t.iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(sb(n)))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    k.send(req).await
}

/// `(earliest, latest)` offsets per (topic, partition); a partition that failed is missing.
pub(super) async fn watermarks(
    k: &Kafka,
    partitions: &BTreeMap<String, Vec<i32>>,
) -> Result<BTreeMap<(String, i32), (Option<i64>, Option<i64>)>, Response> {
    let mut out: BTreeMap<(String, i32), (Option<i64>, Option<i64>)> = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    for (timestamp, latest) in [(-2i64, false), (-1i64, true)] {
        let topics = partitions
            .iter()
            .map(|(t, ps)| {
                ListOffsetsTopic::default()
                    .with_name(TopicName(sb(t)))
                    .with_partitions(
                        ps.iter()
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )
            })
            .collect();
        let resp = k
            .send(
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_isolation_level(0)
                    .with_topics(topics),
            )
            .await?;
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    continue;
                }
                let e = out
                    .entry((t.name.0.to_string(), p.partition_index))
                    .or_default();
                if latest {
                    e.1 = Some(p.offset);
                } else {
                    e.0 = Some(p.offset);
                }
            }
        }
    }
    Ok(out)
}

/// Kafka's `ConfigSource` name.
fn source_name(code: i8) -> &'static str {
    match code {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// Whether `key` is a governance config the gateway keeps (`confluent.*`, `gatehouse.*`).
fn is_governance(key: &str) -> bool {
    key.starts_with("confluent.") || key.starts_with("gatehouse.")
}

/// The governance summary of a topic from its configs (name → value).
fn governance(configs: &BTreeMap<String, Option<String>>) -> Value {
    let get = |k: &str| configs.get(k).cloned().flatten();
    let truthy = |k: &str| get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let validation = |side: &str| match get(&format!("gatehouse.{side}.schema.validation")) {
        Some(v) if !v.is_empty() => v.to_ascii_lowercase(),
        _ => {
            if truthy(&format!("confluent.{side}.schema.validation")) {
                "schema-id".to_string()
            } else {
                "none".to_string()
            }
        }
    };
    json!({
        "value_validation": validation("value"),
        "key_validation": validation("key"),
        "encryption": truthy("gatehouse.encryption"),
        "encryption_readers": if truthy("gatehouse.encryption") {
            Some(get("gatehouse.encryption.readers").unwrap_or_else(|| "all".to_string()))
        } else {
            None
        },
        "pan_guard": truthy("gatehouse.pan.guard"),
        "dead_letter_topic": get("gatehouse.dead.letter.topic"),
    })
}

/// DescribeConfigs for `topics` (all keys); results by topic name.
async fn describe_configs(
    k: &Kafka,
    topics: &[String],
) -> Result<BTreeMap<String, DescribeConfigsResult>, Response> {
    if topics.is_empty() {
        return Ok(BTreeMap::new());
    }
    let req = DescribeConfigsRequest::default()
        .with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(TOPIC)
                        .with_resource_name(sb(t))
                        .with_configuration_keys(None)
                })
                .collect(),
        )
        .with_include_synonyms(false)
        .with_include_documentation(false);
    let resp = k.send(req).await?;
    Ok(resp
        .results
        .into_iter()
        .map(|r| (r.resource_name.to_string(), r))
        .collect())
}

fn config_map(r: &DescribeConfigsResult) -> BTreeMap<String, Option<String>> {
    r.configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
        .collect()
}

/// `GET /v1/topics`.
pub(super) async fn list(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "topic.list", ("Topic", "*")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let md = match metadata(&k, None).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut topics: Vec<(String, usize, bool)> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| {
            t.name
                .as_ref()
                .map(|n| (n.0.to_string(), t.partitions.len(), t.is_internal))
        })
        .collect();
    topics.sort();
    let names: Vec<String> = topics.iter().map(|t| t.0.clone()).collect();
    let configs = match describe_configs(&k, &names).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let rows: Vec<Value> = topics
        .into_iter()
        .map(|(name, partitions, internal)| {
            let (gov, err) = match configs.get(&name) {
                Some(r) if r.error_code == 0 => (governance(&config_map(r)), None),
                Some(r) => (
                    Value::Null,
                    Some(crate::user_cli::kafka_error(
                        r.error_code,
                        r.error_message.as_ref(),
                    )),
                ),
                None => (Value::Null, None),
            };
            let mut v = json!({
                "name": name,
                "partitions": partitions,
                "internal": internal,
                "governance": gov,
            });
            if let Some(e) = err {
                v["governance_error"] = Value::String(e);
            }
            v
        })
        .collect();
    Json(json!({ "topics": rows })).into_response()
}

/// `GET /v1/topics/{name}`.
pub(super) async fn describe(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "topic.describe", ("Topic", &name)).await {
        Ok(c) => c,
        Err(r) => return r,
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
    let mut parts: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    parts.sort_unstable();
    let marks = match watermarks(&k, &BTreeMap::from([(name.clone(), parts)])).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| {
            let (lo, hi) = marks
                .get(&(name.clone(), p.partition_index))
                .copied()
                .unwrap_or((None, None));
            json!({
                "partition": p.partition_index,
                "leader": p.leader_id.0,
                "replicas": p.replica_nodes.iter().map(|r| r.0).collect::<Vec<_>>(),
                "isr": p.isr_nodes.iter().map(|r| r.0).collect::<Vec<_>>(),
                "earliest_offset": lo,
                "latest_offset": hi,
                "error": (p.error_code != 0).then(|| crate::user_cli::kafka_error_name(p.error_code)),
            })
        })
        .collect();
    partitions.sort_by_key(|p| p["partition"].as_i64());
    let configs = match describe_configs(&k, std::slice::from_ref(&name)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut out = json!({
        "name": name,
        "internal": t.is_internal,
        "topic_id": t.topic_id.to_string(),
        "partitions": partitions,
        "rejected_records": rejected_records(&s, &name),
    });
    match configs.get(&name) {
        Some(r) if r.error_code == 0 => {
            let mut cfg = Map::new();
            let mut sorted: Vec<_> = r.configs.iter().collect();
            sorted.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
            for c in sorted {
                cfg.insert(
                    c.name.to_string(),
                    json!({
                        "value": if c.is_sensitive { None } else { c.value.as_ref().map(|v| v.to_string()) },
                        "source": source_name(c.config_source),
                        "read_only": c.read_only,
                        "sensitive": c.is_sensitive,
                        "governance": is_governance(c.name.as_str()),
                    }),
                );
            }
            out["governance"] = governance(&config_map(r));
            out["configs"] = Value::Object(cfg);
        }
        Some(r) => {
            out["configs"] = Value::Null;
            out["governance"] = Value::Null;
            out["configs_error"] = Value::String(crate::user_cli::kafka_error(
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
        None => {
            out["configs"] = Value::Null;
            out["governance"] = Value::Null;
        }
    }
    Json(out).into_response()
}

/// Records of `topic` this node's gateway refused by its data policy since start (schema
/// validation, data contracts, PAN guard: the poison pills), from the gateway's counters
/// (`gatehouse_gateway_rejected_records_total`); `None` when no gateway is attached.
fn rejected_records(s: &AdminState, topic: &str) -> Option<u64> {
    let snapshot = super::lock_slot(&s.gateway)
        .as_ref()
        .map(gatehouse_gateway::Gateway::metrics)?;
    Some(snapshot.rejected_records.get(topic).copied().unwrap_or(0))
}

/// A config value from JSON: strings as they are, numbers and booleans as text.
fn config_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `configs` of a body as (key, value) pairs, or the reason it is invalid.
fn configs_of(v: Option<&Value>, what: &str) -> Result<Vec<(String, String)>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                config_value(v)
                    .map(|s| (k.clone(), s))
                    .ok_or_else(|| format!("{what}.{k}: expected a string, number or boolean"))
            })
            .collect(),
        Some(_) => Err(format!(
            "{what} must be an object of config names to values"
        )),
    }
}

fn int_field(v: &Value, key: &str, default: i64) -> Result<i64, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x
            .as_i64()
            .ok_or_else(|| format!("{key} must be an integer")),
    }
}

/// `POST /v1/topics`.
pub(super) async fn create(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "topic.create", ("Topic", "(unnamed)")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let parsed = match body_json(&body) {
        Ok(v) => v,
        Err(r) => {
            return ctx
                .refuse(EventType::Topic, ("Topic", "(unnamed)"), "Create", *r)
                .await;
        }
    };
    let name = parsed
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let checked = (|| {
        if name.is_empty() {
            return Err("the body must name the topic: {\"name\": \"...\"}".to_string());
        }
        let partitions = int_field(&parsed, "partitions", -1)?;
        let replication = int_field(&parsed, "replication_factor", -1)?;
        let partitions = i32::try_from(partitions).map_err(|_| "partitions is out of range")?;
        let replication =
            i16::try_from(replication).map_err(|_| "replication_factor is out of range")?;
        let configs = configs_of(parsed.get("configs"), "configs")?;
        Ok((partitions, replication, configs))
    })();
    let label = if name.is_empty() { "(unnamed)" } else { &name };
    let (partitions, replication, configs) = match checked {
        Ok(x) => x,
        Err(m) => {
            let r = fail(StatusCode::UNPROCESSABLE_ENTITY, 42212, m);
            return ctx
                .refuse(EventType::Topic, ("Topic", label), "Create", r)
                .await;
        }
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let topic = CreatableTopic::default()
        .with_name(TopicName(sb(&name)))
        .with_num_partitions(partitions)
        .with_replication_factor(replication)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(sb(k))
                        .with_value(Some(sb(v)))
                })
                .collect(),
        );
    let resp = match k
        .send(
            CreateTopicsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(TOPIC_TIMEOUT_MS),
        )
        .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(r) = resp.topics.first() else {
        return kafka_fail(-1, None);
    };
    if r.error_code != 0 {
        return kafka_fail(r.error_code, r.error_message.as_ref());
    }
    let cfg: Map<String, Value> = configs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    (
        StatusCode::CREATED,
        Json(json!({
            "name": name,
            "partitions": if r.num_partitions > 0 { r.num_partitions } else { partitions },
            "replication_factor": if r.replication_factor > 0 { r.replication_factor } else { replication },
            "configs": cfg,
        })),
    )
        .into_response()
}

/// `DELETE /v1/topics/{name}?confirm={name}`.
pub(super) async fn delete(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "topic.delete", ("Topic", &name)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if query.get("confirm").map(String::as_str) != Some(name.as_str()) {
        let r = fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            42211,
            format!(
                "Deleting a topic deletes its records: confirm with ?confirm={name} (the topic's name)"
            ),
        );
        return ctx
            .refuse(EventType::Topic, ("Topic", &name), "Delete", r)
            .await;
    }
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let version = match k.version::<DeleteTopicsRequest>() {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut req = DeleteTopicsRequest::default().with_timeout_ms(TOPIC_TIMEOUT_MS);
    if version >= 6 {
        req = req.with_topics(vec![
            DeleteTopicState::default().with_name(Some(TopicName(sb(&name)))),
        ]);
    } else {
        req = req.with_topic_names(vec![TopicName(sb(&name))]);
    }
    let resp = match k.send(req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(r) = resp.responses.first() else {
        return kafka_fail(-1, None);
    };
    if r.error_code != 0 {
        return kafka_fail(r.error_code, r.error_message.as_ref());
    }
    Json(json!({ "name": name, "deleted": true })).into_response()
}

/// `PATCH /v1/topics/{name}/configs` with `{"set": {k: v}, "delete": [k]}`.
pub(super) async fn alter_configs(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "topic.alter_configs", ("Topic", &name)).await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    let parsed = match body_json(&body) {
        Ok(v) => v,
        Err(r) => {
            return ctx
                .refuse(EventType::Topic, ("Topic", &name), "AlterConfigs", *r)
                .await;
        }
    };
    let checked = (|| {
        let set = configs_of(parsed.get("set"), "set")?;
        let delete: Vec<String> = match parsed.get("delete") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "delete must be an array of config names".to_string())
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("delete must be an array of config names".to_string()),
        };
        if set.is_empty() && delete.is_empty() {
            return Err(
                "nothing to change: give {\"set\": {...}} and/or {\"delete\": [...]}".to_string(),
            );
        }
        if let Some((k, _)) = set.iter().find(|(k, _)| delete.contains(k)) {
            return Err(format!("{k} is both set and deleted"));
        }
        Ok((set, delete))
    })();
    let (set, delete) = match checked {
        Ok(x) => x,
        Err(m) => {
            let r = fail(StatusCode::UNPROCESSABLE_ENTITY, 42212, m);
            return ctx
                .refuse(EventType::Topic, ("Topic", &name), "AlterConfigs", r)
                .await;
        }
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut ops: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(sb(k))
                .with_config_operation(0)
                .with_value(Some(sb(v)))
        })
        .collect();
    ops.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(sb(k))
            .with_config_operation(1)
            .with_value(None)
    }));
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(sb(&name))
            .with_configs(ops),
    ]);
    let resp = match k.send(req).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(r) = resp.responses.first() else {
        return kafka_fail(-1, None);
    };
    if r.error_code != 0 {
        return kafka_fail(r.error_code, r.error_message.as_ref());
    }
    let set: Map<String, Value> = set
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Json(json!({ "name": name, "set": set, "deleted": delete })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governance_summary() {
        let mut c = BTreeMap::new();
        c.insert(
            "confluent.value.schema.validation".to_string(),
            Some("true".to_string()),
        );
        c.insert("gatehouse.encryption".to_string(), Some("true".to_string()));
        let g = governance(&c);
        assert_eq!(g["value_validation"], "schema-id");
        assert_eq!(g["key_validation"], "none");
        assert_eq!(g["encryption"], true);
        assert_eq!(g["encryption_readers"], "all");
        assert_eq!(g["pan_guard"], false);
        c.insert(
            "gatehouse.value.schema.validation".to_string(),
            Some("full".to_string()),
        );
        assert_eq!(governance(&c)["value_validation"], "full");
    }

    #[test]
    fn config_values() {
        let v = json!({"a": "x", "b": 3, "c": true});
        let mut got = configs_of(Some(&v), "configs").expect("valid");
        got.sort();
        assert_eq!(got.len(), 3);
        assert!(configs_of(Some(&json!({"a": null})), "configs").is_err());
        assert!(configs_of(Some(&json!([1])), "configs").is_err());
    }
}
