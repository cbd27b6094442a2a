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

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::http_client::{HttpClient, seg};
use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, Output, OutputArgs, print_json};

/// The default variable holding the `--user` password.
pub const PASSWORD_ENV: &str = "GATEHOUSE_REGISTRY_PASSWORD";

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
    /// Where the registry is and its API's links, from the admin API (`GET /v1/schemas`; the
    /// admin listener's flags, not the registry's).
    Overview {
        #[command(flatten)]
        admin: crate::admin_cli::AdminArgs,
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
    #[command(flatten)]
    out: OutputArgs,
}

impl SchemaCommon {
    /// The registry client these flags describe.
    fn client(&self) -> Result<Client> {
        let mut c = HttpClient::new(
            &self.registry_url,
            "--registry-url",
            true,
            self.ca_cert.as_deref(),
        )?
        .with_media(
            "gatehouse-schema-cli",
            "application/vnd.schemaregistry.v1+json, application/json",
            "application/vnd.schemaregistry.v1+json",
        );
        match (&self.user, &self.token_env) {
            (Some(user), _) => {
                let password = std::env::var(&self.password_env).map_err(|_| {
                    anyhow!(
                        "--user {user}: set the password in the environment variable {}",
                        self.password_env
                    )
                })?;
                c.basic(user, &password)?;
            }
            (None, Some(var)) => {
                let token = std::env::var(var)
                    .map_err(|_| anyhow!("--token-env {var}: the variable is not set"))?;
                c.bearer(&token)?;
            }
            (None, None) => {}
        }
        Ok(Client(c))
    }
}

/// The registry client: 2xx JSON, or [`Failure::Registry`].
struct Client(HttpClient);

impl Client {
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        self.0
            .call(method, path, body)
            .await?
            .map_err(|e| Failure::Registry {
                status: e.status,
                code: e.code,
                message: e.message,
            })
    }
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
    if let SchemaCommand::Overview { admin } = cmd {
        return Ok(crate::admin_cli::run_with(overview(admin)));
    }
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
            if is_check { EXIT_USAGE } else { EXIT_FAILED }
        }
        Err(Failure::Local(e)) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    })
}

/// `schema overview`: `GET /v1/schemas` on the admin API.
async fn overview(admin: crate::admin_cli::AdminArgs) -> Result<(), crate::admin_cli::Failure> {
    use crate::output::{cell, print_fields, print_table};
    let v = admin.client()?.call("GET", "/v1/schemas", None).await?;
    if admin.json() {
        print_json(&v);
        return Ok(());
    }
    print_fields(&[
        ("registry", cell(v.get("registry_url"))),
        ("authentication", cell(v.get("authentication"))),
        ("docs", cell(v.get("docs"))),
    ]);
    let links: Vec<Vec<String>> = v["links"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, u)| vec![k.clone(), cell(Some(u))])
        .collect();
    println!();
    print_table(&["LINK", "URL"], &links);
    Ok(())
}

async fn execute(cmd: SchemaCommand) -> Result<i32, Failure> {
    match cmd {
        SchemaCommand::Overview { .. } => Err(anyhow!("schema overview asks the admin API").into()),
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
            match common.out.format() {
                Output::Json => print_json(&v),
                Output::Table => println!(
                    "registered {subject}: id {}",
                    v.get("id").map(Value::to_string).unwrap_or_default()
                ),
            }
            Ok(EXIT_OK)
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
            match common.out.format() {
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
            Ok(if compatible { EXIT_OK } else { EXIT_FAILED })
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
            match common.out.format() {
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
            Ok(EXIT_OK)
        }
        SchemaCommand::List { common } => {
            let client = common.client()?;
            let v = client.call("GET", "/subjects", None).await?;
            match common.out.format() {
                Output::Json => print_json(&v),
                Output::Table => {
                    // One subject per line and no header: CI scripts pipe it (`| xargs`).
                    for s in v.as_array().into_iter().flatten() {
                        println!("{}", plain(s));
                    }
                }
            }
            Ok(EXIT_OK)
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
            match common.out.format() {
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
            Ok(EXIT_OK)
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
