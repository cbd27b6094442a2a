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

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::http_client::{HttpClient, seg};

/// The default variable holding the `--user` password.
pub const PASSWORD_ENV: &str = "GATEHOUSE_ADMIN_PASSWORD";

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

impl KeyCommon {
    fn client(&self) -> Result<Client> {
        let c = HttpClient::admin(&self.admin_url, &self.user, &self.password_env)?.with_media(
            "gatehouse-key-cli",
            "application/json",
            "application/json",
        );
        Ok(Client(c))
    }
}

/// The admin API client: 2xx JSON, or [`Failure::Refused`].
struct Client(HttpClient);

impl Client {
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        self.0
            .call(method, path, body)
            .await?
            .map_err(|e| Failure::Refused {
                status: e.status,
                code: e.code,
                message: e.message,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_are_plain_http() {
        let common = KeyCommon {
            admin_url: "https://127.0.0.1:8080".into(),
            user: "admin".into(),
            password_env: "GATEHOUSE_TEST_UNSET_VARIABLE".into(),
            json: false,
        };
        assert!(common.client().is_err());
    }
}
