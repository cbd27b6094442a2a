//! `/console/audit/evidence`: the evidence package of a period, downloaded through
//! `GET /v1/audit/evidence` as the signed-in user (the download is recorded in the trail).
//! The page shows the trail's verification status next to the form.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use gatehouse_compliance::Timestamp;

use super::super::html::{secure_headers, url_encode};
use super::super::{
    AdminState, Me, Nav, Store, api, audit_status_html, current, document, esc, html,
    is_unauthorized, message, parse_form, posted_form, relogin, section_error,
};
use super::checked;
use crate::evidence::{MAX_PERIOD_DAYS, period};

/// A time for the form: RFC 3339 to the minute (`2025-01-01T10:00:00Z`).
fn minute(t: Timestamp) -> String {
    let micros = t.unix_micros();
    let whole = micros - micros.rem_euclid(60_000_000);
    let s = Timestamp::from_unix_micros(whole).to_rfc3339();
    format!("{}Z", &s[..19])
}

/// The form's default period: the last 24 hours.
fn default_period(now: Timestamp) -> (String, String) {
    let to = minute(Timestamp::from_unix_micros(
        now.unix_micros().saturating_add(60_000_000),
    ));
    let from = minute(Timestamp::from_unix_micros(
        now.unix_micros().saturating_sub(24 * 3_600_000_000),
    ));
    (from, to)
}

/// Validates the form's period; the `/v1/audit/evidence` query, or what is wrong.
fn query_of(from: &str, to: &str) -> Result<String, String> {
    checked("From", from, 64)?;
    checked("To", to, 64)?;
    period(Some(from), Some(to), Some(MAX_PERIOD_DAYS)).map_err(|m| {
        let mut m = m;
        if let Some(first) = m.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        format!("{m}.")
    })?;
    Ok(format!(
        "from={}&to={}",
        url_encode(from.trim()),
        url_encode(to.trim())
    ))
}

async fn render(
    s: &AdminState,
    store: &Store,
    me: &Me,
    peer: SocketAddr,
    (from, to): (&str, &str),
    note: Option<String>,
    status: StatusCode,
) -> Response {
    let st = api(crate::admin::audit::status(State(s.clone()), ConnectInfo(peer), me.auth()).await)
        .await;
    if is_unauthorized(&st) {
        return relogin(store, me);
    }
    let mut body = String::from("<p><a href=\"/console/audit\">Back to the audit trail</a></p>");
    if let Some(n) = note {
        body.push_str(&message("error", &n));
    }
    body.push_str("<div class=\"grid\">");
    body.push_str(&format!(
        "<form class=\"card\" id=\"evidence-form\" method=\"post\" action=\"/console/audit/evidence\">\
         <h2>Download an evidence package</h2>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>From (RFC 3339, inclusive) <input name=\"from\" id=\"from\" value=\"{}\" required \
         maxlength=\"64\" placeholder=\"2025-01-01T00:00:00Z\"></label>\
         <label>To (RFC 3339, exclusive) <input name=\"to\" id=\"to\" value=\"{}\" required \
         maxlength=\"64\" placeholder=\"2025-02-01T00:00:00Z\"></label>\
         <button type=\"submit\">Download package (.tar.gz)</button>\
         <p class=\"hint\">At most {MAX_PERIOD_DAYS} days per package. The whole trail is \
         verified first and a checkpoint is signed, so the package covers everything recorded \
         up to now; a trail that does not verify produces no package. The package holds the \
         populations (CSV and the events byte for byte), the signed checkpoint, the key \
         history, the node's configuration and manifest.json with every file's SHA-256 — \
         re-check it offline with <code>gatehouse evidence --check DIR</code> or \
         <code>sha256sum</code> (docs/auditors-guide.md). The download itself is recorded \
         (io.gatehouse.audit_access).</p></form>",
        esc(&me.session.csrf),
        esc(from),
        esc(to),
    ));
    body.push_str("<section class=\"card\" id=\"verification\"><h2>Verification</h2>");
    match &st {
        Ok(v) => body.push_str(&audit_status_html(v)),
        Err(e) => body.push_str(&section_error(e)),
    }
    body.push_str("</section></div>");
    html(
        status,
        document("Evidence package", Nav::Audit, Some(&me.header()), &body),
    )
}

