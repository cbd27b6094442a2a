//! Prometheus text rendering (format 0.0.4) of the metrics that `render_metrics` in
//! `admin.rs` adds to the gateway's basic counters: per-listener connections, response errors
//! by API and error, data-guard rejections by reason and encryption work (from
//! [`gatehouse_gateway::MetricsSnapshot`]); the schema registry's HTTP requests and latency
//! ([`gatehouse_registry::metrics`]); the bundled broker's log sizes and fsync latency
//! ([`gatehouse_broker::metrics`]); the audit writer's queue depth and lag
//! ([`gatehouse_compliance::audit::queue`]).
//!
//! The registry, broker and audit counters are process-wide and read from their crates when
//! the page is rendered; each family appears once its part runs in this process. Labels are
//! bounded (listener kinds, API and error names, fixed reasons, route templates, topics).

use std::fmt::Write as _;

use gatehouse_broker::metrics::BrokerMetricsSnapshot;
use gatehouse_compliance::audit::queue::AuditQueueSnapshot;
use gatehouse_gateway::MetricsSnapshot;
use gatehouse_registry::metrics::RegistryMetricsSnapshot;

/// Escapes a Prometheus label value (backslash, double quote, line feed).
pub(crate) fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The `# HELP` and `# TYPE` lines of a family.
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One family with a single unlabelled sample.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The samples of one histogram series: cumulative `_bucket`s (with `+Inf`), `_sum`, `_count`.
/// `labels` is empty or `k="v",...` (already escaped).
fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    buckets: &[(f64, u64)],
    count: u64,
    sum: f64,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {sum}");
    let _ = writeln!(out, "{name}_count{braces} {count}");
}

/// The Kafka API's name for the `api` label (the number when unknown).
fn api_name(key: i16) -> String {
    gatehouse_protocol::messages::ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| key.to_string())
}

/// The gateway's per-listener, error, data-guard and encryption families.
pub(crate) fn gateway(out: &mut String, m: &MetricsSnapshot) {
    let name = "gatehouse_gateway_listener_connections_accepted_total";
    family(
        out,
        name,
        "counter",
        "Client connections accepted, by listener (tls, plain).",
    );
    for (l, s) in &m.listeners {
        let _ = writeln!(out, "{name}{{listener=\"{}\"}} {}", label(l), s.accepted);
    }
    let name = "gatehouse_gateway_listener_connections_active";
    family(
        out,
        name,
        "gauge",
        "Client connections open now, by listener.",
    );
    for (l, s) in &m.listeners {
        let _ = writeln!(out, "{name}{{listener=\"{}\"}} {}", label(l), s.active);
    }
    let name = "gatehouse_gateway_listener_refusals_total";
    family(
        out,
        name,
        "counter",
        "Connections or requests refused, by listener and reason.",
    );
    for (l, s) in &m.listeners {
        for (reason, v) in &s.refused {
            let _ = writeln!(
                out,
                "{name}{{listener=\"{}\",reason=\"{}\"}} {v}",
                label(l),
                label(reason)
            );
        }
    }
    let name = "gatehouse_gateway_response_errors_total";
    family(
        out,
        name,
        "counter",
        "Error codes in responses sent to clients (one per partition, topic or group entry), by listener, Kafka API and error.",
    );
    for ((l, api, code), v) in &m.response_errors {
        let _ = writeln!(
            out,
            "{name}{{listener=\"{}\",api=\"{}\",error=\"{}\"}} {v}",
            label(l),
            label(&api_name(*api)),
            label(&gatehouse_gateway::error_name(*code))
        );
    }
    let name = "gatehouse_gateway_validation_rejections_total";
    family(
        out,
        name,
        "counter",
        "Records refused by the data guard, by reason (no_schema_id, unknown_id, wrong_subject, decode, rule, pan, ...).",
    );
    for (reason, v) in &m.validation_rejections {
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {v}", label(reason));
    }
    let c = &m.crypto;
    for (name, help, v) in [
        (
            "gatehouse_gateway_encrypted_records_total",
            "Records whose fields were encrypted on produce.",
            c.encrypted_records,
        ),
        (
            "gatehouse_gateway_encrypted_batches_total",
            "Record batches encrypted on produce (one data-key reservation each).",
            c.encrypted_batches,
        ),
        (
            "gatehouse_gateway_decrypted_records_total",
            "Records decrypted on fetch.",
            c.decrypted_records,
        ),
        (
            "gatehouse_gateway_decrypted_batches_total",
            "Record batches decrypted on fetch.",
            c.decrypted_batches,
        ),
        (
            "gatehouse_gateway_decryption_withheld_total",
            "Fetched partitions of encrypted topics left as ciphertext (the reader is not a plaintext-reader).",
            c.decryption_withheld,
        ),
    ] {
        scalar(out, name, "counter", help, v);
    }
    let name = "gatehouse_gateway_crypto_failures_total";
    family(
        out,
        name,
        "counter",
        "Partitions that could not be encrypted (produce refused) or decrypted (fetch answered with an error), by operation.",
    );
    let _ = writeln!(
        out,
        "{name}{{operation=\"encrypt\"}} {}",
        c.encryption_failures
    );
    let _ = writeln!(
        out,
        "{name}{{operation=\"decrypt\"}} {}",
        c.decryption_failures
    );
}

