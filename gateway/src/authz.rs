//! Per-request authorization with Kafka's semantics.
//!
//! Every API key the gateway forwards has a rule here, modelled on Kafka's `KafkaApis`: which
//! resource and operation each part of the request needs, and what the client sees when it is
//! denied. Three shapes:
//!
//! - **whole request** (group membership, FindCoordinator, InitProducerId, DescribeCluster): a
//!   denial is answered by the gateway with the API's error code;
//! - **split** (Produce, OffsetCommit, CreateTopics, DeleteTopics, DeleteRecords, AlterConfigs,
//!   IncrementalAlterConfigs, CreatePartitions, DeleteGroups): denied items are removed from the
//!   request before it is forwarded and put back into the response with the authorization error,
//!   so allowed items still happen, as on a Kafka broker; a request that is entirely allowed is
//!   forwarded byte for byte;
//! - **filtered response** (Fetch, ListOffsets, Metadata, OffsetFetch, DescribeGroups,
//!   ListGroups, DescribeConfigs): the response is checked item by item and what the principal
//!   may not see is replaced by the error (or left out, for list-style answers). Fetch is
//!   checked on the response so partitions that an incremental fetch session (Fetch v7+) keeps
//!   without naming them are covered too: a revoked ACL stops data at once.
//!
//! Internal topics (`_schemas`, `_gatehouse_*`) and groups (`_gatehouse*`) are denied to every client, super users
//! included. Every denial is collected for the audit trail.

use std::collections::HashMap;
use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use gatehouse_policy::{Authorizer, Operation, Principal, ResourceType};
use gatehouse_protocol::ProtocolError;
use gatehouse_protocol::header::{decode_body, encode_response, split_response};
use gatehouse_protocol::kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use gatehouse_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use gatehouse_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use gatehouse_protocol::messages::create_topics_response::CreatableTopicResult;
use gatehouse_protocol::messages::delete_groups_response::DeletableGroupResult;
use gatehouse_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use gatehouse_protocol::messages::delete_topics_response::DeletableTopicResult;
use gatehouse_protocol::messages::describe_groups_response::DescribedGroup;
use gatehouse_protocol::messages::metadata_response::MetadataResponseTopic;
use gatehouse_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use gatehouse_protocol::messages::produce_request::TopicProduceData;
use gatehouse_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use gatehouse_protocol::messages::*;

use crate::rewrite::Rewriter;

/// Kafka error codes used here.
pub(crate) mod code {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_REQUEST: i16 = 42;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    pub const RESOURCE_NOT_FOUND: i16 = 91;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}

/// Kafka's name for the cluster resource.
pub(crate) const CLUSTER: &str = "kafka-cluster";

/// True for topics no client may touch through the gateway.
pub fn is_internal_topic(name: &str) -> bool {
    name == "_schemas" || name.starts_with("_gatehouse_")
}

/// Consumer groups Gatehouse uses itself (the registry's writer election,
/// `_gatehouse_registry`): no client may join, describe or delete them, so none can disturb
/// an election.
pub fn is_internal_group(name: &str) -> bool {
    name.starts_with("_gatehouse")
}

/// Post-processing of an upstream response frame (without size prefix, starting at the
/// correlation id); returns the frame to send to the client (with size prefix).
pub(crate) type Post = Box<dyn FnOnce(Bytes) -> Result<Bytes, ProtocolError> + Send>;

/// What to do with one request.
pub(crate) enum Route {
    /// Answer with this frame (size prefix included).
    Local(Bytes),
    /// Forward this request frame (no size prefix) and post-process the response.
    Forward { frame: Bytes, post: Option<Post> },
    /// Forward a request that gets no response (Produce with acks=0).
    ForwardOneway(Bytes),
    /// Close the connection (after the responses already queued), for this reason.
    Close(String),
}

/// One denied action, for the audit trail.
#[derive(Debug, Clone)]
pub(crate) struct Denial {
    pub resource_type: ResourceType,
    pub name: String,
    pub operation: Operation,
}

/// A connection's view of the authorizer: caches decisions until the ACLs change and
/// collects denials.
pub(crate) struct Access {
    pub principal: Principal,
    pub host: IpAddr,
    authorizer: Authorizer,
    generation: u64,
    cache: HashMap<(ResourceType, String, Operation), bool>,
    pub denials: Vec<Denial>,
}

impl Access {
    pub fn new(principal: Principal, host: IpAddr, authorizer: Authorizer) -> Self {
        let generation = authorizer.generation();
        Self {
            principal,
            host,
            authorizer,
            generation,
            cache: HashMap::new(),
            denials: Vec::new(),
        }
    }

    /// Whether the principal may do `op` on the resource; denials are recorded.
    pub fn allow(&mut self, rt: ResourceType, name: &str, op: Operation) -> bool {
        let allowed = self.check(rt, name, op);
        if !allowed {
            self.denials.push(Denial {
                resource_type: rt,
                name: name.to_string(),
                operation: op,
            });
        }
        allowed
    }

    /// Like [`Access::allow`] but a denial is not recorded (for filtering list answers).
    pub fn quiet(&mut self, rt: ResourceType, name: &str, op: Operation) -> bool {
        self.check(rt, name, op)
    }

