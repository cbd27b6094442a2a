//! The web console (issue 7): server-rendered HTML pages on the admin listener, under
//! `/console`. No JavaScript, no CDN, no build step: hand-written templates with every
//! interpolated value escaped ([`html::esc`]) and an embedded style sheet. The design is in
//! `docs/adr/0007-console-server-rendered.md`, the pages in `docs/console.md`.
//!
//! * `GET/POST /console/login`: the same users as the API (the gateway's SCRAM users, checked
//!   with [`gatehouse_policy::Authenticator::verify_plain`]); a refusal is audited like the
//!   API's 401s. A success opens a server-side session ([`session`]).
//! * `GET /console` (overview), `GET/POST /console/topics` (topics with their governance
//!   state, create form), `GET /console/access` (users, ACLs, role bindings, with the forms
//!   that change them: [`access`]), `GET /console/audit` (events with filters, verification
//!   status), `POST /console/logout`.
//!
//! The pages do not decide anything: each one calls the admin REST handlers in-process with
//! the session's credentials, so the console acts **as the user** through the gateway exactly
//! like `/v1/…` (same authorization, same audit events, reading the audit trail records an
//! `audit_access` event). Every POST carries the session's CSRF token (the login form a
//! double-submit token); a missing or wrong token is answered 403.

mod access;
mod data;
mod governance;
mod html;
mod oidc;
mod session;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use gatehouse_compliance::{AuditEvent, EventType, Outcome};
use gatehouse_policy::AuthError;
use serde_json::{Value, json};

use super::{AUDIT_SERVICE, AdminState, MECHANISM_BASIC};
use html::{Header, Nav, document, error_page, esc, html, message, see_other, td};
use session::{Credential, LOGIN_COOKIE, SESSION_COOKIE, Secret, Session, Sessions};

pub use oidc::ConsoleSso;

/// Largest form body accepted.
const MAX_FORM: usize = 16 * 1024;
/// Largest internal API answer read.
const MAX_API_BODY: usize = 64 * 1024 * 1024;
/// Audit `method` of console logins.
const METHOD_LOGIN: &str = "console.login";
/// Most events the audit page shows.
const MAX_EVENTS: usize = 500;
/// Events the audit page shows by default.
const DEFAULT_EVENTS: usize = 50;
/// Most partitions the create form accepts.
const MAX_PARTITIONS: i64 = 1000;

type Store = Arc<Sessions>;

/// The console's routes (merged into the admin router).
pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/console", get(overview))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/topics", get(topics_page).post(create_topic))
        .route("/console/access", get(access_page))
        .route("/console/access/users", post(access::create_user))
        .route("/console/access/users/delete", post(access::delete_user))
        .route("/console/access/acls", post(access::add_acl))
        .route("/console/access/acls/delete", post(access::remove_acl))
        .route("/console/access/roles", post(access::bind_role))
        .route("/console/access/roles/unbind", post(access::unbind_role))
        .route("/console/audit", get(audit_page))
        .route("/console/static/console.css", get(css))
        .merge(data::routes())
        .merge(governance::routes())
        .merge(oidc::routes())
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(Extension(Store::default()))
}

// ---------------------------------------------------------------------------------------------
// Plumbing: sessions, forms, calls into the REST handlers
// ---------------------------------------------------------------------------------------------

/// The logged-in user of a request.
struct Me {
    id: String,
    session: Session,
}

impl Me {
    fn header(&self) -> Header<'_> {
        Header {
            principal: &self.session.principal,
            csrf: &self.session.csrf,
        }
    }

    /// The `Authorization` header the REST handlers authenticate (never sent anywhere):
    /// `Basic` for a form login, `Bearer <access token>` for an SSO login.
    fn auth(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = match &self.session.credential {
            Credential::Password(password) => {
                let pair = format!("{}:{}", self.session.user, password.expose());
                let enc =
                    base64::engine::general_purpose::STANDARD.encode(Secret::new(pair).expose());
                Secret::new(format!("Basic {enc}"))
            }
            Credential::Bearer { token, .. } => Secret::new(format!("Bearer {}", token.expose())),
        };
        if let Ok(mut v) = HeaderValue::from_str(value.expose()) {
            v.set_sensitive(true);
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }
}

/// The request's session, or a redirect to the login page.
fn current(store: &Sessions, headers: &HeaderMap) -> Result<Me, Box<Response>> {
    let id = session::cookie(headers, SESSION_COOKIE)
        .ok_or_else(|| Box::new(see_other("/console/login")))?;
    match store.get(&id, Instant::now()) {
        Some(session) => Ok(Me { id, session }),
        None => Err(Box::new(see_other("/console/login"))),
    }
}

/// Ends the session (the gateway no longer accepts its credentials: a changed password, an
/// access token the issuer revoked) and sends to the login.
fn relogin(store: &Sessions, me: &Me) -> Response {
    store.remove(&me.id);
    see_other("/console/login")
}

/// Decodes `application/x-www-form-urlencoded` text (also a query string).
fn parse_form(text: &[u8]) -> Result<BTreeMap<String, String>, &'static str> {
    fn decode(part: &[u8]) -> Result<String, &'static str> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = part.get(i + 1..i + 3).ok_or("malformed form encoding")?;
                    let hex = std::str::from_utf8(hex).map_err(|_| "malformed form encoding")?;
                    out.push(u8::from_str_radix(hex, 16).map_err(|_| "malformed form encoding")?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| "the form is not UTF-8")
    }
    let mut map = BTreeMap::new();
    for pair in text.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        map.insert(decode(k)?, decode(v)?);
    }
    Ok(map)
}

