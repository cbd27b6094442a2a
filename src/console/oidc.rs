//! SSO login for the console: the OpenID Connect authorization-code flow with PKCE against
//! the gateway's OIDC issuer (`oidc_issuer`), for the console's own client
//! (`[console] oidc_client_id`). Only present when both are configured.
//!
//! * `GET /console/login/oidc`: reads the issuer's discovery document (once, then cached),
//!   remembers a pending sign-in (random `state`, `nonce` and PKCE `code_verifier`) under a
//!   random id carried in the short-lived `gh_oidc` cookie (`SameSite=Lax`, so it comes back
//!   on the issuer's redirect), and redirects to the authorization endpoint with
//!   `response_type=code`, `scope=openid …`, `state`, `nonce`, `code_challenge` (S256) and
//!   `resource=<oidc_audience>` (RFC 8707), so the access token is issued for the gateway.
//! * `GET /console/oidc/callback?code&state`: the pending sign-in of the cookie is taken (one
//!   use only), its `state` must match (and `iss`, when the issuer sends it, RFC 9207); the code
//!   is exchanged at the token endpoint (client secret, `code_verifier`); the ID token is
//!   validated with the policy crate's JWKS validator (signature, `iss`, `aud` = client id,
//!   `exp`) plus `nonce` and `azp` here; the access token must be accepted by the gateway's own
//!   validator (audience `oidc_audience`). The session then acts as the access token's
//!   principal: the REST handlers get `Authorization: Bearer <access token>`, and the session
//!   ends when the token expires.
//!
//! Every refusal (no or expired pending sign-in, wrong state, an error from the issuer, a
//! failed exchange, an invalid token) is audited like a failed form login
//! (`io.gatehouse.authentication`, method `console.login`, mechanism `OIDC/CODE`) and shown as
//! a page with a message. The client secret, the code, the verifier and the tokens are never
//! logged, audited or shown.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_compliance::{AuditEvent, EventType, Outcome};
use gatehouse_policy::{OidcConfig, OidcValidator};
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest as _;

use super::html::{document, error_page, esc, html, see_other, url_encode};
use super::session::{self, Credential, SESSION_COOKIE, Secret};
use super::{AUDIT_SERVICE, AdminState, METHOD_LOGIN, Store, current, parse_form};

/// The pre-login cookie naming the pending sign-in.
const OIDC_COOKIE: &str = "gh_oidc";
/// How long a started sign-in may take at the issuer.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Most sign-ins pending at once (the oldest is dropped beyond this).
const MAX_PENDING: usize = 1024;
/// The callback path (the redirect URI is the public base URL plus this).
const CALLBACK_PATH: &str = "/console/oidc/callback";
/// Audit `auth_mechanism` of SSO logins.
const MECHANISM_OIDC: &str = "OIDC/CODE";
/// Largest answer read from the issuer.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// Longest `code` accepted from the redirect.
const MAX_CODE: usize = 4096;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable holding the console's client secret.
const SECRET_ENV: &str = "GATEHOUSE_CONSOLE_OIDC_CLIENT_SECRET";

/// The link on the login page (only when SSO is configured).
pub(super) const SSO_LINK: &str = "<p class=\"sso\"><a id=\"sso\" href=\"/console/login/oidc\">\
     Sign in with SSO</a></p>";

