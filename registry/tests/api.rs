//! Router tests without sockets (`tower::ServiceExt::oneshot`) for every endpoint and error code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use gatehouse_registry::api::{MemoryStore, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const CT: &str = "application/vnd.schemaregistry.v1+json";

fn app() -> Router {
    router(Arc::new(MemoryStore::new()))
}

async fn call_ct(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    ct: Option<&str>,
) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    let req = b
        .body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    call_ct(app, method, uri, body, Some(CT)).await
}

async fn raw(app: &Router, method: &str, uri: &str, body: &str, ct: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ct)
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn avro(fields: &[(&str, &str)]) -> String {
    let f: Vec<Value> = fields
        .iter()
        .map(|(n, t)| json!({"name": n, "type": t}))
        .collect();
    json!({"type": "record", "name": "R", "fields": f}).to_string()
}

fn code(v: &Value) -> i64 {
    v["error_code"].as_i64().unwrap_or(-1)
}

async fn reg(app: &Router, subject: &str, schema: &str) -> (StatusCode, Value) {
    let (s, v) = call(
        app,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(json!({"schema": schema})),
    )
    .await;
    (s, id_only(v))
}

/// A register answer reduced to its id (the answer also carries `version` and `guid`).
fn id_only(v: Value) -> Value {
    match v.get("id") {
        Some(id) if v.get("guid").is_some() => json!({"id": id}),
        _ => v,
    }
}

#[tokio::test]
async fn root_types_contexts() {
    let a = app();
    assert_eq!(
        call(&a, "GET", "/", None).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(
        call(&a, "POST", "/", Some(json!({}))).await,
        (StatusCode::OK, json!({}))
    );
    assert_eq!(
        call(&a, "GET", "/schemas/types", None).await.1,
        json!(["JSON", "PROTOBUF", "AVRO"])
    );
    assert_eq!(call(&a, "GET", "/contexts", None).await.1, json!(["."]));
    let (s, v) = call(&a, "GET", "/nope", None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 404));
    let (s, v) = call(&a, "PATCH", "/subjects", None).await;
    assert_eq!((s, code(&v)), (StatusCode::METHOD_NOT_ALLOWED, 405));
}

