//! Governance configs in the admin APIs: CreateTopics, AlterConfigs,
//! IncrementalAlterConfigs, DescribeConfigs and DeleteTopics are intercepted after
//! authorization. `confluent.*` / `gatehouse.*` keys are checked, taken out of the request and
//! stored in `_gatehouse_topics` (see `governance.rs`); the rest is forwarded. DescribeConfigs
//! answers get them merged back; deleting a topic tombstones them. A topic whose keys are
//! encrypted (`gatehouse.encryption.key=true`) cannot be made compacted, at creation or later.
//!
//! Ordering: CreateTopics marks the topics *pending* before forwarding (produce to them is
//! refused, retriably) and stores their governance configs once the upstream created them,
//! before the client gets its answer; AlterConfigs and IncrementalAlterConfigs store the new
//! governance state before forwarding the rest.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use gatehouse_protocol::ProtocolError;
use gatehouse_protocol::header::{decode_body, encode_response, split_response};
use gatehouse_protocol::kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use gatehouse_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use gatehouse_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use gatehouse_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use gatehouse_protocol::messages::incremental_alter_configs_request::AlterConfigsResource as IncAlterConfigsResource;
use gatehouse_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncResourceResponse;
use gatehouse_protocol::messages::*;

use crate::authz::{Route, with_size_prefix};
use crate::governance::{self, Governance};

/// Work to do on the response after `post`, asynchronously (storing governance state).
pub(crate) type Then =
    Box<dyn FnOnce(Bytes) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>> + Send>;

/// INVALID_CONFIG.
const INVALID_CONFIG: i16 = 40;
/// UNKNOWN_SERVER_ERROR.
const UNKNOWN_SERVER_ERROR: i16 = -1;
/// Topic config resource type.
const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs `config_source` for a topic's own setting.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

fn body<M: Decodable>(frame: &Bytes, body_offset: usize, version: i16) -> Result<M, ProtocolError> {
    decode_body(frame.slice(body_offset..), version)
}

fn reencode<M: Encodable>(
    frame: &Bytes,
    body_offset: usize,
    version: i16,
    m: &M,
) -> Result<Bytes, ProtocolError> {
    let size = m.compute_size(version).map_err(ProtocolError::codec)?;
    let mut out = BytesMut::with_capacity(body_offset + size);
    out.extend_from_slice(&frame[..body_offset]);
    m.encode(&mut out, version).map_err(ProtocolError::codec)?;
    Ok(out.freeze())
}

/// Decodes a size-prefixed response frame as `M`, lets `f` change it, re-encodes it.
fn rewrite<M>(framed: Bytes, version: i16, f: impl FnOnce(&mut M)) -> Result<Bytes, String>
where
    M: Decodable + Encodable + HeaderVersion,
{
    let (correlation_id, b) =
        split_response(framed.slice(4..), M::header_version(version)).map_err(|e| e.to_string())?;
    let mut m: M = decode_body(b, version).map_err(|e| e.to_string())?;
    f(&mut m);
    encode_response(correlation_id, version, &m).map_err(|e| e.to_string())
}

/// What the connection forwards: the route, and work to do on the response.
pub(crate) struct Intercepted {
    pub route: Route,
    pub then: Option<Then>,
    /// When the request became empty: an empty upstream answer to run `post` and `then` on
    /// instead of forwarding.
    pub synthesized: Option<Bytes>,
}

impl Intercepted {
    fn pass(route: Route) -> Self {
        Self {
            route,
            then: None,
            synthesized: None,
        }
    }
}

/// Intercepts the governance-relevant admin APIs. Other routes pass unchanged.
pub(crate) async fn intercept(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body_offset: usize,
    route: Route,
    gov: &Governance,
) -> Result<Intercepted, ProtocolError> {
    let Route::Forward { frame, post } = route else {
        return Ok(Intercepted::pass(route));
    };
    match api {
        ApiKey::CreateTopics => {
            create_topics(version, correlation_id, body_offset, frame, post, gov)
        }
        ApiKey::DeleteTopics => Ok(delete_topics(version, frame, post, gov)),
        ApiKey::AlterConfigs => {
            alter_configs(version, correlation_id, body_offset, frame, post, gov).await
        }
        ApiKey::IncrementalAlterConfigs => {
            incremental(version, correlation_id, body_offset, frame, post, gov).await
        }
        ApiKey::DescribeConfigs => describe_configs(version, body_offset, frame, post, gov),
        _ => Ok(Intercepted::pass(Route::Forward { frame, post })),
    }
}

