//! Authentication and authorization of the REST API, as Confluent Schema Registry with RBAC
//! behaves: the same identities as the gateway (HTTP Basic for SCRAM-stored users, checked with
//! [`Authenticator::verify_plain`]; `Authorization: Bearer` for OIDC tokens through the
//! [`TokenValidator`]) and the same ACLs on `Subject` resources ([`Authorizer`]).
//!
//! [`auth_layer`] runs on every matched route except `/`:
//!
//! * no credentials, or refused ones → 401 `{"error_code":40101,...}` with
//!   `WWW-Authenticate: Basic realm="gatehouse"`;
//! * the [`Caller`] (principal, mechanism, client address) goes into the request extensions,
//!   and into the response extensions for the audit layer;
//! * routes with a fixed requirement ([`requirement`]) are authorized here: a denial is 403
//!   `{"error_code":40301,"message":"User is denied operation Write on Subject: s"}`, carrying a
//!   [`Denied`] response extension the audit layer records;
//! * listings (`GET /subjects`, `GET /schemas`) and lookups by schema id are authorized by their
//!   handlers with [`Caller::may`].
//!
//! Credentials are never logged or audited; failed ones leave an [`AuthFailed`] extension.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use gatehouse_policy::acl::CLUSTER_NAME;
use gatehouse_policy::{
    AuthError, Authenticator, Authorizer, Operation, Principal, ResourceType, TokenValidator,
};
use serde_json::json;

use super::CONTENT_TYPE;

/// Realm of the `WWW-Authenticate` challenge.
pub const REALM: &str = "gatehouse";
/// `auth_mechanism` of callers that used HTTP Basic.
pub const MECHANISM_BASIC: &str = "HTTP/BASIC";
/// `auth_mechanism` of callers that used a bearer token.
pub const MECHANISM_BEARER: &str = "HTTP/BEARER";

/// What the registry authenticates and authorizes with (shared with the gateway).
#[derive(Clone)]
pub struct RegistryAuth {
    /// HTTP Basic: `verify_plain` against the SCRAM-stored users (successes cached briefly).
    pub authenticator: Authenticator,
    /// ACLs and role bindings on `Subject` (and `Cluster` for global settings).
    pub authorizer: Authorizer,
    /// Bearer tokens (OIDC); `None` refuses `Authorization: Bearer`.
    pub tokens: Option<Arc<dyn TokenValidator>>,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("authenticator", &self.authenticator)
            .field("authorizer", &self.authorizer)
            .field("bearer_tokens", &self.tokens.is_some())
            .finish()
    }
}

/// The authenticated caller of a request (request and response extension).
#[derive(Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// How: [`MECHANISM_BASIC`] or [`MECHANISM_BEARER`].
    pub mechanism: &'static str,
    /// From where (`0.0.0.0` when the server gave no connection info).
    pub ip: IpAddr,
    authorizer: Authorizer,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("principal", &self.principal)
            .field("mechanism", &self.mechanism)
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// Whether the caller may do `op` on the resource.
    pub fn may(&self, resource_type: ResourceType, name: &str, op: Operation) -> bool {
        self.decide(resource_type, name, op).allowed
    }

    fn decide(
        &self,
        resource_type: ResourceType,
        name: &str,
        op: Operation,
    ) -> gatehouse_policy::Decision {
        self.authorizer
            .authorize(&self.principal, self.ip, resource_type, name, op)
    }
}

/// A refused request (response extension; the audit layer records it).
#[derive(Clone, Debug)]
pub struct Denied {
    /// The resource type checked.
    pub resource_type: ResourceType,
    /// The resource name checked.
    pub name: String,
    /// The operation that was refused.
    pub operation: Operation,
    /// The deciding rule, when a DENY decided.
    pub matched: Option<String>,
}

/// A refused authentication (response extension; the audit layer records it). Never holds the
/// password or the token.
#[derive(Clone, Debug)]
pub struct AuthFailed {
    /// [`MECHANISM_BASIC`] or [`MECHANISM_BEARER`].
    pub mechanism: &'static str,
    /// The user name given with Basic (shown in the audit trail, as Kafka does).
    pub user: Option<String>,
    /// Why (safe to show).
    pub reason: String,
}

/// Confluent's spelling of an operation in 403 messages (`Read`, `AlterConfigs`).
pub fn operation_label(op: Operation) -> &'static str {
    match op {
        Operation::Any => "Any",
        Operation::All => "All",
        Operation::Read => "Read",
        Operation::Write => "Write",
        Operation::Create => "Create",
        Operation::Delete => "Delete",
        Operation::Alter => "Alter",
        Operation::Describe => "Describe",
        Operation::ClusterAction => "ClusterAction",
        Operation::DescribeConfigs => "DescribeConfigs",
        Operation::AlterConfigs => "AlterConfigs",
        Operation::IdempotentWrite => "IdempotentWrite",
    }
}

fn json_response(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"error_code": code, "message": message}).to_string();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response()
}

