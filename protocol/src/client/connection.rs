//! One Kafka connection: pipelined requests over any byte stream, plus version negotiation.
//!
//! A [`Connection`] owns two background tasks. The writer task takes whole request frames from a
//! channel and writes them (so a cancelled or timed-out caller can never leave half a frame on
//! the wire); the reader task splits the incoming stream into frames with [`FrameDecoder`] and
//! hands each one to the caller waiting on its correlation id. Any number of requests may be in
//! flight at once and the broker may answer them in any order.
//!
//! When the stream fails (EOF, I/O error, an oversized or malformed frame), the connection is
//! closed for good: every waiting request and every later one gets a copy of the error.
//!
//! With [`ConnectionConfig::sasl`] set, the connection authenticates right after ApiVersions:
//! SaslHandshake v1, then SaslAuthenticate (v0..v2, the highest the broker speaks) carrying
//! the PLAIN token or the SCRAM messages (see [`super::sasl`]). A refusal fails
//! [`Connection::connect`] with [`ProtocolError::Broker`] and the broker's error code
//! (SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE) and message.
//!
//! The transport is generic ([`Connection::from_stream`] takes any [`Transport`]);
//! [`Connection::connect`] is the plain-TCP shortcut and [`Connection::connect_via`] opens the
//! stream with any [`super::Connector`] (TLS with the `tls` feature's `TlsConnector`).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{HeaderVersion, Request, StrBytes, VersionRange};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tracing::{debug, trace, warn};

use super::errors::{broker_error, duplicate, unsupported_version};
use super::sasl::{SaslCredentials, SaslMechanism, ScramClient, new_nonce, plain_token};
use crate::ProtocolError;
use crate::frame::{DEFAULT_MAX_FRAME_SIZE, FrameDecoder};
use crate::header::{decode_body, encode_request, split_response};

/// A byte stream a [`Connection`] can run over: plain TCP, TLS, an in-memory duplex...
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// The ApiVersions version tried first.
pub const API_VERSIONS_FIRST_TRY: i16 = 3;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// How many request frames may wait for the writer task before senders are slowed down.
const OUTGOING_QUEUE: usize = 1024;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Client id put in every request header.
    pub client_id: Option<String>,
    /// Largest response frame accepted; a bigger size prefix closes the connection.
    pub max_frame_size: usize,
    /// How long one request may wait for its response.
    pub request_timeout: Duration,
    /// How long [`Connection::connect`] may take to establish TCP.
    pub connect_timeout: Duration,
    /// Send ApiVersions on connect and negotiate versions (turn off only for raw proxying).
    pub negotiate_versions: bool,
    /// Authenticate with SASL right after version negotiation (`None`: no authentication).
    pub sasl: Option<SaslCredentials>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: Some("gatehouse".to_owned()),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            negotiate_versions: true,
            sasl: None,
        }
    }
}

type Waiter = oneshot::Sender<Result<Bytes, ProtocolError>>;

#[derive(Default)]
struct State {
    pending: HashMap<i32, Waiter>,
    closed: Option<ProtocolError>,
}

/// What the caller-facing handle and both tasks share.
struct Shared {
    state: Mutex<State>,
    shutdown: watch::Sender<bool>,
    decoder: FrameDecoder,
    peer: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a waiter for `correlation_id`, unless the connection is already closed.
    fn register(
        &self,
        correlation_id: i32,
    ) -> Result<oneshot::Receiver<Result<Bytes, ProtocolError>>, ProtocolError> {
        let mut state = self.lock();
        if let Some(e) = &state.closed {
            return Err(duplicate(e));
        }
        let (tx, rx) = oneshot::channel();
        state.pending.insert(correlation_id, tx);
        Ok(rx)
    }

    fn forget(&self, correlation_id: i32) {
        self.lock().pending.remove(&correlation_id);
    }

    fn closed_error(&self) -> ProtocolError {
        match &self.lock().closed {
            Some(e) => duplicate(e),
            None => connection_closed(&self.peer, "connection closed"),
        }
    }

    fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Closes the connection: records why, fails every waiter and stops both tasks.
    fn close(&self, err: ProtocolError) {
        let waiters: Vec<Waiter> = {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(err);
            }
            state.pending.drain().map(|(_, w)| w).collect()
        };
        if !waiters.is_empty() {
            debug!(peer = %self.peer, failed = waiters.len(), "failing in-flight requests");
        }
        for w in waiters {
            let _ = w.send(Err(self.closed_error()));
        }
        self.shutdown.send_replace(true);
    }

    /// Hands a response frame to whoever waits for its correlation id.
    fn dispatch(&self, frame: Bytes) -> Result<(), ProtocolError> {
        if frame.len() < 4 {
            return Err(ProtocolError::Truncated {
                what: "response header",
                needed: 4,
                had: frame.len(),
            });
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let waiter = self.lock().pending.remove(&correlation_id);
        match waiter {
            Some(w) => {
                let _ = w.send(Ok(frame));
            }
            None => {
                debug!(peer = %self.peer, correlation_id, "response nobody waits for (timed out?)")
            }
        }
        Ok(())
    }
}

fn connection_closed(peer: &str, why: &str) -> ProtocolError {
    ProtocolError::Io(io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("{why} ({peer})"),
    ))
}

/// The response of a request queued with [`Connection::submit_raw`].
pub type RawResponse =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, ProtocolError>> + Send>>;

/// [`PendingGuard`] that owns its handle, for futures that outlive the call.
struct OwnedPendingGuard {
    shared: Arc<Shared>,
    correlation_id: i32,
}

impl Drop for OwnedPendingGuard {
    fn drop(&mut self) {
        self.shared.forget(self.correlation_id);
    }
}

/// Removes the waiter when a request finishes, fails, times out or is cancelled.
struct PendingGuard<'a> {
    shared: &'a Shared,
    correlation_id: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.forget(self.correlation_id);
    }
}