/// Why a key-encrypted topic cannot be compacted (at creation or later).
const KEY_ENCRYPTION_VS_COMPACTION: &str = "gatehouse.encryption.key=true cannot be used with \
     cleanup.policy=compact: encrypted keys are all distinct, so compaction would keep every record";

/// A config entry that makes a topic compacted (`op`: IncrementalAlterConfigs' SET = 0 or
/// APPEND = 2; AlterConfigs always sets).
fn compacts(name: &str, op: i8, value: Option<&str>) -> bool {
    name == "cleanup.policy" && matches!(op, 0 | 2) && value.is_some_and(|v| v.contains("compact"))
}

fn key_encrypted(configs: &BTreeMap<String, String>) -> bool {
    configs.get("gatehouse.encryption.key").map(String::as_str) == Some("true")
}

fn split_configs<'a>(
    configs: impl Iterator<Item = (&'a StrBytes, Option<&'a StrBytes>)>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut gov = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, value) in configs {
        if !governance::is_governance_key(name) {
            continue;
        }
        match governance::check(name, value.map(|v| v.as_str())) {
            Ok(()) => {
                gov.insert(
                    name.to_string(),
                    value.map(|v| v.to_string()).unwrap_or_default(),
                );
            }
            Err(e) => errors.push(e),
        }
    }
    (gov, errors)
}

fn create_topics(
    version: i16,
    correlation_id: i32,
    body_offset: usize,
    frame: Bytes,
    post: Option<crate::authz::Post>,
    gov: &Governance,
) -> Result<Intercepted, ProtocolError> {
    let mut r: CreateTopicsRequest = body(&frame, body_offset, version)?;
    if !r.topics.iter().any(|t| {
        t.configs
            .iter()
            .any(|c| governance::is_governance_key(&c.name))
    }) {
        return Ok(Intercepted::pass(Route::Forward { frame, post }));
    }
    let mut invalid = Vec::new();
    let mut pending: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    r.topics.retain_mut(|t| {
        let (configs, mut errors) =
            split_configs(t.configs.iter().map(|c| (&c.name, c.value.as_ref())));
        // A random IV makes every encrypted key unique: compaction would keep every record.
        let compacted = t
            .configs
            .iter()
            .any(|c| compacts(&c.name, 0, c.value.as_deref()));
        if compacted && key_encrypted(&configs) {
            errors.push(KEY_ENCRYPTION_VS_COMPACTION.to_string());
        }
        if !errors.is_empty() {
            invalid.push(
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(INVALID_CONFIG)
                    .with_error_message(Some(s(errors.join("; "))))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            );
            return false;
        }
        t.configs
            .retain(|c| !governance::is_governance_key(&c.name));
        if !configs.is_empty() {
            pending.insert(t.name.to_string(), configs);
        }
        true
    });
    let validate_only = r.validate_only;
    let names: Vec<String> = pending.keys().cloned().collect();
    if !validate_only {
        gov.mark_pending(&names);
    }
    let gov = gov.clone();
    let then: Then = Box::new(move |framed: Bytes| {
        Box::pin(async move {
            let (correlation_id, b) = split_response(
                framed.slice(4..),
                CreateTopicsResponse::header_version(version),
            )
            .map_err(|e| e.to_string())?;
            let mut resp: CreateTopicsResponse =
                decode_body(b, version).map_err(|e| e.to_string())?;
            for t in &mut resp.topics {
                let Some(configs) = pending.get(t.name.as_str()) else {
                    continue;
                };
                if t.error_code != 0 {
                    continue;
                }
                if validate_only {
                    add_create_configs(t, configs);
                    continue;
                }
                match gov.set(&t.name, configs.clone()).await {
                    Ok(()) => add_create_configs(t, configs),
                    Err(e) => {
                        t.error_code = UNKNOWN_SERVER_ERROR;
                        t.error_message = Some(s(format!(
                            "the topic was created but its governance configs could not be \
                             stored ({e}); produce to it is refused until they are set again \
                             with AlterConfigs"
                        )));
                        continue;
                    }
                }
            }
            if !validate_only {
                // Topics whose creation failed, or whose configs were stored, are settled;
                // a topic whose configs could not be stored stays pending (fail closed).
                let settled: Vec<String> = names
                    .iter()
                    .filter(|n| {
                        resp.topics
                            .iter()
                            .find(|t| t.name.as_str() == n.as_str())
                            .is_none_or(|t| t.error_code != UNKNOWN_SERVER_ERROR)
                    })
                    .cloned()
                    .collect();
                gov.settle(&settled);
            }
            resp.topics.extend(invalid);
            encode_response(correlation_id, version, &resp).map_err(|e| e.to_string())
        })
    });
    if r.topics.is_empty() {
        let empty =
            encode_response(correlation_id, version, &CreateTopicsResponse::default())?.slice(4..);
        return Ok(Intercepted {
            route: Route::Forward { frame, post },
            then: Some(then),
            synthesized: Some(empty),
        });
    }
    let frame = reencode(&frame, body_offset, version, &r)?;
    Ok(Intercepted {
        route: Route::Forward { frame, post },
        then: Some(then),
        synthesized: None,
    })
}