/// A POST's form, or the error page to answer.
fn form_of(
    body: &Bytes,
    who: Option<&Header<'_>>,
) -> Result<BTreeMap<String, String>, Box<Response>> {
    if body.len() > MAX_FORM {
        return Err(Box::new(error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            who,
            "The form is too large.",
        )));
    }
    parse_form(body).map_err(|m| Box::new(error_page(StatusCode::BAD_REQUEST, who, m)))
}

/// A browser POST from another origin (the `Origin` header, when sent, must name this host).
fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    !matches!((origin, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Checks a session POST: same origin and the session's CSRF token.
fn check_csrf(
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
    me: &Me,
) -> Result<(), Box<Response>> {
    let token = form.get("csrf").map(String::as_str).unwrap_or_default();
    if cross_origin(headers) || !session::tokens_equal(token, &me.session.csrf) {
        tracing::warn!(principal = %me.session.principal, "A console form was refused: missing or wrong CSRF token, or another origin.");
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            Some(&me.header()),
            "This form was refused: its security token is missing or wrong. Reload the page and try again.",
        )));
    }
    Ok(())
}

/// A console form POST: the session, the decoded form, its CSRF token and origin checked.
fn posted_form(
    store: &Sessions,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Me, BTreeMap<String, String>), Box<Response>> {
    let me = current(store, headers)?;
    let form = form_of(body, Some(&me.header()))?;
    check_csrf(headers, &form, &me)?;
    Ok((me, form))
}

/// An internal API answer that was not a success.
struct ApiError {
    status: StatusCode,
    message: String,
}

/// The JSON of an internal API answer, or its status and message.
async fn api(r: Response) -> Result<Value, ApiError> {
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), MAX_API_BODY).await;
    let value: Value = body
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| status.to_string(), str::to_string);
        Err(ApiError { status, message })
    }
}

fn is_unauthorized<T>(r: &Result<T, ApiError>) -> bool {
    matches!(r, Err(e) if e.status == StatusCode::UNAUTHORIZED)
}

