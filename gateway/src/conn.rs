//! One client connection: frames in, responses out in request order.
//!
//! The read side decodes frames, authenticates (SASL, or the mTLS principal the listener
//! found), authorizes every request (`authz`), answers what the gateway owns itself
//! (ApiVersions, SASL, ACL and SCRAM administration) and forwards the rest on this
//! connection's own upstream connection, which is opened lazily after authentication (idle and
//! unauthenticated clients hold no upstream socket). Each request queues one "pending response"
//! — a future — and a writer task awaits them strictly in order, so pipelined requests stay
//! pipelined upstream while responses leave in the order the client sent the requests.
//! Produce with acks=0 queues nothing, as Kafka sends nothing.
//!
//! Before authentication only ApiVersions, SaslHandshake and SaslAuthenticate are accepted,
//! frames are limited to 512 KiB (Kafka's `sasl.server.max.receive.size`), and anything else
//! closes the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gatehouse_compliance::{AuditEvent, EventType, Outcome};
use gatehouse_policy::{Mechanism, Principal, SaslSession, SaslStep};
use gatehouse_protocol::client::Connection;
use gatehouse_protocol::frame::FrameDecoder;
use gatehouse_protocol::header::{RequestHeaderPeek, decode_body, encode_response};
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    api_versions_response::ApiVersion,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::authz::{self, Access, Request, Route, code};
use crate::{Inner, Listener, access, admin, crypt, guard, topics};

/// A response being produced; `Err` closes the connection after the responses before it.
type Pending = Pin<Box<dyn Future<Output = Result<Option<Bytes>, String>> + Send>>;

/// Requests a client may have in flight before the gateway stops reading from it.
const MAX_IN_FLIGHT: usize = 64;

/// Largest frame accepted before authentication.
const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;

/// How long a client may take to authenticate after connecting.
const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the connection knows about its client.
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub listener: Arc<Listener>,
    /// The principal mapped from a verified client certificate (mTLS).
    pub tls_principal: Option<Principal>,
}

struct Authenticated {
    principal: Principal,
    mechanism: String,
    expires: Option<Instant>,
    /// For SASL users: the name and the credential generation at sign-in.
    user: Option<(String, u64)>,
}

struct State {
    gw: Arc<Inner>,
    info: ConnInfo,
    auth: Option<Authenticated>,
    sasl: Option<SaslSession>,
    access: Option<Access>,
    upstream: Option<Arc<Connection>>,
    users_changed: watch::Receiver<u64>,
    client_id: Option<String>,
    /// After SaslHandshake v0 the next frames are raw SASL tokens, not Kafka requests.
    raw_sasl: bool,
}

