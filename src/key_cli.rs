//! `gatehouse key list|status|create|rotate|retire|destroy`: the key vault through the admin
//! REST API (`/v1/keys…`, see docs/admin-api.md).
//!
//! Talks plain HTTP/1.1 (`Connection: close`) to the admin listener (`--admin-url`, default
//! `http://127.0.0.1:8080`, env `GATEHOUSE_ADMIN_URL`; the listener is loopback). HTTP Basic
//! as `--user` (default `admin`) with the password from the variable named by
//! `--password-env` (default `GATEHOUSE_ADMIN_PASSWORD`). Secrets are never taken on the
//! command line and never printed.
//!
//! Exit codes: 0 success; 1 the server refused the request (401, 403, 404, 409, 422, ...);
//! 2 usage or connection errors.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The default variable holding the `--user` password.
pub const PASSWORD_ENV: &str = "GATEHOUSE_ADMIN_PASSWORD";
/// Largest answer accepted.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;
/// Time allowed for one request (connect, send, receive).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List every key-encryption key (ids and states, never material).
    List {
        #[command(flatten)]
        common: KeyCommon,
    },
    /// Show one key: state, versions, earlier keys of the same name.
    Status {
        /// Topic name or template (`orders-*`).
        name: String,
        #[command(flatten)]
        common: KeyCommon,
    },
    /// Create a key for a topic or a template (`orders-*`, `*`).
    Create {
        /// Topic name or template.
        name: String,
        #[command(flatten)]
        common: KeyCommon,
    },
    /// Add a version: new data keys are wrapped by it, older versions keep decrypting.
    Rotate {
        /// Topic name or template.
        name: String,
        #[command(flatten)]
        common: KeyCommon,
    },
    /// Retire a key: no new encryption under it, decryption continues.
    Retire {
        /// Topic name or template.
        name: String,
        #[command(flatten)]
        common: KeyCommon,
    },
    /// Destroy a key (crypto-shredding): nothing encrypted under it decrypts again.
    Destroy {
        /// Topic name or template.
        name: String,
        /// The key's name again, to confirm.
        #[arg(long, value_name = "NAME")]
        confirm: String,
        #[command(flatten)]
        common: KeyCommon,
    },
}

/// Flags shared by every `key` command.
#[derive(Args, Debug)]
pub struct KeyCommon {
    /// Admin API base URL (plain HTTP).
    #[arg(
        long,
        env = "GATEHOUSE_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    admin_url: String,
    /// User for HTTP Basic authentication (password from --password-env).
    #[arg(long, default_value = "admin")]
    user: String,
    /// Environment variable holding the --user password.
    #[arg(long, default_value = PASSWORD_ENV)]
    password_env: String,
    /// Print the API's JSON instead of lines.
    #[arg(long)]
    json: bool,
}

/// Failures with their exit code.
enum Failure {
    /// The server answered with an error (exit 1).
    Refused {
        status: u16,
        code: i64,
        message: String,
    },
    /// Usage or connection problems (exit 2).
    Local(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Local(e)
    }
}

/// Runs one `key` command; returns the process exit code.
pub fn run(cmd: KeyCommand) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 2;
        }
    };
    match rt.block_on(execute(cmd)) {
        Ok(()) => 0,
        Err(Failure::Refused {
            status,
            code,
            message,
        }) => {
            eprintln!("error: the admin API answered {status} (error code {code}): {message}");
            1
        }
        Err(Failure::Local(e)) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

async fn execute(cmd: KeyCommand) -> Result<(), Failure> {
    match cmd {
        KeyCommand::List { common } => {
            let v = common.client()?.call("GET", "/v1/keys", None).await?;
            if common.json {
                print_json(&v);
            } else {
                let keys = v
                    .get("keys")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if keys.is_empty() {
                    println!("no keys");
                }
                for k in &keys {
                    println!("{}", one_line(k));
                }
            }
        }
        KeyCommand::Status { name, common } => {
            let path = format!("/v1/keys/{}", seg(&name));
            let v = common.client()?.call("GET", &path, None).await?;
            if common.json {
                print_json(&v);
            } else {
                print_status(&v);
            }
        }
        KeyCommand::Create { name, common } => {
            let body = json!({ "name": name });
            let v = common
                .client()?
                .call("POST", "/v1/keys", Some(&body))
                .await?;
            report(&common, "created", &v);
        }
        KeyCommand::Rotate { name, common } => {
            let path = format!("/v1/keys/{}/rotate", seg(&name));
            let v = common
                .client()?
                .call("POST", &path, Some(&json!({})))
                .await?;
            report(&common, "rotated", &v);
        }
        KeyCommand::Retire { name, common } => {
            let path = format!("/v1/keys/{}/retire", seg(&name));
            let v = common
                .client()?
                .call("POST", &path, Some(&json!({})))
                .await?;
            report(&common, "retired", &v);
        }
        KeyCommand::Destroy {
            name,
            confirm,
            common,
        } => {
            if confirm != name {
                return Err(Failure::Local(anyhow!(
                    "--confirm {confirm:?} does not match the key name {name:?}; nothing was destroyed"
                )));
            }
            let path = format!("/v1/keys/{}/destroy", seg(&name));
            let body = json!({ "confirm": confirm });
            let v = common.client()?.call("POST", &path, Some(&body)).await?;
            report(&common, "destroyed", &v);
        }
    }
    Ok(())
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    }
}

