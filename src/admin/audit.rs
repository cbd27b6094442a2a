//! `/v1/audit/…`: the audit trail through the admin API (issues 6 and 7).
//!
//! * `GET /v1/audit/status`: the self-check's verdict and counters, the latest signed
//!   checkpoint (tree size, root hash, time, signing key id) and the mirror's counters.
//! * `GET /v1/audit/events?from&to&principal&resource&method&granted&limit`: events of the
//!   verified trail, newest last, at most `limit` (default 1,000, at most 10,000).
//!
//! * `GET /v1/audit/evidence?from&to`: the evidence package of the period (what
//!   `gatehouse evidence` writes, built by the same [`crate::evidence::build_package`]) as one
//!   `application/gzip` tar, sent as an attachment; a checkpoint is signed first so the
//!   package covers everything recorded up to the request. At most
//!   [`crate::evidence::MAX_PERIOD_DAYS`] days, one package at a time.
//!
//! All need DESCRIBE on `Cluster:kafka-cluster` (the `auditor` role grants it; super users
//! have it). Every read of events and every evidence download is itself recorded as an
//! `io.gatehouse.audit_access` event (PCI DSS 10.2.1.3) before the answer leaves; when it
//! cannot be recorded the read is refused (500), like every audited decision.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_compliance::audit::evidence::EvidenceError;
use gatehouse_compliance::{AuditEvent, AuditLog, EventType, QueryFilter, Timestamp};
use gatehouse_policy::Operation;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AUDIT_SERVICE, AdminState, error, guard, record};
use crate::evidence;

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
        .auth_mechanism(caller.mechanism)
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

// ---------------------------------------------------------------------------------------------
// Evidence packages
// ---------------------------------------------------------------------------------------------

/// What `GET /v1/audit/evidence` needs from `serve` besides the audit directory.
pub struct EvidenceSource {
    /// The running trail: a checkpoint is signed before a package is cut, so the package
    /// covers everything recorded up to the request (its own access event included).
    pub log: AuditLog,
    /// The node's configuration snapshot ([`crate::evidence::configuration_of`]).
    pub configuration: Value,
}

/// One package is built at a time (each verifies the whole trail).
static BUILDING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Query parameters of `GET /v1/audit/evidence`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct EvidenceQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A package written to a temporary directory, ready to be sent.
struct Built {
    /// Holds the files until the download ends (removed on drop).
    _dir: tempfile::TempDir,
    archive: PathBuf,
    size: u64,
    name: String,
    summary: gatehouse_compliance::audit::evidence::EvidenceSummary,
}

fn evidence_failed(e: &EvidenceError) -> Response {
    match e {
        EvidenceError::NoCheckpoint => error(
            StatusCode::CONFLICT,
            40920,
            "The audit trail has no signed checkpoint yet, so nothing can be attested; try again in a minute",
        ),
        EvidenceError::Input(m) => error(StatusCode::UNPROCESSABLE_ENTITY, 42220, m.clone()),
        EvidenceError::Verify(v) => {
            tracing::error!(error = %v, "The audit trail does not verify: no evidence package was built.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50003,
                format!("The audit trail does not verify, so no evidence package was built: {v}"),
            )
        }
        other => {
            tracing::error!(error = %other, "An evidence package could not be built.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50004,
                format!("The evidence package could not be built: {other}"),
            )
        }
    }
}

