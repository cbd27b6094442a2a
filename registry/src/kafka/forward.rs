//! Write forwarding: a registry node that is not the writer hands every state-changing request
//! ([`is_write`]) to the leader's URL ([`super::election`]) and answers with the leader's answer
//! as is, after reading its own `_schemas` log up to the high watermark (so the caller's next
//! read on this node sees the write).
//!
//! The forwarded request keeps the method, path, query and body, and the caller's
//! `Authorization`, `Content-Type` and `Accept` headers: the leader authenticates, authorizes
//! and audits it again. [`FORWARDED_BY`] names the forwarding node; a request that carries it
//! is never forwarded a second time (a node that is not the leader answers 50003 instead, so a
//! disagreement about the leader cannot loop). `X-Forwarded-For` carries the caller's address.
//!
//! Transport: HTTP/1.1, one request per connection (`Connection: close`), HTTPS through rustls
//! with the deployment's CA ([`ForwardTls`]); plain `http://` only to loopback addresses.
//! Failures (no leader known, connection, TLS, time-out, unreadable answer) are HTTP 500 with
//! Confluent's `{"error_code":50003,"message":"Error while forwarding the request to the
//! leader: ..."}`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::KafkaStore;
use super::election::{Election, ElectionState};
use crate::api::{CONTENT_TYPE, WriteForwarder};

/// Header naming the node that forwarded a request (its advertised URL).
pub const FORWARDED_BY: &str = "x-gatehouse-forwarded-by";
/// Confluent's error code for a failed forward.
pub const FORWARD_ERROR_CODE: u32 = 50003;
/// Largest request body forwarded.
pub const MAX_FORWARD_BODY: usize = 16 * 1024 * 1024;
/// Largest answer accepted from the leader.
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;
/// Time for one forwarded request (connect, TLS, send, answer).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write waits for a leader while the group (re)joins.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No leader is known (rebalancing, nobody eligible).
    #[error("no leader is known ({0})")]
    NoLeader(String),
    /// The leader URL is not usable.
    #[error("bad leader URL {url:?}: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Connecting, TLS, sending or receiving failed.
    #[error("{0}")]
    Io(String),
    /// The answer was not HTTP/1.1 as expected.
    #[error("unreadable answer from the leader: {0}")]
    BadAnswer(String),
    /// The request body could not be read.
    #[error("request body: {0}")]
    Body(String),
    /// CA certificates could not be loaded.
    #[error("forwarding CA {path}: {why}")]
    Ca {
        /// The file.
        path: String,
        /// What failed.
        why: String,
    },
}

/// The 500 / 50003 answer.
pub fn forward_error_response(e: &ForwardError) -> Response {
    let body = json!({
        "error_code": FORWARD_ERROR_CODE,
        "message": format!("Error while forwarding the request to the leader: {e}"),
    })
    .to_string();
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response()
}

/// True for the requests that change registry state (and so go to the leader): every `PUT`
/// and `DELETE` (config, mode, subject and version deletes) and `POST
/// /subjects/{subject}/versions` (register, import). Lookups and compatibility checks are
/// `POST`s that only read. `route` is the matched route pattern.
pub fn is_write(method: &Method, route: &str) -> bool {
    match *method {
        Method::PUT | Method::DELETE => true,
        Method::POST => route == "/subjects/{subject}/versions",
        _ => false,
    }
}

/// Where a forwarded request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` or `http`.
    pub tls: bool,
    /// Host name or address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query sent in the request line (the URL's base path, if any, first).
    pub path: String,
}

/// Parses `leader_url` (`https://host[:port][/base]`) and appends the request's path and
/// query.
pub fn target(leader_url: &str, path_and_query: &str) -> Result<Target, ForwardError> {
    let bad = |why| ForwardError::BadUrl {
        url: leader_url.to_string(),
        why,
    };
    let (tls, rest) = if let Some(r) = leader_url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = leader_url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("not http:// or https://"));
    };
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("no host, or user info in the URL"));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return Err(bad("unclosed IPv6 bracket"));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if after.is_empty() => default_port,
            None => return Err(bad("garbage after the IPv6 address")),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("bad host"));
    }
    if !path_and_query.starts_with('/')
        || path_and_query
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("bad request path"));
    }
    Ok(Target {
        tls,
        host,
        port,
        path: format!("{base}{path_and_query}"),
    })
}

