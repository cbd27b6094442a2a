//! Router tests for data contracts (metadata, rule sets, config defaults/overrides), GUIDs,
//! Protobuf `format=serialized` / base64 descriptors and paging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use gatehouse_registry::api::{MemoryStore, router};
use http_body_util::BodyExt;
use prost::Message as _;
use serde_json::{Value, json};
use tower::ServiceExt;

const CT: &str = "application/vnd.schemaregistry.v1+json";

fn app() -> Router {
    router(Arc::new(MemoryStore::new()))
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", CT)
        .body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn code(v: &Value) -> i64 {
    v["error_code"].as_i64().unwrap_or(-1)
}

const AVRO: &str = r#"{"type":"record","name":"Pay","fields":[{"name":"amount","type":"long"}]}"#;

fn rules(expr: &str) -> Value {
    json!({"domainRules": [{"name": "positive", "kind": "CONDITION", "mode": "WRITE",
        "type": "CEL", "expr": expr, "onFailure": "ERROR"}]})
}

fn metadata(owner: &str) -> Value {
    json!({"properties": {"owner": owner}, "tags": {"Pay.amount": ["PII"]}})
}

#[tokio::test]
async fn metadata_and_rule_set_are_stored_and_returned() {
    let a = app();
    let body = json!({"schema": AVRO, "metadata": metadata("team-a"),
        "ruleSet": rules("message.amount > 0")});
    let (s, r) = call(&a, "POST", "/subjects/pay-value/versions", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (r["id"].clone(), r["version"].clone()),
        (json!(1), json!(1))
    );
    let guid = r["guid"].as_str().unwrap().to_string();
    assert_eq!(guid.len(), 36);

    for uri in [
        "/subjects/pay-value/versions/1",
        "/subjects/pay-value/versions/latest",
        "/schemas/ids/1",
        &format!("/schemas/guids/{guid}"),
    ] {
        let (s, v) = call(&a, "GET", uri, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        assert_eq!(v["metadata"], metadata("team-a"), "{uri}");
        assert_eq!(v["ruleSet"], rules("message.amount > 0"), "{uri}");
        assert_eq!(v["guid"], json!(guid), "{uri}");
    }
    let (_, ids) = call(&a, "GET", &format!("/schemas/guids/{guid}/ids"), None).await;
    assert_eq!(ids, json!([1]));
    let (s, v) = call(
        &a,
        "GET",
        "/schemas/guids/00000000-0000-8000-8000-000000000000",
        None,
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 40403));
    let (s, v) = call(&a, "GET", "/schemas/guids/not-a-guid/ids", None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 40403));
    let (_, all) = call(&a, "GET", "/schemas", None).await;
    assert_eq!(all[0]["ruleSet"], rules("message.amount > 0"));
}

