//! The admin listener. Today it serves `GET /health`: 200 once every part serves, 503 (with
//! the parts still starting) before that and while stopping.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

/// Readiness of each part.
#[derive(Clone)]
pub struct Health {
    parts: Arc<Mutex<BTreeMap<&'static str, &'static str>>>,
}

impl Health {
    /// All `parts` start as "starting".
    pub fn new(parts: Vec<&'static str>) -> Self {
        Self {
            parts: Arc::new(Mutex::new(
                parts.into_iter().map(|p| (p, "starting")).collect(),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, &'static str>> {
        match self.parts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Marks one part as serving.
    pub fn set_ready(&self, part: &'static str) {
        self.lock().insert(part, "serving");
    }

    /// Marks every part as stopping.
    pub fn set_stopping(&self) {
        for v in self.lock().values_mut() {
            *v = "stopping";
        }
    }

    fn snapshot(&self) -> (bool, BTreeMap<&'static str, &'static str>) {
        let parts = self.lock().clone();
        (parts.values().all(|s| *s == "serving"), parts)
    }
}

async fn health_handler(State(h): State<Health>) -> (StatusCode, Json<serde_json::Value>) {
    let (ok, parts) = h.snapshot();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "status": if ok { "ok" } else { "unavailable" }, "parts": parts })),
    )
}

/// A running admin listener.
pub struct Admin {
    pub local_addr: SocketAddr,
    pub health: Health,
}

/// Binds the admin listener and serves it in the background.
pub async fn start(addr: SocketAddr, health: Health) -> Result<Admin> {
    let app = Router::new()
        .route("/health", get(health_handler))
        .with_state(health.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local_addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "The admin listener stopped.");
        }
    });
    Ok(Admin { local_addr, health })
}
