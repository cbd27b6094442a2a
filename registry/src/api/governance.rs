//! Data-contract handling around [`crate::contract`]: rule-set validation (42210), Confluent's
//! merges of `metadata` and `ruleSet` (config default, request or previous version, config
//! override), the schema identity that includes them, and schema GUIDs.
//!
//! GUIDs: Confluent gives every schema id a random UUID. Gatehouse derives it instead, so every
//! node (and every replay of `_schemas`) agrees without coordination: the GUID is the first 16
//! bytes of `SHA-256("gatehouse-guid\0" || identity)`, where `identity` is the hex fingerprint
//! of the stored schema (type, text, references, metadata, rule set — see [`identity`]), with
//! the RFC 9562 version-8 ("custom") and variant bits set. It is written into each `_schemas`
//! record as `guid`; records without one (older writers, Confluent) get the derived value.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::store::RegistryError;
use crate::contract::{Metadata, Rule, RuleMode, RuleSet};

/// Checks a rule set as Confluent's `RuleSet.validate` does: every rule has a name and a type,
/// names are unique within each list, migration rules are UPGRADE/DOWNGRADE/UPDOWN and domain
/// (and encoding) rules WRITE/READ/WRITEREAD. Errors are 42210.
pub fn validate_rule_set(rs: &RuleSet) -> Result<(), RegistryError> {
    let lists: [(&str, &Option<Vec<Rule>>, bool); 3] = [
        ("migration", &rs.migration_rules, true),
        ("domain", &rs.domain_rules, false),
        ("encoding", &rs.encoding_rules, false),
    ];
    for (what, list, migration) in lists {
        let mut names = BTreeSet::new();
        for r in list.iter().flatten() {
            if r.name.trim().is_empty() {
                return Err(RegistryError::InvalidRuleSet("Missing rule name".into()));
            }
            if !valid_rule_name(&r.name) {
                return Err(RegistryError::InvalidRuleSet(format!(
                    "Rule name '{}' must start with a letter and contain only letters, digits, '_', '-' or '.'",
                    r.name
                )));
            }
            if r.rule_type.trim().is_empty() {
                return Err(RegistryError::InvalidRuleSet(format!(
                    "Missing rule type for rule '{}'",
                    r.name
                )));
            }
            let is_migration = matches!(
                r.mode,
                RuleMode::Upgrade | RuleMode::Downgrade | RuleMode::Updown
            );
            if migration && !is_migration {
                return Err(RegistryError::InvalidRuleSet(
                    "Migration rules can only be UPGRADE, DOWNGRADE, UPDOWN".into(),
                ));
            }
            if !migration && is_migration {
                return Err(RegistryError::InvalidRuleSet(format!(
                    "{}{} rules can only be WRITE, READ, WRITEREAD",
                    what[..1].to_ascii_uppercase(),
                    &what[1..]
                )));
            }
            if !names.insert(r.name.as_str()) {
                return Err(RegistryError::InvalidRuleSet(format!(
                    "Found rule with duplicate name '{}'",
                    r.name
                )));
            }
        }
    }
    // The gateway runs CEL conditions: one that does not compile would refuse every record
    // of the schema, so it is refused at registration instead.
    crate::rules::check_rule_set(rs).map_err(RegistryError::InvalidRuleSet)?;
    Ok(())
}