fn add_create_configs(t: &mut CreatableTopicResult, configs: &BTreeMap<String, String>) {
    if let Some(list) = t.configs.as_mut() {
        for (k, v) in configs {
            list.push(
                CreatableTopicConfigs::default()
                    .with_name(s(k.clone()))
                    .with_value(Some(s(v.clone())))
                    .with_config_source(DYNAMIC_TOPIC_CONFIG),
            );
        }
    }
}

fn delete_topics(
    version: i16,
    frame: Bytes,
    post: Option<crate::authz::Post>,
    gov: &Governance,
) -> Intercepted {
    let gov = gov.clone();
    let then: Then = Box::new(move |framed: Bytes| {
        Box::pin(async move {
            let (_, b) = split_response(
                framed.slice(4..),
                DeleteTopicsResponse::header_version(version),
            )
            .map_err(|e| e.to_string())?;
            let resp: DeleteTopicsResponse = decode_body(b, version).map_err(|e| e.to_string())?;
            for t in resp.responses.iter().filter(|t| t.error_code == 0) {
                if let Some(name) = &t.name
                    && let Err(e) = gov.delete(name).await
                {
                    tracing::warn!(topic = %name.as_str(), error = %e,
                            "The deleted topic's governance configs could not be removed.");
                }
            }
            Ok(framed)
        })
    });
    Intercepted {
        route: Route::Forward { frame, post },
        then: Some(then),
        synthesized: None,
    }
}

async fn alter_configs(
    version: i16,
    correlation_id: i32,
    body_offset: usize,
    frame: Bytes,
    post: Option<crate::authz::Post>,
    gov: &Governance,
) -> Result<Intercepted, ProtocolError> {
    let mut r: AlterConfigsRequest = body(&frame, body_offset, version)?;
    if !r
        .resources
        .iter()
        .any(|res| res.resource_type == TOPIC_RESOURCE)
    {
        return Ok(Intercepted::pass(Route::Forward { frame, post }));
    }
    let mut errors: Vec<AlterConfigsResourceResponse> = Vec::new();
    let mut changed = false;
    let mut keep = Vec::with_capacity(r.resources.len());
    for mut res in r.resources.drain(..) {
        if res.resource_type != TOPIC_RESOURCE {
            keep.push(res);
            continue;
        }
        let (configs, mut bad) =
            split_configs(res.configs.iter().map(|c| (&c.name, c.value.as_ref())));
        // AlterConfigs replaces the whole set, so both configs are in this request.
        if key_encrypted(&configs)
            && res
                .configs
                .iter()
                .any(|c| compacts(&c.name, 0, c.value.as_deref()))
        {
            bad.push(KEY_ENCRYPTION_VS_COMPACTION.to_string());
        }
        if !bad.is_empty() {
            errors.push(
                AlterConfigsResourceResponse::default()
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name.clone())
                    .with_error_code(INVALID_CONFIG)
                    .with_error_message(Some(s(bad.join("; ")))),
            );
            changed = true;
            continue;
        }
        // AlterConfigs replaces the whole config set: governance configs not given are cleared.
        if !r.validate_only
            && let Err(e) = gov.set(&res.resource_name, configs).await
        {
            errors.push(
                AlterConfigsResourceResponse::default()
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name.clone())
                    .with_error_code(UNKNOWN_SERVER_ERROR)
                    .with_error_message(Some(s(format!(
                        "governance configs could not be stored: {e}"
                    )))),
            );
            changed = true;
            continue;
        }
        let before = res.configs.len();
        res.configs
            .retain(|c| !governance::is_governance_key(&c.name));
        changed |= res.configs.len() != before;
        keep.push(res);
    }
    r.resources = keep;
    finish(
        version,
        correlation_id,
        body_offset,
        frame,
        post,
        &r,
        r.resources.is_empty(),
        changed,
        errors,
        |resp: &mut AlterConfigsResponse, extra| resp.responses.extend(extra),
        AlterConfigsResponse::default(),
    )
}