/// Serves one client connection until it closes, fails, or the gateway drains.
pub(crate) async fn serve<S>(
    stream: S,
    info: ConnInfo,
    gw: Arc<Inner>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = info.peer;
    let kind = info.listener.kind;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            match pending.await {
                Ok(Some(bytes)) => {
                    if let Err(e) = wr.write_all(&bytes).await {
                        debug!(%peer, error = %e, "Client went away while we wrote a response.");
                        return;
                    }
                }
                Ok(None) => {}
                Err(reason) => {
                    info!(%peer, %reason, "Closing client connection.");
                    break;
                }
            }
        }
        let _ = wr.shutdown().await;
    });

    let mut state = State {
        users_changed: gw.users.subscribe(),
        auth: info.tls_principal.clone().map(|principal| Authenticated {
            principal,
            mechanism: "mTLS".to_string(),
            expires: None,
            user: None,
        }),
        gw: gw.clone(),
        info,
        sasl: None,
        access: None,
        upstream: None,
        client_id: None,
        raw_sasl: false,
    };
    if let Some(a) = &state.auth {
        let event = state.auth_event(&a.principal.to_string(), "mTLS", true, None);
        if let Err(reason) = state.gw.audit_now(vec![event]).await {
            warn!(%peer, %reason, "Refusing the connection: the audit trail failed.");
            return;
        }
    }
    let small = FrameDecoder::new(MAX_UNAUTHENTICATED_FRAME);
    let large = FrameDecoder::new(gw.config.max_frame_size);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let deadline = tokio::time::Instant::now() + AUTHENTICATION_TIMEOUT;
    let mut first = true;
    'conn: loop {
        let decoder = if state.auth.is_some() { &large } else { &small };
        let frame = match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                if first && buf.len() >= 3 && buf[0] == 0x16 && buf[1] == 0x03 {
                    gw.metrics.refused_on(kind, "tls_on_plaintext");
                    info!(%peer, "A TLS handshake arrived on the plaintext listener; closing.");
                    break;
                }
                let auth_wait = async {
                    if state.auth.is_none() {
                        tokio::time::sleep_until(deadline).await
                    } else {
                        std::future::pending::<()>().await
                    }
                };
                tokio::select! {
                    read = rd.read_buf(&mut buf) => match read {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) => {
                            debug!(%peer, error = %e, "Client read failed.");
                            break;
                        }
                    },
                    _ = auth_wait => {
                        gw.metrics.refused_on(kind, "authentication_timeout");
                        info!(%peer, "Client did not authenticate in time; closing.");
                        break;
                    }
                    changed = state.users_changed.changed() => {
                        if changed.is_ok() && state.credentials_changed() {
                            info!(%peer, "The user's credentials changed; closing the session.");
                            break;
                        }
                        continue;
                    }
                    _ = shutdown.changed() => {
                        debug!(%peer, "Draining: no new requests from this client.");
                        break;
                    }
                }
            }
            Err(e) => {
                gw.metrics.refused_on(kind, "bad_frame");
                info!(%peer, error = %e, "Closing a connection that sent an invalid frame \
                    (a plaintext client on a TLS port, or the reverse, looks like this).");
                break;
            }
        };
        first = false;
        let steps = state.handle(frame).await;
        for step in steps {
            let stop = matches!(step, Step::Close(_));
            let pending: Pending = match step {
                Step::Respond(p) => p,
                Step::Close(reason) => Box::pin(async move { Err(reason) }),
            };
            if tx.send(pending).await.is_err() || stop {
                break 'conn;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

enum Step {
    Respond(Pending),
    Close(String),
}

/// The result of one SASL step.
enum SaslOutcome {
    /// A server challenge; more client messages follow.
    Continue(Vec<u8>),
    /// Authenticated: the server's final message and the session lifetime.
    Done(Vec<u8>, i64),
    /// Refused: (error code, message for the client), and the reason to log when closing.
    Failed((i16, String), String),
}

fn ready(bytes: Bytes) -> Step {
    Step::Respond(Box::pin(async move { Ok(Some(bytes)) }))
}

impl State {
    fn credentials_changed(&self) -> bool {
        match self.auth.as_ref().and_then(|a| a.user.as_ref()) {
            Some((name, generation)) => self.gw.users.generation(name) != *generation,
            None => false,
        }
    }

    fn auth_event(
        &self,
        principal: &str,
        mechanism: &str,
        granted: bool,
        message: Option<&str>,
    ) -> AuditEvent {
        let mut outcome = if granted {
            Outcome::success()
        } else {
            Outcome::denied().with_error_code("SASL_AUTHENTICATION_FAILED")
        };
        if let Some(m) = message {
            outcome = outcome.with_message(m);
        }
        let mut b = AuditEvent::builder(EventType::Authentication)
            .service(crate::AUDIT_SERVICE)
            .method("kafka.Authenticate")
            .principal(principal)
            .auth_mechanism(format!(
                "{}/{mechanism}",
                self.info.listener.security_protocol()
            ))
            .resource("Cluster", authz::CLUSTER)
            .operation("Authenticate")
            .client_address(self.info.peer.to_string())
            .granted(granted)
            .outcome(outcome);
        if let Some(c) = &self.client_id {
            b = b.client_id(c.clone());
        }
        self.gw.finish_event(b)
    }

    async fn handle(&mut self, frame: Bytes) -> Vec<Step> {
        let peer = self.info.peer;
        if self.raw_sasl {
            return self.raw_sasl_token(frame).await;
        }
        let h = match RequestHeaderPeek::parse(&frame) {
            Ok(h) => h,
            Err(e) => return vec![Step::Close(format!("unreadable request header: {e}"))],
        };
        if h.client_id.is_some() {
            self.client_id = h.client_id.clone();
        }
        let Some(body_offset) = h.body_offset else {
            self.gw
                .metrics
                .refused_on(self.info.listener.kind, "unknown_api");
            return vec![Step::Close(format!(
                "unknown API key {} (is this a Kafka client?)",
                h.api_key
            ))];
        };
        if h.api_key == ApiKey::ApiVersions as i16 {
            return vec![self.api_versions(&h, &frame, body_offset)];
        }
        if !self.gw.api_table.supports(h.api_key, h.api_version) {
            self.gw
                .metrics
                .refused_on(self.info.listener.kind, "unsupported_version");
            return vec![Step::Close(format!(
                "{} v{} is not supported by the gateway (see ApiVersions)",
                api_name(h.api_key),
                h.api_version
            ))];
        }
        if h.api_key == ApiKey::SaslHandshake as i16 {
            return vec![self.sasl_handshake(&h, &frame, body_offset)];
        }
        if h.api_key == ApiKey::SaslAuthenticate as i16 {
            return self.sasl_authenticate(&h, &frame, body_offset).await;
        }
        let Some(auth) = &self.auth else {
            self.gw
                .metrics
                .refused_on(self.info.listener.kind, "unauthenticated");
            return vec![Step::Close(format!(
                "{} before authentication (ILLEGAL_SASL_STATE): authenticate with SASL first",
                api_name(h.api_key)
            ))];
        };
        if auth.expires.is_some_and(|e| Instant::now() > e) {
            return vec![Step::Close(
                "the SASL session expired without re-authentication (KIP-368)".into(),
            )];
        }
        if self.credentials_changed() {
            return vec![Step::Close("the user's credentials changed".into())];
        }
        if self.sasl.is_some() {
            return vec![Step::Close(
                "request during re-authentication (ILLEGAL_SASL_STATE)".into(),
            )];
        }
        let principal = auth.principal.clone();
        let mechanism = auth.mechanism.clone();
        self.gw.metrics.request(h.api_key);
        if h.api_key == ApiKey::Produce as i16 {
            self.gw.metrics.produce_bytes(frame.len());
        }
        let access = self.access.get_or_insert_with(|| {
            Access::new(principal.clone(), peer.ip(), self.gw.authorizer.clone())
        });
        let req = Request {
            api_key: h.api_key,
            version: h.api_version,
            correlation_id: h.correlation_id,
            frame: &frame,
            body_offset,
        };
        if admin::is_admin_api(h.api_key) {
            let ctx = admin::AdminCtx {
                gw: &self.gw,
                access,
                peer,
                client_id: self.client_id.as_deref(),
                mechanism: &mechanism,
            };
            return match admin::handle(&req, ctx).await {
                Ok(bytes) => vec![ready(bytes)],
                Err(e) => vec![Step::Close(e)],
            };
        }
        if h.api_key == ApiKey::Produce as i16 && h.api_version < 3 {
            return vec![Step::Close(
                "Produce v0-2 (message format v0/v1) is refused: use v3 or later".into(),
            )];
        }
        let gw = self.gw.clone();
        let rewriter = self.info.listener.rewriter.clone();
        let mut rejections = Vec::new();
        let mut accessed = Vec::new();
        let route = if h.api_key == ApiKey::Produce as i16 {
            match authz::produce_parts(&req, access) {
                Ok(authz::ProduceParts::Done(r)) => Ok(r),
                Ok(authz::ProduceParts::Parts(mut parts)) => {
                    let mut dead_letters = Vec::new();
                    rejections = guard::check_produce(
                        &mut parts,
                        &gw.governance,
                        gw.validator.as_deref(),
                        &gw.pan_key,
                        &mut dead_letters,
                    )
                    .await;
                    crate::dlq::dispatch(&gw, dead_letters);
                    rejections.extend(
                        crypt::encrypt_produce(
                            &mut parts,
                            &gw.governance,
                            gw.envelope.as_ref(),
                            &gw.limits,
                            gw.metrics.crypt(),
                        )
                        .await,
                    );
                    if gw.governance.any_data_access_audit() {
                        accessed = access::produce_accessed(&parts.request, &gw.governance);
                    }
                    authz::produce_route(&req, parts, &rewriter)
                }
                Err(e) => Err(e),
            }
        } else {
            authz::route(&req, access, &rewriter)
        };
        let denials = std::mem::take(&mut access.denials);
        let mut audit: Vec<AuditEvent> = denials
            .iter()
            .map(|d| self.denial_event(&principal, &mechanism, &h, d))
            .collect();
        for r in &rejections {
            audit.push(self.rejection_event(&principal, &h, r));
        }
        let access_ctx = AccessCtx {
            principal: principal.to_string(),
            mechanism: format!("{}/{mechanism}", self.info.listener.security_protocol()),
            peer: self.info.peer.to_string(),
            client_id: self.client_id.clone(),
            correlation_id: h.correlation_id,
            api_key: h.api_key,
            api_version: h.api_version,
        };
        for a in &accessed {
            audit.push(access_ctx.event(&self.gw, a, "Write"));
        }
        // Administrative changes are recorded when granted too (what was done, by whom).
        for (rt, name, op) in authz::admin_resources(&req) {
            let denied = denials
                .iter()
                .any(|d| d.resource_type == rt && d.name == name && d.operation == op);
            if !denied {
                audit.push(self.granted_event(&principal, &mechanism, &h, rt, &name, op));
            }
        }
        if !denials.is_empty() {
            self.gw.metrics.denied(denials.len());
        }
        for r in &rejections {
            self.gw.metrics.rejected(&r.topic, r.records);
            self.gw.metrics.validation_rejected(&r.reasons);
        }
        let route = match route {
            Ok(r) => r,
            Err(e) => {
                self.gw
                    .metrics
                    .refused_on(self.info.listener.kind, "malformed_request");
                return vec![Step::Close(format!(
                    "malformed {} v{} request: {e}",
                    api_name(h.api_key),
                    h.api_version
                ))];
            }
        };
        let key = ApiKey::try_from(h.api_key).ok();
        let intercepted = match key {
            Some(
                k @ (ApiKey::CreateTopics
                | ApiKey::DeleteTopics
                | ApiKey::AlterConfigs
                | ApiKey::IncrementalAlterConfigs
                | ApiKey::DescribeConfigs),
            ) => match topics::intercept(
                k,
                h.api_version,
                h.correlation_id,
                body_offset,
                route,
                &gw.governance,
            )
            .await
            {
                Ok(i) => i,
                Err(e) => {
                    return vec![Step::Close(format!(
                        "malformed {} v{} request: {e}",
                        api_name(h.api_key),
                        h.api_version
                    ))];
                }
            },
            _ => topics::Intercepted {
                route,
                then: None,
                synthesized: None,
            },
        };
        let topics::Intercepted {
            route,
            mut then,
            synthesized,
        } = intercepted;
        if h.api_key == ApiKey::Fetch as i16 && gw.governance.any_encryption() {
            let governance = gw.governance.clone();
            let envelope = gw.envelope.clone();
            let reader = crypt::Reader {
                principal: principal.clone(),
                authorizer: gw.authorizer.clone(),
            };
            let version = h.api_version;
            let counters = gw.metrics.crypt().clone();
            then = Some(Box::new(move |framed: Bytes| {
                Box::pin(async move {
                    crypt::decrypt_fetch(framed, version, governance, envelope, reader, counters)
                        .await
                })
            }));
        }
        if h.api_key == ApiKey::Fetch as i16 && gw.governance.any_data_access_audit() {
            // After decryption (if any): count what each audited topic returned, record it
            // durably, then answer.
            let before = then.take();
            let gw = gw.clone();
            let version = h.api_version;
            then = Some(Box::new(move |framed: Bytes| {
                Box::pin(async move {
                    let framed = match before {
                        Some(f) => f(framed).await?,
                        None => framed,
                    };
                    let accessed = access::fetch_accessed(&framed, version, &gw.governance)?;
                    if !accessed.is_empty() {
                        let events = accessed
                            .iter()
                            .map(|a| access_ctx.event(&gw, a, "Read"))
                            .collect();
                        gw.audit_now(events).await?;
                    }
                    Ok(framed)
                })
            }));
        }
        let audited = async move {
            if audit.is_empty() {
                Ok(())
            } else {
                gw.audit_now(audit).await
            }
        };
        let kind = self.info.listener.kind;
        let (api_key, api_version) = (h.api_key, h.api_version);
        match route {
            Route::Local(bytes) => {
                self.gw.metrics.response(kind, api_key, api_version, &bytes);
                vec![Step::Respond(Box::pin(async move {
                    audited.await?;
                    Ok(Some(bytes))
                }))]
            }
            Route::Close(reason) => {
                let _ = audited.await;
                vec![Step::Close(reason)]
            }
            Route::ForwardOneway(frame) => {
                let upstream = match self.upstream().await {
                    Ok(u) => u,
                    Err(e) => return vec![Step::Close(e)],
                };
                if let Err(e) = upstream.submit_raw_oneway(frame).await {
                    return vec![Step::Close(format!("upstream failed: {e}"))];
                }
                Vec::new()
            }
            Route::Forward { frame, post } => {
                if let Some(answer) = synthesized {
                    // Nothing left to forward: the answer is built locally.
                    return vec![Step::Respond(Box::pin(async move {
                        audited.await?;
                        topics::finish_response(answer, post, then).await.map(Some)
                    }))];
                }
                let upstream = match self.upstream().await {
                    Ok(u) => u,
                    Err(e) => return vec![Step::Close(e)],
                };
                let response = match upstream.submit_raw(frame).await {
                    Ok(r) => r,
                    Err(e) => return vec![Step::Close(format!("upstream failed: {e}"))],
                };
                let version = h.api_version;
                let produce = h.api_key == ApiKey::Produce as i16 && version >= 10;
                let fetch = h.api_key == ApiKey::Fetch as i16;
                let metrics_gw = self.gw.clone();
                vec![Step::Respond(Box::pin(async move {
                    audited.await?;
                    let frame = response
                        .await
                        .map_err(|e| format!("upstream failed: {e}"))?;
                    if fetch {
                        metrics_gw.metrics.fetch_bytes(frame.len());
                    }
                    let out = if post.is_none() && then.is_none() && produce {
                        rewriter
                            .produce_endpoints(frame, version)
                            .map_err(|e| format!("unreadable upstream response: {e}"))?
                    } else {
                        topics::finish_response(frame, post, then)
                            .await
                            .map_err(|e| format!("unreadable upstream response: {e}"))?
                    };
                    metrics_gw.metrics.response(kind, api_key, version, &out);
                    Ok(Some(out))
                }))]
            }
        }
    }

    fn granted_event(
        &self,
        principal: &Principal,
        mechanism: &str,
        h: &RequestHeaderPeek,
        rt: gatehouse_policy::ResourceType,
        name: &str,
        op: gatehouse_policy::Operation,
    ) -> AuditEvent {
        let event_type = if rt == gatehouse_policy::ResourceType::Topic {
            EventType::Topic
        } else {
            EventType::Authorization
        };
        let mut b = AuditEvent::builder(event_type)
            .service(crate::AUDIT_SERVICE)
            .method(format!("kafka.{}", api_name(h.api_key)))
            .principal(principal.to_string())
            .auth_mechanism(format!(
                "{}/{mechanism}",
                self.info.listener.security_protocol()
            ))
            .resource(format!("{rt:?}"), name.to_string())
            .operation(format!("{op:?}"))
            .client_address(self.info.peer.to_string())
            .correlation_id(h.correlation_id.to_string())
            .granted(true)
            .attribute("apiVersion", h.api_version.to_string());
        if let Some(c) = &self.client_id {
            b = b.client_id(c.clone());
        }
        self.gw.finish_event(b)
    }

    fn rejection_event(
        &self,
        principal: &Principal,
        h: &RequestHeaderPeek,
        r: &guard::Rejection,
    ) -> AuditEvent {
        let mut b = AuditEvent::builder(EventType::PoisonPill)
            .service(crate::AUDIT_SERVICE)
            .method(format!("kafka.{}", api_name(h.api_key)))
            .principal(principal.to_string())
            .resource("Topic", r.topic.clone())
            .operation("Write")
            .client_address(self.info.peer.to_string())
            .correlation_id(h.correlation_id.to_string())
            .granted(false)
            .outcome(
                Outcome::denied()
                    .with_error_code("INVALID_RECORD")
                    .with_message(r.reason.clone()),
            )
            .matched_rule("topic schema policy")
            .attribute("partition", r.partition.to_string())
            .attribute("rejectedRecords", r.records.to_string());
        if let Some(c) = &self.client_id {
            b = b.client_id(c.clone());
        }
        self.gw.finish_event(b)
    }

    fn denial_event(
        &self,
        principal: &Principal,
        mechanism: &str,
        h: &RequestHeaderPeek,
        d: &authz::Denial,
    ) -> AuditEvent {
        let mut b = AuditEvent::builder(EventType::Authorization)
            .service(crate::AUDIT_SERVICE)
            .method(format!("kafka.{}", api_name(h.api_key)))
            .principal(principal.to_string())
            .auth_mechanism(format!(
                "{}/{mechanism}",
                self.info.listener.security_protocol()
            ))
            .resource(format!("{:?}", d.resource_type), d.name.clone())
            .operation(format!("{:?}", d.operation))
            .client_address(self.info.peer.to_string())
            .correlation_id(h.correlation_id.to_string())
            .granted(false)
            .outcome(Outcome::denied().with_error_code("AUTHORIZATION_FAILED"))
            .attribute("apiVersion", h.api_version.to_string());
        if authz::is_internal_topic(&d.name) {
            b = b.matched_rule("internal topic: no client access");
        } else {
            b = b.matched_rule("no matching ALLOW (deny by default) or a DENY");
        }
        if let Some(c) = &self.client_id {
            b = b.client_id(c.clone());
        }
        self.gw.finish_event(b)
    }

    async fn upstream(&mut self) -> Result<Arc<Connection>, String> {
        if let Some(u) = &self.upstream {
            if !u.is_closed() {
                return Ok(u.clone());
            }
            return Err("the upstream connection closed".into());
        }
        let conn = self
            .gw
            .upstream
            .connect(self.info.listener.target)
            .await
            .map_err(|e| format!("cannot reach the upstream broker: {e}"))?;
        let conn = Arc::new(conn);
        self.upstream = Some(conn.clone());
        Ok(conn)
    }

    fn api_versions(&self, h: &RequestHeaderPeek, frame: &Bytes, body_offset: usize) -> Step {
        let table = &self.gw.api_table;
        let keys: Vec<ApiVersion> = table
            .entries()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect();
        let (lo, hi) = table.range(ApiKey::ApiVersions as i16).unwrap_or((0, 3));
        if h.api_version < lo || h.api_version > hi {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges.
            let resp = ApiVersionsResponse::default()
                .with_error_code(code::UNSUPPORTED_VERSION)
                .with_api_keys(keys);
            return match encode_response(h.correlation_id, 0, &resp) {
                Ok(b) => ready(b),
                Err(e) => Step::Close(format!("cannot encode ApiVersions: {e}")),
            };
        }
        if h.api_version >= 3 {
            let body = frame.slice(body_offset..);
            if decode_body::<ApiVersionsRequest>(body, h.api_version).is_err() {
                let resp = ApiVersionsResponse::default().with_error_code(code::INVALID_REQUEST);
                return match encode_response(h.correlation_id, h.api_version, &resp) {
                    Ok(b) => ready(b),
                    Err(e) => Step::Close(format!("cannot encode ApiVersions: {e}")),
                };
            }
        }
        let resp = ApiVersionsResponse::default().with_api_keys(keys);
        match encode_response(h.correlation_id, h.api_version, &resp) {
            Ok(b) => ready(b),
            Err(e) => Step::Close(format!("cannot encode ApiVersions: {e}")),
        }
    }

    fn sasl_handshake(&mut self, h: &RequestHeaderPeek, frame: &Bytes, body_offset: usize) -> Step {
        let body = frame.slice(body_offset..);
        let req: SaslHandshakeRequest = match decode_body(body, h.api_version) {
            Ok(r) => r,
            Err(e) => return Step::Close(format!("malformed SaslHandshake: {e}")),
        };
        let mechanisms: Vec<StrBytes> = self
            .gw
            .authenticator
            .mechanisms()
            .into_iter()
            .map(|m| StrBytes::from_string(m.to_string()))
            .collect();
        let resp = if self.sasl.is_some() {
            SaslHandshakeResponse::default()
                .with_error_code(code::ILLEGAL_SASL_STATE)
                .with_mechanisms(mechanisms)
        } else {
            match self
                .gw
                .authenticator
                .start(&req.mechanism, self.info.peer.ip())
            {
                Ok(session) => {
                    self.sasl = Some(session);
                    self.raw_sasl = h.api_version == 0;
                    SaslHandshakeResponse::default().with_mechanisms(mechanisms)
                }
                Err(e) => {
                    self.gw
                        .metrics
                        .refused_on(self.info.listener.kind, "sasl_mechanism");
                    debug!(peer = %self.info.peer, mechanism = %req.mechanism, error = %e,
                        "SASL mechanism refused.");
                    SaslHandshakeResponse::default()
                        .with_error_code(code::UNSUPPORTED_SASL_MECHANISM)
                        .with_mechanisms(mechanisms)
                }
            }
        };
        match encode_response(h.correlation_id, h.api_version, &resp) {
            Ok(b) => ready(b),
            Err(e) => Step::Close(format!("cannot encode SaslHandshake: {e}")),
        }
    }

    /// SaslHandshake v0: a raw token in, a raw token out (size-prefixed, no header). Errors
    /// cannot be expressed in this flow, so a failure closes the connection.
    async fn raw_sasl_token(&mut self, token: Bytes) -> Vec<Step> {
        match self.sasl_step(&token).await {
            SaslOutcome::Continue(challenge) | SaslOutcome::Done(challenge, _) => {
                if self.sasl.is_none() {
                    self.raw_sasl = false;
                }
                vec![ready(authz::with_size_prefix(Bytes::from(challenge)))]
            }
            SaslOutcome::Failed(_, reason) => vec![Step::Close(reason)],
        }
    }

    async fn sasl_authenticate(
        &mut self,
        h: &RequestHeaderPeek,
        frame: &Bytes,
        body_offset: usize,
    ) -> Vec<Step> {
        let body = frame.slice(body_offset..);
        let req: SaslAuthenticateRequest = match decode_body(body, h.api_version) {
            Ok(r) => r,
            Err(e) => return vec![Step::Close(format!("malformed SaslAuthenticate: {e}"))],
        };
        match self.sasl_step(&req.auth_bytes).await {
            SaslOutcome::Continue(challenge) => {
                let resp = SaslAuthenticateResponse::default().with_auth_bytes(challenge.into());
                self.sasl_reply(h, &resp, false)
            }
            SaslOutcome::Done(server_final, session_lifetime_ms) => {
                let resp = SaslAuthenticateResponse::default()
                    .with_auth_bytes(server_final.into())
                    .with_session_lifetime_ms(session_lifetime_ms);
                self.sasl_reply(h, &resp, false)
            }
            SaslOutcome::Failed((code, message), _) => {
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)));
                self.sasl_reply(h, &resp, true)
            }
        }
    }

    /// One SASL exchange step, shared by SaslAuthenticate and the v0 raw-token flow.
    async fn sasl_step(&mut self, token: &[u8]) -> SaslOutcome {
        let Some(session) = self.sasl.as_mut() else {
            return SaslOutcome::Failed(
                (
                    code::ILLEGAL_SASL_STATE,
                    "SaslAuthenticate before SaslHandshake".into(),
                ),
                "SASL token before SaslHandshake".into(),
            );
        };
        let mechanism = session.mechanism();
        match session.step(token).await {
            Ok(SaslStep::Continue(challenge)) => SaslOutcome::Continue(challenge),
            Ok(SaslStep::Done {
                principal,
                server_final,
                session_lifetime_ms,
            }) => {
                self.sasl = None;
                if let Some(previous) = &self.auth
                    && previous.principal != principal
                {
                    let event = self.auth_event(
                        &principal.to_string(),
                        mechanism.name(),
                        false,
                        Some("re-authentication changed the principal"),
                    );
                    let _ = self.gw.audit_now(vec![event]).await;
                    return SaslOutcome::Failed(
                        (
                            code::SASL_AUTHENTICATION_FAILED,
                            "Re-authentication must keep the same principal.".into(),
                        ),
                        "re-authentication changed the principal".into(),
                    );
                }
                let event = self.auth_event(&principal.to_string(), mechanism.name(), true, None);
                if let Err(reason) = self.gw.audit_now(vec![event]).await {
                    return SaslOutcome::Failed(
                        (code::SASL_AUTHENTICATION_FAILED, reason.clone()),
                        reason,
                    );
                }
                let user = match mechanism {
                    Mechanism::Plain | Mechanism::ScramSha256 | Mechanism::ScramSha512 => Some((
                        principal.name.clone(),
                        self.gw.users.generation(&principal.name),
                    )),
                    _ => None,
                };
                self.gw.metrics.authenticated();
                self.access = None;
                self.auth = Some(Authenticated {
                    principal,
                    mechanism: mechanism.name().to_string(),
                    expires: (session_lifetime_ms > 0).then(|| {
                        Instant::now() + Duration::from_millis(session_lifetime_ms as u64)
                    }),
                    user,
                });
                SaslOutcome::Done(server_final, session_lifetime_ms)
            }
            Err(e) => {
                // Who tried (the claimed name; the principal stays unknown: not authenticated).
                let attempted = session.attempted_user().map(str::to_string);
                self.sasl = None;
                self.gw
                    .metrics
                    .refused_on(self.info.listener.kind, "authentication_failed");
                self.gw.metrics.authentication_failed(mechanism.name());
                let message = e.client_message();
                let mut event = self.auth_event(
                    "User:unknown",
                    mechanism.name(),
                    false,
                    Some(&e.to_string()),
                );
                if let Some(user) = attempted {
                    event.attributes.insert("attempted_user".into(), user);
                }
                let _ = self.gw.audit_now(vec![event]).await;
                info!(peer = %self.info.peer, mechanism = mechanism.name(), "Authentication failed.");
                SaslOutcome::Failed(
                    (code::SASL_AUTHENTICATION_FAILED, message),
                    "authentication failed".into(),
                )
            }
        }
    }

    fn sasl_reply(
        &self,
        h: &RequestHeaderPeek,
        resp: &SaslAuthenticateResponse,
        close: bool,
    ) -> Vec<Step> {
        let mut steps = match encode_response(h.correlation_id, h.api_version, resp) {
            Ok(b) => vec![ready(b)],
            Err(e) => return vec![Step::Close(format!("cannot encode SaslAuthenticate: {e}"))],
        };
        if close {
            steps.push(Step::Close("authentication failed".into()));
        }
        steps
    }
}