    fn check(&mut self, rt: ResourceType, name: &str, op: Operation) -> bool {
        if (rt == ResourceType::Topic && is_internal_topic(name))
            || (rt == ResourceType::Group && is_internal_group(name))
        {
            return false;
        }
        let generation = self.authorizer.generation();
        if generation != self.generation {
            self.cache.clear();
            self.generation = generation;
        }
        if let Some(hit) = self.cache.get(&(rt, name.to_string(), op)) {
            return *hit;
        }
        let allowed = self
            .authorizer
            .authorize(&self.principal, self.host, rt, name, op)
            .allowed;
        if self.cache.len() > 4096 {
            self.cache.clear();
        }
        self.cache.insert((rt, name.to_string(), op), allowed);
        allowed
    }

    fn topic(&mut self, name: &str, op: Operation) -> bool {
        self.allow(ResourceType::Topic, name, op)
    }

    fn group(&mut self, name: &str, op: Operation) -> bool {
        self.allow(ResourceType::Group, name, op)
    }

    fn cluster(&mut self, op: Operation) -> bool {
        self.allow(ResourceType::Cluster, CLUSTER, op)
    }

    /// Kafka's rule for idempotent producers without a transactional id: IDEMPOTENT_WRITE on
    /// the cluster, or WRITE on any topic.
    fn idempotent_write(&mut self) -> bool {
        if self.quiet(ResourceType::Cluster, CLUSTER, Operation::IdempotentWrite) {
            return true;
        }
        if self.authorizer.allowed_any(
            &self.principal,
            self.host,
            ResourceType::Topic,
            Operation::Write,
        ) {
            return true;
        }
        self.cluster(Operation::IdempotentWrite)
    }
}

/// The request being routed.
pub struct Request<'a> {
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
    /// The whole request frame, without size prefix.
    pub frame: &'a Bytes,
    /// Where the body starts in `frame`.
    pub body_offset: usize,
}

impl Request<'_> {
    fn body(&self) -> Bytes {
        self.frame.slice(self.body_offset..)
    }

    fn decode<M: Decodable>(&self) -> Result<M, ProtocolError> {
        decode_body(self.body(), self.version)
    }

    /// The request frame with the original header and a new body.
    fn reencode<M: Encodable>(&self, body: &M) -> Result<Bytes, ProtocolError> {
        let size = body
            .compute_size(self.version)
            .map_err(ProtocolError::codec)?;
        let mut out = BytesMut::with_capacity(self.body_offset + size);
        out.extend_from_slice(&self.frame[..self.body_offset]);
        body.encode(&mut out, self.version)
            .map_err(ProtocolError::codec)?;
        Ok(out.freeze())
    }

    fn respond<M: Encodable + HeaderVersion>(&self, body: &M) -> Result<Route, ProtocolError> {
        Ok(Route::Local(encode_response(
            self.correlation_id,
            self.version,
            body,
        )?))
    }

    fn forward(&self) -> Route {
        Route::Forward {
            frame: self.frame.clone(),
            post: None,
        }
    }
}

