//! `gatehouse schema register|check|get|list|delete`: the schema registry from CI.
//!
//! Talks to a Confluent-compatible registry (`--registry-url`, default
//! `http://127.0.0.1:8081`, env `GATEHOUSE_REGISTRY_URL`) with a small HTTP/1.1 client
//! (`Connection: close`; `Content-Length` and chunked responses), over HTTPS for `https://`
//! URLs (rustls; `--ca-cert FILE` to trust, else the system's roots). `--user NAME` sends HTTP
//! Basic credentials with the password from the variable named by `--password-env` (default
//! `GATEHOUSE_REGISTRY_PASSWORD`); `--token-env VAR` sends `Authorization: Bearer` instead.
//! Secrets are never taken on the command line and never printed.
//!
//! Exit codes: 0 success (for `check`: compatible); 1 the registry refused the request (for
//! `check`: incompatible, with the verbose reasons printed); 2 usage or connection errors (and
//! for `check`, any error that leaves the verdict unknown).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The default variable holding the `--user` password.
pub const PASSWORD_ENV: &str = "GATEHOUSE_REGISTRY_PASSWORD";

/// Largest response body accepted.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// Time allowed for one request (connect, send, receive).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Subcommand, Debug)]
pub enum SchemaCommand {
    /// Register a schema under a subject; prints the id.
    Register {
        /// Subject, e.g. orders-value.
        subject: String,
        /// Schema file.
        #[arg(long)]
        file: PathBuf,
        /// Schema type (default: PROTOBUF for .proto files, else AVRO).
        #[arg(long = "type", value_enum)]
        schema_type: Option<SchemaKind>,
        /// Register the normalised form.
        #[arg(long)]
        normalize: bool,
        #[command(flatten)]
        common: SchemaCommon,
    },
    /// Check a schema against a subject version; exit 1 when incompatible.
    Check {
        /// Subject.
        subject: String,
        /// Schema file.
        #[arg(long)]
        file: PathBuf,
        /// Schema type (default: PROTOBUF for .proto files, else AVRO).
        #[arg(long = "type", value_enum)]
        schema_type: Option<SchemaKind>,
        /// Version to check against (a number or `latest`).
        #[arg(long, default_value = "latest")]
        version: String,
        #[command(flatten)]
        common: SchemaCommon,
    },
    /// Print a subject version (default latest) or a schema by id.
    Get {
        /// Subject (omit with --id).
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        subject: Option<String>,
        /// Version (a number or `latest`).
        #[arg(long, default_value = "latest")]
        version: String,
        /// Global schema id.
        #[arg(long)]
        id: Option<i64>,
        #[command(flatten)]
        common: SchemaCommon,
    },
    /// List subjects.
    List {
        #[command(flatten)]
        common: SchemaCommon,
    },
    /// Delete a subject or one version (soft; `--permanent` after a soft delete).
    Delete {
        /// Subject.
        subject: String,
        /// Only this version (a number or `latest`).
        #[arg(long)]
        version: Option<String>,
        /// Hard delete (the subject or version must be soft-deleted first).
        #[arg(long)]
        permanent: bool,
        #[command(flatten)]
        common: SchemaCommon,
    },
}