/// The console's OIDC client: configuration, the cached discovery, pending sign-ins.
pub struct ConsoleSso {
    issuer: String,
    audience: String,
    client_id: String,
    client_secret: Option<Secret>,
    scope: String,
    resource_indicator: bool,
    /// Base URL of the admin listener as browsers see it (no trailing `/`).
    public_url: Option<String>,
    provider: tokio::sync::Mutex<Option<Arc<Provider>>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for ConsoleSso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSso")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("confidential", &self.client_secret.is_some())
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// What discovery found out about the issuer.
struct Provider {
    authorization_endpoint: String,
    token_endpoint: String,
    /// Validates ID tokens: this issuer's JWKS, audience = the console's client id.
    id_tokens: OidcValidator,
    http: reqwest::Client,
}

/// A sign-in started at `/console/login/oidc`, waiting for the issuer's redirect.
struct Pending {
    state: String,
    nonce: String,
    verifier: Secret,
    redirect_uri: String,
    created: Instant,
}

impl ConsoleSso {
    /// The console's SSO client from the configuration: `None` when `[console]
    /// oidc_client_id` is empty; an error when it is set without `oidc_issuer` and
    /// `oidc_audience`, or the secret file cannot be read.
    pub fn from_config(c: &crate::config::Config) -> anyhow::Result<Option<Self>> {
        let t = &c.console;
        let client_id = t.oidc_client_id.trim();
        if client_id.is_empty() {
            return Ok(None);
        }
        let (Some(issuer), Some(audience)) = (&c.oidc_issuer, &c.oidc_audience) else {
            bail!("console.oidc_client_id needs oidc_issuer and oidc_audience");
        };
        if client_id.chars().any(char::is_control) {
            bail!("console.oidc_client_id contains control characters");
        }
        let client_secret = match std::env::var(SECRET_ENV) {
            Ok(s) if !s.is_empty() => Some(Secret::new(s)),
            _ if !t.oidc_client_secret_file.is_empty() => {
                let text = Secret::new(
                    std::fs::read_to_string(&t.oidc_client_secret_file).with_context(|| {
                        format!(
                            "cannot read console.oidc_client_secret_file {}",
                            t.oidc_client_secret_file
                        )
                    })?,
                );
                let first = text.expose().lines().next().unwrap_or_default().trim();
                if first.is_empty() {
                    bail!(
                        "console.oidc_client_secret_file {} is empty",
                        t.oidc_client_secret_file
                    );
                }
                Some(Secret::new(first.to_string()))
            }
            _ => None,
        };
        let public_url = match t.public_url.trim().trim_end_matches('/') {
            "" => None,
            u if (u.starts_with("http://") || u.starts_with("https://"))
                && !u.contains(['?', '#', ' '])
                && !u.chars().any(char::is_control) =>
            {
                Some(u.to_string())
            }
            u => bail!("console.public_url {u:?} is not an http(s) base URL"),
        };
        let mut scopes = vec!["openid".to_string()];
        for s in &t.oidc_scopes {
            let s = s.trim();
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                bail!("console.oidc_scopes: {s:?} is not a scope");
            }
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_string());
            }
        }
        Ok(Some(Self {
            issuer: issuer.clone(),
            audience: audience.clone(),
            client_id: client_id.to_string(),
            client_secret,
            scope: scopes.join(" "),
            resource_indicator: t.oidc_resource_indicator,
            public_url,
            provider: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        }))
    }

    /// The discovered provider (discovery runs at the first SSO login, then is cached; a
    /// failure is not cached).
    async fn provider(&self) -> anyhow::Result<Arc<Provider>> {
        let mut slot = self.provider.lock().await;
        if let Some(p) = slot.as_ref() {
            return Ok(Arc::clone(p));
        }
        let p = Arc::new(self.discover().await?);
        *slot = Some(Arc::clone(&p));
        Ok(p)
    }

    async fn discover(&self) -> anyhow::Result<Provider> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: String,
            authorization_endpoint: String,
            token_endpoint: String,
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let r = http
            .get(&url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = r.status();
        let body = read_limited(r).await?;
        if !status.is_success() {
            bail!("GET {url} answered HTTP {status}");
        }
        let m: Metadata = serde_json::from_slice(&body)
            .with_context(|| format!("{url}: not a discovery document"))?;
        if m.issuer != self.issuer {
            bail!(
                "{url} names issuer {:?}, not the configured {:?}",
                m.issuer,
                self.issuer
            );
        }
        for (name, u) in [
            ("authorization_endpoint", &m.authorization_endpoint),
            ("token_endpoint", &m.token_endpoint),
        ] {
            let ok = reqwest::Url::parse(u)
                .is_ok_and(|p| matches!(p.scheme(), "https" | "http") && p.fragment().is_none());
            if !ok {
                bail!("{url}: {name} {u:?} is not an http(s) URL");
            }
        }
        let id_tokens =
            OidcValidator::discover(OidcConfig::new(self.issuer.clone(), self.client_id.clone()))
                .await
                .context("cannot load the issuer's keys for ID tokens")?;
        tracing::info!(issuer = %self.issuer, client_id = %self.client_id, "Console SSO: OIDC issuer discovered.");
        Ok(Provider {
            authorization_endpoint: m.authorization_endpoint,
            token_endpoint: m.token_endpoint,
            id_tokens,
            http,
        })
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        match self.pending.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Remembers a sign-in under a fresh id (the cookie value); drops expired ones and, when
    /// full, the oldest.
    fn remember(&self, p: Pending, now: Instant) -> String {
        let mut map = self.lock_pending();
        map.retain(|_, v| now.saturating_duration_since(v.created) < PENDING_TTL);
        while map.len() >= MAX_PENDING {
            let oldest = map
                .iter()
                .min_by_key(|(_, v)| v.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        let id = session::random_token();
        map.insert(id.clone(), p);
        id
    }

    /// Takes (once) the live sign-in `id` names.
    fn take(&self, id: &str, now: Instant) -> Option<Pending> {
        let p = self.lock_pending().remove(id)?;
        (now.saturating_duration_since(p.created) < PENDING_TTL).then_some(p)
    }

    /// The authorization request URL of a pending sign-in.
    fn authorization_url(&self, endpoint: &str, p: &Pending) -> String {
        let challenge = pkce_challenge(p.verifier.expose());
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", p.redirect_uri.as_str()),
            ("scope", self.scope.as_str()),
            ("state", p.state.as_str()),
            ("nonce", p.nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        if self.resource_indicator {
            params.push(("resource", self.audience.as_str()));
        }
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        format!("{endpoint}{sep}{}", query.join("&"))
    }

    /// Exchanges the code at the token endpoint: `(access token, ID token)`, or why not
    /// (safe to audit: never a token or the secret).
    async fn exchange(
        &self,
        provider: &Provider,
        code: &str,
        p: &Pending,
    ) -> Result<(Secret, Secret), String> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", p.redirect_uri.as_str()),
            ("code_verifier", p.verifier.expose()),
        ];
        if self.client_secret.is_none() {
            form.push(("client_id", self.client_id.as_str()));
        }
        let body = Secret::new(
            form.iter()
                .map(|(k, v)| format!("{k}={}", url_encode(v)))
                .collect::<Vec<_>>()
                .join("&"),
        );
        let mut req = provider
            .http
            .post(&provider.token_endpoint)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(body.expose().to_string());
        if let Some(secret) = &self.client_secret {
            // RFC 6749 2.3.1: both parts form-encoded before Basic encoding.
            let pair = Secret::new(format!(
                "{}:{}",
                url_encode(&self.client_id),
                url_encode(secret.expose())
            ));
            let mut v = HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair.expose())
            ))
            .map_err(|_| "the client credentials cannot be sent".to_string())?;
            v.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, v);
        }
        let r = req
            .send()
            .await
            .map_err(|e| format!("the token endpoint cannot be reached: {}", e.without_url()))?;
        let status = r.status();
        let body = read_limited(r)
            .await
            .map_err(|e| format!("the token endpoint's answer cannot be read: {e}"))?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = json
                .get("error")
                .and_then(Value::as_str)
                .map(safe_code)
                .unwrap_or_default();
            return Err(format!(
                "the token endpoint answered HTTP {}{}{error}",
                status.as_u16(),
                if error.is_empty() { "" } else { ": " }
            ));
        }
        let field = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
        match field("token_type") {
            Some(t) if t.eq_ignore_ascii_case("bearer") => {}
            _ => return Err("the token endpoint did not issue a Bearer token".into()),
        }
        let access = field("access_token").filter(|t| !t.is_empty());
        let id = field("id_token").filter(|t| !t.is_empty());
        match (access, id) {
            (Some(a), Some(i)) => Ok((Secret::new(a), Secret::new(i))),
            (None, _) => Err("the token endpoint issued no access token".into()),
            (_, None) => Err("the token endpoint issued no ID token".into()),
        }
    }
}

