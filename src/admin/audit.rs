//! `/v1/audit/…`: the audit trail through the admin API (issues 6 and 7).
//!
//! * `GET /v1/audit/status`: the self-check's verdict and counters, the latest signed
//!   checkpoint (tree size, root hash, time, signing key id) and the mirror's counters.
//! * `GET /v1/audit/events?from&to&principal&resource&method&granted&limit`: events of the
//!   verified trail, newest last, at most `limit` (default 1,000, at most 10,000).
//!
//! Both need DESCRIBE on `Cluster:kafka-cluster` (the `auditor` role grants it; super users
//! have it). Every read of events is itself recorded as an `io.gatehouse.audit_access` event
//! (PCI DSS 10.2.1.3) before the answer leaves; when it cannot be recorded the read is refused
//! (500), like every audited decision.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_compliance::{AuditEvent, EventType, QueryFilter, Timestamp};
use gatehouse_policy::Operation;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AUDIT_SERVICE, AdminState, MECHANISM_BASIC, error, guard, record};

/// Events returned when no `limit` is given.
const DEFAULT_LIMIT: usize = 1_000;
/// Largest `limit` accepted.
const MAX_LIMIT: usize = 10_000;

fn audit_dir(s: &AdminState) -> Option<PathBuf> {
    s.audit_dir.get().cloned()
}

fn no_trail() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        50302,
        "The audit trail is not available: it is opened by `gatehouse serve`",
    )
}

/// `GET /v1/audit/status`.
pub(super) async fn status(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&s, &headers, peer, Operation::Describe, "audit.status", "*").await {
        return r;
    }
    let Some(dir) = audit_dir(&s) else {
        return no_trail();
    };
    let checkpoint = tokio::task::spawn_blocking(move || {
        gatehouse_compliance::audit::verify::latest_checkpoint(&dir)
    })
    .await;
    let checkpoint = match checkpoint {
        Ok(Ok(Some(c))) => json!({
            "log": c.log,
            "tree_size": c.tree_size,
            "root_hash": c.root_hash.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "time": c.time,
            "key_id": c.key_id,
        }),
        Ok(Ok(None)) => Value::Null,
        Ok(Err(e)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50001,
                format!("The audit trail cannot be read: {e}"),
            );
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50001,
                format!("The audit trail cannot be read: {e}"),
            );
        }
    };
    let self_check = s.audit_self_check.get().map(|m| {
        json!({
            "healthy": m.healthy() == 1,
            "checks_total": m.checks_total(),
            "failures_total": m.failures_total(),
            "last_verified_timestamp_seconds": m.last_verified_timestamp_seconds(),
            "verified_events": m.verified_events(),
        })
    });
    let mirror = s.audit_mirror.get().map(|m| {
        json!({
            "events_total": m.events_total(),
            "checkpoints_total": m.checkpoints_total(),
            "failures_total": m.failures_total(),
        })
    });
    Json(json!({
        "checkpoint": checkpoint,
        "self_check": self_check,
        "mirror": mirror,
    }))
    .into_response()
}

/// Query parameters of `GET /v1/audit/events`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct EventsQuery {
    from: Option<String>,
    to: Option<String>,
    principal: Option<String>,
    resource: Option<String>,
    method: Option<String>,
    granted: Option<bool>,
    limit: Option<usize>,
}

fn time(name: &str, v: Option<&String>) -> Result<Option<Timestamp>, String> {
    v.map(|t| {
        Timestamp::parse_rfc3339(t).map_err(|e| format!("{name}: not an RFC 3339 time ({e})"))
    })
    .transpose()
}

/// `GET /v1/audit/events`.
pub(super) async fn events(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (api, caller) =
        match guard(&s, &headers, peer, Operation::Describe, "audit.query", "*").await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "unreadable query parameters (from, to: RFC 3339; granted: true|false; limit: a number)",
        );
    };
    let Some(dir) = audit_dir(&s) else {
        return no_trail();
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("limit must be between 1 and {MAX_LIMIT}"),
        );
    }
    let (from, to) = match (time("from", q.from.as_ref()), time("to", q.to.as_ref())) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, e),
    };
    let filter = QueryFilter {
        from,
        to,
        principal: q.principal.clone(),
        resource: q.resource.clone(),
        method: q.method.clone(),
        granted: q.granted,
    };
    // The read is recorded before anything is returned (PCI DSS 10.2.1.3).
    let mut b = AuditEvent::builder(EventType::AuditAccess)
        .service(AUDIT_SERVICE)
        .method("audit.query")
        .principal(caller.principal.to_string())
        .auth_mechanism(MECHANISM_BASIC)
        .resource("AuditTrail", "events")
        .operation("Read")
        .granted(true)
        .client_address(caller.ip.to_string())
        .attribute("limit", limit.to_string());
    for (k, v) in [
        ("from", &q.from),
        ("to", &q.to),
        ("principal", &q.principal),
        ("resource", &q.resource),
        ("method", &q.method),
    ] {
        if let Some(v) = v {
            b = b.attribute(k, v.clone());
        }
    }
    if let Some(g) = q.granted {
        b = b.attribute("granted", g.to_string());
    }
    let recorded = match b.build() {
        Ok(e) => record(api, e).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = recorded {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            format!("The read could not be recorded in the audit trail, so it is refused: {e}"),
        );
    }
    let found = tokio::task::spawn_blocking(move || {
        // Through the query index when it is usable; it falls back to the verifying scan.
        gatehouse_compliance::audit::index::query_indexed(&dir, &filter)
    })
    .await;
    let found = match found {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50001,
                format!("The audit trail does not verify or cannot be read: {e}"),
            );
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50001,
                format!("The audit query failed: {e}"),
            );
        }
    };
    let total = found.len();
    let skip = total.saturating_sub(limit);
    let events: Vec<Value> = found[skip..]
        .iter()
        .filter_map(|e| serde_json::from_slice(&e.to_canonical_json()).ok())
        .collect();
    Json(json!({
        "count": events.len(),
        "matched": total,
        "truncated": skip > 0,
        "events": events,
    }))
    .into_response()
}
