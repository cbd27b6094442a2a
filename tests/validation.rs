//! End-to-end: the record validation API (`gatehouse_registry::validate::Validator`) over the
//! `_schemas`-backed store of a registry started in process against the real `gatehouse`
//! broker binary. Avro, Protobuf and JSON schemas are registered over the store, then framed
//! records are validated id-only and fully, with every failure kind checked by its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use gatehouse_registry::api::{SchemaRequest, SchemaStore};
use gatehouse_registry::validate::{
    KeyOrValue, SchemaIdSource, SubjectNameStrategy, VALUE_SCHEMA_ID_HEADER, ValidationError,
    ValidationMode, ValidationPolicy, Validator,
};

const AVRO: &str = r#"{"type":"record","name":"Payment","namespace":"e2e","fields":[{"name":"id","type":"string"},{"name":"amount","type":"long"}]}"#;
const PROTO: &str = "syntax = \"proto3\";\npackage e2e;\nmessage Order {\n  string id = 1;\n  int64 amount = 2;\n}\n";
const JSON: &str = r#"{"title":"e2e.Sku","type":"object","properties":{"sku":{"type":"string"}},"required":["sku"]}"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn register(store: &dyn SchemaStore, subject: &str, ty: &str, text: &str) -> i32 {
    let req = SchemaRequest {
        schema: Some(text.to_string()),
        schema_type: Some(ty.to_string()),
        ..Default::default()
    };
    store.register(subject, req, false).await.unwrap().id
}

fn framed(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Avro datum of `{"id": id, "amount": amount}` (zig-zag varints).
fn avro_payment(id: &str, amount: i64) -> Vec<u8> {
    fn zz(v: i64, out: &mut Vec<u8>) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        while u >= 0x80 {
            out.push((u as u8) | 0x80);
            u >>= 7;
        }
        out.push(u as u8);
    }
    let mut out = Vec::new();
    zz(id.len() as i64, &mut out);
    out.extend_from_slice(id.as_bytes());
    zz(amount, &mut out);
    out
}

const NO_HEADERS: &[(&str, &[u8])] = &[];

#[test]
fn validation_api_against_kafka_store() {
    let rt = rt();
    let broker = common::Broker::start();
    let reg = common::start_registry(&rt, &broker.bootstrap());
    let store: Arc<dyn SchemaStore> = reg.store().clone();
    let validator = Validator::new(store.clone());
    let full = ValidationPolicy {
        mode: ValidationMode::Full,
        strategy: SubjectNameStrategy::TopicName,
    };
    let id_only = ValidationPolicy::default();

    rt.block_on(async {
        let avro = register(&*store, "payments-value", "AVRO", AVRO).await;
        let proto = register(&*store, "orders-value", "PROTOBUF", PROTO).await;
        let json = register(&*store, "skus-value", "JSON", JSON).await;
        let record = register(&*store, "e2e.Payment", "AVRO", AVRO).await;
        assert_eq!(record, avro, "same schema, same id");

        // Avro: valid, id-only, and a payload that stops before 'amount'.
        let good = framed(avro, &avro_payment("p-1", 1250));
        let ok = validator
            .validate("payments", KeyOrValue::Value, &good, NO_HEADERS, &full)
            .await
            .unwrap();
        assert_eq!((ok.id, ok.subject.as_str()), (avro, "payments-value"));
        assert_eq!(ok.record_name.as_deref(), Some("e2e.Payment"));
        let truncated = framed(avro, &avro_payment("p-1", 0)[..4]);
        validator
            .validate("payments", KeyOrValue::Value, &truncated, NO_HEADERS, &id_only)
            .await
            .unwrap();
        let e = validator
            .validate("payments", KeyOrValue::Value, &truncated, NO_HEADERS, &full)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "payload does not match schema {avro} (AVRO) of subject payments-value: expected long at field 'amount': the payload ended or the varint is malformed"
            )
        );

        // Record-name strategies.
        let rn = ValidationPolicy {
            mode: ValidationMode::Full,
            strategy: SubjectNameStrategy::RecordName,
        };
        let ok = validator
            .validate("anything", KeyOrValue::Value, &good, NO_HEADERS, &rn)
            .await
            .unwrap();
        assert_eq!(ok.subject, "e2e.Payment");
        let trn = ValidationPolicy {
            mode: ValidationMode::SchemaId,
            strategy: SubjectNameStrategy::TopicRecordName,
        };
        let e = validator
            .validate("payments", KeyOrValue::Value, &good, NO_HEADERS, &trn)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("not payments-e2e.Payment"),
            "{e}"
        );

        // Wrong subject, unknown id, no magic byte.
        let e = validator
            .validate("orders", KeyOrValue::Value, &good, NO_HEADERS, &id_only)
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("schema id {avro} is registered under ")), "{msg}");
        assert!(msg.ends_with(", not orders-value"), "{msg}");
        assert!(msg.contains("payments-value") && msg.contains("e2e.Payment"), "{msg}");
        let e = validator
            .validate("payments", KeyOrValue::Value, &framed(999_999, &[]), NO_HEADERS, &id_only)
            .await
            .unwrap_err();
        assert_eq!(e, ValidationError::UnknownSchemaId(999_999));
        let e = validator
            .validate("payments", KeyOrValue::Value, b"plain text", NO_HEADERS, &id_only)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no schema id: the value does not start with magic byte 0"),
            "{e}"
        );

        // Header-carried id (payload without a prefix).
        let ok = validator
            .validate(
                "payments",
                KeyOrValue::Value,
                &avro_payment("p-2", 7),
                &[(VALUE_SCHEMA_ID_HEADER, framed(avro, &[]))],
                &full,
            )
            .await
            .unwrap();
        assert_eq!(ok.source, SchemaIdSource::Header);

        // GUID wire format: the store has no GUIDs.
        let mut guid = vec![1u8];
        guid.extend_from_slice(&[0x11; 16]);
        let e = validator
            .validate("payments", KeyOrValue::Value, &guid, NO_HEADERS, &id_only)
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::GuidUnsupported(..)), "{e}");

        // Protobuf: index array [0], then the message; a bad wire type fails.
        let order = framed(proto, &[0, 0x0a, 1, b'x', 0x10, 0x05]);
        let ok = validator
            .validate("orders", KeyOrValue::Value, &order, NO_HEADERS, &full)
            .await
            .unwrap();
        assert_eq!(ok.record_name.as_deref(), Some("e2e.Order"));
        let e = validator
            .validate("orders", KeyOrValue::Value, &framed(proto, &[0, 0x0f]), NO_HEADERS, &full)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a valid e2e.Order message"), "{e}");

        // JSON Schema: valid, missing required property, not JSON.
        validator
            .validate("skus", KeyOrValue::Value, &framed(json, br#"{"sku":"a"}"#), NO_HEADERS, &full)
            .await
            .unwrap();
        let e = validator
            .validate("skus", KeyOrValue::Value, &framed(json, br#"{"other":"hidden-value"}"#), NO_HEADERS, &full)
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("payload does not match schema {json} (JSON)")), "{msg}");
        assert!(!msg.contains("hidden-value"), "{msg}");

        // Soft delete of the subject: the id no longer validates under it.
        store.delete_subject("skus-value", false).await.unwrap();
        let e = validator
            .validate("skus", KeyOrValue::Value, &framed(json, br#"{"sku":"a"}"#), NO_HEADERS, &id_only)
            .await
            .unwrap_err();
        assert!(matches!(e, ValidationError::WrongSubject { .. }), "{e}");
        assert!(validator.cached() >= 3);
    });
    rt.block_on(reg.shutdown()).unwrap();
}