/// Reads an HTTP answer of at most [`MAX_DOCUMENT`] bytes.
async fn read_limited(mut r: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.context("reading the answer")? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            bail!("the answer is larger than {MAX_DOCUMENT} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An OAuth error code as it may be audited and shown: letters, digits, `_`, `-`, `.`,
/// at most 64 characters.
fn safe_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect()
}

/// A PKCE `code_verifier`: 32 random bytes, base64url (43 characters, RFC 7636 4.1).
fn pkce_verifier() -> String {
    let mut buf = [0u8; 32];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The S256 `code_challenge` of a verifier: base64url(SHA-256(verifier)).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// The claims of a JWT whose signature was already verified.
fn jwt_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The ID token checks the validator does not make: `nonce` is the one sent, and `azp` (when
/// present, or required with several audiences) is the console's client id.
fn check_id_claims(
    claims: &Map<String, Value>,
    nonce: &str,
    client_id: &str,
) -> Result<(), &'static str> {
    let got = claims
        .get("nonce")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !session::tokens_equal(got, nonce) {
        return Err("ID token nonce does not match");
    }
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == client_id => Ok(()),
        Some(_) => Err("ID token azp is not this client"),
        None if several => Err("ID token has several audiences but no azp"),
        None => Ok(()),
    }
}

/// The redirect URI for this request: `<public_url>/console/oidc/callback`, else built from
/// the request's `Host` (scheme from the TLS-terminating proxy's headers).
fn redirect_uri(sso: &ConsoleSso, headers: &HeaderMap) -> Option<String> {
    if let Some(base) = &sso.public_url {
        return Some(format!("{base}{CALLBACK_PATH}"));
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    let scheme = if session::over_tls(headers) {
        "https"
    } else {
        "http"
    };
    ok.then(|| format!("{scheme}://{host}{CALLBACK_PATH}"))
}

/// The console's SSO client, when configured.
fn sso_of(s: &AdminState) -> Option<&ConsoleSso> {
    s.rest.get().and_then(|r| r.console_sso.as_ref())
}

/// Whether the login page offers "Sign in with SSO".
pub(super) fn enabled(s: &AdminState) -> bool {
    sso_of(s).is_some()
}

/// The SSO routes (merged into the console router).
pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/console/login/oidc", get(start))
        .route(CALLBACK_PATH, get(callback))
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `GET /console/login/oidc`: starts a sign-in at the issuer.
async fn start(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    headers: HeaderMap,
) -> Response {
    let Some(sso) = sso_of(&s) else {
        return error_page(
            StatusCode::NOT_FOUND,
            None,
            "Single sign-on is not configured for this console.",
        );
    };
    if current(&store, &headers).is_ok() {
        return see_other("/console");
    }
    let provider = match sso.provider().await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(issuer = %sso.issuer, error = format!("{e:#}"), "Console SSO: the OIDC issuer cannot be used.");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "The identity provider cannot be reached right now. Try again later, or log in with a user name and password.",
            );
        }
    };
    let Some(redirect_uri) = redirect_uri(sso, &headers) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            None,
            "This request has no usable Host header for the sign-in redirect.",
        );
    };
    let pending = Pending {
        state: session::random_token(),
        nonce: session::random_token(),
        verifier: Secret::new(pkce_verifier()),
        redirect_uri,
        created: Instant::now(),
    };
    let url = sso.authorization_url(&provider.authorization_endpoint, &pending);
    let id = sso.remember(pending, Instant::now());
    let mut r = see_other("/console/login");
    match HeaderValue::from_str(&url) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "The identity provider's authorization endpoint cannot be used.",
            );
        }
    }
    let cookie = session::set_lax_cookie(
        OIDC_COOKIE,
        &id,
        PENDING_TTL.as_secs(),
        session::over_tls(&headers),
    );
    with_cookie(r, &cookie)
}