/// Builds a [`Post`] that decodes the response as `M`, lets `f` change it and re-encodes it.
pub(crate) fn post<M>(version: i16, f: impl FnOnce(&mut M) + Send + 'static) -> Post
where
    M: Decodable + Encodable + HeaderVersion + Send + 'static,
{
    Box::new(move |frame: Bytes| {
        let (correlation_id, body) = split_response(frame, M::header_version(version))?;
        let mut response: M = decode_body(body, version)?;
        f(&mut response);
        encode_response(correlation_id, version, &response)
    })
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Routes one request of an authenticated principal. `rewriter` rewrites broker addresses in
/// responses for the listener the client came through.
pub(crate) fn route(
    req: &Request<'_>,
    access: &mut Access,
    rewriter: &Rewriter,
) -> Result<Route, ProtocolError> {
    let v = req.version;
    let key =
        ApiKey::try_from(req.api_key).map_err(|_| ProtocolError::UnknownApiKey(req.api_key))?;
    match key {
        ApiKey::Produce => produce(req, access, rewriter),
        ApiKey::Fetch => fetch(req, access),
        ApiKey::ListOffsets => {
            let mut allowed = HashMap::new();
            let r: ListOffsetsRequest = req.decode()?;
            for t in &r.topics {
                let ok = access.topic(&t.name, Operation::Describe);
                allowed.insert(t.name.to_string(), ok);
            }
            if allowed.values().all(|ok| *ok) {
                return Ok(req.forward());
            }
            Ok(Route::Forward {
                frame: req.frame.clone(),
                post: Some(post::<ListOffsetsResponse>(v, move |resp| {
                    for t in &mut resp.topics {
                        if !allowed.get(t.name.as_str()).copied().unwrap_or(false) {
                            for p in &mut t.partitions {
                                p.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                                p.offset = -1;
                                p.timestamp = -1;
                            }
                        }
                    }
                })),
            })
        }
        ApiKey::Metadata => metadata(req, access, rewriter),
        ApiKey::OffsetCommit => offset_commit(req, access),
        ApiKey::OffsetFetch => offset_fetch(req, access),
        ApiKey::FindCoordinator => find_coordinator(req, access, rewriter),
        ApiKey::JoinGroup => {
            let r: JoinGroupRequest = req.decode()?;
            if access.group(&r.group_id, Operation::Read) {
                Ok(req.forward())
            } else {
                req.respond(
                    &JoinGroupResponse::default()
                        .with_error_code(code::GROUP_AUTHORIZATION_FAILED)
                        .with_generation_id(-1),
                )
            }
        }
        ApiKey::Heartbeat => {
            let r: HeartbeatRequest = req.decode()?;
            if access.group(&r.group_id, Operation::Read) {
                Ok(req.forward())
            } else {
                req.respond(
                    &HeartbeatResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED),
                )
            }
        }
        ApiKey::LeaveGroup => {
            let r: LeaveGroupRequest = req.decode()?;
            if access.group(&r.group_id, Operation::Read) {
                Ok(req.forward())
            } else {
                req.respond(
                    &LeaveGroupResponse::default()
                        .with_error_code(code::GROUP_AUTHORIZATION_FAILED),
                )
            }
        }
        ApiKey::SyncGroup => {
            let r: SyncGroupRequest = req.decode()?;
            if access.group(&r.group_id, Operation::Read) {
                Ok(req.forward())
            } else {
                req.respond(
                    &SyncGroupResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED),
                )
            }
        }
        ApiKey::DescribeGroups => {
            let r: DescribeGroupsRequest = req.decode()?;
            let mut allowed = HashMap::new();
            for g in &r.groups {
                let ok = access.group(g, Operation::Describe);
                allowed.insert(g.to_string(), ok);
            }
            if allowed.values().all(|ok| *ok) {
                return Ok(req.forward());
            }
            Ok(Route::Forward {
                frame: req.frame.clone(),
                post: Some(post::<DescribeGroupsResponse>(v, move |resp| {
                    for g in &mut resp.groups {
                        if !allowed.get(g.group_id.as_str()).copied().unwrap_or(false) {
                            let id = g.group_id.clone();
                            *g = DescribedGroup::default()
                                .with_group_id(id)
                                .with_error_code(code::GROUP_AUTHORIZATION_FAILED);
                        }
                    }
                })),
            })
        }
        ApiKey::ListGroups => {
            if access.quiet(ResourceType::Cluster, CLUSTER, Operation::Describe) {
                return Ok(req.forward());
            }
            let response_filter = {
                let principal = access.principal.clone();
                let host = access.host;
                let authorizer = access.authorizer.clone();
                move |resp: &mut ListGroupsResponse| {
                    resp.groups.retain(|g| {
                        authorizer
                            .authorize(
                                &principal,
                                host,
                                ResourceType::Group,
                                &g.group_id,
                                Operation::Describe,
                            )
                            .allowed
                    });
                }
            };
            Ok(Route::Forward {
                frame: req.frame.clone(),
                post: Some(post::<ListGroupsResponse>(v, response_filter)),
            })
        }
        ApiKey::CreateTopics => create_topics(req, access),
        ApiKey::DeleteTopics => delete_topics(req, access),
        ApiKey::DeleteRecords => {
            let mut r: DeleteRecordsRequest = req.decode()?;
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = access.topic(&t.name, Operation::Delete);
                if !ok {
                    denied.push(
                        DeleteRecordsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        DeleteRecordsPartitionResult::default()
                                            .with_partition_index(p.partition_index)
                                            .with_low_watermark(-1)
                                            .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                                    })
                                    .collect(),
                            ),
                    );
                }
                ok
            });
            if denied.is_empty() {
                return Ok(req.forward());
            }
            if r.topics.is_empty() {
                return req.respond(&DeleteRecordsResponse::default().with_topics(denied));
            }
            Ok(Route::Forward {
                frame: req.reencode(&r)?,
                post: Some(post::<DeleteRecordsResponse>(v, move |resp| {
                    resp.topics.extend(denied)
                })),
            })
        }
        ApiKey::InitProducerId => {
            let r: InitProducerIdRequest = req.decode()?;
            let (ok, err) = match &r.transactional_id {
                Some(txn) => (
                    access.allow(ResourceType::TransactionalId, txn, Operation::Write),
                    code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                ),
                None => (
                    access.idempotent_write(),
                    code::CLUSTER_AUTHORIZATION_FAILED,
                ),
            };
            if ok {
                Ok(req.forward())
            } else {
                req.respond(
                    &InitProducerIdResponse::default()
                        .with_error_code(err)
                        .with_producer_id((-1).into())
                        .with_producer_epoch(-1),
                )
            }
        }
        ApiKey::DescribeConfigs => {
            let r: DescribeConfigsRequest = req.decode()?;
            let mut denied = HashMap::new();
            for res in &r.resources {
                if let Some((rt, name, err)) =
                    config_resource(res.resource_type, &res.resource_name)
                    && !access.allow(rt, &name, Operation::DescribeConfigs)
                {
                    denied.insert((res.resource_type, res.resource_name.to_string()), err);
                }
            }
            if denied.is_empty() {
                return Ok(req.forward());
            }
            Ok(Route::Forward {
                frame: req.frame.clone(),
                post: Some(post::<DescribeConfigsResponse>(v, move |resp| {
                    for res in &mut resp.results {
                        if let Some(err) =
                            denied.get(&(res.resource_type, res.resource_name.to_string()))
                        {
                            res.error_code = *err;
                            res.error_message = Some(s(
                                "Not authorized to describe the configs of this resource.",
                            ));
                            res.configs.clear();
                        }
                    }
                })),
            })
        }
        ApiKey::AlterConfigs => {
            let mut r: AlterConfigsRequest = req.decode()?;
            let mut denied = Vec::new();
            r.resources.retain(|res| {
                match config_resource(res.resource_type, &res.resource_name) {
                    Some((rt, name, err)) if !access.allow(rt, &name, Operation::AlterConfigs) => {
                        denied.push(
                            AlterConfigsResourceResponse::default()
                                .with_resource_type(res.resource_type)
                                .with_resource_name(res.resource_name.clone())
                                .with_error_code(err),
                        );
                        false
                    }
                    _ => true,
                }
            });
            split(
                req,
                &r,
                r.resources.is_empty(),
                denied,
                |denied| AlterConfigsResponse::default().with_responses(denied),
                |resp: &mut AlterConfigsResponse, denied| resp.responses.extend(denied),
            )
        }
        ApiKey::IncrementalAlterConfigs => {
            let mut r: IncrementalAlterConfigsRequest = req.decode()?;
            let mut denied = Vec::new();
            r.resources.retain(|res| {
                match config_resource(res.resource_type, &res.resource_name) {
                    Some((rt, name, err)) if !access.allow(rt, &name, Operation::AlterConfigs) => {
                        denied.push(
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name.clone())
                            .with_error_code(err),
                    );
                        false
                    }
                    _ => true,
                }
            });
            split(
                req,
                &r,
                r.resources.is_empty(),
                denied,
                |denied| IncrementalAlterConfigsResponse::default().with_responses(denied),
                |resp: &mut IncrementalAlterConfigsResponse, denied| resp.responses.extend(denied),
            )
        }
        ApiKey::CreatePartitions => {
            let mut r: CreatePartitionsRequest = req.decode()?;
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = access.topic(&t.name, Operation::Alter);
                if !ok {
                    denied.push(
                        CreatePartitionsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(code::TOPIC_AUTHORIZATION_FAILED),
                    );
                }
                ok
            });
            split(
                req,
                &r,
                r.topics.is_empty(),
                denied,
                |denied| CreatePartitionsResponse::default().with_results(denied),
                |resp: &mut CreatePartitionsResponse, denied| resp.results.extend(denied),
            )
        }
        ApiKey::DeleteGroups => {
            let mut r: DeleteGroupsRequest = req.decode()?;
            let mut denied = Vec::new();
            r.groups_names.retain(|g| {
                let ok = access.group(g, Operation::Delete);
                if !ok {
                    denied.push(
                        DeletableGroupResult::default()
                            .with_group_id(g.clone())
                            .with_error_code(code::GROUP_AUTHORIZATION_FAILED),
                    );
                }
                ok
            });
            split(
                req,
                &r,
                r.groups_names.is_empty(),
                denied,
                |denied| DeleteGroupsResponse::default().with_results(denied),
                |resp: &mut DeleteGroupsResponse, denied| resp.results.extend(denied),
            )
        }
        ApiKey::DescribeCluster => {
            if access.cluster(Operation::Describe) {
                let rw = rewriter.clone();
                Ok(Route::Forward {
                    frame: req.frame.clone(),
                    post: Some(post::<DescribeClusterResponse>(v, move |resp| {
                        for b in &mut resp.brokers {
                            let (host, port) = rw.address(b.broker_id.0);
                            b.host = s(&host);
                            b.port = port;
                        }
                    })),
                })
            } else {
                req.respond(
                    &DescribeClusterResponse::default()
                        .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED)
                        .with_error_message(Some(s("Not authorized to describe the cluster."))),
                )
            }
        }
        other => Err(ProtocolError::UnknownApiKey(other as i16)),
    }
}

