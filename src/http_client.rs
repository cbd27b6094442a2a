//! The small HTTP/1.1 client the CLIs share (`gatehouse schema`, `doctor` and every admin-API
//! command through [`crate::admin_cli`]).
//!
//! One request per connection (`Connection: close`); `Content-Length`, chunked and
//! read-to-EOF bodies; `https://` through rustls with a given CA file or the system's roots.
//! The `Authorization` value is kept private and never printed. Answers larger than
//! [`MAX_RESPONSE`] are refused, and every request has a deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response body accepted.
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// Time allowed for one request (connect, send, receive).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP error answer: status, Confluent-style `error_code` (0 when absent), message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `error_code` of the body, 0 when absent.
    pub code: i64,
    /// `message` of the body, else the body itself.
    pub message: String,
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A whole response whose body may be binary (see [`HttpClient::download`]).
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client for one base URL.
pub struct HttpClient {
    host: String,
    port: u16,
    base: String,
    tls: Option<tokio_rustls::TlsConnector>,
    authorization: Option<String>,
    user_agent: &'static str,
    accept: &'static str,
    content_type: &'static str,
}

impl HttpClient {
    /// A client for `url` (`http[s]://HOST[:PORT][/PATH]`); `flag` names the option the URL
    /// came from in error messages; `allow_https` false refuses `https://`.
    pub fn new(url: &str, flag: &str, allow_https: bool, ca: Option<&Path>) -> Result<Self> {
        let (rest, https) = if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("https://").filter(|_| allow_https) {
            (r, true)
        } else if allow_https {
            bail!("{flag} {url}: expected http[s]://HOST[:PORT][/PATH]");
        } else {
            bail!(
                "{flag} {url}: expected http://HOST[:PORT][/PATH] (a plain-HTTP loopback listener)"
            );
        };
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') {
            bail!("{flag} {url}: credentials in the URL are not supported");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| anyhow!("{flag} {url}: bad port '{p}'"))?,
            ),
            _ => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            bail!("{flag} {url}: no host");
        }
        let tls = if https {
            Some(tls_connector(ca)?)
        } else if ca.is_some() {
            bail!("--ca-cert needs an https:// {flag}");
        } else {
            None
        };
        Ok(HttpClient {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            base: base.to_string(),
            tls,
            authorization: None,
            user_agent: "gatehouse-cli",
            accept: "application/json",
            content_type: "application/json",
        })
    }

    /// A client of the admin listener (`--admin-url`, plain HTTP) with HTTP Basic credentials:
    /// `user`, and the password from the environment variable `password_env` (never a flag).
    pub fn admin(url: &str, user: &str, password_env: &str) -> Result<Self> {
        let mut c = HttpClient::new(url, "--admin-url", false, None)?;
        if user.is_empty() || user.contains(['\r', '\n', ':']) {
            bail!("--user must be non-empty, without ':' or line breaks");
        }
        let password = std::env::var(password_env).map_err(|_| {
            anyhow!("--user {user}: set the password in the environment variable {password_env}")
        })?;
        c.basic(user, &password)?;
        Ok(c)
    }

    /// Sets the `User-Agent`, `Accept` and request `Content-Type`.
    pub fn with_media(
        mut self,
        user_agent: &'static str,
        accept: &'static str,
        content_type: &'static str,
    ) -> Self {
        self.user_agent = user_agent;
        self.accept = accept;
        self.content_type = content_type;
        self
    }

    /// HTTP Basic credentials.
    pub fn basic(&mut self, user: &str, password: &str) -> Result<()> {
        if user.is_empty() || user.contains(['\r', '\n', ':']) {
            bail!("the user name must be non-empty, without ':' or line breaks");
        }
        use base64::Engine;
        let raw = format!("{user}:{password}");
        self.set_authorization(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }

    /// A bearer token.
    pub fn bearer(&mut self, token: &str) -> Result<()> {
        self.set_authorization(format!("Bearer {}", token.trim()))
    }

    fn set_authorization(&mut self, value: String) -> Result<()> {
        if value.contains(['\r', '\n']) {
            bail!("the credentials contain a line break");
        }
        self.authorization = Some(value);
        Ok(())
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// One request; any status.
    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| anyhow!("{method} {path}: no answer within {REQUEST_TIMEOUT:?}"))?
    }

    /// One request; a 2xx JSON answer (`Null` when empty), or the server's error.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Result<Value, ApiError>> {
        let r = self.send(method, path, body).await?;
        let json: Value = if r.body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&r.body).unwrap_or(Value::String(r.body))
        };
        if (200..300).contains(&r.status) {
            return Ok(Ok(json));
        }
        Ok(Err(api_error(r.status, json)))
    }

    /// One `GET` whose answer may be binary and up to `limit` bytes (a file download), within
    /// `deadline`; a non-2xx answer is the server's error.
    pub async fn download(
        &self,
        path: &str,
        limit: usize,
        deadline: Duration,
    ) -> Result<Result<RawResponse, ApiError>> {
        let r = tokio::time::timeout(deadline, async {
            let raw = self.roundtrip("GET", path, None, limit).await?;
            let addr = self.address();
            parse_raw(raw, limit).with_context(|| format!("bad HTTP answer from {addr}"))
        })
        .await
        .map_err(|_| anyhow!("GET {path}: no answer within {deadline:?}"))??;
        if (200..300).contains(&r.status) {
            return Ok(Ok(r));
        }
        let text = String::from_utf8_lossy(&r.body);
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text.into_owned()));
        Ok(Err(api_error(r.status, json)))
    }

    async fn exchange(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let raw = self.roundtrip(method, path, body, MAX_RESPONSE).await?;
        let addr = self.address();
        parse_response(&raw).with_context(|| format!("bad HTTP answer from {addr}"))
    }

    /// Sends one request and reads the whole answer (at most `limit` bytes of body).
    async fn roundtrip(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        limit: usize,
    ) -> Result<Vec<u8>> {
        let addr = self.address();
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            addr.clone()
        };
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\
             Accept: {}\r\nUser-Agent: {}\r\n",
            self.base, self.accept, self.user_agent
        );
        if body.is_some() {
            req.push_str(&format!("Content-Type: {}\r\n", self.content_type));
        }
        if let Some(a) = &self.authorization {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        req.push_str(&payload);
        let raw = match &self.tls {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|_| anyhow!("{}: not a valid TLS server name", self.host))?;
                let tls = connector
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS handshake with {addr} failed"))?;
                talk(tls, &req, &addr, limit).await?
            }
            None => talk(stream, &req, &addr, limit).await?,
        };
        Ok(raw)
    }
}