/// Audits a refused SSO login and answers with a page saying `shown`.
async fn refuse(
    s: &AdminState,
    ip: IpAddr,
    status: StatusCode,
    reason: &str,
    shown: &str,
    secure: bool,
) -> Response {
    tracing::warn!(client = %ip, reason, "Console SSO login refused.");
    if let Some(keys) = s.keys.get() {
        match login_event(ip, None, Some(reason), status) {
            Ok(ev) => super::super::record_refusal(keys, ev).await,
            Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
        }
    }
    let r = error_page(status, None, shown);
    with_cookie(r, &session::set_lax_cookie(OIDC_COOKIE, "", 0, secure))
}

fn login_event(
    ip: IpAddr,
    principal: Option<&str>,
    reason: Option<&str>,
    status: StatusCode,
) -> Result<AuditEvent, gatehouse_compliance::EventError> {
    let granted = reason.is_none();
    let outcome = match reason {
        None => Outcome::success(),
        Some(r) => Outcome::denied()
            .with_error_code("40101")
            .with_message(r.to_string()),
    };
    let principal = match principal {
        Some(p) => p.to_string(),
        None => super::super::refused_principal(None),
    };
    AuditEvent::builder(EventType::Authentication)
        .service(AUDIT_SERVICE)
        .method(METHOD_LOGIN)
        .principal(principal)
        .auth_mechanism(MECHANISM_OIDC)
        .resource("Console", "login")
        .operation("Authenticate")
        .granted(granted)
        .outcome(outcome)
        .client_address(ip.to_string())
        .attribute("httpStatus", status.as_u16().to_string())
        .build()
}