/// The request head sent to the leader: request line, `Host`, the caller's `Authorization`,
/// `Content-Type` and `Accept`, `X-Forwarded-For`, [`FORWARDED_BY`], `Content-Length`,
/// `Connection: close`. Header values that are not visible ASCII are dropped.
pub fn request_head(
    method: &Method,
    target: &Target,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    forwarded_by: &str,
    body_len: usize,
) -> String {
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {host}:{}\r\n",
        target.path, target.port
    );
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = headers.get(&name).and_then(|v| v.to_str().ok()) {
            head.push_str(&format!("{}: {v}\r\n", canonical(name.as_str())));
        }
    }
    if let Some(ip) = client {
        head.push_str(&format!("X-Forwarded-For: {ip}\r\n"));
    }
    if forwarded_by.chars().all(|c| c.is_ascii_graphic()) {
        head.push_str(&format!("X-Gatehouse-Forwarded-By: {forwarded_by}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {body_len}\r\nConnection: close\r\n\r\n"
    ));
    head
}

fn canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// Body.
    pub body: Vec<u8>,
}

/// Parses a whole HTTP/1.1 answer (read to the end of the connection).
pub fn parse_answer(raw: &[u8]) -> Result<Answer, ForwardError> {
    let bad = |s: &str| ForwardError::BadAnswer(s.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not UTF-8"))?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not HTTP/1.x"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| bad("bad status"))?;
    let mut content_type = None;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.to_string()),
            "content-length" => {
                length = Some(value.parse().map_err(|_| bad("bad Content-Length"))?)
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| bad("body shorter than Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, ForwardError> {
    let bad = |s: &str| ForwardError::BadAnswer(s.to_string());
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk size"))?;
        let size_line = std::str::from_utf8(&rest[..eol]).map_err(|_| bad("bad chunk size"))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or_else(|| bad("truncated chunk"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or_else(|| bad("truncated chunk"))?;
    }
}

/// The TLS client configuration of forwarding: trusts the given CA files (PEM) only.
#[derive(Clone)]
pub struct ForwardTls(Arc<rustls::ClientConfig>);

impl std::fmt::Debug for ForwardTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardTls")
    }
}

