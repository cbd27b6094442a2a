//! The `_schemas` record layout: Confluent Schema Registry's JSON keys and values, so a
//! Confluent `_schemas` topic can be read as is and ours can be read by Confluent tooling.
//!
//! | change | key | value |
//! |---|---|---|
//! | [`Change::Schema`] | `{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}` | `{"subject","version","id","schemaType" (not for AVRO),"schema","references","metadata"?,"ruleSet"?,"guid","deleted"}` |
//! | [`Change::SchemaRemoved`] | the `SCHEMA` key | tombstone (null) |
//! | [`Change::Config`] | `{"keytype":"CONFIG","subject":S or null,"magic":0}` | `{"compatibilityLevel":L?,"defaultMetadata"?,"overrideMetadata"?,"defaultRuleSet"?,"overrideRuleSet"?}` or tombstone |
//! | [`Change::Mode`] | `{"keytype":"MODE","subject":S or null,"magic":0}` | `{"mode":M}` or tombstone |
//! | [`Change::DeleteSubject`] | `{"keytype":"DELETE_SUBJECT","subject":S,"magic":0}` | `{"subject":S,"version":V}` |
//! | [`Change::ClearSubject`] | `{"keytype":"CLEAR_SUBJECT","subject":S,"magic":0}` | `{"subject":S}` |
//! | [`Change::IdHighWater`] | `{"keytype":"ID_HIGH_WATER","magic":0}` | `{"id":N}` (never tombstoned) |
//!
//! Keys are written byte-stable (fields always in the order `keytype`, `subject`, `version`,
//! `magic`, compact JSON), because compaction matches exact key bytes: a logically equal key
//! in another field order would survive compaction next to ours (Confluent issue #2961).
//! Keys are read in any field order. `NOOP` records, tombstones of `DELETE_SUBJECT`,
//! `CLEAR_SUBJECT` and `ID_HIGH_WATER` keys, and unknown key types (`CONTEXT`, `ASSOC`, ...)
//! decode to `None` (no state change).
//!
//! `guid` is written with every `SCHEMA` value (Confluent writes one too); a value without it
//! gets the derived GUID when applied (see [`crate::api::governance`]). `metadata` and
//! `ruleSet` are omitted when absent (Confluent writes `null`; both are read).

use serde::{Deserialize, Serialize};

use crate::api::governance::{guid_to_string, parse_guid};
use crate::api::{Change, ConfigRecord, Mode, SchemaRecord};
use crate::compat::CompatibilityLevel;
use crate::contract::{Metadata, RuleSet};
use crate::schema::{Reference, SchemaType};

/// A record that is not valid registry JSON.
#[derive(Debug, thiserror::Error)]
#[error("malformed _schemas record: {0}")]
pub struct RecordError(String);

fn bad(what: impl Into<String>) -> RecordError {
    RecordError(what.into())
}

/// `SCHEMA` keys carry magic 1, every other key type magic 0 (as Confluent writes them).
#[derive(Serialize)]
struct KeyOut<'a> {
    keytype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i32>,
    magic: i32,
}

#[derive(Deserialize)]
struct KeyIn {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<i32>,
}

#[derive(Serialize, Deserialize)]
struct SchemaValue {
    subject: String,
    version: i32,
    id: i32,
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    schema_type: Option<String>,
    schema: String,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata>,
    #[serde(default, rename = "ruleSet", skip_serializing_if = "Option::is_none")]
    rule_set: Option<RuleSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guid: Option<String>,
    #[serde(default)]
    deleted: bool,
}

#[derive(Serialize, Deserialize)]
struct ConfigValue {
    #[serde(
        rename = "compatibilityLevel",
        alias = "compatibility",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    compatibility_level: Option<String>,
    #[serde(
        rename = "defaultMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    default_metadata: Option<Metadata>,
    #[serde(
        rename = "overrideMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    override_metadata: Option<Metadata>,
    #[serde(
        rename = "defaultRuleSet",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    default_rule_set: Option<RuleSet>,
    #[serde(
        rename = "overrideRuleSet",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    override_rule_set: Option<RuleSet>,
}

#[derive(Serialize, Deserialize)]
struct ModeValue {
    mode: String,
}

#[derive(Serialize, Deserialize)]
struct DeleteSubjectValue {
    subject: String,
    version: i32,
}

