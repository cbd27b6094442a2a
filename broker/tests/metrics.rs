//! The broker's metrics over a real produce: the topic's log size follows what was stored,
//! the group-commit fsync (durable mode) is counted in the latency histogram, and the
//! process-wide snapshot sees the running broker.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_broker::{Broker, BrokerConfig};
use gatehouse_protocol::client::{Client, ClientConfig};
use gatehouse_protocol::records::BatchBuilder;

#[tokio::test]
async fn log_sizes_and_fsyncs_follow_a_produce() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config).await.expect("broker starts");
    let before = broker.metrics();
    assert_eq!(before.log_bytes, 0);
    assert!(before.topic_bytes.is_empty());
    let client = Client::connect(ClientConfig::new([broker.local_addr().to_string()]))
        .await
        .expect("connect");
    tokio::time::timeout(Duration::from_secs(20), async {
        client.create_topic("sized", 2, &[]).await.expect("create");
        let mut b = BatchBuilder::new();
        b.push(Some(b"k"), Some(&[7u8; 500]), &[], 1_700_000_000_000)
            .expect("push");
        let batch = b.build().expect("build");
        let len = batch.len() as u64;
        // acks=all: answered after the covering fsync.
        client
            .produce("sized", 0, batch, -1)
            .await
            .expect("produce");
        let after = broker.metrics();
        assert_eq!(after.topic_bytes.get("sized"), Some(&len));
        assert_eq!(after.log_bytes, len);
        assert_eq!(after.partitions, 2);
        assert!(after.fsync.count > before.fsync.count, "{after:?}");
        // Cumulative buckets: the last bound holds at most every observation (+Inf holds all).
        assert!(after.fsync.buckets.last().map_or(0, |b| b.1) <= after.fsync.count);
        let all = gatehouse_broker::metrics::snapshot().expect("a broker runs here");
        assert_eq!(all.topic_bytes.get("sized"), Some(&len));
    })
    .await
    .expect("test took too long");
    broker.shutdown().await;
}
