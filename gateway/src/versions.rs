//! The ApiVersions answer the gateway gives, by DESIGN.md's rule: (what the upstream supports
//! ∩ what the gateway can decode and authorize, with Produce and Fetch capped at v12 so topic
//! names stay visible) ∪ the APIs the gateway answers itself (SASL, ACL and SCRAM-credential
//! administration). API keys the gateway has no authorization rule for are never advertised
//! and never forwarded.

use std::collections::{BTreeMap, HashMap};

use gatehouse_protocol::kafka_protocol::protocol::VersionRange;
use gatehouse_protocol::messages::ApiKey;

/// APIs forwarded to the upstream after authorization (each has a rule in `authz`).
pub(crate) const FORWARDED: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::SyncGroup,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DeleteRecords,
    ApiKey::InitProducerId,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::CreatePartitions,
    ApiKey::DeleteGroups,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
];

/// APIs the gateway answers itself, with the versions it implements. SaslHandshake v0 (raw
/// SASL tokens instead of SaslAuthenticate) is served too: librdkafka insists on seeing v0 in
/// the range, and old clients use it.
pub(crate) const LOCAL: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

/// Highest Produce and Fetch versions forwarded (v13+ name topics by id only).
const PRODUCE_FETCH_MAX: i16 = 12;

/// The advertised table: API key → (min, max).
#[derive(Clone, Debug, Default)]
pub struct ApiTable {
    ranges: BTreeMap<i16, (i16, i16)>,
}

impl ApiTable {
    /// Builds the table from the upstream's advertised ranges.
    pub fn build(upstream: &HashMap<i16, VersionRange>) -> Self {
        let mut ranges = BTreeMap::new();
        for key in FORWARDED {
            let Some(up) = upstream.get(&(*key as i16)) else {
                continue;
            };
            let ours = key.valid_versions();
            let mut max = up.max.min(ours.max);
            if matches!(key, ApiKey::Produce | ApiKey::Fetch) {
                max = max.min(PRODUCE_FETCH_MAX);
            }
            // Produce keeps the upstream's minimum (0 on Kafka and on our broker) even though
            // v0-2 are refused: librdkafka turns compression off when min > 0 (KAFKA-18659).
            let min = if *key == ApiKey::Produce {
                up.min
            } else {
                up.min.max(ours.min)
            };
            if min <= max {
                ranges.insert(*key as i16, (min, max));
            }
        }
        for (key, min, max) in LOCAL {
            ranges.insert(*key as i16, (*min, *max));
        }
        Self { ranges }
    }

    /// The advertised range of `api_key`.
    pub fn range(&self, api_key: i16) -> Option<(i16, i16)> {
        self.ranges.get(&api_key).copied()
    }

    /// Whether (`api_key`, `version`) is advertised.
    pub fn supports(&self, api_key: i16, version: i16) -> bool {
        self.range(api_key)
            .is_some_and(|(min, max)| (min..=max).contains(&version))
    }

    /// Every advertised entry, ordered by key.
    pub fn entries(&self) -> impl Iterator<Item = (i16, i16, i16)> + '_ {
        self.ranges.iter().map(|(k, (min, max))| (*k, *min, *max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(entries: &[(ApiKey, i16, i16)]) -> HashMap<i16, VersionRange> {
        entries
            .iter()
            .map(|(k, min, max)| {
                (
                    *k as i16,
                    VersionRange {
                        min: *min,
                        max: *max,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn intersects_caps_and_adds_local_apis() {
        let t = ApiTable::build(&upstream(&[
            (ApiKey::Produce, 0, 13),
            (ApiKey::Fetch, 4, 17),
            (ApiKey::Metadata, 0, 9),
            // Something we cannot authorize is dropped.
            (ApiKey::AlterPartitionReassignments, 0, 0),
        ]));
        assert_eq!(t.range(ApiKey::Produce as i16), Some((0, 12)));
        assert_eq!(t.range(ApiKey::Fetch as i16), Some((4, 12)));
        assert_eq!(t.range(ApiKey::Metadata as i16), Some((0, 9)));
        assert_eq!(t.range(ApiKey::AlterPartitionReassignments as i16), None);
        assert_eq!(t.range(ApiKey::SaslHandshake as i16), Some((0, 1)));
        assert_eq!(t.range(ApiKey::JoinGroup as i16), None, "upstream lacks it");
        assert!(t.supports(ApiKey::CreateAcls as i16, 2));
    }

    #[test]
    fn unknown_upstream_keys_are_ignored() {
        let mut up = upstream(&[(ApiKey::Metadata, 0, 12)]);
        up.insert(10000, VersionRange { min: 0, max: 1 });
        let t = ApiTable::build(&up);
        assert_eq!(t.range(10000), None);
    }
}
