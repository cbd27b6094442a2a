//! What the Kafka-facing admin endpoints (`/v1/cluster`, `/v1/topics…`, `/v1/groups…`,
//! `/v1/users…`, `/v1/acls`, `/v1/schemas`) share: authentication of the HTTP caller, the
//! Kafka connection they act through, and how Kafka errors become HTTP answers.
//!
//! The endpoints act **as the caller**: every request opens one short-lived Kafka connection
//! to the gateway's own plaintext SASL listener (loopback, same process) and logs in as the
//! caller — SASL/PLAIN (or SCRAM when PLAIN is disabled) with the Basic credentials, or
//! SASL/OAUTHBEARER with the Bearer token. So the gateway's authorization, governance-config
//! interception, internal-topic denial and audit apply exactly as for any Kafka client, and
//! nothing here decides what a caller may do. Connections are not pooled: a per-principal
//! cache would have to notice password changes, user deletions and token expiry, and a
//! loopback connect plus a PLAIN login (the authenticator caches PLAIN verifications) costs
//! about a millisecond.
//!
//! The REST layer itself authenticates first (same authenticator, same failure rate limit) so
//! a wrong password is answered 401 and audited here (`io.gatehouse.authentication`, service
//! `admin`) without a failed SASL login at the gateway; the Kafka operations are audited by
//! the gateway (service `gateway`), never twice. Passwords and tokens are never logged,
//! audited or echoed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use gatehouse_compliance::{AuditEvent, EventType, Outcome};
use gatehouse_policy::{AuthError, Principal, TokenValidator};
use gatehouse_protocol::ProtocolError;
use gatehouse_protocol::client::{Connection, ConnectionConfig, SaslCredentials, SaslMechanism};
use gatehouse_protocol::kafka_protocol::protocol::{Request, StrBytes};
use gatehouse_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use tokio::io::AsyncWriteExt;

use super::{AUDIT_SERVICE, AdminState, KeyApi, MECHANISM_BASIC, error, fail, record_refusal};

/// `auth_mechanism` of callers with a Bearer token.
pub(super) const MECHANISM_BEARER: &str = "HTTP/BEARER";
/// Time allowed for one Kafka request made for a REST call.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// Kafka client id of the admin API's connections (seen in the gateway's audit events).
const CLIENT_ID: &str = "gatehouse-admin-api";

/// What the Kafka-facing endpoints need; handed over by `serve` once the gateway listens.
pub struct RestApi {
    /// The gateway's plaintext SASL listener (its bound address; a wildcard IP is reached
    /// over loopback).
    pub gateway_plain: SocketAddr,
    /// The gateway's listeners expect a PROXY protocol v2 header: the admin API sends one
    /// carrying the HTTP client's address.
    pub proxy_protocol: bool,
    /// The OIDC validator when configured (`Authorization: Bearer`).
    pub tokens: Option<Arc<dyn TokenValidator>>,
    /// The schema registry's base URL (`https://host:port`).
    pub registry_url: Option<String>,
    /// The CA (PEM) the registry's certificate is checked against when the console calls it
    /// as the user; `None`, or a missing file: the system's roots.
    pub registry_ca: Option<std::path::PathBuf>,
    /// The listeners shown by `GET /v1/cluster`: (name, address).
    pub listeners: Vec<(String, String)>,
    /// The console's SSO login (OIDC authorization-code flow), when `[console]
    /// oidc_client_id` is set.
    pub console_sso: Option<super::console::ConsoleSso>,
}

impl super::Admin {
    /// Turns on the Kafka-facing endpoints (before this they answer 503/50303).
    pub fn enable_rest(&self, api: RestApi) {
        if self.rest.set(api).is_err() {
            tracing::warn!("The admin REST API was enabled twice; the first configuration stays.");
        }
    }
}

/// The secret a caller proved its identity with (kept only for the gateway login).
pub(super) enum Credential {
    Basic { user: String, password: String },
    Bearer { token: String },
}

/// An authenticated REST caller.
pub(super) struct RestCaller {
    pub principal: Principal,
    pub ip: IpAddr,
    pub peer: SocketAddr,
    pub mechanism: &'static str,
    credential: Credential,
}

impl std::fmt::Debug for RestCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestCaller")
            .field("principal", &self.principal.to_string())
            .field("ip", &self.ip)
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// What a handler works with after [`authenticate`].
pub(super) struct Ctx<'a> {
    pub keys: &'a KeyApi,
    pub rest: &'a RestApi,
    pub caller: RestCaller,
    /// The audit `method` of this request (`topic.create`, ...).
    pub method: &'static str,
}