/// The server's error from a non-2xx status and its body.
fn api_error(status: u16, json: Value) -> ApiError {
    let code = json.get("error_code").and_then(Value::as_i64).unwrap_or(0);
    let message = json.get("message").and_then(Value::as_str).map_or_else(
        || match &json {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        str::to_string,
    );
    ApiError {
        status,
        code,
        message,
    }
}

/// A TLS connector trusting `ca` (PEM), else the system's root certificates.
pub fn tls_connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector> {
    let config = match ca {
        Some(path) => gatehouse_gateway::tls::client_config(path, None)
            .with_context(|| format!("--ca-cert {}", path.display()))?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                bail!("no system root certificates found; give --ca-cert FILE");
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .context("TLS configuration")?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    };
    Ok(tokio_rustls::TlsConnector::from(config))
}

/// Sends `req` and reads the answer to the end of the stream.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    req: &str,
    addr: &str,
    limit: usize,
) -> Result<Vec<u8>> {
    stream
        .write_all(req.as_bytes())
        .await
        .with_context(|| format!("cannot send to {addr}"))?;
    let mut raw = Vec::new();
    match (&mut stream)
        .take(limit as u64 + 64 * 1024)
        .read_to_end(&mut raw)
        .await
    {
        Ok(_) => {}
        // A TLS peer that closes without close_notify: the HTTP framing decides below.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot read the answer of {addr}")));
        }
    }
    Ok(raw)
}

/// Parses a whole HTTP/1.x response (Content-Length, chunked, or to EOF) with a text body.
pub fn parse_response(raw: &[u8]) -> Result<Response> {
    let r = parse_raw(raw.to_vec(), MAX_RESPONSE)?;
    Ok(Response {
        status: r.status,
        headers: r.headers,
        body: String::from_utf8(r.body).context("body is not UTF-8")?,
    })
}

