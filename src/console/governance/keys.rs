//! `/console/keys…`: the key vault's keys (KEKs) through `/v1/keys…`, as the signed-in user.
//! Lists, details with the rotation history, create, rotate, retire, and destroy with the
//! key's name typed again (the API's confirmation token).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::super::html::url_encode;
use super::super::{
    AdminState, ApiError, Me, Nav, Store, api, current, document, esc, html, message, parse_form,
    posted_form, relogin, section_error, see_other, table, td, text,
};
use super::checked;

/// Longest key name accepted (a topic name, or a prefix and `*`).
const MAX_KEY_NAME: usize = 250;

/// Which change a POST makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Rotate,
    Retire,
    Destroy,
}

impl Change {
    fn done(self) -> &'static str {
        match self {
            Change::Rotate => "rotated",
            Change::Retire => "retired",
            Change::Destroy => "destroyed",
        }
    }
}

/// The note a `?done=` query stands for (a fixed set: nothing from the URL is echoed).
fn done_note(query: &BTreeMap<String, String>, name: &str) -> Option<(&'static str, String)> {
    let what = match query.get("done").map(String::as_str) {
        Some("created") => "created",
        Some("rotated") => {
            "rotated: new data keys are wrapped by the new version, older versions keep decrypting"
        }
        Some("retired") => "retired: it decrypts but no longer encrypts",
        Some("destroyed") => {
            "destroyed: every version is shredded and nothing encrypted under it can be read again"
        }
        _ => return None,
    };
    Some(("ok", format!("Key {name} {what}.")))
}

/// Checks a key name from a path or a form.
fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Enter a key name: a topic (payments) or a template (orders-*, *).".into());
    }
    checked("The key name", name, MAX_KEY_NAME)?;
    let body = name.strip_suffix('*').unwrap_or(name);
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(
            "A key name is a topic name (letters, digits, '.', '_', '-') or such a prefix followed by one '*'."
                .into(),
        );
    }
    Ok(())
}

fn state_badge(state: &str) -> String {
    let class = match state {
        "active" => "ok",
        "retired" => "warn",
        "destroyed" => "bad",
        _ => "off",
    };
    format!(
        "<span class=\"badge {class} key-state\">{}</span>",
        esc(state)
    )
}

fn link(name: &str) -> String {
    format!("/console/keys/{}", url_encode(name))
}

