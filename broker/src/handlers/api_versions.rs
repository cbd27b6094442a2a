//! ApiVersions: what we advertise, and the v0 fallback for versions we do not know.
//!
//! SaslHandshake 0-1 and SaslAuthenticate 0-2 are advertised only when the broker has an
//! internal credential ([`crate::config::InternalCredential`]).
//!
//! Produce stays advertised from v0 (KAFKA-18659: librdkafka checks compression support against
//! Produce v0); v0-2 requests get UNSUPPORTED_VERSION in their own format. Fetch stops at v12 so
//! topics stay named (v13+ names them by id). The response always uses header v0, which
//! [`gatehouse_protocol::header::encode_response`] takes from the generated type.

use bytes::Bytes;
use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::header::{RequestHeaderPeek, decode_body};
use gatehouse_protocol::messages::api_versions_response::ApiVersion;
use gatehouse_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{Outcome, respond};
use crate::state::BrokerState;

/// Every API we serve with the versions we advertise.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
];

/// The SASL APIs, advertised only when an internal credential is configured.
pub(crate) const SASL_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The advertised (min, max) of `key`, if we serve it (the SASL APIs are handled apart).
pub(crate) fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

fn api_keys(state: &BrokerState) -> Vec<ApiVersion> {
    let sasl = match state.config.internal_credential {
        Some(_) => SASL_APIS,
        None => &[],
    };
    SUPPORTED
        .iter()
        .chain(sasl)
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

/// Answers ApiVersions at any version: unknown (newer) versions get a v0 response carrying
/// UNSUPPORTED_VERSION and our ranges, so the client can retry (KIP-511).
pub(crate) fn handle(state: &BrokerState, h: &RequestHeaderPeek, frame: &Bytes) -> Outcome {
    let (min, max) = (0, 4);
    if h.api_version < min || h.api_version > max {
        let resp = ApiVersionsResponse::default()
            .with_error_code(ErrorCode::UnsupportedVersion.code())
            .with_api_keys(api_keys(state));
        let h0 = RequestHeaderPeek {
            api_version: 0,
            ..h.clone()
        };
        return respond(&h0, &resp);
    }
    let Some(offset) = h.body_offset else {
        return Outcome::Close("ApiVersions without a body offset".into());
    };
    // A body that does not decode still gets an answer at v0 (Kafka answers INVALID_REQUEST).
    let valid = decode_body::<ApiVersionsRequest>(frame.slice(offset..), h.api_version).is_ok();
    let resp = ApiVersionsResponse::default()
        .with_error_code(if valid {
            ErrorCode::None.code()
        } else {
            ErrorCode::InvalidRequest.code()
        })
        .with_api_keys(api_keys(state));
    respond(h, &resp)
}