#[tokio::test]
async fn identity_includes_metadata_and_rules_and_inherits_from_latest() {
    let a = app();
    let reg = |body: Value| {
        let a = a.clone();
        async move { call(&a, "POST", "/subjects/p/versions", Some(body)).await.1 }
    };
    let v1 = reg(json!({"schema": AVRO, "ruleSet": rules("message.amount > 0")})).await;
    // Same text, same rules: the same version.
    let again = reg(json!({"schema": AVRO, "ruleSet": rules("message.amount > 0")})).await;
    assert_eq!(again, v1);
    // Without metadata/ruleSet the latest version's are inherited: still the same version.
    let inherited = reg(json!({"schema": AVRO})).await;
    assert_eq!(inherited, v1);
    // Different rules: a new version and a new id (and GUID).
    let v2 = reg(json!({"schema": AVRO, "ruleSet": rules("message.amount > 10")})).await;
    assert_eq!(
        (v2["id"].clone(), v2["version"].clone()),
        (json!(2), json!(2))
    );
    assert_ne!(v2["guid"], v1["guid"]);
    // An empty schema re-registers the latest text with new metadata.
    let v3 = reg(json!({"metadata": metadata("b")})).await;
    assert_eq!(v3["version"], 3);
    let (_, got) = call(&a, "GET", "/subjects/p/versions/3", None).await;
    assert_eq!(got["schema"], json!(AVRO));
    assert_eq!(got["metadata"], metadata("b"));
    assert_eq!(
        got["ruleSet"],
        rules("message.amount > 10"),
        "rules inherited"
    );

    // Lookup by content: without a ruleSet it matches the latest's contract; with another one
    // it is not found.
    let (s, v) = call(&a, "POST", "/subjects/p", Some(json!({"schema": AVRO}))).await;
    assert_eq!((s, v["version"].clone()), (StatusCode::OK, json!(3)));
    let (s, v) = call(
        &a,
        "POST",
        "/subjects/p",
        Some(json!({"schema": AVRO, "ruleSet": rules("message.amount > 0")})),
    )
    .await;
    assert_eq!((s, v["version"].clone()), (StatusCode::OK, json!(1)));
    let (s, v) = call(
        &a,
        "POST",
        "/subjects/p",
        Some(json!({"schema": AVRO, "ruleSet": rules("false")})),
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 40403));

    // Metadata lookup: the latest version whose properties match.
    let (s, v) = call(&a, "GET", "/subjects/p/metadata?key=owner&value=b", None).await;
    assert_eq!((s, v["version"].clone()), (StatusCode::OK, json!(3)));
    let (s, v) = call(&a, "GET", "/subjects/p/metadata?key=owner&value=zzz", None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 40403));
    let (s, v) = call(&a, "GET", "/subjects/nope/metadata?key=owner&value=b", None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 40401));
}

#[tokio::test]
async fn invalid_rule_sets_are_42210() {
    let a = app();
    let bad = [
        json!({"domainRules": [{"name": "a", "kind": "CONDITION", "mode": "WRITE", "type": "CEL"},
                               {"name": "a", "kind": "CONDITION", "mode": "WRITE", "type": "CEL"}]}),
        json!({"domainRules": [{"kind": "CONDITION", "mode": "WRITE", "type": "CEL"}]}),
        json!({"domainRules": [{"name": "a", "kind": "CONDITION", "mode": "WRITE"}]}),
        json!({"domainRules": [{"name": "a", "kind": "SOMETIMES", "mode": "WRITE", "type": "CEL"}]}),
        json!({"domainRules": [{"name": "a", "kind": "CONDITION", "mode": "ALWAYS", "type": "CEL"}]}),
        json!({"migrationRules": [{"name": "a", "kind": "TRANSFORM", "mode": "WRITE", "type": "JSONATA"}]}),
        // A CEL condition the gateway could not compile.
        json!({"domainRules": [{"name": "a", "kind": "CONDITION", "mode": "WRITE", "type": "CEL",
                                "expr": "message.amount >"}]}),
    ];
    for rs in bad {
        let (s, v) = call(
            &a,
            "POST",
            "/subjects/x/versions",
            Some(json!({"schema": AVRO, "ruleSet": rs})),
        )
        .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, 42210),
            "{rs}"
        );
        let (s, v) = call(&a, "PUT", "/config/x", Some(json!({"defaultRuleSet": rs}))).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, 42210),
            "{rs}"
        );
    }
}

