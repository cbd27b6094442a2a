//! `GET /console/topics/{name}` (the topic's page) and `GET /console/topics/{name}/messages`
//! (the message browser), both through the admin REST handlers as the user.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use super::super::access::{refusal_text, shown_status};
use super::super::html::{
    Nav, document, error_page, esc, html, message, see_other, td, url_encode,
};
use super::super::{
    AdminState, ApiError, Me, Store, api, current, governance_cells, has_control, parse_form,
    posted_form, relogin, section_error, text,
};
use super::{time_of_millis, topic_name_ok};

/// Characters of a key or value shown in a table cell (the rest is cut with "…").
const CELL_CHARS: usize = 400;
/// Longest config name accepted.
const MAX_CONFIG_KEY: usize = 255;
/// Longest config value accepted.
const MAX_CONFIG_VALUE: usize = 4096;

/// The topic's description (`GET /v1/topics/{name}`) as the user.
async fn describe(
    s: &AdminState,
    me: &Me,
    peer: SocketAddr,
    name: &str,
) -> Result<Value, ApiError> {
    api(super::super::super::topics::describe(
        State(s.clone()),
        ConnectInfo(peer),
        Path(name.to_string()),
        me.auth(),
    )
    .await)
    .await
}

/// The page for an API refusal of the whole topic (unknown, not allowed, unreachable).
fn refusal(me: &Me, name: &str, e: &ApiError) -> Response {
    let status = if e.status.is_client_error() {
        e.status
    } else {
        StatusCode::BAD_GATEWAY
    };
    let lead = match e.status {
        StatusCode::NOT_FOUND => format!("There is no topic named {name}"),
        StatusCode::FORBIDDEN => format!("You may not see the topic {name}"),
        _ => format!("The topic {name} cannot be shown"),
    };
    error_page(
        status,
        Some(&me.header()),
        &format!("{lead}: {}", e.message),
    )
}

/// `GET /console/topics/{name}[?done=set|unset&config=KEY]`.
pub(super) async fn topic_page(
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
    let note = config_note(&query);
    render_topic(&s, &store, &me, peer, &name, note, StatusCode::OK).await
}

/// The note a `?done=set|unset&config=KEY` query stands for (a fixed text, the key checked).
fn config_note(query: &BTreeMap<String, String>) -> Option<(&'static str, String)> {
    let key = query.get("config").filter(|k| config_key_ok(k).is_ok())?;
    match query.get("done").map(String::as_str) {
        Some("set") => Some(("ok", format!("Config {key} set."))),
        Some("unset") => Some((
            "ok",
            format!("The override of {key} was deleted: the default applies again."),
        )),
        _ => None,
    }
}

/// The topic's page, with an optional note.
async fn render_topic(
    s: &AdminState,
    store: &Store,
    me: &Me,
    peer: SocketAddr,
    name: &str,
    note: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    if let Err(m) = topic_name_ok(name) {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, Some(&me.header()), m);
    }
    let t = match describe(s, me, peer, name).await {
        Ok(t) => t,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return relogin(store, me),
        // An action's refusal is what the page must say, even if the topic cannot be shown.
        Err(_) if note.as_ref().is_some_and(|(k, _)| *k == "error") && status != StatusCode::OK => {
            let m = note.map(|(_, m)| m).unwrap_or_default();
            return error_page(status, Some(&me.header()), &m);
        }
        Err(e) => return refusal(me, name, &e),
    };
    let mut body = note.map(|(k, m)| message(k, &m)).unwrap_or_default();
    body.push_str("<div class=\"grid\">");
    body.push_str(&summary_card(name, &t));
    body.push_str(&governance_card(&t));
    body.push_str("</div>");
    body.push_str(&partitions_card(name, &t));
    body.push_str(&configs_card(&t));
    body.push_str(&action_forms(name, &me.session.csrf));
    html(
        status,
        document(
            &format!("Topic {name}"),
            Nav::Topics,
            Some(&me.header()),
            &body,
        ),
    )
}

