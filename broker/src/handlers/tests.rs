//! Every advertised (API, version) pair is answered with a response that decodes at that
//! version: the generated codecs refuse fields a version lacks, so this catches a handler that
//! sets one. Requests go through the same `handle` entry point as the network path.
//! The SASL APIs are checked on a broker with an internal credential.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_protocol::header::{encode_request, split_response};
use gatehouse_protocol::messages::*;
use gatehouse_protocol::records::BatchBuilder;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::{ConnectionInfo, Outcome, SASL_APIS, SUPPORTED, SaslState, handle};
use crate::config::{BrokerConfig, InternalCredential};
use crate::group::{GroupConfig, GroupCoordinator};
use crate::log::{LogManager, LogManagerConfig};
use crate::state::{BrokerState, ProducerIds};
use crate::topics::Topics;

async fn state(dir: &std::path::Path) -> Arc<BrokerState> {
    state_with(dir, None).await
}

async fn state_with(
    dir: &std::path::Path,
    internal_credential: Option<InternalCredential>,
) -> Arc<BrokerState> {
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        group_initial_rebalance_delay_ms: 0,
        internal_credential,
        ..BrokerConfig::default()
    };
    let meta = dir.join("meta");
    std::fs::create_dir_all(&meta).expect("meta dir");
    let logs = LogManager::new(LogManagerConfig::default());
    let topics = Topics::open(dir, logs.clone(), config.topic_defaults.clone()).expect("topics");
    topics
        .create("t", 2, BTreeMap::new())
        .await
        .expect("create t");
    let groups = GroupCoordinator::open(
        &dir.join("__consumer_offsets"),
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        },
    )
    .expect("groups");
    Arc::new(BrokerState {
        producer_ids: ProducerIds::open(&meta).expect("ids"),
        cluster_id: "test-cluster".into(),
        advertised_host: "127.0.0.1".into(),
        advertised_port: 9092,
        config,
        topics,
        logs,
        groups,
    })
}

async fn exchange<R>(st: &Arc<BrokerState>, req: &R, version: i16) -> Option<R::Response>
where
    R: Request + Encodable + HeaderVersion,
{
    let mut conn = ConnectionInfo::new("127.0.0.1".into(), st);
    match exchange_on(st, &mut conn, req, version).await {
        Got::Response(r) => r,
        Got::ResponseThenClose(_, reason) | Got::Closed(reason) => panic!(
            "{:?} v{version} closed the connection: {reason}",
            ApiKey::try_from(R::KEY)
        ),
    }
}

/// What one request on a connection led to.
enum Got<T> {
    /// A response (`None`: the request gets none) and the connection stays open.
    Response(Option<T>),
    /// A response, then the connection closes.
    ResponseThenClose(T, String),
    /// The connection closed without a response.
    Closed(String),
}

async fn exchange_on<R>(
    st: &Arc<BrokerState>,
    conn: &mut ConnectionInfo,
    req: &R,
    version: i16,
) -> Got<R::Response>
where
    R: Request + Encodable + HeaderVersion,
{
    let key = ApiKey::try_from(R::KEY).expect("known key");
    let frame = encode_request(key, version, 77, Some("test"), req).expect("request encodes");
    let decode = |bytes: Bytes| {
        let (corr, body) = split_response(bytes.slice(4..), R::Response::header_version(version))
            .expect("response header");
        assert_eq!(corr, 77, "{key:?} v{version} correlation id");
        let mut b = body;
        R::Response::decode(&mut b, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version} response does not decode: {e}"))
    };
    match handle(st, conn, frame.slice(4..)).await {
        Outcome::Respond(f) => Got::Response(f.await.map(decode)),
        Outcome::RespondAndClose(f, reason) => {
            Got::ResponseThenClose(decode(f.await.expect("a response")), reason)
        }
        Outcome::Close(reason) => Got::Closed(reason),
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn batch() -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(Some(b"k"), Some(b"v"), &[], 1_700_000_000_000)
        .expect("push");
    b.build().expect("build")
}

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .expect("supported");
    *min..=*max
}