#[tokio::test]
async fn config_defaults_and_overrides_merge_on_register() {
    let a = app();
    let cfg = json!({
        "defaultMetadata": {"properties": {"owner": "default", "tier": "gold"}},
        "overrideMetadata": {"properties": {"tier": "platinum"}},
        "defaultRuleSet": rules("message.amount > 0"),
        "overrideRuleSet": {"domainRules": [{"name": "audit", "kind": "CONDITION",
            "mode": "WRITE", "type": "CEL", "expr": "true"}]},
    });
    let (s, v) = call(&a, "PUT", "/config/c", Some(cfg.clone())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["defaultMetadata"], cfg["defaultMetadata"]);
    let (_, got) = call(&a, "GET", "/config/c", None).await;
    assert_eq!(got["overrideRuleSet"], cfg["overrideRuleSet"]);
    assert_eq!(got["compatibilityLevel"], "BACKWARD");
    // The compatibility set later keeps the contract settings.
    call(
        &a,
        "PUT",
        "/config/c",
        Some(json!({"compatibility": "NONE"})),
    )
    .await;
    let (_, got) = call(&a, "GET", "/config/c", None).await;
    assert_eq!(got["compatibilityLevel"], "NONE");
    assert_eq!(got["defaultMetadata"], cfg["defaultMetadata"]);

    let (_, r) = call(
        &a,
        "POST",
        "/subjects/c/versions",
        Some(json!({"schema": AVRO, "metadata": {"properties": {"owner": "me"}}})),
    )
    .await;
    let (_, v) = call(&a, "GET", &format!("/schemas/ids/{}", r["id"]), None).await;
    assert_eq!(
        v["metadata"]["properties"],
        json!({"owner": "me", "tier": "platinum"})
    );
    let names: Vec<&str> = v["ruleSet"]["domainRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["positive", "audit"]);
    // Global config: the same fields.
    let (s, _) = call(
        &a,
        "PUT",
        "/config",
        Some(json!({"defaultMetadata": {"properties": {"g": "1"}}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, got) = call(&a, "GET", "/config", None).await;
    assert_eq!(got["defaultMetadata"]["properties"]["g"], "1");
    assert_eq!(got["compatibilityLevel"], "BACKWARD");
}

const ORDER: &str = "syntax = \"proto3\";\npackage shop;\n\n// An order.\nmessage Order {\n  string id = 1;\n  int64 amount = 2;\n  map<string, int32> counts = 3;\n}\n";

#[tokio::test]
async fn protobuf_serialized_format_and_base64_registration() {
    let a = app();
    let (_, r) = call(
        &a,
        "POST",
        "/subjects/o-value/versions",
        Some(json!({"schema": ORDER, "schemaType": "PROTOBUF"})),
    )
    .await;
    assert_eq!(r["id"], 1);
    let (_, v) = call(&a, "GET", "/schemas/ids/1?format=serialized", None).await;
    let b64 = v["schema"].as_str().unwrap().to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .unwrap();
    let fd = prost_reflect::prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(fd.package(), "shop");
    assert_eq!(fd.message_type[0].name(), "Order");
    for uri in [
        "/subjects/o-value/versions/1?format=serialized",
        "/subjects/o-value/versions/latest?format=serialized",
    ] {
        assert_eq!(
            call(&a, "GET", uri, None).await.1["schema"],
            json!(b64),
            "{uri}"
        );
    }
    let (_, raw) = call(&a, "GET", "/schemas/ids/1/schema?format=serialized", None).await;
    assert_eq!(raw, json!(b64));
    // Without the format, the .proto text.
    let (_, v) = call(&a, "GET", "/schemas/ids/1", None).await;
    assert_eq!(v["schema"], json!(ORDER.trim()));

    // The base64 descriptor matches the registered text (lookup, idempotent register).
    let desc = json!({"schema": b64, "schemaType": "PROTOBUF"});
    let (s, v) = call(&a, "POST", "/subjects/o-value", Some(desc.clone())).await;
    assert_eq!((s, v["id"].clone()), (StatusCode::OK, json!(1)), "{v}");
    let (_, v) = call(&a, "POST", "/subjects/o-value/versions", Some(desc.clone())).await;
    assert_eq!(
        (v["id"].clone(), v["version"].clone()),
        (json!(1), json!(1))
    );
    // In a new subject it is stored as printed .proto text.
    let (_, v) = call(&a, "POST", "/subjects/fresh/versions", Some(desc)).await;
    let (_, got) = call(&a, "GET", &format!("/schemas/ids/{}", v["id"]), None).await;
    let text = got["schema"].as_str().unwrap();
    assert!(text.contains("message Order {"), "{text}");
    assert!(text.contains("map<string, int32> counts = 3;"), "{text}");
    let (s, _) = call(
        &a,
        "POST",
        "/compatibility/subjects/o-value/versions/latest",
        Some(json!({"schema": b64, "schemaType": "PROTOBUF"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn protobuf_references_serialize_in_both_directions() {
    let a = app();
    let money = "syntax = \"proto3\";\npackage common;\nmessage Money { int64 units = 1; }\n";
    call(
        &a,
        "POST",
        "/subjects/money/versions",
        Some(json!({"schema": money, "schemaType": "PROTOBUF"})),
    )
    .await;
    let pay = "syntax = \"proto3\";\npackage shop;\nimport \"common/money.proto\";\nimport \"google/protobuf/timestamp.proto\";\nmessage Pay { common.Money m = 1; google.protobuf.Timestamp at = 2; }\n";
    let refs = json!([{"name": "common/money.proto", "subject": "money", "version": 1}]);
    let (_, r) = call(
        &a,
        "POST",
        "/subjects/pay/versions",
        Some(json!({"schema": pay, "schemaType": "PROTOBUF", "references": refs})),
    )
    .await;
    let (_, v) = call(
        &a,
        "GET",
        &format!("/schemas/ids/{}?format=serialized", r["id"]),
        None,
    )
    .await;
    let b64 = v["schema"].as_str().unwrap();
    assert_eq!(v["references"], refs);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let fd = prost_reflect::prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
    assert!(fd.dependency.contains(&"common/money.proto".to_string()));
    // Registering the descriptor with its references finds the same version.
    let (s, v) = call(
        &a,
        "POST",
        "/subjects/pay/versions",
        Some(json!({"schema": b64, "schemaType": "PROTOBUF", "references": refs})),
    )
    .await;
    assert_eq!(
        (s, v["id"].clone()),
        (StatusCode::OK, r["id"].clone()),
        "{v}"
    );
}

#[tokio::test]
async fn paging_on_listings() {
    let a = app();
    for s in ["a", "b", "c"] {
        call(
            &a,
            "POST",
            &format!("/subjects/{s}/versions"),
            Some(json!({"schema": AVRO})),
        )
        .await;
    }
    assert_eq!(
        call(&a, "GET", "/subjects?offset=1&limit=1", None).await.1,
        json!(["b"])
    );
    assert_eq!(
        call(&a, "GET", "/subjects?offset=2", None).await.1,
        json!(["c"])
    );
    assert_eq!(
        call(&a, "GET", "/subjects?offset=9", None).await.1,
        json!([])
    );
    assert_eq!(
        call(&a, "GET", "/subjects?limit=-1", None).await.1,
        json!(["a", "b", "c"])
    );
    assert_eq!(
        call(&a, "GET", "/subjects/a/versions?limit=0", None)
            .await
            .1,
        json!([])
    );
    let (_, v) = call(&a, "GET", "/schemas?offset=1&limit=1", None).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["subject"], "b");
}

#[tokio::test]
async fn reserved_json_properties_from_metadata() {
    let a = app();
    let s1 = r#"{"type":"object","properties":{"a":{"type":"string"}}}"#;
    let s2 = r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}}}"#;
    let reserved = |names: &str| json!({"properties": {"confluent:reserved": names}});
    let body = json!({"schemaType": "JSON", "schema": s1, "metadata": reserved("b")});
    let (s, r) = call(&a, "POST", "/subjects/r-value/versions", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // Using the reserved name as a property: inherits the reservation, conflicts.
    let body = json!({"schemaType": "JSON", "schema": s2});
    let (s, r) = call(&a, "POST", "/subjects/r-value/versions", Some(body.clone())).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .contains("RESERVED_PROPERTY_CONFLICTS_WITH_PROPERTY"),
        "{r}"
    );
    let (s, r) = call(
        &a,
        "POST",
        "/compatibility/subjects/r-value/versions/latest?verbose=true",
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["is_compatible"], false, "{r}");
    // Dropping the reservation.
    let body = json!({"schemaType": "JSON", "schema": s1, "metadata": reserved("c")});
    let (s, r) = call(&a, "POST", "/subjects/r-value/versions", Some(body)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .contains("RESERVED_PROPERTY_REMOVED"),
        "{r}"
    );
    // Extending it is fine.
    let body = json!({"schemaType": "JSON", "schema": s1, "metadata": reserved("b,c")});
    let (s, r) = call(&a, "POST", "/subjects/r-value/versions", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
}
