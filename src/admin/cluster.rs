//! `GET /v1/cluster` (cluster id, brokers as the gateway advertises them, controller, topic
//! and partition counts the caller may see, the listeners, the registry's URL) and
//! `GET /v1/schemas` (where the Confluent-compatible schema registry API is, with links).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gatehouse_policy::acl::CLUSTER_NAME;
use serde_json::{Map, Value, json};

use super::AdminState;
use super::rest::authenticate;
use super::topics::metadata;

/// `GET /v1/cluster`.
pub(super) async fn cluster(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(
        &s,
        &headers,
        peer,
        "cluster.describe",
        ("Cluster", CLUSTER_NAME),
    )
    .await
    {
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
    let mut brokers: Vec<Value> = md
        .brokers
        .iter()
        .map(|b| {
            json!({
                "node_id": b.node_id.0,
                "host": b.host.to_string(),
                "port": b.port,
                "rack": b.rack.as_ref().map(|r| r.to_string()),
            })
        })
        .collect();
    brokers.sort_by_key(|b| b["node_id"].as_i64());
    let visible: Vec<_> = md.topics.iter().filter(|t| t.error_code == 0).collect();
    let partitions: usize = visible.iter().map(|t| t.partitions.len()).sum();
    let listeners: Map<String, Value> = ctx
        .rest
        .listeners
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let (_, parts) = s.health.snapshot();
    Json(json!({
        "cluster_id": md.cluster_id.as_ref().map(|c| c.to_string()),
        "controller_id": md.controller_id.0,
        "brokers": brokers,
        "topic_count": visible.len(),
        "partition_count": partitions,
        "listeners": listeners,
        "registry_url": ctx.rest.registry_url,
        "health": parts,
        "principal": ctx.caller.principal.to_string(),
    }))
    .into_response()
}

/// `GET /v1/schemas`: the registry's base URL and the Confluent endpoints to use.
pub(super) async fn schemas(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "schema.overview", ("Subject", "*")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let base = ctx.rest.registry_url.clone();
    let link = |path: &str| base.as_ref().map(|b| format!("{b}{path}"));
    Json(json!({
        "registry_url": base,
        "authentication": "the same users and tokens as this API (HTTP Basic or Bearer)",
        "links": {
            "subjects": link("/subjects"),
            "subject_versions": link("/subjects/{subject}/versions"),
            "subject_version": link("/subjects/{subject}/versions/{version}"),
            "schema_by_id": link("/schemas/ids/{id}"),
            "schema_types": link("/schemas/types"),
            "config": link("/config"),
            "subject_config": link("/config/{subject}"),
            "mode": link("/mode"),
            "compatibility": link("/compatibility/subjects/{subject}/versions/{version}"),
        },
        "docs": "docs/registry.md",
    }))
    .into_response()
}