/// `GET /v1/audit/evidence?from&to`.
pub(super) async fn evidence(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<EvidenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (api, caller) = match guard(
        &s,
        &headers,
        peer,
        Operation::Describe,
        "audit.evidence",
        "*",
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "unreadable query parameters (from, to: RFC 3339 times)",
        );
    };
    let (from, to) = match evidence::period(
        q.from.as_deref(),
        q.to.as_deref(),
        Some(evidence::MAX_PERIOD_DAYS),
    ) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, m),
    };
    let Some(dir) = audit_dir(&s) else {
        return no_trail();
    };
    let Ok(permit) = BUILDING.try_acquire() else {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            50304,
            "Another evidence package is being built; try again shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return r;
    };
    // The download is recorded before anything is built or sent (PCI DSS 10.2.1.3).
    let event = AuditEvent::builder(EventType::AuditAccess)
        .service(AUDIT_SERVICE)
        .method("audit.evidence")
        .principal(caller.principal.to_string())
        .auth_mechanism(caller.mechanism)
        .resource("AuditTrail", "evidence")
        .operation("Export")
        .granted(true)
        .client_address(caller.ip.to_string())
        .attribute("from", from.to_rfc3339())
        .attribute("to", to.to_rfc3339())
        .build();
    let recorded = match event {
        Ok(e) => record(api, e).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = recorded {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            format!("The download could not be recorded in the audit trail, so it is refused: {e}"),
        );
    }
    let source = s.evidence.get();
    if let Some(src) = source
        && let Err(e) = src.log.checkpoint().await
    {
        tracing::warn!(error = %e, "No checkpoint could be signed before the evidence package; it is cut from the latest one.");
    }
    let configuration = source.map(|src| src.configuration.clone());
    let operator = caller.principal.to_string();
    let built = tokio::task::spawn_blocking(move || -> Result<Built, EvidenceError> {
        let tmp = tempfile::Builder::new()
            .prefix("gatehouse-evidence-")
            .tempdir()
            .map_err(|source| EvidenceError::Output {
                path: std::env::temp_dir(),
                source,
            })?;
        let name = evidence::package_name(from, to);
        let out = tmp.path().join(&name);
        let summary = evidence::build_package(evidence::PackageRequest {
            audit_dir: &dir,
            out: &out,
            from,
            to,
            trusted_keys: None,
            configuration,
            operator: Some(operator),
        })?;
        let archive = tmp.path().join(format!("{name}.tar.gz"));
        let written = std::fs::File::create(&archive).and_then(|f| {
            let mtime = u64::try_from(Timestamp::now().unix_micros() / 1_000_000).unwrap_or(0);
            evidence::write_tar_gz(&out, &name, mtime, std::io::BufWriter::new(f))
        });
        if let Err(source) = written {
            return Err(EvidenceError::Output {
                path: archive,
                source,
            });
        }
        let size = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
        // The unpacked copy is not needed any more; the archive stays until sent.
        let _ = std::fs::remove_dir_all(&out);
        Ok(Built {
            _dir: tmp,
            archive,
            size,
            name,
            summary,
        })
    })
    .await;
    drop(permit);
    let built = match built {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return evidence_failed(&e),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50004,
                format!("The evidence package could not be built: {e}"),
            );
        }
    };
    let file = match tokio::fs::File::open(&built.archive).await {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50004,
                format!("The evidence package could not be read: {e}"),
            );
        }
    };
    tracing::info!(
        principal = %caller.principal,
        from = %from.to_rfc3339(),
        to = %to.to_rfc3339(),
        bytes = built.size,
        events = built.summary.events_in_period,
        "Evidence package downloaded through the admin API."
    );
    let mut headers = HeaderMap::new();
    let pairs = [
        (header::CONTENT_TYPE, "application/gzip".to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.tar.gz\"", built.name),
        ),
        (header::CONTENT_LENGTH, built.size.to_string()),
        (header::CACHE_CONTROL, "no-store".to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    let summary = &built.summary;
    for (k, v) in [
        ("x-gatehouse-evidence-verdict", "PASSED".to_string()),
        (
            "x-gatehouse-evidence-tree-size",
            summary.checkpoint.tree_size.to_string(),
        ),
        (
            "x-gatehouse-evidence-root-hash",
            summary
                .checkpoint
                .root_hash
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        ),
        (
            "x-gatehouse-evidence-events",
            summary.events_in_period.to_string(),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    // Streamed from disk; the temporary directory goes when the stream ends.
    let stream = futures::stream::unfold((file, Some(built)), |(mut file, built)| async move {
        use tokio::io::AsyncReadExt as _;
        built.as_ref()?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), (file, built)))
            }
            Err(e) => Some((Err(e), (file, None))),
        }
    });
    (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
}
