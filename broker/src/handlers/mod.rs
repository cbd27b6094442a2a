//! Request dispatch: peek the header, check the version against what we advertise, decode the
//! body with the generated codec, run the handler, encode the response.
//!
//! Errors map to Kafka error codes here and in the handlers, nowhere else. A request we cannot
//! answer in its own format (an unknown API key, an undecodable body) closes the connection, as
//! Kafka does; everyone else keeps being served.
//!
//! With an internal credential configured, [`sasl`] runs first: until the connection has
//! authenticated, only ApiVersions and the SASL requests are served.

mod admin;
mod api_versions;
mod fetch;
mod groups;
mod metadata;
mod produce;
mod sasl;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_protocol::header::{RequestHeaderPeek, decode_body, encode_response};
use gatehouse_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request};

use crate::server::PendingResponse;
use crate::state::BrokerState;

pub(crate) use api_versions::{SASL_APIS, SUPPORTED};
pub(crate) use sasl::SaslState;

/// Where a request came from, and how far its SASL exchange got.
pub(crate) struct ConnectionInfo {
    pub client_host: String,
    pub sasl: SaslState,
}

impl ConnectionInfo {
    /// A new connection from `client_host`: unauthenticated when `state` has a credential.
    pub(crate) fn new(client_host: String, state: &BrokerState) -> Self {
        Self {
            client_host,
            sasl: SaslState::initial(state.config.internal_credential.as_ref()),
        }
    }
}

/// What the connection loop does after a request.
pub(crate) enum Outcome {
    /// Queue this response (possibly still pending) behind earlier ones.
    Respond(PendingResponse),
    /// Close the connection, logging why.
    Close(String),
    /// Queue this response, then close the connection once it is written, logging why.
    RespondAndClose(PendingResponse, String),
}

impl Outcome {
    fn ready(bytes: Bytes) -> Self {
        Outcome::Respond(Box::pin(async move { Some(bytes) }))
    }
    fn none() -> Self {
        Outcome::Respond(Box::pin(async { None }))
    }
}

/// Encodes `resp` as the response to `h`, or closes the connection if encoding fails.
pub(crate) fn respond<M: Encodable + HeaderVersion>(h: &RequestHeaderPeek, resp: &M) -> Outcome {
    match encode_response(h.correlation_id, h.api_version, resp) {
        Ok(b) => Outcome::ready(b),
        Err(e) => Outcome::Close(format!(
            "could not encode the response to API key {} v{}: {e}",
            h.api_key, h.api_version
        )),
    }
}

async fn run<R, F, Fut>(h: &RequestHeaderPeek, body: Bytes, f: F) -> Outcome
where
    R: Request + Decodable,
    F: FnOnce(R) -> Fut,
    Fut: Future<Output = R::Response>,
{
    match decode_body::<R>(body, h.api_version) {
        Ok(req) => {
            let resp = f(req).await;
            respond(h, &resp)
        }
        Err(e) => Outcome::Close(format!(
            "malformed request (API key {} v{}, correlation id {}): {e}",
            h.api_key, h.api_version, h.correlation_id
        )),
    }
}

