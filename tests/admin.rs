//! Admin APIs with a real client (rdkafka AdminClient) plus raw IncrementalAlterConfigs:
//! create/delete topics, create partitions, describe/alter configs, error codes,
//! ListOffsets by timestamp, watermarks and DeleteRecords.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    alter_configs_request, describe_configs_request,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AlterConfig, ConfigResource, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

const TOPIC_RESOURCE: i8 = 2;

fn describe(bs: &str, topic: &str) -> ConfigResource {
    let a = admin(bs);
    let mut res = runtime()
        .block_on(a.describe_configs(&[ResourceSpecifier::Topic(topic)], &admin_opts()))
        .expect("DescribeConfigs request");
    assert_eq!(res.len(), 1);
    res.remove(0)
        .unwrap_or_else(|code| panic!("describe {topic}: {code:?}"))
}

fn config_value(r: &ConfigResource, name: &str) -> Option<String> {
    r.get(name).and_then(|e| e.value.clone())
}

fn topic_names(bs: &str) -> Vec<String> {
    let c = plain_consumer(bs, &[]);
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    md.topics().iter().map(|t| t.name().to_string()).collect()
}

#[test]
fn create_and_delete_topics_with_errors() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let a = admin(&bs);
    let rt = runtime();
    let t1 = unique("adm-a");
    let t2 = unique("adm-b");

    let new = [
        NewTopic::new(&t1, 3, TopicReplication::Fixed(1)),
        NewTopic::new(&t2, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
    ];
    let res = rt
        .block_on(a.create_topics(&new, &admin_opts()))
        .expect("CreateTopics");
    assert_eq!(res, vec![Ok(t1.clone()), Ok(t2.clone())]);
    wait_topic_visible(&bs, &t1, 3);
    wait_topic_visible(&bs, &t2, 1);

    // Already exists.
    let res = rt
        .block_on(a.create_topics(
            &[NewTopic::new(&t1, 1, TopicReplication::Fixed(1))],
            &admin_opts(),
        ))
        .expect("CreateTopics");
    assert_eq!(
        res,
        vec![Err((t1.clone(), RDKafkaErrorCode::TopicAlreadyExists))]
    );

    // Invalid requests.
    let bad_name = "bad/name";
    let res = rt
        .block_on(a.create_topics(
            &[NewTopic::new(bad_name, 1, TopicReplication::Fixed(1))],
            &admin_opts(),
        ))
        .expect("CreateTopics");
    assert_eq!(
        res,
        vec![Err((bad_name.to_string(), RDKafkaErrorCode::InvalidTopic))]
    );
    let t3 = unique("adm-c");
    let res = rt
        .block_on(
            a.create_topics(
                &[NewTopic::new(&t3, 1, TopicReplication::Fixed(1))
                    .set("retention.ms", "not-a-number")],
                &admin_opts(),
            ),
        )
        .expect("CreateTopics");
    assert_eq!(
        res,
        vec![Err((t3.clone(), RDKafkaErrorCode::InvalidConfig))]
    );
    let res = rt
        .block_on(a.create_topics(
            &[NewTopic::new(&t3, 1, TopicReplication::Fixed(1)).set("no.such.config", "1")],
            &admin_opts(),
        ))
        .expect("CreateTopics");
    assert_eq!(
        res,
        vec![Err((t3.clone(), RDKafkaErrorCode::InvalidConfig))]
    );
    let res = rt
        .block_on(a.create_topics(
            &[NewTopic::new(&t3, 0, TopicReplication::Fixed(1))],
            &admin_opts(),
        ))
        .expect("CreateTopics");
    assert_eq!(
        res,
        vec![Err((t3.clone(), RDKafkaErrorCode::InvalidPartitions))]
    );
    assert!(
        !topic_names(&bs).contains(&t3),
        "a failed create left {t3} behind"
    );

    // Validate-only creates nothing.
    let res = rt
        .block_on(a.create_topics(
            &[NewTopic::new(&t3, 1, TopicReplication::Fixed(1))],
            &admin_opts().validate_only(true),
        ))
        .expect("CreateTopics");
    assert_eq!(res, vec![Ok(t3.clone())]);
    assert!(
        !topic_names(&bs).contains(&t3),
        "validate_only created {t3}"
    );

    // Delete: unknown topic, then a real one.
    let ghost = unique("ghost");
    let res = rt
        .block_on(a.delete_topics(&[&ghost], &admin_opts()))
        .expect("DeleteTopics");
    assert_eq!(
        res,
        vec![Err((
            ghost.clone(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );

    let p = producer(&bs, &[("acks", "all")]);
    produce_all(
        &p,
        &t2,
        &[Rec {
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            ..Rec::default()
        }],
    )
    .expect("produce before delete");
    let res = rt
        .block_on(a.delete_topics(&[&t2], &admin_opts()))
        .expect("DeleteTopics");
    assert_eq!(res, vec![Ok(t2.clone())]);
    poll_until(OP_DEADLINE, "deleted topic to leave metadata", || {
        (!topic_names(&bs).contains(&t2)).then_some(())
    });
    assert!(topic_names(&bs).contains(&t1));

    // Re-creating a deleted topic starts empty.
    let res = rt
        .block_on(a.create_topics(
            &[NewTopic::new(&t2, 1, TopicReplication::Fixed(1))],
            &admin_opts(),
        ))
        .expect("CreateTopics");
    assert_eq!(res, vec![Ok(t2.clone())]);
    wait_topic_visible(&bs, &t2, 1);
    assert_eq!(
        watermarks(&bs, &t2, 0),
        (0, 0),
        "a re-created topic must not keep old records"
    );
}

#[test]
fn topics_survive_restart() {
    let mut broker = Broker::start();
    let bs = broker.bootstrap();
    let t = unique("persist");
    create_topic(&bs, &t, 2, &[("retention.ms", "3600000")]);
    broker.restart();
    wait_topic_visible(&bs, &t, 2);
    assert_eq!(
        config_value(&describe(&bs, &t), "retention.ms").as_deref(),
        Some("3600000")
    );
}

#[test]
fn create_partitions() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let a = admin(&bs);
    let rt = runtime();
    let t = unique("grow");
    create_topic(&bs, &t, 1, &[]);

    let res = rt
        .block_on(a.create_partitions(&[NewPartitions::new(&t, 3)], &admin_opts()))
        .expect("CreatePartitions");
    assert_eq!(res, vec![Ok(t.clone())]);
    wait_topic_visible(&bs, &t, 3);
    let p = producer(&bs, &[("acks", "all")]);
    let acks = produce_all(
        &p,
        &t,
        &(0..3)
            .map(|i| Rec {
                partition: Some(i),
                value: Some(b"x".to_vec()),
                ..Rec::default()
            })
            .collect::<Vec<_>>(),
    )
    .expect("produce into the new partitions");
    assert_eq!(acks, vec![(0, 0), (1, 0), (2, 0)]);

    // Shrinking or keeping the count is refused.
    let res = rt
        .block_on(a.create_partitions(&[NewPartitions::new(&t, 2)], &admin_opts()))
        .expect("CreatePartitions");
    assert_eq!(
        res,
        vec![Err((t.clone(), RDKafkaErrorCode::InvalidPartitions))]
    );
    let res = rt
        .block_on(a.create_partitions(&[NewPartitions::new(&t, 3)], &admin_opts()))
        .expect("CreatePartitions");
    assert_eq!(
        res,
        vec![Err((t.clone(), RDKafkaErrorCode::InvalidPartitions))]
    );
    let ghost = unique("ghost");
    let res = rt
        .block_on(a.create_partitions(&[NewPartitions::new(&ghost, 3)], &admin_opts()))
        .expect("CreatePartitions");
    assert_eq!(
        res,
        vec![Err((
            ghost.clone(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
}

#[test]
fn describe_and_alter_configs() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let a = admin(&bs);
    let rt = runtime();
    let t = unique("cfg");
    create_topic(
        &bs,
        &t,
        1,
        &[("retention.ms", "123456"), ("segment.bytes", "1048576")],
    );

    let d = describe(&bs, &t);
    assert_eq!(config_value(&d, "retention.ms").as_deref(), Some("123456"));
    assert_eq!(
        d.get("retention.ms").map(|e| &e.source),
        Some(&ConfigSource::DynamicTopic)
    );
    assert_eq!(
        config_value(&d, "segment.bytes").as_deref(),
        Some("1048576")
    );
    // Defaults are described too (admin tools read-modify-write the full set).
    assert_eq!(
        config_value(&d, "cleanup.policy").as_deref(),
        Some("delete")
    );
    let mmb = config_value(&d, "max.message.bytes").expect("max.message.bytes described");
    assert!(mmb.parse::<i64>().expect("numeric max.message.bytes") > 0);
    assert!(
        d.get("cleanup.policy")
            .is_some_and(|e| e.is_default || e.source == ConfigSource::Default)
    );

    // AlterConfigs replaces the whole set: keys left out return to their defaults.
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&t))
        .set("cleanup.policy", "compact")
        .set("max.message.bytes", "2048");
    let res = rt
        .block_on(a.alter_configs(&[alter], &admin_opts()))
        .expect("AlterConfigs");
    assert!(res[0].is_ok(), "alter configs: {res:?}");
    let d = describe(&bs, &t);
    assert_eq!(
        config_value(&d, "cleanup.policy").as_deref(),
        Some("compact")
    );
    assert_eq!(
        config_value(&d, "max.message.bytes").as_deref(),
        Some("2048")
    );
    assert_ne!(
        config_value(&d, "retention.ms").as_deref(),
        Some("123456"),
        "non-incremental AlterConfigs must reset retention.ms to its default"
    );

    // Invalid value and unknown topic. rdkafka 0.39 drops AlterConfigs per-resource errors
    // (its result is always Ok), so these go through a raw AlterConfigs request.
    let mut conn = RawConn::connect(broker.broker_addr());
    let v = conn.negotiate(ApiKey::AlterConfigs, 0..=2);
    let alter_raw =
        |conn: &mut RawConn, topic: &str, name: &'static str, value: &'static str| -> i16 {
            let req = AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(StrBytes::from_string(topic.to_string()))
                    .with_configs(vec![
                        alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str(name))
                            .with_value(Some(StrBytes::from_static_str(value))),
                    ]),
            ]);
            let resp = conn.call(&req, v);
            assert_eq!(resp.responses.len(), 1);
            resp.responses[0].error_code
        };
    assert_eq!(
        alter_raw(&mut conn, &t, "retention.ms", "soon"),
        40,
        "invalid retention.ms: INVALID_CONFIG"
    );
    assert_eq!(
        alter_raw(&mut conn, &t, "no.such.config", "1"),
        40,
        "unknown key: INVALID_CONFIG"
    );
    assert_eq!(
        config_value(&describe(&bs, &t), "cleanup.policy").as_deref(),
        Some("compact"),
        "a refused AlterConfigs must change nothing"
    );
    let ghost = unique("ghost");
    assert_eq!(
        alter_raw(&mut conn, &ghost, "retention.ms", "1000"),
        3,
        "unknown topic: UNKNOWN_TOPIC_OR_PARTITION"
    );
    // Same for DescribeConfigs errors (rdkafka 0.39 returns Ok with no entries).
    let dv = conn.negotiate(ApiKey::DescribeConfigs, 0..=4);
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(ghost.clone()))
            .with_configuration_keys(None),
    ]);
    let resp = conn.call(&req, dv);
    assert_eq!(resp.results.len(), 1);
    assert_eq!(
        resp.results[0].error_code, 3,
        "describe unknown topic: UNKNOWN_TOPIC_OR_PARTITION"
    );
}