/// Downloads the package for a validated query, or renders the page with the refusal.
async fn fetch(
    s: AdminState,
    store: &Store,
    me: &Me,
    peer: SocketAddr,
    (from, to): (&str, &str),
) -> Response {
    let query = match query_of(from, to) {
        Ok(q) => q,
        Err(m) => {
            return render(
                &s,
                store,
                me,
                peer,
                (from, to),
                Some(m),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let uri: Uri = match format!("/v1/audit/evidence?{query}").parse() {
        Ok(u) => u,
        Err(_) => {
            return render(
                &s,
                store,
                me,
                peer,
                (from, to),
                Some("The period cannot be used.".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let r = crate::admin::audit::evidence(
        State(s.clone()),
        ConnectInfo(peer),
        me.auth(),
        Query::try_from_uri(&uri),
    )
    .await;
    if r.status().is_success() {
        // Streamed through as the API sent it (type, attachment name, length).
        let mut r = r;
        secure_headers(&mut r);
        if !r.headers().contains_key(header::CONTENT_DISPOSITION) {
            return render(
                &s,
                store,
                me,
                peer,
                (from, to),
                Some("The package could not be downloaded.".into()),
                StatusCode::BAD_GATEWAY,
            )
            .await;
        }
        return r;
    }
    match api(r).await {
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(store, me),
        Err(e) => {
            let status =
                if e.status.is_client_error() || e.status == StatusCode::SERVICE_UNAVAILABLE {
                    e.status
                } else {
                    StatusCode::BAD_GATEWAY
                };
            let hint = if e.status == StatusCode::FORBIDDEN {
                " (your principal is not allowed to read the audit trail; the auditor role grants it)"
            } else {
                ""
            };
            render(
                &s,
                store,
                me,
                peer,
                (from, to),
                Some(format!("No package: {}{hint}", e.message)),
                status,
            )
            .await
        }
        Ok(_) => {
            render(
                &s,
                store,
                me,
                peer,
                (from, to),
                Some("The package could not be downloaded.".into()),
                StatusCode::BAD_GATEWAY,
            )
            .await
        }
    }
}

fn field(map: &BTreeMap<String, String>, key: &str) -> String {
    map.get(key)
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// `GET /console/audit/evidence`: the form; with `?from&to` the download.
pub(super) async fn page(
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
    let (from, to) = (field(&query, "from"), field(&query, "to"));
    if from.is_empty() && to.is_empty() {
        let (from, to) = default_period(Timestamp::now());
        return render(&s, &store, &me, peer, (&from, &to), None, StatusCode::OK).await;
    }
    fetch(s, &store, &me, peer, (&from, &to)).await
}

/// `POST /console/audit/evidence`: the download (CSRF-checked).
pub(super) async fn download(
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
    let (from, to) = (field(&f, "from"), field(&f, "to"));
    fetch(s, &store, &me, peer, (&from, &to)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_period_is_the_last_day() {
        let now = Timestamp::parse_rfc3339("2025-03-10T12:34:56.789Z").expect("time");
        let (from, to) = default_period(now);
        assert_eq!(from, "2025-03-09T12:34:00Z");
        assert_eq!(to, "2025-03-10T12:35:00Z");
        assert!(query_of(&from, &to).is_ok());
    }

    #[test]
    fn periods_are_checked_with_clear_messages() {
        assert_eq!(
            query_of("2025-01-01T00:00:00Z", "2025-01-02").expect("valid"),
            "from=2025-01-01T00%3A00%3A00Z&to=2025-01-02"
        );
        for (from, to, why) in [
            ("", "2025-01-02T00:00:00Z", "From is required"),
            (
                "yesterday",
                "2025-01-02T00:00:00Z",
                "From is not an RFC 3339",
            ),
            (
                "2025-01-02T00:00:00Z",
                "2025-01-01T00:00:00Z",
                "The period is empty",
            ),
            (
                "2020-01-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
                "longer than 366 days",
            ),
            (
                "2025-01-01T00:00:00Z",
                "2025-01-02\u{1}",
                "control characters",
            ),
        ] {
            let e = query_of(from, to).expect_err(why);
            assert!(e.contains(why), "{e}");
        }
    }
}
