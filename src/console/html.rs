//! HTML building blocks of the console: strict escaping of every interpolated value, the page
//! layout (navigation, the logout form with its CSRF token) and the response headers every
//! console page carries (CSP `default-src 'self'`, no framing, no caching, and
//! `Referrer-Policy: same-origin`: no referrer to other origins, while browsers still send
//! `Origin` on the console's own forms — `no-referrer` would make that `Origin: null`).

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The console's style sheet, embedded in the binary (no CDN, no build step).
pub(super) const CSS: &str = include_str!("console.css");

/// The Content-Security-Policy of every console response: nothing but this origin, no
/// inline script or style, forms only to this origin, never inside a frame.
pub(super) const CSP: &str = "default-src 'self'; script-src 'none'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '`' => out.push_str("&#96;"),
            '=' => out.push_str("&#61;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub(super) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Who is logged in, for the page header.
pub(super) struct Header<'a> {
    pub principal: &'a str,
    pub csrf: &'a str,
}

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Overview,
    Topics,
    Schemas,
    Access,
    Keys,
    Audit,
    None,
}

/// A complete HTML document; `body` is already-escaped HTML.
pub(super) fn document(title: &str, nav: Nav, who: Option<&Header<'_>>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Gatehouse console</title>\
         <link rel=\"stylesheet\" href=\"/console/static/console.css\"></head><body>\
         <header class=\"top\"><span class=\"brand\">Gatehouse</span>",
        esc(title)
    );
    if let Some(who) = who {
        out.push_str("<nav>");
        for (entry, href, label) in [
            (Nav::Overview, "/console", "Overview"),
            (Nav::Topics, "/console/topics", "Topics"),
            (Nav::Schemas, "/console/schemas", "Schemas"),
            (Nav::Access, "/console/access", "Users &amp; access"),
            (Nav::Keys, "/console/keys", "Keys"),
            (Nav::Audit, "/console/audit", "Audit trail"),
        ] {
            let class = if entry == nav {
                " class=\"current\""
            } else {
                ""
            };
            let _ = write!(out, "<a href=\"{href}\"{class}>{label}</a>");
        }
        let _ = write!(
            out,
            "</nav><form class=\"logout\" method=\"post\" action=\"/console/logout\">\
             <span class=\"who\">{}</span>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>",
            esc(who.principal),
            esc(who.csrf)
        );
    }
    let _ = writeln!(
        out,
        "</header><main><h1>{}</h1>{body}</main></body></html>",
        esc(title)
    );
    out
}

/// Sets the security headers every console response carries.
pub(super) fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// An HTML response with the console's headers.
pub(super) fn html(status: StatusCode, document: String) -> Response {
    let mut r = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        document,
    )
        .into_response();
    secure_headers(&mut r);
    r
}

/// A friendly error page: the message, a way back, never internals.
pub(super) fn error_page(status: StatusCode, who: Option<&Header<'_>>, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let back = if who.is_some() {
        "<p><a href=\"/console\">Back to the overview</a></p>"
    } else {
        "<p><a href=\"/console/login\">Back to the login page</a></p>"
    };
    let body = format!(
        "<p class=\"msg error\" role=\"alert\">{}</p>{back}",
        esc(message)
    );
    html(status, document(title, Nav::None, who, &body))
}

/// `303 See Other` to `location` (a fixed console path), with the console's headers.
pub(super) fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r);
    r
}

/// A message box (`kind`: `ok` or `error`).
pub(super) fn message(kind: &str, text: &str) -> String {
    format!(
        "<p class=\"msg {kind}\" role=\"{}\">{}</p>",
        if kind == "error" { "alert" } else { "status" },
        esc(text)
    )
}

/// A `<td>` with escaped text.
pub(super) fn td(text: &str) -> String {
    format!("<td>{}</td>", esc(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attribute_breakouts() {
        assert_eq!(
            esc("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(esc("a\"b&c"), "a&quot;b&amp;c");
        assert_eq!(esc("x onmouseover=`y`"), "x onmouseover&#61;&#96;y&#96;");
        assert_eq!(esc("plain-topic.name_1"), "plain-topic.name_1");
        assert_eq!(esc("ünïcode"), "ünïcode");
    }

    #[test]
    fn documents_escape_title_principal_and_token() {
        let who = Header {
            principal: "User:<b>mallory</b>",
            csrf: "\"><script>",
        };
        let d = document("<i>t</i>", Nav::Topics, Some(&who), "<p>body</p>");
        assert!(!d.contains("<b>mallory"));
        assert!(!d.contains("<script>"));
        assert!(!d.contains("<i>t</i>"));
        assert!(d.contains("User:&lt;b&gt;mallory&lt;/b&gt;"));
        assert!(d.contains("<a href=\"/console/topics\" class=\"current\">"));
        assert!(d.contains("<p>body</p>"));
    }

    #[test]
    fn pages_carry_the_security_headers() {
        let r = error_page(StatusCode::FORBIDDEN, None, "<no>");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert!(CSP.starts_with("default-src 'self'"));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(url_encode("User:a b&c=d"), "User%3Aa%20b%26c%3Dd");
        assert_eq!(url_encode("ok-._~"), "ok-._~");
    }
}