fn unauthorized(message: &str, bearer: bool) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, 40101, message);
    let challenge = if bearer {
        "Basic realm=\"gatehouse\", Bearer realm=\"gatehouse\""
    } else {
        "Basic realm=\"gatehouse\""
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Authenticates the caller (Basic against the gateway's SCRAM users, or Bearer against the
/// OIDC validator). A refusal is audited (`io.gatehouse.authentication`, 401) and returned.
/// `resource` is what the request is about, for the audit event.
pub(super) async fn authenticate<'a>(
    s: &'a AdminState,
    headers: &HeaderMap,
    peer: SocketAddr,
    method: &'static str,
    resource: (&str, &str),
) -> Result<Ctx<'a>, Response> {
    let (Some(keys), Some(rest)) = (s.keys.get(), s.rest.get()) else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            50303,
            "The admin REST API is not available: it runs under `gatehouse serve`, once the gateway listens",
        ));
    };
    let ip = peer.ip();
    let bearer_ok = rest.tokens.is_some();
    let refuse = |user: Option<&str>, mechanism: &'static str, reason: &str| {
        AuditEvent::builder(EventType::Authentication)
            .service(AUDIT_SERVICE)
            .method(method)
            .principal(super::refused_principal(user))
            .auth_mechanism(mechanism)
            .resource(resource.0.to_string(), resource.1.to_string())
            .operation("Authenticate")
            .granted(false)
            .outcome(
                Outcome::denied()
                    .with_error_code("40101")
                    .with_message(reason.to_string()),
            )
            .client_address(ip.to_string())
            .attribute("httpStatus", "401")
            .build()
    };
    let refused = |user: Option<String>, mechanism: &'static str, reason: String, msg: String| {
        let event = refuse(user.as_deref(), mechanism, &reason);
        async move {
            match event {
                Ok(e) => record_refusal(keys, e).await,
                Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
            }
            unauthorized(&msg, bearer_ok)
        }
    };
    let text = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => {
            let why = if bearer_ok {
                "HTTP Basic credentials or a Bearer token are required"
            } else {
                "HTTP Basic credentials are required"
            };
            return Err(refused(
                None,
                MECHANISM_BASIC,
                why.into(),
                format!("Unauthorized: {why}"),
            )
            .await);
        }
        Some(Err(_)) => {
            let why = "the Authorization header is not ASCII";
            return Err(refused(
                None,
                MECHANISM_BASIC,
                why.into(),
                format!("Unauthorized: {why}"),
            )
            .await);
        }
        Some(Ok(t)) => t.trim(),
    };
    let (scheme, rest_text) = text.split_once(' ').unwrap_or((text, ""));
    let rest_text = rest_text.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        let Some(validator) = &rest.tokens else {
            let why = "Bearer tokens are not accepted: no OIDC issuer is configured";
            return Err(refused(
                None,
                MECHANISM_BEARER,
                why.into(),
                format!("Unauthorized: {why}"),
            )
            .await);
        };
        if rest_text.is_empty() {
            let why = "empty Bearer token";
            return Err(refused(
                None,
                MECHANISM_BEARER,
                why.into(),
                format!("Unauthorized: {why}"),
            )
            .await);
        }
        return match validator.validate(rest_text).await {
            Ok(t) => Ok(Ctx {
                keys,
                rest,
                caller: RestCaller {
                    principal: t.principal,
                    ip,
                    peer,
                    mechanism: MECHANISM_BEARER,
                    credential: Credential::Bearer {
                        token: rest_text.to_string(),
                    },
                },
                method,
            }),
            Err(e) => {
                let why = format!("invalid token: {e}");
                Err(refused(
                    None,
                    MECHANISM_BEARER,
                    why.clone(),
                    format!("Unauthorized: {why}"),
                )
                .await)
            }
        };
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        let why = if bearer_ok {
            "unsupported authorization scheme (use Basic or Bearer)"
        } else {
            "unsupported authorization scheme (use Basic)"
        };
        return Err(refused(
            None,
            MECHANISM_BASIC,
            why.into(),
            format!("Unauthorized: {why}"),
        )
        .await);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest_text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        let why = "malformed Basic credentials";
        return Err(refused(
            None,
            MECHANISM_BASIC,
            why.into(),
            format!("Unauthorized: {why}"),
        )
        .await);
    };
    match keys.authenticator.verify_plain(user, password, ip).await {
        Ok(principal) => Ok(Ctx {
            keys,
            rest,
            caller: RestCaller {
                principal,
                ip,
                peer,
                mechanism: MECHANISM_BASIC,
                credential: Credential::Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                },
            },
            method,
        }),
        Err(e) => {
            let message = match &e {
                AuthError::InvalidCredentials { .. } => {
                    "Unauthorized: invalid user name or password".to_string()
                }
                other => format!("Unauthorized: {}", other.client_message()),
            };
            Err(refused(
                Some(user.to_string()),
                MECHANISM_BASIC,
                e.to_string(),
                message,
            )
            .await)
        }
    }
}

