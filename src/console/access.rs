//! The actions of `/console/access`: create and delete users, add and remove ACLs, bind and
//! unbind roles. Like every console page they decide nothing: each POST (with the session's
//! CSRF token, through [`posted_form`]) checks its fields, then calls the admin REST handler in
//! process as the signed-in user — `POST /v1/users`, `DELETE /v1/users/{name}`,
//! `POST`/`DELETE /v1/acls`, `POST /v1/roles`, `POST /v1/roles/unbind` — so the gateway's
//! authorization and audit apply. A success leads back to the page with a note (a fixed set of
//! texts, the subject escaped); a refusal re-renders the page with the API's message (403: the
//! principal may not do it). A new user's password is never echoed, logged or kept.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::html::url_encode;
use super::session::Secret;
use super::{
    AdminState, ApiError, Me, Store, api, esc, has_control, posted_form, relogin, render_access,
    see_other, td,
};

/// Longest user name accepted.
const MAX_USER: usize = 255;
/// Longest password accepted.
const MAX_PASSWORD: usize = 1024;
/// Longest principal, resource name or host accepted.
const MAX_FIELD: usize = 255;

/// ACL resource types (Kafka's spelling, as `GET /v1/acls` answers).
const ACL_TYPES: [&str; 7] = [
    "TOPIC",
    "GROUP",
    "CLUSTER",
    "TRANSACTIONAL_ID",
    "DELEGATION_TOKEN",
    "USER",
    "SUBJECT",
];
/// ACL operations that can be bound.
const OPERATIONS: [&str; 11] = [
    "ALL",
    "READ",
    "WRITE",
    "CREATE",
    "DELETE",
    "ALTER",
    "DESCRIBE",
    "CLUSTER_ACTION",
    "DESCRIBE_CONFIGS",
    "ALTER_CONFIGS",
    "IDEMPOTENT_WRITE",
];
/// Binding pattern types.
const PATTERNS: [&str; 2] = ["LITERAL", "PREFIXED"];
/// ACL permissions.
const PERMISSIONS: [&str; 2] = ["ALLOW", "DENY"];
/// Resource types a role can be bound on (as `POST /v1/roles` takes them).
const ROLE_TYPES: [&str; 5] = ["topic", "group", "cluster", "transactional_id", "subject"];

/// Which change succeeded (the note after the redirect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    UserCreated,
    UserDeleted,
    AclAdded,
    AclRemoved,
    RoleBound,
    RoleUnbound,
}

impl Done {
    const ALL: [Done; 6] = [
        Done::UserCreated,
        Done::UserDeleted,
        Done::AclAdded,
        Done::AclRemoved,
        Done::RoleBound,
        Done::RoleUnbound,
    ];

    fn key(self) -> &'static str {
        match self {
            Done::UserCreated => "user-created",
            Done::UserDeleted => "user-deleted",
            Done::AclAdded => "acl-added",
            Done::AclRemoved => "acl-removed",
            Done::RoleBound => "role-bound",
            Done::RoleUnbound => "role-unbound",
        }
    }

    fn text(self, who: &str) -> String {
        match self {
            Done::UserCreated => format!("User {who} created."),
            Done::UserDeleted => format!("User {who} deleted (its SCRAM credentials)."),
            Done::AclAdded => format!("ACL for {who} added."),
            Done::AclRemoved => format!("ACL for {who} removed."),
            Done::RoleBound => format!("Role bound to {who}."),
            Done::RoleUnbound => format!("Role binding of {who} removed."),
        }
    }
}

/// The note a `?done=…&who=…` query stands for (the kind from a fixed set; `who` checked).
pub(super) fn done_note(query: &BTreeMap<String, String>) -> Option<(&'static str, String)> {
    let kind = query.get("done")?;
    let done = Done::ALL.into_iter().find(|d| d.key() == kind)?;
    let who = query
        .get("who")
        .map(String::as_str)
        .filter(|w| !w.is_empty() && w.len() <= MAX_FIELD && !has_control(w))?;
    Some(("ok", done.text(who)))
}

fn done(what: Done, who: &str) -> Response {
    see_other(&format!(
        "/console/access?done={}&who={}",
        what.key(),
        url_encode(who)
    ))
}

