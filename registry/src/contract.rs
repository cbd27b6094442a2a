//! Data-contract parts of a schema: [`Metadata`] and [`RuleSet`], in Confluent's JSON shape.
//!
//! Confluent's community server keeps `metadata` and drops `ruleSet` (rules are an Enterprise
//! feature there); Gatehouse keeps both with the schema version and enforces the rules it can
//! run in the gateway (`CONDITION` rules of type `CEL`, see the gateway's data guard). Field
//! names and enum spellings follow Confluent's REST entities so unmodified clients round-trip
//! them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// `metadata` of a schema version: field tags, free-form properties, sensitive property names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Metadata {
    /// Tags by path (e.g. `"Payment.card_number": ["PAN"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, BTreeSet<String>>>,
    /// Properties (e.g. `owner`, `application.major.version`, `confluent:reserved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, String>>,
    /// Names of properties whose values are masked in listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<BTreeSet<String>>,
}

impl Metadata {
    /// True when nothing is set (serialized as `null` by callers that skip empties).
    pub fn is_empty(&self) -> bool {
        self.tags.as_ref().is_none_or(|t| t.is_empty())
            && self.properties.as_ref().is_none_or(|p| p.is_empty())
            && self.sensitive.as_ref().is_none_or(|s| s.is_empty())
    }
}

/// What a rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleKind {
    /// Changes the data (not run by Gatehouse; stored and returned).
    Transform,
    /// Checks the data; a record that fails it is refused.
    #[default]
    Condition,
}

/// When a rule runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleMode {
    /// Migration rule, upgrading.
    Upgrade,
    /// Migration rule, downgrading.
    Downgrade,
    /// Migration rule, both ways.
    Updown,
    /// Domain rule on read.
    Read,
    /// Domain rule on write (the produce path).
    #[default]
    Write,
    /// Domain rule on write and read.
    Writeread,
}

impl RuleMode {
    /// True when the rule applies on the write (produce) path.
    pub fn on_write(self) -> bool {
        matches!(self, RuleMode::Write | RuleMode::Writeread)
    }
}

/// One data-contract rule (Confluent's `Rule` entity).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Rule name (unique within its list).
    pub name: String,
    /// Documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// CONDITION or TRANSFORM.
    #[serde(default)]
    pub kind: RuleKind,
    /// When it runs.
    #[serde(default)]
    pub mode: RuleMode,
    /// Executor type (`CEL`, `CEL_FIELD`, `ENCRYPT`, `JSONATA`, ...).
    #[serde(rename = "type")]
    pub rule_type: String,
    /// Field tags the rule applies to (field-level rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeSet<String>>,
    /// Executor parameters (e.g. `dlq.topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
    /// The expression (CEL for `CEL` rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// Action on success (`NONE` when absent).
    #[serde(default, rename = "onSuccess", skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    /// Action on failure (`ERROR` when absent; `DLQ` sends the record to `params["dlq.topic"]`).
    #[serde(default, rename = "onFailure", skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    /// Disabled rules are kept but not run (`null` reads as `false`, as Confluent's clients
    /// send it).
    #[serde(
        default,
        deserialize_with = "null_is_false",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disabled: bool,
}

fn null_is_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// `ruleSet` of a schema version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleSet {
    /// Rules between versions (stored, not run by Gatehouse).
    #[serde(
        default,
        rename = "migrationRules",
        skip_serializing_if = "Option::is_none"
    )]
    pub migration_rules: Option<Vec<Rule>>,
    /// Rules on the data (CONDITION/CEL run on the produce path).
    #[serde(
        default,
        rename = "domainRules",
        skip_serializing_if = "Option::is_none"
    )]
    pub domain_rules: Option<Vec<Rule>>,
    /// Rules on the encoded bytes (stored, not run).
    #[serde(
        default,
        rename = "encodingRules",
        skip_serializing_if = "Option::is_none"
    )]
    pub encoding_rules: Option<Vec<Rule>>,
}

impl RuleSet {
    /// True when no list has a rule.
    pub fn is_empty(&self) -> bool {
        [
            &self.migration_rules,
            &self.domain_rules,
            &self.encoding_rules,
        ]
        .iter()
        .all(|l| l.as_ref().is_none_or(|l| l.is_empty()))
    }

    /// Enabled domain rules that run on the write path.
    pub fn write_rules(&self) -> impl Iterator<Item = &Rule> {
        self.domain_rules
            .iter()
            .flatten()
            .filter(|r| !r.disabled && r.mode.on_write())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confluent_rule_set_round_trips() {
        let j = r#"{"domainRules":[{"name":"positive","kind":"CONDITION","mode":"WRITE","type":"CEL","expr":"message.amount > 0","onFailure":"DLQ","params":{"dlq.topic":"bad"}}]}"#;
        let rs: RuleSet = serde_json::from_str(j).unwrap();
        let r = rs.write_rules().next().unwrap();
        assert_eq!(r.rule_type, "CEL");
        assert_eq!(r.on_failure.as_deref(), Some("DLQ"));
        let back = serde_json::to_string(&rs).unwrap();
        let nulls: Rule =
            serde_json::from_str(r#"{"name":"n","type":"CEL","disabled":null}"#).unwrap();
        assert!(!nulls.disabled);
        let again: RuleSet = serde_json::from_str(&back).unwrap();
        assert_eq!(rs, again);
    }

    #[test]
    fn metadata_tags_and_emptiness() {
        let m: Metadata =
            serde_json::from_str(r#"{"tags":{"Payment.card":["PAN"]},"properties":{"owner":"x"}}"#)
                .unwrap();
        assert!(!m.is_empty());
        assert!(Metadata::default().is_empty());
    }
}