/// One pipelined connection to a Kafka broker. Cheap to share behind an `Arc`; every method
/// takes `&self`. Dropping the last handle stops the background tasks and closes the stream.
pub struct Connection {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Bytes>,
    next_correlation_id: AtomicI32,
    config: ConnectionConfig,
    versions: HashMap<i16, VersionRange>,
    api_versions_version: Option<i16>,
    tasks: [AbortHandle; 2],
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.shared.peer)
            .field("closed", &self.is_closed())
            .field("api_versions_version", &self.api_versions_version)
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Connection {
    /// Opens a TCP connection to `addr` and negotiates versions.
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
        config: ConnectionConfig,
    ) -> Result<Self, ProtocolError> {
        let peer = addr.to_string();
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                ProtocolError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {peer} timed out"),
                ))
            })??;
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "could not set TCP_NODELAY");
        }
        Self::from_stream(stream, peer, config).await
    }

    /// Runs a connection over an already established stream (TLS, a test duplex...). `peer`
    /// names the other side in logs and errors. Sends ApiVersions unless
    /// [`ConnectionConfig::negotiate_versions`] is off, then authenticates when
    /// [`ConnectionConfig::sasl`] is set.
    pub async fn from_stream<S: Transport>(
        stream: S,
        peer: impl Into<String>,
        config: ConnectionConfig,
    ) -> Result<Self, ProtocolError> {
        let peer = peer.into();
        let (read, write) = tokio::io::split(stream);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            shutdown,
            decoder: FrameDecoder::new(config.max_frame_size),
            peer,
        });
        let (outgoing, rx) = mpsc::channel(OUTGOING_QUEUE);
        let reader = tokio::spawn(read_loop(read, shared.clone()));
        let writer = tokio::spawn(write_loop(write, rx, shared.clone()));
        let mut conn = Connection {
            shared,
            outgoing,
            next_correlation_id: AtomicI32::new(0),
            config,
            versions: HashMap::new(),
            api_versions_version: None,
            tasks: [reader.abort_handle(), writer.abort_handle()],
        };
        if conn.config.negotiate_versions {
            conn.negotiate().await?;
        }
        if let Some(credentials) = conn.config.sasl.clone() {
            conn.authenticate(&credentials).await?;
        }
        Ok(conn)
    }

    /// The peer this connection talks to.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// The settings this connection runs with.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// True once the stream failed or [`Connection::close`] was called; every request fails.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Closes the connection; in-flight requests fail.
    pub fn close(&self) {
        self.shared.close(connection_closed(
            &self.shared.peer,
            "connection closed by client",
        ));
    }

    /// The version ranges the broker advertised, by API key (empty without negotiation).
    pub fn broker_versions(&self) -> &HashMap<i16, VersionRange> {
        &self.versions
    }

    /// The ApiVersions version the broker accepted (`None` without negotiation).
    pub fn api_versions_version(&self) -> Option<i16> {
        self.api_versions_version
    }

    /// The version to use for `R`: the highest both this build (`R::VERSIONS`) and the broker
    /// speak. Without negotiation, our highest.
    pub fn version_for<R: Request>(&self) -> Result<i16, ProtocolError> {
        self.pick_version(R::KEY, R::VERSIONS)
    }

    /// The highest version of API `api_key` inside both `ours` and the broker's range.
    pub fn pick_version(&self, api_key: i16, ours: VersionRange) -> Result<i16, ProtocolError> {
        if self.api_versions_version.is_none() {
            return Ok(ours.max);
        }
        let Some(theirs) = self.versions.get(&api_key) else {
            return Err(unsupported_version(format!(
                "{} does not support API key {api_key} ({})",
                self.shared.peer,
                api_name(api_key)
            )));
        };
        let common = ours.intersect(theirs);
        if common.is_empty() {
            return Err(unsupported_version(format!(
                "no common version of {} (key {api_key}): we speak {ours}, {} speaks {theirs}",
                api_name(api_key),
                self.shared.peer
            )));
        }
        Ok(common.max)
    }

    fn check_pinned<R: Request>(&self, version: i16) -> Result<(), ProtocolError> {
        let ours = R::VERSIONS;
        let in_ours = version >= ours.min && version <= ours.max;
        let in_theirs = match (self.api_versions_version, self.versions.get(&R::KEY)) {
            (None, _) => true,
            (Some(_), Some(r)) => version >= r.min && version <= r.max,
            (Some(_), None) => false,
        };
        if in_ours && in_theirs {
            Ok(())
        } else {
            Err(unsupported_version(format!(
                "{} v{version} not supported (we speak {ours}, {} speaks {})",
                api_name(R::KEY),
                self.shared.peer,
                self.versions
                    .get(&R::KEY)
                    .map_or_else(|| "nothing".to_owned(), |r| r.to_string())
            )))
        }
    }

    fn next_correlation_id(&self) -> i32 {
        // Wraps after 2^32 requests; ids only need to be unique among requests in flight.
        self.next_correlation_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `req` and waits for its response. `version` pins a version (checked against both
    /// sides' ranges); `None` picks [`Connection::version_for`]. Uses the configured timeout.
    pub async fn send<R: Request>(
        &self,
        req: R,
        version: impl Into<Option<i16>>,
    ) -> Result<R::Response, ProtocolError> {
        self.send_with_timeout(req, version, self.config.request_timeout)
            .await
    }

    /// [`Connection::send`] with an explicit timeout (e.g. a Fetch with a long `max_wait_ms`).
    pub async fn send_with_timeout<R: Request>(
        &self,
        req: R,
        version: impl Into<Option<i16>>,
        timeout: Duration,
    ) -> Result<R::Response, ProtocolError> {
        let version = match version.into() {
            Some(v) => {
                self.check_pinned::<R>(v)?;
                v
            }
            None => self.version_for::<R>()?,
        };
        let key = api_key(R::KEY)?;
        let client_id = self.config.client_id.as_deref();
        let frame = self
            .roundtrip(
                |id| encode_request(key, version, id, client_id, &req),
                timeout,
                R::KEY,
                version,
            )
            .await?;
        let (_, body) = split_response(frame, R::Response::header_version(version))?;
        decode_body::<R::Response>(body, version)
    }

    /// Sends a request the broker will not answer (Produce with `acks = 0`). Returns once the
    /// frame is queued for writing.
    pub async fn send_oneway<R: Request>(
        &self,
        req: R,
        version: impl Into<Option<i16>>,
    ) -> Result<(), ProtocolError> {
        let version = match version.into() {
            Some(v) => {
                self.check_pinned::<R>(v)?;
                v
            }
            None => self.version_for::<R>()?,
        };
        let id = self.next_correlation_id();
        let frame = encode_request(
            api_key(R::KEY)?,
            version,
            id,
            self.config.client_id.as_deref(),
            &req,
        )?;
        if self.is_closed() {
            return Err(self.shared.closed_error());
        }
        self.outgoing
            .send(frame)
            .await
            .map_err(|_| self.shared.closed_error())
    }

    /// Forwards a request frame as received from a client (without its size prefix, starting
    /// at the API key) and returns the response frame (without size prefix). The correlation
    /// id is swapped for one of this connection's and restored in the response, so raw and
    /// typed requests can share the connection. Do not use for requests that get no response.
    pub async fn send_raw(&self, request: Bytes) -> Result<Bytes, ProtocolError> {
        if request.len() < 8 {
            return Err(ProtocolError::Truncated {
                what: "request header",
                needed: 8,
                had: request.len(),
            });
        }
        let api = i16::from_be_bytes([request[0], request[1]]);
        let version = i16::from_be_bytes([request[2], request[3]]);
        let original = [request[4], request[5], request[6], request[7]];
        let size = i32::try_from(request.len()).map_err(|_| ProtocolError::FrameTooLarge {
            size: request.len(),
            max: i32::MAX as usize,
        })?;
        let frame = self
            .roundtrip(
                |id| {
                    let mut out = BytesMut::with_capacity(4 + request.len());
                    out.put_i32(size);
                    out.put_slice(&request[..4]);
                    out.put_i32(id);
                    out.put_slice(&request[8..]);
                    Ok(out.freeze())
                },
                self.config.request_timeout,
                api,
                version,
            )
            .await?;
        let mut response = BytesMut::from(&frame[..]);
        response[..4].copy_from_slice(&original);
        Ok(response.freeze())
    }

    /// Like [`Connection::send_raw`], but in two steps, for proxies that must keep requests in
    /// order: awaiting `submit_raw` queues the frame (so the next call is queued after it),
    /// and the returned future then waits for the response (correlation id restored).
    pub async fn submit_raw(&self, request: Bytes) -> Result<RawResponse, ProtocolError> {
        let (frame, original, api, version) = self.rewrite_raw(&request)?;
        let correlation_id = frame.1;
        let rx = self.shared.register(correlation_id)?;
        let guard = OwnedPendingGuard {
            shared: self.shared.clone(),
            correlation_id,
        };
        self.outgoing
            .send(frame.0)
            .await
            .map_err(|_| self.shared.closed_error())?;
        let timeout = self.config.request_timeout;
        let peer = self.shared.peer.clone();
        Ok(Box::pin(async move {
            let _guard = guard;
            let frame = match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result?,
                Ok(Err(_)) => return Err(_guard.shared.closed_error()),
                Err(_) => {
                    return Err(ProtocolError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{} v{version} to {peer} timed out after {timeout:?}",
                            api_name(api)
                        ),
                    )));
                }
            };
            let mut response = BytesMut::from(&frame[..]);
            if response.len() >= 4 {
                response[..4].copy_from_slice(&original);
            }
            Ok(response.freeze())
        }))
    }

    /// Queues a raw request that gets no response (Produce with acks=0), with this
    /// connection's own correlation id.
    pub async fn submit_raw_oneway(&self, request: Bytes) -> Result<(), ProtocolError> {
        let ((frame, _), _, _, _) = self.rewrite_raw(&request)?;
        if self.is_closed() {
            return Err(self.shared.closed_error());
        }
        self.outgoing
            .send(frame)
            .await
            .map_err(|_| self.shared.closed_error())
    }

    /// Builds the size-prefixed frame of a raw request with a fresh correlation id; returns
    /// (frame, id), the client's original id bytes, the API key and version.
    #[allow(clippy::type_complexity)]
    fn rewrite_raw(
        &self,
        request: &Bytes,
    ) -> Result<((Bytes, i32), [u8; 4], i16, i16), ProtocolError> {
        if request.len() < 8 {
            return Err(ProtocolError::Truncated {
                what: "request header",
                needed: 8,
                had: request.len(),
            });
        }
        let api = i16::from_be_bytes([request[0], request[1]]);
        let version = i16::from_be_bytes([request[2], request[3]]);
        let original = [request[4], request[5], request[6], request[7]];
        let size = i32::try_from(request.len()).map_err(|_| ProtocolError::FrameTooLarge {
            size: request.len(),
            max: i32::MAX as usize,
        })?;
        let id = self.next_correlation_id();
        let mut out = BytesMut::with_capacity(4 + request.len());
        out.put_i32(size);
        out.put_slice(&request[..4]);
        out.put_i32(id);
        out.put_slice(&request[8..]);
        Ok(((out.freeze(), id), original, api, version))
    }

    /// Allocates a correlation id, registers a waiter, queues the frame built for that id and
    /// waits for the matching response frame (size prefix stripped, header not yet parsed).
    async fn roundtrip(
        &self,
        build: impl FnOnce(i32) -> Result<Bytes, ProtocolError>,
        timeout: Duration,
        api: i16,
        version: i16,
    ) -> Result<Bytes, ProtocolError> {
        let correlation_id = self.next_correlation_id();
        let frame = build(correlation_id)?;
        let rx = self.shared.register(correlation_id)?;
        let _guard = PendingGuard {
            shared: &self.shared,
            correlation_id,
        };
        trace!(peer = %self.shared.peer, api, version, correlation_id, "request");
        let exchange = async {
            self.outgoing
                .send(frame)
                .await
                .map_err(|_| self.shared.closed_error())?;
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(self.shared.closed_error()),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                warn!(peer = %self.shared.peer, api = api_name(api), version, correlation_id,
                    ?timeout, "request timed out");
                Err(ProtocolError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} v{version} to {} timed out after {timeout:?}",
                        api_name(api),
                        self.shared.peer
                    ),
                )))
            }
        }
    }

    /// ApiVersions v3; if the broker answers UNSUPPORTED_VERSION (in a v0 body, as Kafka does),
    /// retries once with the highest ApiVersions version it listed, or v0.
    async fn negotiate(&mut self) -> Result<(), ProtocolError> {
        let mut version = API_VERSIONS_FIRST_TRY;
        loop {
            let mut req = ApiVersionsRequest::default();
            if version >= 3 {
                req = req
                    .with_client_software_name(StrBytes::from_static_str("gatehouse"))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    )));
            }
            let client_id = self.config.client_id.as_deref();
            let frame = self
                .roundtrip(
                    |id| encode_request(ApiKey::ApiVersions, version, id, client_id, &req),
                    self.config.request_timeout,
                    ApiKey::ApiVersions as i16,
                    version,
                )
                .await?;
            let (_, body) = split_response(frame, ApiVersionsResponse::header_version(version))?;
            let code = match body.get(..2) {
                Some(b) => i16::from_be_bytes([b[0], b[1]]),
                None => {
                    return Err(ProtocolError::Truncated {
                        what: "ApiVersions response",
                        needed: 2,
                        had: body.len(),
                    });
                }
            };
            if code == UNSUPPORTED_VERSION && version > 0 {
                let advertised = decode_body::<ApiVersionsResponse>(body, 0)
                    .ok()
                    .and_then(|r| {
                        r.api_keys
                            .iter()
                            .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                            .map(|k| k.max_version)
                    });
                let fallback = advertised.filter(|v| (0..version).contains(v)).unwrap_or(0);
                debug!(peer = %self.shared.peer, tried = version, fallback,
                    "broker refused ApiVersions version, falling back");
                version = fallback;
                continue;
            }
            let response: ApiVersionsResponse = decode_body(body, version)?;
            if response.error_code != 0 {
                return Err(broker_error(
                    response.error_code,
                    &format!("ApiVersions v{version} to {}", self.shared.peer),
                    None,
                ));
            }
            self.versions = response
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect();
            self.api_versions_version = Some(version);
            debug!(peer = %self.shared.peer, version, apis = self.versions.len(),
                "negotiated API versions");
            return Ok(());
        }
    }
}