/// Handles one request frame.
pub(crate) async fn handle(
    state: &Arc<BrokerState>,
    conn: &mut ConnectionInfo,
    frame: Bytes,
) -> Outcome {
    let credential = state.config.internal_credential.as_ref();
    if let (Some(credential), SaslState::AwaitingRawToken) = (credential, conn.sasl) {
        return sasl::raw_token(credential, conn, &frame);
    }
    let h = match RequestHeaderPeek::parse(&frame) {
        Ok(h) => h,
        Err(e) => return Outcome::Close(format!("unreadable request header: {e}")),
    };
    let Some(key) = h.key() else {
        return Outcome::Close(format!(
            "unknown API key {} (correlation id {})",
            h.api_key, h.correlation_id
        ));
    };
    if let Some(credential) = credential {
        if matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
            return sasl::handle(credential, conn, &h, key, &frame);
        }
        if conn.sasl != SaslState::Authenticated && key != ApiKey::ApiVersions {
            return Outcome::Close(format!(
                "{key:?} before SASL authentication (ILLEGAL_SASL_STATE)"
            ));
        }
    }
    let Some(range) = api_versions::supported_range(key) else {
        return Outcome::Close(format!(
            "API {key:?} (key {}) is not supported by this broker",
            h.api_key
        ));
    };
    if key == ApiKey::ApiVersions {
        return api_versions::handle(state, &h, &frame);
    }
    if key == ApiKey::Produce && (0..3).contains(&h.api_version) {
        return produce::unsupported_old_version(&h, &frame);
    }
    if h.api_version < range.0 || h.api_version > range.1 {
        return Outcome::Close(format!(
            "{key:?} v{} is outside the advertised range {}..={}",
            h.api_version, range.0, range.1
        ));
    }
    let Some(offset) = h.body_offset else {
        return Outcome::Close("request header without body offset".into());
    };
    let body = frame.slice(offset..);
    use gatehouse_protocol::messages::{
        AlterConfigsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
        DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
        DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
        IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
        ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
        OffsetFetchRequest, ProduceRequest, SyncGroupRequest,
    };
    let st = state.clone();
    let v = h.api_version;

    match key {
        ApiKey::Produce => match decode_body::<ProduceRequest>(body, v) {
            Ok(req) => produce::handle(st, &h, req).await,
            Err(e) => Outcome::Close(format!("malformed Produce v{v}: {e}")),
        },
        ApiKey::Fetch => run(&h, body, |r: FetchRequest| fetch::fetch(st, r, v)).await,
        ApiKey::ListOffsets => {
            run(&h, body, |r: ListOffsetsRequest| async move {
                fetch::list_offsets(&st, r, v)
            })
            .await
        }
        ApiKey::Metadata => run(&h, body, |r: MetadataRequest| metadata::metadata(st, r, v)).await,
        ApiKey::FindCoordinator => {
            run(&h, body, |r: FindCoordinatorRequest| async move {
                metadata::find_coordinator(&st, r, v)
            })
            .await
        }
        ApiKey::DescribeCluster => {
            run(&h, body, |r: DescribeClusterRequest| async move {
                metadata::describe_cluster(&st, r, v)
            })
            .await
        }
        ApiKey::InitProducerId => {
            run(&h, body, |r: InitProducerIdRequest| async move {
                produce::init_producer_id(&st, r, v)
            })
            .await
        }
        ApiKey::JoinGroup => {
            let client_id = h.client_id.clone().unwrap_or_default();
            let host = conn.client_host.clone();
            run(&h, body, |r: JoinGroupRequest| async move {
                st.groups.join_group(r, v, &client_id, &host).await
            })
            .await
        }
        ApiKey::SyncGroup => {
            run(&h, body, |r: SyncGroupRequest| async move {
                st.groups.sync_group(r, v).await
            })
            .await
        }
        ApiKey::Heartbeat => {
            run(&h, body, |r: HeartbeatRequest| async move {
                st.groups.heartbeat(r, v).await
            })
            .await
        }
        ApiKey::LeaveGroup => {
            run(&h, body, |r: LeaveGroupRequest| async move {
                st.groups.leave_group(r, v).await
            })
            .await
        }
        ApiKey::OffsetCommit => {
            run(&h, body, |r: OffsetCommitRequest| {
                groups::offset_commit(st, r, v)
            })
            .await
        }
        ApiKey::OffsetFetch => {
            run(&h, body, |r: OffsetFetchRequest| async move {
                st.groups.offset_fetch(r, v).await
            })
            .await
        }
        ApiKey::DescribeGroups => {
            run(&h, body, |r: DescribeGroupsRequest| async move {
                st.groups.describe_groups(r, v).await
            })
            .await
        }
        ApiKey::ListGroups => {
            run(&h, body, |r: ListGroupsRequest| async move {
                st.groups.list_groups(r, v).await
            })
            .await
        }
        ApiKey::DeleteGroups => {
            run(&h, body, |r: DeleteGroupsRequest| async move {
                st.groups.delete_groups(r, v).await
            })
            .await
        }
        ApiKey::CreateTopics => {
            run(&h, body, |r: CreateTopicsRequest| {
                admin::create_topics(st, r, v)
            })
            .await
        }
        ApiKey::DeleteTopics => {
            run(&h, body, |r: DeleteTopicsRequest| {
                admin::delete_topics(st, r, v)
            })
            .await
        }
        ApiKey::CreatePartitions => {
            run(&h, body, |r: CreatePartitionsRequest| {
                admin::create_partitions(st, r, v)
            })
            .await
        }
        ApiKey::DescribeConfigs => {
            run(&h, body, |r: DescribeConfigsRequest| async move {
                admin::describe_configs(&st, r, v)
            })
            .await
        }
        ApiKey::AlterConfigs => {
            run(&h, body, |r: AlterConfigsRequest| {
                admin::alter_configs(st, r, v)
            })
            .await
        }
        ApiKey::IncrementalAlterConfigs => {
            run(&h, body, |r: IncrementalAlterConfigsRequest| {
                admin::incremental_alter_configs(st, r, v)
            })
            .await
        }
        ApiKey::DeleteRecords => {
            run(&h, body, |r: DeleteRecordsRequest| {
                admin::delete_records(st, r, v)
            })
            .await
        }
        other => Outcome::Close(format!("API {other:?} has no handler")),
    }
}

#[cfg(test)]
mod tests;