#[tokio::test]
async fn register_get_lookup_ids() {
    let a = app();
    let s1 = avro(&[("a", "string")]);
    let (s, v) = reg(&a, "t-value", &s1).await;
    assert_eq!((s, v.clone()), (StatusCode::OK, json!({"id": 1})));
    // Idempotent, and the same schema under another subject keeps its id.
    assert_eq!(reg(&a, "t-value", &s1).await.1, json!({"id": 1}));
    assert_eq!(reg(&a, "other", &s1).await.1, json!({"id": 1}));
    // All three content types are accepted.
    let s2 = avro(&[("a", "string"), ("b", "int")]);
    for ct in ["application/vnd.schemaregistry+json", "application/json"] {
        let (s, _) = call_ct(
            &a,
            "POST",
            "/subjects/ct/versions",
            Some(json!({"schema": s2})),
            Some(ct),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(
        call(&a, "GET", "/subjects", None).await.1,
        json!(["ct", "other", "t-value"])
    );
    assert_eq!(
        call(&a, "GET", "/subjects?subjectPrefix=t-", None).await.1,
        json!(["t-value"])
    );
    assert_eq!(
        call(&a, "GET", "/subjects/t-value/versions", None).await.1,
        json!([1])
    );
    let (s, v) = call(&a, "GET", "/subjects/t-value/versions/1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["subject"], "t-value");
    assert_eq!(v["version"], 1);
    assert_eq!(v["id"], 1);
    assert!(v.get("schemaType").is_none(), "AVRO omits schemaType");
    for latest in ["latest", "-1"] {
        assert_eq!(
            call(
                &a,
                "GET",
                &format!("/subjects/t-value/versions/{latest}"),
                None
            )
            .await
            .1["version"],
            1
        );
    }
    let (_, raw_schema) = call(&a, "GET", "/subjects/t-value/versions/1/schema", None).await;
    assert_eq!(raw_schema["name"], "R");
    let (s, v) = call(&a, "GET", "/schemas/ids/1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["schema"].as_str().unwrap().contains("\"R\""));
    assert!(v.get("maxId").is_none());
    assert_eq!(
        call(&a, "GET", "/schemas/ids/1?fetchMaxId=true", None)
            .await
            .1["maxId"],
        2
    );
    assert_eq!(
        call(&a, "GET", "/schemas/ids/1/schema", None).await.1["type"],
        "record"
    );
    assert_eq!(
        call(&a, "GET", "/schemas/ids/1/subjects", None).await.1,
        json!(["other", "t-value"])
    );
    assert_eq!(
        call(&a, "GET", "/schemas/ids/1/versions", None).await.1,
        json!([{"subject": "other", "version": 1}, {"subject": "t-value", "version": 1}])
    );
    for bad in [
        "/schemas/ids/99",
        "/schemas/ids/abc",
        "/schemas/ids/99/schema",
        "/schemas/ids/99/subjects",
        "/schemas/ids/99/versions",
    ] {
        let (s, v) = call(&a, "GET", bad, None).await;
        assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 40403), "{bad}");
    }
    // Lookup by content (whitespace-insensitive: the canonical form is compared).
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&s1).unwrap()).unwrap();
    let (s, v) = call(
        &a,
        "POST",
        "/subjects/t-value",
        Some(json!({"schema": pretty})),
    )
    .await;
    assert_eq!(
        (s, v["id"].clone(), v["version"].clone()),
        (StatusCode::OK, json!(1), json!(1))
    );
    let (s, v) = call(&a, "POST", "/subjects/t-value", Some(json!({"schema": s2}))).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 40403));
    let (s, v) = call(&a, "POST", "/subjects/nobody", Some(json!({"schema": s2}))).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 40401));
    // /schemas listing.
    let all = call(&a, "GET", "/schemas", None).await.1;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let latest = call(&a, "GET", "/schemas?latestOnly=true&subjectPrefix=ct", None)
        .await
        .1;
    assert_eq!(latest.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn versions_errors() {
    let a = app();
    reg(&a, "s", &avro(&[("a", "string")])).await;
    for (uri, want) in [
        ("/subjects/s/versions/0", 42202),
        ("/subjects/s/versions/abc", 42202),
        ("/subjects/s/versions/-2", 42202),
        ("/subjects/s/versions/2147483648", 42202),
        ("/subjects/s/versions/7", 40402),
        ("/subjects/x/versions/1", 40401),
        ("/subjects/x/versions", 40401),
        ("/subjects/s/versions/0/schema", 42202),
        ("/subjects/s/versions/abc/referencedby", 42202),
    ] {
        let (_, v) = call(&a, "GET", uri, None).await;
        assert_eq!(code(&v), want, "{uri}");
    }
}

#[tokio::test]
async fn bad_input_never_500() {
    let a = app();
    let (s, v) = raw(&a, "POST", "/subjects/s/versions", "{not json", CT).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, 400));
    let (s, v) = raw(&a, "POST", "/subjects/s/versions", r#"{"schema": 5}"#, CT).await;
    assert_eq!((s, code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, 422));
    let (s, v) = raw(
        &a,
        "POST",
        "/subjects/s/versions",
        r#"{"schema":"{}"}"#,
        "text/plain",
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, 415));
    for (body, what) in [
        (json!({}), "missing schema"),
        (json!({"schema": ""}), "empty"),
        (json!({"schema": "{\"type\":\"recordx\"}"}), "unknown type"),
        (json!({"schema": "not json"}), "not json"),
        (
            json!({"schema": "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"Nope\"}]}"}),
            "unknown name",
        ),
        (
            json!({"schema": "syntax = \"proto3\"; message { }", "schemaType": "PROTOBUF"}),
            "bad proto",
        ),
        (
            json!({"schema": "{\"type\": 5}", "schemaType": "JSON"}),
            "bad json schema",
        ),
        (
            json!({"schema": "{}", "schemaType": "XML"}),
            "unknown schemaType",
        ),
        (
            json!({"schema": "\"int\"", "references": [{"name": "x", "subject": "missing", "version": 1}]}),
            "unknown reference",
        ),
        (
            json!({"schema": format!("{}\"int\"{}", "[".repeat(100), "]".repeat(100))}),
            "deep nesting",
        ),
        (
            json!({"schema": format!("\"{}\"", "a".repeat(1_100_000))}),
            "too large",
        ),
    ] {
        let (s, v) = call(&a, "POST", "/subjects/s/versions", Some(body)).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            "{what}: {v}"
        );
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn incompatible_registration_and_compat_endpoints() {
    let a = app();
    reg(&a, "s", &avro(&[("a", "string")])).await;
    let bad = avro(&[("a", "string"), ("b", "int")]);
    let (s, v) = reg(&a, "s", &bad).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, 40901));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
        "{v}"
    );
    let body = json!({"schema": bad});
    let (_, v) = call(
        &a,
        "POST",
        "/compatibility/subjects/s/versions/latest",
        Some(body.clone()),
    )
    .await;
    assert_eq!(v, json!({"is_compatible": false}));
    let (_, v) = call(
        &a,
        "POST",
        "/compatibility/subjects/s/versions/1?verbose=true",
        Some(body.clone()),
    )
    .await;
    assert_eq!(v["is_compatible"], false);
    let msgs = v["messages"].as_array().unwrap();
    assert!(
        msgs[0]
            .as_str()
            .unwrap()
            .contains("errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'"),
        "{v}"
    );
    assert!(msgs[0].as_str().unwrap().contains("/fields/1"), "{v}");
    assert!(
        msgs.iter()
            .any(|m| m.as_str().unwrap().contains("oldSchemaVersion: 1"))
    );
    let (_, v) = call(
        &a,
        "POST",
        "/compatibility/subjects/s/versions?verbose=true",
        Some(body.clone()),
    )
    .await;
    assert_eq!(v["is_compatible"], false);
    let good = json!({"schema": avro(&[("a", "string")])});
    assert_eq!(
        call(
            &a,
            "POST",
            "/compatibility/subjects/s/versions/1",
            Some(good.clone())
        )
        .await
        .1,
        json!({"is_compatible": true})
    );
    assert_eq!(
        call(
            &a,
            "POST",
            "/compatibility/subjects/nosuch/versions",
            Some(good.clone())
        )
        .await
        .1,
        json!({"is_compatible": true})
    );
    let (_, v) = call(
        &a,
        "POST",
        "/compatibility/subjects/nosuch/versions/1",
        Some(good.clone()),
    )
    .await;
    assert_eq!(code(&v), 40401);
    let (_, v) = call(
        &a,
        "POST",
        "/compatibility/subjects/s/versions/9",
        Some(good.clone()),
    )
    .await;
    assert_eq!(code(&v), 40402);
    let (_, v) = call(
        &a,
        "POST",
        "/compatibility/subjects/s/versions/zero",
        Some(good.clone()),
    )
    .await;
    assert_eq!(code(&v), 42202);
    let (_, v) = call(
        &a,
        "POST",
        "/compatibility/subjects/s/versions/1",
        Some(json!({"schema": "{"})),
    )
    .await;
    assert_eq!(code(&v), 42201);
    // With NONE the incompatible schema registers.
    call(
        &a,
        "PUT",
        "/config/s",
        Some(json!({"compatibility": "NONE"})),
    )
    .await;
    assert_eq!(reg(&a, "s", &bad).await.1, json!({"id": 2}));
}

