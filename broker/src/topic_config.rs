//! Topic configs: the Kafka names the broker understands, their validation, defaults and the
//! mapping onto [`crate::log::LogConfig`].
//!
//! Unknown names are refused with INVALID_CONFIG rather than silently stored, so a typo in
//! `retention.ms` is caught when it is set, not discovered when data disappears.

use std::collections::BTreeMap;

use crate::config::TopicDefaults;
use crate::log::{CleanupPolicy, LogConfig};

/// A config value that failed validation, with a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig(pub String);

/// One config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub is_default: bool,
    pub documentation: &'static str,
    /// Kafka's `ConfigType` (1 BOOLEAN, 2 STRING, 3 INT, 4 SHORT, 5 LONG, 6 DOUBLE, 7 LIST ...).
    pub config_type: i8,
}

struct Spec {
    name: &'static str,
    config_type: i8,
    doc: &'static str,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "cleanup.policy",
        config_type: 7,
        doc: "delete, compact, or compact,delete.",
    },
    Spec {
        name: "compression.type",
        config_type: 2,
        doc: "Only 'producer' is supported: batches are stored as the producer compressed them.",
    },
    Spec {
        name: "delete.retention.ms",
        config_type: 5,
        doc: "How long tombstones are kept on compacted topics.",
    },
    Spec {
        name: "max.message.bytes",
        config_type: 3,
        doc: "Largest record batch accepted.",
    },
    Spec {
        name: "message.timestamp.type",
        config_type: 2,
        doc: "CreateTime or LogAppendTime.",
    },
    Spec {
        name: "min.compaction.lag.ms",
        config_type: 5,
        doc: "Minimum age of a record before compaction may remove it.",
    },
    Spec {
        name: "min.insync.replicas",
        config_type: 3,
        doc: "Accepted for compatibility; a single node has one replica.",
    },
    Spec {
        name: "retention.bytes",
        config_type: 5,
        doc: "Size per partition above which old segments are deleted (-1: no limit).",
    },
    Spec {
        name: "retention.ms",
        config_type: 5,
        doc: "Age after which old segments are deleted (-1: forever).",
    },
    Spec {
        name: "segment.bytes",
        config_type: 3,
        doc: "Size at which a new segment file is started.",
    },
    Spec {
        name: "segment.ms",
        config_type: 5,
        doc: "Age at which a new segment file is started.",
    },
];

fn parse_long(name: &str, value: &str, min: i64) -> Result<i64, InvalidConfig> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| InvalidConfig(format!("{name} must be an integer, got '{value}'")))?;
    if v < min {
        return Err(InvalidConfig(format!(
            "{name} must be at least {min}, got {v}"
        )));
    }
    Ok(v)
}

/// Checks one (name, value) pair. `None` as value means "reset to default", always valid for a
/// known name.
pub fn validate(name: &str, value: Option<&str>) -> Result<(), InvalidConfig> {
    if !SPECS.iter().any(|s| s.name == name) {
        return Err(InvalidConfig(format!(
            "unknown topic config '{name}'; supported: {}",
            SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        )));
    }
    let Some(value) = value else { return Ok(()) };
    match name {
        "cleanup.policy" => parse_policy(value).map(|_| ()),
        "compression.type" => match value {
            "producer" => Ok(()),
            other => Err(InvalidConfig(format!(
                "compression.type '{other}' is not supported by the bundled broker; use 'producer'"
            ))),
        },
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            other => Err(InvalidConfig(format!(
                "message.timestamp.type must be CreateTime or LogAppendTime, got '{other}'"
            ))),
        },
        "retention.ms" | "retention.bytes" => parse_long(name, value, -1).map(|_| ()),
        "segment.bytes" => {
            let v = parse_long(name, value, 1024)?;
            if v > i64::from(i32::MAX) {
                return Err(InvalidConfig(format!(
                    "segment.bytes must fit in 32 bits, got {v}"
                )));
            }
            Ok(())
        }
        "segment.ms" => parse_long(name, value, 1).map(|_| ()),
        "max.message.bytes" => parse_long(name, value, 0).map(|_| ()),
        "min.insync.replicas" => parse_long(name, value, 1).map(|_| ()),
        _ => parse_long(name, value, 0).map(|_| ()),
    }
}