impl ForwardTls {
    /// Trusts every certificate in every existing file of `ca_files` (missing files are
    /// skipped; at least one certificate must be found).
    pub fn from_ca_files(ca_files: &[&Path]) -> Result<Self, ForwardError> {
        let mut roots = rustls::RootCertStore::empty();
        let mut names = Vec::new();
        for path in ca_files.iter().filter(|p| p.exists()) {
            let err = |why: String| ForwardError::Ca {
                path: path.display().to_string(),
                why,
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
                let cert = cert.map_err(|e| err(e.to_string()))?;
                roots.add(cert).map_err(|e| err(e.to_string()))?;
            }
            names.push(path.display().to_string());
        }
        if roots.is_empty() {
            return Err(ForwardError::Ca {
                path: ca_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                why: "no CA certificate found".into(),
            });
        }
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ForwardError::Ca {
                path: names.join(", "),
                why: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self(Arc::new(config)))
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    head: &str,
    body: &[u8],
) -> Result<Vec<u8>, ForwardError> {
    let io = |e: std::io::Error| ForwardError::Io(e.to_string());
    s.write_all(head.as_bytes()).await.map_err(io)?;
    s.write_all(body).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(n) => n,
            // A peer that closes without close_notify after a complete answer is fine.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => 0,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > MAX_ANSWER {
            return Err(ForwardError::BadAnswer("answer too large".into()));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Sends one request and returns the answer.
pub async fn send(
    target: &Target,
    tls: Option<&ForwardTls>,
    head: &str,
    body: &[u8],
) -> Result<Answer, ForwardError> {
    let addr = format!("{}:{}", target.host, target.port);
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|e| ForwardError::Io(format!("cannot connect to {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let raw = if target.tls {
        let Some(tls) = tls else {
            return Err(ForwardError::Io(
                "no CA configured for forwarding over HTTPS".into(),
            ));
        };
        let name = ServerName::try_from(target.host.clone()).map_err(|_| ForwardError::BadUrl {
            url: target.host.clone(),
            why: "not a valid TLS server name",
        })?;
        let stream = tokio_rustls::TlsConnector::from(tls.0.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| ForwardError::Io(format!("TLS with {addr}: {e}")))?;
        exchange(stream, head, body).await?
    } else {
        let loopback = tcp
            .peer_addr()
            .is_ok_and(|a: SocketAddr| a.ip().is_loopback());
        if !loopback {
            return Err(ForwardError::BadUrl {
                url: addr,
                why: "plain http:// is only used to loopback addresses",
            });
        }
        exchange(tcp, head, body).await?
    };
    parse_answer(&raw)
}

/// The [`WriteForwarder`] of a registry node in an election.
pub struct LeaderForwarder {
    election: Arc<Election>,
    store: Arc<KafkaStore>,
    tls: Option<ForwardTls>,
}

impl std::fmt::Debug for LeaderForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderForwarder")
            .field("election", &self.election)
            .finish_non_exhaustive()
    }
}

impl LeaderForwarder {
    /// Forwards to the leader `election` names, trusting `tls` for `https://`; after a
    /// forwarded answer, `store` reads its log to the high watermark.
    pub fn new(election: Arc<Election>, store: Arc<KafkaStore>, tls: Option<ForwardTls>) -> Self {
        Self {
            election,
            store,
            tls,
        }
    }