async fn incremental(
    version: i16,
    correlation_id: i32,
    body_offset: usize,
    frame: Bytes,
    post: Option<crate::authz::Post>,
    gov: &Governance,
) -> Result<Intercepted, ProtocolError> {
    let mut r: IncrementalAlterConfigsRequest = body(&frame, body_offset, version)?;
    // Intercepted: governance configs, and compaction of a topic whose keys are encrypted.
    let has_governance = |res: &IncAlterConfigsResource| {
        res.configs
            .iter()
            .any(|c| governance::is_governance_key(&c.name))
    };
    let compacting = |res: &IncAlterConfigsResource| {
        res.configs
            .iter()
            .any(|c| compacts(&c.name, c.config_operation, c.value.as_deref()))
    };
    if !r.resources.iter().any(|res| {
        res.resource_type == TOPIC_RESOURCE
            && (has_governance(res)
                || (compacting(res) && key_encrypted(&gov.configs(&res.resource_name))))
    }) {
        return Ok(Intercepted::pass(Route::Forward { frame, post }));
    }
    let mut extra: Vec<IncResourceResponse> = Vec::new();
    let mut keep = Vec::with_capacity(r.resources.len());
    for mut res in r.resources.drain(..) {
        let (governed, compaction) = (has_governance(&res), compacting(&res));
        if res.resource_type != TOPIC_RESOURCE || (!governed && !compaction) {
            keep.push(res);
            continue;
        }
        let mut configs = gov.configs(&res.resource_name);
        let mut bad = Vec::new();
        for c in res
            .configs
            .iter()
            .filter(|c| governance::is_governance_key(&c.name))
        {
            match c.config_operation {
                0 => match governance::check(&c.name, c.value.as_deref()) {
                    Ok(()) => {
                        configs.insert(
                            c.name.to_string(),
                            c.value.as_deref().unwrap_or_default().to_string(),
                        );
                    }
                    Err(e) => bad.push(e),
                },
                1 => {
                    configs.remove(c.name.as_str());
                }
                op => bad.push(format!(
                    "{}: operation {op} (APPEND/SUBTRACT) does not apply to governance configs",
                    c.name.as_str()
                )),
            }
        }
        if compaction && key_encrypted(&configs) {
            bad.push(KEY_ENCRYPTION_VS_COMPACTION.to_string());
        }
        if !governed && bad.is_empty() {
            keep.push(res); // compaction of a topic whose keys are not encrypted
            continue;
        }
        let response = IncResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if !bad.is_empty() {
            extra.push(
                response
                    .with_error_code(INVALID_CONFIG)
                    .with_error_message(Some(s(bad.join("; ")))),
            );
            continue;
        }
        if !r.validate_only
            && let Err(e) = gov.set(&res.resource_name, configs).await
        {
            extra.push(
                response
                    .with_error_code(UNKNOWN_SERVER_ERROR)
                    .with_error_message(Some(s(format!(
                        "governance configs could not be stored: {e}"
                    )))),
            );
            continue;
        }
        res.configs
            .retain(|c| !governance::is_governance_key(&c.name));
        if res.configs.is_empty() {
            extra.push(response);
        } else {
            keep.push(res);
        }
    }
    r.resources = keep;
    finish(
        version,
        correlation_id,
        body_offset,
        frame,
        post,
        &r,
        r.resources.is_empty(),
        true,
        extra,
        |resp: &mut IncrementalAlterConfigsResponse, extra| resp.responses.extend(extra),
        IncrementalAlterConfigsResponse::default(),
    )
}