/// Forwards the trimmed request (or answers alone when nothing is left) and merges the
/// denied items into the response.
fn split<Req, Resp, D>(
    req: &Request<'_>,
    trimmed: &Req,
    nothing_left: bool,
    denied: Vec<D>,
    local: impl FnOnce(Vec<D>) -> Resp,
    merge: impl FnOnce(&mut Resp, Vec<D>) + Send + 'static,
) -> Result<Route, ProtocolError>
where
    Req: Encodable,
    Resp: Decodable + Encodable + HeaderVersion + Send + 'static,
    D: Send + 'static,
{
    if denied.is_empty() {
        return Ok(req.forward());
    }
    if nothing_left {
        return req.respond(&local(denied));
    }
    Ok(Route::Forward {
        frame: req.reencode(trimmed)?,
        post: Some(post::<Resp>(req.version, move |resp| merge(resp, denied))),
    })
}

/// Maps a config resource (DescribeConfigs / AlterConfigs) to the ACL resource and the error
/// a denial gives. Unknown types are left to the upstream.
fn config_resource(resource_type: i8, name: &str) -> Option<(ResourceType, String, i16)> {
    match resource_type {
        2 => Some((
            ResourceType::Topic,
            name.to_string(),
            code::TOPIC_AUTHORIZATION_FAILED,
        )),
        4 | 8 => Some((
            ResourceType::Cluster,
            CLUSTER.to_string(),
            code::CLUSTER_AUTHORIZATION_FAILED,
        )),
        3 => Some((
            ResourceType::Group,
            name.to_string(),
            code::GROUP_AUTHORIZATION_FAILED,
        )),
        _ => None,
    }
}

