//! The schema registry, called **as the signed-in user**: over HTTPS to the registry listener
//! (`RestApi::registry_url`, its certificate checked against `RestApi::registry_ca`) with the
//! session's own credentials — the same `Authorization` the admin REST handlers get from
//! [`Me::auth`] (Basic for a form login, Bearer for an SSO login). So the registry's
//! authentication, its ACL checks on `Subject:…` and its audit events apply exactly as for any
//! registry client; the console never uses a privileged identity.

use axum::http::{StatusCode, header};
use base64::Engine as _;
use serde_json::Value;

use super::super::{AdminState, Me};
use crate::http_client::HttpClient;

/// Media type the registry answers with (and accepts).
const MEDIA: &str = "application/vnd.schemaregistry.v1+json";

/// A registry answer that was not a success, or a registry that could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RegError {
    /// HTTP status (502 when the registry could not be reached).
    pub status: StatusCode,
    /// The registry's `error_code` (0 when absent).
    pub code: i64,
    /// The registry's message, or what went wrong.
    pub message: String,
}

impl RegError {
    fn local(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            code: 0,
            message: message.to_string(),
        }
    }
}

/// A registry client logged in as the user.
pub(super) struct Registry {
    client: HttpClient,
}

impl Registry {
    /// A client for the user of `me`, or why there is none.
    pub fn of(s: &AdminState, me: &Me) -> Result<Self, RegError> {
        let unavailable = |m: &str| RegError::local(StatusCode::SERVICE_UNAVAILABLE, m);
        let rest = s.rest.get().ok_or_else(|| {
            unavailable(
                "The schema registry is not available: it runs under `gatehouse serve`, once the gateway listens.",
            )
        })?;
        let url = rest
            .registry_url
            .as_deref()
            .ok_or_else(|| unavailable("No schema registry runs on this node."))?;
        let ca = rest.registry_ca.as_deref().filter(|p| p.exists());
        let mut client = HttpClient::new(url, "registry_url", true, ca)
            .map_err(|e| {
                tracing::error!(error = %e, "The console cannot build a client for the schema registry.");
                unavailable("The schema registry's address cannot be used; see the server log.")
            })?
            .with_media("gatehouse-console", MEDIA, MEDIA);
        let auth = me.auth();
        let value = auth
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let set = if let Some(basic) = value.strip_prefix("Basic ") {
            let pair = base64::engine::general_purpose::STANDARD
                .decode(basic)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let (user, password) = pair.split_once(':').unwrap_or_default();
            client.basic(user, password)
        } else if let Some(token) = value.strip_prefix("Bearer ") {
            client.bearer(token)
        } else {
            Err(anyhow::anyhow!("no credentials"))
        };
        set.map_err(|_| {
            RegError::local(
                StatusCode::UNAUTHORIZED,
                "Your session's credentials cannot be used with the schema registry.",
            )
        })?;
        Ok(Self { client })
    }

    /// `GET path` → the JSON answer.
    pub async fn get(&self, path: &str) -> Result<Value, RegError> {
        self.call("GET", path, None).await
    }

    /// `POST path` with `body` → the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, RegError> {
        self.call("POST", path, Some(body)).await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RegError> {
        match self.client.call(method, path, body).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RegError {
                status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY),
                code: e.code,
                message: e.message,
            }),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "The console could not reach the schema registry.");
                Err(RegError::local(
                    StatusCode::BAD_GATEWAY,
                    "The schema registry could not be reached; see the server log.",
                ))
            }
        }
    }
}