fn parse_policy(value: &str) -> Result<CleanupPolicy, InvalidConfig> {
    let mut delete = false;
    let mut compact = false;
    for part in value.split(',').map(str::trim) {
        match part {
            "delete" => delete = true,
            "compact" => compact = true,
            other => {
                return Err(InvalidConfig(format!(
                    "cleanup.policy must be delete, compact or both, got '{other}'"
                )));
            }
        }
    }
    Ok(match (compact, delete) {
        (true, true) => CleanupPolicy::CompactDelete,
        (true, false) => CleanupPolicy::Compact,
        _ => CleanupPolicy::Delete,
    })
}

fn default_value(name: &str, d: &TopicDefaults) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "delete.retention.ms" => "86400000".into(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".into(),
        "min.compaction.lag.ms" => "0".into(),
        "min.insync.replicas" => "1".into(),
        "retention.bytes" => d.retention_bytes.to_string(),
        "retention.ms" => d.retention_ms.to_string(),
        "segment.bytes" => d.segment_bytes.to_string(),
        "segment.ms" => d.segment_ms.to_string(),
        _ => String::new(),
    }
}

/// Every config of a topic with its effective value, for DescribeConfigs.
pub fn describe(configs: &BTreeMap<String, String>, d: &TopicDefaults) -> Vec<ConfigEntry> {
    SPECS
        .iter()
        .map(|s| {
            let set = configs.get(s.name);
            ConfigEntry {
                name: s.name,
                value: set.cloned().unwrap_or_else(|| default_value(s.name, d)),
                is_default: set.is_none(),
                documentation: s.doc,
                config_type: s.config_type,
            }
        })
        .collect()
}

/// The effective log config of a topic: its own settings over the broker defaults.
pub fn log_config(configs: &BTreeMap<String, String>, d: &TopicDefaults) -> LogConfig {
    let get = |name: &str| {
        configs
            .get(name)
            .cloned()
            .unwrap_or_else(|| default_value(name, d))
    };
    let long = |name: &str, fallback: i64| get(name).trim().parse::<i64>().unwrap_or(fallback);
    LogConfig {
        segment_bytes: long("segment.bytes", d.segment_bytes).max(1024) as u64,
        segment_ms: long("segment.ms", d.segment_ms),
        retention_ms: long("retention.ms", d.retention_ms),
        retention_bytes: long("retention.bytes", d.retention_bytes),
        cleanup_policy: parse_policy(&get("cleanup.policy")).unwrap_or(CleanupPolicy::Delete),
        max_message_bytes: long("max.message.bytes", d.max_message_bytes).max(0) as usize,
        message_timestamp_type_log_append: get("message.timestamp.type") == "LogAppendTime",
        min_compaction_lag_ms: long("min.compaction.lag.ms", 0),
        delete_retention_ms: long("delete.retention.ms", 86_400_000),
        ..LogConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names_and_values() {
        assert!(validate("retention.ms", Some("1000")).is_ok());
        assert!(validate("retention.ms", Some("-1")).is_ok());
        assert!(validate("retention.ms", Some("-2")).is_err());
        assert!(validate("retention.ms", Some("soon")).is_err());
        assert!(validate("cleanup.policy", Some("compact,delete")).is_ok());
        assert!(validate("cleanup.policy", Some("archive")).is_err());
        assert!(validate("retention.msec", Some("1")).is_err());
        assert!(validate("segment.bytes", None).is_ok());
    }

    #[test]
    fn topic_settings_override_defaults() {
        let d = TopicDefaults::default();
        let mut c = BTreeMap::new();
        c.insert("cleanup.policy".to_string(), "compact".to_string());
        c.insert("segment.bytes".to_string(), "4096".to_string());
        let lc = log_config(&c, &d);
        assert_eq!(lc.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(lc.segment_bytes, 4096);
        assert_eq!(lc.retention_ms, d.retention_ms);
        let described = describe(&c, &d);
        let seg = described
            .iter()
            .find(|e| e.name == "segment.bytes")
            .expect("listed");
        assert!(!seg.is_default);
    }
}