/// 403/40301 for `denied`; `shown_name` replaces the resource name in the message when the
/// name itself should not be revealed.
pub fn denied_response(denied: Denied, shown_name: Option<&str>) -> Response {
    let message = match shown_name {
        Some("") => format!(
            "User is denied operation {} on {}",
            operation_label(denied.operation),
            denied.resource_type
        ),
        Some(n) => format!(
            "User is denied operation {} on {}: {n}",
            operation_label(denied.operation),
            denied.resource_type
        ),
        None => format!(
            "User is denied operation {} on {}: {}",
            operation_label(denied.operation),
            denied.resource_type,
            denied.name
        ),
    };
    let mut r = json_response(StatusCode::FORBIDDEN, 40301, &message);
    r.extensions_mut().insert(denied);
    r
}

fn unauthorized(message: &str, failed: Option<AuthFailed>) -> Response {
    let mut r = json_response(StatusCode::UNAUTHORIZED, 40101, message);
    let challenge = format!("Basic realm=\"{REALM}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    if let Some(f) = failed {
        r.extensions_mut().insert(f);
    }
    r
}

/// What a route needs beyond authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// No authentication at all (`/`).
    Open,
    /// Authentication only.
    Authenticated,
    /// One of these operations on the `{subject}` of the path (the first is named on denial).
    Subject(&'static [Operation]),
    /// The operation on `Cluster:kafka-cluster` (global settings).
    Cluster(Operation),
    /// The handler filters or checks with [`Caller::may`].
    Handler,
}

/// The requirement of `method` on the matched `route` (axum's route template). Routes not in
/// the table need ALTER on the cluster (super users), so a new route is closed until listed.
pub fn requirement(method: &Method, route: &str) -> Requirement {
    use Operation::{AlterConfigs, Delete, DescribeConfigs, Read, Write};
    const READ: &[Operation] = &[Read];
    const READ_CONFIG: &[Operation] = &[Read, DescribeConfigs];
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let put = *method == Method::PUT;
    let delete = *method == Method::DELETE;
    match route {
        "/" => Requirement::Open,
        "/subjects" | "/schemas" if get => Requirement::Handler,
        "/schemas/ids/{id}"
        | "/schemas/ids/{id}/schema"
        | "/schemas/ids/{id}/subjects"
        | "/schemas/ids/{id}/versions"
        | "/schemas/guids/{guid}"
        | "/schemas/guids/{guid}/ids"
            if get =>
        {
            Requirement::Handler
        }
        "/schemas/types" | "/contexts" | "/config" | "/mode" if get => Requirement::Authenticated,
        "/config" | "/mode" if put || delete => Requirement::Cluster(AlterConfigs),
        "/subjects/{subject}" if post => Requirement::Subject(READ),
        "/subjects/{subject}" if delete => Requirement::Subject(&[Delete]),
        "/subjects/{subject}/versions" if get => Requirement::Subject(READ),
        "/subjects/{subject}/versions" if post => Requirement::Subject(&[Write]),
        "/subjects/{subject}/versions/{version}" if delete => Requirement::Subject(&[Delete]),
        "/subjects/{subject}/versions/{version}"
        | "/subjects/{subject}/versions/{version}/schema"
        | "/subjects/{subject}/versions/{version}/referencedby"
        | "/subjects/{subject}/metadata"
            if get =>
        {
            Requirement::Subject(READ)
        }
        "/config/{subject}" | "/mode/{subject}" if get => Requirement::Subject(READ_CONFIG),
        "/config/{subject}" | "/mode/{subject}" if put || delete => {
            Requirement::Subject(&[AlterConfigs])
        }
        "/compatibility/subjects/{subject}/versions/{version}"
        | "/compatibility/subjects/{subject}/versions"
            if post =>
        {
            Requirement::Subject(READ)
        }
        _ => Requirement::Cluster(Operation::Alter),
    }
}

/// The middleware: authenticate, authorize fixed requirements, pass the [`Caller`] on.
pub async fn auth_layer(
    State(auth): State<Arc<RegistryAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let needs = requirement(
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str),
    );
    if needs == Requirement::Open {
        return next.run(request).await;
    }
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let caller = match authenticate(&auth, request.headers().get(header::AUTHORIZATION), ip).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (mut parts, body) = request.into_parts();
    let denied = match needs {
        Requirement::Subject(ops) => {
            let subject = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
                .await
                .ok()
                .and_then(|Path(p)| p.get("subject").cloned())
                .unwrap_or_default();
            check(&caller, ResourceType::Subject, &subject, ops)
        }
        Requirement::Cluster(op) => check(&caller, ResourceType::Cluster, CLUSTER_NAME, &[op]),
        Requirement::Open | Requirement::Authenticated | Requirement::Handler => None,
    };
    let mut response = match denied {
        Some(d) => denied_response(d, None),
        None => {
            parts.extensions.insert(caller.clone());
            next.run(Request::from_parts(parts, body)).await
        }
    };
    response.extensions_mut().insert(caller);
    response
}