/// Checks a config name (`retention.ms`, `gatehouse.encryption`).
fn config_key_ok(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("Enter the config's name, e.g. retention.ms.".into());
    }
    if key.len() > MAX_CONFIG_KEY
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "A config name has at most {MAX_CONFIG_KEY} letters, digits, '.', '_' and '-'."
        ));
    }
    Ok(())
}

/// The `PATCH /v1/topics/{name}/configs` body of the edit form, and whether it sets.
fn config_change(f: &BTreeMap<String, String>) -> Result<(String, Value, bool), String> {
    let key = f
        .get("key")
        .map(|k| k.trim())
        .unwrap_or_default()
        .to_string();
    config_key_ok(&key)?;
    let value = f.get("value").map(|v| v.trim()).unwrap_or_default();
    match f.get("op").map(String::as_str).unwrap_or("set") {
        "set" => {
            if value.is_empty() {
                return Err(format!(
                    "Enter a value for {key} (or choose \"delete the override\")."
                ));
            }
            if value.len() > MAX_CONFIG_VALUE || has_control(value) {
                return Err(format!(
                    "A config value has at most {MAX_CONFIG_VALUE} characters and no control characters."
                ));
            }
            let body = json!({ "set": { key.as_str(): value } });
            Ok((key, body, true))
        }
        "delete" => {
            let body = json!({ "delete": [key.as_str()] });
            Ok((key, body, false))
        }
        _ => Err("Choose to set the config or to delete its override.".into()),
    }
}

/// The edit-config and delete-topic forms.
fn action_forms(name: &str, csrf: &str) -> String {
    let base = format!("/console/topics/{}", url_encode(name));
    format!(
        "<div class=\"grid\">\
         <form class=\"card\" id=\"edit-config\" method=\"post\" action=\"{base}/configs\">\
         <h2>Edit a config</h2><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>Config <input name=\"key\" id=\"config-key\" required \
         maxlength=\"{MAX_CONFIG_KEY}\" placeholder=\"retention.ms\"></label>\
         <label>Value <input name=\"value\" id=\"config-value\" maxlength=\"{MAX_CONFIG_VALUE}\" \
         placeholder=\"604800000\"></label>\
         <label>Change <select name=\"op\" id=\"config-op\">\
         <option value=\"set\" selected>set to the value</option>\
         <option value=\"delete\">delete the override (back to the default)</option>\
         </select></label>\
         <button type=\"submit\">Apply</button>\
         <p class=\"hint\">Governance configs (gatehouse.*) are changed the same way; the \
         gateway checks that you may alter this topic's configs.</p></form>\
         <form class=\"card danger\" id=\"delete-topic\" method=\"post\" action=\"{base}/delete\">\
         <h2>Delete the topic</h2><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p>Deletes the topic and <strong>all of its records</strong>. This cannot be undone.</p>\
         <label>Type the topic's name, <code>{}</code>, to confirm \
         <input name=\"confirm\" id=\"confirm-topic\" autocomplete=\"off\" required \
         maxlength=\"249\"></label>\
         <button type=\"submit\" class=\"danger\">Delete topic</button></form></div>",
        esc(name),
        base = esc(&base),
        csrf = esc(csrf),
    )
}

