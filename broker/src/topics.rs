//! Durable topic metadata: names, ids, partition counts and per-topic configs, with the open
//! partition logs of each topic.
//!
//! Metadata lives in `<data-dir>/meta/topics.json`, replaced atomically (write, fsync, rename,
//! fsync the directory). Creation opens the partition directories first and records the topic
//! second; deletion forgets the topic first and removes directories second. A crash between
//! the two steps leaves only orphan directories, which [`Topics::open`] removes, so a topic is
//! never half there.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::BrokerError;
use crate::config::TopicDefaults;
use crate::log::{LogManager, Partition};
use crate::topic_config;

/// Longest topic name Kafka allows.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name by Kafka's rules (`[a-zA-Z0-9._-]`, 1-249 chars, not `.` or `..`).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "topic name is {} characters long; the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name '{name}' contains '{c}'; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: [u8; 16],
    partitions: i32,
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TopicsFile {
    version: u32,
    topics: Vec<TopicRecord>,
}

/// One topic with its open partitions.
#[derive(Clone)]
pub struct Topic {
    pub name: String,
    pub id: [u8; 16],
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<Partition>,
}

impl Topic {
    /// Whether this is an internal topic (`__consumer_offsets`-style names).
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

/// The topic registry.
#[derive(Clone)]
pub struct Topics {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    meta_dir: PathBuf,
    logs: LogManager,
    defaults: TopicDefaults,
    topics: RwLock<BTreeMap<String, Topic>>,
    /// Serialises metadata changes (create/delete/alter) so the file and map stay in step.
    write_lock: tokio::sync::Mutex<()>,
}

fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

fn random_id() -> [u8; 16] {
    let mut id = *uuid::Uuid::new_v4().as_bytes();
    if id == [0u8; 16] {
        id[15] = 1;
    }
    id
}

impl Topics {
    /// Loads the registry, opens every partition log (running recovery), and removes orphan
    /// partition directories left by an interrupted create or delete.
    pub fn open(
        data_dir: &Path,
        logs: LogManager,
        defaults: TopicDefaults,
    ) -> Result<Self, BrokerError> {
        let meta_dir = data_dir.join("meta");
        fs::create_dir_all(&meta_dir).map_err(|e| BrokerError::io("create meta dir", e))?;
        let file = meta_dir.join("topics.json");
        let stored: TopicsFile = match fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BrokerError::Metadata(format!(
                "{} is not valid topic metadata ({e}); restore it from a backup or remove the data directory",
                file.display()
            )))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TopicsFile::default(),
            Err(e) => return Err(BrokerError::io("read topics.json", e)),
        };
        let mut topics = BTreeMap::new();
        for rec in stored.topics {
            let lc = topic_config::log_config(&rec.configs, &defaults);
            let mut parts = Vec::with_capacity(rec.partitions.max(0) as usize);
            for p in 0..rec.partitions {
                let dir = partition_dir(data_dir, &rec.name, p);
                parts.push(logs.open_partition(&dir, lc.clone())?);
            }
            topics.insert(
                rec.name.clone(),
                Topic {
                    name: rec.name,
                    id: rec.id,
                    configs: rec.configs,
                    partitions: parts,
                },
            );
        }
        remove_orphans(data_dir, &topics);
        Ok(Self {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                meta_dir,
                logs,
                defaults,
                topics: RwLock::new(topics),
                write_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The broker-wide topic defaults.
    pub fn defaults(&self) -> &TopicDefaults {
        &self.inner.defaults
    }

    /// A snapshot of one topic.
    pub fn get(&self, name: &str) -> Option<Topic> {
        self.read().get(name).cloned()
    }

    /// Looks a topic up by id.
    pub fn get_by_id(&self, id: &[u8; 16]) -> Option<Topic> {
        self.read().values().find(|t| &t.id == id).cloned()
    }

    /// One partition's log.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Partition> {
        let guard = self.read();
        let t = guard.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p).cloned())
    }

    /// Snapshot of every topic.
    pub fn all(&self) -> Vec<Topic> {
        self.read().values().cloned().collect()
    }

    /// Every open partition (for the background cleaner).
    pub fn all_partitions(&self) -> Vec<Partition> {
        self.read()
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Topic>> {
        match self.inner.topics.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Topic>> {
        match self.inner.topics.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Validates a creation request without changing anything (CreateTopics validate_only).
    pub fn check_create(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), CreateError> {
        validate_topic_name(name).map_err(CreateError::InvalidName)?;
        if self.read().contains_key(name) {
            return Err(CreateError::Exists);
        }
        if partitions < 1 {
            return Err(CreateError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        if partitions > 10_000 {
            return Err(CreateError::InvalidPartitions(format!(
                "{partitions} partitions is more than this broker allows (10000)"
            )));
        }
        for (k, v) in configs {
            topic_config::validate(k, Some(v)).map_err(|e| CreateError::InvalidConfig(e.0))?;
        }
        Ok(())
    }

    /// Creates a topic durably.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Topic, CreateError> {
        let _w = self.inner.write_lock.lock().await;
        self.check_create(name, partitions, &configs)?;
        let lc = topic_config::log_config(&configs, &self.inner.defaults);
        let mut parts = Vec::new();
        for p in 0..partitions {
            let dir = partition_dir(&self.inner.data_dir, name, p);
            parts.push(
                self.inner
                    .logs
                    .open_partition(&dir, lc.clone())
                    .map_err(|e| CreateError::Storage(e.to_string()))?,
            );
        }
        let topic = Topic {
            name: name.to_owned(),
            id: random_id(),
            configs,
            partitions: parts,
        };
        let mut next = self.read().clone();
        next.insert(name.to_owned(), topic.clone());
        self.persist(&next)
            .map_err(|e| CreateError::Storage(e.to_string()))?;
        *self.write() = next;
        tracing::info!(topic = name, partitions, "Topic created.");
        Ok(topic)
    }

    /// Deletes a topic durably and removes its data.
    pub async fn delete(&self, name: &str) -> Result<Topic, BrokerError> {
        let _w = self.inner.write_lock.lock().await;
        let mut next = self.read().clone();
        let Some(topic) = next.remove(name) else {
            return Err(BrokerError::UnknownTopic(name.to_owned()));
        };
        self.persist(&next)?;
        *self.write() = next;
        for p in topic.partitions.iter().cloned() {
            if let Err(e) = p.delete() {
                tracing::warn!(topic = name, error = %e, "Could not remove a partition directory; it will be removed at next start.");
            }
        }
        tracing::info!(topic = name, "Topic deleted.");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions.
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), CreateError> {
        let _w = self.inner.write_lock.lock().await;
        let Some(mut topic) = self.get(name) else {
            return Err(CreateError::Unknown);
        };
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(CreateError::InvalidPartitions(format!(
                "topic '{name}' has {current} partitions; the new count must be larger, got {count}"
            )));
        }
        if count > 10_000 {
            return Err(CreateError::InvalidPartitions(format!(
                "{count} partitions is more than this broker allows (10000)"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let lc = topic_config::log_config(&topic.configs, &self.inner.defaults);
        for p in current..count {
            let dir = partition_dir(&self.inner.data_dir, name, p);
            topic.partitions.push(
                self.inner
                    .logs
                    .open_partition(&dir, lc.clone())
                    .map_err(|e| CreateError::Storage(e.to_string()))?,
            );
        }
        let mut next = self.read().clone();
        next.insert(name.to_owned(), topic);
        self.persist(&next)
            .map_err(|e| CreateError::Storage(e.to_string()))?;
        *self.write() = next;
        tracing::info!(topic = name, partitions = count, "Partitions added.");
        Ok(())
    }

    /// Replaces (or, with `incremental`, edits) a topic's configs after validating them all.
    /// `changes` holds (name, Some(value)) to set and (name, None) to reset to the default.
    pub async fn alter_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), AlterError> {
        let _w = self.inner.write_lock.lock().await;
        let Some(mut topic) = self.get(name) else {
            return Err(AlterError::Unknown);
        };
        for (k, v) in &changes {
            topic_config::validate(k, v.as_deref()).map_err(|e| AlterError::Invalid(e.0))?;
        }
        let mut configs = if incremental {
            topic.configs.clone()
        } else {
            BTreeMap::new()
        };
        for (k, v) in changes {
            match v {
                Some(v) => {
                    configs.insert(k, v);
                }
                None => {
                    configs.remove(&k);
                }
            }
        }
        if validate_only {
            return Ok(());
        }
        let lc = topic_config::log_config(&configs, &self.inner.defaults);
        for p in &topic.partitions {
            p.set_config(lc.clone());
        }
        topic.configs = configs;
        let mut next = self.read().clone();
        next.insert(name.to_owned(), topic);
        self.persist(&next)
            .map_err(|e| AlterError::Storage(e.to_string()))?;
        *self.write() = next;
        tracing::info!(topic = name, "Topic configs changed.");
        Ok(())
    }

    fn persist(&self, topics: &BTreeMap<String, Topic>) -> Result<(), BrokerError> {
        let file = TopicsFile {
            version: 1,
            topics: topics
                .values()
                .map(|t| TopicRecord {
                    name: t.name.clone(),
                    id: t.id,
                    partitions: t.partitions.len() as i32,
                    configs: t.configs.clone(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| BrokerError::Metadata(format!("encode topics.json: {e}")))?;
        write_atomically(&self.inner.meta_dir, "topics.json", &bytes)
    }
}

/// Writes `name` in `dir` atomically and durably: temp file, fsync, rename, fsync the directory.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BrokerError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = fs::File::create(&tmp).map_err(|e| BrokerError::io("create temp file", e))?;
    f.write_all(bytes)
        .map_err(|e| BrokerError::io("write temp file", e))?;
    f.sync_all()
        .map_err(|e| BrokerError::io("fsync temp file", e))?;
    fs::rename(&tmp, &dst).map_err(|e| BrokerError::io("rename temp file", e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BrokerError::io("fsync directory", e))?;
    Ok(())
}

fn remove_orphans(data_dir: &Path, topics: &BTreeMap<String, Topic>) {
    let Ok(entries) = fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((topic, part)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(p) = part.parse::<i32>() else { continue };
        if validate_topic_name(topic).is_err() {
            continue;
        }
        let known = topics
            .get(topic)
            .is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len());
        if !known {
            tracing::warn!(dir = %path.display(), "Removing the directory of a partition no topic owns (interrupted create or delete).");
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!(dir = %path.display(), error = %e, "Could not remove orphan partition directory.");
            }
        }
    }
}

/// Why a topic could not be created or grown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    Exists,
    Unknown,
    InvalidName(String),
    InvalidPartitions(String),
    InvalidConfig(String),
    Storage(String),
}

/// Why configs could not be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterError {
    Unknown,
    Invalid(String),
    Storage(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