/// Flags shared by every `schema` command.
#[derive(Args, Debug)]
pub struct SchemaCommon {
    /// Registry base URL.
    #[arg(
        long,
        env = "GATEHOUSE_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    registry_url: String,
    /// CA certificate (PEM) to trust for https:// (e.g. <data-dir>/tls/ca.pem); default: the
    /// system's roots.
    #[arg(long, env = "GATEHOUSE_REGISTRY_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// User for HTTP Basic authentication (password from --password-env).
    #[arg(long, env = "GATEHOUSE_REGISTRY_USER")]
    user: Option<String>,
    /// Environment variable holding the --user password.
    #[arg(long, default_value = PASSWORD_ENV)]
    password_env: String,
    /// Environment variable holding a bearer token (OIDC) to send instead of --user.
    #[arg(long, conflicts_with = "user")]
    token_env: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

impl SchemaCommon {
    /// The registry client these flags describe.
    fn client(&self) -> Result<Client> {
        let mut c = Client::new(&self.registry_url)?;
        if c.tls {
            c.connector = Some(tls_connector(self.ca_cert.as_deref())?);
        } else if self.ca_cert.is_some() {
            bail!("--ca-cert needs an https:// --registry-url");
        }
        c.authorization = match (&self.user, &self.token_env) {
            (Some(user), _) => {
                let password = std::env::var(&self.password_env).map_err(|_| {
                    anyhow!(
                        "--user {user}: set the password in the environment variable {}",
                        self.password_env
                    )
                })?;
                use base64::Engine;
                let raw = format!("{user}:{password}");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
            (None, Some(var)) => {
                let token = std::env::var(var)
                    .map_err(|_| anyhow!("--token-env {var}: the variable is not set"))?;
                Some(format!("Bearer {}", token.trim()))
            }
            (None, None) => None,
        };
        if c.authorization
            .as_deref()
            .is_some_and(|a| a.contains(['\r', '\n']))
        {
            bail!("the credentials contain a line break");
        }
        Ok(c)
    }
}

/// A TLS connector trusting `ca` (PEM), else the system's root certificates.
fn tls_connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector> {
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

/// Schema formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum SchemaKind {
    /// Apache Avro.
    Avro,
    /// Protocol Buffers.
    Protobuf,
    /// JSON Schema.
    Json,
}

impl SchemaKind {
    fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Avro => "AVRO",
            SchemaKind::Protobuf => "PROTOBUF",
            SchemaKind::Json => "JSON",
        }
    }
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Table,
    /// The registry's JSON.
    Json,
}

/// Failures with their exit code.
enum Failure {
    /// The registry answered with an error (exit 1; 2 for `check`).
    Registry {
        status: u16,
        code: i64,
        message: String,
    },
    /// Usage, file or connection problems (exit 2).
    Local(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Local(e)
    }
}

/// Runs one `schema` command; returns the process exit code.
pub fn run(cmd: SchemaCommand) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let is_check = matches!(cmd, SchemaCommand::Check { .. });
    Ok(match rt.block_on(execute(cmd)) {
        Ok(code) => code,
        Err(Failure::Registry {
            status,
            code,
            message,
        }) => {
            eprintln!("error: the registry answered {status} (error code {code}): {message}");
            if is_check { 2 } else { 1 }
        }
        Err(Failure::Local(e)) => {
            eprintln!("error: {e:#}");
            2
        }
    })
}