/// What a refusal of the API says on the page: a 403 names the principal that may not do it.
pub(super) fn refusal_text(what: &str, e: &ApiError, principal: &str) -> String {
    if e.status == StatusCode::FORBIDDEN {
        format!(
            "{what} was refused: your principal {principal} is not allowed to do this ({}).",
            e.message
        )
    } else if e.status.is_client_error() {
        format!("{what} was refused: {}", e.message)
    } else {
        format!("{what} failed: {}", e.message)
    }
}

/// The status a refusal is shown with (server-side failures as 502).
pub(super) fn shown_status(e: &ApiError) -> StatusCode {
    if e.status.is_client_error() {
        e.status
    } else {
        StatusCode::BAD_GATEWAY
    }
}

/// A trimmed form field.
fn field(f: &BTreeMap<String, String>, k: &str) -> String {
    f.get(k).map(|v| v.trim().to_string()).unwrap_or_default()
}

/// Checks a free-text field: present (unless `optional`), bounded, no control characters.
fn checked(label: &str, value: &str, max: usize, optional: bool) -> Result<(), String> {
    if value.is_empty() && !optional {
        return Err(format!("Enter the {label}."));
    }
    if value.len() > max {
        return Err(format!("The {label} is longer than {max} characters."));
    }
    if has_control(value) {
        return Err(format!("The {label} contains control characters."));
    }
    Ok(())
}