/// `None` when one of `ops` is allowed; else the denial of the first.
fn check(caller: &Caller, rtype: ResourceType, name: &str, ops: &[Operation]) -> Option<Denied> {
    let mut first = None;
    for op in ops {
        let d = caller.decide(rtype, name, *op);
        if d.allowed {
            return None;
        }
        first.get_or_insert((*op, d.matched));
    }
    let (operation, matched) = first.unwrap_or((Operation::All, None));
    Some(Denied {
        resource_type: rtype,
        name: name.to_string(),
        operation,
        matched,
    })
}

async fn authenticate(
    auth: &RegistryAuth,
    header_value: Option<&HeaderValue>,
    ip: IpAddr,
) -> Result<Caller, Response> {
    let Some(value) = header_value else {
        return Err(unauthorized(
            "Unauthorized: HTTP Basic credentials or a Bearer token are required",
            None,
        ));
    };
    let Ok(text) = value.to_str() else {
        return Err(unauthorized(
            "Unauthorized: the Authorization header is not ASCII",
            Some(AuthFailed {
                mechanism: MECHANISM_BASIC,
                user: None,
                reason: "Authorization header is not ASCII".into(),
            }),
        ));
    };
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        basic(auth, rest, ip).await
    } else if scheme.eq_ignore_ascii_case("bearer") {
        bearer(auth, rest, ip).await
    } else {
        Err(unauthorized(
            "Unauthorized: unsupported authorization scheme (use Basic or Bearer)",
            None,
        ))
    }
}

async fn basic(auth: &RegistryAuth, encoded: &str, ip: IpAddr) -> Result<Caller, Response> {
    let fail = |user: Option<String>, reason: &str, message: &str| {
        unauthorized(
            message,
            Some(AuthFailed {
                mechanism: MECHANISM_BASIC,
                user,
                reason: reason.to_string(),
            }),
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some(decoded) = decoded else {
        return Err(fail(
            None,
            "malformed Basic credentials",
            "Unauthorized: malformed Basic credentials",
        ));
    };
    let Some((user, password)) = decoded.split_once(':') else {
        return Err(fail(
            None,
            "malformed Basic credentials",
            "Unauthorized: malformed Basic credentials",
        ));
    };
    match auth.authenticator.verify_plain(user, password, ip).await {
        Ok(principal) => Ok(Caller {
            principal,
            mechanism: MECHANISM_BASIC,
            ip,
            authorizer: auth.authorizer.clone(),
        }),
        Err(e) => {
            let message = match &e {
                AuthError::InvalidCredentials { .. } => {
                    "Unauthorized: invalid user name or password".to_string()
                }
                other => format!("Unauthorized: {}", other.client_message()),
            };
            Err(fail(Some(user.to_string()), &e.to_string(), &message))
        }
    }
}

async fn bearer(auth: &RegistryAuth, token: &str, ip: IpAddr) -> Result<Caller, Response> {
    let fail = |reason: String| {
        unauthorized(
            &format!("Unauthorized: {reason}"),
            Some(AuthFailed {
                mechanism: MECHANISM_BEARER,
                user: None,
                reason,
            }),
        )
    };
    let Some(validator) = &auth.tokens else {
        return Err(fail(
            "Bearer tokens are not accepted: no OIDC issuer is configured".to_string(),
        ));
    };
    if token.is_empty() {
        return Err(fail("empty Bearer token".to_string()));
    }
    match validator.validate(token).await {
        Ok(t) => Ok(Caller {
            principal: t.principal,
            mechanism: MECHANISM_BEARER,
            ip,
            authorizer: auth.authorizer.clone(),
        }),
        Err(e) => Err(fail(format!("invalid token: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements() {
        use Operation::*;
        let r = |m: Method, p: &str| requirement(&m, p);
        assert_eq!(r(Method::GET, "/"), Requirement::Open);
        assert_eq!(r(Method::GET, "/subjects"), Requirement::Handler);
        assert_eq!(
            r(Method::POST, "/subjects/{subject}/versions"),
            Requirement::Subject(&[Write])
        );
        assert_eq!(
            r(Method::DELETE, "/subjects/{subject}/versions/{version}"),
            Requirement::Subject(&[Delete])
        );
        assert_eq!(
            r(Method::PUT, "/config"),
            Requirement::Cluster(AlterConfigs)
        );
        assert_eq!(
            r(Method::PUT, "/mode/{subject}"),
            Requirement::Subject(&[AlterConfigs])
        );
        assert_eq!(r(Method::GET, "/nope"), Requirement::Cluster(Alter));
    }

    #[test]
    fn denial_messages() {
        let d = Denied {
            resource_type: ResourceType::Subject,
            name: "orders-value".into(),
            operation: Operation::Write,
            matched: None,
        };
        let r = denied_response(d, None);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.extensions().get::<Denied>().is_some());
    }
}