#[derive(Serialize, Deserialize)]
struct ClearSubjectValue {
    subject: String,
}

#[derive(Serialize, Deserialize)]
struct IdHighWaterValue {
    id: i32,
}

fn key<'a>(keytype: &'a str, subject: Option<Option<&'a str>>, version: Option<i32>) -> KeyOut<'a> {
    KeyOut {
        keytype,
        subject,
        version,
        magic: i32::from(keytype == "SCHEMA"),
    }
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, RecordError> {
    serde_json::to_vec(v).map_err(|e| bad(e.to_string()))
}

/// The record (key, value; `None` = tombstone) for a change.
pub fn encode(change: &Change) -> Result<(Vec<u8>, Option<Vec<u8>>), RecordError> {
    Ok(match change {
        Change::Schema(r) => (
            json(&key("SCHEMA", Some(Some(&r.subject)), Some(r.version)))?,
            Some(json(&SchemaValue {
                subject: r.subject.clone(),
                version: r.version,
                id: r.id,
                schema_type: (r.schema_type != SchemaType::Avro)
                    .then(|| r.schema_type.as_str().to_string()),
                schema: r.schema.clone(),
                references: r.references.clone(),
                metadata: r.metadata.clone(),
                rule_set: r.rule_set.clone(),
                guid: r.guid.as_ref().map(guid_to_string),
                deleted: r.deleted,
            })?),
        ),
        Change::SchemaRemoved { subject, version } => (
            json(&key("SCHEMA", Some(Some(subject)), Some(*version)))?,
            None,
        ),
        Change::DeleteSubject { subject, version } => (
            json(&key("DELETE_SUBJECT", Some(Some(subject)), None))?,
            Some(json(&DeleteSubjectValue {
                subject: subject.clone(),
                version: *version,
            })?),
        ),
        Change::ClearSubject { subject } => (
            json(&key("CLEAR_SUBJECT", Some(Some(subject)), None))?,
            Some(json(&ClearSubjectValue {
                subject: subject.clone(),
            })?),
        ),
        Change::Config { subject, config } => (
            json(&key("CONFIG", Some(subject.as_deref()), None))?,
            config
                .as_ref()
                .map(|c| {
                    json(&ConfigValue {
                        compatibility_level: c.compatibility.map(|l| l.as_str().to_string()),
                        default_metadata: c.default_metadata.clone(),
                        override_metadata: c.override_metadata.clone(),
                        default_rule_set: c.default_rule_set.clone(),
                        override_rule_set: c.override_rule_set.clone(),
                    })
                })
                .transpose()?,
        ),
        Change::Mode { subject, mode } => (
            json(&key("MODE", Some(subject.as_deref()), None))?,
            mode.map(|m| {
                json(&ModeValue {
                    mode: m.as_str().to_string(),
                })
            })
            .transpose()?,
        ),
        Change::IdHighWater { id } => (
            json(&key("ID_HIGH_WATER", None, None))?,
            Some(json(&IdHighWaterValue { id: *id })?),
        ),
    })
}

fn value<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, RecordError> {
    serde_json::from_slice(bytes).map_err(|e| bad(format!("{what} value: {e}")))
}

fn need_subject(k: &KeyIn) -> Result<String, RecordError> {
    k.subject
        .clone()
        .ok_or_else(|| bad(format!("{} key without subject", k.keytype)))
}

/// Decodes one record into the change it makes, or `None` when it changes nothing.
pub fn decode(key_bytes: &[u8], value_bytes: Option<&[u8]>) -> Result<Option<Change>, RecordError> {
    let k: KeyIn = serde_json::from_slice(key_bytes).map_err(|e| bad(format!("key: {e}")))?;
    Ok(match (k.keytype.as_str(), value_bytes) {
        ("SCHEMA", None) => Some(Change::SchemaRemoved {
            subject: need_subject(&k)?,
            version: k.version.ok_or_else(|| bad("SCHEMA key without version"))?,
        }),
        ("SCHEMA", Some(v)) => {
            let v: SchemaValue = value(v, "SCHEMA")?;
            let schema_type = match v.schema_type.as_deref() {
                None => SchemaType::Avro,
                Some(t) => SchemaType::parse(t).map_err(|e| bad(e.to_string()))?,
            };
            Some(Change::Schema(SchemaRecord {
                subject: v.subject,
                version: v.version,
                id: v.id,
                schema_type,
                schema: v.schema,
                references: v.references,
                metadata: v.metadata,
                rule_set: v.rule_set,
                guid: v.guid.as_deref().and_then(parse_guid),
                deleted: v.deleted,
            }))
        }
        ("CONFIG", v) => Some(Change::Config {
            subject: k.subject,
            config: v
                .map(|v| {
                    let c: ConfigValue = value(v, "CONFIG")?;
                    let compatibility = c
                        .compatibility_level
                        .map(|l| {
                            l.parse::<CompatibilityLevel>()
                                .map_err(|_| bad(format!("compatibility {l}")))
                        })
                        .transpose()?;
                    Ok::<_, RecordError>(ConfigRecord {
                        compatibility,
                        default_metadata: c.default_metadata,
                        override_metadata: c.override_metadata,
                        default_rule_set: c.default_rule_set,
                        override_rule_set: c.override_rule_set,
                    })
                })
                .transpose()?,
        }),
        ("MODE", v) => Some(Change::Mode {
            subject: k.subject,
            mode: v
                .map(|v| {
                    let m: ModeValue = value(v, "MODE")?;
                    m.mode
                        .parse::<Mode>()
                        .map_err(|_| bad(format!("mode {}", m.mode)))
                })
                .transpose()?,
        }),
        ("DELETE_SUBJECT", Some(v)) => {
            let v: DeleteSubjectValue = value(v, "DELETE_SUBJECT")?;
            Some(Change::DeleteSubject {
                subject: v.subject,
                version: v.version,
            })
        }
        ("CLEAR_SUBJECT", Some(v)) => {
            let v: ClearSubjectValue = value(v, "CLEAR_SUBJECT")?;
            Some(Change::ClearSubject { subject: v.subject })
        }
        ("ID_HIGH_WATER", Some(v)) => {
            let v: IdHighWaterValue = value(v, "ID_HIGH_WATER")?;
            Some(Change::IdHighWater { id: v.id })
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Listing, MemoryStore, SchemaStore, VersionSpec};

    fn rec(subject: &str, version: i32, id: i32, deleted: bool) -> SchemaRecord {
        SchemaRecord {
            subject: subject.into(),
            version,
            id,
            schema_type: SchemaType::Avro,
            schema: format!(
                r#"{{"type":"record","name":"R{id}","fields":[{{"name":"a","type":"int"}}]}}"#
            ),
            references: Vec::new(),
            metadata: None,
            rule_set: None,
            guid: None,
            deleted,
        }
    }

    fn level(l: CompatibilityLevel) -> Option<ConfigRecord> {
        Some(ConfigRecord {
            compatibility: Some(l),
            ..ConfigRecord::default()
        })
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn keys_are_confluent_layout_and_byte_stable() {
        let (k, v) = encode(&Change::Schema(rec("s", 1, 7, false))).unwrap();
        assert_eq!(
            text(&k),
            r#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&v.unwrap()).unwrap();
        assert_eq!(v["subject"], "s");
        assert_eq!(v["version"], 1);
        assert_eq!(v["id"], 7);
        assert_eq!(v["deleted"], false);
        assert!(v.get("schemaType").is_none(), "AVRO omits schemaType");
        assert_eq!(v["references"], serde_json::json!([]));

        let (k, v) = encode(&Change::Config {
            subject: None,
            config: level(CompatibilityLevel::Full),
        })
        .unwrap();
        assert_eq!(text(&k), r#"{"keytype":"CONFIG","subject":null,"magic":0}"#);
        assert_eq!(text(&v.unwrap()), r#"{"compatibilityLevel":"FULL"}"#);
        let (k, v) = encode(&Change::Mode {
            subject: Some("m".into()),
            mode: None,
        })
        .unwrap();
        assert_eq!(text(&k), r#"{"keytype":"MODE","subject":"m","magic":0}"#);
        assert!(v.is_none());
        let (k, v) = encode(&Change::DeleteSubject {
            subject: "s".into(),
            version: 3,
        })
        .unwrap();
        assert_eq!(
            text(&k),
            r#"{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}"#
        );
        assert_eq!(text(&v.unwrap()), r#"{"subject":"s","version":3}"#);
        let (k, v) = encode(&Change::IdHighWater { id: 9 }).unwrap();
        assert_eq!(text(&k), r#"{"keytype":"ID_HIGH_WATER","magic":0}"#);
        assert_eq!(text(&v.unwrap()), r#"{"id":9}"#);
        let (k, v) = encode(&Change::SchemaRemoved {
            subject: "s".into(),
            version: 2,
        })
        .unwrap();
        assert_eq!(
            text(&k),
            r#"{"keytype":"SCHEMA","subject":"s","version":2,"magic":1}"#
        );
        assert!(v.is_none());
    }

    #[test]
    fn every_change_round_trips() {
        let mut proto = rec("p", 2, 3, true);
        proto.guid = Some([7u8; 16]);
        proto.metadata = Some(Metadata {
            tags: Some([("M.a".to_string(), ["PII".to_string()].into())].into()),
            ..Metadata::default()
        });
        proto.rule_set = Some(RuleSet {
            domain_rules: Some(vec![crate::contract::Rule {
                name: "pos".into(),
                rule_type: "CEL".into(),
                expr: Some("message.a > 0".into()),
                ..Default::default()
            }]),
            ..RuleSet::default()
        });
        proto.schema_type = SchemaType::Protobuf;
        proto.schema = "syntax = \"proto3\"; message M { int32 a = 1; }".into();
        proto.references = vec![Reference {
            name: "x.proto".into(),
            subject: "x".into(),
            version: 1,
        }];
        let changes = vec![
            Change::Schema(rec("s", 1, 1, false)),
            Change::Schema(proto),
            Change::SchemaRemoved {
                subject: "s".into(),
                version: 1,
            },
            Change::DeleteSubject {
                subject: "s".into(),
                version: 4,
            },
            Change::ClearSubject {
                subject: "s".into(),
            },
            Change::Config {
                subject: Some("s".into()),
                config: level(CompatibilityLevel::None),
            },
            Change::Config {
                subject: Some("g".into()),
                config: Some(ConfigRecord {
                    default_metadata: Some(Metadata {
                        properties: Some([("owner".to_string(), "x".to_string())].into()),
                        ..Metadata::default()
                    }),
                    override_rule_set: Some(RuleSet {
                        domain_rules: Some(vec![crate::contract::Rule {
                            name: "r".into(),
                            rule_type: "CEL".into(),
                            ..Default::default()
                        }]),
                        ..RuleSet::default()
                    }),
                    ..ConfigRecord::default()
                }),
            },
            Change::Config {
                subject: None,
                config: None,
            },
            Change::Mode {
                subject: None,
                mode: Some(Mode::Readonly),
            },
            Change::IdHighWater { id: 42 },
        ];
        for c in changes {
            let (k, v) = encode(&c).unwrap();
            assert_eq!(decode(&k, v.as_deref()).unwrap(), Some(c));
        }
    }

    #[test]
    fn confluent_records_decode_in_any_field_order() {
        let k = br#"{"magic":1,"version":2,"subject":"t-value","keytype":"SCHEMA"}"#;
        let v = br#"{"subject":"t-value","version":2,"id":5,"schema":"\"string\"","deleted":false,"metadata":null,"ruleSet":null}"#;
        let Some(Change::Schema(r)) = decode(k, Some(v)).unwrap() else {
            panic!("not a schema");
        };
        assert_eq!((r.subject.as_str(), r.version, r.id), ("t-value", 2, 5));
        assert_eq!(r.schema_type, SchemaType::Avro);
        // NOOP, unknown types and tombstones of non-state keys change nothing.
        assert_eq!(
            decode(br#"{"keytype":"NOOP","magic":0}"#, None).unwrap(),
            None
        );
        assert_eq!(
            decode(
                br#"{"keytype":"CONTEXT","tenant":"t","context":"c","magic":0}"#,
                Some(b"{}")
            )
            .unwrap(),
            None
        );
        assert_eq!(
            decode(br#"{"keytype":"ID_HIGH_WATER","magic":0}"#, None).unwrap(),
            None
        );
        assert!(decode(b"not json", None).is_err());
        assert!(decode(k, Some(b"{\"id\":1}")).is_err());
    }

    /// Replays a log (encode → decode → apply) including soft deletes, tombstones, and the
    /// id high-water mark surviving the loss of every record that carried the highest id.
    #[tokio::test]
    async fn replay_with_tombstones_and_high_water() {
        let log = vec![
            Change::IdHighWater { id: 1 },
            Change::Schema(rec("a", 1, 1, false)),
            Change::IdHighWater { id: 2 },
            Change::Schema(rec("b", 1, 2, false)),
            Change::Config {
                subject: Some("a".into()),
                config: level(CompatibilityLevel::Full),
            },
            Change::DeleteSubject {
                subject: "b".into(),
                version: 1,
            },
            Change::Schema(rec("b", 1, 2, true)),
            Change::SchemaRemoved {
                subject: "b".into(),
                version: 1,
            },
            Change::Config {
                subject: Some("a".into()),
                config: None,
            },
        ];
        let store = MemoryStore::new();
        for c in &log {
            let (k, v) = encode(c).unwrap();
            let decoded = decode(&k, v.as_deref()).unwrap().unwrap();
            store.apply(&[decoded], None).unwrap();
        }
        assert_eq!(
            store.subjects(None, Listing::default()).await.unwrap(),
            vec!["a".to_string()]
        );
        assert!(store.schema_by_id(2).await.is_err(), "hard-deleted id gone");
        assert_eq!(store.max_id().await.unwrap(), 2, "high water kept");
        assert!(store.config(Some("a"), false).await.is_err());
        let v = store
            .version("a", VersionSpec::Latest, false)
            .await
            .unwrap();
        assert_eq!(v.id, 1);

        // After compaction only the latest value per key is left: the SCHEMA record of id 2
        // is gone, yet the next id is 3.
        let compacted = MemoryStore::new();
        compacted
            .apply(
                &[
                    Change::Schema(rec("a", 1, 1, false)),
                    Change::IdHighWater { id: 2 },
                ],
                None,
            )
            .unwrap();
        let req = crate::api::SchemaRequest {
            schema: Some(r#"{"type":"record","name":"New","fields":[]}"#.into()),
            ..Default::default()
        };
        let r = compacted.register("c", req, false).await.unwrap();
        assert_eq!(r.id, 3);
    }

    /// A registration with metadata and a rule set, written as records and replayed into a
    /// fresh store: contract, GUID and id survive; a record without `guid` derives the same one.
    #[tokio::test]
    async fn contract_and_guid_survive_replay() {
        use crate::api::{SchemaRequest, WriteOp};
        let a = MemoryStore::new();
        let req = SchemaRequest {
            schema: Some(
                r#"{"type":"record","name":"P","fields":[{"name":"n","type":"long"}]}"#.into(),
            ),
            metadata: Some(Metadata {
                properties: Some([("owner".to_string(), "x".to_string())].into()),
                ..Metadata::default()
            }),
            rule_set: Some(RuleSet {
                domain_rules: Some(vec![crate::contract::Rule {
                    name: "pos".into(),
                    rule_type: "CEL".into(),
                    expr: Some("message.n > 0".into()),
                    ..Default::default()
                }]),
                ..RuleSet::default()
            }),
            ..Default::default()
        };
        let plan = a
            .plan(WriteOp::Register {
                subject: "p".into(),
                req,
                normalize: false,
            })
            .unwrap();
        a.apply(&plan.changes, None).unwrap();
        let original = a.version("p", VersionSpec::Latest, false).await.unwrap();

        let (b, c) = (MemoryStore::new(), MemoryStore::new());
        for change in &plan.changes {
            let (k, v) = encode(change).unwrap();
            let v = v.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&v).unwrap();
            if let Some(g) = json.get("guid") {
                assert_eq!(g, &serde_json::json!(original.guid));
            }
            b.apply(&[decode(&k, Some(&v)).unwrap().unwrap()], None)
                .unwrap();
            // An older writer's record: no guid.
            let mut stripped = json.clone();
            if let Some(o) = stripped.as_object_mut() {
                o.remove("guid");
            }
            let v2 = serde_json::to_vec(&stripped).unwrap();
            c.apply(&[decode(&k, Some(&v2)).unwrap().unwrap()], None)
                .unwrap();
        }
        for store in [&b, &c] {
            let got = store
                .version("p", VersionSpec::Latest, false)
                .await
                .unwrap();
            assert_eq!(got, original);
            let mut g = [0u8; 16];
            g.copy_from_slice(&hex::decode(original.guid.replace('-', "")).unwrap());
            assert_eq!(store.ids_by_guid(g).await.unwrap(), vec![original.id]);
        }
    }
}