#[tokio::test]
async fn config_and_mode() {
    let a = app();
    assert_eq!(
        call(&a, "GET", "/config", None).await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        call(&a, "PUT", "/config", Some(json!({"compatibility": "full"})))
            .await
            .1,
        json!({"compatibility": "FULL"})
    );
    assert_eq!(
        call(&a, "GET", "/config", None).await.1,
        json!({"compatibilityLevel": "FULL"})
    );
    let (s, v) = call(
        &a,
        "PUT",
        "/config",
        Some(json!({"compatibility": "SIDEWAYS"})),
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, 42203));
    let (_, v) = call(&a, "GET", "/config/s", None).await;
    assert_eq!(code(&v), 40408);
    assert_eq!(
        call(&a, "GET", "/config/s?defaultToGlobal=true", None)
            .await
            .1,
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        call(
            &a,
            "PUT",
            "/config/s",
            Some(json!({"compatibility": "NONE"}))
        )
        .await
        .1,
        json!({"compatibility": "NONE"})
    );
    assert_eq!(
        call(&a, "GET", "/config/s", None).await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        call(&a, "DELETE", "/config/s", None).await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(code(&call(&a, "DELETE", "/config/s", None).await.1), 40401);
    assert_eq!(
        call(&a, "DELETE", "/config", None).await.1,
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        call(&a, "GET", "/config", None).await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );

    assert_eq!(
        call(&a, "GET", "/mode", None).await.1,
        json!({"mode": "READWRITE"})
    );
    let (s, v) = call(&a, "PUT", "/mode", Some(json!({"mode": "WRONG"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, 42204));
    assert_eq!(code(&call(&a, "GET", "/mode/s", None).await.1), 40409);
    assert_eq!(
        call(&a, "GET", "/mode/s?defaultToGlobal=true", None)
            .await
            .1,
        json!({"mode": "READWRITE"})
    );
    assert_eq!(
        call(&a, "PUT", "/mode/s", Some(json!({"mode": "READONLY"})))
            .await
            .1,
        json!({"mode": "READONLY"})
    );
    let (s, v) = reg(&a, "s", &avro(&[("a", "int")])).await;
    assert_eq!((s, code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, 42205));
    assert_eq!(
        call(&a, "DELETE", "/mode/s", None).await.1,
        json!({"mode": "READONLY"})
    );
    assert_eq!(reg(&a, "s", &avro(&[("a", "int")])).await.0, StatusCode::OK);
    // IMPORT needs an empty registry unless forced, then takes caller-chosen ids.
    let (_, v) = call(&a, "PUT", "/mode", Some(json!({"mode": "IMPORT"}))).await;
    assert_eq!(code(&v), 42205);
    assert_eq!(
        call(
            &a,
            "PUT",
            "/mode?force=true",
            Some(json!({"mode": "IMPORT"}))
        )
        .await
        .1,
        json!({"mode": "IMPORT"})
    );
    let body = json!({"schema": avro(&[("z", "long")]), "id": 100, "version": 5});
    assert_eq!(
        id_only(
            call(&a, "POST", "/subjects/imp/versions", Some(body))
                .await
                .1
        ),
        json!({"id": 100})
    );
    assert_eq!(
        call(&a, "GET", "/subjects/imp/versions/5", None).await.1["id"],
        100
    );
    let clash = json!({"schema": avro(&[("q", "long")]), "id": 100});
    assert_eq!(
        code(
            &call(&a, "POST", "/subjects/imp2/versions", Some(clash))
                .await
                .1
        ),
        42205
    );
    assert_eq!(
        call(&a, "DELETE", "/mode", None).await.1,
        json!({"mode": "IMPORT"})
    );
    // Outside IMPORT an explicit new id is refused; new ids continue above the imported one.
    let explicit = json!({"schema": avro(&[("w", "long")]), "id": 7});
    assert_eq!(
        code(
            &call(&a, "POST", "/subjects/w/versions", Some(explicit))
                .await
                .1
        ),
        42205
    );
    assert_eq!(
        reg(&a, "w", &avro(&[("w", "long")])).await.1,
        json!({"id": 101})
    );
}

#[tokio::test]
async fn soft_and_hard_delete() {
    let a = app();
    reg(&a, "s", &avro(&[("a", "string")])).await;
    call(
        &a,
        "PUT",
        "/config/s",
        Some(json!({"compatibility": "NONE"})),
    )
    .await;
    reg(&a, "s", &avro(&[("b", "string")])).await;
    // Version delete: soft, then 40406, then permanent; 40407 for a live version.
    assert_eq!(
        code(
            &call(&a, "DELETE", "/subjects/s/versions/1?permanent=true", None)
                .await
                .1
        ),
        40407
    );
    assert_eq!(
        call(&a, "DELETE", "/subjects/s/versions/1", None).await.1,
        json!(1)
    );
    assert_eq!(
        code(&call(&a, "DELETE", "/subjects/s/versions/1", None).await.1),
        40406
    );
    assert_eq!(
        call(&a, "GET", "/subjects/s/versions", None).await.1,
        json!([2])
    );
    assert_eq!(
        call(&a, "GET", "/subjects/s/versions?deleted=true", None)
            .await
            .1,
        json!([1, 2])
    );
    assert_eq!(
        call(&a, "GET", "/subjects/s/versions?deletedOnly=true", None)
            .await
            .1,
        json!([1])
    );
    assert_eq!(
        code(&call(&a, "GET", "/subjects/s/versions/1", None).await.1),
        40402
    );
    assert_eq!(
        call(&a, "GET", "/subjects/s/versions/1?deleted=true", None)
            .await
            .1["version"],
        1
    );
    // The id of a soft-deleted version still resolves.
    assert_eq!(
        call(&a, "GET", "/schemas/ids/1", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&a, "DELETE", "/subjects/s/versions/1?permanent=true", None)
            .await
            .1,
        json!(1)
    );
    assert_eq!(
        code(&call(&a, "GET", "/schemas/ids/1", None).await.1),
        40403
    );
    // Subject delete: 40405 before soft delete, then soft, 40404, then permanent.
    assert_eq!(
        code(
            &call(&a, "DELETE", "/subjects/s?permanent=true", None)
                .await
                .1
        ),
        40405
    );
    assert_eq!(call(&a, "DELETE", "/subjects/s", None).await.1, json!([2]));
    assert_eq!(
        code(&call(&a, "DELETE", "/subjects/s", None).await.1),
        40404
    );
    assert_eq!(call(&a, "GET", "/subjects", None).await.1, json!([]));
    assert_eq!(
        call(&a, "GET", "/subjects?deleted=true", None).await.1,
        json!(["s"])
    );
    assert_eq!(
        call(&a, "GET", "/subjects?deletedOnly=true", None).await.1,
        json!(["s"])
    );
    assert_eq!(
        code(&call(&a, "GET", "/subjects/s/versions/latest", None).await.1),
        40401
    );
    assert_eq!(
        call(&a, "DELETE", "/subjects/s?permanent=true", None)
            .await
            .1,
        json!([2])
    );
    assert_eq!(
        code(&call(&a, "DELETE", "/subjects/s", None).await.1),
        40401
    );
    // Ids are never reused.
    assert_eq!(
        reg(&a, "t", &avro(&[("c", "string")])).await.1,
        json!({"id": 3})
    );
}

#[tokio::test]
async fn references_and_referencedby() {
    let a = app();
    let address = json!({"type": "record", "name": "Address", "namespace": "com.acme", "fields": [{"name": "street", "type": "string"}]}).to_string();
    assert_eq!(reg(&a, "address", &address).await.1, json!({"id": 1}));
    let person = json!({"type": "record", "name": "Person", "namespace": "com.acme", "fields": [{"name": "home", "type": "Address"}]}).to_string();
    let body = json!({"schema": person, "references": [{"name": "com.acme.Address", "subject": "address", "version": 1}]});
    assert_eq!(
        id_only(
            call(&a, "POST", "/subjects/person/versions", Some(body))
                .await
                .1
        ),
        json!({"id": 2})
    );
    let (_, v) = call(&a, "GET", "/subjects/person/versions/1", None).await;
    assert_eq!(v["references"][0]["subject"], "address");
    assert_eq!(
        call(&a, "GET", "/subjects/address/versions/1/referencedby", None)
            .await
            .1,
        json!([2])
    );
    let (s, v) = call(&a, "DELETE", "/subjects/address/versions/1", None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, 42206));
    assert_eq!(
        code(&call(&a, "DELETE", "/subjects/address", None).await.1),
        42206
    );
    // Protobuf import through a reference, JSON Schema $ref through a reference.
    let dep = "syntax = \"proto3\";\npackage dep;\nmessage Money { int64 units = 1; }\n";
    let (s, _) = call(
        &a,
        "POST",
        "/subjects/money/versions",
        Some(json!({"schema": dep, "schemaType": "PROTOBUF"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let main = "syntax = \"proto3\";\nimport \"money.proto\";\nimport \"google/protobuf/timestamp.proto\";\nmessage Order { dep.Money total = 1; google.protobuf.Timestamp at = 2; }\n";
    let body = json!({"schema": main, "schemaType": "PROTOBUF", "references": [{"name": "money.proto", "subject": "money", "version": 1}]});
    let (s, v) = call(&a, "POST", "/subjects/order/versions", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = call(&a, "GET", "/schemas/ids/4", None).await;
    assert_eq!(v["schemaType"], "PROTOBUF");
    let js_dep = json!({"type": "object", "properties": {"n": {"type": "integer"}}}).to_string();
    call(
        &a,
        "POST",
        "/subjects/jdep/versions",
        Some(json!({"schema": js_dep, "schemaType": "JSON"})),
    )
    .await;
    let js = json!({"type": "object", "properties": {"x": {"$ref": "jdep.json"}}}).to_string();
    let body = json!({"schema": js, "schemaType": "JSON", "references": [{"name": "jdep.json", "subject": "jdep", "version": 1}]});
    let (s, v) = call(&a, "POST", "/subjects/jmain/versions", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn normalize_lookup_and_register() {
    let a = app();
    let minified =
        r#"{"type":"record","name":"R","namespace":"n","fields":[{"name":"a","type":"string"}]}"#;
    let qualified = r#"{"fields":[{"type":"string","name":"a"}],"name":"n.R","type":"record"}"#;
    let (_, v) = call(
        &a,
        "POST",
        "/subjects/s/versions?normalize=true",
        Some(json!({"schema": minified})),
    )
    .await;
    assert_eq!(id_only(v), json!({"id": 1}));
    let (s, v) = call(
        &a,
        "POST",
        "/subjects/s?normalize=true",
        Some(json!({"schema": qualified})),
    )
    .await;
    assert_eq!((s, v["id"].clone()), (StatusCode::OK, json!(1)));
    let (_, v) = call(
        &a,
        "POST",
        "/subjects/s/versions?normalize=true",
        Some(json!({"schema": qualified})),
    )
    .await;
    assert_eq!(id_only(v), json!({"id": 1}));
}

#[tokio::test]
async fn avro_format_resolved() {
    let a = app();
    let address = json!({"type": "record", "name": "Address", "namespace": "com.acme", "fields": [{"name": "street", "type": "string"}]}).to_string();
    assert_eq!(reg(&a, "address", &address).await.1, json!({"id": 1}));
    let person = json!({"type": "record", "name": "Person", "namespace": "com.acme", "fields": [{"name": "home", "type": "Address"}, {"name": "work", "type": "Address"}]}).to_string();
    let body = json!({"schema": person, "references": [{"name": "com.acme.Address", "subject": "address", "version": 1}]});
    let (s, v) = call(&a, "POST", "/subjects/person/versions", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let inlined = r#"{"type":"record","name":"Person","namespace":"com.acme","fields":[{"name":"home","type":{"type":"record","name":"Address","fields":[{"name":"street","type":"string"}]}},{"name":"work","type":"Address"}]}"#;
    let stored = r#"{"type":"record","name":"Person","namespace":"com.acme","fields":[{"name":"home","type":"Address"},{"name":"work","type":"Address"}]}"#;
    let (_, v) = call(&a, "GET", "/schemas/ids/2?format=resolved", None).await;
    assert_eq!(v["schema"], inlined, "{v}");
    assert_eq!(v["references"][0]["subject"], "address");
    let (_, v) = call(&a, "GET", "/schemas/ids/2", None).await;
    assert_eq!(v["schema"], stored, "{v}");
    let (_, v) = call(
        &a,
        "GET",
        "/subjects/person/versions/1?format=RESOLVED",
        None,
    )
    .await;
    assert_eq!(v["schema"], inlined, "{v}");
    let (_, v) = call(
        &a,
        "GET",
        "/subjects/person/versions/latest/schema?format=resolved",
        None,
    )
    .await;
    assert_eq!(v, serde_json::from_str::<Value>(inlined).unwrap());
    let (_, v) = call(&a, "GET", "/schemas/ids/2/schema?format=resolved", None).await;
    assert_eq!(v, serde_json::from_str::<Value>(inlined).unwrap());
    // A schema without references is returned as stored.
    let (_, v) = call(&a, "GET", "/schemas/ids/1?format=resolved", None).await;
    assert_eq!(v["schema"], address_canonical(), "{v}");
}

fn address_canonical() -> &'static str {
    r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"street","type":"string"}]}"#
}
