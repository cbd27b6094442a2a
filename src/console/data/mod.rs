//! Console pages over the data: a topic's page (partitions, configs, governance state and the
//! records its data policy refused), the message browser (each record as the signed-in
//! principal may see it: ciphertext stays ciphertext, marked "encrypted"), and the schema
//! pages (subjects, versions side by side, the compatibility check and register forms). The
//! topic's page also edits a config (`PATCH /v1/topics/{name}/configs`) and deletes the topic
//! with its name typed again (`DELETE /v1/topics/{name}?confirm={name}`).
//!
//! Like every console page these decide nothing: the topic pages call the admin REST
//! handlers (`GET /v1/topics/{name}`, `GET /v1/topics/{name}/messages`) in process with the
//! session's credentials, which act as the user through the gateway; the schema pages call
//! the schema registry over HTTPS as the user ([`registry`]). Every input is validated here
//! first, with a message on the page; every value shown is escaped.

mod registry;
mod schemas;
mod topic;

use axum::routing::{get, post};

use super::AdminState;

/// Routes of these pages (merged into the console router).
pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/console/topics/{name}", get(topic::topic_page))
        .route("/console/topics/{name}/configs", post(topic::edit_config))
        .route("/console/topics/{name}/delete", post(topic::delete_topic))
        .route("/console/topics/{name}/messages", get(topic::messages_page))
        .route(
            "/console/schemas",
            get(schemas::list_page).post(schemas::register_new),
        )
        .route("/console/schemas/{subject}", get(schemas::subject_page))
        .route("/console/schemas/{subject}/check", post(schemas::check))
        .route(
            "/console/schemas/{subject}/register",
            post(schemas::register),
        )
}

/// Checks a topic name as Kafka does (1–249 of `[A-Za-z0-9._-]`, not `.` or `..`).
fn topic_name_ok(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err("A topic name has 1 to 249 characters and is not \".\" or \"..\".");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("A topic name may contain only letters, digits, '.', '_' and '-'.");
    }
    Ok(())
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
fn time_of_millis(ms: i64) -> String {
    if ms < 0 {
        return "—".to_string();
    }
    gatehouse_compliance::Timestamp::from_unix_micros(ms.saturating_mul(1000)).to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(topic_name_ok("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "a b", "<x>", "a/b", &"x".repeat(250)] {
            assert!(topic_name_ok(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(time_of_millis(-1), "—");
        assert!(time_of_millis(1_700_000_000_000).starts_with("2023-11-14T22:13:20"));
    }
}
