//! The write-forwarding hook of the router ([`secured_router_with_forwarding`]) and the
//! forwarding client ([`gatehouse_registry::kafka::forward`]) against a real listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_registry::api::{MemoryStore, WriteForwarder, secured_router_with_forwarding};
use gatehouse_registry::kafka::forward::{self, is_write};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Takes every write (records method, route, body), lets reads through.
#[derive(Default)]
struct TakeWrites {
    seen: Mutex<Vec<(String, String, String)>>,
}

#[async_trait::async_trait]
impl WriteForwarder for TakeWrites {
    async fn forward(&self, request: Request) -> Result<Response, Request> {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        if !is_write(request.method(), &route) {
            return Err(request);
        }
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        self.seen.lock().unwrap().push((
            parts.method.to_string(),
            route,
            String::from_utf8_lossy(&body).into_owned(),
        ));
        Ok((StatusCode::ACCEPTED, "forwarded").into_response())
    }
}

/// Lets everything through.
struct Never;

#[async_trait::async_trait]
impl WriteForwarder for Never {
    async fn forward(&self, request: Request) -> Result<Response, Request> {
        Err(request)
    }
}

const AVRO: &str = r#"{"schema":"{\"type\":\"string\"}"}"#;

async fn call(app: &axum::Router, method: Method, uri: &str, body: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(
            header::CONTENT_TYPE,
            "application/vnd.schemaregistry.v1+json",
        )
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn writes_go_to_the_forwarder_reads_stay_local() {
    let fwd = Arc::new(TakeWrites::default());
    let app = secured_router_with_forwarding(
        Arc::new(MemoryStore::new()),
        None,
        None,
        Some(fwd.clone() as Arc<dyn WriteForwarder>),
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/subjects/s/versions?normalize=true",
            AVRO
        )
        .await,
        (StatusCode::ACCEPTED, "forwarded".into())
    );
    assert_eq!(
        call(&app, Method::PUT, "/config", r#"{"compatibility":"NONE"}"#)
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call(&app, Method::DELETE, "/subjects/s", "").await.0,
        StatusCode::ACCEPTED
    );
    // Reads and read-only POSTs are answered here.
    assert_eq!(
        call(&app, Method::GET, "/subjects", "").await,
        (StatusCode::OK, "[]".into())
    );
    assert_eq!(
        call(&app, Method::POST, "/subjects/s", AVRO).await.0,
        StatusCode::NOT_FOUND
    );
    // Unknown routes never reach the hook.
    assert_eq!(
        call(&app, Method::PUT, "/nope", "").await.0,
        StatusCode::NOT_FOUND
    );
    let seen = fwd.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (
                "POST".into(),
                "/subjects/{subject}/versions".into(),
                AVRO.into()
            ),
            (
                "PUT".into(),
                "/config".into(),
                r#"{"compatibility":"NONE"}"#.into()
            ),
            ("DELETE".into(), "/subjects/{subject}".into(), String::new()),
        ]
    );
}

#[tokio::test]
async fn requests_the_hook_declines_are_handled_with_their_body() {
    let app = secured_router_with_forwarding(
        Arc::new(MemoryStore::new()),
        None,
        None,
        Some(Arc::new(Never) as Arc<dyn WriteForwarder>),
    );
    let (status, body) = call(&app, Method::POST, "/subjects/s/versions", AVRO).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"id\":1"), "{body}");
}

#[tokio::test]
async fn the_forwarding_client_talks_to_a_real_registry() {
    let app = secured_router_with_forwarding(Arc::new(MemoryStore::new()), None, None, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let url = format!("http://127.0.0.1:{}", addr.port());
    let t = forward::target(&url, "/subjects/a-value/versions?normalize=true").unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
    );
    let head = forward::request_head(
        &Method::POST,
        &t,
        &h,
        None,
        "http://127.0.0.1:1",
        AVRO.len(),
    );
    let a = forward::send(&t, None, &head, AVRO.as_bytes())
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        a.content_type.as_deref(),
        Some("application/vnd.schemaregistry.v1+json")
    );
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["id"], 1);
    // Errors come back as they are.
    let t = forward::target(&url, "/subjects/nope/versions/1").unwrap();
    let head = forward::request_head(&Method::DELETE, &t, &HeaderMap::new(), None, "x", 0);
    let a = forward::send(&t, None, &head, b"").await.unwrap();
    assert_eq!(a.status, 404);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["error_code"], 40401);
    // Nobody listening: an I/O error (answered 50003 by the forwarder).
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let t = forward::target(&format!("http://127.0.0.1:{dead_port}"), "/config").unwrap();
    let e = forward::send(&t, None, "PUT /config HTTP/1.1\r\n\r\n", b"")
        .await
        .unwrap_err();
    assert!(matches!(e, forward::ForwardError::Io(_)), "{e}");
    // HTTPS without a CA is refused before anything is sent.
    let t = forward::target(&format!("https://127.0.0.1:{}", addr.port()), "/config").unwrap();
    assert!(forward::send(&t, None, "x", b"").await.is_err());
}
