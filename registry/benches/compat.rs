//! Compatibility-check benchmark (issue 3): registering version 101 of a subject under
//! BACKWARD_TRANSITIVE checks it against all 100 earlier versions. Prints the time of the check
//! itself for Avro, Protobuf and JSON Schema, beside a baseline in the same run: parsing the new
//! schema once (work every registration does anyway). Run: `cargo bench -p gatehouse-registry
//! --bench compat`.

use std::time::Instant;

use gatehouse_registry::compat::{CompatibilityLevel, check};
use gatehouse_registry::schema::{NoReferences, ParsedSchema, SchemaType};

fn avro(n: usize) -> String {
    let mut fields = vec![r#"{"name":"id","type":"long"}"#.to_string()];
    for i in 0..n {
        fields.push(format!(
            r#"{{"name":"f{i}","type":["null","string"],"default":null}}"#
        ));
    }
    format!(
        r#"{{"type":"record","name":"Order","namespace":"bench","fields":[{}]}}"#,
        fields.join(",")
    )
}

fn proto(n: usize) -> String {
    let mut s =
        String::from("syntax = \"proto3\";\npackage bench;\nmessage Order {\n  int64 id = 1;\n");
    for i in 0..n {
        s.push_str(&format!("  string f{i} = {};\n", i + 2));
    }
    s.push_str("}\n");
    s
}

fn json(n: usize) -> String {
    let mut props = vec![r#""id":{"type":"integer"}"#.to_string()];
    for i in 0..n {
        props.push(format!(r#""f{i}":{{"type":"string"}}"#));
    }
    format!(
        r#"{{"type":"object","additionalProperties":false,"properties":{{{}}},"required":["id"]}}"#,
        props.join(",")
    )
}

fn parse(t: SchemaType, text: &str) -> ParsedSchema {
    match ParsedSchema::parse(t, text, &[], &NoReferences) {
        Ok(s) => s,
        Err(e) => panic!("benchmark schema does not parse: {e}"),
    }
}

fn main() {
    for (name, t, make) in [
        ("avro", SchemaType::Avro, avro as fn(usize) -> String),
        ("protobuf", SchemaType::Protobuf, proto),
        ("json", SchemaType::Json, json),
    ] {
        let previous: Vec<ParsedSchema> = (0..100).map(|i| parse(t, &make(i))).collect();
        let new_text = make(100);
        let rounds = 20;
        let t0 = Instant::now();
        let mut new = parse(t, &new_text);
        for _ in 1..rounds {
            new = parse(t, &new_text);
        }
        let parse_ms = t0.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);
        let t1 = Instant::now();
        let mut issues = 0;
        for _ in 0..rounds {
            issues += check(&new, &previous, CompatibilityLevel::BackwardTransitive).len();
        }
        let check_ms = t1.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);
        assert_eq!(issues, 0, "the benchmark evolution is compatible");
        println!(
            "{name:9} BACKWARD_TRANSITIVE vs 100 versions: check {check_ms:7.3} ms (goal < 5 ms) | baseline: parse the new schema {parse_ms:7.3} ms | ratio {:.1}x",
            check_ms / parse_ms
        );
    }
}
