//! Dead-letter topics: copies of refused records, written by the gateway itself.
//!
//! When the data guard refuses a partition, the bad records of a topic with
//! `gatehouse.dead.letter.topic` (or of a schema whose failed CEL rule says `onFailure: DLQ`
//! with `params["dlq.topic"]`, Confluent's convention) are produced to that topic on the
//! gateway's own upstream client and credential: key, value and headers as the producer sent
//! them, plus `__gatehouse.error` (the refusal message), `__gatehouse.topic`,
//! `__gatehouse.partition` and `__gatehouse.schema_id` (when known). The producer still gets
//! INVALID_RECORD. The copy is written in the background: a failure is logged and counted
//! (`dead_letter_failed` among the refusal counters) and never changes the client's answer.
//! Records refused by the PAN guard are never copied (card data must not be duplicated), nor
//! records of encrypted topics (the copy would be plaintext); see `guard.rs`. Internal topics
//! are never dead-letter targets.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gatehouse_protocol::client::Client;
use gatehouse_protocol::records::{BatchBuilder, RecordHeader};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::Inner;
use crate::upstream::UpstreamConfig;

/// Header carrying the refusal message.
pub const ERROR_HEADER: &str = "__gatehouse.error";
/// Header carrying the topic the record was produced to.
pub const TOPIC_HEADER: &str = "__gatehouse.topic";
/// Header carrying the partition the record was produced to.
pub const PARTITION_HEADER: &str = "__gatehouse.partition";
/// Header carrying the record's schema id, when known.
pub const SCHEMA_ID_HEADER: &str = "__gatehouse.schema_id";
/// Most dead-letter writes in flight; further refusals are counted as failed, not queued.
const MAX_IN_FLIGHT: usize = 64;

/// A refused record bound for a dead-letter topic.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetter {
    /// Where it goes.
    pub dlq_topic: String,
    /// Where it was produced to.
    pub source_topic: String,
    /// The partition it was produced to.
    pub partition: i32,
    /// The record key as sent.
    pub key: Option<Bytes>,
    /// The record value as sent.
    pub value: Option<Bytes>,
    /// The record headers as sent.
    pub headers: Vec<RecordHeader>,
    /// The refusal message (never payload values).
    pub error: String,
    /// The schema id, when known.
    pub schema_id: Option<i32>,
}

/// The gateway's dead-letter writer (one internal client, created on first use).
pub(crate) struct DeadLetters {
    client: Client,
    created: Mutex<HashSet<String>>,
    in_flight: Arc<Semaphore>,
}

impl DeadLetters {
    /// A writer over the upstream's client configuration; does no I/O until used.
    pub fn new(upstream: &UpstreamConfig) -> Self {
        Self {
            client: Client::with_connector(upstream.client_config(), upstream.connector()),
            created: Mutex::new(HashSet::new()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    async fn ensure_topic(&self, topic: &str) -> Result<(), String> {
        let known = self
            .created
            .lock()
            .map(|c| c.contains(topic))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        self.client
            .create_topic(topic, 1, &[])
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(mut c) = self.created.lock() {
            c.insert(topic.to_string());
        }
        Ok(())
    }

    async fn write(&self, topic: &str, letters: &[DeadLetter]) -> Result<(), String> {
        crate::governance::check_dead_letter_topic(topic)?;
        self.ensure_topic(topic).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let mut builder = BatchBuilder::new();
        for l in letters {
            let mut headers = l.headers.clone();
            let mut add = |k: &'static str, v: String| {
                headers.push(RecordHeader::new(
                    Bytes::from_static(k.as_bytes()),
                    Some(Bytes::from(v)),
                ));
            };
            add(ERROR_HEADER, l.error.clone());
            add(TOPIC_HEADER, l.source_topic.clone());
            add(PARTITION_HEADER, l.partition.to_string());
            if let Some(id) = l.schema_id {
                add(SCHEMA_ID_HEADER, id.to_string());
            }
            builder
                .push(l.key.as_deref(), l.value.as_deref(), &headers, now)
                .map_err(|e| e.to_string())?;
        }
        let batch = builder.build().map_err(|e| e.to_string())?;
        self.client
            .produce(topic, 0, batch, -1)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Writes `letters` in the background; the outcome never changes the client's answer.
pub(crate) fn dispatch(gw: &Arc<Inner>, letters: Vec<DeadLetter>) {
    if letters.is_empty() {
        return;
    }
    let Ok(permit) = gw.dead_letters.in_flight.clone().try_acquire_owned() else {
        warn!(
            records = letters.len(),
            "Too many dead-letter writes in flight; these refused records are not copied."
        );
        for _ in &letters {
            gw.metrics.refused("dead_letter_failed");
        }
        return;
    };
    let gw = gw.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut by_topic: BTreeMap<String, Vec<DeadLetter>> = BTreeMap::new();
        for l in letters {
            by_topic.entry(l.dlq_topic.clone()).or_default().push(l);
        }
        for (topic, letters) in by_topic {
            match gw.dead_letters.write(&topic, &letters).await {
                Ok(()) => {
                    debug!(%topic, records = letters.len(), "Refused records copied to the dead-letter topic.");
                }
                Err(error) => {
                    warn!(
                        %topic,
                        records = letters.len(),
                        %error,
                        "Writing refused records to the dead-letter topic failed; the producer \
                         was refused anyway."
                    );
                    for _ in &letters {
                        gw.metrics.refused("dead_letter_failed");
                    }
                }
            }
        }
    });
}