async fn execute(cmd: SchemaCommand) -> Result<i32, Failure> {
    match cmd {
        SchemaCommand::Register {
            subject,
            file,
            schema_type,
            normalize,
            common,
        } => {
            let client = common.client()?;
            let body = schema_body(&file, schema_type)?;
            let path = format!(
                "/subjects/{}/versions{}",
                seg(&subject),
                if normalize { "?normalize=true" } else { "" }
            );
            let v = client.call("POST", &path, Some(&body)).await?;
            match common.output {
                Output::Json => print_json(&v),
                Output::Table => println!(
                    "registered {subject}: id {}",
                    v.get("id").map(Value::to_string).unwrap_or_default()
                ),
            }
            Ok(0)
        }
        SchemaCommand::Check {
            subject,
            file,
            schema_type,
            version,
            common,
        } => {
            let client = common.client()?;
            let body = schema_body(&file, schema_type)?;
            let path = format!(
                "/compatibility/subjects/{}/versions/{}?verbose=true",
                seg(&subject),
                seg(&version)
            );
            let v = client.call("POST", &path, Some(&body)).await?;
            let compatible = v
                .get("is_compatible")
                .and_then(Value::as_bool)
                .ok_or_else(|| anyhow!("the registry's answer has no is_compatible: {v}"))?;
            match common.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    if compatible {
                        println!("compatible with {subject} version {version}");
                    } else {
                        println!("INCOMPATIBLE with {subject} version {version}:");
                    }
                    for m in v
                        .get("messages")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        println!(
                            "  {}",
                            m.as_str().map_or_else(|| m.to_string(), str::to_string)
                        );
                    }
                }
            }
            Ok(if compatible { 0 } else { 1 })
        }
        SchemaCommand::Get {
            subject,
            version,
            id,
            common,
        } => {
            let client = common.client()?;
            let path = match (id, subject) {
                (Some(id), _) => format!("/schemas/ids/{id}"),
                (None, Some(s)) => format!("/subjects/{}/versions/{}", seg(&s), seg(&version)),
                (None, None) => return Err(anyhow!("give a SUBJECT or --id").into()),
            };
            let v = client.call("GET", &path, None).await?;
            match common.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    if let Some(id) = id {
                        println!("{:<12}{id}", "id:");
                    }
                    for key in ["subject", "version", "id", "schemaType", "deleted"] {
                        if let Some(x) = v.get(key) {
                            println!("{:<12}{}", format!("{key}:"), plain(x));
                        }
                    }
                    if v.get("schemaType").is_none() {
                        println!("{:<12}AVRO", "schemaType:");
                    }
                    if let Some(refs) = v.get("references").and_then(Value::as_array) {
                        for r in refs {
                            println!("reference: {r}");
                        }
                    }
                    // Exactly as stored, so CI can diff it.
                    println!(
                        "{}",
                        v.get("schema").and_then(Value::as_str).unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
        SchemaCommand::List { common } => {
            let client = common.client()?;
            let v = client.call("GET", "/subjects", None).await?;
            match common.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    for s in v.as_array().into_iter().flatten() {
                        println!("{}", plain(s));
                    }
                }
            }
            Ok(0)
        }
        SchemaCommand::Delete {
            subject,
            version,
            permanent,
            common,
        } => {
            let client = common.client()?;
            let q = if permanent { "?permanent=true" } else { "" };
            let path = match &version {
                Some(ver) => format!("/subjects/{}/versions/{}{q}", seg(&subject), seg(ver)),
                None => format!("/subjects/{}{q}", seg(&subject)),
            };
            let v = client.call("DELETE", &path, None).await?;
            match common.output {
                Output::Json => print_json(&v),
                Output::Table => {
                    let how = if permanent {
                        "permanently deleted"
                    } else {
                        "deleted"
                    };
                    println!("{how} {subject} version(s) {}", plain_list(&v));
                }
            }
            Ok(0)
        }
    }
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn plain_list(v: &Value) -> String {
    match v.as_array() {
        Some(a) => a.iter().map(plain).collect::<Vec<_>>().join(", "),
        None => plain(v),
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// The register/check request body from a schema file.
fn schema_body(file: &Path, kind: Option<SchemaKind>) -> Result<Value> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read schema file {}", file.display()))?;
    let kind = kind.unwrap_or_else(|| {
        if file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("proto"))
        {
            SchemaKind::Protobuf
        } else {
            SchemaKind::Avro
        }
    });
    let mut body = json!({ "schema": text });
    if kind != SchemaKind::Avro {
        body["schemaType"] = json!(kind.as_str());
    }
    Ok(body)
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
fn seg(s: &str) -> String {
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

/// A minimal HTTP/1.1 client for one registry.
struct Client {
    host: String,
    port: u16,
    base: String,
    /// `https://`.
    tls: bool,
    /// Set for `https://` by [`SchemaCommon::client`].
    connector: Option<tokio_rustls::TlsConnector>,
    /// The `Authorization` header value (never printed).
    authorization: Option<String>,
}

impl Client {
    fn new(url: &str) -> Result<Self> {
        let (rest, tls) = if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("https://") {
            (r, true)
        } else {
            bail!("--registry-url {url}: expected http[s]://HOST[:PORT][/PATH]");
        };
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') {
            bail!("--registry-url {url}: credentials in the URL are not supported");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| anyhow!("--registry-url {url}: bad port '{p}'"))?,
            ),
            _ => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            bail!("--registry-url {url}: no host");
        }
        Ok(Client {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            base: base.to_string(),
            tls,
            connector: None,
            authorization: None,
        })
    }

    /// One request; a 2xx JSON answer, or the registry's error.
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let (status, text) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body))
                .await
                .map_err(|_| anyhow!("{method} {path}: no answer within {REQUEST_TIMEOUT:?}"))??;
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let code = json.get("error_code").and_then(Value::as_i64).unwrap_or(0);
        let message = json
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| plain(&json), str::to_string);
        Err(Failure::Registry {
            status,
            code,
            message,
        })
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String)> {
        let addr = format!("{}:{}", self.host, self.port);
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot connect to the registry at {addr}"))?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            addr.clone()
        };
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\
             Accept: application/vnd.schemaregistry.v1+json, application/json\r\n\
             User-Agent: gatehouse-schema-cli\r\n",
            self.base
        );
        if body.is_some() {
            req.push_str("Content-Type: application/vnd.schemaregistry.v1+json\r\n");
        }
        if let Some(a) = &self.authorization {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        req.push_str(&payload);
        let raw = match (self.tls, &self.connector) {
            (true, Some(connector)) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|_| anyhow!("{}: not a valid TLS server name", self.host))?;
                let tls = connector
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS handshake with the registry at {addr} failed"))?;
                talk(tls, &req, &addr).await?
            }
            (true, None) => bail!("{addr}: https:// without a TLS configuration"),
            (false, _) => talk(stream, &req, &addr).await?,
        };
        parse_response(&raw).with_context(|| format!("bad HTTP answer from {addr}"))
    }
}

