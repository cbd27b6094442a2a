//! Per-topic `max.message.bytes`, read from the upstream with DescribeConfigs and kept for a
//! minute, so batches the gateway re-encodes (encryption makes them larger) are split under
//! the limit the broker will apply. Unknown (the upstream does not answer, the topic is
//! new): Kafka's default, 1,048,588 bytes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_protocol::client::Client;
use gatehouse_protocol::kafka_protocol::messages::DescribeConfigsRequest;
use gatehouse_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::upstream::UpstreamConfig;

/// Kafka's default `max.message.bytes` (and `message.max.bytes`).
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// How long a looked-up limit is used before asking again.
const TTL: Duration = Duration::from_secs(60);
/// How long a failed lookup is not retried (the default applies meanwhile).
const FAILURE_TTL: Duration = Duration::from_secs(10);
/// Topic resource type of DescribeConfigs.
const TOPIC_RESOURCE: i8 = 2;

/// The limits cache (one internal client, connected on first use).
pub(crate) struct TopicLimits {
    client: Client,
    cache: Mutex<HashMap<String, (usize, Instant)>>,
}

impl TopicLimits {
    /// A cache over the upstream's client configuration; no I/O until used.
    pub fn new(upstream: &UpstreamConfig) -> Self {
        Self {
            client: Client::with_connector(upstream.client_config(), upstream.connector()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The topic's `max.message.bytes` (the default when it cannot be read).
    pub async fn max_message_bytes(&self, topic: &str) -> usize {
        if let Ok(c) = self.cache.lock()
            && let Some((limit, until)) = c.get(topic)
            && Instant::now() < *until
        {
            return *limit;
        }
        let (limit, ttl) = match self.describe(topic).await {
            Ok(Some(limit)) => (limit, TTL),
            Ok(None) => (DEFAULT_MAX_MESSAGE_BYTES, TTL),
            Err(e) => {
                debug!(topic, error = %e, "max.message.bytes unknown; using Kafka's default");
                (DEFAULT_MAX_MESSAGE_BYTES, FAILURE_TTL)
            }
        };
        if let Ok(mut c) = self.cache.lock() {
            if c.len() > 10_000 {
                c.clear();
            }
            c.insert(topic.to_string(), (limit, Instant::now() + ttl));
        }
        limit
    }

    async fn describe(&self, topic: &str) -> Result<Option<usize>, String> {
        let conn = self.client.any_broker().await.map_err(|e| e.to_string())?;
        let version = conn
            .version_for::<DescribeConfigsRequest>()
            .map_err(|e| e.to_string())?;
        // Every config of the topic (`configuration_keys` null: some brokers cannot decode
        // named keys), then pick the one wanted.
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configuration_keys(None),
        ]);
        let resp = conn.send(req, version).await.map_err(|e| e.to_string())?;
        let Some(result) = resp.results.first() else {
            return Ok(None);
        };
        if result.error_code != 0 {
            return Err(format!("DescribeConfigs error code {}", result.error_code));
        }
        Ok(result
            .configs
            .iter()
            .find(|c| c.name.as_str() == "max.message.bytes")
            .and_then(|c| c.value.as_ref())
            .and_then(|v| v.parse::<usize>().ok()))
    }
}

/// The uncompressed size a re-encoded batch may reach under `limit`: room for the batch
/// header and for what a codec adds to incompressible ciphertext (lz4 up to 1/255, so 1/64
/// of the limit, at least 1 KiB), and never below 16 KiB.
pub(crate) fn split_threshold(limit: usize) -> usize {
    limit.saturating_sub((limit / 64).max(1024)).max(16 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(split_threshold(DEFAULT_MAX_MESSAGE_BYTES), 1_032_204);
        assert_eq!(split_threshold(100_000), 98_438);
        assert_eq!(split_threshold(10), 16 * 1024);
    }
}