impl Ctx<'_> {
    /// Audits a refusal made by the REST layer itself after authentication (bad body, wrong
    /// confirmation token): `event_type` with outcome `FAILURE`, the error code and
    /// `httpStatus`, and returns `response`. A refusal that cannot be recorded stays refused.
    pub async fn refuse(
        &self,
        event_type: EventType,
        resource: (&str, &str),
        operation: &str,
        response: Response,
    ) -> Response {
        let status = response.status();
        let code = super::error_code_of(&response).unwrap_or_else(|| status.as_u16().to_string());
        let event = AuditEvent::builder(event_type)
            .service(AUDIT_SERVICE)
            .method(self.method)
            .principal(self.caller.principal.to_string())
            .auth_mechanism(self.caller.mechanism)
            .resource(resource.0.to_string(), resource.1.to_string())
            .operation(operation.to_string())
            .granted(true)
            .outcome(Outcome::status("FAILURE").with_error_code(code))
            .client_address(self.caller.ip.to_string())
            .attribute("httpStatus", status.as_u16().to_string())
            .build();
        match event {
            Ok(e) => record_refusal(self.keys, e).await,
            Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
        }
        response
    }

    /// Opens a Kafka connection to the gateway's plaintext listener, logged in as the caller.
    pub async fn kafka(&self) -> Result<Kafka, Response> {
        let mut target = self.rest.gateway_plain;
        if target.ip().is_unspecified() {
            target.set_ip(if target.is_ipv6() {
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            });
        }
        let sasl = match &self.caller.credential {
            Credential::Basic { user, password } => {
                let enabled = self.keys.authenticator.mechanisms();
                let mechanism = if enabled.contains(&"PLAIN") {
                    SaslMechanism::Plain
                } else if enabled.contains(&"SCRAM-SHA-512") {
                    SaslMechanism::ScramSha512
                } else {
                    SaslMechanism::ScramSha256
                };
                Some(SaslCredentials::new(
                    mechanism,
                    user.clone(),
                    password.clone(),
                ))
            }
            Credential::Bearer { .. } => None,
        };
        let config = ConnectionConfig {
            client_id: Some(CLIENT_ID.to_string()),
            request_timeout: KAFKA_TIMEOUT,
            sasl,
            ..ConnectionConfig::default()
        };
        let connected = async {
            let mut stream = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::TcpStream::connect(target),
            )
            .await
            .map_err(|_| {
                ProtocolError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting timed out",
                ))
            })??;
            let _ = stream.set_nodelay(true);
            if self.rest.proxy_protocol {
                stream
                    .write_all(&gatehouse_gateway::proxy::encode_header(
                        self.caller.peer,
                        target,
                    ))
                    .await?;
            }
            Connection::from_stream(stream, target.to_string(), config).await
        }
        .await;
        let conn = match connected {
            Ok(c) => c,
            Err(e) => return Err(self.connect_failed(e).await),
        };
        if let Credential::Bearer { token } = &self.caller.credential
            && let Err(e) = oauthbearer_login(&conn, token).await
        {
            return Err(self.connect_failed(e).await);
        }
        Ok(Kafka { conn })
    }

    async fn connect_failed(&self, e: ProtocolError) -> Response {
        match &e {
            ProtocolError::Broker {
                code: gatehouse_protocol::ErrorCode::SaslAuthenticationFailed,
                ..
            } => {
                // The gateway refused the login it had just accepted over HTTP (e.g. the user
                // was deleted meanwhile); the gateway audited it.
                unauthorized(
                    "Unauthorized: the gateway refused the login",
                    self.rest.tokens.is_some(),
                )
            }
            ProtocolError::Io(_) => {
                tracing::error!(error = %e, "The admin API cannot reach the gateway's plaintext listener.");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    50310,
                    "The gateway's plaintext SASL listener is not reachable",
                )
            }
            _ => {
                tracing::error!(error = %e, "The admin API could not log in to the gateway.");
                error(
                    StatusCode::BAD_GATEWAY,
                    50211,
                    format!("The gateway did not accept the connection: {e}"),
                )
            }
        }
    }
}

/// SaslHandshake(OAUTHBEARER) and one SaslAuthenticate with the RFC 7628 client response.
async fn oauthbearer_login(conn: &Connection, token: &str) -> Result<(), ProtocolError> {
    let handshake = conn
        .send(
            SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("OAUTHBEARER")),
            1,
        )
        .await?;
    gatehouse_protocol::client::check(handshake.error_code, "SaslHandshake OAUTHBEARER", None)?;
    let message = format!("n,,\x01auth=Bearer {token}\x01\x01");
    let response = conn
        .send(
            SaslAuthenticateRequest::default().with_auth_bytes(message.into_bytes().into()),
            None,
        )
        .await?;
    gatehouse_protocol::client::check(
        response.error_code,
        "SaslAuthenticate OAUTHBEARER",
        response.error_message.as_ref().map(|m| m.as_str()),
    )
}