#[tokio::test]
async fn every_advertised_version_gets_a_decodable_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = state(dir.path()).await;

    for v in range(ApiKey::Produce).filter(|v| *v >= 3) {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(name("t"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch())),
                    ]),
            ]);
        let resp = exchange(&st, &req, v).await.expect("response");
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "Produce v{v}");
    }
    for v in range(ApiKey::Fetch) {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_replica_id((-1).into())
            .with_session_epoch(-1)
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                        fetch_request::FetchPartition::default().with_partition(9),
                    ]),
            ]);
        let resp = exchange(&st, &req, v).await.expect("response");
        let parts = &resp.responses[0].partitions;
        assert_eq!(parts[0].error_code, 0, "Fetch v{v}");
        assert!(
            parts[0].records.as_ref().is_some_and(|r| !r.is_empty()),
            "Fetch v{v} returns records"
        );
        assert_eq!(parts[1].error_code, 3, "Fetch v{v} unknown partition");
    }
    for v in range(ApiKey::ListOffsets) {
        for ts in [-1, -2, -3, 0] {
            if ts == -3 && v < 7 {
                continue;
            }
            let req = ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(ts),
                        ]),
                ]);
            let resp = exchange(&st, &req, v).await.expect("response");
            assert_eq!(
                resp.topics[0].partitions[0].error_code, 0,
                "ListOffsets v{v} ts {ts}"
            );
        }
    }
    for v in range(ApiKey::Metadata) {
        let topics = if v == 0 { Some(vec![]) } else { None };
        let resp = exchange(&st, &MetadataRequest::default().with_topics(topics), v)
            .await
            .expect("response");
        assert_eq!(resp.topics.len(), 1, "Metadata v{v}");
        let missing = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("nope"))),
        ]));
        let resp = exchange(&st, &missing, v).await.expect("response");
        assert_eq!(resp.topics[0].error_code, 3, "Metadata v{v} unknown topic");
    }
    for v in range(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![StrBytes::from_static_str("g")])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
        };
        exchange(&st, &req, v).await.expect("response");
    }
    for v in range(ApiKey::InitProducerId) {
        let resp = exchange(
            &st,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
            v,
        )
        .await
        .expect("response");
        assert_eq!(resp.error_code, 0);
        assert!(resp.producer_id.0 >= 0);
    }
    for v in range(ApiKey::DescribeCluster) {
        exchange(&st, &DescribeClusterRequest::default(), v)
            .await
            .expect("response");
    }
    for v in range(ApiKey::CreateTopics) {
        let t = format!("created-{v}");
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name(&t))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_value(Some(StrBytes::from_static_str("1000"))),
                    ]),
                create_topics_request::CreatableTopic::default()
                    .with_name(name("t"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]);
        let resp = exchange(&st, &req, v).await.expect("response");
        assert_eq!(resp.topics[0].error_code, 0, "CreateTopics v{v}");
        assert_eq!(resp.topics[1].error_code, 36, "CreateTopics v{v} existing");
    }
    for v in range(ApiKey::CreatePartitions) {
        let req = CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name(&format!("created-{}", 2 + v.min(5))))
                .with_count(2 + i32::from(v)),
        ]);
        exchange(&st, &req, v).await.expect("response");
    }
    for v in range(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default()
            .with_include_documentation(v >= 3)
            .with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t")),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1")),
            ]);
        let resp = exchange(&st, &req, v).await.expect("response");
        assert!(
            resp.results
                .iter()
                .all(|r| r.error_code == 0 && !r.configs.is_empty()),
            "DescribeConfigs v{v}: {:?}",
            resp.results
        );
    }
    for v in range(ApiKey::AlterConfigs) {
        let req = AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![
                    alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.bytes"))
                        .with_value(Some(StrBytes::from_static_str("100000"))),
                ]),
        ]);
        let resp = exchange(&st, &req, v).await.expect("response");
        assert_eq!(resp.responses[0].error_code, 0, "AlterConfigs v{v}");
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("cleanup.policy"))
                        .with_config_operation(2)
                        .with_value(Some(StrBytes::from_static_str("compact"))),
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("bogus.key"))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_static_str("1"))),
                ]),
        ]);
        let resp = exchange(&st, &req, v).await.expect("response");
        assert_eq!(
            resp.responses[0].error_code, 40,
            "IncrementalAlterConfigs v{v} refuses unknown keys"
        );
    }
    for v in range(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(1)
                        .with_offset(0),
                ]),
        ]);
        let resp = exchange(&st, &req, v).await.expect("response");
        assert_eq!(
            resp.topics[0].partitions[0].error_code, 0,
            "DeleteRecords v{v}"
        );
    }
    for v in range(ApiKey::OffsetCommit) {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("simple")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1),
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(7)
                            .with_committed_offset(1),
                    ]),
            ]);
        let resp = exchange(&st, &req, v).await.expect("response");
        let codes: Vec<i16> = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect();
        assert!(
            codes.contains(&0) && codes.contains(&3),
            "OffsetCommit v{v}: {codes:?}"
        );
    }
    for v in range(ApiKey::OffsetFetch) {
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                .with_topics(if v >= 2 {
                    None
                } else {
                    Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0]),
                    ])
                })
        };
        exchange(&st, &req, v).await.expect("response");
    }
    for v in range(ApiKey::JoinGroup) {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(format!("jg{v}"))))
            .with_session_timeout_ms(10000)
            .with_rebalance_timeout_ms(10000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(b"m")),
            ]);
        exchange(&st, &req, v).await.expect("response");
    }
    for v in range(ApiKey::Heartbeat) {
        exchange(
            &st,
            &HeartbeatRequest::default().with_group_id(GroupId(StrBytes::from_static_str("jg"))),
            v,
        )
        .await
        .expect("response");
    }
    for v in range(ApiKey::SyncGroup) {
        exchange(
            &st,
            &SyncGroupRequest::default().with_group_id(GroupId(StrBytes::from_static_str("jg"))),
            v,
        )
        .await
        .expect("response");
    }
    for v in range(ApiKey::LeaveGroup) {
        let req = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("jg")))
                .with_members(vec![leave_group_request::MemberIdentity::default()])
        } else {
            LeaveGroupRequest::default().with_group_id(GroupId(StrBytes::from_static_str("jg")))
        };
        exchange(&st, &req, v).await.expect("response");
    }
    for v in range(ApiKey::DescribeGroups) {
        exchange(
            &st,
            &DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str("jg"))]),
            v,
        )
        .await
        .expect("response");
    }
    for v in range(ApiKey::ListGroups) {
        exchange(&st, &ListGroupsRequest::default(), v)
            .await
            .expect("response");
    }
    for v in range(ApiKey::DeleteGroups) {
        exchange(
            &st,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("none"))]),
            v,
        )
        .await
        .expect("response");
    }
    for v in range(ApiKey::DeleteTopics) {
        let t = format!("created-{}", 2 + (v - 1).min(5));
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(name(&t))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&t)])
        };
        let resp = exchange(&st, &req, v).await.expect("response");
        assert_eq!(resp.responses[0].error_code, 0, "DeleteTopics v{v} ({t})");
    }
    for v in range(ApiKey::ApiVersions) {
        let resp = exchange(&st, &ApiVersionsRequest::default(), v)
            .await
            .expect("response");
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.api_keys.len(), SUPPORTED.len());
        assert!(
            resp.api_keys
                .iter()
                .all(|k| k.api_key != ApiKey::SaslHandshake as i16),
            "no SASL without a credential"
        );
    }
    // Without a credential the SASL APIs are not served at all (unchanged behaviour).
    let mut conn = ConnectionInfo::new("127.0.0.1".into(), &st);
    let got = exchange_on(&st, &mut conn, &plain_handshake(), 1).await;
    assert!(
        matches!(got, Got::Closed(_)),
        "SaslHandshake without credential"
    );
}

