//! `GET /openapi.json` (open): the OpenAPI 3.1 description of every route of the admin
//! listener, hand-written in `src/admin/openapi.json` and compiled in. `tests/admin_api.rs`
//! keeps it in step with the code: every route registered in `src/admin.rs` and
//! `src/admin/*.rs` must be described, and every described operation is called against a
//! running `gatehouse serve` and must answer one of the status codes the document lists.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The document, as served.
pub(super) const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub(super) async fn document() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_1_json() {
        let v: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(v["openapi"], "3.1.0");
        assert!(v["paths"].as_object().is_some_and(|p| !p.is_empty()));
        assert!(v["components"]["securitySchemes"]["basic"].is_object());
        assert!(v["components"]["securitySchemes"]["bearer"].is_object());
    }
}
