//! Cluster metadata as the client sees it: brokers, topics, partitions and their leaders.
//!
//! [`ClusterMetadata::from_response`] turns a `MetadataResponse` of any version into plain
//! owned types; the [`Client`](super::Client) keeps a merged copy to route requests.

use std::collections::BTreeMap;

use kafka_protocol::messages::MetadataResponse;

use super::errors::broker_error;
use crate::ProtocolError;

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker id (`node.id`).
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, when configured.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, with brackets around IPv6 literals.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id, -1 when there is none.
    pub leader: i32,
    /// Leader epoch (-1 when the broker did not say).
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// Kafka error code for this partition (0 when fine).
    pub error_code: i16,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id (all zero when the broker does not use topic ids).
    pub topic_id: [u8; 16],
    /// True for Kafka-internal topics such as `__consumer_offsets`.
    pub is_internal: bool,
    /// Kafka error code for this topic (e.g. 3 = UNKNOWN_TOPIC_OR_PARTITION), 0 when fine.
    pub error_code: i16,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    /// The partition with index `partition`.
    pub fn partition(&self, partition: i32) -> Option<&PartitionMetadata> {
        self.partitions.iter().find(|p| p.partition == partition)
    }

    /// True when the broker sent a topic id.
    pub fn has_topic_id(&self) -> bool {
        self.topic_id != [0; 16]
    }
}

/// A snapshot of cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Cluster id, when the broker sent one.
    pub cluster_id: Option<String>,
    /// The controller (or, on KRaft clusters, a broker that forwards controller requests).
    pub controller_id: i32,
    /// Brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name (including those the broker answered with an error code).
    pub topics: BTreeMap<String, TopicMetadata>,
}

impl ClusterMetadata {
    /// Converts a Metadata response.
    pub fn from_response(r: &MetadataResponse) -> Self {
        let brokers = r
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|s| s.to_string()),
                };
                (info.node_id, info)
            })
            .collect();
        let topics = r
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.to_string();
                let mut partitions: Vec<PartitionMetadata> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionMetadata {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        error_code: p.error_code,
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                Some((
                    name.clone(),
                    TopicMetadata {
                        name,
                        topic_id: *t.topic_id.as_bytes(),
                        is_internal: t.is_internal,
                        error_code: t.error_code,
                        partitions,
                    },
                ))
            })
            .collect();
        ClusterMetadata {
            cluster_id: r.cluster_id.as_ref().map(|s| s.to_string()),
            controller_id: r.controller_id.0,
            brokers,
            topics,
        }
    }

    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    /// The broker leading `topic`-`partition`, if known.
    pub fn leader_for(&self, topic: &str, partition: i32) -> Option<&BrokerInfo> {
        let p = self.topic(topic)?.partition(partition)?;
        self.brokers.get(&p.leader)
    }

    /// Like [`ClusterMetadata::leader_for`] but explains a missing leader with the topic's or
    /// partition's Kafka error code (UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE...).
    pub fn require_leader(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<&BrokerInfo, ProtocolError> {
        let ctx = || format!("{topic}-{partition}");
        let Some(t) = self.topic(topic) else {
            return Err(broker_error(3, &ctx(), Some("topic not in metadata")));
        };
        if t.error_code != 0 {
            return Err(broker_error(t.error_code, &ctx(), None));
        }
        let Some(p) = t.partition(partition) else {
            return Err(broker_error(3, &ctx(), Some("no such partition")));
        };
        if p.error_code != 0 && p.leader < 0 {
            return Err(broker_error(p.error_code, &ctx(), None));
        }
        match self.brokers.get(&p.leader) {
            Some(b) => Ok(b),
            None => Err(broker_error(
                5,
                &ctx(),
                Some(&format!("leader {} not among known brokers", p.leader)),
            )),
        }
    }

    /// Folds a newer snapshot in: brokers, controller and cluster id are replaced, topics in
    /// `newer` replace ours. With `all_topics`, topics missing from `newer` are dropped.
    pub fn merge(&mut self, newer: &ClusterMetadata, all_topics: bool) {
        self.cluster_id.clone_from(&newer.cluster_id);
        self.controller_id = newer.controller_id;
        if !newer.brokers.is_empty() {
            self.brokers.clone_from(&newer.brokers);
        }
        if all_topics {
            self.topics.clear();
        }
        for (name, t) in &newer.topics {
            if t.error_code == 0 {
                self.topics.insert(name.clone(), t.clone());
            } else {
                self.topics.remove(name);
            }
        }
    }
}