const USER: &str = "gatehouse-internal";
const PASSWORD: &str = "correct horse battery staple";

fn plain_handshake() -> SaslHandshakeRequest {
    SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"))
}

fn plain_auth(user: &str, password: &str) -> SaslAuthenticateRequest {
    let token = format!("\0{user}\0{password}");
    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes()))
}

fn sasl_range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SASL_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .expect("SASL API");
    *min..=*max
}

/// After authentication the connection serves ordinary requests.
async fn assert_serves_metadata(st: &Arc<BrokerState>, conn: &mut ConnectionInfo, what: &str) {
    assert_eq!(conn.sasl, SaslState::Authenticated, "{what}");
    let all_topics = MetadataRequest::default().with_topics(None);
    match exchange_on(st, conn, &all_topics, 12).await {
        Got::Response(Some(r)) => assert_eq!(r.topics.len(), 1, "{what}"),
        _ => panic!("{what}: Metadata after authentication failed"),
    }
}

#[tokio::test]
async fn sasl_apis_answer_at_every_advertised_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = state_with(dir.path(), Some(InternalCredential::new(USER, PASSWORD))).await;
    let new_conn = || ConnectionInfo::new("127.0.0.1".into(), &st);

    // ApiVersions is served before authentication and advertises the SASL APIs.
    for v in range(ApiKey::ApiVersions) {
        let mut conn = new_conn();
        let Got::Response(Some(resp)) =
            exchange_on(&st, &mut conn, &ApiVersionsRequest::default(), v).await
        else {
            panic!("ApiVersions v{v} before authentication");
        };
        assert_eq!(resp.api_keys.len(), SUPPORTED.len() + SASL_APIS.len());
        for (key, min, max) in SASL_APIS {
            assert!(
                resp.api_keys.iter().any(|k| k.api_key == *key as i16
                    && k.min_version == *min
                    && k.max_version == *max),
                "ApiVersions v{v} advertises {key:?} {min}..={max}"
            );
        }
    }

    for hv in sasl_range(ApiKey::SaslHandshake) {
        let mut conn = new_conn();
        let Got::Response(Some(resp)) = exchange_on(&st, &mut conn, &plain_handshake(), hv).await
        else {
            panic!("SaslHandshake v{hv}");
        };
        assert_eq!(resp.error_code, 0, "SaslHandshake v{hv}");
        assert_eq!(resp.mechanisms, vec![StrBytes::from_static_str("PLAIN")]);
        if hv == 0 {
            // The legacy flow: a raw token, answered by an empty frame.
            let token = Bytes::from(format!("\0{USER}\0{PASSWORD}").into_bytes());
            let Outcome::Respond(f) = handle(&st, &mut conn, token).await else {
                panic!("raw PLAIN token refused");
            };
            assert_eq!(f.await.as_deref(), Some(&[0u8, 0, 0, 0][..]));
            assert_serves_metadata(&st, &mut conn, "after the v0 flow").await;

            let mut conn = new_conn();
            exchange_on(&st, &mut conn, &plain_handshake(), 0).await;
            let wrong = Bytes::from(format!("\0{USER}\0nope").into_bytes());
            assert!(matches!(
                handle(&st, &mut conn, wrong).await,
                Outcome::Close(_)
            ));
            continue;
        }
        for av in sasl_range(ApiKey::SaslAuthenticate) {
            let mut conn = new_conn();
            exchange_on(&st, &mut conn, &plain_handshake(), hv).await;
            let Got::Response(Some(resp)) =
                exchange_on(&st, &mut conn, &plain_auth(USER, PASSWORD), av).await
            else {
                panic!("SaslAuthenticate v{av}");
            };
            assert_eq!(resp.error_code, 0, "SaslAuthenticate v{av}");
            assert_serves_metadata(&st, &mut conn, &format!("SaslAuthenticate v{av}")).await;

            // A wrong password: SASL_AUTHENTICATION_FAILED, then the connection closes.
            let mut conn = new_conn();
            exchange_on(&st, &mut conn, &plain_handshake(), hv).await;
            let Got::ResponseThenClose(resp, _) =
                exchange_on(&st, &mut conn, &plain_auth(USER, "wrong"), av).await
            else {
                panic!("SaslAuthenticate v{av} with a wrong password");
            };
            assert_eq!(resp.error_code, 58);
            assert_eq!(
                resp.error_message.as_deref(),
                Some("Authentication failed: invalid credentials")
            );
        }
    }

    // Any other request before authentication closes the connection without an answer.
    let mut conn = new_conn();
    let got = exchange_on(&st, &mut conn, &MetadataRequest::default(), 12).await;
    assert!(
        matches!(got, Got::Closed(_)),
        "Metadata before authentication"
    );
    let mut conn = new_conn();
    exchange_on(&st, &mut conn, &plain_handshake(), 1).await;
    let got = exchange_on(&st, &mut conn, &MetadataRequest::default(), 12).await;
    assert!(
        matches!(got, Got::Closed(_)),
        "Metadata between handshake and authenticate"
    );

    // Out-of-order SASL requests: ILLEGAL_SASL_STATE, then close.
    let mut conn = new_conn();
    let Got::ResponseThenClose(resp, _) =
        exchange_on(&st, &mut conn, &plain_auth(USER, PASSWORD), 2).await
    else {
        panic!("SaslAuthenticate before the handshake");
    };
    assert_eq!(resp.error_code, 34);
    let mut conn = new_conn();
    exchange_on(&st, &mut conn, &plain_handshake(), 1).await;
    exchange_on(&st, &mut conn, &plain_auth(USER, PASSWORD), 2).await;
    let Got::ResponseThenClose(resp, _) = exchange_on(&st, &mut conn, &plain_handshake(), 1).await
    else {
        panic!("a second handshake");
    };
    assert_eq!(resp.error_code, 34);

    // Only PLAIN is enabled.
    let mut conn = new_conn();
    let scram =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256"));
    let Got::ResponseThenClose(resp, _) = exchange_on(&st, &mut conn, &scram, 1).await else {
        panic!("SCRAM handshake");
    };
    assert_eq!(resp.error_code, 33);
    assert_eq!(resp.mechanisms, vec![StrBytes::from_static_str("PLAIN")]);
}
