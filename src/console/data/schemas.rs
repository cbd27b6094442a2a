//! The schema pages, over the registry as the user ([`super::registry`]):
//!
//! * `GET /console/schemas`: subjects with their latest version, schema id, type and
//!   compatibility level; a form to register a schema under a new (or any) subject
//!   (`POST /console/schemas`).
//! * `GET /console/schemas/{subject}?left=&right=`: the subject's versions and two of them
//!   side by side (default: the two latest), pretty-printed; the compatibility check form
//!   (`POST …/check` → `POST /compatibility/subjects/{s}/versions/latest?verbose=true`) and the
//!   register form (`POST …/register` → `POST /subjects/{s}/versions`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::super::html::{
    Header, Nav, document, error_page, esc, html, message, see_other, td, url_encode,
};
use super::super::{AdminState, Me, Store, check_csrf, current, parse_form, relogin, text};
use super::registry::{RegError, Registry};
use crate::http_client::seg;

/// Longest subject name accepted.
const MAX_SUBJECT: usize = 255;
/// Largest schema text accepted (bytes).
pub(super) const MAX_SCHEMA: usize = 64 * 1024;
/// Largest schema form body (the text URL-encoded, plus the other fields).
const MAX_SCHEMA_FORM: usize = 4 * MAX_SCHEMA;
/// Most subjects the list shows.
const MAX_SUBJECTS: usize = 500;
/// Registry calls in flight at once for the compatibility levels of the list.
const PARALLEL: usize = 8;
/// The schema types the registry knows.
const TYPES: [&str; 3] = ["AVRO", "JSON", "PROTOBUF"];

/// Checks a subject name (what the registry accepts, bounded): 1–255 characters, no control
/// characters.
fn subject_ok(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("Enter a subject name.".into());
    }
    if subject.len() > MAX_SUBJECT {
        return Err(format!(
            "A subject name has at most {MAX_SUBJECT} characters."
        ));
    }
    if subject.chars().any(char::is_control) {
        return Err("A subject name cannot contain control characters.".into());
    }
    Ok(())
}

/// A version number from the query (1 to 2^31-1), or what is wrong.
fn version_of(v: &str, which: &str) -> Result<i32, String> {
    v.parse::<i32>()
        .ok()
        .filter(|n| *n >= 1 && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            format!(
                "The {which} version must be a whole number from 1 to {}.",
                i32::MAX
            )
        })
}

/// The schema form's fields, as typed (kept on the page after an error).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SchemaForm {
    subject: String,
    schema_type: String,
    schema: String,
}

impl SchemaForm {
    fn from_form(f: &BTreeMap<String, String>) -> Self {
        Self {
            subject: f
                .get("subject")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            schema_type: f
                .get("schema_type")
                .map(|s| s.trim().to_ascii_uppercase())
                .unwrap_or_default(),
            schema: f.get("schema").cloned().unwrap_or_default(),
        }
    }

    /// The registry request body, or what is wrong.
    fn request(&self) -> Result<Value, String> {
        let t = if self.schema_type.is_empty() {
            "AVRO"
        } else {
            self.schema_type.as_str()
        };
        if !TYPES.contains(&t) {
            return Err("The schema type must be AVRO, JSON or PROTOBUF.".into());
        }
        let text = self.schema.trim();
        if text.is_empty() {
            return Err("Enter the schema text.".into());
        }
        if self.schema.len() > MAX_SCHEMA {
            return Err(format!(
                "The schema text is too large: at most {} KiB.",
                MAX_SCHEMA / 1024
            ));
        }
        if self
            .schema
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err("The schema text contains control characters.".into());
        }
        let mut body = json!({ "schema": text });
        if t != "AVRO" {
            body["schemaType"] = Value::String(t.to_string());
        }
        Ok(body)
    }
}

/// A POST's schema form (a larger limit than other console forms), or the error page.
fn schema_form_of(
    body: &Bytes,
    who: &Header<'_>,
) -> Result<BTreeMap<String, String>, Box<Response>> {
    if body.len() > MAX_SCHEMA_FORM {
        return Err(Box::new(error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(who),
            &format!(
                "The form is too large: a schema has at most {} KiB.",
                MAX_SCHEMA / 1024
            ),
        )));
    }
    parse_form(body).map_err(|m| Box::new(error_page(StatusCode::BAD_REQUEST, Some(who), m)))
}

