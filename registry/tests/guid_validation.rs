//! The record validator resolves GUIDs (the `0x01` wire format and the `__value_schema_id`
//! header) through the store's [`GuidLookup`](gatehouse_registry::validate::GuidLookup).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gatehouse_registry::api::{MemoryStore, SchemaRequest, SchemaStore, governance};
use gatehouse_registry::validate::{
    KeyOrValue, SubjectNameStrategy, ValidationMode, ValidationPolicy, Validator,
};

#[tokio::test]
async fn store_guids_resolve_in_the_validator() {
    let store = Arc::new(MemoryStore::new());
    let req = SchemaRequest {
        schema: Some(
            r#"{"type":"record","name":"U","fields":[{"name":"age","type":"int"}]}"#.into(),
        ),
        ..Default::default()
    };
    let r = store.register("t-value", req, false).await.unwrap();
    let guid = governance::parse_guid(&r.guid).unwrap();
    let v = Validator::new(store.clone()).with_guid_lookup(store.clone());
    let policy = ValidationPolicy {
        mode: ValidationMode::Full,
        strategy: SubjectNameStrategy::default(),
    };
    let datum = [0x42u8]; // zig-zag 33
    let mut prefixed = vec![1u8];
    prefixed.extend_from_slice(&guid);
    prefixed.extend_from_slice(&datum);
    let none: [(&str, &[u8]); 0] = [];
    let got = v
        .validate("t", KeyOrValue::Value, &prefixed, &none, &policy)
        .await
        .unwrap();
    assert_eq!(got.id, r.id);
    let header = [("__value_schema_id", prefixed[..17].to_vec())];
    let got = v
        .validate("t", KeyOrValue::Value, &datum, &header, &policy)
        .await
        .unwrap();
    assert_eq!(got.id, r.id);
    let unknown = [("__value_schema_id", [vec![1u8], vec![0u8; 16]].concat())];
    assert!(
        v.validate("t", KeyOrValue::Value, &datum, &unknown, &policy)
            .await
            .is_err()
    );
}