/// A Kafka connection logged in as the caller.
pub(super) struct Kafka {
    conn: Connection,
}

impl Kafka {
    /// Sends one request; transport failures are answered 502/50210 (504 on a timeout).
    pub async fn send<R: Request>(&self, req: R) -> Result<R::Response, Response> {
        self.conn.send(req, None).await.map_err(|e| {
            tracing::warn!(error = %e, "A Kafka request of the admin API failed.");
            match &e {
                ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => error(
                    StatusCode::GATEWAY_TIMEOUT,
                    50410,
                    format!("The gateway did not answer in time: {e}"),
                ),
                _ => error(
                    StatusCode::BAD_GATEWAY,
                    50210,
                    format!("The Kafka request failed: {e}"),
                ),
            }
        })
    }

    /// The version the connection speaks for `R` (request shapes differ between versions).
    pub fn version<R: Request>(&self) -> Result<i16, Box<Response>> {
        self.conn.version_for::<R>().map_err(|e| {
            Box::new(error(
                StatusCode::BAD_GATEWAY,
                50212,
                format!("The gateway does not support this request: {e}"),
            ))
        })
    }
}

/// The HTTP status and `error_code` a Kafka error code is answered with.
pub(super) fn kafka_status(code: i16) -> (StatusCode, u32) {
    match code {
        // TOPIC_/GROUP_/CLUSTER_/TRANSACTIONAL_ID_AUTHORIZATION_FAILED, DELEGATION_TOKEN_AUTH.
        29 | 30 | 31 | 53 => (StatusCode::FORBIDDEN, 40310),
        // UNKNOWN_TOPIC_OR_PARTITION, GROUP_ID_NOT_FOUND, RESOURCE_NOT_FOUND, UNKNOWN_TOPIC_ID.
        3 | 69 | 91 | 100 => (StatusCode::NOT_FOUND, 40410),
        // TOPIC_ALREADY_EXISTS, NON_EMPTY_GROUP.
        36 | 68 => (StatusCode::CONFLICT, 40910),
        // INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR,
        // INVALID_REPLICA_ASSIGNMENT, INVALID_CONFIG, INVALID_REQUEST, POLICY_VIOLATION,
        // INVALID_GROUP_ID, UNACCEPTABLE_CREDENTIAL, DUPLICATE_RESOURCE.
        17 | 37 | 38 | 39 | 40 | 42 | 44 | 24 | 93 | 92 => {
            (StatusCode::UNPROCESSABLE_ENTITY, 42210)
        }
        _ => (StatusCode::BAD_GATEWAY, 50213),
    }
}

/// The answer for a Kafka error: `{"error_code", "message": "<NAME>: <message>"}`.
pub(super) fn kafka_fail(code: i16, message: Option<&StrBytes>) -> Response {
    let (status, n) = kafka_status(code);
    fail(status, n, crate::user_cli::kafka_error(code, message))
}

/// A `StrBytes` from text.
pub(super) fn sb(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// The routes of the Kafka-facing endpoints and `/openapi.json` (merged into the admin router).
pub(super) fn routes() -> axum::Router<AdminState> {
    use axum::routing::{get, patch};

    use super::{acls, cluster, explain, groups, messages, openapi, topics, users};
    axum::Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/v1/cluster", get(cluster::cluster))
        .route("/v1/schemas", get(cluster::schemas))
        .route("/v1/topics", get(topics::list).post(topics::create))
        .route(
            "/v1/topics/{name}",
            get(topics::describe).delete(topics::delete),
        )
        .route("/v1/topics/{name}/configs", patch(topics::alter_configs))
        .route("/v1/topics/{name}/messages", get(messages::list))
        .route("/v1/groups", get(groups::list))
        .route("/v1/groups/{id}", get(groups::describe))
        .route("/v1/users", get(users::list).post(users::create))
        .route("/v1/users/{name}", axum::routing::delete(users::delete))
        .route(
            "/v1/acls",
            get(acls::list).post(acls::create).delete(acls::delete),
        )
        .route("/v1/authz/explain", axum::routing::post(explain::explain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_map_to_http() {
        assert_eq!(kafka_status(29).0, StatusCode::FORBIDDEN);
        assert_eq!(kafka_status(31).0, StatusCode::FORBIDDEN);
        assert_eq!(kafka_status(3).0, StatusCode::NOT_FOUND);
        assert_eq!(kafka_status(36).0, StatusCode::CONFLICT);
        assert_eq!(kafka_status(40).0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(kafka_status(44).0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(kafka_status(-1).0, StatusCode::BAD_GATEWAY);
    }
}