/// The schema registry's HTTP families (nothing before its first request).
pub(crate) fn registry(out: &mut String, m: &RegistryMetricsSnapshot) {
    if m.routes.is_empty() {
        return;
    }
    let name = "gatehouse_registry_http_requests_total";
    family(
        out,
        name,
        "counter",
        "Schema registry requests answered, by method, route template and status class.",
    );
    for ((method, route), s) in &m.routes {
        for (class, v) in &s.responses {
            let _ = writeln!(
                out,
                "{name}{{method=\"{}\",route=\"{}\",status=\"{class}\"}} {v}",
                label(method),
                label(route)
            );
        }
    }
    let name = "gatehouse_registry_http_request_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Time to answer schema registry requests, by method and route template.",
    );
    for ((method, route), s) in &m.routes {
        let labels = format!("method=\"{}\",route=\"{}\"", label(method), label(route));
        histogram(out, name, &labels, &s.buckets, s.count, s.sum_seconds);
    }
}

/// The bundled broker's log families.
pub(crate) fn broker(out: &mut String, m: &BrokerMetricsSnapshot) {
    let name = "gatehouse_broker_topic_log_bytes";
    family(
        out,
        name,
        "gauge",
        "Bytes of the partition logs (all segments) of each topic.",
    );
    for (topic, v) in &m.topic_bytes {
        let _ = writeln!(out, "{name}{{topic=\"{}\"}} {v}", label(topic));
    }
    scalar(
        out,
        "gatehouse_broker_log_bytes",
        "gauge",
        "Bytes of all partition logs.",
        m.log_bytes,
    );
    scalar(
        out,
        "gatehouse_broker_partitions",
        "gauge",
        "Partition logs open.",
        m.partitions,
    );
    let name = "gatehouse_broker_log_fsync_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Duration of partition fsync rounds (segment data, and the directory after a roll).",
    );
    histogram(
        out,
        name,
        "",
        &m.fsync.buckets,
        m.fsync.count,
        m.fsync.sum_seconds,
    );
    scalar(
        out,
        "gatehouse_broker_log_fsync_failures_total",
        "counter",
        "Partition fsync rounds that failed (the partition went offline).",
        m.fsync_failures,
    );
    scalar(
        out,
        "gatehouse_broker_log_flushes_total",
        "counter",
        "Group-commit rounds of the log flusher (each fsyncs one or more partitions).",
        m.flush_rounds,
    );
}