/// Forwards the trimmed request (or synthesizes an empty answer when nothing is left) and
/// merges `extra` into the response.
#[allow(clippy::too_many_arguments)]
fn finish<Req, Resp, E>(
    version: i16,
    correlation_id: i32,
    body_offset: usize,
    frame: Bytes,
    post: Option<crate::authz::Post>,
    trimmed: &Req,
    empty: bool,
    changed: bool,
    extra: Vec<E>,
    merge: fn(&mut Resp, Vec<E>),
    empty_response: Resp,
) -> Result<Intercepted, ProtocolError>
where
    Req: Encodable,
    Resp: Decodable + Encodable + HeaderVersion + Send + 'static,
    E: Send + 'static,
{
    let then: Option<Then> = if extra.is_empty() {
        None
    } else {
        Some(Box::new(move |framed: Bytes| {
            Box::pin(async move { rewrite::<Resp>(framed, version, |resp| merge(resp, extra)) })
        }))
    };
    if empty {
        let synthesized = encode_response(correlation_id, version, &empty_response)?.slice(4..);
        return Ok(Intercepted {
            route: Route::Forward { frame, post },
            then,
            synthesized: Some(synthesized),
        });
    }
    let frame = if changed {
        reencode(&frame, body_offset, version, trimmed)?
    } else {
        frame
    };
    Ok(Intercepted {
        route: Route::Forward { frame, post },
        then,
        synthesized: None,
    })
}

fn describe_configs(
    version: i16,
    body_offset: usize,
    frame: Bytes,
    post: Option<crate::authz::Post>,
    gov: &Governance,
) -> Result<Intercepted, ProtocolError> {
    let mut r: DescribeConfigsRequest = body(&frame, body_offset, version)?;
    let mut filters: HashMap<String, Option<Vec<String>>> = HashMap::new();
    let mut changed = false;
    for res in r
        .resources
        .iter_mut()
        .filter(|x| x.resource_type == TOPIC_RESOURCE)
    {
        let wanted = res
            .configuration_keys
            .as_ref()
            .map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        if let Some(keys) = res.configuration_keys.as_mut() {
            let before = keys.len();
            keys.retain(|k| !governance::is_governance_key(k));
            changed |= keys.len() != before;
        }
        filters.insert(res.resource_name.to_string(), wanted);
    }
    if filters.is_empty() {
        return Ok(Intercepted::pass(Route::Forward { frame, post }));
    }
    let frame = if changed {
        reencode(&frame, body_offset, version, &r)?
    } else {
        frame
    };
    let gov = gov.clone();
    let then: Then = Box::new(move |framed: Bytes| {
        Box::pin(async move {
            rewrite::<DescribeConfigsResponse>(framed, version, |resp| {
                for res in resp
                    .results
                    .iter_mut()
                    .filter(|x| x.resource_type == TOPIC_RESOURCE && x.error_code == 0)
                {
                    let wanted = filters.get(res.resource_name.as_str()).cloned().flatten();
                    if let Some(w) = &wanted
                        && !w.is_empty()
                    {
                        res.configs
                            .retain(|c| w.iter().any(|k| k.as_str() == c.name.as_str()));
                    }
                    for (k, v) in gov.configs(&res.resource_name) {
                        if wanted
                            .as_ref()
                            .is_some_and(|w| !w.is_empty() && !w.contains(&k))
                        {
                            continue;
                        }
                        res.configs.push(
                            DescribeConfigsResourceResult::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                                .with_config_source(DYNAMIC_TOPIC_CONFIG)
                                .with_read_only(false)
                                .with_is_sensitive(false),
                        );
                    }
                }
            })
        })
    });
    Ok(Intercepted {
        route: Route::Forward { frame, post },
        then: Some(then),
        synthesized: None,
    })
}

/// Applies `post` (or adds the size prefix) to an upstream answer, then `then`.
pub(crate) async fn finish_response(
    frame: Bytes,
    post: Option<crate::authz::Post>,
    then: Option<Then>,
) -> Result<Bytes, String> {
    let framed = match post {
        Some(p) => p(frame).map_err(|e| e.to_string())?,
        None => with_size_prefix(frame),
    };
    match then {
        Some(t) => t(framed).await,
        None => Ok(framed),
    }
}