/// A registry error as a message box (with a hint for refusals).
fn reg_error(lead: &str, e: &RegError) -> String {
    let hint = match e.status {
        StatusCode::FORBIDDEN => " (your principal is not allowed to do this)",
        _ => "",
    };
    let code = if e.code > 0 {
        format!(" [{}]", e.code)
    } else {
        String::new()
    };
    message("error", &format!("{lead}{}{code}{hint}", e.message))
}

/// The schema text pretty-printed: JSON (Avro, JSON Schema) indented, Protobuf as stored.
pub(super) fn pretty(schema_type: &str, schema: &str) -> String {
    if schema_type != "PROTOBUF"
        && let Some(p) = indent_json(schema)
    {
        return p;
    }
    schema.to_string()
}

/// Valid JSON re-indented by two spaces, keys and numbers exactly as written (a parsed value
/// would reorder the keys); `None` when `text` is not JSON.
fn indent_json(text: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while chars.peek().is_some_and(|x| x.is_whitespace()) {
                    chars.next();
                }
                out.push(c);
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

fn type_select(current: &str, id: &str) -> String {
    let mut out = format!("<select name=\"schema_type\" id=\"{id}\">");
    for t in TYPES {
        let sel = if t == current || (current.is_empty() && t == "AVRO") {
            " selected"
        } else {
            ""
        };
        out.push_str(&format!("<option value=\"{t}\"{sel}>{t}</option>"));
    }
    out.push_str("</select>");
    out
}

/// The register form (on the list page with a subject field, on a subject's page without).
fn register_form(csrf: &str, subject: Option<&str>, f: &SchemaForm) -> String {
    let (action, title, subject_field, id) = match subject {
        Some(s) => (
            format!("/console/schemas/{}/register", url_encode(s)),
            "Register a new version",
            String::new(),
            "register-form",
        ),
        None => (
            "/console/schemas".to_string(),
            "Register a schema",
            format!(
                "<label>Subject <input name=\"subject\" id=\"new-subject\" value=\"{}\" required \
                 maxlength=\"{MAX_SUBJECT}\" placeholder=\"orders-value\"></label>",
                esc(&f.subject)
            ),
            "new-subject-form",
        ),
    };
    format!(
        "<form class=\"card\" id=\"{id}\" method=\"post\" action=\"{action}\"><h2>{title}</h2>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">{subject_field}\
         <label>Type {}</label>\
         <label>Schema <textarea name=\"schema\" id=\"{id}-schema\" rows=\"12\" required \
         maxlength=\"{MAX_SCHEMA}\" spellcheck=\"false\">{}</textarea></label>\
         <button type=\"submit\">Register</button>\
         <p class=\"hint\">The registry checks it against the subject's compatibility level \
         and answers with the schema id, or why it refused.</p></form>",
        esc(csrf),
        type_select(&f.schema_type, &format!("{id}-type")),
        esc(&f.schema),
    )
}

fn check_form(csrf: &str, subject: &str, f: &SchemaForm) -> String {
    format!(
        "<form class=\"card\" id=\"check-form\" method=\"post\" \
         action=\"/console/schemas/{}/check\"><h2>Check compatibility</h2>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Type {}</label>\
         <label>Schema <textarea name=\"schema\" id=\"check-schema\" rows=\"12\" required \
         maxlength=\"{MAX_SCHEMA}\" spellcheck=\"false\">{}</textarea></label>\
         <button type=\"submit\">Check against the latest version</button>\
         <p class=\"hint\">Asks the registry whether this schema could be registered as the \
         next version, with its reasons (nothing is registered).</p></form>",
        url_encode(subject),
        esc(csrf),
        type_select(&f.schema_type, "check-type"),
        esc(&f.schema),
    )
}

// ---------------------------------------------------------------------------------------------
// The subject list
// ---------------------------------------------------------------------------------------------

/// `GET /console/schemas`.
pub(super) async fn list_page(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    headers: HeaderMap,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    render_list(
        &s,
        &store,
        &me,
        String::new(),
        &SchemaForm::default(),
        StatusCode::OK,
    )
    .await
}

/// `POST /console/schemas`: registers a schema under the subject named in the form.
pub(super) async fn register_new(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let f = match schema_form_of(&body, &me.header()) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = check_csrf(&headers, &f, &me) {
        return *r;
    }
    let form = SchemaForm::from_form(&f);
    let checked = subject_ok(&form.subject).and_then(|()| form.request());
    let request = match checked {
        Ok(r) => r,
        Err(m) => {
            return render_list(
                &s,
                &store,
                &me,
                message("error", &m),
                &form,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match register_as_user(&s, &me, &form.subject, &request).await {
        Ok((id, _)) => see_other(&format!(
            "/console/schemas/{}?registered={id}",
            url_encode(&form.subject)
        )),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(&store, &me),
        Err(e) => {
            render_list(
                &s,
                &store,
                &me,
                reg_error("The schema was not registered: ", &e),
                &form,
                status_of(&e),
            )
            .await
        }
    }
}

/// The page status for a registry error (client errors as they are, anything else 502).
fn status_of(e: &RegError) -> StatusCode {
    if e.status.is_client_error() {
        e.status
    } else {
        StatusCode::BAD_GATEWAY
    }
}

/// `POST /subjects/{s}/versions` as the user: `(id, version)`.
async fn register_as_user(
    s: &AdminState,
    me: &Me,
    subject: &str,
    request: &Value,
) -> Result<(i64, Option<i64>), RegError> {
    let reg = Registry::of(s, me)?;
    let v = reg
        .post(&format!("/subjects/{}/versions", seg(subject)), request)
        .await?;
    let id = v.get("id").and_then(Value::as_i64).unwrap_or(-1);
    Ok((id, v.get("version").and_then(Value::as_i64)))
}

/// One row of the subject list.
struct SubjectRow {
    subject: String,
    version: String,
    id: String,
    schema_type: String,
    compatibility: String,
}

async fn render_list(
    s: &AdminState,
    store: &Store,
    me: &Me,
    note: String,
    form: &SchemaForm,
    status: StatusCode,
) -> Response {
    let mut body = note;
    body.push_str("<section class=\"card wide\"><h2>Subjects</h2>");
    let listed = list_subjects(s, me).await;
    match listed {
        Ok((global, rows, more)) => {
            body.push_str(&format!(
                "<p>Default compatibility level: <span class=\"badge on\" id=\"global-compat\">{}</span></p>",
                esc(&global)
            ));
            body.push_str(&subjects_table(&rows));
            if more {
                body.push_str(&format!(
                    "<p class=\"hint\">Only the first {MAX_SUBJECTS} subjects are shown.</p>"
                ));
            }
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return relogin(store, me),
        Err(e) => body.push_str(&reg_error("The subjects cannot be listed: ", &e)),
    }
    body.push_str(
        "<p class=\"hint\">Subjects you may describe, read from the schema registry as you.</p>\
         </section>",
    );
    body.push_str(&register_form(&me.session.csrf, None, form));
    html(
        status,
        document("Schemas", Nav::Schemas, Some(&me.header()), &body),
    )
}

/// (the default compatibility level, the rows, whether there were more subjects).
async fn list_subjects(
    s: &AdminState,
    me: &Me,
) -> Result<(String, Vec<SubjectRow>, bool), RegError> {
    let reg = Arc::new(Registry::of(s, me)?);
    let global = reg.get("/config").await?;
    let global = text(&global, "compatibilityLevel");
    let latest = reg
        .get(&format!(
            "/schemas?latestOnly=true&limit={}",
            MAX_SUBJECTS + 1
        ))
        .await?;
    let mut items: Vec<Value> = latest.as_array().cloned().unwrap_or_default();
    let more = items.len() > MAX_SUBJECTS;
    items.truncate(MAX_SUBJECTS);
    items.sort_by_key(|i| text(i, "subject"));
    // The compatibility level of each subject, a few requests at a time.
    let subjects: Vec<String> = items.iter().map(|i| text(i, "subject")).collect();
    let mut levels: BTreeMap<String, String> = BTreeMap::new();
    for chunk in subjects.chunks(PARALLEL) {
        let mut set = tokio::task::JoinSet::new();
        for subject in chunk {
            let reg = reg.clone();
            let subject = subject.clone();
            set.spawn(async move {
                let level = reg
                    .get(&format!("/config/{}?defaultToGlobal=true", seg(&subject)))
                    .await;
                (subject, level)
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((subject, level)) = done {
                let shown = match level {
                    Ok(v) => text(&v, "compatibilityLevel"),
                    Err(e) if e.status == StatusCode::FORBIDDEN => "(not allowed)".to_string(),
                    Err(_) => "—".to_string(),
                };
                levels.insert(subject, shown);
            }
        }
    }
    let rows = items
        .iter()
        .map(|i| {
            let subject = text(i, "subject");
            SubjectRow {
                version: text(i, "version"),
                id: text(i, "id"),
                schema_type: i
                    .get("schemaType")
                    .and_then(Value::as_str)
                    .unwrap_or("AVRO")
                    .to_string(),
                compatibility: levels.get(&subject).cloned().unwrap_or_else(|| "—".into()),
                subject,
            }
        })
        .collect();
    Ok((global, rows, more))
}

fn subjects_table(rows: &[SubjectRow]) -> String {
    if rows.is_empty() {
        return "<p id=\"no-subjects\">No subjects you may see.</p>".to_string();
    }
    let mut out = String::from(
        "<table class=\"list\" id=\"subjects\"><thead><tr><th>Subject</th><th>Latest version</th>\
         <th>Schema id</th><th>Type</th><th>Compatibility</th></tr></thead><tbody>",
    );
    for r in rows {
        out.push_str(&format!(
            "<tr data-subject=\"{}\"><td class=\"name\"><a href=\"/console/schemas/{}\">{}</a></td>\
             {}{}{}<td class=\"compat\">{}</td></tr>",
            esc(&r.subject),
            url_encode(&r.subject),
            esc(&r.subject),
            td(&r.version),
            td(&r.id),
            td(&r.schema_type),
            esc(&r.compatibility),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

// ---------------------------------------------------------------------------------------------
// One subject
// ---------------------------------------------------------------------------------------------

/// What a subject page shows besides the versions.
#[derive(Default)]
struct Extra {
    /// A message above everything (registration result, input error).
    note: String,
    /// The compatibility check's result.
    check: String,
    check_form: SchemaForm,
    register_form: SchemaForm,
}

/// `GET /console/schemas/{subject}?left&right&registered`.
pub(super) async fn subject_page(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    if let Err(m) = subject_ok(&subject) {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, Some(&me.header()), &m);
    }
    let query = match parse_form(uri.query().unwrap_or_default().as_bytes()) {
        Ok(q) => q,
        Err(m) => {
            return error_page(StatusCode::BAD_REQUEST, Some(&me.header()), m);
        }
    };
    let mut extra = Extra::default();
    if let Some(id) = query
        .get("registered")
        .filter(|v| v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
    {
        extra.note = message(
            "ok",
            &format!("Registered under {subject} with schema id {id}."),
        );
    }
    render_subject(&s, &store, &me, &subject, &query, extra, StatusCode::OK).await
}

/// `POST /console/schemas/{subject}/check`.
pub(super) async fn check(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let f = match schema_form_of(&body, &me.header()) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = check_csrf(&headers, &f, &me) {
        return *r;
    }
    if let Err(m) = subject_ok(&subject) {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, Some(&me.header()), &m);
    }
    let form = SchemaForm::from_form(&f);
    let mut extra = Extra {
        check_form: form.clone(),
        ..Extra::default()
    };
    let mut status = StatusCode::OK;
    match form.request() {
        Err(m) => {
            status = StatusCode::UNPROCESSABLE_ENTITY;
            extra.check = message("error", &m);
        }
        Ok(request) => {
            let result = match Registry::of(&s, &me) {
                Ok(reg) => {
                    reg.post(
                        &format!(
                            "/compatibility/subjects/{}/versions/latest?verbose=true",
                            seg(&subject)
                        ),
                        &request,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => extra.check = check_result(&v),
                Err(e) if e.status == StatusCode::UNAUTHORIZED => return relogin(&store, &me),
                Err(e) => {
                    status = status_of(&e);
                    let lead = if e.code == 40401 {
                        "The subject has no version to check against yet: "
                    } else {
                        "The check could not run: "
                    };
                    extra.check = reg_error(lead, &e);
                }
            }
        }
    }
    render_subject(&s, &store, &me, &subject, &BTreeMap::new(), extra, status).await
}

/// The verdict of `POST /compatibility/…?verbose=true`.
fn check_result(v: &Value) -> String {
    let ok = v
        .get("is_compatible")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let messages: Vec<String> = v
        .get("messages")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut out = format!(
        "<div class=\"msg {}\" role=\"status\" id=\"check-verdict\"><strong>{}</strong>",
        if ok { "ok" } else { "error" },
        if ok {
            "Compatible: the schema can be registered as the next version."
        } else {
            "Incompatible with the subject's compatibility level."
        }
    );
    if !messages.is_empty() {
        out.push_str("<ul id=\"check-messages\">");
        for m in &messages {
            out.push_str(&format!("<li>{}</li>", esc(m)));
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");
    out
}

/// `POST /console/schemas/{subject}/register`.
pub(super) async fn register(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let f = match schema_form_of(&body, &me.header()) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = check_csrf(&headers, &f, &me) {
        return *r;
    }
    if let Err(m) = subject_ok(&subject) {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, Some(&me.header()), &m);
    }
    let form = SchemaForm::from_form(&f);
    let request = match form.request() {
        Ok(r) => r,
        Err(m) => {
            let extra = Extra {
                note: message("error", &m),
                register_form: form,
                ..Extra::default()
            };
            return render_subject(
                &s,
                &store,
                &me,
                &subject,
                &BTreeMap::new(),
                extra,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match register_as_user(&s, &me, &subject, &request).await {
        Ok((id, _)) => see_other(&format!(
            "/console/schemas/{}?registered={id}",
            url_encode(&subject)
        )),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(&store, &me),
        Err(e) => {
            let extra = Extra {
                note: reg_error("The schema was not registered: ", &e),
                register_form: form,
                ..Extra::default()
            };
            render_subject(
                &s,
                &store,
                &me,
                &subject,
                &BTreeMap::new(),
                extra,
                status_of(&e),
            )
            .await
        }
    }
}

/// The two versions to compare: from `left`/`right` in the query, else the two latest.
fn pick(versions: &[i64], q: &BTreeMap<String, String>) -> Result<(i64, i64), String> {
    let last = versions.last().copied().unwrap_or(1);
    let before = versions
        .len()
        .checked_sub(2)
        .and_then(|i| versions.get(i))
        .copied()
        .unwrap_or(last);
    let get = |k: &str, default: i64| -> Result<i64, String> {
        match q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some("latest") => Ok(last),
            Some(v) => {
                let n = i64::from(version_of(v, k)?);
                if versions.contains(&n) {
                    Ok(n)
                } else {
                    Err(format!("The subject has no version {n}."))
                }
            }
        }
    };
    Ok((get("left", before)?, get("right", last)?))
}

/// One version's pane.
async fn version_pane(reg: &Registry, subject: &str, version: i64, id: &str) -> String {
    let v = reg
        .get(&format!("/subjects/{}/versions/{version}", seg(subject)))
        .await;
    let mut out = format!("<section class=\"card\" id=\"{id}\">");
    match v {
        Ok(v) => {
            let t = v
                .get("schemaType")
                .and_then(Value::as_str)
                .unwrap_or("AVRO")
                .to_string();
            out.push_str(&format!(
                "<h2>Version {} <span class=\"muted\">· schema id {} · {}</span></h2>",
                esc(&text(&v, "version")),
                esc(&text(&v, "id")),
                esc(&t)
            ));
            let schema = v.get("schema").and_then(Value::as_str).unwrap_or_default();
            out.push_str(&format!(
                "<pre class=\"schema\" id=\"{id}-schema\">{}</pre>",
                esc(&pretty(&t, schema))
            ));
            if let Some(refs) = v
                .get("references")
                .and_then(Value::as_array)
                .filter(|r| !r.is_empty())
            {
                out.push_str("<h3>References</h3><ul>");
                for r in refs {
                    out.push_str(&format!(
                        "<li>{} → {} version {}</li>",
                        esc(&text(r, "name")),
                        esc(&text(r, "subject")),
                        esc(&text(r, "version"))
                    ));
                }
                out.push_str("</ul>");
            }
        }
        Err(e) => {
            out.push_str(&format!("<h2>Version {version}</h2>"));
            out.push_str(&reg_error("", &e));
        }
    }
    out.push_str("</section>");
    out
}

async fn render_subject(
    s: &AdminState,
    store: &Store,
    me: &Me,
    subject: &str,
    q: &BTreeMap<String, String>,
    extra: Extra,
    mut status: StatusCode,
) -> Response {
    let title = format!("Subject {subject}");
    let mut body = String::from("<p><a href=\"/console/schemas\">← All subjects</a></p>");
    body.push_str(&extra.note);
    let reg = match Registry::of(s, me) {
        Ok(r) => r,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return relogin(store, me),
        Err(e) => {
            body.push_str(&reg_error("", &e));
            return html(
                status_of(&e),
                document(&title, Nav::Schemas, Some(&me.header()), &body),
            );
        }
    };
    let versions = reg
        .get(&format!("/subjects/{}/versions", seg(subject)))
        .await;
    let level = reg
        .get(&format!("/config/{}?defaultToGlobal=true", seg(subject)))
        .await;
    let versions: Vec<i64> = match versions {
        Ok(v) => v
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default(),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return relogin(store, me),
        Err(e) if e.code == 40401 => {
            // A new subject: nothing to show but the forms.
            body.push_str(&message(
                "ok",
                &format!(
                    "The subject {subject} has no versions yet; register the first one below."
                ),
            ));
            Vec::new()
        }
        Err(e) => {
            if status == StatusCode::OK {
                status = status_of(&e);
            }
            body.push_str(&reg_error("The versions cannot be listed: ", &e));
            Vec::new()
        }
    };
    if !versions.is_empty() {
        let level = match &level {
            Ok(v) => text(v, "compatibilityLevel"),
            Err(e) if e.status == StatusCode::FORBIDDEN => "(not allowed)".into(),
            Err(_) => "—".into(),
        };
        body.push_str(&format!(
            "<section class=\"card wide\" id=\"versions\"><h2>Versions</h2>\
             <p>Compatibility level: <span class=\"badge on\" id=\"subject-compat\">{}</span></p>",
            esc(&level)
        ));
        match pick(&versions, q) {
            Err(m) => {
                if status == StatusCode::OK {
                    status = StatusCode::UNPROCESSABLE_ENTITY;
                }
                body.push_str(&message("error", &m));
                body.push_str(&compare_form(subject, &versions, None));
                body.push_str("</section>");
            }
            Ok((left, right)) => {
                body.push_str(&compare_form(subject, &versions, Some((left, right))));
                body.push_str("</section>");
                body.push_str("<div class=\"grid\" id=\"side-by-side\">");
                body.push_str(&version_pane(&reg, subject, left, "left").await);
                if right != left {
                    body.push_str(&version_pane(&reg, subject, right, "right").await);
                }
                body.push_str("</div>");
            }
        }
    }
    body.push_str("<section id=\"check-result\">");
    body.push_str(&extra.check);
    body.push_str("</section><div class=\"grid\">");
    body.push_str(&check_form(&me.session.csrf, subject, &extra.check_form));
    body.push_str(&register_form(
        &me.session.csrf,
        Some(subject),
        &extra.register_form,
    ));
    body.push_str("</div>");
    html(
        status,
        document(&title, Nav::Schemas, Some(&me.header()), &body),
    )
}

/// The versions as links and a form to pick the two shown side by side.
fn compare_form(subject: &str, versions: &[i64], current: Option<(i64, i64)>) -> String {
    let path = format!("/console/schemas/{}", url_encode(subject));
    let links: Vec<String> = versions
        .iter()
        .map(|v| {
            format!(
                "<a href=\"{path}?left={v}&amp;right={}\">{v}</a>",
                versions.last().copied().unwrap_or(*v)
            )
        })
        .collect();
    let select = |name: &str, pick: Option<i64>| {
        let mut out = format!("<select name=\"{name}\" id=\"{name}\">");
        for v in versions.iter().rev() {
            let sel = if Some(*v) == pick { " selected" } else { "" };
            out.push_str(&format!("<option value=\"{v}\"{sel}>{v}</option>"));
        }
        out.push_str("</select>");
        out
    };
    format!(
        "<p id=\"version-list\">Versions: {}</p>\
         <form class=\"filters\" id=\"compare-form\" method=\"get\" action=\"{path}\">\
         <label>Left {}</label><label>Right {}</label>\
         <button type=\"submit\">Compare</button></form>",
        links.join(" "),
        select("left", current.map(|c| c.0)),
        select("right", current.map(|c| c.1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn subjects_and_versions_are_validated() {
        assert!(subject_ok("orders-value").is_ok());
        assert!(subject_ok(":.ctx:orders value").is_ok());
        assert!(subject_ok("").is_err());
        assert!(subject_ok("a\nb").is_err());
        assert!(subject_ok(&"s".repeat(256)).is_err());
        assert_eq!(version_of("3", "left"), Ok(3));
        for bad in ["0", "-1", "x", "+2", "99999999999"] {
            assert!(version_of(bad, "left").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_two_latest_versions_by_default() {
        assert_eq!(pick(&[1, 2, 5], &q(&[])), Ok((2, 5)));
        assert_eq!(pick(&[4], &q(&[])), Ok((4, 4)));
        assert_eq!(
            pick(&[1, 2, 5], &q(&[("left", "1"), ("right", "latest")])),
            Ok((1, 5))
        );
        assert!(pick(&[1, 2], &q(&[("left", "3")])).is_err());
        assert!(pick(&[1, 2], &q(&[("right", "x")])).is_err());
    }

    #[test]
    fn schema_forms_are_validated() {
        let mut f = SchemaForm {
            subject: "s".into(),
            schema_type: String::new(),
            schema: " {\"type\": \"string\"} ".into(),
        };
        assert_eq!(
            f.request().expect("valid"),
            json!({"schema": "{\"type\": \"string\"}"}),
            "AVRO is the default and not sent"
        );
        f.schema_type = "JSON".into();
        assert_eq!(f.request().expect("valid")["schemaType"], "JSON");
        f.schema_type = "XML".into();
        assert!(f.request().is_err());
        f.schema_type = "PROTOBUF".into();
        f.schema = "x".repeat(MAX_SCHEMA + 1);
        assert!(f.request().is_err());
        f.schema = "  ".into();
        assert!(f.request().is_err());
        f.schema = "a\u{0}b".into();
        assert!(f.request().is_err());
    }

    #[test]
    fn schemas_are_pretty_printed_and_results_escaped() {
        assert_eq!(
            pretty("AVRO", "{\"type\":\"record\",\"name\":\"A\",\"fields\":[]}"),
            "{\n  \"type\": \"record\",\n  \"name\": \"A\",\n  \"fields\": []\n}"
        );
        assert_eq!(
            pretty("JSON", r#" {"b" : [1, {}, [ ]], "a":"x,\"{y}"} "#),
            "{\n  \"b\": [\n    1,\n    {},\n    []\n  ],\n  \"a\": \"x,\\\"{y}\"\n}"
        );
        assert_eq!(
            pretty("PROTOBUF", "syntax = \"proto3\";"),
            "syntax = \"proto3\";"
        );
        assert_eq!(pretty("JSON", "not json"), "not json");
        let r = check_result(&json!({"is_compatible": false,
            "messages": ["{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'<b>'}"]}));
        assert!(r.contains("Incompatible") && r.contains("READER_FIELD_MISSING_DEFAULT_VALUE"));
        assert!(!r.contains("<b>"), "{r}");
        assert!(check_result(&json!({"is_compatible": true})).contains("Compatible"));
    }

    #[test]
    fn subject_rows_are_escaped_and_linked() {
        let t = subjects_table(&[SubjectRow {
            subject: "<x> y".into(),
            version: "2".into(),
            id: "7".into(),
            schema_type: "AVRO".into(),
            compatibility: "BACKWARD".into(),
        }]);
        assert!(t.contains("href=\"/console/schemas/%3Cx%3E%20y\""), "{t}");
        assert!(!t.contains("<x>"), "{t}");
    }
}