/// `GET /console/oidc/callback?code&state`: completes a sign-in.
async fn callback(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Some(sso) = sso_of(&s) else {
        return error_page(
            StatusCode::NOT_FOUND,
            None,
            "Single sign-on is not configured for this console.",
        );
    };
    let ip = peer.ip();
    let secure = session::over_tls(&headers);
    let again = "Open the login page and sign in again.";
    let query: BTreeMap<String, String> =
        match parse_form(uri.query().unwrap_or_default().as_bytes()) {
            Ok(q) => q,
            Err(_) => {
                return refuse(
                    &s,
                    ip,
                    StatusCode::BAD_REQUEST,
                    "SSO callback: malformed query",
                    &format!("The sign-in answer is malformed. {again}"),
                    secure,
                )
                .await;
            }
        };
    let pending =
        session::cookie(&headers, OIDC_COOKIE).and_then(|id| sso.take(&id, Instant::now()));
    let Some(pending) = pending else {
        return refuse(
            &s,
            ip,
            StatusCode::FORBIDDEN,
            "SSO callback without a pending sign-in (expired, used, or started elsewhere)",
            &format!("This sign-in expired or was not started by this browser. {again}"),
            secure,
        )
        .await;
    };
    let state = query.get("state").map(String::as_str).unwrap_or_default();
    if !session::tokens_equal(state, &pending.state) {
        return refuse(
            &s,
            ip,
            StatusCode::FORBIDDEN,
            "SSO callback: state does not match the pending sign-in",
            &format!(
                "This sign-in answer does not belong to your sign-in (state mismatch). {again}"
            ),
            secure,
        )
        .await;
    }
    if let Some(iss) = query.get("iss")
        && iss != &sso.issuer
    {
        return refuse(
            &s,
            ip,
            StatusCode::FORBIDDEN,
            "SSO callback: the answer names another issuer",
            &format!("The sign-in answer came from another identity provider. {again}"),
            secure,
        )
        .await;
    }
    if let Some(error) = query.get("error") {
        let code = safe_code(error);
        return refuse(
            &s,
            ip,
            StatusCode::UNAUTHORIZED,
            &format!("SSO: the identity provider refused the sign-in ({code})"),
            &format!("The identity provider did not sign you in ({code}). {again}"),
            secure,
        )
        .await;
    }
    let code = query.get("code").map(String::as_str).unwrap_or_default();
    if code.is_empty() || code.len() > MAX_CODE || code.chars().any(char::is_control) {
        return refuse(
            &s,
            ip,
            StatusCode::BAD_REQUEST,
            "SSO callback: no usable authorization code",
            &format!("The sign-in answer carries no usable code. {again}"),
            secure,
        )
        .await;
    }
    let provider = match sso.provider().await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(issuer = %sso.issuer, error = format!("{e:#}"), "Console SSO: the OIDC issuer cannot be used.");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "The identity provider cannot be reached right now. Try again later.",
            );
        }
    };
    let (access, id_token) = match sso.exchange(&provider, code, &pending).await {
        Ok(t) => t,
        Err(why) => {
            return refuse(
                &s,
                ip,
                StatusCode::UNAUTHORIZED,
                &format!("SSO: code exchange failed: {why}"),
                &format!("The sign-in could not be completed: {why}. {again}"),
                secure,
            )
            .await;
        }
    };
    if let Err(e) = provider.id_tokens.validate_token(id_token.expose()).await {
        return refuse(
            &s,
            ip,
            StatusCode::UNAUTHORIZED,
            &format!("SSO: invalid ID token: {e}"),
            &format!("The identity provider's ID token was refused ({e}). {again}"),
            secure,
        )
        .await;
    }
    let checked = jwt_claims(id_token.expose())
        .ok_or("ID token is malformed")
        .and_then(|c| check_id_claims(&c, &pending.nonce, &sso.client_id));
    if let Err(why) = checked {
        return refuse(
            &s,
            ip,
            StatusCode::UNAUTHORIZED,
            &format!("SSO: invalid ID token: {why}"),
            &format!("The identity provider's ID token was refused ({why}). {again}"),
            secure,
        )
        .await;
    }
    let Some(validator) = s.rest.get().and_then(|r| r.tokens.clone()) else {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "The gateway does not accept OIDC tokens: no issuer is configured.",
        );
    };
    let token = match validator.validate(access.expose()).await {
        Ok(t) => t,
        Err(e) => {
            return refuse(
                &s,
                ip,
                StatusCode::UNAUTHORIZED,
                &format!("SSO: the gateway refuses the access token: {e}"),
                &format!("The gateway does not accept your access token ({e}). {again}"),
                secure,
            )
            .await;
        }
    };
    let now = Instant::now();
    let until = match token.expires_at.duration_since(SystemTime::now()) {
        Ok(left) if !left.is_zero() => now + left,
        _ => {
            return refuse(
                &s,
                ip,
                StatusCode::UNAUTHORIZED,
                "SSO: the access token has already expired",
                &format!("Your access token has already expired. {again}"),
                secure,
            )
            .await;
        }
    };
    let principal = token.principal.to_string();
    let Some((sid, _csrf)) = store.create(
        principal.clone(),
        Credential::Bearer {
            token: access,
            until,
        },
        principal.clone(),
        now,
    ) else {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "Too many console sessions are open; try again later.",
        );
    };
    if let Some(keys) = s.keys.get() {
        match login_event(ip, Some(&principal), None, StatusCode::OK) {
            Ok(ev) => {
                if let Err(e) = super::super::record(keys, ev).await {
                    tracing::error!(error = %e, "A console login could not be recorded in the audit trail.");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
        }
    }
    tracing::info!(principal = %principal, client = %ip, "Console login (SSO).");
    // A page, not a redirect: the session cookie is `SameSite=Strict`, and a navigation that
    // the issuer's site started (with its redirects) would not carry it. `Refresh` makes the
    // browser start a new, same-site navigation to the overview.
    let body = format!(
        "<p class=\"msg ok\" role=\"status\">Signed in as {}.</p>\
         <p><a id=\"continue\" href=\"/console\">Continue to the console</a></p>",
        esc(&principal)
    );
    let mut r = html(
        StatusCode::OK,
        document("Signed in", super::html::Nav::None, None, &body),
    );
    r.headers_mut()
        .insert("refresh", HeaderValue::from_static("0; url=/console"));
    let r = with_cookie(r, &session::set_cookie(SESSION_COOKIE, &sid, None, secure));
    with_cookie(r, &session::set_lax_cookie(OIDC_COOKIE, "", 0, secure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sso(public_url: Option<&str>) -> ConsoleSso {
        ConsoleSso {
            issuer: "https://login.example.com".into(),
            audience: "urn:kafka:gateway".into(),
            client_id: "console".into(),
            client_secret: Some(Secret::new("s3cret".into())),
            scope: "openid kafka".into(),
            resource_indicator: true,
            public_url: public_url.map(str::to_string),
            provider: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn pending(now: Instant) -> Pending {
        Pending {
            state: session::random_token(),
            nonce: session::random_token(),
            verifier: Secret::new(pkce_verifier()),
            redirect_uri: "http://127.0.0.1:8080/console/oidc/callback".into(),
            created: now,
        }
    }

    #[test]
    fn pkce_s256_matches_rfc_7636() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = pkce_verifier();
        assert_eq!(v.len(), 43);
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(v, pkce_verifier());
    }

    #[test]
    fn authorization_url_carries_every_parameter() {
        let s = sso(None);
        let p = pending(Instant::now());
        let url = s.authorization_url("https://login.example.com/auth", &p);
        let (base, query) = url.split_once('?').expect("query");
        assert_eq!(base, "https://login.example.com/auth");
        let q = parse_form(query.as_bytes()).expect("query decodes");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "console");
        assert_eq!(q["redirect_uri"], p.redirect_uri);
        assert_eq!(q["scope"], "openid kafka");
        assert_eq!(q["state"], p.state);
        assert_eq!(q["nonce"], p.nonce);
        assert_eq!(q["code_challenge"], pkce_challenge(p.verifier.expose()));
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["resource"], "urn:kafka:gateway");
        assert!(
            !url.contains(p.verifier.expose()),
            "the verifier stays here"
        );
        assert!(!url.contains("s3cret"));
        // An endpoint with a query of its own keeps it.
        let url = s.authorization_url("https://login.example.com/auth?tenant=a", &p);
        assert!(url.starts_with("https://login.example.com/auth?tenant=a&response_type=code"));
    }

    #[test]
    fn pending_sign_ins_are_single_use_short_lived_and_bounded() {
        let s = sso(None);
        let t0 = Instant::now();
        let p = pending(t0);
        let state = p.state.clone();
        let id = s.remember(p, t0);
        assert_eq!(id.len(), 64);
        assert!(s.take("unknown", t0).is_none());
        let got = s.take(&id, t0 + Duration::from_secs(1)).expect("pending");
        assert_eq!(got.state, state);
        assert!(s.take(&id, t0).is_none(), "single use");

        let id = s.remember(pending(t0), t0);
        assert!(s.take(&id, t0 + PENDING_TTL).is_none(), "expired");

        let first = s.remember(pending(t0), t0);
        for i in 1..MAX_PENDING as u64 + 5 {
            s.remember(
                pending(t0 + Duration::from_millis(i)),
                t0 + Duration::from_millis(i),
            );
        }
        assert!(s.lock_pending().len() <= MAX_PENDING);
        assert!(s.take(&first, t0).is_none(), "the oldest was dropped");
    }

    #[test]
    fn id_token_nonce_and_azp_are_checked() {
        let claims = |v: Value| v.as_object().cloned().expect("object");
        let ok = claims(json!({"sub": "alice", "aud": "console", "nonce": "n1"}));
        assert!(check_id_claims(&ok, "n1", "console").is_ok());
        assert!(check_id_claims(&ok, "n2", "console").is_err());
        assert!(check_id_claims(&ok, "", "console").is_err());
        let none = claims(json!({"aud": "console"}));
        assert!(check_id_claims(&none, "n1", "console").is_err());
        let several = claims(json!({"aud": ["console", "other"], "nonce": "n1"}));
        assert_eq!(
            check_id_claims(&several, "n1", "console"),
            Err("ID token has several audiences but no azp")
        );
        let several_ok =
            claims(json!({"aud": ["console", "other"], "azp": "console", "nonce": "n1"}));
        assert!(check_id_claims(&several_ok, "n1", "console").is_ok());
        let wrong_azp = claims(json!({"aud": "console", "azp": "other", "nonce": "n1"}));
        assert!(check_id_claims(&wrong_azp, "n1", "console").is_err());

        let payload = URL_SAFE_NO_PAD.encode(br#"{"nonce":"n1"}"#);
        let c = jwt_claims(&format!("e30.{payload}.sig")).expect("claims");
        assert_eq!(c["nonce"], "n1");
        assert!(jwt_claims("nope").is_none());
        assert!(jwt_claims("a.!!!.c").is_none());
    }

    #[test]
    fn redirect_uri_from_public_url_or_a_sane_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(
            redirect_uri(&sso(Some("https://gh.example.com")), &h).as_deref(),
            Some("https://gh.example.com/console/oidc/callback")
        );
        assert_eq!(
            redirect_uri(&sso(None), &h).as_deref(),
            Some("http://127.0.0.1:8080/console/oidc/callback")
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(
            redirect_uri(&sso(None), &h).as_deref(),
            Some("https://127.0.0.1:8080/console/oidc/callback")
        );
        h.insert(header::HOST, HeaderValue::from_static("evil.example/x?"));
        assert_eq!(redirect_uri(&sso(None), &h), None);
        h.remove(header::HOST);
        assert_eq!(redirect_uri(&sso(None), &h), None);
    }

    fn config(console: &str, oidc: bool) -> crate::config::Config {
        let mut text = String::new();
        if oidc {
            text.push_str("oidc_issuer = \"https://login.example.com\"\noidc_audience = \"urn:kafka:gateway\"\n");
        }
        text.push_str("[console]\n");
        text.push_str(console);
        let table: toml::Table = toml::from_str(&text).expect("toml");
        crate::config::Config::load(None, table).expect("config")
    }

    #[test]
    fn configuration_is_checked_and_the_secret_comes_from_a_file() {
        assert!(
            ConsoleSso::from_config(&config("", true))
                .expect("ok")
                .is_none()
        );
        let err = ConsoleSso::from_config(&config("oidc_client_id = \"console\"\n", false))
            .expect_err("no issuer");
        assert!(err.to_string().contains("needs oidc_issuer"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\nignored\n").expect("write");
        let c = config(
            &format!(
                "oidc_client_id = \"console\"\noidc_client_secret_file = {:?}\n\
                 oidc_scopes = [\"kafka\", \"openid\"]\npublic_url = \"https://gh.example.com/\"\n",
                file.display().to_string()
            ),
            true,
        );
        let sso = ConsoleSso::from_config(&c)
            .expect("ok")
            .expect("configured");
        assert_eq!(sso.scope, "openid kafka");
        assert_eq!(sso.public_url.as_deref(), Some("https://gh.example.com"));
        if std::env::var(SECRET_ENV).is_err() {
            assert_eq!(
                sso.client_secret.as_ref().map(Secret::expose),
                Some("from-file")
            );
        }
        assert!(!format!("{sso:?}").contains("from-file"));

        for bad in [
            "oidc_client_id = \"console\"\npublic_url = \"ftp://x\"\n",
            "oidc_client_id = \"console\"\noidc_scopes = [\"a b\"]\n",
            "oidc_client_id = \"console\"\noidc_client_secret_file = \"/nonexistent/secret\"\n",
        ] {
            if bad.contains("secret_file") && std::env::var(SECRET_ENV).is_ok() {
                continue;
            }
            assert!(
                ConsoleSso::from_config(&config(bad, true)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_login_page_offers_sso_only_when_configured() {
        let with = super::super::login_document("t", "", None, true);
        assert!(with.contains("href=\"/console/login/oidc\""), "{with}");
        assert!(with.contains("Sign in with SSO"));
        let without = super::super::login_document("t", "", None, false);
        assert!(!without.contains("/console/login/oidc"), "{without}");
    }

    #[test]
    fn error_codes_are_sanitised_and_secrets_do_not_print() {
        assert_eq!(safe_code("access_denied"), "access_denied");
        assert_eq!(safe_code("<script>x</script>\n"), "scriptxscript");
        assert_eq!(safe_code(&"a".repeat(100)).len(), 64);
        let d = format!("{:?}", sso(None));
        assert!(!d.contains("s3cret"), "{d}");
        assert!(d.contains("confidential: true"));
    }
}