fn produce(
    req: &Request<'_>,
    access: &mut Access,
    rewriter: &Rewriter,
) -> Result<Route, ProtocolError> {
    match produce_parts(req, access)? {
        ProduceParts::Done(route) => Ok(route),
        ProduceParts::Parts(parts) => produce_route(req, parts, rewriter),
    }
}

/// A Produce request after authorization: what is left to forward and what was refused.
pub(crate) struct ProduceRequestParts {
    /// The request with the refused topics (and, later, partitions) removed.
    pub request: ProduceRequest,
    /// Answers for what was refused, merged into the response.
    pub refused: Vec<TopicProduceResponse>,
    /// Whether `request` differs from the frame the client sent.
    pub modified: bool,
}

/// The outcome of authorizing a Produce request.
pub(crate) enum ProduceParts {
    /// Answered already (denied transactional id, acks=0 refusal).
    Done(Route),
    /// To be checked further and forwarded.
    Parts(ProduceRequestParts),
}

/// Authorizes a Produce request: WRITE on every topic (and the transactional id).
pub(crate) fn produce_parts(
    req: &Request<'_>,
    access: &mut Access,
) -> Result<ProduceParts, ProtocolError> {
    let mut r: ProduceRequest = req.decode()?;
    if let Some(txn) = &r.transactional_id
        && !access.allow(ResourceType::TransactionalId, txn, Operation::Write)
    {
        if r.acks == 0 {
            return Ok(ProduceParts::Done(Route::Close(
                "acks=0 produce denied: not authorized for the transactional id".into(),
            )));
        }
        let responses = r
            .topic_data
            .iter()
            .map(|t| denied_produce_topic(t, code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED))
            .collect();
        return Ok(ProduceParts::Done(
            req.respond(&ProduceResponse::default().with_responses(responses))?,
        ));
    }
    let mut refused = Vec::new();
    r.topic_data.retain(|t| {
        let ok = access.topic(&t.name, Operation::Write);
        if !ok {
            refused.push(denied_produce_topic(t, code::TOPIC_AUTHORIZATION_FAILED));
        }
        ok
    });
    let modified = !refused.is_empty();
    Ok(ProduceParts::Parts(ProduceRequestParts {
        request: r,
        refused,
        modified,
    }))
}

/// Builds the route of an authorized (and possibly validated) Produce request.
pub(crate) fn produce_route(
    req: &Request<'_>,
    parts: ProduceRequestParts,
    rewriter: &Rewriter,
) -> Result<Route, ProtocolError> {
    let ProduceRequestParts {
        request,
        refused,
        modified,
    } = parts;
    if request.acks == 0 {
        if !refused.is_empty() {
            return Ok(Route::Close(
                "acks=0 produce refused (not authorized, or a record failed its topic's policy); \
                 with acks=0 there is no response to carry the error"
                    .into(),
            ));
        }
        let frame = if modified {
            req.reencode(&request)?
        } else {
            req.frame.clone()
        };
        return Ok(Route::ForwardOneway(frame));
    }
    if request.topic_data.is_empty() {
        return req.respond(&ProduceResponse::default().with_responses(refused));
    }
    let frame = if modified {
        req.reencode(&request)?
    } else {
        req.frame.clone()
    };
    if refused.is_empty() {
        return Ok(Route::Forward { frame, post: None });
    }
    let rw = rewriter.clone();
    Ok(Route::Forward {
        frame,
        post: Some(post::<ProduceResponse>(req.version, move |resp| {
            for e in &mut resp.node_endpoints {
                let (host, port) = rw.address(e.node_id.0);
                e.host = s(&host);
                e.port = port;
            }
            // A topic may be partly refused (some partitions): merge into its entry.
            for r in refused {
                match resp.responses.iter_mut().find(|t| t.name == r.name) {
                    Some(t) => t.partition_responses.extend(r.partition_responses),
                    None => resp.responses.push(r),
                }
            }
        })),
    })
}

pub(crate) fn denied_produce_topic(t: &TopicProduceData, err: i16) -> TopicProduceResponse {
    TopicProduceResponse::default()
        .with_name(t.name.clone())
        .with_partition_responses(
            t.partition_data
                .iter()
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(err)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                })
                .collect(),
        )
}

fn fetch(req: &Request<'_>, access: &mut Access) -> Result<Route, ProtocolError> {
    let r: FetchRequest = req.decode()?;
    let replica = if req.version >= 15 {
        r.replica_state.replica_id.0
    } else {
        r.replica_id.0
    };
    if replica >= 0 {
        return Ok(Route::Close(
            "follower fetch is not allowed through the gateway".into(),
        ));
    }
    // Names the request carries are checked (and denials audited) now; the response is
    // checked again, because a fetch session can return partitions the request did not name.
    let mut allowed: HashMap<String, bool> = HashMap::new();
    for t in &r.topics {
        let ok = access.topic(&t.topic, Operation::Read);
        allowed.insert(t.topic.to_string(), ok);
    }
    let version = req.version;
    let principal = access.principal.clone();
    let host = access.host;
    let authorizer = access.authorizer.clone();
    Ok(Route::Forward {
        frame: req.frame.clone(),
        post: Some(Box::new(move |frame: Bytes| {
            filter_fetch(frame, version, |topic| {
                if let Some(ok) = allowed.get(topic) {
                    return *ok;
                }
                !is_internal_topic(topic)
                    && authorizer
                        .authorize(
                            &principal,
                            host,
                            ResourceType::Topic,
                            topic,
                            Operation::Read,
                        )
                        .allowed
            })
        })),
    })
}

