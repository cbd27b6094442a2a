//! Schema parsing: canonical and normalised forms, fingerprints, references, limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use gatehouse_registry::schema::{
    NoReferences, ParsedSchema, Reference, ResolvedReference, SchemaError, SchemaType,
};

fn parse(t: SchemaType, s: &str) -> Result<ParsedSchema, SchemaError> {
    ParsedSchema::parse(t, s, &[], &NoReferences)
}

fn r(name: &str, subject: &str) -> Reference {
    Reference {
        name: name.into(),
        subject: subject.into(),
        version: 1,
    }
}

#[test]
fn avro_canonical_and_normalized() {
    let s = parse(SchemaType::Avro, r#"{"namespace":"a.b","name":"R","type":"record","doc":"d","fields":[{"type":{"type":"enum","name":"E","symbols":["X"]},"name":"e"},{"name":"again","type":"E"},{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#).unwrap();
    assert_eq!(
        s.canonical_string(),
        r#"{"type":"record","name":"R","namespace":"a.b","doc":"d","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["X"]}},{"name":"again","type":"E"},{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#
    );
    assert_eq!(
        s.normalized_string(),
        r#"{"type":"record","name":"a.b.R","doc":"d","fields":[{"name":"e","type":{"type":"enum","name":"a.b.E","symbols":["X"]}},{"name":"again","type":"a.b.E"},{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#
    );
    assert_ne!(s.fingerprint(false), s.fingerprint(true));
    assert_eq!(s.fingerprint(true).len(), 64);
    assert_eq!(
        parse(SchemaType::Avro, "\"int\"")
            .unwrap()
            .canonical_string(),
        "\"int\""
    );
}

#[test]
fn json_and_protobuf_forms() {
    let j = parse(SchemaType::Json, r#"{ "type": "object", "properties": { "b": {"type":"string"}, "a": {"type":"integer"} } }"#).unwrap();
    assert_eq!(
        j.normalized_string(),
        r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#
    );
    let p = parse(SchemaType::Protobuf, "syntax = \"proto3\";\n// comment\npackage x;\nmessage M {\n  string b = 2; int32 a = 1;\n  map<string, int64> m = 3;\n  optional bool o = 4;\n  oneof choice { string s = 5; int32 i = 6; }\n}\nenum E { Z = 0; }\n").unwrap();
    let n = p.normalized_string();
    assert!(n.starts_with("syntax = \"proto3\";\npackage x;\nmessage M {\n  int32 a = 1;\n  string b = 2;\n  map<string, int64> m = 3;\n  optional bool o = 4;\n  oneof choice {"), "{n}");
    assert_eq!(
        parse(SchemaType::Protobuf, n).unwrap().normalized_string(),
        n
    );
}

#[test]
fn references_resolve_and_cycles_are_rejected() {
    let mut texts: HashMap<String, ResolvedReference> = HashMap::new();
    texts.insert(
        "a".into(),
        ResolvedReference {
            schema: r#"{"type":"record","name":"A","fields":[]}"#.into(),
            references: vec![],
        },
    );
    let resolver = |x: &Reference| texts.get(&x.subject).cloned();
    let s = ParsedSchema::parse(
        SchemaType::Avro,
        r#"{"type":"record","name":"B","fields":[{"name":"a","type":"A"}]}"#,
        &[r("A", "a")],
        &resolver,
    )
    .unwrap();
    assert_eq!(
        s.canonical_string(),
        r#"{"type":"record","name":"B","fields":[{"name":"a","type":"A"}]}"#
    );
    // Unknown reference.
    let e = ParsedSchema::parse(SchemaType::Avro, "\"int\"", &[r("x", "missing")], &resolver)
        .unwrap_err();
    assert!(matches!(e, SchemaError::UnknownReference { .. }), "{e}");
    // x -> y -> x
    let cyclic = |x: &Reference| {
        let next = if x.subject == "x" { "y" } else { "x" };
        Some(ResolvedReference {
            schema: "syntax = \"proto3\";".into(),
            references: vec![r(&format!("{next}.proto"), next)],
        })
    };
    let e = ParsedSchema::parse(
        SchemaType::Protobuf,
        "syntax = \"proto3\";",
        &[r("x.proto", "x")],
        &cyclic,
    )
    .unwrap_err();
    assert!(matches!(e, SchemaError::CyclicReference(_)), "{e}");
    assert_eq!(e.error_code(), 42201);
}

#[test]
fn limits_and_bad_input() {
    let deep_json = format!("{}{{}}{}", "{\"not\":".repeat(80), "}".repeat(80));
    assert!(matches!(
        parse(SchemaType::Json, &deep_json),
        Err(SchemaError::TooDeep(_))
    ));
    let deep_proto = format!(
        "syntax = \"proto3\";\n{}{}",
        "message A { ".repeat(80),
        "}".repeat(80)
    );
    assert!(matches!(
        parse(SchemaType::Protobuf, &deep_proto),
        Err(SchemaError::TooDeep(_))
    ));
    let big = format!("\"{}\"", "x".repeat(2 * 1024 * 1024));
    assert!(matches!(
        parse(SchemaType::Json, &big),
        Err(SchemaError::TooLarge { .. })
    ));
    for (t, s) in [
        (SchemaType::Avro, ""),
        (SchemaType::Avro, "{\"type\":\"record\",\"name\":\"R\"}"),
        (
            SchemaType::Avro,
            "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"A\"]}",
        ),
        (SchemaType::Protobuf, "message M { int32 a = 1 }"),
        (
            SchemaType::Protobuf,
            "syntax = \"proto3\"; import \"nope.proto\"; message M {}",
        ),
        (SchemaType::Json, "[1,2]"),
        (SchemaType::Json, "{\"type\":\"nonsense\"}"),
        (
            SchemaType::Json,
            "{\"$ref\":\"http://example.com/remote.json\"}",
        ),
    ] {
        let e = parse(t, s).unwrap_err();
        assert_eq!(e.error_code(), 42201, "{s}");
        assert!(e.to_string().starts_with("Invalid schema"), "{e}");
    }
    assert!(SchemaType::parse("xml").is_err());
    assert_eq!(SchemaType::parse("protobuf").unwrap(), SchemaType::Protobuf);
}

#[test]
fn avro_resolved_format_inlines_references_at_first_use() {
    let mut texts: HashMap<String, ResolvedReference> = HashMap::new();
    texts.insert(
        "money".into(),
        ResolvedReference {
            schema: r#"{"type":"record","name":"Money","namespace":"com.acme","fields":[{"name":"units","type":"long"},{"name":"cur","type":"com.acme.Currency"}]}"#.into(),
            references: vec![r("com.acme.Currency", "currency")],
        },
    );
    texts.insert(
        "currency".into(),
        ResolvedReference {
            schema: r#"{"type":"enum","name":"Currency","namespace":"com.acme","symbols":["EUR","USD"]}"#.into(),
            references: vec![],
        },
    );
    let resolver = |x: &Reference| texts.get(&x.subject).cloned();
    let text = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"total","type":"com.acme.Money"},{"name":"tax","type":"com.acme.Money"},{"name":"cur","type":"com.acme.Currency"}]}"#;
    let s = ParsedSchema::parse(
        SchemaType::Avro,
        text,
        &[r("com.acme.Money", "money")],
        &resolver,
    )
    .unwrap();
    // Stored: references by name.
    assert_eq!(
        s.formatted(None, s.canonical_string()),
        s.canonical_string()
    );
    assert!(!s.canonical_string().contains("\"symbols\""));
    let resolved = s.formatted(Some("resolved"), s.canonical_string());
    assert_eq!(
        resolved,
        r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"total","type":{"type":"record","name":"Money","namespace":"com.acme","fields":[{"name":"units","type":"long"},{"name":"cur","type":{"type":"enum","name":"Currency","symbols":["EUR","USD"]}}]}},{"name":"tax","type":"com.acme.Money"},{"name":"cur","type":"com.acme.Currency"}]}"#
    );
    // Stands alone: parses without any reference, to the same canonical form.
    let alone = parse(SchemaType::Avro, &resolved).unwrap();
    assert_eq!(alone.canonical_string(), resolved);
    // Other formats and other values leave the text alone.
    assert_eq!(
        s.formatted(Some("serialized"), s.canonical_string()),
        s.canonical_string()
    );
}