fn valid_rule_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Parses a `ruleSet` JSON value, mapping any shape error (unknown `kind`/`mode`, a missing
/// `name` or `type`) to 42210, then validates it.
pub fn parse_rule_set(v: &serde_json::Value) -> Result<Option<RuleSet>, RegistryError> {
    if v.is_null() {
        return Ok(None);
    }
    let rs: RuleSet = serde_json::from_value(v.clone())
        .map_err(|e| RegistryError::InvalidRuleSet(format!("Invalid rule set: {e}")))?;
    validate_rule_set(&rs)?;
    Ok(Some(rs))
}

/// `mergeMetadata(old, new)`: tags and properties of `new` win per key, sensitive names are
/// united; `None` when both are `None`.
pub fn merge_metadata(old: Option<&Metadata>, new: Option<&Metadata>) -> Option<Metadata> {
    match (old, new) {
        (None, None) => None,
        (Some(o), None) => Some(o.clone()),
        (None, Some(n)) => Some(n.clone()),
        (Some(o), Some(n)) => {
            let tags = match (&o.tags, &n.tags) {
                (Some(a), Some(b)) => {
                    let mut m = a.clone();
                    m.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
                    Some(m)
                }
                (a, b) => b.clone().or_else(|| a.clone()),
            };
            let properties = match (&o.properties, &n.properties) {
                (Some(a), Some(b)) => {
                    let mut m = a.clone();
                    m.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
                    Some(m)
                }
                (a, b) => b.clone().or_else(|| a.clone()),
            };
            let sensitive = match (&o.sensitive, &n.sensitive) {
                (Some(a), Some(b)) => Some(a.union(b).cloned().collect()),
                (a, b) => b.clone().or_else(|| a.clone()),
            };
            Some(Metadata {
                tags,
                properties,
                sensitive,
            })
        }
    }
}

fn merge_rules(old: &Option<Vec<Rule>>, new: &Option<Vec<Rule>>) -> Option<Vec<Rule>> {
    match (old, new) {
        (None, None) => None,
        (Some(o), None) => Some(o.clone()),
        (None, Some(n)) => Some(n.clone()),
        (Some(o), Some(n)) => {
            // Rules of `new` replace same-named rules of `old`, which keep their order.
            let mut out: Vec<Rule> = o
                .iter()
                .filter(|r| !n.iter().any(|x| x.name == r.name))
                .cloned()
                .collect();
            out.extend(n.iter().cloned());
            Some(out)
        }
    }
}

/// `mergeRuleSets(old, new)`: per list, rules of `new` replace same-named rules of `old`.
pub fn merge_rule_sets(old: Option<&RuleSet>, new: Option<&RuleSet>) -> Option<RuleSet> {
    match (old, new) {
        (None, None) => None,
        (Some(o), None) => Some(o.clone()),
        (None, Some(n)) => Some(n.clone()),
        (Some(o), Some(n)) => Some(RuleSet {
            migration_rules: merge_rules(&o.migration_rules, &n.migration_rules),
            domain_rules: merge_rules(&o.domain_rules, &n.domain_rules),
            encoding_rules: merge_rules(&o.encoding_rules, &n.encoding_rules),
        }),
    }
}

/// The identity of a stored schema: the format fingerprint when it has neither metadata nor a
/// rule set (so schemas without data contracts keep their old fingerprints), else SHA-256 over
/// that fingerprint and the compact JSON of both (maps are ordered, so the JSON is stable).
pub fn identity(
    fingerprint: &str,
    metadata: Option<&Metadata>,
    rule_set: Option<&RuleSet>,
) -> String {
    if metadata.is_none() && rule_set.is_none() {
        return fingerprint.to_string();
    }
    let mut h = Sha256::new();
    h.update(fingerprint.as_bytes());
    h.update([0u8]);
    h.update(
        metadata
            .and_then(|m| serde_json::to_vec(m).ok())
            .unwrap_or_default(),
    );
    h.update([0u8]);
    h.update(
        rule_set
            .and_then(|r| serde_json::to_vec(r).ok())
            .unwrap_or_default(),
    );
    hex::encode(h.finalize())
}

/// The GUID of a schema identity (see the module doc).
pub fn derive_guid(identity: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"gatehouse-guid\0");
    h.update(identity.as_bytes());
    let d = h.finalize();
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    g[6] = (g[6] & 0x0f) | 0x80;
    g[8] = (g[8] & 0x3f) | 0x80;
    g
}