/// Passes a Fetch response through unchanged when every topic in it may be read; otherwise
/// replaces the partitions of the others with TOPIC_AUTHORIZATION_FAILED and no records.
fn filter_fetch(
    frame: Bytes,
    version: i16,
    mut may_read: impl FnMut(&str) -> bool,
) -> Result<Bytes, ProtocolError> {
    let (correlation_id, body) =
        split_response(frame.clone(), FetchResponse::header_version(version))?;
    let mut resp: FetchResponse = decode_body(body, version)?;
    let mut changed = false;
    for t in &mut resp.responses {
        if !may_read(&t.topic) {
            changed = true;
            for p in &mut t.partitions {
                p.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                // Empty, not null: librdkafka cannot parse a null record set.
                p.records = Some(Bytes::new());
                p.high_watermark = -1;
                p.last_stable_offset = -1;
                p.log_start_offset = -1;
                p.aborted_transactions = None;
            }
        }
    }
    if !changed {
        return Ok(with_size_prefix(frame));
    }
    encode_response(correlation_id, version, &resp)
}

/// Prefixes a response frame with its size.
pub(crate) fn with_size_prefix(frame: Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.len() + 4);
    out.extend_from_slice(&(frame.len() as i32).to_be_bytes());
    out.extend_from_slice(&frame);
    out.freeze()
}

fn metadata(
    req: &Request<'_>,
    access: &mut Access,
    rewriter: &Rewriter,
) -> Result<Route, ProtocolError> {
    let mut r: MetadataRequest = req.decode()?;
    let v = req.version;
    // Explicitly named topics are checked (and audited) here; an all-topics request is
    // filtered quietly, as Kafka does.
    let mut named: HashMap<String, bool> = HashMap::new();
    let mut changed = false;
    if let Some(topics) = &r.topics {
        for t in topics {
            if let Some(name) = &t.name {
                let ok = access.topic(name, Operation::Describe);
                named.insert(name.to_string(), ok);
            }
        }
    }
    if r.allow_auto_topic_creation {
        // Auto-creation needs CREATE on the cluster or on the topic.
        let cluster_create = access.quiet(ResourceType::Cluster, CLUSTER, Operation::Create);
        let may_create_all = cluster_create
            || named
                .keys()
                .all(|n| access.quiet(ResourceType::Topic, n, Operation::Create));
        if !may_create_all {
            r.allow_auto_topic_creation = false;
            changed = true;
        }
    }
    let frame = if changed {
        req.reencode(&r)?
    } else {
        req.frame.clone()
    };
    let principal = access.principal.clone();
    let host = access.host;
    let authorizer = access.authorizer.clone();
    let rw = rewriter.clone();
    Ok(Route::Forward {
        frame,
        post: Some(post::<MetadataResponse>(v, move |resp| {
            for b in &mut resp.brokers {
                let (host, port) = rw.address(b.node_id.0);
                b.host = s(&host);
                b.port = port;
            }
            resp.topics.retain_mut(|t| {
                let Some(name) = t.name.as_ref().map(|n| n.to_string()) else {
                    return false;
                };
                let ok = match named.get(&name) {
                    Some(ok) => *ok,
                    None => {
                        !is_internal_topic(&name)
                            && authorizer
                                .authorize(
                                    &principal,
                                    host,
                                    ResourceType::Topic,
                                    &name,
                                    Operation::Describe,
                                )
                                .allowed
                    }
                };
                if ok {
                    return true;
                }
                if named.contains_key(&name) {
                    // Named and denied: answer with the error, nothing about the topic.
                    *t = MetadataResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                        .with_is_internal(false)
                        .with_topic_authorized_operations(i32::MIN);
                    return true;
                }
                false
            });
        })),
    })
}

fn offset_commit(req: &Request<'_>, access: &mut Access) -> Result<Route, ProtocolError> {
    let mut r: OffsetCommitRequest = req.decode()?;
    let error_for_all = if access.group(&r.group_id, Operation::Read) {
        None
    } else {
        Some(code::GROUP_AUTHORIZATION_FAILED)
    };
    let mut denied = Vec::new();
    r.topics.retain(|t| {
        let err = match error_for_all {
            Some(e) => Some(e),
            None if !access.topic(&t.name, Operation::Read) => {
                Some(code::TOPIC_AUTHORIZATION_FAILED)
            }
            None => None,
        };
        if let Some(err) = err {
            denied.push(
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(err)
                            })
                            .collect(),
                    ),
            );
            return false;
        }
        true
    });
    split(
        req,
        &r,
        r.topics.is_empty(),
        denied,
        |denied| OffsetCommitResponse::default().with_topics(denied),
        |resp: &mut OffsetCommitResponse, denied| resp.topics.extend(denied),
    )
}