#[test]
fn incremental_alter_configs() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let t = unique("incr");
    create_topic(
        &bs,
        &t,
        1,
        &[("retention.ms", "123456"), ("cleanup.policy", "delete")],
    );
    let mut conn = RawConn::connect(broker.broker_addr());
    let v = conn.negotiate(ApiKey::IncrementalAlterConfigs, 0..=1);
    let op = |name: &'static str, operation: i8, value: Option<&'static str>| {
        AlterableConfig::default()
            .with_name(StrBytes::from_static_str(name))
            .with_config_operation(operation)
            .with_value(value.map(StrBytes::from_static_str))
    };
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(t.clone()))
            .with_configs(vec![
                op("segment.bytes", 0, Some("2097152")),  // SET
                op("max.message.bytes", 0, Some("4096")), // SET
                op("retention.ms", 1, None),              // DELETE (back to default)
            ]),
    ]);
    let resp = conn.call(&req, v);
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(
        resp.responses[0].error_code, 0,
        "{:?}",
        resp.responses[0].error_message
    );

    let d = describe(&bs, &t);
    assert_eq!(
        config_value(&d, "segment.bytes").as_deref(),
        Some("2097152")
    );
    assert_eq!(
        config_value(&d, "max.message.bytes").as_deref(),
        Some("4096")
    );
    assert_eq!(
        config_value(&d, "cleanup.policy").as_deref(),
        Some("delete"),
        "untouched key kept"
    );
    assert_ne!(
        config_value(&d, "retention.ms").as_deref(),
        Some("123456"),
        "DELETE must restore the default"
    );

    // Bad value: INVALID_CONFIG (40), nothing applied.
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(t.clone()))
            .with_configs(vec![
                op("segment.bytes", 0, Some("1")),
                op("cleanup.policy", 0, Some("bogus")),
            ]),
    ]);
    let resp = conn.call(&req, v);
    assert_eq!(
        resp.responses[0].error_code, 40,
        "invalid values must answer INVALID_CONFIG"
    );
    assert_eq!(
        config_value(&describe(&bs, &t), "segment.bytes").as_deref(),
        Some("2097152")
    );

    // Unknown topic: UNKNOWN_TOPIC_OR_PARTITION (3).
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(unique("ghost")))
            .with_configs(vec![op("retention.ms", 0, Some("1000"))]),
    ]);
    let resp = conn.call(&req, v);
    assert_eq!(resp.responses[0].error_code, 3);
}

