//! Console pages over governance: the "explain this decision" view, keys and their rotation
//! history, and the evidence-package download. Like every console page they decide nothing:
//! each calls the admin REST handler in process with the session's credentials.
//!
//! * `GET/POST /console/access/explain`: a form (principal, resource type and name,
//!   operation, optional client address); the answer of `POST /v1/authz/explain` — ALLOWED or
//!   DENIED, shown large (`#explain-decision`), the reason, the binding(s) that decided and the
//!   ALLOWs a DENY overrode.
//! * `GET/POST /console/keys`: keys with their state, versions and last rotation; a create
//!   form. `GET /console/keys/{name}`: the key, its rotation history (each version: when, by
//!   whom) and forms to rotate, retire and destroy it — destroying asks for the key's name
//!   typed again (the API's confirmation token). `POST /console/keys/{name}/rotate|retire|destroy`.
//! * `GET /console/audit/evidence`: the trail's verification status and a form for the period
//!   (default: the last 24 hours); `POST` (or `GET ?from&to`) downloads the package from
//!   `GET /v1/audit/evidence` as an attachment, streamed through.
//!
//! Every POST carries the session's CSRF token; every field is validated on the server with a
//! message on the page; every value shown is escaped.

mod evidence;
mod explain;
mod keys;

use axum::routing::{get, post};

use super::AdminState;

/// Routes of these pages (merged into the console router).
pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route(
            "/console/access/explain",
            get(explain::page).post(explain::run),
        )
        .route("/console/keys", get(keys::list).post(keys::create))
        .route("/console/keys/{name}", get(keys::detail))
        .route("/console/keys/{name}/rotate", post(keys::rotate))
        .route("/console/keys/{name}/retire", post(keys::retire))
        .route("/console/keys/{name}/destroy", post(keys::destroy))
        .route(
            "/console/audit/evidence",
            get(evidence::page).post(evidence::download),
        )
}

/// Checks a free-text field: at most `max` bytes, no control characters. The error names the
/// field by its label.
fn checked(label: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("{label} is longer than {max} characters."));
    }
    if super::has_control(value) {
        return Err(format!("{label} contains control characters."));
    }
    Ok(())
}

/// A `<select>` over `options` (value, label) with `current` selected.
fn select(id: &str, options: &[(&str, &str)], current: &str) -> String {
    let mut out = format!("<select name=\"{id}\" id=\"{id}\">");
    for (v, label) in options {
        let sel = if *v == current { " selected" } else { "" };
        out.push_str(&format!(
            "<option value=\"{}\"{sel}>{}</option>",
            super::esc(v),
            super::esc(label)
        ));
    }
    out.push_str("</select>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded_and_selects_escaped() {
        assert!(checked("Name", "ok", 10).is_ok());
        assert!(
            checked("Name", &"x".repeat(11), 10)
                .unwrap_err()
                .contains("longer than 10")
        );
        assert!(
            checked("Name", "a\u{7}b", 10)
                .unwrap_err()
                .contains("control characters")
        );
        let s = select("t", &[("a\"b", "<A>"), ("c", "C")], "c");
        assert!(
            s.contains("<option value=\"a&quot;b\">&lt;A&gt;</option>"),
            "{s}"
        );
        assert!(s.contains("<option value=\"c\" selected>C</option>"), "{s}");
    }
}