fn offset_fetch(req: &Request<'_>, access: &mut Access) -> Result<Route, ProtocolError> {
    let r: OffsetFetchRequest = req.decode()?;
    let v = req.version;
    if v >= 8 {
        // Batched groups: a denied group answers GROUP_AUTHORIZATION_FAILED for itself.
        let mut denied_groups = Vec::new();
        for g in &r.groups {
            if !access.group(&g.group_id, Operation::Describe) {
                denied_groups.push(g.group_id.to_string());
            }
        }
        let principal = access.principal.clone();
        let host = access.host;
        let authorizer = access.authorizer.clone();
        return Ok(Route::Forward {
            frame: req.frame.clone(),
            post: Some(post::<OffsetFetchResponse>(v, move |resp| {
                for g in &mut resp.groups {
                    if denied_groups
                        .iter()
                        .any(|d| d.as_str() == g.group_id.as_str())
                    {
                        g.error_code = code::GROUP_AUTHORIZATION_FAILED;
                        g.topics.clear();
                        continue;
                    }
                    g.topics.retain_mut(|t| {
                        let ok = !is_internal_topic(&t.name)
                            && authorizer
                                .authorize(
                                    &principal,
                                    host,
                                    ResourceType::Topic,
                                    &t.name,
                                    Operation::Describe,
                                )
                                .allowed;
                        if !ok {
                            for p in &mut t.partitions {
                                p.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                                p.committed_offset = -1;
                                p.metadata = None;
                            }
                        }
                        true
                    });
                }
            })),
        });
    }
    if !access.group(&r.group_id, Operation::Describe) {
        return req.respond(
            &OffsetFetchResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED),
        );
    }
    let all_topics = r.topics.is_none();
    let principal = access.principal.clone();
    let host = access.host;
    let authorizer = access.authorizer.clone();
    Ok(Route::Forward {
        frame: req.frame.clone(),
        post: Some(post::<OffsetFetchResponse>(v, move |resp| {
            resp.topics.retain_mut(|t| {
                let ok = !is_internal_topic(&t.name)
                    && authorizer
                        .authorize(
                            &principal,
                            host,
                            ResourceType::Topic,
                            &t.name,
                            Operation::Describe,
                        )
                        .allowed;
                if ok {
                    return true;
                }
                if all_topics {
                    return false;
                }
                for p in &mut t.partitions {
                    p.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                    p.committed_offset = -1;
                    p.metadata = None;
                }
                true
            });
        })),
    })
}