/// Sends `req` and reads the answer to the end of the stream.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    req: &str,
    addr: &str,
) -> Result<Vec<u8>> {
    stream
        .write_all(req.as_bytes())
        .await
        .with_context(|| format!("cannot send to the registry at {addr}"))?;
    let mut raw = Vec::new();
    match (&mut stream)
        .take(MAX_RESPONSE as u64 + 64 * 1024)
        .read_to_end(&mut raw)
        .await
    {
        Ok(_) => {}
        // A TLS peer that closes without close_notify: the HTTP framing decides below.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot read the answer of the registry at {addr}")));
        }
    }
    Ok(raw)
}

/// Parses a whole HTTP/1.x response: status and body (Content-Length, chunked, or to EOF).
fn parse_response(raw: &[u8]) -> Result<(u16, String)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).context("headers are not UTF-8")?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line"))?;
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
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        if n > MAX_RESPONSE {
            bail!("answer of {n} bytes is too large");
        }
        rest.get(..n)
            .ok_or_else(|| anyhow!("answer shorter than its Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((
        status,
        String::from_utf8(body).context("body is not UTF-8")?,
    ))
}

fn dechunk(mut s: &[u8]) -> Result<Vec<u8>> {
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
        if out.len().saturating_add(n) > MAX_RESPONSE {
            bail!("answer is too large");
        }
        let data = s
            .get(nl + 2..nl + 2 + n)
            .ok_or_else(|| anyhow!("truncated chunk"))?;
        out.extend_from_slice(data);
        s = s.get(nl + 4 + n..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = Client::new("http://127.0.0.1:8081").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.base.as_str()),
            ("127.0.0.1", 8081, "")
        );
        let c = Client::new("http://reg.local/api/").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.base.as_str()),
            ("reg.local", 80, "/api")
        );
        let c = Client::new("http://[::1]:9000").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 9000));
        let c = Client::new("https://x").unwrap();
        assert!(c.tls);
        assert_eq!(c.port, 443);
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("http://x:notaport").is_err());
    }

    #[test]
    fn responses() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]").unwrap();
        assert_eq!((s, b.as_str()), (200, "[]"));
        let (s, b) = parse_response(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n3;x=y\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_str()), (404, "{\"a\":1}"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n[]").is_err());
    }

    #[test]
    fn segments() {
        assert_eq!(seg("orders-value"), "orders-value");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(seg(":.ctx:x"), "%3A.ctx%3Ax");
    }
}