fn one_line(k: &Value) -> String {
    let versions = k
        .get("versions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    format!(
        "{}\t{}\t{}\tversions={}\tcreated={}",
        text(k, "name"),
        text(k, "id"),
        text(k, "state"),
        versions,
        text(k, "created")
    )
}

fn print_status(v: &Value) {
    println!("name:     {}", text(v, "name"));
    println!("id:       {}", text(v, "id"));
    println!("state:    {}", text(v, "state"));
    println!("kms:      {}", text(v, "kms"));
    println!("created:  {}", text(v, "created"));
    println!("current:  {}", text(v, "current_version"));
    for ver in v
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  version {}\tcreated={}\tdestroyed={}\tkms_key={}",
            text(ver, "version"),
            text(ver, "created"),
            text(ver, "destroyed"),
            text(ver, "kms_key")
        );
    }
    for p in v
        .get("previous")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("  earlier key {}\t{}", text(p, "id"), text(p, "state"));
    }
}

fn report(common: &KeyCommon, what: &str, v: &Value) {
    if common.json {
        print_json(v);
    } else {
        let version = v
            .get("versions")
            .and_then(Value::as_array)
            .and_then(|a| a.last())
            .map_or_else(|| "-".to_string(), |x| text(x, "version"));
        println!(
            "{what} {}: id {}, state {}, version {version}",
            text(v, "name"),
            text(v, "id"),
            text(v, "state")
        );
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
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

impl KeyCommon {
    fn client(&self) -> Result<Client> {
        let mut c = Client::new(&self.admin_url)?;
        if self.user.is_empty() || self.user.contains(['\r', '\n', ':']) {
            bail!("--user must be non-empty, without ':' or line breaks");
        }
        let password = std::env::var(&self.password_env).map_err(|_| {
            anyhow!(
                "--user {}: set the password in the environment variable {}",
                self.user,
                self.password_env
            )
        })?;
        use base64::Engine;
        let raw = format!("{}:{password}", self.user);
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        c.authorization = Some(auth);
        Ok(c)
    }
}

/// A minimal plain-HTTP/1.1 client for the admin listener.
struct Client {
    host: String,
    port: u16,
    base: String,
    /// The `Authorization` header value (never printed).
    authorization: Option<String>,
}

impl Client {
    fn new(url: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!(
                "--admin-url {url}: expected http://HOST[:PORT][/PATH] (the admin listener is plain HTTP on loopback)"
            );
        };
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') {
            bail!("--admin-url {url}: credentials in the URL are not supported");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| anyhow!("--admin-url {url}: bad port '{p}'"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            bail!("--admin-url {url}: no host");
        }
        Ok(Client {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            base: base.to_string(),
            authorization: None,
        })
    }

    /// One request; a 2xx JSON answer, or the server's error.
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
            .map_or_else(|| json.to_string(), str::to_string);
        Err(Failure::Refused {
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
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot connect to the admin API at {addr}"))?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            addr.clone()
        };
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\
             Accept: application/json\r\nUser-Agent: gatehouse-key-cli\r\n",
            self.base
        );
        if body.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(a) = &self.authorization {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        req.push_str(&payload);
        stream
            .write_all(req.as_bytes())
            .await
            .with_context(|| format!("cannot send to the admin API at {addr}"))?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .await
            .with_context(|| format!("cannot read the answer of the admin API at {addr}"))?;
        parse_response(&raw).with_context(|| format!("bad HTTP answer from {addr}"))
    }
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
    let status: u16 = lines
        .next()
        .unwrap_or_default()
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
        let c = Client::new("http://127.0.0.1:9090/base/").expect("url");
        assert_eq!(
            (c.host.as_str(), c.port, c.base.as_str()),
            ("127.0.0.1", 9090, "/base")
        );
        assert!(Client::new("https://x").is_err());
        assert!(Client::new("http://u:p@x").is_err());
        assert_eq!(
            Client::new("http://[::1]:8")
                .map(|c| c.host)
                .ok()
                .as_deref(),
            Some("::1")
        );
    }

    #[test]
    fn responses_and_segments() {
        let (s, b) = parse_response(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\n{}")
            .expect("parse");
        assert_eq!((s, b.as_str()), (403, "{}"));
        let (s, b) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        )
        .expect("parse");
        assert_eq!((s, b.as_str()), (200, "ab"));
        assert_eq!(seg("orders-*"), "orders-%2A");
    }
}