fn find_coordinator(
    req: &Request<'_>,
    access: &mut Access,
    rewriter: &Rewriter,
) -> Result<Route, ProtocolError> {
    let r: FindCoordinatorRequest = req.decode()?;
    let v = req.version;
    let (rt, err) = if r.key_type == 1 {
        (
            ResourceType::TransactionalId,
            code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        )
    } else {
        (ResourceType::Group, code::GROUP_AUTHORIZATION_FAILED)
    };
    let rw = rewriter.clone();
    if v < 4 {
        if !access.allow(rt, &r.key, Operation::Describe) {
            return req.respond(
                &FindCoordinatorResponse::default()
                    .with_error_code(err)
                    .with_node_id((-1).into())
                    .with_port(-1),
            );
        }
        return Ok(Route::Forward {
            frame: req.frame.clone(),
            post: Some(post::<FindCoordinatorResponse>(v, move |resp| {
                if resp.node_id.0 >= 0 {
                    let (host, port) = rw.address(resp.node_id.0);
                    resp.host = s(&host);
                    resp.port = port;
                }
            })),
        });
    }
    let mut denied = Vec::new();
    for key in &r.coordinator_keys {
        if !access.allow(rt, key, Operation::Describe) {
            denied.push(key.to_string());
        }
    }
    if denied.len() == r.coordinator_keys.len() && !denied.is_empty() {
        let coordinators = denied
            .iter()
            .map(|k| {
                find_coordinator_response::Coordinator::default()
                    .with_key(s(k))
                    .with_node_id((-1).into())
                    .with_port(-1)
                    .with_error_code(err)
            })
            .collect();
        return req.respond(&FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    Ok(Route::Forward {
        frame: req.frame.clone(),
        post: Some(post::<FindCoordinatorResponse>(v, move |resp| {
            for c in &mut resp.coordinators {
                if denied.iter().any(|d| d.as_str() == c.key.as_str()) {
                    c.error_code = err;
                    c.node_id = (-1).into();
                    c.host = s("");
                    c.port = -1;
                } else if c.node_id.0 >= 0 {
                    let (host, port) = rw.address(c.node_id.0);
                    c.host = s(&host);
                    c.port = port;
                }
            }
        })),
    })
}

fn create_topics(req: &Request<'_>, access: &mut Access) -> Result<Route, ProtocolError> {
    let mut r: CreateTopicsRequest = req.decode()?;
    let cluster_create = access.quiet(ResourceType::Cluster, CLUSTER, Operation::Create);
    let mut denied = Vec::new();
    r.topics.retain(|t| {
        let ok = !is_internal_topic(&t.name)
            && (cluster_create || access.topic(&t.name, Operation::Create));
        if !ok {
            if is_internal_topic(&t.name) {
                access.denials.push(Denial {
                    resource_type: ResourceType::Topic,
                    name: t.name.to_string(),
                    operation: Operation::Create,
                });
            }
            denied.push(
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                    .with_error_message(Some(s("Authorization failed.")))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            );
        }
        ok
    });
    split(
        req,
        &r,
        r.topics.is_empty(),
        denied,
        |denied| CreateTopicsResponse::default().with_topics(denied),
        |resp: &mut CreateTopicsResponse, denied| resp.topics.extend(denied),
    )
}

fn delete_topics(req: &Request<'_>, access: &mut Access) -> Result<Route, ProtocolError> {
    let mut r: DeleteTopicsRequest = req.decode()?;
    let mut denied = Vec::new();
    if req.version < 6 {
        r.topic_names.retain(|name| {
            let ok = access.topic(name, Operation::Delete);
            if !ok {
                denied.push(
                    DeletableTopicResult::default()
                        .with_name(Some(name.clone()))
                        .with_error_code(code::TOPIC_AUTHORIZATION_FAILED),
                );
            }
            ok
        });
        let empty = r.topic_names.is_empty();
        return split(
            req,
            &r,
            empty,
            denied,
            |denied| DeleteTopicsResponse::default().with_responses(denied),
            |resp: &mut DeleteTopicsResponse, denied| resp.responses.extend(denied),
        );
    }
    r.topics.retain(|t| {
        // Deletion by topic id alone cannot be checked against name-based ACLs here: it is
        // refused unless a name is given (Kafka's admin clients send names by default).
        let ok = match &t.name {
            Some(name) => access.topic(name, Operation::Delete),
            None => {
                access.denials.push(Denial {
                    resource_type: ResourceType::Topic,
                    name: t.topic_id.to_string(),
                    operation: Operation::Delete,
                });
                false
            }
        };
        if !ok {
            denied.push(
                DeletableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(if t.name.is_some() {
                        code::TOPIC_AUTHORIZATION_FAILED
                    } else {
                        code::UNKNOWN_TOPIC_ID
                    })
                    .with_error_message(Some(s(if t.name.is_some() {
                        "Authorization failed."
                    } else {
                        "The gateway needs topic names to authorize a deletion; send the name."
                    }))),
            );
        }
        ok
    });
    let empty = r.topics.is_empty();
    split(
        req,
        &r,
        empty,
        denied,
        |denied| DeleteTopicsResponse::default().with_responses(denied),
        |resp: &mut DeleteTopicsResponse, denied| resp.responses.extend(denied),
    )
}

/// The resources an administrative request acts on, for the audit trail (granted ones are
/// recorded too: topic creation and deletion, config changes, record and group deletion).
/// Empty for every other API.
pub(crate) fn admin_resources(req: &Request<'_>) -> Vec<(ResourceType, String, Operation)> {
    let Ok(key) = ApiKey::try_from(req.api_key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match key {
        ApiKey::CreateTopics => {
            if let Ok(r) = req.decode::<CreateTopicsRequest>() {
                out.extend(
                    r.topics
                        .iter()
                        .map(|t| (ResourceType::Topic, t.name.to_string(), Operation::Create)),
                );
            }
        }
        ApiKey::DeleteTopics => {
            if let Ok(r) = req.decode::<DeleteTopicsRequest>() {
                out.extend(
                    r.topic_names
                        .iter()
                        .map(|n| (ResourceType::Topic, n.to_string(), Operation::Delete)),
                );
                out.extend(r.topics.iter().filter_map(|t| {
                    t.name
                        .as_ref()
                        .map(|n| (ResourceType::Topic, n.to_string(), Operation::Delete))
                }));
            }
        }
        ApiKey::CreatePartitions => {
            if let Ok(r) = req.decode::<CreatePartitionsRequest>() {
                out.extend(
                    r.topics
                        .iter()
                        .map(|t| (ResourceType::Topic, t.name.to_string(), Operation::Alter)),
                );
            }
        }
        ApiKey::DeleteRecords => {
            if let Ok(r) = req.decode::<DeleteRecordsRequest>() {
                out.extend(
                    r.topics
                        .iter()
                        .map(|t| (ResourceType::Topic, t.name.to_string(), Operation::Delete)),
                );
            }
        }
        ApiKey::DeleteGroups => {
            if let Ok(r) = req.decode::<DeleteGroupsRequest>() {
                out.extend(
                    r.groups_names
                        .iter()
                        .map(|g| (ResourceType::Group, g.to_string(), Operation::Delete)),
                );
            }
        }
        ApiKey::AlterConfigs => {
            if let Ok(r) = req.decode::<AlterConfigsRequest>() {
                out.extend(r.resources.iter().filter_map(|x| {
                    config_resource(x.resource_type, &x.resource_name)
                        .map(|(rt, name, _)| (rt, name, Operation::AlterConfigs))
                }));
            }
        }
        ApiKey::IncrementalAlterConfigs => {
            if let Ok(r) = req.decode::<IncrementalAlterConfigsRequest>() {
                out.extend(r.resources.iter().filter_map(|x| {
                    config_resource(x.resource_type, &x.resource_name)
                        .map(|(rt, name, _)| (rt, name, Operation::AlterConfigs))
                }));
            }
        }
        _ => {}
    }
    out
}
