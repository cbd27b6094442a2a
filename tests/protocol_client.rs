//! Our own async Kafka client (`gatehouse_protocol::client`, used later for upstream
//! connections and internal topics) against the real broker: topics, produce, fetch, offsets
//! and group membership, with batches written by our own RecordBatch builder.

mod common;

use common::{Broker, runtime, unique};
use gatehouse_protocol::client::{
    Client, ClientConfig, CreateTopicOutcome, EARLIEST_OFFSET, GroupMember, GroupMemberConfig,
    LATEST_OFFSET,
};
use gatehouse_protocol::records::{BatchBuilder, Compression, RawBatches, RecordHeader};

#[test]
fn client_produces_fetches_and_joins_a_group() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    runtime().block_on(async move {
        let client = Client::connect(ClientConfig::new([bs.clone()]))
            .await
            .expect("connect");
        let topic = unique("client");
        let created = client
            .create_topic(&topic, 2, &[("cleanup.policy", "compact")])
            .await
            .expect("create");
        assert!(matches!(created, CreateTopicOutcome::Created));
        let again = client
            .create_topic(&topic, 2, &[])
            .await
            .expect("create again");
        assert!(matches!(again, CreateTopicOutcome::AlreadyExists));

        let md = client
            .metadata(Some(&[topic.as_str()]))
            .await
            .expect("metadata");
        assert_eq!(md.topic(&topic).expect("topic listed").partitions.len(), 2);

        let mut b = BatchBuilder::new().compression(Compression::Zstd);
        for i in 0..10u8 {
            b.push(
                Some(&[b'k', i]),
                Some(&[b'v', i]),
                &[RecordHeader::new(
                    &b"h"[..],
                    Some(bytes::Bytes::from_static(b"1")),
                )],
                1_700_000_000_000 + i64::from(i),
            )
            .expect("push");
        }
        let base = client
            .produce(&topic, 1, b.build().expect("build"), -1)
            .await
            .expect("produce");
        assert_eq!(base, 0);

        let fetched = client
            .fetch(&topic, 1, 0, 1 << 20, 500)
            .await
            .expect("fetch");
        assert_eq!(fetched.high_watermark, 10);
        let records: Vec<_> = RawBatches::new(fetched.records)
            .flat_map(|b| b.expect("batch").records().expect("records"))
            .collect();
        assert_eq!(records.len(), 10);
        assert_eq!(records[3].key.as_deref(), Some(&[b'k', 3][..]));
        assert_eq!(records[3].headers.len(), 1);

        assert_eq!(
            client
                .list_offsets(&topic, 1, EARLIEST_OFFSET)
                .await
                .expect("earliest")
                .0,
            0
        );
        assert_eq!(
            client
                .list_offsets(&topic, 1, LATEST_OFFSET)
                .await
                .expect("latest")
                .0,
            10
        );

        // Group membership: the single member leads and owns both partitions.
        let group = unique("client-group");
        let mut cfg = GroupMemberConfig::new(group.clone(), vec![topic.clone()]);
        cfg.session_timeout = std::time::Duration::from_secs(10);
        let member = GroupMember::join(client.clone(), cfg).await.expect("join");
        let a = member.assignment().expect("assigned");
        assert!(a.is_leader());
        assert_eq!(a.partitions.get(&topic).map(Vec::len), Some(2));
        member.leave().await.expect("leave");
    });
}