#[test]
fn list_offsets_by_time_and_watermarks() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let t = unique("times");
    create_topic(&bs, &t, 1, &[]);
    assert_eq!(watermarks(&bs, &t, 0), (0, 0), "empty topic watermarks");

    let base = 1_700_000_000_000i64;
    let p = producer(&bs, &[("acks", "all")]);
    // Ten records at base, base+1000, ...; sent one at a time so each sits in its own batch
    // (the time index must resolve inside and across batches).
    for i in 0..10 {
        let r = Rec {
            timestamp: Some(base + i * 1000),
            value: Some(format!("{i}").into_bytes()),
            ..Rec::default()
        };
        produce_all(&p, &t, &[r]).expect("produce");
    }
    // And ten more in one batch.
    let recs: Vec<Rec> = (10..20)
        .map(|i| Rec {
            timestamp: Some(base + i * 1000),
            value: Some(format!("{i}").into_bytes()),
            ..Rec::default()
        })
        .collect();
    produce_all(&p, &t, &recs).expect("produce");
    assert_eq!(watermarks(&bs, &t, 0), (0, 20));

    let c = plain_consumer(&bs, &[]);
    let lookup = |ts: i64| -> Offset {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&t, 0, Offset::Offset(ts))
            .expect("tpl");
        let r = c
            .offsets_for_times(tpl, Duration::from_secs(10))
            .expect("ListOffsets by time");
        let e = r.find_partition(&t, 0).expect("partition in result");
        assert!(e.error().is_ok(), "ListOffsets error: {:?}", e.error());
        e.offset()
    };
    assert_eq!(lookup(0), Offset::Offset(0), "before everything");
    assert_eq!(lookup(base), Offset::Offset(0));
    assert_eq!(
        lookup(base + 1),
        Offset::Offset(1),
        "first record with timestamp >= ts"
    );
    assert_eq!(lookup(base + 5000), Offset::Offset(5));
    assert_eq!(
        lookup(base + 14_500),
        Offset::Offset(15),
        "inside a multi-record batch"
    );
    assert_eq!(lookup(base + 19_000), Offset::Offset(19));
    assert_eq!(lookup(base + 19_001), Offset::End, "after everything: -1");

    // Consumers positioned by timestamp read from there.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t, 0, Offset::Offset(base + 7000))
        .expect("tpl");
    let r = c
        .offsets_for_times(tpl, Duration::from_secs(10))
        .expect("offsets_for_times");
    c.assign(&r).expect("assign");
    let m = poll_until(OP_DEADLINE, "record after seek by time", || {
        c.poll(Duration::from_millis(100))
    })
    .expect("consume");
    assert_eq!((m.offset(), m.payload()), (7, Some(&b"7"[..])));
}