    async fn forward_to(&self, url: &str, request: Request) -> Result<Response, ForwardError> {
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
        let target = target(url, &path)?;
        let body = axum::body::to_bytes(body, MAX_FORWARD_BODY)
            .await
            .map_err(|e| ForwardError::Body(e.to_string()))?;
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let head = request_head(
            &parts.method,
            &target,
            &parts.headers,
            client,
            self.election.advertised_url(),
            body.len(),
        );
        debug!(leader = url, method = %parts.method, path = %target.path, "forwarding a write to the leader");
        let answer = tokio::time::timeout(
            FORWARD_TIMEOUT,
            send(&target, self.tls.as_ref(), &head, &body),
        )
        .await
        .map_err(|_| ForwardError::Io(format!("no answer within {FORWARD_TIMEOUT:?}")))??;
        // Read your writes: the leader answered after its records were acknowledged.
        if let Err(e) = self.store.catch_up().await {
            warn!(error = %e, "reading _schemas after a forwarded write failed");
        }
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(Body::from(answer.body));
        *response.status_mut() = status;
        let ct = answer
            .content_type
            .and_then(|c| HeaderValue::from_str(&c).ok())
            .unwrap_or_else(|| HeaderValue::from_static(CONTENT_TYPE));
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
        Ok(response)
    }
}

#[async_trait::async_trait]
impl WriteForwarder for LeaderForwarder {
    async fn forward(&self, request: Request) -> Result<Response, Request> {
        let write = request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| is_write(request.method(), p.as_str()));
        if !write {
            return Err(request);
        }
        let already = request.headers().contains_key(FORWARDED_BY);
        let state = self.election.settled(SETTLE_TIMEOUT).await;
        let leader = match state {
            ElectionState::Solo => return Err(request),
            ElectionState::Member(l) if l.is_self => return Err(request),
            ElectionState::Member(l) => l.leader_url,
            ElectionState::Joining | ElectionState::Disabled => None,
        };
        let Some(url) = leader else {
            return Ok(forward_error_response(&ForwardError::NoLeader(
                "the registry group has no eligible leader or is rebalancing".into(),
            )));
        };
        if already {
            return Ok(forward_error_response(&ForwardError::NoLeader(format!(
                "this node is not the leader (the leader is {url}) and the request was already forwarded once"
            ))));
        }
        match self.forward_to(&url, request).await {
            Ok(r) => Ok(r),
            Err(e) => {
                warn!(leader = %url, error = %e, "forwarding a write to the registry leader failed");
                Ok(forward_error_response(&e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_puts_deletes_and_registrations() {
        assert!(is_write(&Method::POST, "/subjects/{subject}/versions"));
        assert!(is_write(&Method::PUT, "/config"));
        assert!(is_write(&Method::PUT, "/mode/{subject}"));
        assert!(is_write(&Method::DELETE, "/subjects/{subject}"));
        assert!(is_write(
            &Method::DELETE,
            "/subjects/{subject}/versions/{version}"
        ));
        assert!(!is_write(&Method::POST, "/subjects/{subject}"));
        assert!(!is_write(
            &Method::POST,
            "/compatibility/subjects/{subject}/versions"
        ));
        assert!(!is_write(&Method::GET, "/subjects/{subject}/versions"));
        assert!(!is_write(&Method::POST, "/"));
    }

    #[test]
    fn targets_keep_path_and_query() {
        let t = target(
            "https://reg.example.com:8081",
            "/subjects/a%2Fb/versions?normalize=true",
        )
        .expect("target");
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "reg.example.com".into(),
                port: 8081,
                path: "/subjects/a%2Fb/versions?normalize=true".into(),
            }
        );
        let t = target("http://127.0.0.1/base/", "/config").expect("target");
        assert_eq!(
            (t.tls, t.port, t.path.as_str()),
            (false, 80, "/base/config")
        );
        let t = target("https://[::1]:9/", "/mode").expect("target");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        assert!(target("ftp://x", "/").is_err());
        assert!(target("https://user@x:1", "/").is_err());
        assert!(target("https://x:notaport", "/").is_err());
        assert!(target("https://x:1", "/a b").is_err());
        assert!(target("https://x:1", "/a\r\nEvil: 1").is_err());
        assert!(target("https://", "/").is_err());
    }

    #[test]
    fn request_head_carries_the_callers_credentials_and_nothing_else() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpi"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
        );
        h.insert(header::COOKIE, HeaderValue::from_static("secret=1"));
        h.insert(
            "x-gatehouse-forwarded-by",
            HeaderValue::from_static("spoof"),
        );
        let t =
            target("https://leader:8081", "/subjects/s/versions?normalize=true").expect("target");
        let head = request_head(
            &Method::POST,
            &t,
            &h,
            Some("10.0.0.9".parse().expect("ip")),
            "https://follower:8081",
            17,
        );
        assert_eq!(
            head,
            "POST /subjects/s/versions?normalize=true HTTP/1.1\r\n\
             Host: leader:8081\r\n\
             Authorization: Basic YTpi\r\n\
             Content-Type: application/vnd.schemaregistry.v1+json\r\n\
             X-Forwarded-For: 10.0.0.9\r\n\
             X-Gatehouse-Forwarded-By: https://follower:8081\r\n\
             Content-Length: 17\r\nConnection: close\r\n\r\n"
        );
        let t6 = target("https://[::1]:8081", "/config").expect("target");
        let head = request_head(&Method::PUT, &t6, &HeaderMap::new(), None, "x", 0);
        assert!(head.starts_with("PUT /config HTTP/1.1\r\nHost: [::1]:8081\r\n"));
        assert!(!head.contains("Authorization"));
    }

    #[test]
    fn answers_parse_with_length_chunked_and_eof_bodies() {
        let a = parse_answer(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: 8\r\n\r\n{\"id\":1}",
        )
        .expect("answer");
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"{\"id\":1}");
        assert_eq!(
            a.content_type.as_deref(),
            Some("application/vnd.schemaregistry.v1+json")
        );
        let a = parse_answer(
            b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .expect("answer");
        assert_eq!((a.status, a.body.as_slice()), (409, b"abcde".as_slice()));
        let a = parse_answer(b"HTTP/1.0 500 X\r\n\r\nrest").expect("answer");
        assert_eq!(a.body, b"rest");
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_err());
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(
            parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn forward_errors_are_confluents_50003() {
        let r = forward_error_response(&ForwardError::NoLeader("x".into()));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