/// The keys table.
fn keys_table(list: &Value) -> String {
    let keys = list
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if keys.is_empty() {
        return "<p id=\"no-keys\">No keys yet. Keys are created when an encrypted topic is \
                first written, or with the form below.</p>"
            .to_string();
    }
    let mut out = String::from(
        "<table class=\"list\" id=\"keys\"><thead><tr><th>Key</th><th>State</th>\
         <th>Current version</th><th>Versions</th><th>KMS</th><th>Created</th>\
         <th>Last rotated</th><th>Id</th></tr></thead><tbody>",
    );
    for k in &keys {
        let name = text(k, "name");
        let versions = k
            .get("versions")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        out.push_str(&format!(
            "<tr data-key=\"{}\"><td class=\"name\"><a href=\"{}\">{}</a></td><td>{}</td>{}{}{}{}{}<td class=\"muted\">{}</td></tr>",
            esc(&name),
            esc(&link(&name)),
            esc(&name),
            state_badge(&text(k, "state")),
            td(&text(k, "current_version")),
            td(&versions.to_string()),
            td(&text(k, "kms")),
            td(&text(k, "created")),
            td(&text(k, "rotated")),
            esc(&text(k, "id")),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

fn create_form(csrf: &str, name: &str) -> String {
    format!(
        "<form class=\"card\" id=\"create-key\" method=\"post\" action=\"/console/keys\">\
         <h2>Create a key</h2>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Topic or template <input name=\"name\" id=\"key-name\" value=\"{}\" required \
         maxlength=\"{MAX_KEY_NAME}\" placeholder=\"payments or orders-*\"></label>\
         <button type=\"submit\">Create key</button>\
         <p class=\"hint\">A key encrypts the topics its name covers (gatehouse.encryption=true); \
         the KMS holds the key material, the console never sees it.</p></form>",
        esc(csrf),
        esc(name)
    )
}

async fn render_list(
    s: &AdminState,
    store: &Store,
    me: &Me,
    peer: SocketAddr,
    note: Option<(&str, String)>,
    name: &str,
    status: StatusCode,
) -> Response {
    let list =
        api(crate::admin::list_keys(State(s.clone()), ConnectInfo(peer), me.auth()).await).await;
    if matches!(&list, Err(e) if e.status == StatusCode::UNAUTHORIZED) {
        return relogin(store, me);
    }
    let mut body = note.map(|(k, m)| message(k, &m)).unwrap_or_default();
    body.push_str("<section class=\"card wide\"><h2>Keys</h2>");
    match &list {
        Ok(l) => body.push_str(&keys_table(l)),
        Err(e) => body.push_str(&section_error(e)),
    }
    body.push_str("</section>");
    body.push_str(&create_form(&me.session.csrf, name));
    html(
        status,
        document("Keys", Nav::Keys, Some(&me.header()), &body),
    )
}

/// `GET /console/keys`.
pub(super) async fn list(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    render_list(&s, &store, &me, peer, None, "", StatusCode::OK).await
}

/// The status an API refusal is shown with (server-side failures as 502).
fn shown_status(e: &ApiError) -> StatusCode {
    if e.status.is_client_error() {
        e.status
    } else {
        StatusCode::BAD_GATEWAY
    }
}

/// `POST /console/keys`: creates a key through `POST /v1/keys`.
pub(super) async fn create(
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
    let name = f
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if let Err(m) = valid_name(&name) {
        let note = Some(("error", m));
        return render_list(
            &s,
            &store,
            &me,
            peer,
            note,
            &name,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let created = api(crate::admin::create_key(
        State(s.clone()),
        ConnectInfo(peer),
        me.auth(),
        Bytes::from(json!({ "name": name }).to_string()),
    )
    .await)
    .await;
    match created {
        Ok(_) => see_other(&format!("{}?done=created", link(&name))),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(&store, &me),
        Err(e) => {
            let note = Some(("error", format!("The key was not created: {}", e.message)));
            render_list(&s, &store, &me, peer, note, &name, shown_status(&e)).await
        }
    }
}

/// The key's details, history and forms.
fn detail_html(k: &Value, csrf: &str) -> String {
    let name = text(k, "name");
    let state = text(k, "state");
    let mut out =
        String::from("<section class=\"card wide\" id=\"key\"><h2>Key</h2><table class=\"kv\">");
    for (label, value) in [
        ("Name", esc(&name)),
        ("State", state_badge(&state)),
        ("Current version", esc(&text(k, "current_version"))),
        ("KMS", esc(&text(k, "kms"))),
        ("Created", esc(&text(k, "created"))),
        ("Last rotated", esc(&text(k, "rotated"))),
        ("Id", esc(&text(k, "id"))),
    ] {
        out.push_str(&format!("<tr><th>{}</th><td>{value}</td></tr>", esc(label)));
    }
    out.push_str("</table></section>");
    // Rotation history: each version, when and by whom.
    let versions: BTreeMap<String, Value> = k
        .get("versions")
        .and_then(Value::as_array)
        .map(|vs| vs.iter().map(|v| (text(v, "version"), v.clone())).collect())
        .unwrap_or_default();
    let history: Vec<Vec<String>> = k
        .get("history")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let v = versions
                        .get(&text(h, "version"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    let by = match h.get("by").and_then(Value::as_str) {
                        Some(b) => b.to_string(),
                        None => "— (the gateway, or not recorded)".to_string(),
                    };
                    let destroyed = if v.get("destroyed").and_then(Value::as_bool) == Some(true) {
                        "yes"
                    } else {
                        "no"
                    };
                    vec![
                        text(h, "version"),
                        text(h, "action"),
                        text(h, "time"),
                        by,
                        text(&v, "kms_key"),
                        destroyed.to_string(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str("<section class=\"card wide\"><h2>Rotation history</h2>");
    out.push_str(&table(
        "key-history",
        &["Version", "Event", "When", "By", "KMS key", "Destroyed"],
        &history,
        "No versions.",
    ));
    out.push_str(
        "<p class=\"hint\">Each rotation adds a version: new data keys are wrapped by the newest, \
         older versions keep decrypting what they wrapped. Every change is also in the audit \
         trail (io.gatehouse.key).</p></section>",
    );
    if let Some(prev) = k
        .get("previous")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    {
        let rows: Vec<Vec<String>> = prev
            .iter()
            .map(|p| {
                let created = p
                    .get("created_ms")
                    .and_then(Value::as_i64)
                    .map(|ms| {
                        gatehouse_compliance::Timestamp::from_unix_micros(ms.saturating_mul(1000))
                            .to_rfc3339()
                    })
                    .unwrap_or_else(|| "—".to_string());
                vec![text(p, "id"), text(p, "state"), created]
            })
            .collect();
        out.push_str("<section class=\"card wide\"><h2>Earlier keys of this name</h2>");
        out.push_str(&table(
            "key-previous",
            &["Id", "State", "Created"],
            &rows,
            "",
        ));
        out.push_str("</section>");
    }
    let action = |what: &str| format!("{}/{what}", link(&name));
    out.push_str("<div class=\"grid\">");
    if state == "active" {
        out.push_str(&format!(
            "<form class=\"card\" id=\"rotate-key\" method=\"post\" action=\"{}\">\
             <h2>Rotate</h2><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <p class=\"hint\">Adds a version; nothing already written is re-encrypted.</p>\
             <button type=\"submit\">Rotate key</button></form>",
            esc(&action("rotate")),
            esc(csrf)
        ));
        out.push_str(&format!(
            "<form class=\"card\" id=\"retire-key\" method=\"post\" action=\"{}\">\
             <h2>Retire</h2><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <p class=\"hint\">Stops new encryption under this key; reading continues.</p>\
             <button type=\"submit\">Retire key</button></form>",
            esc(&action("retire")),
            esc(csrf)
        ));
    }
    if state != "destroyed" {
        out.push_str(&format!(
            "<form class=\"card danger\" id=\"destroy-key\" method=\"post\" action=\"{}\">\
             <h2>Destroy (crypto-shredding)</h2><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <p>Destroys every version in the KMS: <strong>nothing encrypted under this key can \
             ever be read again</strong>. This cannot be undone.</p>\
             <label>Type the key's name, <code>{}</code>, to confirm \
             <input name=\"confirm\" id=\"confirm\" autocomplete=\"off\" required \
             maxlength=\"{MAX_KEY_NAME}\"></label>\
             <button type=\"submit\" class=\"danger\">Destroy key</button></form>",
            esc(&action("destroy")),
            esc(csrf),
            esc(&name)
        ));
    }
    out.push_str("</div>");
    out
}

async fn render_detail(
    s: &AdminState,
    store: &Store,
    me: &Me,
    peer: SocketAddr,
    name: &str,
    note: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let mut body = String::from("<p><a href=\"/console/keys\">All keys</a></p>");
    body.push_str(&note.map(|(k, m)| message(k, &m)).unwrap_or_default());
    let mut status = status;
    if let Err(m) = valid_name(name) {
        body.push_str(&message("error", &m));
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            document("Key", Nav::Keys, Some(&me.header()), &body),
        );
    }
    let key = api(crate::admin::key_status(
        State(s.clone()),
        ConnectInfo(peer),
        Path(name.to_string()),
        me.auth(),
    )
    .await)
    .await;
    match &key {
        Ok(k) => body.push_str(&detail_html(k, &me.session.csrf)),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return relogin(store, me),
        Err(e) => {
            if status == StatusCode::OK {
                status = shown_status(e);
            }
            body.push_str(&section_error(e));
        }
    }
    html(
        status,
        document(&format!("Key {name}"), Nav::Keys, Some(&me.header()), &body),
    )
}

/// `GET /console/keys/{name}[?done=…]`.
pub(super) async fn detail(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let query = parse_form(uri.query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let note = done_note(&query, &name);
    render_detail(&s, &store, &me, peer, &name, note, StatusCode::OK).await
}

async fn change(
    s: AdminState,
    store: Store,
    peer: SocketAddr,
    name: String,
    headers: HeaderMap,
    body: Bytes,
    what: Change,
) -> Response {
    let (me, f) = match posted_form(&store, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if let Err(m) = valid_name(&name) {
        return render_detail(
            &s,
            &store,
            &me,
            peer,
            &name,
            Some(("error", m)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let request = if what == Change::Destroy {
        let typed = f
            .get("confirm")
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        if typed != name {
            let m = format!(
                "To destroy the key, type its name ({name}) exactly in the confirmation field. Nothing was destroyed."
            );
            return render_detail(
                &s,
                &store,
                &me,
                peer,
                &name,
                Some(("error", m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        json!({ "confirm": typed })
    } else {
        json!({})
    };
    let (auth, state, path) = (me.auth(), State(s.clone()), Path(name.clone()));
    let request = Bytes::from(request.to_string());
    let answer = match what {
        Change::Rotate => {
            crate::admin::rotate_key(state, ConnectInfo(peer), path, auth, request).await
        }
        Change::Retire => {
            crate::admin::retire_key(state, ConnectInfo(peer), path, auth, request).await
        }
        Change::Destroy => {
            crate::admin::destroy_key(state, ConnectInfo(peer), path, auth, request).await
        }
    };
    match api(answer).await {
        Ok(_) => see_other(&format!("{}?done={}", link(&name), what.done())),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(&store, &me),
        Err(e) => {
            let m = format!("The key was not {}: {}", what.done(), e.message);
            render_detail(
                &s,
                &store,
                &me,
                peer,
                &name,
                Some(("error", m)),
                shown_status(&e),
            )
            .await
        }
    }
}

/// `POST /console/keys/{name}/rotate`.
pub(super) async fn rotate(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(s, store, peer, name, headers, body, Change::Rotate).await
}

/// `POST /console/keys/{name}/retire`.
pub(super) async fn retire(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(s, store, peer, name, headers, body, Change::Retire).await
}

/// `POST /console/keys/{name}/destroy` (with `confirm` = the key's name).
pub(super) async fn destroy(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(s, store, peer, name, headers, body, Change::Destroy).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_validated() {
        for ok in ["payments", "orders-*", "*", "a.b_c-1"] {
            assert!(valid_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a*b", "**", "<x>", "a\nb", &"x".repeat(251)] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn notes_come_from_a_fixed_set() {
        let mut q = BTreeMap::new();
        q.insert("done".to_string(), "rotated".to_string());
        let (kind, text) = done_note(&q, "k").expect("note");
        assert_eq!(kind, "ok");
        assert!(text.starts_with("Key k rotated"));
        q.insert("done".to_string(), "<script>".to_string());
        assert!(done_note(&q, "k").is_none());
    }

    #[test]
    fn the_detail_shows_history_and_escapes() {
        let k = json!({
            "name": "pay<b>", "id": "abc", "state": "active", "kms": "local",
            "current_version": 2, "created": "2025-01-01T00:00:00.000000Z",
            "rotated": "2025-01-02T00:00:00.000000Z",
            "versions": [
                {"version": 1, "kms_key": "local-1", "destroyed": false},
                {"version": 2, "kms_key": "local-2", "destroyed": false}
            ],
            "history": [
                {"version": 1, "action": "created", "time": "t1", "by": null},
                {"version": 2, "action": "rotated", "time": "t2", "by": "User:<i>ops</i>"}
            ],
            "previous": []
        });
        let h = detail_html(&k, "tok");
        assert!(!h.contains("<b>") && !h.contains("<i>"), "{h}");
        assert!(h.contains("id=\"key-history\""));
        assert!(h.contains("User:&lt;i&gt;ops&lt;/i&gt;"));
        assert!(h.contains("the gateway, or not recorded"));
        assert!(h.contains("id=\"rotate-key\"") && h.contains("id=\"destroy-key\""));
        assert!(h.contains("/console/keys/pay%3Cb%3E/rotate"), "{h}");
        let destroyed = json!({"name": "x", "state": "destroyed", "versions": [], "history": []});
        let h = detail_html(&destroyed, "tok");
        assert!(!h.contains("rotate-key") && !h.contains("destroy-key"));
        let list = json!({"keys": [k]});
        let t = keys_table(&list);
        assert!(t.contains("data-key=\"pay&lt;b&gt;\"") && t.contains("badge ok"));
    }
}