impl Connection {
    /// SaslHandshake v1 then SaslAuthenticate, PLAIN or SCRAM. Any refusal is an error.
    async fn authenticate(&self, credentials: &SaslCredentials) -> Result<(), ProtocolError> {
        let mechanism = credentials.mechanism;
        let context = format!(
            "SASL {mechanism} authentication as {:?} to {}",
            credentials.username, self.shared.peer
        );
        // v0 is the legacy flow with raw, header-less tokens; we speak v1 only.
        let handshake_version = self.pick_version(
            ApiKey::SaslHandshake as i16,
            VersionRange { min: 1, max: 1 },
        )?;
        let handshake = self
            .send(
                SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism.name())),
                handshake_version,
            )
            .await?;
        if handshake.error_code != 0 {
            let enabled: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            let message = format!("broker enables {enabled:?}");
            return Err(broker_error(
                handshake.error_code,
                &format!("{context}: SaslHandshake"),
                Some(&message),
            ));
        }
        let version = self.version_for::<SaslAuthenticateRequest>()?;
        match mechanism {
            SaslMechanism::Plain => {
                let token = plain_token(&credentials.username, &credentials.password);
                self.sasl_round(token, version, &context).await?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let mut scram = ScramClient::new(
                    mechanism,
                    &credentials.username,
                    &credentials.password,
                    new_nonce(),
                )?;
                let server_first = self
                    .sasl_round(scram.client_first(), version, &context)
                    .await?;
                let client_final = scram.client_final(&server_first)?;
                let server_final = self.sasl_round(client_final, version, &context).await?;
                scram.verify_server_final(&server_final)?;
            }
        }
        debug!(peer = %self.shared.peer, %mechanism, username = %credentials.username,
            "SASL authentication succeeded");
        Ok(())
    }

    /// One SaslAuthenticate round trip: sends `token`, returns the server's token.
    async fn sasl_round(
        &self,
        token: Vec<u8>,
        version: i16,
        context: &str,
    ) -> Result<Bytes, ProtocolError> {
        let response = self
            .send(
                SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
                version,
            )
            .await?;
        if response.error_code != 0 {
            return Err(broker_error(
                response.error_code,
                context,
                response.error_message.as_deref(),
            ));
        }
        Ok(response.auth_bytes)
    }
}