/// `POST /console/topics/{name}/configs` (`key`, `value`, `op` = set|delete):
/// `PATCH /v1/topics/{name}/configs` as the user.
pub(super) async fn edit_config(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (me, f) = match posted_form(&store, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if let Err(m) = topic_name_ok(&name) {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, Some(&me.header()), m);
    }
    let (key, request, set) = match config_change(&f) {
        Ok(x) => x,
        Err(m) => {
            let note = Some(("error", m));
            return render_topic(
                &s,
                &store,
                &me,
                peer,
                &name,
                note,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let r = super::super::super::topics::alter_configs(
        State(s.clone()),
        ConnectInfo(peer),
        Path(name.clone()),
        me.auth(),
        Bytes::from(request.to_string()),
    )
    .await;
    match api(r).await {
        Ok(_) => see_other(&format!(
            "/console/topics/{}?done={}&config={}",
            url_encode(&name),
            if set { "set" } else { "unset" },
            url_encode(&key)
        )),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(&store, &me),
        Err(e) => {
            let m = refusal_text("Changing the config", &e, &me.session.principal);
            let note = Some(("error", m));
            render_topic(&s, &store, &me, peer, &name, note, shown_status(&e)).await
        }
    }
}

/// `POST /console/topics/{name}/delete` (`confirm` = the name typed again):
/// `DELETE /v1/topics/{name}?confirm={name}` as the user.
pub(super) async fn delete_topic(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (me, f) = match posted_form(&store, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if let Err(m) = topic_name_ok(&name) {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, Some(&me.header()), m);
    }
    let typed = f
        .get("confirm")
        .map(|c| c.trim().to_string())
        .unwrap_or_default();
    if typed != name {
        let m = format!(
            "To delete the topic, type its name ({name}) exactly in the confirmation field. Nothing was deleted."
        );
        let note = Some(("error", m));
        return render_topic(
            &s,
            &store,
            &me,
            peer,
            &name,
            note,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let mut query = BTreeMap::new();
    query.insert("confirm".to_string(), typed);
    let r = super::super::super::topics::delete(
        State(s.clone()),
        ConnectInfo(peer),
        Path(name.clone()),
        Query(query),
        me.auth(),
    )
    .await;
    match api(r).await {
        Ok(_) => see_other(&format!("/console/topics?deleted={}", url_encode(&name))),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(&store, &me),
        Err(e) => {
            let m = refusal_text("Deleting the topic", &e, &me.session.principal);
            let note = Some(("error", m));
            render_topic(&s, &store, &me, peer, &name, note, shown_status(&e)).await
        }
    }
}

fn summary_card(name: &str, t: &Value) -> String {
    let parts = t
        .get("partitions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let records: i64 = t
        .get("partitions")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let lo = p.get("earliest_offset").and_then(Value::as_i64);
                    let hi = p.get("latest_offset").and_then(Value::as_i64);
                    match (lo, hi) {
                        (Some(lo), Some(hi)) if hi > lo => hi - lo,
                        _ => 0,
                    }
                })
                .sum()
        })
        .unwrap_or(0);
    let rejected = match t.get("rejected_records").and_then(Value::as_u64) {
        Some(n) => format!(
            "<span class=\"badge {}\" id=\"rejected-count\">{n}</span>",
            if n == 0 { "off" } else { "bad" }
        ),
        None => "<span id=\"rejected-count\" class=\"muted\">— (no gateway on this node)</span>"
            .to_string(),
    };
    let internal = t.get("internal").and_then(Value::as_bool).unwrap_or(false);
    format!(
        "<section class=\"card\" id=\"summary\"><h2>Summary</h2><table class=\"kv\">\
         <tr><th>Name</th><td class=\"name\">{}</td></tr>\
         <tr><th>Topic id</th>{}</tr>\
         <tr><th>Internal</th>{}</tr>\
         <tr><th>Partitions</th>{}</tr>\
         <tr><th>Records (offset span)</th>{}</tr>\
         <tr><th>Records rejected by the data guard</th><td>{rejected}</td></tr>\
         </table>\
         <p class=\"hint\">Rejected: records this node's gateway refused by the topic's data \
         policy (schema validation, data contracts, PAN guard) since it started — the poison \
         pills (<code>gatehouse_gateway_rejected_records_total</code>).</p>\
         <p><a href=\"/console/topics/{}/messages\" id=\"browse\">Browse messages</a></p>\
         </section>",
        esc(name),
        td(&text(t, "topic_id")),
        td(if internal { "yes" } else { "no" }),
        td(&parts.to_string()),
        td(&records.to_string()),
        url_encode(name),
    )
}

fn governance_card(t: &Value) -> String {
    let mut out = String::from("<section class=\"card\" id=\"governance\"><h2>Governance</h2>");
    match t.get("governance").filter(|g| g.is_object()) {
        Some(g) => out.push_str(&format!(
            "<table class=\"list\"><thead><tr><th>Value validation</th><th>Key validation</th>\
             <th>Encryption</th><th>PAN guard</th><th>Dead-letter topic</th></tr></thead>\
             <tbody><tr>{}</tr></tbody></table>",
            governance_cells(g)
        )),
        None => out.push_str(&message(
            "error",
            &format!(
                "The topic's configs are not visible to you: {}",
                t.get("configs_error")
                    .and_then(Value::as_str)
                    .unwrap_or("no DESCRIBE_CONFIGS")
            ),
        )),
    }
    out.push_str("</section>");
    out
}

fn partitions_card(name: &str, t: &Value) -> String {
    let mut out = String::from(
        "<section class=\"card wide\"><h2>Partitions</h2><table class=\"list\" id=\"partitions\">\
         <thead><tr><th>Partition</th><th>Leader</th><th>Replicas</th><th>In sync</th>\
         <th>Earliest offset</th><th>Latest offset</th><th></th></tr></thead><tbody>",
    );
    let list = |p: &Value, k: &str| {
        p.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    for p in t
        .get("partitions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let n = p.get("partition").and_then(Value::as_i64).unwrap_or(0);
        let error = p
            .get("error")
            .and_then(Value::as_str)
            .map(|e| format!(" <span class=\"badge bad\">{}</span>", esc(e)))
            .unwrap_or_default();
        out.push_str(&format!(
            "<tr data-partition=\"{n}\"><td>{n}{error}</td>{}{}{}{}{}\
             <td><a href=\"/console/topics/{}/messages?partition={n}\">messages</a></td></tr>",
            td(&text(p, "leader")),
            td(&list(p, "replicas")),
            td(&list(p, "isr")),
            td(&text(p, "earliest_offset")),
            td(&text(p, "latest_offset")),
            url_encode(name),
        ));
    }
    out.push_str("</tbody></table></section>");
    out
}

fn configs_card(t: &Value) -> String {
    let mut out = String::from("<section class=\"card wide\"><h2>Configs</h2>");
    let Some(configs) = t.get("configs").and_then(Value::as_object) else {
        out.push_str(&message(
            "error",
            t.get("configs_error")
                .and_then(Value::as_str)
                .unwrap_or("The topic's configs are not visible to you."),
        ));
        out.push_str("</section>");
        return out;
    };
    out.push_str(
        "<table class=\"list\" id=\"configs\"><thead><tr><th>Config</th><th>Value</th>\
         <th>Source</th></tr></thead><tbody>",
    );
    for (k, c) in configs {
        let governance = c
            .get("governance")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let value = if c.get("sensitive").and_then(Value::as_bool).unwrap_or(false) {
            "(sensitive)".to_string()
        } else {
            text(c, "value")
        };
        out.push_str(&format!(
            "<tr><td class=\"name\">{}{}</td>{}{}</tr>",
            esc(k),
            if governance {
                " <span class=\"badge on\">governance</span>"
            } else {
                ""
            },
            td(&value),
            td(&text(c, "source")),
        ));
    }
    out.push_str("</tbody></table></section>");
    out
}

// ---------------------------------------------------------------------------------------------
// Message browser
// ---------------------------------------------------------------------------------------------

/// The browser's form fields, as typed (kept on the page).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Browse {
    partition: String,
    offset: String,
    limit: String,
}

impl Browse {
    fn from_query(q: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        Self {
            partition: get("partition"),
            offset: get("offset"),
            limit: get("limit"),
        }
    }

    /// The `/v1/topics/{name}/messages` query, or what is wrong.
    fn to_query(&self) -> Result<BTreeMap<String, String>, String> {
        let mut q = BTreeMap::new();
        for (k, v) in [
            ("partition", &self.partition),
            ("offset", &self.offset),
            ("limit", &self.limit),
        ] {
            if v.len() > 20 {
                return Err(format!("The {k} is too long."));
            }
            if !v.is_empty() {
                q.insert(k.to_string(), v.clone());
            }
        }
        super::super::super::messages::params(&q).map_err(|m| {
            let mut m = m;
            if let Some(c) = m.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            format!("{m}.")
        })?;
        Ok(q)
    }
}

fn browse_form(name: &str, f: &Browse) -> String {
    format!(
        "<form class=\"card filters\" id=\"browse-form\" method=\"get\" \
         action=\"/console/topics/{}/messages\">\
         <label>Partition <input type=\"number\" name=\"partition\" id=\"partition\" min=\"0\" \
         value=\"{}\" placeholder=\"0\"></label>\
         <label>From offset <input type=\"number\" name=\"offset\" id=\"offset\" min=\"0\" \
         value=\"{}\" placeholder=\"latest\"></label>\
         <label>Show <input type=\"number\" name=\"limit\" id=\"limit\" min=\"1\" max=\"{}\" \
         value=\"{}\"></label>\
         <button type=\"submit\">Show</button>\
         <p class=\"hint\">Leave the offset empty for the latest records.</p></form>",
        url_encode(name),
        esc(&f.partition),
        esc(&f.offset),
        super::super::super::messages::MAX_LIMIT,
        esc(if f.limit.is_empty() { "20" } else { &f.limit }),
    )
}

/// Text cut to [`CELL_CHARS`] characters.
fn cut(s: &str) -> String {
    match s.char_indices().nth(CELL_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A key or value cell: text as text; ciphertext marked and shown as the base64 it came as
/// (never decoded here); a wire-format payload after its 5-byte prefix when that is text.
fn field_html(f: &Value) -> String {
    if f.is_null() {
        return "<span class=\"muted\">null</span>".to_string();
    }
    let data = f.get("data").and_then(Value::as_str).unwrap_or_default();
    let size = f.get("size").and_then(Value::as_u64).unwrap_or(0);
    let truncated = if f.get("truncated").and_then(Value::as_bool).unwrap_or(false) {
        format!(" <span class=\"muted\">(first 64 KiB of {size} bytes)</span>")
    } else {
        String::new()
    };
    if f.get("encrypted").and_then(Value::as_bool).unwrap_or(false) {
        return format!(
            "<span class=\"badge warn encrypted\">encrypted</span> \
             <code class=\"cipher\">{}</code> <span class=\"muted\">{size} bytes of \
             ciphertext (base64)</span>{truncated}",
            esc(&cut(data))
        );
    }
    let base64 = f.get("encoding").and_then(Value::as_str) == Some("base64");
    if !base64 {
        return format!("<code>{}</code>{truncated}", esc(&cut(data)));
    }
    if f.get("schema_id").is_some_and(Value::is_i64) {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()
            .and_then(|b| b.get(5..).map(<[u8]>::to_vec))
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|t| {
                !t.chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            });
        if let Some(t) = payload {
            return format!("<code>{}</code>{truncated}", esc(&cut(&t)));
        }
    }
    format!(
        "<span class=\"muted\">binary, base64:</span> <code>{}</code>{truncated}",
        esc(&cut(data))
    )
}

fn headers_html(r: &Value) -> String {
    let names: Vec<String> = r
        .get("headers")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let name = h.get("name").and_then(Value::as_str).unwrap_or_default();
                    match (
                        h.get("encoding").and_then(Value::as_str),
                        h.get("value").and_then(Value::as_str),
                    ) {
                        (Some("text"), Some(v)) => {
                            format!("{}={}", esc(name), esc(&cut(v)))
                        }
                        (Some(_), _) => {
                            format!("{} <span class=\"muted\">(binary)</span>", esc(name))
                        }
                        _ => format!("{} <span class=\"muted\">(null)</span>", esc(name)),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    names.join("<br>")
}

/// The records table of a `GET /v1/topics/{name}/messages` answer.
fn records_html(page: &Value) -> String {
    let records = page
        .get("records")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if records.is_empty() {
        return "<p id=\"no-messages\">No records in this range.</p>".to_string();
    }
    let mut out = String::from(
        "<table class=\"list\" id=\"messages\"><thead><tr><th>Offset</th><th>Time</th>\
         <th>Key</th><th>Value</th><th>Schema id</th><th>Headers</th></tr></thead><tbody>",
    );
    for r in records {
        let value = r.get("value").cloned().unwrap_or(Value::Null);
        let encrypted = value
            .get("encrypted")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let schema = value
            .get("schema_id")
            .and_then(Value::as_i64)
            .map_or_else(|| "—".to_string(), |i| i.to_string());
        out.push_str(&format!(
            "<tr data-offset=\"{}\"{}>{}<td class=\"time\">{}</td><td class=\"key\">{}</td>\
             <td class=\"value\">{}</td><td class=\"schema\">{}</td><td class=\"headers\">{}</td></tr>",
            esc(&text(r, "offset")),
            if encrypted { " class=\"encrypted\"" } else { "" },
            td(&text(r, "offset")),
            esc(&time_of_millis(
                r.get("timestamp").and_then(Value::as_i64).unwrap_or(-1)
            )),
            field_html(r.get("key").unwrap_or(&Value::Null)),
            field_html(&value),
            esc(&schema),
            headers_html(r),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// Older / newer / latest links around a page of records.
fn paging_html(name: &str, page: &Value) -> String {
    let n = |k: &str| page.get(k).and_then(Value::as_i64).unwrap_or(0);
    let (earliest, latest, start, next, limit, partition) = (
        n("earliest_offset"),
        n("latest_offset"),
        n("start_offset"),
        n("next_offset"),
        n("limit").max(1),
        n("partition"),
    );
    let base = format!(
        "/console/topics/{}/messages?partition={partition}&amp;limit={limit}",
        url_encode(name)
    );
    let mut links = Vec::new();
    if start > earliest {
        links.push(format!(
            "<a href=\"{base}&amp;offset={}\" id=\"older\">← Older</a>",
            (start - limit).max(earliest)
        ));
    }
    if next < latest {
        links.push(format!(
            "<a href=\"{base}&amp;offset={next}\" id=\"newer\">Newer →</a>"
        ));
    }
    links.push(format!("<a href=\"{base}\" id=\"latest\">Latest</a>"));
    format!(
        "<p class=\"paging\">Partition {partition}: offsets {earliest} to {} \
         (the next record gets {latest}). {}</p>",
        (latest - 1).max(earliest),
        links.join(" · ")
    )
}

/// `GET /console/topics/{name}/messages?partition&offset&limit`.
pub(super) async fn messages_page(
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
    if let Err(m) = topic_name_ok(&name) {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, Some(&me.header()), m);
    }
    let (form, query) = match parse_form(uri.query().unwrap_or_default().as_bytes()) {
        Ok(q) => {
            let f = Browse::from_query(&q);
            let query = f.to_query();
            (f, query)
        }
        Err(e) => (
            Browse::default(),
            Err(format!("The query cannot be read: {e}.")),
        ),
    };
    let title = format!("Messages of {name}");
    let mut body = format!(
        "<p><a href=\"/console/topics/{}\">← Topic {}</a></p>",
        url_encode(&name),
        esc(&name)
    );
    body.push_str(&browse_form(&name, &form));
    body.push_str("<section class=\"card wide\"><h2>Records</h2>");
    let mut status = StatusCode::OK;
    match query {
        Err(m) => {
            status = StatusCode::UNPROCESSABLE_ENTITY;
            body.push_str(&message("error", &m));
        }
        Ok(q) => {
            let page = api(super::super::super::messages::list(
                State(s),
                ConnectInfo(peer),
                Path(name.clone()),
                Query(q),
                me.auth(),
            )
            .await)
            .await;
            match page {
                Ok(p) => {
                    body.push_str(&paging_html(&name, &p));
                    body.push_str(&records_html(&p));
                }
                Err(e) if e.status == StatusCode::UNAUTHORIZED => return relogin(&store, &me),
                Err(e) => {
                    if e.status.is_client_error() {
                        status = e.status;
                    }
                    body.push_str(&section_error(&e));
                }
            }
        }
    }
    body.push_str(
        "<p class=\"hint\">Records are read through the gateway as you: values of an encrypted \
         topic appear in clear only if you may read plaintext; otherwise the stored \
         ciphertext is shown, marked <span class=\"badge warn\">encrypted</span>, and never \
         decoded by the console.</p></section>",
    );
    html(
        status,
        document(&title, Nav::Topics, Some(&me.header()), &body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn browse_input_is_validated() {
        let ok = Browse {
            partition: "1".into(),
            offset: String::new(),
            limit: "5".into(),
        };
        let q = ok.to_query().expect("valid");
        assert_eq!(q.get("partition").map(String::as_str), Some("1"));
        assert!(!q.contains_key("offset"));
        for bad in [
            Browse {
                partition: "-1".into(),
                ..ok.clone()
            },
            Browse {
                offset: "x".into(),
                ..ok.clone()
            },
            Browse {
                limit: "1000".into(),
                ..ok.clone()
            },
            Browse {
                offset: "9".repeat(30),
                ..ok.clone()
            },
        ] {
            let e = bad.to_query().expect_err("refused");
            assert!(
                e.ends_with('.') && e.chars().next().is_some_and(char::is_uppercase),
                "{e}"
            );
        }
    }

    #[test]
    fn ciphertext_is_marked_and_never_decoded() {
        let page = json!({"records": [
            {"offset": 7, "timestamp": 1_700_000_000_000i64, "key": null, "headers": [
                {"name": "gatehouse.enc", "value": "AQID", "encoding": "base64"}],
             "value": {"encoding": "base64", "data": "c2VjcmV0", "encrypted": true,
                       "schema_id": null, "size": 6, "truncated": false}},
            {"offset": 8, "timestamp": 1_700_000_000_000i64, "key": {"encoding": "text",
                "data": "<k>", "encrypted": false, "schema_id": null, "size": 3, "truncated": false},
             "headers": [{"name": "t", "value": "\"x\"", "encoding": "text"}],
             "value": {"encoding": "base64", "data": "AAAAAAd7ImEiOjF9", "encrypted": false,
                       "schema_id": 7, "size": 12, "truncated": false}}]});
        let t = records_html(&page);
        assert!(t.contains("badge warn encrypted"), "{t}");
        assert!(t.contains("c2VjcmV0"), "the ciphertext as it came: {t}");
        assert!(!t.contains("secret"), "never decoded: {t}");
        assert!(t.contains("&lt;k&gt;") && !t.contains("<k>"), "{t}");
        assert!(
            t.contains("{&quot;a&quot;:1}"),
            "wire-format JSON shown: {t}"
        );
        assert!(t.contains("t=&quot;x&quot;"), "{t}");
    }

    #[test]
    fn config_edits_are_validated() {
        let f = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (key, body, set) =
            config_change(&f(&[("key", " retention.ms "), ("value", "1000")])).expect("valid");
        assert_eq!((key.as_str(), set), ("retention.ms", true));
        assert_eq!(body, json!({"set": {"retention.ms": "1000"}}));
        let (_, body, set) =
            config_change(&f(&[("key", "retention.ms"), ("op", "delete")])).expect("valid");
        assert!(!set);
        assert_eq!(body, json!({"delete": ["retention.ms"]}));
        for bad in [
            f(&[("key", ""), ("value", "1")]),
            f(&[("key", "a b"), ("value", "1")]),
            f(&[("key", "<x>"), ("value", "1")]),
            f(&[("key", "retention.ms"), ("value", "")]),
            f(&[("key", "retention.ms"), ("value", "a\nb")]),
            f(&[("key", "retention.ms"), ("value", "1"), ("op", "drop")]),
        ] {
            assert!(config_change(&bad).is_err(), "{bad:?}");
        }
        let mut q = f(&[("done", "set"), ("config", "retention.ms")]);
        assert_eq!(
            config_note(&q).map(|n| n.1),
            Some("Config retention.ms set.".to_string())
        );
        q.insert("config".into(), "<script>".into());
        assert!(config_note(&q).is_none());
        let h = action_forms("a.b", "\"tok");
        assert!(h.contains("action=\"/console/topics/a.b/configs\""), "{h}");
        assert!(
            h.contains("value=\"&quot;tok\"") && !h.contains("\"tok\""),
            "{h}"
        );
    }

    #[test]
    fn paging_links() {
        let p = json!({"earliest_offset": 0, "latest_offset": 50, "start_offset": 20,
            "next_offset": 30, "limit": 10, "partition": 1});
        let h = paging_html("a.b", &p);
        assert!(h.contains("offset=10\" id=\"older\""), "{h}");
        assert!(h.contains("offset=30\" id=\"newer\""), "{h}");
        let p = json!({"earliest_offset": 0, "latest_offset": 50, "start_offset": 0,
            "next_offset": 50, "limit": 10, "partition": 0});
        let h = paging_html("a", &p);
        assert!(!h.contains("older") && !h.contains("newer"), "{h}");
    }
}