/// A readable name for an API key.
/// Who made a request, for data-access events built after the upstream answered.
struct AccessCtx {
    principal: String,
    mechanism: String,
    peer: String,
    client_id: Option<String>,
    correlation_id: i32,
    api_key: i16,
    api_version: i16,
}

impl AccessCtx {
    /// The granted-access event for one topic of the request (counts, never content).
    fn event(&self, gw: &Inner, a: &access::Accessed, operation: &str) -> AuditEvent {
        let mut b = AuditEvent::builder(EventType::Authorization)
            .service(crate::AUDIT_SERVICE)
            .method(format!("kafka.{}", api_name(self.api_key)))
            .principal(self.principal.clone())
            .auth_mechanism(self.mechanism.clone())
            .resource("Topic", a.topic.clone())
            .operation(operation)
            .client_address(self.peer.clone())
            .correlation_id(self.correlation_id.to_string())
            .granted(true)
            .matched_rule("gatehouse.audit.data.access=all")
            .attribute("apiVersion", self.api_version.to_string())
            .attribute("partitions", access::partition_list(&a.partitions))
            .attribute("records", a.records.to_string());
        if let Some(c) = &self.client_id {
            b = b.client_id(c.clone());
        }
        gw.finish_event(b)
    }
}

pub(crate) fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(_) => format!("ApiKey({key})"),
    }
}
