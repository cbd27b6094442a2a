//! Own compatibility cases, one or more per difference type, written from the rule lists
//! (Avro specification "Schema Resolution"; Confluent's Protobuf and JSON Schema difference
//! types). `check()` runs BACKWARD (new = `updated`, old = `original`) and returns the
//! reported (difference type, path) pairs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

use gatehouse_registry::compat::{CompatibilityLevel, check as compat_check};
use gatehouse_registry::schema::{NoReferences, ParsedSchema, SchemaType};

fn parse(t: SchemaType, s: &str) -> ParsedSchema {
    ParsedSchema::parse(t, s, &[], &NoReferences).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn check(t: SchemaType, original: &str, updated: &str) -> Vec<(String, String)> {
    let prev = [parse(t, original)];
    compat_check(&parse(t, updated), &prev, CompatibilityLevel::Backward)
        .into_iter()
        .map(|i| (i.error_type, i.path))
        .collect()
}

fn rec(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)
}

#[test]
fn avro_difference_types() {
    let a = SchemaType::Avro;
    let cases: &[(&str, String, String, &[(&str, &str)])] = &[
        ("field added with default", rec(r#"{"name":"a","type":"int"}"#), rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":""}"#), &[]),
        ("field removed", rec(r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#), rec(r#"{"name":"a","type":"int"}"#), &[]),
        ("READER_FIELD_MISSING_DEFAULT_VALUE", rec(r#"{"name":"a","type":"int"}"#), rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#), &[("READER_FIELD_MISSING_DEFAULT_VALUE", "/fields/1")]),
        ("promotion int->long", rec(r#"{"name":"a","type":"int"}"#), rec(r#"{"name":"a","type":"long"}"#), &[]),
        ("string<->bytes", rec(r#"{"name":"a","type":"string"}"#), rec(r#"{"name":"a","type":"bytes"}"#), &[]),
        ("TYPE_MISMATCH long->int", rec(r#"{"name":"a","type":"long"}"#), rec(r#"{"name":"a","type":"int"}"#), &[("TYPE_MISMATCH", "/fields/0/type")]),
        ("NAME_MISMATCH", r#"{"type":"record","name":"A","fields":[]}"#.into(), r#"{"type":"record","name":"B","fields":[]}"#.into(), &[("NAME_MISMATCH", "/name")]),
        ("alias resolves rename", r#"{"type":"record","name":"A","fields":[]}"#.into(), r#"{"type":"record","name":"B","aliases":["A"],"fields":[]}"#.into(), &[]),
        ("FIXED_SIZE_MISMATCH", r#"{"type":"fixed","name":"F","size":4}"#.into(), r#"{"type":"fixed","name":"F","size":8}"#.into(), &[("FIXED_SIZE_MISMATCH", "/size")]),
        ("MISSING_ENUM_SYMBOLS", r#"{"type":"enum","name":"E","symbols":["A","B"]}"#.into(), r#"{"type":"enum","name":"E","symbols":["A"]}"#.into(), &[("MISSING_ENUM_SYMBOLS", "/symbols")]),
        ("enum default covers removal", r#"{"type":"enum","name":"E","symbols":["A","B"]}"#.into(), r#"{"type":"enum","name":"E","symbols":["A"],"default":"A"}"#.into(), &[]),
        ("MISSING_UNION_BRANCH", r#"["null","string","int"]"#.into(), r#"["null","string"]"#.into(), &[("MISSING_UNION_BRANCH", "/2")]),
        ("non-union to union", r#""string""#.into(), r#"["null","string"]"#.into(), &[]),
        ("union to non-union", r#"["null","string"]"#.into(), r#""string""#.into(), &[("TYPE_MISMATCH", "/")]),
        ("array items", r#"{"type":"array","items":"long"}"#.into(), r#"{"type":"array","items":"int"}"#.into(), &[("TYPE_MISMATCH", "/items")]),
        ("map values", r#"{"type":"map","values":"int"}"#.into(), r#"{"type":"map","values":"double"}"#.into(), &[]),
        ("recursive record", r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#.into(), r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]},{"name":"v","type":"int","default":0}]}"#.into(), &[]),
    ];
    for (what, o, u, want) in cases {
        let got = check(a, o, u);
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect();
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn avro_verbose_message_and_transitive() {
    let v1 = parse(SchemaType::Avro, &rec(r#"{"name":"a","type":"int"}"#));
    let v2 = parse(
        SchemaType::Avro,
        &rec(r#"{"name":"a","type":"int","default":0},{"name":"b","type":"int"}"#),
    );
    let v3 = parse(SchemaType::Avro, &rec(r#"{"name":"b","type":"int"}"#));
    let found = compat_check(&v3, &[v1.clone(), v2.clone()], CompatibilityLevel::Forward);
    assert!(found.is_empty(), "latest only: v2 can read v3 data");
    let found = compat_check(&v3, &[v1, v2], CompatibilityLevel::ForwardTransitive);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].previous_index, 0);
    assert_eq!(
        found[0].message(),
        "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'a' at path '/fields/0' in the old schema has no default value and is missing in the new schema', additionalInfo:'a'}"
    );
    assert!(
        compat_check(
            &parse(SchemaType::Avro, "\"int\""),
            &[],
            CompatibilityLevel::FullTransitive
        )
        .is_empty()
    );
}

#[test]
fn schema_type_change_is_incompatible() {
    let old = parse(SchemaType::Avro, "\"string\"");
    let new = parse(SchemaType::Json, r#"{"type":"string"}"#);
    let found = compat_check(&new, &[old], CompatibilityLevel::Backward);
    assert_eq!(found[0].error_type, "SCHEMA_TYPE_MISMATCH");
    let none = compat_check(
        &new,
        &[parse(SchemaType::Avro, "\"int\"")],
        CompatibilityLevel::None,
    );
    assert!(none.is_empty());
}

fn proto(body: &str) -> String {
    format!("syntax = \"proto3\";\npackage p;\n{body}")
}

#[test]
fn protobuf_difference_types() {
    let p = SchemaType::Protobuf;
    let cases: &[(&str, String, String, &[(&str, &str)])] = &[
        (
            "FIELD_ADDED / FIELD_REMOVED compatible",
            proto("message M { int32 a = 1; string b = 2; }"),
            proto("message M { int32 a = 1; bool c = 3; }"),
            &[],
        ),
        (
            "FIELD_NAME_CHANGED compatible",
            proto("message M { int32 a = 1; }"),
            proto("message M { int32 renamed = 1; }"),
            &[],
        ),
        (
            "same scalar group int32->int64",
            proto("message M { int32 a = 1; }"),
            proto("message M { int64 a = 1; }"),
            &[],
        ),
        (
            "FIELD_SCALAR_KIND_CHANGED",
            proto("message M { int32 a = 1; }"),
            proto("message M { string a = 1; }"),
            &[("FIELD_SCALAR_KIND_CHANGED", "#/M/1")],
        ),
        (
            "FIELD_KIND_CHANGED",
            proto("message N {} message M { int32 a = 1; }"),
            proto("message N {} message M { N a = 1; }"),
            &[("FIELD_KIND_CHANGED", "#/M/1")],
        ),
        (
            "FIELD_NAMED_TYPE_CHANGED",
            proto("message A {} message B { int32 x = 1; } message M { A a = 1; }"),
            proto("message A {} message B { int32 x = 1; } message M { B a = 1; }"),
            &[("FIELD_NAMED_TYPE_CHANGED", "#/M/1")],
        ),
        (
            "MESSAGE_REMOVED",
            proto("message A {} message B {}"),
            proto("message A {}"),
            &[("MESSAGE_REMOVED", "#/B")],
        ),
        (
            "MESSAGE_ADDED / MESSAGE_MOVED compatible",
            proto("message A {} message B {}"),
            proto("message B {} message C {} message A {}"),
            &[],
        ),
        (
            "PACKAGE_CHANGED",
            proto("message A {}"),
            "syntax = \"proto3\";\npackage q;\nmessage A {}".into(),
            &[("PACKAGE_CHANGED", "#/")],
        ),
        (
            "FIELD_NUMERIC_LABEL_CHANGED",
            proto("message M { int32 a = 1; }"),
            proto("message M { repeated int32 a = 1; }"),
            &[("FIELD_NUMERIC_LABEL_CHANGED", "#/M/1")],
        ),
        (
            "FIELD_STRING_OR_BYTES_LABEL_CHANGED compatible",
            proto("message M { string a = 1; }"),
            proto("message M { repeated string a = 1; }"),
            &[],
        ),
        (
            "ONEOF_FIELD_REMOVED",
            proto("message M { oneof o { int32 a = 1; string b = 2; } }"),
            proto("message M { oneof o { int32 a = 1; } }"),
            &[("ONEOF_FIELD_REMOVED", "#/M/2")],
        ),
        (
            "ONEOF_REMOVED compatible",
            proto("message M { oneof o { int32 a = 1; string b = 2; } }"),
            proto("message M { }"),
            &[],
        ),
        (
            "ONEOF_FIELD_ADDED compatible",
            proto("message M { oneof o { int32 a = 1; } }"),
            proto("message M { oneof o { int32 a = 1; string b = 2; } }"),
            &[],
        ),
        (
            "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
            proto("message M { int32 a = 1; string b = 2; }"),
            proto("message M { oneof o { int32 a = 1; string b = 2; } }"),
            &[("MULTIPLE_FIELDS_MOVED_TO_ONEOF", "#/M/o")],
        ),
        (
            "one field moved to a new oneof compatible",
            proto("message M { int32 a = 1; }"),
            proto("message M { oneof o { int32 a = 1; } }"),
            &[],
        ),
        (
            "FIELD_MOVED_TO_EXISTING_ONEOF",
            proto("message M { int32 a = 1; oneof o { string b = 2; } }"),
            proto("message M { oneof o { int32 a = 1; string b = 2; } }"),
            &[("FIELD_MOVED_TO_EXISTING_ONEOF", "#/M/1")],
        ),
        (
            "ONEOF_FIELD_MOVED_TO_TOP_LEVEL compatible",
            proto("message M { oneof o { int32 a = 1; } }"),
            proto("message M { int32 a = 1; }"),
            &[],
        ),
        (
            "nested message field",
            proto("message M { message I { int32 x = 1; } I i = 1; }"),
            proto("message M { message I { string x = 1; } I i = 1; }"),
            &[("FIELD_SCALAR_KIND_CHANGED", "#/M/I/1")],
        ),
        (
            "map value kind",
            proto("message M { map<string, int32> m = 1; }"),
            proto("message M { map<string, string> m = 1; }"),
            &[("FIELD_SCALAR_KIND_CHANGED", "#/M/1")],
        ),
        (
            "ENUM_CONST_ADDED compatible",
            proto("enum E { A = 0; } message M { E e = 1; }"),
            proto("enum E { A = 0; B = 1; } message M { E e = 1; }"),
            &[],
        ),
    ];
    for (what, o, u, want) in cases {
        let got = check(p, o, u);
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect();
        assert_eq!(got, want, "{what}");
    }
    let p2 = |b: &str| format!("syntax = \"proto2\";\npackage p;\n{b}");
    assert_eq!(
        check(
            p,
            &p2("message M { optional int32 a = 1; }"),
            &p2("message M { optional int32 a = 1; required int32 b = 2; }")
        ),
        vec![("REQUIRED_FIELD_ADDED".to_string(), "#/M/2".to_string())]
    );
    assert_eq!(
        check(
            p,
            &p2("message M { required int32 a = 1; }"),
            &p2("message M { }")
        ),
        vec![("REQUIRED_FIELD_REMOVED".to_string(), "#/M/1".to_string())]
    );
}

#[test]
fn json_difference_types() {
    let j = SchemaType::Json;
    let obj = |props: &str, extra: &str| {
        format!(r#"{{"type":"object","properties":{{{props}}}{extra}}}"#)
    };
    let cases: Vec<(&str, String, String, Vec<(&str, &str)>)> = vec![
        ("TYPE_CHANGED", r#"{"type":"string"}"#.into(), r#"{"type":"integer"}"#.into(), vec![("TYPE_CHANGED", "#/")]),
        ("TYPE_NARROWED", r#"{"type":"number"}"#.into(), r#"{"type":"integer"}"#.into(), vec![("TYPE_NARROWED", "#/")]),
        ("TYPE_EXTENDED compatible", r#"{"type":"integer"}"#.into(), r#"{"type":"number"}"#.into(), vec![]),
        ("MAX_LENGTH_DECREASED", r#"{"type":"string","maxLength":10}"#.into(), r#"{"type":"string","maxLength":5}"#.into(), vec![("MAX_LENGTH_DECREASED", "#/maxLength")]),
        ("MAX_LENGTH_ADDED", r#"{"type":"string"}"#.into(), r#"{"type":"string","maxLength":5}"#.into(), vec![("MAX_LENGTH_ADDED", "#/maxLength")]),
        ("MIN_LENGTH_INCREASED", r#"{"type":"string","minLength":1}"#.into(), r#"{"type":"string","minLength":5}"#.into(), vec![("MIN_LENGTH_INCREASED", "#/minLength")]),
        ("PATTERN_ADDED", r#"{"type":"string"}"#.into(), r#"{"type":"string","pattern":"^a"}"#.into(), vec![("PATTERN_ADDED", "#/pattern")]),
        ("PATTERN_CHANGED", r#"{"type":"string","pattern":"^a"}"#.into(), r#"{"type":"string","pattern":"^b"}"#.into(), vec![("PATTERN_CHANGED", "#/pattern")]),
        ("MAXIMUM_DECREASED", r#"{"type":"number","maximum":10}"#.into(), r#"{"type":"number","maximum":5}"#.into(), vec![("MAXIMUM_DECREASED", "#/maximum")]),
        ("MINIMUM_ADDED", r#"{"type":"number"}"#.into(), r#"{"type":"number","minimum":5}"#.into(), vec![("MINIMUM_ADDED", "#/minimum")]),
        ("EXCLUSIVE_MINIMUM_ADDED", r#"{"type":"number","minimum":5}"#.into(), r#"{"type":"number","exclusiveMinimum":5}"#.into(), vec![("EXCLUSIVE_MINIMUM_ADDED", "#/exclusiveMinimum")]),
        ("EXCLUSIVE_MAXIMUM_DECREASED", r#"{"type":"number","exclusiveMaximum":10}"#.into(), r#"{"type":"number","exclusiveMaximum":5}"#.into(), vec![("EXCLUSIVE_MAXIMUM_DECREASED", "#/exclusiveMaximum")]),
        ("MULTIPLE_OF_EXPANDED", r#"{"type":"number","multipleOf":2}"#.into(), r#"{"type":"number","multipleOf":4}"#.into(), vec![("MULTIPLE_OF_EXPANDED", "#/multipleOf")]),
        ("MULTIPLE_OF_CHANGED", r#"{"type":"number","multipleOf":3}"#.into(), r#"{"type":"number","multipleOf":4}"#.into(), vec![("MULTIPLE_OF_CHANGED", "#/multipleOf")]),
        ("MULTIPLE_OF_REDUCED compatible", r#"{"type":"number","multipleOf":4}"#.into(), r#"{"type":"number","multipleOf":2}"#.into(), vec![]),
        ("ENUM_ARRAY_NARROWED", r#"{"enum":["a","b"]}"#.into(), r#"{"enum":["a"]}"#.into(), vec![("ENUM_ARRAY_NARROWED", "#/enum")]),
        ("ENUM_ARRAY_CHANGED", r#"{"enum":["a","b"]}"#.into(), r#"{"enum":["a","c"]}"#.into(), vec![("ENUM_ARRAY_CHANGED", "#/enum")]),
        ("REQUIRED_ATTRIBUTE_ADDED", obj(r#""a":{"type":"string"}"#, ""), obj(r#""a":{"type":"string"}"#, r#","required":["a"]"#), vec![("REQUIRED_ATTRIBUTE_ADDED", "#/required/a")]),
        ("REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED compatible", obj(r#""a":{"type":"string","default":"x"}"#, ""), obj(r#""a":{"type":"string","default":"x"}"#, r#","required":["a"]"#), vec![]),
        ("ADDITIONAL_PROPERTIES_REMOVED", obj(r#""a":{"type":"string"}"#, ""), obj(r#""a":{"type":"string"}"#, r#","additionalProperties":false"#), vec![("ADDITIONAL_PROPERTIES_REMOVED", "#/additionalProperties")]),
        ("ADDITIONAL_PROPERTIES_NARROWED", obj("", ""), obj("", r#","additionalProperties":{"type":"string"}"#), vec![("ADDITIONAL_PROPERTIES_NARROWED", "#/additionalProperties")]),
        ("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", obj(r#""a":{"type":"string"},"b":{"type":"string"}"#, r#","additionalProperties":false"#), obj(r#""a":{"type":"string"}"#, r#","additionalProperties":false"#), vec![("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", "#/properties/b")]),
        ("PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL compatible", obj(r#""a":{"type":"string"},"b":false"#, r#","additionalProperties":false"#), obj(r#""a":{"type":"string"}"#, r#","additionalProperties":false"#), vec![]),
        ("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL compatible", obj(r#""a":{"type":"string"},"b":{"type":"string"}"#, ""), obj(r#""a":{"type":"string"}"#, ""), vec![]),
        ("OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", obj(r#""a":{"type":"string"}"#, ""), obj(r#""a":{"type":"string"},"b":{"type":"string"}"#, ""), vec![("OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", "#/properties/b")]),
        ("PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL compatible", obj(r#""a":{"type":"string"}"#, ""), obj(r#""a":{"type":"string"},"b":{}"#, ""), vec![]),
        ("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", obj(r#""a":{"type":"string"}"#, r#","additionalProperties":false"#), obj(r#""a":{"type":"string"},"b":{"type":"string"}"#, r#","additionalProperties":false,"required":["b"]"#), vec![("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "#/properties/b")]),
        ("OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL compatible", obj(r#""a":{"type":"string"}"#, r#","additionalProperties":false"#), obj(r#""a":{"type":"string"},"b":{"type":"string"}"#, r#","additionalProperties":false"#), vec![]),
        ("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", obj("", r#","additionalProperties":{"type":"string"}"#), obj(r#""b":{"type":"integer"}"#, r#","additionalProperties":{"type":"string"}"#), vec![("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "#/properties/b")]),
        ("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", obj(r#""b":{"type":"integer"}"#, r#","additionalProperties":{"type":"string"}"#), obj("", r#","additionalProperties":{"type":"string"}"#), vec![("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "#/properties/b")]),
        ("DEPENDENCY_ARRAY_EXTENDED", obj("", r#","dependencies":{"a":["b"]}"#), obj("", r#","dependencies":{"a":["b","c"]}"#), vec![("DEPENDENCY_ARRAY_EXTENDED", "#/dependencies/a")]),
        ("DEPENDENCY_SCHEMA_ADDED", obj("", ""), obj("", r#","dependencies":{"a":{"required":["b"]}}"#), vec![("DEPENDENCY_SCHEMA_ADDED", "#/dependencies/a")]),
        ("MAX_PROPERTIES_DECREASED", r#"{"type":"object","maxProperties":5}"#.into(), r#"{"type":"object","maxProperties":2}"#.into(), vec![("MAX_PROPERTIES_DECREASED", "#/maxProperties")]),
        ("MIN_ITEMS_INCREASED", r#"{"type":"array","minItems":1}"#.into(), r#"{"type":"array","minItems":2}"#.into(), vec![("MIN_ITEMS_INCREASED", "#/minItems")]),
        ("UNIQUE_ITEMS_ADDED", r#"{"type":"array"}"#.into(), r#"{"type":"array","uniqueItems":true}"#.into(), vec![("UNIQUE_ITEMS_ADDED", "#/uniqueItems")]),
        ("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", r#"{"type":"array","items":[{"type":"string"},{"type":"integer"}],"additionalItems":false}"#.into(), r#"{"type":"array","items":[{"type":"string"}],"additionalItems":false}"#.into(), vec![("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", "#/items/1")]),
        ("ITEM_ADDED_TO_OPEN_CONTENT_MODEL", r#"{"type":"array","items":[{"type":"string"}]}"#.into(), r#"{"type":"array","items":[{"type":"string"},{"type":"integer"}]}"#.into(), vec![("ITEM_ADDED_TO_OPEN_CONTENT_MODEL", "#/items/1")]),
        ("ADDITIONAL_ITEMS_REMOVED", r#"{"type":"array","items":[{"type":"string"}]}"#.into(), r#"{"type":"array","items":[{"type":"string"}],"additionalItems":false}"#.into(), vec![("ADDITIONAL_ITEMS_REMOVED", "#/additionalItems")]),
        ("2020-12 prefixItems", r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":false}"#.into(), r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"integer"}],"items":false}"#.into(), vec![("TYPE_CHANGED", "#/items/0")]),
        ("PRODUCT_TYPE_EXTENDED", r#"{"allOf":[{"type":"string"},{"maxLength":5}]}"#.into(), r#"{"allOf":[{"type":"string"},{"maxLength":5},{"minLength":1}]}"#.into(), vec![("PRODUCT_TYPE_EXTENDED", "#/")]),
        ("COMBINED_TYPE_SUBSCHEMAS_CHANGED", r#"{"anyOf":[{"type":"string"},{"type":"integer"}]}"#.into(), r#"{"anyOf":[{"type":"string"},{"type":"boolean"},{"type":"null"}]}"#.into(), vec![("COMBINED_TYPE_SUBSCHEMAS_CHANGED", "#/")]),
        ("SUM_TYPE_NARROWED", r#"{"anyOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]}"#.into(), r#"{"anyOf":[{"type":"string"},{"type":"integer"}]}"#.into(), vec![("SUM_TYPE_NARROWED", "#/")]),
        ("SUM_TYPE_EXTENDED compatible", r#"{"type":"string"}"#.into(), r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#.into(), vec![]),
        ("COMBINED_TYPE_CHANGED", r#"{"anyOf":[{"type":"string"},{"type":"integer"}]}"#.into(), r#"{"allOf":[{"type":"string"},{"type":"integer"}]}"#.into(), vec![("COMBINED_TYPE_CHANGED", "#/")]),
        ("NOT_TYPE_EXTENDED", r#"{"not":{"type":"string","maxLength":5}}"#.into(), r#"{"not":{"type":"string","maxLength":10}}"#.into(), vec![("NOT_TYPE_EXTENDED", "#/not")]),
        ("SCHEMA_ADDED", r#"{}"#.into(), r#"{"type":"string"}"#.into(), vec![("SCHEMA_ADDED", "#/")]),
        ("nested property path", obj(r#""a":{"type":"object","properties":{"x":{"type":"string"}}}"#, ""), obj(r#""a":{"type":"object","properties":{"x":{"type":"integer"}}}"#, ""), vec![("TYPE_CHANGED", "#/properties/a/properties/x")]),
        ("$ref into definitions", r##"{"definitions":{"A":{"type":"string"}},"$ref":"#/definitions/A"}"##.into(), r##"{"definitions":{"A":{"type":"integer"}},"$ref":"#/definitions/A"}"##.into(), vec![("TYPE_CHANGED", "#/")]),
    ];
    for (what, o, u, want) in cases {
        let got = check(j, &o, &u);
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect();
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn json_recursive_schema_terminates() {
    let s = r##"{"definitions":{"N":{"type":"object","properties":{"next":{"$ref":"#/definitions/N"},"v":{"type":"integer"}}}},"$ref":"#/definitions/N"}"##;
    let u = r##"{"definitions":{"N":{"type":"object","properties":{"next":{"$ref":"#/definitions/N"},"v":{"type":"string"}}}},"$ref":"#/definitions/N"}"##;
    assert!(check(SchemaType::Json, s, s).is_empty());
    assert_eq!(
        check(SchemaType::Json, s, u),
        vec![("TYPE_CHANGED".to_string(), "#/properties/v".to_string())]
    );
}

const D2020: &str = r#""$schema":"https://json-schema.org/draft/2020-12/schema""#;

fn j(body: &str) -> String {
    format!("{{{D2020},{body}}}")
}

#[test]
fn json_unevaluated_difference_types() {
    let t = SchemaType::Json;
    let obj = |extra: &str| {
        j(&format!(
            r#""type":"object","properties":{{"a":{{"type":"string"}}}}{extra}"#
        ))
    };
    let arr = |extra: &str| {
        j(&format!(
            r#""type":"array","prefixItems":[{{"type":"string"}}]{extra}"#
        ))
    };
    let cases: Vec<(&str, String, String, Vec<(&str, &str)>)> = vec![
        (
            "UNEVALUATED_PROPERTIES_REMOVED",
            obj(""),
            obj(r#","unevaluatedProperties":false"#),
            vec![("UNEVALUATED_PROPERTIES_REMOVED", "#/unevaluatedProperties")],
        ),
        (
            "UNEVALUATED_PROPERTIES_REMOVED from a schema",
            obj(r#","unevaluatedProperties":{"type":"integer"}"#),
            obj(r#","unevaluatedProperties":false"#),
            vec![("UNEVALUATED_PROPERTIES_REMOVED", "#/unevaluatedProperties")],
        ),
        (
            "UNEVALUATED_PROPERTIES_NARROWED",
            obj(""),
            obj(r#","unevaluatedProperties":{"type":"integer"}"#),
            vec![("UNEVALUATED_PROPERTIES_NARROWED", "#/unevaluatedProperties")],
        ),
        (
            "UNEVALUATED_PROPERTIES_ADDED (compatible)",
            obj(r#","unevaluatedProperties":false"#),
            obj(""),
            vec![],
        ),
        (
            "UNEVALUATED_PROPERTIES_EXTENDED (compatible)",
            obj(r#","unevaluatedProperties":{"type":"integer"}"#),
            obj(r#","unevaluatedProperties":true"#),
            vec![],
        ),
        (
            "unevaluatedProperties schemas compared",
            obj(r#","unevaluatedProperties":{"type":"integer"}"#),
            obj(r#","unevaluatedProperties":{"type":"string"}"#),
            vec![("TYPE_CHANGED", "#/unevaluatedProperties")],
        ),
        // unevaluatedProperties:false closes the content model like additionalProperties:false.
        (
            "property removed from a closed (unevaluated) model",
            j(
                r#""type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"unevaluatedProperties":false"#,
            ),
            j(
                r#""type":"object","properties":{"a":{"type":"string"}},"unevaluatedProperties":false"#,
            ),
            vec![(
                "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                "#/properties/b",
            )],
        ),
        (
            "optional property added to a closed (unevaluated) model",
            j(
                r#""type":"object","properties":{"a":{"type":"string"}},"unevaluatedProperties":false"#,
            ),
            j(
                r#""type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"unevaluatedProperties":false"#,
            ),
            vec![],
        ),
        (
            "property added to a partially open (unevaluated) model, not covered",
            j(
                r#""type":"object","properties":{"a":{"type":"string"}},"unevaluatedProperties":{"type":"string"}"#,
            ),
            j(
                r#""type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"unevaluatedProperties":{"type":"string"}"#,
            ),
            vec![(
                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                "#/properties/b",
            )],
        ),
        (
            "additionalProperties decides before unevaluatedProperties",
            j(
                r#""type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false,"unevaluatedProperties":true"#,
            ),
            j(
                r#""type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false,"unevaluatedProperties":true"#,
            ),
            vec![(
                "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                "#/properties/b",
            )],
        ),
        (
            "UNEVALUATED_ITEMS_REMOVED",
            arr(""),
            arr(r#","unevaluatedItems":false"#),
            vec![("UNEVALUATED_ITEMS_REMOVED", "#/unevaluatedItems")],
        ),
        (
            "UNEVALUATED_ITEMS_NARROWED",
            arr(""),
            arr(r#","unevaluatedItems":{"type":"integer"}"#),
            vec![("UNEVALUATED_ITEMS_NARROWED", "#/unevaluatedItems")],
        ),
        (
            "UNEVALUATED_ITEMS_ADDED (compatible)",
            arr(r#","unevaluatedItems":false"#),
            arr(""),
            vec![],
        ),
        (
            "UNEVALUATED_ITEMS_EXTENDED (compatible)",
            arr(r#","unevaluatedItems":{"type":"integer"}"#),
            arr(""),
            vec![],
        ),
        (
            "UNEVALUATED_ITEMS_REMOVED without a tuple",
            j(r#""type":"array""#),
            j(r#""type":"array","unevaluatedItems":false"#),
            vec![("UNEVALUATED_ITEMS_REMOVED", "#/unevaluatedItems")],
        ),
        (
            "item removed from a closed (unevaluated) model",
            j(
                r#""type":"array","prefixItems":[{"type":"string"},{"type":"string"}],"unevaluatedItems":false"#,
            ),
            j(r#""type":"array","prefixItems":[{"type":"string"}],"unevaluatedItems":false"#),
            vec![("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", "#/items/1")],
        ),
        (
            "item added to a closed (unevaluated) model (compatible)",
            j(r#""type":"array","prefixItems":[{"type":"string"}],"unevaluatedItems":false"#),
            j(
                r#""type":"array","prefixItems":[{"type":"string"},{"type":"string"}],"unevaluatedItems":false"#,
            ),
            vec![],
        ),
        (
            "item added to an open model",
            arr(""),
            j(r#""type":"array","prefixItems":[{"type":"string"},{"type":"string"}]"#),
            vec![("ITEM_ADDED_TO_OPEN_CONTENT_MODEL", "#/items/1")],
        ),
    ];
    for (what, o, u, want) in cases {
        let got = check(t, &o, &u);
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect();
        assert_eq!(got, want, "{what}");
    }
}

mod reserved {
    use super::*;
    use gatehouse_registry::compat::{Version, check_versions};
    use gatehouse_registry::contract::Metadata;

    fn md(reserved: Option<&str>) -> Option<Metadata> {
        reserved.map(|r| Metadata {
            properties: Some([("confluent:reserved".to_string(), r.to_string())].into()),
            ..Metadata::default()
        })
    }

    fn run(
        level: CompatibilityLevel,
        (old, old_res): (&str, Option<&str>),
        (new, new_res): (&str, Option<&str>),
    ) -> Vec<(String, String)> {
        let (o, n) = (parse(SchemaType::Json, old), parse(SchemaType::Json, new));
        let (om, nm) = (md(old_res), md(new_res));
        let prev = [Version {
            schema: &o,
            metadata: om.as_ref(),
        }];
        let new = Version {
            schema: &n,
            metadata: nm.as_ref(),
        };
        check_versions(new, &prev, level)
            .into_iter()
            .map(|i| (i.error_type, i.path))
            .collect()
    }

    const S: &str =
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#;
    const S_WITH_B: &str = r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}"#;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn reserved_property_rules() {
        use CompatibilityLevel::*;
        // Keeping and adding reservations is fine.
        assert_eq!(run(Backward, (S, Some("b")), (S, Some("b, c"))), pairs(&[]));
        assert_eq!(run(Backward, (S, Option::None), (S, Some("b"))), pairs(&[]));
        // Dropping one is not, at any level but NONE.
        for level in [Backward, Forward, Full, BackwardTransitive] {
            assert_eq!(
                run(level, (S, Some("b,c")), (S, Some("c"))),
                pairs(&[("RESERVED_PROPERTY_REMOVED", "#/properties/b")]),
                "{level}"
            );
        }
        assert_eq!(
            run(CompatibilityLevel::None, (S, Some("b")), (S, Option::None)),
            pairs(&[])
        );
        // A reserved name used as a property of the new schema.
        assert_eq!(
            run(Backward, (S, Some("b")), (S_WITH_B, Some("b"))),
            pairs(&[(
                "RESERVED_PROPERTY_CONFLICTS_WITH_PROPERTY",
                "#/properties/b"
            )])
        );
        // Blank entries are ignored; a reservation for an existing property conflicts.
        assert_eq!(
            run(Backward, (S, Option::None), (S, Some(" ,a,"))),
            pairs(&[(
                "RESERVED_PROPERTY_CONFLICTS_WITH_PROPERTY",
                "#/properties/a"
            )])
        );
        // Other formats ignore the property.
        let (a1, a2) = (
            parse(SchemaType::Avro, r#""string""#),
            parse(SchemaType::Avro, r#""string""#),
        );
        let m = md(Some("x"));
        let found = check_versions(
            Version {
                schema: &a2,
                metadata: Option::None,
            },
            &[Version {
                schema: &a1,
                metadata: m.as_ref(),
            }],
            Backward,
        );
        assert!(found.is_empty());
    }
}
