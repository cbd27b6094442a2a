//! `/v1/users…`: SCRAM users, as the caller, through the gateway (see [`super::rest`]) with
//! Kafka's DescribeUserScramCredentials / AlterUserScramCredentials. `POST` salts the password
//! here (PBKDF2, as `gatehouse user add`) and sends only salt and salted password; the
//! password is never logged, audited or echoed.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_compliance::EventType;
use gatehouse_policy::{DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS, Mechanism};
use gatehouse_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion;
use gatehouse_protocol::messages::describe_user_scram_credentials_request::UserName;
use gatehouse_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use serde_json::{Value, json};

use super::rest::{Kafka, authenticate, kafka_fail, sb};
use super::{AdminState, body_json, fail};

/// Users and their credentials: (user, [(mechanism, iterations)]), or the Kafka error answer.
async fn describe(
    k: &Kafka,
    names: Option<&[String]>,
) -> Result<Vec<(String, Vec<(Mechanism, i32)>)>, Response> {
    let users = names.map(|ns| {
        ns.iter()
            .map(|n| UserName::default().with_name(sb(n)))
            .collect()
    });
    let resp = k
        .send(DescribeUserScramCredentialsRequest::default().with_users(users))
        .await?;
    if resp.error_code != 0 {
        return Err(kafka_fail(resp.error_code, resp.error_message.as_ref()));
    }
    let mut out = Vec::new();
    for r in resp.results {
        if r.error_code != 0 {
            return Err(kafka_fail(r.error_code, r.error_message.as_ref()));
        }
        let mut creds: Vec<(Mechanism, i32)> = r
            .credential_infos
            .iter()
            .filter_map(|c| Mechanism::from_scram_code(c.mechanism).map(|m| (m, c.iterations)))
            .collect();
        creds.sort_by_key(|(m, _)| m.name());
        out.push((r.user.to_string(), creds));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn user_json(name: &str, creds: &[(Mechanism, i32)]) -> Value {
    json!({
        "name": name,
        "principal": format!("User:{name}"),
        "mechanisms": creds.iter().map(|(m, it)| json!({"mechanism": m.name(), "iterations": it})).collect::<Vec<_>>(),
    })
}

/// `GET /v1/users`.
pub(super) async fn list(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "user.list", ("User", "*")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    match describe(&k, None).await {
        Ok(users) => Json(json!({
            "users": users.iter().map(|(n, c)| user_json(n, c)).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// Which mechanisms a create names (`SCRAM-SHA-256`, `SCRAM-SHA-512`, `both`; default both).
fn mechanisms_of(v: Option<&Value>) -> Result<Vec<Mechanism>, String> {
    match v
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("BOTH") => Ok(vec![Mechanism::ScramSha256, Mechanism::ScramSha512]),
        Some("SCRAM-SHA-256") => Ok(vec![Mechanism::ScramSha256]),
        Some("SCRAM-SHA-512") => Ok(vec![Mechanism::ScramSha512]),
        Some(other) => Err(format!(
            "mechanism {other:?}: expected SCRAM-SHA-256, SCRAM-SHA-512 or both"
        )),
    }
}

/// `POST /v1/users` with `{"name", "password", "mechanism"?, "iterations"?}`.
pub(super) async fn create(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "user.create", ("User", "(unnamed)")).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let parsed = match body_json(&body) {
        Ok(v) => v,
        Err(r) => {
            return ctx
                .refuse(EventType::Acl, ("User", "(unnamed)"), "Create", *r)
                .await;
        }
    };
    let name = parsed
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let checked = (|| {
        if name.is_empty() {
            return Err(
                "the body must name the user: {\"name\": \"...\", \"password\": \"...\"}"
                    .to_string(),
            );
        }
        let password = parsed
            .get("password")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or("the body must carry a non-empty \"password\"")?
            .to_string();
        let mechanisms = mechanisms_of(parsed.get("mechanism"))?;
        let iterations = match parsed.get("iterations") {
            None | Some(Value::Null) => DEFAULT_ITERATIONS,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(n))
                .ok_or_else(|| {
                    format!("iterations must be in {MIN_ITERATIONS}..={MAX_ITERATIONS}")
                })?,
        };
        Ok((password, mechanisms, iterations))
    })();
    let label = if name.is_empty() { "(unnamed)" } else { &name };
    let (password, mechanisms, iterations) = match checked {
        Ok(x) => x,
        Err(m) => {
            let r = fail(StatusCode::UNPROCESSABLE_ENTITY, 42212, m);
            return ctx
                .refuse(EventType::Acl, ("User", label), "Create", r)
                .await;
        }
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let upsertions = mechanisms
        .iter()
        .map(|m| crate::user_cli::scram_upsertion(&name, *m, iterations, &password))
        .collect();
    drop(password);
    let resp = match k
        .send(AlterUserScramCredentialsRequest::default().with_upsertions(upsertions))
        .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Some(r) = resp.results.iter().find(|r| r.error_code != 0) {
        return kafka_fail(r.error_code, r.error_message.as_ref());
    }
    let creds: Vec<(Mechanism, i32)> = mechanisms
        .iter()
        .map(|m| (*m, i32::try_from(iterations).unwrap_or(i32::MAX)))
        .collect();
    (StatusCode::CREATED, Json(user_json(&name, &creds))).into_response()
}

/// `DELETE /v1/users/{name}`: every SCRAM credential of the user (ACLs naming it stay).
pub(super) async fn delete(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = match authenticate(&s, &headers, peer, "user.delete", ("User", &name)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let k = match ctx.kafka().await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let users = match describe(&k, Some(std::slice::from_ref(&name))).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mechanisms: Vec<Mechanism> = users
        .iter()
        .filter(|(u, _)| *u == name)
        .flat_map(|(_, c)| c.iter().map(|(m, _)| *m))
        .collect();
    if mechanisms.is_empty() {
        // RESOURCE_NOT_FOUND.
        return kafka_fail(
            91,
            Some(&sb(&format!("user {name} has no SCRAM credentials"))),
        );
    }
    let deletions = mechanisms
        .iter()
        .map(|m| {
            ScramCredentialDeletion::default()
                .with_name(sb(&name))
                .with_mechanism(m.scram_code().unwrap_or(0))
        })
        .collect();
    let resp = match k
        .send(AlterUserScramCredentialsRequest::default().with_deletions(deletions))
        .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Some(r) = resp.results.iter().find(|r| r.error_code != 0) {
        return kafka_fail(r.error_code, r.error_message.as_ref());
    }
    Json(json!({
        "name": name,
        "deleted": mechanisms.iter().map(|m| m.name()).collect::<Vec<_>>(),
    }))
    .into_response()
}