/// Parses a whole HTTP/1.x response whose body may be binary and up to `limit` bytes.
pub fn parse_raw(mut raw: Vec<u8>, limit: usize) -> Result<RawResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers"))?;
    let mut rest = raw.split_off(end + 4);
    let head = std::str::from_utf8(&raw[..end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line"))?;
    let mut headers = Vec::new();
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = Some(v.parse().map_err(|_| anyhow!("bad Content-Length"))?);
            }
            headers.push((k, v.to_string()));
        }
    }
    let body = if chunked {
        dechunk(&rest, limit)?
    } else if let Some(n) = length {
        if n > limit {
            bail!("answer of {n} bytes is too large");
        }
        if rest.len() < n {
            bail!("answer shorter than its Content-Length");
        }
        rest.truncate(n);
        rest
    } else {
        if rest.len() > limit {
            bail!("answer of {} bytes is too large", rest.len());
        }
        rest
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = s
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&s[..nl]).context("bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size_text, 16).map_err(|_| anyhow!("bad chunk size"))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len().saturating_add(n) > limit {
            bail!("answer is too large");
        }
        let data = s
            .get(nl + 2..nl + 2 + n)
            .ok_or_else(|| anyhow!("truncated chunk"))?;
        out.extend_from_slice(data);
        s = s.get(nl + 4 + n..).unwrap_or_default();
    }
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(c: &HttpClient) -> (&str, u16, &str) {
        (c.host.as_str(), c.port, c.base.as_str())
    }

    #[test]
    fn urls() {
        let c = HttpClient::new("http://127.0.0.1:8081", "--url", true, None).unwrap();
        assert_eq!(parts(&c), ("127.0.0.1", 8081, ""));
        let c = HttpClient::new("http://reg.local/api/", "--url", true, None).unwrap();
        assert_eq!(parts(&c), ("reg.local", 80, "/api"));
        let c = HttpClient::new("http://[::1]:9000", "--url", true, None).unwrap();
        assert_eq!(parts(&c), ("::1", 9000, ""));
        assert!(HttpClient::new("ftp://x", "--url", true, None).is_err());
        assert!(HttpClient::new("http://x:notaport", "--url", true, None).is_err());
        assert!(HttpClient::new("http://u:p@x", "--url", true, None).is_err());
        // Plain-HTTP-only listeners refuse https.
        let e = HttpClient::new("https://x", "--admin-url", false, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("--admin-url"), "{e}");
        // A CA file makes no sense for http.
        assert!(HttpClient::new("http://x", "--url", true, Some(Path::new("ca.pem"))).is_err());
    }

    #[test]
    fn credentials_are_checked() {
        let mut c = HttpClient::new("http://x", "--url", true, None).unwrap();
        assert!(c.basic("a:b", "p").is_err());
        assert!(c.basic("", "p").is_err());
        assert!(c.bearer("t\r\nX: y").is_err());
        assert!(c.basic("alice", "secret").is_ok());
    }

    #[test]
    fn responses() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: x\r\n\r\n[]").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "[]"));
        assert_eq!(r.header("date"), Some("x"));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n3;x=y\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "{\"a\":1}"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n[]").is_err());
    }

    #[test]
    fn binary_answers_and_limits() {
        let mut raw = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n".to_vec();
        raw.extend_from_slice(&[0x1f, 0x8b, 0xff, 0x00, 0x99]);
        let r = parse_raw(raw.clone(), 4).unwrap();
        assert_eq!(r.body, [0x1f, 0x8b, 0xff, 0x00]);
        assert!(parse_raw(raw.clone(), 3).is_err(), "over the limit");
        assert!(parse_response(&raw).is_err(), "not UTF-8 as text");
        let to_eof = b"HTTP/1.1 200 OK\r\n\r\nabcdef".to_vec();
        assert_eq!(parse_raw(to_eof.clone(), 6).unwrap().body, b"abcdef");
        assert!(parse_raw(to_eof, 5).is_err());
    }

    #[test]
    fn segments() {
        assert_eq!(seg("orders-value"), "orders-value");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(seg(":.ctx:x"), "%3A.ctx%3Ax");
        assert_eq!(seg("orders-*"), "orders-%2A");
    }
}
