//! HTTP metrics of the registry's REST API: requests by method, route template and status
//! class, and a latency histogram by method and route, recorded by an axum middleware
//! ([`track`]) around every route of the server (authentication, authorization, audit and
//! forwarding included).
//!
//! Labels are bounded: the route is the matched template (`/subjects/{subject}/versions`),
//! never the raw path; unmatched requests are counted under `(unmatched)`; methods outside
//! the standard set are counted as `OTHER`. The counters are process-wide (one node per
//! process) and read with [`snapshot`].

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds (seconds) of the latency histogram's buckets (`+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "(unmatched)";

/// Counters of one (method, route).
#[derive(Default)]
struct RouteStats {
    /// Responses by status class, index 0 = 1xx … 4 = 5xx.
    classes: [u64; 5],
    /// Non-cumulative latency counts; the last slot is `+Inf`.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    count: u64,
    sum: Duration,
}

static ROUTES: Mutex<BTreeMap<(&'static str, String), RouteStats>> = Mutex::new(BTreeMap::new());

/// Requests and latency of one (method, route template).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteSnapshot {
    /// Responses by status class (`2xx`, `4xx`, ...; only classes seen).
    pub responses: BTreeMap<&'static str, u64>,
    /// `(upper bound in seconds, requests answered within it)`, cumulative, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// All requests (the `+Inf` bucket).
    pub count: u64,
    /// Total time spent answering, in seconds.
    pub sum_seconds: f64,
}

/// The registry's HTTP counters, by (method, route template).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegistryMetricsSnapshot {
    /// Keyed by (method, route template).
    pub routes: BTreeMap<(String, String), RouteSnapshot>,
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Records one answered request.
fn record(method: &'static str, route: String, status: u16, elapsed: Duration) {
    let class = usize::from(status / 100).clamp(1, 5) - 1;
    let secs = elapsed.as_secs_f64();
    let slot = LATENCY_BUCKETS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(LATENCY_BUCKETS.len());
    let mut routes = ROUTES.lock().unwrap_or_else(PoisonError::into_inner);
    let s = routes.entry((method, route)).or_default();
    s.classes[class] += 1;
    s.buckets[slot] += 1;
    s.count += 1;
    s.sum += elapsed;
}

/// The middleware: times the request and records it under its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    record(method, route, response.status().as_u16(), started.elapsed());
    response
}

/// The counters since start.
pub fn snapshot() -> RegistryMetricsSnapshot {
    let routes = ROUTES.lock().unwrap_or_else(PoisonError::into_inner);
    RegistryMetricsSnapshot {
        routes: routes
            .iter()
            .map(|((method, route), s)| {
                let mut cumulative = 0;
                let buckets = LATENCY_BUCKETS
                    .iter()
                    .zip(&s.buckets)
                    .map(|(bound, n)| {
                        cumulative += n;
                        (*bound, cumulative)
                    })
                    .collect();
                let responses = CLASSES
                    .iter()
                    .zip(s.classes)
                    .filter(|(_, n)| *n > 0)
                    .map(|(c, n)| (*c, n))
                    .collect();
                (
                    ((*method).to_string(), route.clone()),
                    RouteSnapshot {
                        responses,
                        buckets,
                        count: s.count,
                        sum_seconds: s.sum.as_secs_f64(),
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status_class() {
        let app = Router::new()
            .route("/metrics-test/{id}", get(|| async { "ok" }))
            .route(
                "/metrics-test/{id}/fail",
                get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            )
            .layer(axum::middleware::from_fn(track));
        for uri in ["/metrics-test/1", "/metrics-test/2", "/metrics-test/3/fail"] {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let _ = app.clone().oneshot(req).await.unwrap();
        }
        let req = Request::builder()
            .method("DELETE")
            .uri("/metrics-test/1")
            .body(Body::empty())
            .unwrap();
        let _ = app.clone().oneshot(req).await.unwrap();
        let s = snapshot();
        let get_route = &s.routes[&("GET".to_string(), "/metrics-test/{id}".to_string())];
        assert_eq!(get_route.responses, [("2xx", 2)].into());
        assert_eq!(get_route.count, 2);
        assert_eq!(get_route.buckets.last().unwrap().1, 2, "well under 10 s");
        assert!(get_route.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        let fail = &s.routes[&("GET".to_string(), "/metrics-test/{id}/fail".to_string())];
        assert_eq!(fail.responses, [("5xx", 1)].into());
        // A method the route does not have: 405 under the route's template.
        let delete = &s.routes[&("DELETE".to_string(), "/metrics-test/{id}".to_string())];
        assert_eq!(delete.responses, [("4xx", 1)].into());
        assert!(
            !s.routes.keys().any(|(_, r)| r.contains("metrics-test/1")),
            "raw paths never become labels"
        );
    }
}
