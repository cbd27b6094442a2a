//! Validation-API benchmark (issue 3): the gateway's per-record check on a cached schema,
//! in process, for 1 KiB Avro records in Confluent's wire format. Prints records/s for
//! `schema-id` (prefix, id, subject) and `full` (plus decoding the payload against the schema)
//! beside a baseline in the same run: apache-avro's own `from_avro_datum` on the same bytes
//! (the floor any full validation pays). Run: `cargo bench -p gatehouse-registry --bench
//! validate`.

// `from_avro_datum`/`to_avro_datum` are deprecated in apache-avro 0.22 in favour of its datum
// reader/writer types; they remain the simplest baseline and test-data encoder.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::Instant;

use apache_avro::types::Value;
use apache_avro::{Schema, from_avro_datum, to_avro_datum};
use gatehouse_registry::api::{MemoryStore, SchemaRequest, SchemaStore};
use gatehouse_registry::validate::{
    KeyOrValue, SubjectNameStrategy, ValidationMode, ValidationPolicy, Validator,
};

const SCHEMA: &str = r#"{"type":"record","name":"Payment","namespace":"bench","fields":[
    {"name":"id","type":"long"},
    {"name":"account","type":"string"},
    {"name":"amount","type":"double"},
    {"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD","GBP"]}},
    {"name":"note","type":["null","string"],"default":null},
    {"name":"blob","type":"bytes"}]}"#;

fn record(schema: &Schema) -> Vec<u8> {
    let v = Value::Record(vec![
        ("id".into(), Value::Long(42)),
        (
            "account".into(),
            Value::String("DE89370400440532013000".into()),
        ),
        ("amount".into(), Value::Double(12.5)),
        ("currency".into(), Value::Enum(1, "USD".into())),
        (
            "note".into(),
            Value::Union(1, Box::new(Value::String("bench".into()))),
        ),
        ("blob".into(), Value::Bytes(vec![7u8; 960])),
    ]);
    match to_avro_datum(schema, v) {
        Ok(b) => b,
        Err(e) => panic!("benchmark record does not encode: {e}"),
    }
}

fn main() {
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let schema = match Schema::parse_str(SCHEMA) {
        Ok(s) => s,
        Err(e) => panic!("benchmark schema does not parse: {e}"),
    };
    let payload = record(&schema);
    let store = Arc::new(MemoryStore::new());
    let id = rt.block_on(async {
        let req = SchemaRequest {
            schema: Some(SCHEMA.to_string()),
            ..Default::default()
        };
        match store.register("payments-value", req, false).await {
            Ok(r) => r.id,
            Err(e) => panic!("register: {e}"),
        }
    });
    let mut framed = vec![0u8];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(&payload);
    let validator = Validator::new(store);
    let no_headers: [(&str, &[u8]); 0] = [];
    let n = 200_000u32;

    let t = Instant::now();
    for _ in 0..n {
        let mut r = &payload[..];
        if let Err(e) = from_avro_datum(&schema, &mut r, None) {
            panic!("decode: {e}");
        }
    }
    let base = f64::from(n) / t.elapsed().as_secs_f64();
    println!(
        "record {} bytes framed; baseline apache-avro from_avro_datum: {base:>10.0} records/s",
        framed.len()
    );
    for mode in [ValidationMode::SchemaId, ValidationMode::Full] {
        let policy = ValidationPolicy {
            mode,
            strategy: SubjectNameStrategy::TopicName,
        };
        rt.block_on(async {
            // Warm the cache (the first call compiles the schema).
            if let Err(e) = validator
                .validate("payments", KeyOrValue::Value, &framed, &no_headers, &policy)
                .await
            {
                panic!("validate: {e}");
            }
            let t = Instant::now();
            for _ in 0..n {
                if let Err(e) = validator
                    .validate("payments", KeyOrValue::Value, &framed, &no_headers, &policy)
                    .await
                {
                    panic!("validate: {e}");
                }
            }
            let rate = f64::from(n) / t.elapsed().as_secs_f64();
            println!(
                "validate {mode:?}: {rate:>12.0} records/s ({:.0} MB/s of 1 KiB records) = {:.2}x the baseline",
                rate * framed.len() as f64 / 1e6,
                rate / base
            );
        });
    }
}