/// Normalizes a name for comparison with a list (`transactional-id` = `TRANSACTIONAL_ID`).
fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The entry of `list` that `value` names (any case, `_`/`-` optional), or what is wrong.
fn one_of(label: &str, value: &str, list: &[&'static str]) -> Result<&'static str, String> {
    let wanted = norm(value);
    list.iter()
        .copied()
        .find(|v| norm(v) == wanted)
        .ok_or_else(|| format!("The {label} must be one of {}.", list.join(", ")))
}

/// A principal `Type:name`.
fn principal(value: &str) -> Result<(), String> {
    checked("principal", value, MAX_FIELD, false)?;
    match value.split_once(':') {
        Some((t, n)) if !t.is_empty() && !n.is_empty() => Ok(()),
        _ => Err("The principal must be Type:name, e.g. User:alice.".into()),
    }
}

/// A user name.
fn user_name(value: &str) -> Result<(), String> {
    checked("user name", value, MAX_USER, false)?;
    if value.contains([',', '=', ':', ' ']) {
        return Err("A user name may not contain spaces, ',', '=' or ':'.".into());
    }
    Ok(())
}

/// The JSON body of an ACL form (add or remove), or what is wrong.
fn acl_body(f: &BTreeMap<String, String>) -> Result<Value, String> {
    let p = field(f, "principal");
    principal(&p)?;
    let rtype = one_of("resource type", &field(f, "resource_type"), &ACL_TYPES)?;
    let name = field(f, "resource_name");
    checked("resource name", &name, MAX_FIELD, rtype == "CLUSTER")?;
    let pattern = match field(f, "pattern_type").as_str() {
        "" => "LITERAL",
        v => one_of("pattern type", v, &PATTERNS)?,
    };
    let op = one_of("operation", &field(f, "operation"), &OPERATIONS)?;
    let perm = match field(f, "permission").as_str() {
        "" => "ALLOW",
        v => one_of("permission", v, &PERMISSIONS)?,
    };
    let host = match field(f, "host") {
        h if h.is_empty() => "*".to_string(),
        h => h,
    };
    checked("host", &host, 64, false)?;
    if host != "*" && host.parse::<std::net::IpAddr>().is_err() {
        return Err("The host must be * or an IP address.".into());
    }
    let mut body = json!({
        "principal": p, "resource_type": rtype, "pattern_type": pattern,
        "operation": op, "permission": perm, "host": host,
    });
    if !name.is_empty() {
        body["resource_name"] = Value::String(name);
    }
    Ok(body)
}

/// The JSON body of a role form (bind or unbind), or what is wrong.
fn role_body(f: &BTreeMap<String, String>) -> Result<Value, String> {
    let p = field(f, "principal");
    principal(&p)?;
    let role = one_of("role", &field(f, "role"), &gatehouse_policy::acl::ROLES)?;
    let rtype = one_of("resource type", &field(f, "resource_type"), &ROLE_TYPES)?;
    let name = field(f, "resource_name");
    checked("resource name", &name, MAX_FIELD, false)?;
    let pattern = match field(f, "pattern_type").as_str() {
        "" => "LITERAL",
        v => one_of("pattern type", v, &PATTERNS)?,
    };
    Ok(json!({
        "principal": p, "role": role, "resource_type": rtype,
        "resource_name": name, "pattern_type": pattern.to_ascii_lowercase(),
    }))
}

/// The page again, with an error note.
async fn again(
    s: &AdminState,
    store: &Store,
    me: &Me,
    peer: SocketAddr,
    m: String,
    status: StatusCode,
) -> Response {
    render_access(s, store, me, peer, Some(("error", m)), status).await
}

/// The answer to an API call: the redirect with a note, or the page with the refusal.
#[allow(clippy::too_many_arguments)]
async fn answer(
    s: &AdminState,
    store: &Store,
    me: &Me,
    peer: SocketAddr,
    r: Response,
    what: &str,
    ok: Done,
    who: &str,
) -> Response {
    match api(r).await {
        Ok(_) => done(ok, who),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(store, me),
        Err(e) => {
            let m = refusal_text(what, &e, &me.session.principal);
            again(s, store, me, peer, m, shown_status(&e)).await
        }
    }
}

/// `POST /console/access/users` (`name`, `password`): `POST /v1/users`.
pub(super) async fn create_user(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (me, mut f) = match posted_form(&store, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let password = Secret::new(f.remove("password").unwrap_or_default());
    let name = field(&f, "name");
    let invalid = user_name(&name).err().or_else(|| {
        let p = password.expose();
        if p.is_empty() {
            Some("Enter a password for the new user.".to_string())
        } else if p.len() > MAX_PASSWORD {
            Some(format!(
                "The password is longer than {MAX_PASSWORD} characters."
            ))
        } else if has_control(p) {
            Some("The password contains control characters.".to_string())
        } else {
            None
        }
    });
    if let Some(m) = invalid {
        return again(&s, &store, &me, peer, m, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let request = Secret::new(json!({ "name": name, "password": password.expose() }).to_string());
    drop(password);
    let r = super::super::users::create(
        State(s.clone()),
        ConnectInfo(peer),
        me.auth(),
        Bytes::copy_from_slice(request.expose().as_bytes()),
    )
    .await;
    drop(request);
    answer(
        &s,
        &store,
        &me,
        peer,
        r,
        "Creating the user",
        Done::UserCreated,
        &name,
    )
    .await
}

/// `POST /console/access/users/delete` (`name`, `confirm` = the name typed again):
/// `DELETE /v1/users/{name}`.
pub(super) async fn delete_user(
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
    let name = field(&f, "name");
    if let Err(m) = checked("user name", &name, MAX_USER, false) {
        return again(&s, &store, &me, peer, m, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    if field(&f, "confirm") != name {
        let m = format!(
            "To delete the user, type its name ({name}) exactly in the confirmation field. Nothing was deleted."
        );
        return again(&s, &store, &me, peer, m, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let r = super::super::users::delete(
        State(s.clone()),
        ConnectInfo(peer),
        Path(name.clone()),
        me.auth(),
    )
    .await;
    answer(
        &s,
        &store,
        &me,
        peer,
        r,
        "Deleting the user",
        Done::UserDeleted,
        &name,
    )
    .await
}

/// `POST /console/access/acls` (principal, resource type and name, pattern type, operation,
/// permission, host): `POST /v1/acls`; `POST /console/access/acls/delete` with the same
/// fields: `DELETE /v1/acls`.
async fn acl_change(
    s: AdminState,
    store: Store,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Bytes,
    add: bool,
) -> Response {
    let (me, f) = match posted_form(&store, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let request = match acl_body(&f) {
        Ok(b) => b,
        Err(m) => {
            return again(&s, &store, &me, peer, m, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let who = field(&f, "principal");
    let bytes = Bytes::from(request.to_string());
    let (state, auth) = (State(s.clone()), me.auth());
    let r = if add {
        super::super::acls::create(state, ConnectInfo(peer), auth, bytes).await
    } else {
        super::super::acls::delete(state, ConnectInfo(peer), auth, bytes).await
    };
    let (what, ok) = if add {
        ("Adding the ACL", Done::AclAdded)
    } else {
        ("Removing the ACL", Done::AclRemoved)
    };
    answer(&s, &store, &me, peer, r, what, ok, &who).await
}

pub(super) async fn add_acl(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    acl_change(s, store, peer, headers, body, true).await
}

pub(super) async fn remove_acl(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    acl_change(s, store, peer, headers, body, false).await
}

/// `POST /console/access/roles` (principal, role, resource type and name, pattern type):
/// `POST /v1/roles`; `POST /console/access/roles/unbind`: `POST /v1/roles/unbind`.
async fn role_change(
    s: AdminState,
    store: Store,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Bytes,
    bind: bool,
) -> Response {
    let (me, f) = match posted_form(&store, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let request = match role_body(&f) {
        Ok(b) => b,
        Err(m) => {
            return again(&s, &store, &me, peer, m, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let who = field(&f, "principal");
    let bytes = Bytes::from(request.to_string());
    let (state, auth) = (State(s.clone()), me.auth());
    let r = if bind {
        super::super::bind_role(state, ConnectInfo(peer), auth, bytes).await
    } else {
        super::super::unbind_role(state, ConnectInfo(peer), auth, bytes).await
    };
    let (what, ok) = if bind {
        ("Binding the role", Done::RoleBound)
    } else {
        ("Removing the role binding", Done::RoleUnbound)
    };
    answer(&s, &store, &me, peer, r, what, ok, &who).await
}

pub(super) async fn bind_role(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    role_change(s, store, peer, headers, body, true).await
}

pub(super) async fn unbind_role(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    role_change(s, store, peer, headers, body, false).await
}

// ---------------------------------------------------------------------------------------------
// Form HTML (used by the access page)
// ---------------------------------------------------------------------------------------------

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
        esc(value)
    )
}

fn select(name: &str, id: &str, options: &[&str], selected: &str) -> String {
    let mut out = format!("<select name=\"{name}\" id=\"{id}\">");
    for o in options {
        let sel = if *o == selected { " selected" } else { "" };
        out.push_str(&format!(
            "<option value=\"{}\"{sel}>{}</option>",
            esc(o),
            esc(o)
        ));
    }
    out.push_str("</select>");
    out
}

/// A list table whose rows end with an action cell (already-escaped HTML).
pub(super) fn action_table(
    id: &str,
    heads: &[&str],
    rows: &[(Vec<String>, String)],
    empty: &str,
) -> String {
    if rows.is_empty() {
        return format!("<p>{}</p>", esc(empty));
    }
    let mut out = format!("<table class=\"list\" id=\"{id}\"><thead><tr>");
    for h in heads {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("<th></th></tr></thead><tbody>");
    for (cells, action) in rows {
        out.push_str(&format!(
            "<tr data-row=\"{}\">",
            esc(&cells.first().cloned().unwrap_or_default())
        ));
        for c in cells {
            out.push_str(&td(c));
        }
        out.push_str(&format!("<td class=\"action\">{action}</td></tr>"));
    }
    out.push_str("</tbody></table>");
    out
}

/// The delete form of a user row (the name typed again).
pub(super) fn delete_user_form(csrf: &str, name: &str) -> String {
    format!(
        "<form class=\"inline delete-user\" method=\"post\" action=\"/console/access/users/delete\">\
         {}{}<input name=\"confirm\" aria-label=\"Type the user name to confirm\" \
         placeholder=\"type {} to confirm\" autocomplete=\"off\" required maxlength=\"{MAX_USER}\">\
         <button type=\"submit\" class=\"danger\">Delete</button></form>",
        hidden("csrf", csrf),
        hidden("name", name),
        esc(name)
    )
}

/// The remove form of an ACL row (`a`: one entry of `GET /v1/acls`).
pub(super) fn remove_acl_form(csrf: &str, a: &Value) -> String {
    let mut out = String::from(
        "<form class=\"inline remove-acl\" method=\"post\" action=\"/console/access/acls/delete\">",
    );
    out.push_str(&hidden("csrf", csrf));
    for k in [
        "principal",
        "host",
        "resource_type",
        "resource_name",
        "pattern_type",
        "operation",
        "permission",
    ] {
        out.push_str(&hidden(k, a.get(k).and_then(Value::as_str).unwrap_or("")));
    }
    out.push_str("<button type=\"submit\" class=\"danger\">Remove</button></form>");
    out
}

/// The unbind form of a role-binding row (`b`: one entry of `GET /v1/roles`).
pub(super) fn unbind_form(csrf: &str, b: &Value) -> String {
    let mut out = String::from(
        "<form class=\"inline unbind-role\" method=\"post\" action=\"/console/access/roles/unbind\">",
    );
    out.push_str(&hidden("csrf", csrf));
    for k in [
        "principal",
        "role",
        "resource_type",
        "resource_name",
        "pattern_type",
    ] {
        out.push_str(&hidden(k, b.get(k).and_then(Value::as_str).unwrap_or("")));
    }
    out.push_str("<button type=\"submit\" class=\"danger\">Unbind</button></form>");
    out
}

/// The create-user, add-ACL and bind-role forms.
pub(super) fn forms(csrf: &str, roles: &[String]) -> String {
    let roles: Vec<&str> = if roles.is_empty() {
        gatehouse_policy::acl::ROLES.to_vec()
    } else {
        roles.iter().map(String::as_str).collect()
    };
    format!(
        "<div class=\"grid\">\
         <form class=\"card\" id=\"create-user\" method=\"post\" action=\"/console/access/users\">\
         <h2>Create a user</h2>{csrf}\
         <label>User name <input name=\"name\" id=\"user-name\" required maxlength=\"{MAX_USER}\" \
         autocomplete=\"off\"></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"user-password\" required \
         maxlength=\"{MAX_PASSWORD}\" autocomplete=\"new-password\"></label>\
         <button type=\"submit\">Create user</button>\
         <p class=\"hint\">SCRAM-SHA-256 and SCRAM-SHA-512 credentials; the password is salted \
         on the server and never shown again.</p></form>\
         <form class=\"card\" id=\"add-acl\" method=\"post\" action=\"/console/access/acls\">\
         <h2>Add an ACL</h2>{csrf}\
         <label>Principal <input name=\"principal\" id=\"acl-principal\" required \
         maxlength=\"{MAX_FIELD}\" placeholder=\"User:alice\"></label>\
         <label>Resource type {}</label>\
         <label>Resource name <input name=\"resource_name\" id=\"acl-resource-name\" \
         maxlength=\"{MAX_FIELD}\" placeholder=\"orders (empty for the cluster)\"></label>\
         <label>Pattern type {}</label>\
         <label>Operation {}</label>\
         <label>Permission {}</label>\
         <label>Host <input name=\"host\" id=\"acl-host\" value=\"*\" maxlength=\"64\"></label>\
         <button type=\"submit\">Add ACL</button></form>\
         <form class=\"card\" id=\"bind-role\" method=\"post\" action=\"/console/access/roles\">\
         <h2>Bind a role</h2>{csrf}\
         <label>Principal <input name=\"principal\" id=\"role-principal\" required \
         maxlength=\"{MAX_FIELD}\" placeholder=\"User:alice\"></label>\
         <label>Role {}</label>\
         <label>Resource type {}</label>\
         <label>Resource name <input name=\"resource_name\" id=\"role-resource-name\" required \
         maxlength=\"{MAX_FIELD}\" placeholder=\"orders\"></label>\
         <label>Pattern type {}</label>\
         <button type=\"submit\">Bind role</button></form></div>",
        select("resource_type", "acl-resource-type", &ACL_TYPES, "TOPIC"),
        select("pattern_type", "acl-pattern-type", &PATTERNS, "LITERAL"),
        select("operation", "acl-operation", &OPERATIONS, "READ"),
        select("permission", "acl-permission", &PERMISSIONS, "ALLOW"),
        select("role", "role-role", &roles, ""),
        select("resource_type", "role-resource-type", &ROLE_TYPES, "topic"),
        select("pattern_type", "role-pattern-type", &PATTERNS, "LITERAL"),
        csrf = hidden("csrf", csrf),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn acl_forms_are_validated() {
        let ok = [
            ("principal", "User:bob"),
            ("resource_type", "topic"),
            ("resource_name", "orders"),
            ("pattern_type", "PREFIXED"),
            ("operation", "describe_configs"),
            ("permission", "deny"),
            ("host", ""),
        ];
        let b = acl_body(&form(&ok)).expect("valid");
        assert_eq!(b["resource_type"], "TOPIC");
        assert_eq!(b["operation"], "DESCRIBE_CONFIGS");
        assert_eq!(b["permission"], "DENY");
        assert_eq!(b["host"], "*");
        let cluster = form(&[
            ("principal", "User:bob"),
            ("resource_type", "CLUSTER"),
            ("operation", "ALTER"),
        ]);
        assert!(
            acl_body(&cluster)
                .expect("valid")
                .get("resource_name")
                .is_none()
        );
        for (k, bad) in [
            ("principal", "bob"),
            ("principal", ""),
            ("resource_type", "ANY"),
            ("resource_name", ""),
            ("operation", "ANY"),
            ("operation", "fly"),
            ("permission", "maybe"),
            ("pattern_type", "MATCH"),
            ("host", "example.com"),
            ("resource_name", "a\nb"),
        ] {
            let mut f = form(&ok);
            f.insert(k.to_string(), bad.to_string());
            assert!(acl_body(&f).is_err(), "{k}={bad:?}");
        }
    }

    #[test]
    fn role_forms_are_validated() {
        let ok = [
            ("principal", "User:bob"),
            ("role", "developer-read"),
            ("resource_type", "TransactionalId"),
            ("resource_name", "tx"),
        ];
        let b = role_body(&form(&ok)).expect("valid");
        assert_eq!(b["resource_type"], "transactional_id");
        assert_eq!(b["pattern_type"], "literal");
        for (k, bad) in [
            ("role", "superuser"),
            ("resource_type", "delegation_token"),
            ("resource_name", ""),
            ("principal", "nobody"),
        ] {
            let mut f = form(&ok);
            f.insert(k.to_string(), bad.to_string());
            assert!(role_body(&f).is_err(), "{k}={bad:?}");
        }
    }

    #[test]
    fn user_names_and_notes() {
        assert!(user_name("alice_1").is_ok());
        for bad in ["", "a b", "a,b", "a=b", "a\tb", &"x".repeat(256)] {
            assert!(user_name(bad).is_err(), "{bad:?}");
        }
        let q = form(&[("done", "user-created"), ("who", "<b>")]);
        let (kind, text) = done_note(&q).expect("note");
        assert_eq!((kind, text.as_str()), ("ok", "User <b> created."));
        assert!(done_note(&form(&[("done", "<script>"), ("who", "x")])).is_none());
        assert!(done_note(&form(&[("done", "acl-added"), ("who", "a\nb")])).is_none());
    }

    #[test]
    fn refusals_name_the_principal() {
        let e = ApiError {
            status: StatusCode::FORBIDDEN,
            message: "CLUSTER_AUTHORIZATION_FAILED".into(),
        };
        let t = refusal_text("Creating the user", &e, "User:bob");
        assert!(t.contains("User:bob is not allowed") && t.contains("CLUSTER_AUTHORIZATION"));
        let e = ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "bad".into(),
        };
        assert_eq!(refusal_text("X", &e, "p"), "X was refused: bad");
    }

    #[test]
    fn row_forms_escape_and_carry_the_token() {
        let a = json!({"principal": "User:\"><b>", "host": "*", "resource_type": "TOPIC",
            "resource_name": "t", "pattern_type": "LITERAL", "operation": "READ",
            "permission": "ALLOW"});
        let h = remove_acl_form("tok", &a);
        assert!(
            !h.contains("<b>") && h.contains("User:&quot;&gt;&lt;b&gt;"),
            "{h}"
        );
        assert!(h.contains("name=\"csrf\" value=\"tok\""));
        let h = delete_user_form("tok", "<i>");
        assert!(!h.contains("<i>"), "{h}");
        let f = forms("tok", &[]);
        assert!(f.contains("plaintext-reader") && f.contains("id=\"create-user\""));
        assert!(!f.contains("value=\"\" name=\"password\""));
    }
}