/// A section's error as a message box.
fn section_error(e: &ApiError) -> String {
    let hint = if e.status == StatusCode::FORBIDDEN {
        " (your principal is not allowed to see this)"
    } else {
        ""
    };
    message("error", &format!("{}{hint}", e.message))
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "—".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn rfc3339_of_seconds(secs: i64) -> String {
    if secs <= 0 {
        return "never".to_string();
    }
    gatehouse_compliance::Timestamp::from_unix_micros(secs.saturating_mul(1_000_000)).to_rfc3339()
}

/// A control character in user input (refused in every field).
fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

// ---------------------------------------------------------------------------------------------
// Login, logout, static
// ---------------------------------------------------------------------------------------------

async fn css() -> Response {
    let mut r = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        html::CSS,
    )
        .into_response();
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn not_found(Extension(store): Extension<Store>, headers: HeaderMap) -> Response {
    let me = current(&store, &headers).ok();
    error_page(
        StatusCode::NOT_FOUND,
        me.as_ref().map(Me::header).as_ref(),
        "There is no such console page.",
    )
}

fn login_document(token: &str, user: &str, note: Option<&str>, sso: bool) -> String {
    let note = note.map(|n| message("error", n)).unwrap_or_default();
    let body = format!(
        "{note}<form class=\"card narrow\" method=\"post\" action=\"/console/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>User name <input name=\"username\" value=\"{}\" required maxlength=\"255\" \
         autocomplete=\"username\" autofocus></label>\
         <label>Password <input type=\"password\" name=\"password\" required maxlength=\"1024\" \
         autocomplete=\"current-password\"></label>\
         <button type=\"submit\">Log in</button>\
         <p class=\"hint\">The same users as the Kafka gateway and the admin API.</p>{}</form>",
        esc(token),
        esc(user),
        if sso { oidc::SSO_LINK } else { "" }
    );
    document("Log in", Nav::None, None, &body)
}

/// `GET /console/login`: the form, with a fresh double-submit token in `gh_login`.
async fn login_form(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    headers: HeaderMap,
) -> Response {
    if current(&store, &headers).is_ok() {
        return see_other("/console");
    }
    let token = session::random_token();
    let mut r = html(
        StatusCode::OK,
        login_document(&token, "", None, oidc::enabled(&s)),
    );
    let cookie = session::set_cookie(LOGIN_COOKIE, &token, None, session::over_tls(&headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `POST /console/login`.
async fn login(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match form_of(&body, None) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let token = form.get("csrf").map(String::as_str).unwrap_or_default();
    if cross_origin(&headers) || !session::tokens_equal(token, &expected) {
        return error_page(
            StatusCode::FORBIDDEN,
            None,
            "The login form expired or was not sent by this console. Open the login page again.",
        );
    }
    let user = form.get("username").map(|u| u.trim()).unwrap_or_default();
    let password = Secret::new(form.get("password").cloned().unwrap_or_default());
    let invalid = if user.is_empty() || password.expose().is_empty() {
        Some("Enter a user name and a password.")
    } else if user.len() > 255 || password.expose().len() > 1024 {
        Some("The user name or the password is too long.")
    } else if has_control(user) {
        Some("The user name contains control characters.")
    } else {
        None
    };
    if let Some(why) = invalid {
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            login_document(&expected, user, Some(why), oidc::enabled(&s)),
        );
    }
    let Some(keys) = s.keys.get() else {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "The console is not available yet: it runs under `gatehouse serve`, once the gateway's users are loaded.",
        );
    };
    let ip = peer.ip();
    let event = |granted: bool, principal: String, reason: Option<String>| {
        let outcome = match reason {
            None => Outcome::success(),
            Some(r) => Outcome::denied().with_error_code("40101").with_message(r),
        };
        AuditEvent::builder(EventType::Authentication)
            .service(AUDIT_SERVICE)
            .method(METHOD_LOGIN)
            .principal(principal)
            .auth_mechanism(MECHANISM_BASIC)
            .resource("Console", "login")
            .operation("Authenticate")
            .granted(granted)
            .outcome(outcome)
            .client_address(ip.to_string())
            .attribute("httpStatus", if granted { "303" } else { "401" })
            .build()
    };
    let principal = match keys
        .authenticator
        .verify_plain(user, password.expose(), ip)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            match event(
                false,
                super::refused_principal(Some(user)),
                Some(e.to_string()),
            ) {
                Ok(ev) => super::record_refusal(keys, ev).await,
                Err(err) => tracing::error!(error = %err, "cannot build the audit event"),
            }
            let shown = match &e {
                AuthError::InvalidCredentials { .. } => {
                    "Invalid user name or password.".to_string()
                }
                other => other.client_message(),
            };
            return html(
                StatusCode::UNAUTHORIZED,
                login_document(&expected, user, Some(&shown), oidc::enabled(&s)),
            );
        }
    };
    let principal = principal.to_string();
    let Some((id, _csrf)) = store.create(
        user.to_string(),
        Credential::Password(password),
        principal.clone(),
        Instant::now(),
    ) else {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "Too many console sessions are open; try again later.",
        );
    };
    match event(true, principal.clone(), None) {
        Ok(ev) => {
            if let Err(e) = super::record(keys, ev).await {
                tracing::error!(error = %e, "A console login could not be recorded in the audit trail.");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot build the audit event"),
    }
    tracing::info!(principal = %principal, client = %ip, "Console login.");
    let secure = session::over_tls(&headers);
    let mut r = see_other("/console");
    for c in [
        session::set_cookie(SESSION_COOKIE, &id, None, secure),
        session::set_cookie(LOGIN_COOKIE, "", Some(0), secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// `POST /console/logout`.
async fn logout(Extension(store): Extension<Store>, headers: HeaderMap, body: Bytes) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let form = match form_of(&body, Some(&me.header())) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = check_csrf(&headers, &form, &me) {
        return *r;
    }
    store.remove(&me.id);
    tracing::info!(principal = %me.session.principal, "Console logout.");
    let mut r = see_other("/console/login");
    let c = session::set_cookie(SESSION_COOKIE, "", Some(0), session::over_tls(&headers));
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

/// `GET /console`.
async fn overview(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let cluster =
        api(super::cluster::cluster(State(s.clone()), ConnectInfo(peer), me.auth()).await).await;
    let status = api(super::audit::status(State(s), ConnectInfo(peer), me.auth()).await).await;
    if is_unauthorized(&cluster) || is_unauthorized(&status) {
        return relogin(&store, &me);
    }
    let mut body = String::from("<div class=\"grid\">");
    body.push_str("<section class=\"card\" id=\"cluster\"><h2>Cluster</h2>");
    match &cluster {
        Ok(c) => {
            let brokers: Vec<String> = c
                .get("brokers")
                .and_then(Value::as_array)
                .map(|bs| {
                    bs.iter()
                        .map(|b| {
                            format!(
                                "{} ({}:{})",
                                text(b, "node_id"),
                                text(b, "host"),
                                text(b, "port")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            body.push_str("<table class=\"kv\">");
            for (k, v) in [
                ("Cluster id", text(c, "cluster_id")),
                ("Controller", text(c, "controller_id")),
                ("Brokers", brokers.join(", ")),
                ("Topics you can see", text(c, "topic_count")),
                ("Partitions", text(c, "partition_count")),
                ("Schema registry", text(c, "registry_url")),
                ("Logged in as", text(c, "principal")),
            ] {
                body.push_str(&format!("<tr><th>{}</th>{}</tr>", esc(k), td(&v)));
            }
            body.push_str("</table><h3>Listeners</h3><table class=\"kv\">");
            if let Some(l) = c.get("listeners").and_then(Value::as_object) {
                for (k, v) in l {
                    body.push_str(&format!(
                        "<tr><th>{}</th>{}</tr>",
                        esc(k),
                        td(v.as_str().unwrap_or_default())
                    ));
                }
            }
            body.push_str("</table><h3>Parts</h3><table class=\"kv\">");
            if let Some(parts) = c.get("health").and_then(Value::as_object) {
                for (k, v) in parts {
                    let state = v.as_str().unwrap_or_default();
                    let class = if state == "serving" { "ok" } else { "warn" };
                    body.push_str(&format!(
                        "<tr><th>{}</th><td><span class=\"badge {class}\">{}</span></td></tr>",
                        esc(k),
                        esc(state)
                    ));
                }
            }
            body.push_str("</table>");
        }
        Err(e) => body.push_str(&section_error(e)),
    }
    body.push_str("</section><section class=\"card\" id=\"audit-status\"><h2>Audit trail</h2>");
    match &status {
        Ok(st) => body.push_str(&audit_status_html(st)),
        Err(e) => body.push_str(&section_error(e)),
    }
    body.push_str("<p><a href=\"/console/audit\">Browse the audit trail</a></p></section></div>");
    html(
        StatusCode::OK,
        document("Overview", Nav::Overview, Some(&me.header()), &body),
    )
}

/// The audit status (`GET /v1/audit/status`) as a table.
fn audit_status_html(st: &Value) -> String {
    let mut out = String::new();
    match st.get("self_check").filter(|v| !v.is_null()) {
        Some(sc) => {
            let healthy = sc.get("healthy").and_then(Value::as_bool).unwrap_or(false);
            let ran = sc.get("checks_total").and_then(Value::as_u64).unwrap_or(0) > 0;
            let (class, verdict) = match (ran, healthy) {
                (false, _) => ("warn", "pending — the first self-check has not run yet"),
                (true, true) => ("ok", "healthy — the trail verifies"),
                (true, false) => ("bad", "FAILING — see the logs and `gatehouse audit verify`"),
            };
            out.push_str(&format!(
                "<p class=\"verdict\">Self-check: <span class=\"badge {class}\" id=\"self-check\">{}</span></p>",
                esc(verdict)
            ));
            out.push_str("<table class=\"kv\">");
            let last = sc
                .get("last_verified_timestamp_seconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            for (k, v) in [
                ("Last verified", rfc3339_of_seconds(last)),
                ("Events verified", text(sc, "verified_events")),
                ("Checks run", text(sc, "checks_total")),
                ("Checks failed", text(sc, "failures_total")),
            ] {
                out.push_str(&format!("<tr><th>{}</th>{}</tr>", esc(k), td(&v)));
            }
            out.push_str("</table>");
        }
        None => out.push_str(&message("error", "The self-check is not running.")),
    }
    match st.get("checkpoint").filter(|v| !v.is_null()) {
        Some(cp) => {
            out.push_str("<h3>Latest signed checkpoint</h3><table class=\"kv\">");
            for (k, key) in [
                ("Tree size", "tree_size"),
                ("Time", "time"),
                ("Root hash", "root_hash"),
                ("Signing key", "key_id"),
            ] {
                out.push_str(&format!(
                    "<tr><th>{}</th>{}</tr>",
                    esc(k),
                    td(&text(cp, key))
                ));
            }
            out.push_str("</table>");
        }
        None => out.push_str("<p>No checkpoint has been signed yet.</p>"),
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------------------------

/// The create form's fields (kept on an error so the user can correct them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct TopicForm {
    name: String,
    partitions: String,
    value_validation: String,
    key_validation: String,
    encryption: bool,
    pan_guard: bool,
}

/// A valid create request: (name, partitions, governance configs).
type TopicRequest = (String, i64, Vec<(&'static str, String)>);

impl TopicForm {
    fn from_form(f: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| f.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        Self {
            name: get("name"),
            partitions: get("partitions"),
            value_validation: get("value_validation"),
            key_validation: get("key_validation"),
            encryption: f.contains_key("encryption"),
            pan_guard: f.contains_key("pan_guard"),
        }
    }

    /// Checks every field; the request, or what is wrong.
    fn validate(&self) -> Result<TopicRequest, String> {
        let name = &self.name;
        if name.is_empty() {
            return Err("Enter a topic name.".into());
        }
        if name.len() > 249 {
            return Err("A topic name has at most 249 characters.".into());
        }
        if name == "." || name == ".." {
            return Err("A topic name cannot be \".\" or \"..\".".into());
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("A topic name may contain only letters, digits, '.', '_' and '-'.".into());
        }
        let partitions = if self.partitions.is_empty() {
            1
        } else {
            match self.partitions.parse::<i64>() {
                Ok(n) if (1..=MAX_PARTITIONS).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "Partitions must be a whole number from 1 to {MAX_PARTITIONS}."
                    ));
                }
            }
        };
        let mut configs = Vec::new();
        for (side, value) in [
            ("value", &self.value_validation),
            ("key", &self.key_validation),
        ] {
            match value.as_str() {
                "" | "none" => {}
                "schema-id" | "full" => configs.push((
                    if side == "value" {
                        "gatehouse.value.schema.validation"
                    } else {
                        "gatehouse.key.schema.validation"
                    },
                    value.clone(),
                )),
                _ => {
                    return Err(format!(
                        "The {side} validation must be none, schema-id or full."
                    ));
                }
            }
        }
        if self.encryption {
            configs.push(("gatehouse.encryption", "true".to_string()));
        }
        if self.pan_guard {
            configs.push(("gatehouse.pan.guard", "true".to_string()));
        }
        Ok((name.clone(), partitions, configs))
    }
}

/// `GET /console/topics[?created=NAME|?deleted=NAME]`.
async fn topics_page(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let query = parse_form(uri.query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let named = |k: &str| {
        query
            .get(k)
            .filter(|n| !n.is_empty() && n.len() <= 249 && !has_control(n))
    };
    let note = named("created")
        .map(|n| ("ok", format!("Topic {n} created.")))
        .or_else(|| named("deleted").map(|n| ("ok", format!("Topic {n} deleted."))));
    let form = TopicForm {
        partitions: "1".into(),
        ..TopicForm::default()
    };
    render_topics(&s, &store, &me, peer, &form, note, StatusCode::OK).await
}

/// `POST /console/topics`: creates a topic through `POST /v1/topics` as the user.
async fn create_topic(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (me, f) = match posted_form(&store, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let form = TopicForm::from_form(&f);
    let (name, partitions, configs) = match form.validate() {
        Ok(x) => x,
        Err(m) => {
            return render_topics(
                &s,
                &store,
                &me,
                peer,
                &form,
                Some(("error", m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let configs: serde_json::Map<String, Value> = configs
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .collect();
    let request = json!({ "name": name, "partitions": partitions, "configs": configs });
    let created = api(super::topics::create(
        State(s.clone()),
        ConnectInfo(peer),
        me.auth(),
        Bytes::from(request.to_string()),
    )
    .await)
    .await;
    match created {
        Ok(_) => see_other(&format!(
            "/console/topics?created={}",
            html::url_encode(&name)
        )),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(&store, &me),
        Err(e) => {
            let status = if e.status.is_client_error() {
                e.status
            } else {
                StatusCode::BAD_GATEWAY
            };
            render_topics(
                &s,
                &store,
                &me,
                peer,
                &form,
                Some(("error", format!("The topic was not created: {}", e.message))),
                status,
            )
            .await
        }
    }
}

/// The governance cells of a topic row.
fn governance_cells(g: &Value) -> String {
    let validation = |key: &str| {
        let v = g.get(key).and_then(Value::as_str).unwrap_or("none");
        let class = if v == "none" { "off" } else { "on" };
        format!(
            "<td class=\"{key}\"><span class=\"badge {class}\">{}</span></td>",
            esc(v)
        )
    };
    let encryption = if g
        .get("encryption")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        let readers = g
            .get("encryption_readers")
            .and_then(Value::as_str)
            .unwrap_or("all");
        format!(
            "<span class=\"badge on\">encrypted</span> <span class=\"muted\">readers: {}</span>",
            esc(readers)
        )
    } else {
        "<span class=\"badge off\">off</span>".to_string()
    };
    let pan = if g.get("pan_guard").and_then(Value::as_bool).unwrap_or(false) {
        "<span class=\"badge on\">on</span>"
    } else {
        "<span class=\"badge off\">off</span>"
    };
    let dlq = g
        .get("dead_letter_topic")
        .and_then(Value::as_str)
        .unwrap_or("—");
    format!(
        "{}{}<td class=\"encryption\">{encryption}</td><td class=\"pan_guard\">{pan}</td>{}",
        validation("value_validation"),
        validation("key_validation"),
        td(dlq)
    )
}

/// The topics table.
fn topics_table(list: &Value) -> String {
    let topics = list
        .get("topics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if topics.is_empty() {
        return "<p id=\"no-topics\">No topics you may see.</p>".to_string();
    }
    let mut out = String::from(
        "<table class=\"list\" id=\"topics\"><thead><tr><th>Topic</th><th>Partitions</th>\
         <th>Value validation</th><th>Key validation</th><th>Encryption</th><th>PAN guard</th>\
         <th>Dead-letter topic</th></tr></thead><tbody>",
    );
    for t in &topics {
        let name = text(t, "name");
        let internal = t.get("internal").and_then(Value::as_bool).unwrap_or(false);
        out.push_str(&format!(
            "<tr data-topic=\"{}\"><td class=\"name\"><a href=\"/console/topics/{}\">{}</a>{}</td>{}",
            esc(&name),
            html::url_encode(&name),
            esc(&name),
            if internal {
                " <span class=\"muted\">(internal)</span>"
            } else {
                ""
            },
            td(&text(t, "partitions"))
        ));
        match t.get("governance").filter(|g| g.is_object()) {
            Some(g) => out.push_str(&governance_cells(g)),
            None => {
                let why = t
                    .get("governance_error")
                    .and_then(Value::as_str)
                    .unwrap_or("not visible to you");
                out.push_str(&format!(
                    "<td colspan=\"5\" class=\"muted\">{}</td>",
                    esc(why)
                ));
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

fn select(name: &str, current: &str) -> String {
    let mut out = format!("<select name=\"{name}\" id=\"{name}\">");
    for (v, label) in [
        ("none", "none"),
        ("schema-id", "schema-id (registered schema id)"),
        ("full", "full (decode against the schema)"),
    ] {
        let sel = if v == current || (current.is_empty() && v == "none") {
            " selected"
        } else {
            ""
        };
        out.push_str(&format!("<option value=\"{v}\"{sel}>{label}</option>"));
    }
    out.push_str("</select>");
    out
}

/// The create form, pre-filled with `f`.
fn create_form(f: &TopicForm, csrf: &str) -> String {
    let checked = |b: bool| if b { " checked" } else { "" };
    format!(
        "<form class=\"card\" id=\"create-topic\" method=\"post\" action=\"/console/topics\">\
         <h2>Create a topic</h2>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Name <input name=\"name\" id=\"name\" value=\"{}\" required maxlength=\"249\" \
         pattern=\"[A-Za-z0-9._\\-]+\" title=\"letters, digits, '.', '_' and '-'\"></label>\
         <label>Partitions <input type=\"number\" name=\"partitions\" id=\"partitions\" min=\"1\" \
         max=\"{MAX_PARTITIONS}\" value=\"{}\" required></label>\
         <label>Value schema validation {}</label>\
         <label>Key schema validation {}</label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"encryption\" id=\"encryption\" value=\"on\"{}> \
         Encrypt record values at rest</label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"pan_guard\" id=\"pan_guard\" value=\"on\"{}> \
         Refuse card numbers (PAN guard)</label>\
         <button type=\"submit\">Create topic</button></form>",
        esc(csrf),
        esc(&f.name),
        esc(&f.partitions),
        select("value_validation", &f.value_validation),
        select("key_validation", &f.key_validation),
        checked(f.encryption),
        checked(f.pan_guard),
    )
}

async fn render_topics(
    s: &AdminState,
    store: &Sessions,
    me: &Me,
    peer: SocketAddr,
    form: &TopicForm,
    note: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let list = api(super::topics::list(State(s.clone()), ConnectInfo(peer), me.auth()).await).await;
    if is_unauthorized(&list) {
        return relogin(store, me);
    }
    let mut body = note.map(|(k, m)| message(k, &m)).unwrap_or_default();
    body.push_str("<section class=\"card wide\"><h2>Topics</h2>");
    match &list {
        Ok(l) => body.push_str(&topics_table(l)),
        Err(e) => body.push_str(&section_error(e)),
    }
    body.push_str("</section>");
    body.push_str(&create_form(form, &me.session.csrf));
    html(
        status,
        document("Topics", Nav::Topics, Some(&me.header()), &body),
    )
}

// ---------------------------------------------------------------------------------------------
// Users, ACLs, role bindings
// ---------------------------------------------------------------------------------------------

fn table(id: &str, heads: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p>{}</p>", esc(empty));
    }
    let mut out = format!("<table class=\"list\" id=\"{id}\"><thead><tr>");
    for h in heads {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&td(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// `GET /console/access[?done&who]`.
async fn access_page(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let query = parse_form(uri.query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let note = access::done_note(&query);
    render_access(&s, &store, &me, peer, note, StatusCode::OK).await
}

/// The access page (users, ACLs, role bindings, their forms), with an optional note.
async fn render_access(
    s: &AdminState,
    store: &Sessions,
    me: &Me,
    peer: SocketAddr,
    note: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let users = api(super::users::list(State(s.clone()), ConnectInfo(peer), me.auth()).await).await;
    let acls = api(super::acls::list(
        State(s.clone()),
        ConnectInfo(peer),
        Query(BTreeMap::new()),
        me.auth(),
    )
    .await)
    .await;
    let roles = api(super::list_roles(State(s.clone()), ConnectInfo(peer), me.auth()).await).await;
    if is_unauthorized(&users) || is_unauthorized(&acls) || is_unauthorized(&roles) {
        return relogin(store, me);
    }
    let csrf = me.session.csrf.as_str();
    let mut body = note.map(|(k, m)| message(k, &m)).unwrap_or_default();
    body.push_str(
        "<p class=\"actions\"><a href=\"/console/access/explain\" id=\"explain-link\">\
         Explain an access decision</a>: would the gateway allow a principal an operation, and \
         which binding decides?</p><section class=\"card wide\"><h2>Users</h2>",
    );
    match &users {
        Ok(u) => {
            let rows: Vec<(Vec<String>, String)> = u
                .get("users")
                .and_then(Value::as_array)
                .map(|us| {
                    us.iter()
                        .map(|u| {
                            let mechs: Vec<String> = u
                                .get("mechanisms")
                                .and_then(Value::as_array)
                                .map(|ms| {
                                    ms.iter()
                                        .map(|m| {
                                            format!(
                                                "{} ({} iterations)",
                                                text(m, "mechanism"),
                                                text(m, "iterations")
                                            )
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            let name = text(u, "name");
                            let action = access::delete_user_form(csrf, &name);
                            (vec![name, text(u, "principal"), mechs.join(", ")], action)
                        })
                        .collect()
                })
                .unwrap_or_default();
            body.push_str(&access::action_table(
                "users",
                &["User", "Principal", "SCRAM credentials"],
                &rows,
                "No users.",
            ));
        }
        Err(e) => body.push_str(&section_error(e)),
    }
    body.push_str("</section><section class=\"card wide\"><h2>ACLs</h2>");
    match &acls {
        Ok(a) => body.push_str(&access::action_table(
            "acls",
            &[
                "Principal",
                "Host",
                "Resource type",
                "Resource",
                "Pattern",
                "Operation",
                "Permission",
            ],
            &with_actions(
                a,
                "acls",
                &[
                    "principal",
                    "host",
                    "resource_type",
                    "resource_name",
                    "pattern_type",
                    "operation",
                    "permission",
                ],
                |v| access::remove_acl_form(csrf, v),
            ),
            "No ACLs.",
        )),
        Err(e) => body.push_str(&section_error(e)),
    }
    body.push_str("</section><section class=\"card wide\"><h2>Role bindings</h2>");
    let mut known: Vec<String> = Vec::new();
    match &roles {
        Ok(r) => {
            body.push_str(&access::action_table(
                "roles",
                &["Principal", "Role", "Resource type", "Resource", "Pattern"],
                &with_actions(
                    r,
                    "roles",
                    &[
                        "principal",
                        "role",
                        "resource_type",
                        "resource_name",
                        "pattern_type",
                    ],
                    |v| access::unbind_form(csrf, v),
                ),
                "No role bindings.",
            ));
            known = r
                .get("known_roles")
                .and_then(Value::as_array)
                .map(|k| {
                    k.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default();
            body.push_str(&format!(
                "<p class=\"hint\">Known roles: {}</p>",
                esc(&known.join(", "))
            ));
        }
        Err(e) => body.push_str(&section_error(e)),
    }
    body.push_str("</section>");
    body.push_str(&access::forms(csrf, &known));
    html(
        status,
        document("Users & access", Nav::Access, Some(&me.header()), &body),
    )
}

/// The rows of `v[list]` (cells at `keys`), each with its action cell.
fn with_actions(
    v: &Value,
    list: &str,
    keys: &[&str],
    action: impl Fn(&Value) -> String,
) -> Vec<(Vec<String>, String)> {
    v.get(list)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|i| (keys.iter().map(|k| text(i, k)).collect(), action(i)))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Audit trail
// ---------------------------------------------------------------------------------------------

/// The audit page's filters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct AuditFilter {
    principal: String,
    method: String,
    granted: String,
    limit: String,
}

impl AuditFilter {
    fn from_query(q: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        Self {
            principal: get("principal"),
            method: get("method"),
            granted: get("granted"),
            limit: get("limit"),
        }
    }

    /// The `/v1/audit/events` query for these filters, or what is wrong.
    fn to_query(&self) -> Result<String, String> {
        let mut q = Vec::new();
        let limit = if self.limit.is_empty() {
            DEFAULT_EVENTS
        } else {
            match self.limit.parse::<usize>() {
                Ok(n) if (1..=MAX_EVENTS).contains(&n) => n,
                _ => return Err(format!("Show must be a number from 1 to {MAX_EVENTS}.")),
            }
        };
        q.push(format!("limit={limit}"));
        if !self.principal.is_empty() {
            if self.principal.len() > 256 || has_control(&self.principal) {
                return Err("The principal filter is too long or has control characters.".into());
            }
            q.push(format!("principal={}", html::url_encode(&self.principal)));
        }
        if !self.method.is_empty() {
            if self.method.len() > 128
                || !self.method.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/')
                })
            {
                return Err(
                    "The method filter may contain only letters, digits and . _ - : /".into(),
                );
            }
            q.push(format!("method={}", html::url_encode(&self.method)));
        }
        match self.granted.as_str() {
            "" | "any" => {}
            "true" | "false" => q.push(format!("granted={}", self.granted)),
            _ => return Err("Granted must be any, true or false.".into()),
        }
        Ok(q.join("&"))
    }
}

fn filter_form(f: &AuditFilter) -> String {
    let opt = |v: &str, label: &str| {
        let sel = if f.granted == v || (f.granted.is_empty() && v == "any") {
            " selected"
        } else {
            ""
        };
        format!("<option value=\"{v}\"{sel}>{label}</option>")
    };
    format!(
        "<form class=\"card filters\" id=\"audit-filter\" method=\"get\" action=\"/console/audit\">\
         <label>Principal <input name=\"principal\" id=\"principal\" value=\"{}\" maxlength=\"256\" \
         placeholder=\"User:alice\"></label>\
         <label>Method <input name=\"method\" id=\"method\" value=\"{}\" maxlength=\"128\" \
         placeholder=\"kafka.CreateTopics\"></label>\
         <label>Granted <select name=\"granted\" id=\"granted\">{}{}{}</select></label>\
         <label>Show <input type=\"number\" name=\"limit\" id=\"limit\" min=\"1\" max=\"{MAX_EVENTS}\" \
         value=\"{}\"></label>\
         <button type=\"submit\">Filter</button></form>",
        esc(&f.principal),
        esc(&f.method),
        opt("any", "any"),
        opt("true", "granted"),
        opt("false", "denied"),
        esc(if f.limit.is_empty() { "50" } else { &f.limit }),
    )
}

fn events_table(found: &Value) -> String {
    let events = found
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = format!(
        "<p id=\"event-count\">{} matching events, showing the newest {}.</p>",
        esc(&text(found, "matched")),
        events.len()
    );
    if events.is_empty() {
        return out;
    }
    out.push_str(
        "<table class=\"list\" id=\"events\"><thead><tr><th>Time</th><th>Principal</th>\
         <th>Service</th><th>Method</th><th>Resource</th><th>Operation</th><th>Granted</th>\
         <th>Outcome</th></tr></thead><tbody>",
    );
    for e in events.iter().rev() {
        let d = e.get("data").cloned().unwrap_or(Value::Null);
        let resource = d.get("resource").cloned().unwrap_or(Value::Null);
        let outcome = d.get("outcome").cloned().unwrap_or(Value::Null);
        let granted = d.get("granted").and_then(Value::as_bool).unwrap_or(false);
        let mut result = text(&outcome, "status");
        if let Some(code) = outcome.get("errorCode").and_then(Value::as_str) {
            result.push_str(&format!(" ({code})"));
        }
        out.push_str(&format!(
            "<tr class=\"{}\">{}{}{}{}{}{}<td><span class=\"badge {}\">{}</span></td>{}</tr>",
            if granted { "granted" } else { "denied" },
            td(&text(e, "time")),
            td(&text(&d, "principal")),
            td(&text(&d, "service")),
            td(&text(&d, "method")),
            td(&format!(
                "{}:{}",
                text(&resource, "type"),
                text(&resource, "name")
            )),
            td(&text(&d, "operation")),
            if granted { "ok" } else { "bad" },
            if granted { "yes" } else { "no" },
            td(&result),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// `GET /console/audit?principal&method&granted&limit`.
async fn audit_page(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let (filter, parse_error) = match parse_form(uri.query().unwrap_or_default().as_bytes()) {
        Ok(q) => (AuditFilter::from_query(&q), None),
        Err(e) => (AuditFilter::default(), Some(e.to_string())),
    };
    let status =
        api(super::audit::status(State(s.clone()), ConnectInfo(peer), me.auth()).await).await;
    if is_unauthorized(&status) {
        return relogin(&store, &me);
    }
    let mut body =
        String::from("<section class=\"card wide\" id=\"verification\"><h2>Verification</h2>");
    match &status {
        Ok(st) => body.push_str(&audit_status_html(st)),
        Err(e) => body.push_str(&section_error(e)),
    }
    body.push_str(
        "<p><a href=\"/console/audit/evidence\" id=\"evidence-link\">Download an evidence \
         package</a> for an audit period (populations, signed checkpoint, manifest).</p></section>",
    );
    body.push_str(&filter_form(&filter));
    body.push_str("<section class=\"card wide\"><h2>Events</h2>");
    let mut code = StatusCode::OK;
    let query = match parse_error {
        Some(e) => Err(e),
        None => filter.to_query(),
    };
    match query {
        Err(m) => {
            code = StatusCode::UNPROCESSABLE_ENTITY;
            body.push_str(&message("error", &m));
        }
        Ok(q) => {
            let uri: Uri = match format!("/v1/audit/events?{q}").parse() {
                Ok(u) => u,
                Err(_) => {
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        Some(&me.header()),
                        "The filters cannot be used.",
                    );
                }
            };
            let found = api(super::audit::events(
                State(s),
                ConnectInfo(peer),
                me.auth(),
                Query::try_from_uri(&uri),
            )
            .await)
            .await;
            match &found {
                Ok(f) => body.push_str(&events_table(f)),
                Err(e) if e.status == StatusCode::UNAUTHORIZED => return relogin(&store, &me),
                Err(e) => body.push_str(&section_error(e)),
            }
            body.push_str(
                "<p class=\"hint\">Events come from the verified trail; reading them is itself \
                 recorded (io.gatehouse.audit_access).</p>",
            );
        }
    }
    body.push_str("</section>");
    html(
        code,
        document("Audit trail", Nav::Audit, Some(&me.header()), &body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let f = parse_form(b"name=a+b&x=%3Cy%3E&empty=&flag").expect("valid");
        assert_eq!(f["name"], "a b");
        assert_eq!(f["x"], "<y>");
        assert_eq!(f["empty"], "");
        assert_eq!(f["flag"], "");
        assert!(parse_form(b"a=%zz").is_err());
        assert!(parse_form(b"a=%4").is_err());
        assert!(parse_form(b"a=%ff").is_err(), "not UTF-8");
    }

    #[test]
    fn topic_form_validation() {
        let mut f = TopicForm {
            name: "orders".into(),
            partitions: "3".into(),
            value_validation: "full".into(),
            key_validation: "none".into(),
            encryption: true,
            pan_guard: false,
        };
        let (name, parts, configs) = f.validate().expect("valid");
        assert_eq!((name.as_str(), parts), ("orders", 3));
        assert_eq!(
            configs,
            vec![
                ("gatehouse.value.schema.validation", "full".to_string()),
                ("gatehouse.encryption", "true".to_string())
            ]
        );
        for bad in ["", "a b", "<x>", ".", "..", &"x".repeat(250)] {
            f.name = bad.to_string();
            assert!(f.validate().is_err(), "{bad:?}");
        }
        f.name = "ok".into();
        for bad in ["0", "-1", "1001", "x", "1.5"] {
            f.partitions = bad.to_string();
            assert!(f.validate().is_err(), "{bad:?}");
        }
        f.partitions = String::new();
        assert_eq!(f.validate().expect("default").1, 1);
        f.value_validation = "bogus".into();
        assert!(f.validate().is_err());
    }

    #[test]
    fn audit_filters_validate_and_encode() {
        let f = AuditFilter {
            principal: "User:a b".into(),
            method: "kafka.CreateTopics".into(),
            granted: "false".into(),
            limit: String::new(),
        };
        assert_eq!(
            f.to_query().expect("valid"),
            "limit=50&principal=User%3Aa%20b&method=kafka.CreateTopics&granted=false"
        );
        for bad in [
            AuditFilter {
                limit: "0".into(),
                ..f.clone()
            },
            AuditFilter {
                limit: "501".into(),
                ..f.clone()
            },
            AuditFilter {
                method: "a<b".into(),
                ..f.clone()
            },
            AuditFilter {
                granted: "maybe".into(),
                ..f.clone()
            },
            AuditFilter {
                principal: "a\nb".into(),
                ..f.clone()
            },
        ] {
            assert!(bad.to_query().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topic_names_are_escaped_in_the_table() {
        let list = json!({"topics": [{"name": "<img src=x>", "partitions": 1, "internal": false,
            "governance": {"value_validation": "full\"><b>", "key_validation": "none",
            "encryption": true, "encryption_readers": "role", "pan_guard": false,
            "dead_letter_topic": null}}]});
        let t = topics_table(&list);
        assert!(!t.contains("<img"), "{t}");
        assert!(!t.contains("<b>"), "{t}");
        assert!(t.contains("&lt;img src&#61;x&gt;"));
        assert!(t.contains("encrypted"));
    }

    #[test]
    fn cross_origin_posts_are_detected() {
        let mut h = HeaderMap::new();
        assert!(
            !cross_origin(&h),
            "no Origin: not a cross-site browser POST"
        );
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(!cross_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(cross_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_origin(&h));
    }
}