fn api_key(key: i16) -> Result<ApiKey, ProtocolError> {
    ApiKey::try_from(key).map_err(|_| ProtocolError::UnknownApiKey(key))
}

fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(_) => format!("ApiKey({key})"),
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut read: R, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let err = loop {
        match shared.decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                if let Err(e) = shared.dispatch(frame) {
                    break e;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break e,
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let read = tokio::select! {
            n = read.read_buf(&mut buf) => n,
            _ = shutdown.wait_for(|closed| *closed) => return,
        };
        match read {
            Ok(0) => break connection_closed(&shared.peer, "connection closed by peer"),
            Ok(_) => {}
            Err(e) => break ProtocolError::Io(e),
        }
    };
    warn!(peer = %shared.peer, error = %err, "connection failed");
    shared.close(err);
}

async fn write_loop<W: AsyncWrite + Unpin>(
    write: W,
    mut rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut write = BufWriter::new(write);
    loop {
        let frame = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
            _ = shutdown.wait_for(|closed| *closed) => break,
        };
        let result = async {
            write.write_all(&frame).await?;
            while let Ok(more) = rx.try_recv() {
                write.write_all(&more).await?;
            }
            write.flush().await
        }
        .await;
        if let Err(e) = result {
            warn!(peer = %shared.peer, error = %e, "write failed");
            shared.close(ProtocolError::Io(e));
            break;
        }
    }
    let _ = write.shutdown().await;
}