/// The audit writer's queue families.
pub(crate) fn audit_queue(out: &mut String, m: &AuditQueueSnapshot) {
    scalar(
        out,
        "gatehouse_audit_queue_depth",
        "gauge",
        "Entries (appends or batches of events) waiting in the audit writer's queue.",
        m.depth,
    );
    scalar(
        out,
        "gatehouse_audit_queue_capacity",
        "gauge",
        "Length limit of the audit writer's queue, in entries.",
        m.capacity,
    );
    scalar(
        out,
        "gatehouse_audit_pending_events",
        "gauge",
        "Audit events accepted but not yet durable (fsynced).",
        m.pending_events,
    );
    scalar(
        out,
        "gatehouse_audit_lag_seconds",
        "gauge",
        "Age of the oldest audit event accepted but not yet durable (0: none waits).",
        m.lag_seconds,
    );
    scalar(
        out,
        "gatehouse_audit_events_total",
        "counter",
        "Audit events made durable since start.",
        m.durable_events,
    );
    scalar(
        out,
        "gatehouse_audit_append_failures_total",
        "counter",
        "Audit events not confirmed durable: queue full, writer failed or closed, or the caller stopped waiting.",
        m.failed_events,
    );
}

/// The process-wide families: registry, broker, audit queue (each once its part runs).
pub(crate) fn process(out: &mut String) {
    registry(out, &gatehouse_registry::metrics::snapshot());
    if let Some(b) = gatehouse_broker::metrics::snapshot() {
        broker(out, &b);
    }
    if let Some(a) = gatehouse_compliance::audit::queue::snapshot() {
        audit_queue(out, &a);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gatehouse_broker::metrics::HistogramSnapshot;
    use gatehouse_registry::metrics::RouteSnapshot;

    use super::*;

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let mut out = String::new();
        histogram(&mut out, "h", "a=\"b\"", &[(0.5, 1), (1.0, 3)], 4, 2.25);
        assert_eq!(
            out,
            "h_bucket{a=\"b\",le=\"0.5\"} 1\nh_bucket{a=\"b\",le=\"1\"} 3\n\
             h_bucket{a=\"b\",le=\"+Inf\"} 4\nh_sum{a=\"b\"} 2.25\nh_count{a=\"b\"} 4\n"
        );
        let mut out = String::new();
        histogram(&mut out, "h", "", &[(0.0001, 0)], 0, 0.0);
        assert!(out.starts_with("h_bucket{le=\"0.0001\"} 0\n"), "{out}");
        assert!(out.ends_with("h_sum 0\nh_count 0\n"), "{out}");
    }

    #[test]
    fn families_render_with_escaped_labels() {
        let mut out = String::new();
        let routes: BTreeMap<(String, String), RouteSnapshot> = [(
            ("GET".to_string(), "/subjects/{subject}".to_string()),
            RouteSnapshot {
                responses: [("2xx", 2), ("4xx", 1)].into(),
                buckets: vec![(0.001, 3)],
                count: 3,
                sum_seconds: 0.002,
            },
        )]
        .into();
        registry(&mut out, &RegistryMetricsSnapshot { routes });
        assert!(out.contains(
            "gatehouse_registry_http_requests_total{method=\"GET\",route=\"/subjects/{subject}\",status=\"4xx\"} 1\n"
        ));
        assert!(
            out.contains("# TYPE gatehouse_registry_http_request_duration_seconds histogram\n")
        );
        let mut out = String::new();
        broker(
            &mut out,
            &BrokerMetricsSnapshot {
                topic_bytes: [("a\"b".to_string(), 10)].into(),
                log_bytes: 10,
                partitions: 1,
                fsync: HistogramSnapshot::default(),
                fsync_failures: 0,
                flush_rounds: 2,
            },
        );
        assert!(out.contains("gatehouse_broker_topic_log_bytes{topic=\"a\\\"b\"} 10\n"));
        assert!(out.contains("gatehouse_broker_log_fsync_duration_seconds_count 0\n"));
        assert!(out.contains("gatehouse_broker_log_flushes_total 2\n"));
        // Nothing from a registry that has not answered yet.
        let mut out = String::new();
        registry(&mut out, &RegistryMetricsSnapshot::default());
        assert!(out.is_empty());
    }
}
