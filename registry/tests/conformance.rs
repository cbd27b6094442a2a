//! Data-driven compatibility and canonical-form tests over the Apicurio-derived corpus in
//! `../shared/conformance/apicurio-registry/` (read at test time, never copied).
//!
//! Apicurio's verdicts: `backward` = BACKWARD compatible and FORWARD incompatible, `both` =
//! compatible both ways, `none` = incompatible both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use gatehouse_registry::compat::{CompatibilityLevel, check as compat_check};
use gatehouse_registry::schema::{NoReferences, ParsedSchema, SchemaType};
use serde_json::Value;

fn corpus(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/apicurio-registry")
        .join(file)
}

fn parse(t: SchemaType, text: &str) -> ParsedSchema {
    ParsedSchema::parse(t, text, &[], &NoReferences).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// (backward compatible, forward compatible) of `updated` following `original`.
fn check(t: SchemaType, original: &str, updated: &str) -> (bool, bool) {
    let (o, u) = (parse(t, original), parse(t, updated));
    let prev = [o];
    let b = compat_check(&u, &prev, CompatibilityLevel::Backward).is_empty();
    let f = compat_check(&u, &prev, CompatibilityLevel::Forward).is_empty();
    (b, f)
}

fn expected(verdict: &str) -> (bool, bool) {
    match verdict {
        "backward" => (true, false),
        "both" => (true, true),
        "none" => (false, false),
        other => panic!("unknown verdict {other}"),
    }
}

/// Runs every case; returns the ids where we disagree, with our verdict.
fn run(t: SchemaType, file: &str) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(corpus(file)).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let tests = doc["tests"].as_array().unwrap();
    let mut disagree = Vec::new();
    for (i, case) in tests.iter().enumerate() {
        if case["enabled"] == Value::Bool(false) {
            continue;
        }
        let want = expected(case["compatibility"].as_str().unwrap());
        let got = check(
            t,
            &case["original"].to_string(),
            &case["updated"].to_string(),
        );
        if got != want {
            disagree.push(format!(
                "#{i} {} (want {want:?}, got {got:?})",
                case["id"].as_str().unwrap_or("?")
            ));
        }
    }
    (tests.len(), disagree)
}

#[test]
fn apicurio_avro_compatibility() {
    let (n, disagree) = run(SchemaType::Avro, "avro-compatibility-test-data.json");
    assert_eq!(n, 4);
    assert!(disagree.is_empty(), "{disagree:#?}");
}

/// Cases where we follow Confluent rather than Apicurio: Confluent's JSON Schema diff has no
/// difference type for `format`, `contentEncoding` or `contentMediaType`, so changing or removing
/// them is compatible both ways for us (Apicurio: removal is backward-only, change incompatible).
const JSON_KNOWN_DISAGREEMENTS: &[&str] = &[
    "String: format 1",
    "String: format 2",
    "String: contentEncoding 2",
    "String: contentEncoding 3",
    "String: contentMediaType 2",
    "String: contentMediaType 3",
];

#[test]
fn apicurio_json_schema_compatibility() {
    let (n, disagree) = run(SchemaType::Json, "jsonschema-compatibility-test-data.json");
    assert_eq!(n, 145);
    let unexpected: Vec<&String> = disagree
        .iter()
        .filter(|d| {
            !JSON_KNOWN_DISAGREEMENTS
                .iter()
                .any(|k| d.contains(&format!(" {k} (want")))
        })
        .collect();
    println!(
        "agree: {}/{}; disagreements: {disagree:#?}",
        n - disagree.len(),
        n
    );
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert_eq!(
        disagree.len(),
        JSON_KNOWN_DISAGREEMENTS.len(),
        "{disagree:#?}"
    );
}

fn read(name: &str) -> String {
    std::fs::read_to_string(corpus(&format!("ccompat-canonical/{name}"))).unwrap()
}

#[test]
fn canonical_avro_expanded_equals_minified() {
    let a = parse(SchemaType::Avro, &read("avro-expanded.avsc"));
    let b = parse(SchemaType::Avro, &read("avro-minified.avsc"));
    assert_eq!(a.canonical_string(), b.canonical_string());
    assert_eq!(a.normalized_string(), b.normalized_string());
    assert_eq!(a.fingerprint(true), b.fingerprint(true));
    // The canonical string is itself a valid schema that prints identically.
    let again = parse(SchemaType::Avro, a.canonical_string());
    assert_eq!(again.canonical_string(), a.canonical_string());
}

/// Disagreement (deliberate): Apicurio treats `avro2-non-canonical` (fields `id`, `fieldValues`)
/// and `avro2-canonical` (fields `fieldValues`, `id`) as one schema. Field order is part of
/// Avro's binary encoding, and Confluent's normalisation keeps it, so we keep them distinct;
/// layout differences (indentation, key order) still normalise away.
#[test]
fn canonical_avro2_field_order_is_significant() {
    let a = parse(SchemaType::Avro, &read("avro2-non-canonical.avsc"));
    let b = parse(SchemaType::Avro, &read("avro2-canonical.avsc"));
    assert_ne!(a.normalized_string(), b.normalized_string());
    let reordered = r#"{"type":"record","namespace":"test","name":"Test","fields":[{"type":"string","name":"id"},{"name":"fieldValues","type":{"type":"array","items":"string"}}]}"#;
    assert_eq!(
        a.normalized_string(),
        parse(SchemaType::Avro, reordered).normalized_string()
    );
}

#[test]
fn canonical_protobuf_expanded_equals_minified() {
    let a = parse(SchemaType::Protobuf, &read("protobuf-expanded.proto"));
    let b = parse(SchemaType::Protobuf, &read("protobuf-minified.proto"));
    assert_ne!(a.canonical_string(), b.canonical_string());
    assert_eq!(a.normalized_string(), b.normalized_string());
    assert_eq!(a.fingerprint(true), b.fingerprint(true));
    // The normalised text compiles again to the same normalised text.
    let again = parse(SchemaType::Protobuf, a.normalized_string());
    assert_eq!(again.normalized_string(), a.normalized_string());
}