/// Canonical lower-case UUID text (`8-4-4-4-12`).
pub fn guid_to_string(g: &[u8; 16]) -> String {
    let h = hex::encode(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses UUID text (with or without dashes, any case).
pub fn parse_guid(s: &str) -> Option<[u8; 16]> {
    let hexed: String = s.chars().filter(|c| *c != '-').collect();
    if hexed.len() != 32 {
        return None;
    }
    let bytes = hex::decode(hexed).ok()?;
    let mut g = [0u8; 16];
    g.copy_from_slice(&bytes);
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::RuleKind;

    fn rule(name: &str, mode: RuleMode) -> Rule {
        Rule {
            name: name.into(),
            kind: RuleKind::Condition,
            mode,
            rule_type: "CEL".into(),
            expr: Some("true".into()),
            ..Default::default()
        }
    }

    #[test]
    fn rule_set_validation() {
        let ok = RuleSet {
            domain_rules: Some(vec![rule("a", RuleMode::Write), rule("b", RuleMode::Read)]),
            migration_rules: Some(vec![rule("a", RuleMode::Upgrade)]),
            ..Default::default()
        };
        assert!(validate_rule_set(&ok).is_ok());
        let dup = RuleSet {
            domain_rules: Some(vec![rule("a", RuleMode::Write), rule("a", RuleMode::Read)]),
            ..Default::default()
        };
        assert_eq!(
            validate_rule_set(&dup).map_err(|e| e.error_code()),
            Err(42210)
        );
        let unnamed = RuleSet {
            domain_rules: Some(vec![rule("", RuleMode::Write)]),
            ..Default::default()
        };
        assert!(validate_rule_set(&unnamed).is_err());
        let mut untyped = rule("x", RuleMode::Write);
        untyped.rule_type.clear();
        let untyped = RuleSet {
            domain_rules: Some(vec![untyped]),
            ..Default::default()
        };
        assert!(validate_rule_set(&untyped).is_err());
        let wrong_mode = RuleSet {
            migration_rules: Some(vec![rule("m", RuleMode::Write)]),
            ..Default::default()
        };
        assert!(validate_rule_set(&wrong_mode).is_err());
        let bad_kind = serde_json::json!({"domainRules":[{"name":"a","kind":"NOPE","mode":"WRITE","type":"CEL"}]});
        assert_eq!(
            parse_rule_set(&bad_kind).map_err(|e| e.error_code()),
            Err(42210)
        );
        let no_type =
            serde_json::json!({"domainRules":[{"name":"a","kind":"CONDITION","mode":"WRITE"}]});
        assert!(parse_rule_set(&no_type).is_err());
    }

    #[test]
    fn merges_follow_confluent() {
        let m = |k: &str, v: &str| Metadata {
            properties: Some([(k.to_string(), v.to_string())].into()),
            ..Default::default()
        };
        let merged = merge_metadata(Some(&m("a", "1")), Some(&m("a", "2"))).unwrap();
        assert_eq!(merged.properties.unwrap()["a"], "2");
        let merged = merge_metadata(Some(&m("a", "1")), Some(&m("b", "2"))).unwrap();
        assert_eq!(merged.properties.unwrap().len(), 2);
        assert_eq!(merge_metadata(None, None), None);

        let rs = |names: &[&str]| RuleSet {
            domain_rules: Some(names.iter().map(|n| rule(n, RuleMode::Write)).collect()),
            ..Default::default()
        };
        let merged = merge_rule_sets(Some(&rs(&["a", "b"])), Some(&rs(&["b", "c"]))).unwrap();
        let names: Vec<String> = merged
            .domain_rules
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn guid_is_stable_uuid_v8() {
        let g = derive_guid("abc");
        assert_eq!(g, derive_guid("abc"));
        assert_ne!(g, derive_guid("abd"));
        let s = guid_to_string(&g);
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "8");
        assert_eq!(parse_guid(&s), Some(g));
        assert_eq!(parse_guid(&s.replace('-', "").to_uppercase()), Some(g));
        assert_eq!(parse_guid("nope"), None);
        assert_eq!(identity("fp", None, None), "fp");
        assert_ne!(identity("fp", Some(&Metadata::default()), None), "fp");
    }
}