#[test]
fn delete_records_moves_log_start() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let a = admin(&bs);
    let rt = runtime();
    let t = unique("delrec");
    create_topic(&bs, &t, 2, &[]);
    let p = producer(&bs, &[("acks", "all")]);
    let recs: Vec<Rec> = (0..20)
        .map(|i| Rec {
            partition: Some(0),
            value: Some(format!("{i}").into_bytes()),
            ..Rec::default()
        })
        .collect();
    produce_all(&p, &t, &recs).expect("produce");

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t, 0, Offset::Offset(5))
        .expect("tpl");
    let res = rt
        .block_on(a.delete_records(&tpl, &admin_opts()))
        .expect("DeleteRecords");
    let e = res.find_partition(&t, 0).expect("partition in result");
    assert!(e.error().is_ok(), "DeleteRecords: {:?}", e.error());
    assert_eq!(e.offset(), Offset::Offset(5), "new low watermark");
    assert_eq!(watermarks(&bs, &t, 0), (5, 20));
    let msgs = consume_n(&bs, &t, 1, 15);
    assert_eq!(msgs.len(), 15);
    assert_eq!(
        msgs[0].offset(),
        5,
        "reading from the beginning starts at the new log start"
    );
    assert_eq!(payload_str(&msgs[0]), "5");

    // Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t, 0, Offset::Offset(21))
        .expect("tpl");
    let res = rt.block_on(a.delete_records(&tpl, &admin_opts()));
    let err = match res {
        Ok(r) => r
            .find_partition(&t, 0)
            .and_then(|e| e.error().err())
            .map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("out of range") || e.contains("OffsetOutOfRange")),
        "delete past the high watermark: {err:?}"
    );

    // Offset::End deletes everything.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t, 0, Offset::End).expect("tpl");
    let res = rt
        .block_on(a.delete_records(&tpl, &admin_opts()))
        .expect("DeleteRecords");
    assert_eq!(
        res.find_partition(&t, 0).map(|e| e.offset()),
        Some(Offset::Offset(20))
    );
    assert_eq!(watermarks(&bs, &t, 0), (20, 20));
    // Appends continue at the old end.
    let acks = produce_all(
        &p,
        &t,
        &[Rec {
            partition: Some(0),
            value: Some(b"next".to_vec()),
            ..Rec::default()
        }],
    )
    .expect("produce after delete");
    assert_eq!(acks, vec![(0, 20)]);
}
