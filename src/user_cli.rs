//! `gatehouse user add|delete|list`: SCRAM users on the gateway, over the Kafka protocol.
//!
//! The commands speak Kafka's own admin APIs to the gateway (AlterUserScramCredentials,
//! DescribeUserScramCredentials), so they need nothing the Kafka tools do not: the gateway's
//! plaintext SASL listener and a user with ALTER (changes) or DESCRIBE (listing) on the
//! cluster. `user add` reads the new password from stdin (or an environment variable), runs
//! PBKDF2 here and sends only the salt and the salted password, never the password.
//!
//! This module also holds what `gatehouse acl` shares with it ([`GatewayArgs`], [`connect`],
//! [`Failure`], [`kafka_error`]): how to reach and log in to the gateway and how failures map to
//! exit codes. Exit codes (as for `gatehouse schema`): 0 success; 1 the gateway refused or
//! failed the request (the Kafka error name and message are printed); 2 usage errors, a
//! missing password, an unreachable gateway or failed authentication.
//!
//! Plaintext only for now: `--bootstrap` must be the gateway's loopback SASL listener
//! (`--gateway-plain-listen`, default 127.0.0.1:9093), not the TLS listener.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use gatehouse_policy::{DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS, Mechanism};
use gatehouse_protocol::client::{Connection, ConnectionConfig, SaslCredentials, SaslMechanism};
use gatehouse_protocol::kafka_protocol::error::ParseResponseErrorCode;
use gatehouse_protocol::kafka_protocol::protocol::StrBytes;
use gatehouse_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use gatehouse_protocol::messages::describe_user_scram_credentials_request::UserName;
use gatehouse_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use gatehouse_protocol::{ErrorCode, ProtocolError};
use rand::RngCore;
use serde_json::json;
use sha2::{Sha256, Sha512};

use crate::output::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, OutputArgs, print_json, print_table};

/// Default `--bootstrap`: the gateway's plaintext SASL listener.
const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9093";
/// Salt length of the credentials `user add` makes (as the gateway's own).
const SALT_LEN: usize = 32;
/// Time allowed for one admin request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Shared with `gatehouse acl`: reaching the gateway, failures and exit codes
// ---------------------------------------------------------------------------------------------

/// How `gatehouse user` and `gatehouse acl` reach and log in to the gateway.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// The gateway's plaintext SASL listener, HOST:PORT. Plaintext only for now: use the
    /// loopback listener (`serve --gateway-plain-listen`), not the TLS one.
    #[arg(long, env = "GATEHOUSE_BOOTSTRAP", default_value = DEFAULT_BOOTSTRAP, value_name = "HOST:PORT")]
    bootstrap: String,
    /// The user the command logs in as (changes need ALTER on the cluster, listings DESCRIBE).
    #[arg(long, default_value = "admin", value_name = "NAME")]
    user: String,
    /// The environment variable holding that user's password (never a command-line password).
    #[arg(long, default_value = "GATEHOUSE_ADMIN_PASSWORD", value_name = "NAME")]
    password_env: String,
    /// The SASL mechanism the command logs in with.
    #[arg(long, value_enum, ignore_case = true, default_value_t = LoginMechanism::ScramSha512)]
    sasl_mechanism: LoginMechanism,
}

/// SASL mechanisms the command can log in with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LoginMechanism {
    /// SCRAM-SHA-512.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
    /// SCRAM-SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// PLAIN (the password crosses the wire; loopback only).
    #[value(name = "PLAIN")]
    Plain,
}

impl LoginMechanism {
    fn client(self) -> SaslMechanism {
        match self {
            LoginMechanism::ScramSha512 => SaslMechanism::ScramSha512,
            LoginMechanism::ScramSha256 => SaslMechanism::ScramSha256,
            LoginMechanism::Plain => SaslMechanism::Plain,
        }
    }
}

/// Why a command failed, and so its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The gateway refused or failed the request; already printed (exit 1).
    Refused,
    /// Usage, password, connection or authentication problems (exit 2).
    Local(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Local(e)
    }
}

/// Runs `work` on a fresh single-threaded runtime and turns its outcome into an exit code.
pub fn exit_code<F>(work: F) -> i32
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_USAGE;
        }
    };
    match rt.block_on(work) {
        Ok(()) => EXIT_OK,
        Err(Failure::Refused) => EXIT_FAILED,
        Err(Failure::Local(e)) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}

/// An authenticated connection to the gateway, with the flags it was made from.
pub struct Gateway {
    conn: Connection,
    bootstrap: String,
}

/// Connects to `--bootstrap` and logs in; every failure is a [`Failure::Local`] that says what
/// to check.
pub async fn connect(args: &GatewayArgs) -> Result<Gateway, Failure> {
    let password = match std::env::var(&args.password_env) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            return Err(Failure::Local(anyhow!(
                "no password for user '{}': the environment variable {} is not set or empty \
                 (set it, or name another variable with --password-env NAME)",
                args.user,
                args.password_env
            )));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(Failure::Local(anyhow!(
                "the environment variable {} does not hold UTF-8 text",
                args.password_env
            )));
        }
    };
    let mechanism = args.sasl_mechanism.client();
    let config = ConnectionConfig {
        client_id: Some("gatehouse-cli".to_owned()),
        request_timeout: REQUEST_TIMEOUT,
        sasl: Some(SaslCredentials::new(mechanism, args.user.clone(), password)),
        ..ConnectionConfig::default()
    };
    let bootstrap = args.bootstrap.clone();
    match Connection::connect(bootstrap.as_str(), config).await {
        Ok(conn) => Ok(Gateway { conn, bootstrap }),
        Err(e) => Err(Failure::Local(connect_error(args, mechanism, e))),
    }
}

/// A sentence a person can act on for a failed connect or login.
fn connect_error(args: &GatewayArgs, mechanism: SaslMechanism, e: ProtocolError) -> anyhow::Error {
    let at = &args.bootstrap;
    let listener_hint = "Is `gatehouse serve` running, and is that its plaintext SASL listener \
        (--gateway-plain-listen, default 127.0.0.1:9093; the CLI does not speak TLS yet)? \
        Point --bootstrap or GATEHOUSE_BOOTSTRAP at it.";
    match &e {
        ProtocolError::Broker {
            code: ErrorCode::SaslAuthenticationFailed,
            message,
        } => anyhow!(
            "the gateway at {at} refused to log in user '{}' with {mechanism} ({message}). \
             Check the password in ${} (--password-env NAME), --user and --sasl-mechanism.",
            args.user,
            args.password_env
        ),
        ProtocolError::Broker {
            code: ErrorCode::UnsupportedSaslMechanism,
            message,
        } => anyhow!(
            "the gateway at {at} does not offer {mechanism} ({message}); choose another with \
             --sasl-mechanism"
        ),
        ProtocolError::Io(io) => anyhow!("cannot reach the gateway at {at}: {io}. {listener_hint}"),
        other => anyhow!(
            "{at} did not answer as the gateway's SASL listener does: {other}. {listener_hint}"
        ),
    }
}

impl Gateway {
    /// Sends one admin request; transport and version problems are [`Failure::Local`].
    pub async fn send<R: gatehouse_protocol::kafka_protocol::protocol::Request>(
        &self,
        req: R,
    ) -> Result<R::Response, Failure> {
        self.conn.send(req, None).await.map_err(|e| {
            let what = match &e {
                ProtocolError::Broker {
                    code: ErrorCode::UnsupportedVersion,
                    ..
                } => "does not support this admin request (is it the Gatehouse gateway?)",
                ProtocolError::Io(_) => "stopped answering",
                _ => "sent an answer the CLI cannot read",
            };
            Failure::Local(anyhow!("the gateway at {} {what}: {e}", self.bootstrap))
        })
    }
}

/// Kafka's name for an error code (`CLUSTER_AUTHORIZATION_FAILED`), `KAFKA_ERROR_<n>` when the
/// code is unknown.
pub fn kafka_error_name(code: i16) -> String {
    match code.err() {
        None => "NONE".to_owned(),
        Some(gatehouse_protocol::kafka_protocol::error::ResponseError::Unknown(n)) => {
            format!("KAFKA_ERROR_{n}")
        }
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

/// `NAME: message` for a Kafka error in a response (the message when the gateway sent one).
pub fn kafka_error(code: i16, message: Option<&StrBytes>) -> String {
    let name = kafka_error_name(code);
    match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
        Some(m) => format!("{name}: {m}"),
        None => name,
    }
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

// ---------------------------------------------------------------------------------------------
// `gatehouse user`
// ---------------------------------------------------------------------------------------------

/// `gatehouse user ...`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a SCRAM user, or set a new password for one. The password is read from stdin (one
    /// line) or from --new-password-env; only salt and salted password are sent.
    Add {
        /// The user name (the principal is User:NAME).
        name: String,
        /// Which SCRAM credentials to set.
        #[arg(long, value_enum, ignore_case = true, default_value_t = ScramChoice::Both)]
        mechanism: ScramChoice,
        /// PBKDF2 iterations (4096..=16384, Kafka's range).
        #[arg(long, default_value_t = DEFAULT_ITERATIONS, value_parser = clap::value_parser!(u32).range(i64::from(MIN_ITERATIONS)..=i64::from(MAX_ITERATIONS)))]
        iterations: u32,
        /// Read the new user's password from this environment variable instead of stdin.
        #[arg(long, value_name = "VAR")]
        new_password_env: Option<String>,
        /// `--output json`: {name, principal, mechanisms: [{mechanism, iterations}]}.
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Delete a user's SCRAM credentials (default: every mechanism the user has). ACLs that
    /// name the user are kept.
    Delete {
        /// The user name.
        name: String,
        /// Delete only this mechanism's credential (`both`: exactly both).
        #[arg(long, value_enum, ignore_case = true)]
        mechanism: Option<ScramChoice>,
        /// `--output json`: {name, deleted: [mechanism]}.
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// List SCRAM users: user, mechanism, iterations (all users, or the ones named).
    List {
        /// Only these users (an unknown one is an error, exit 1).
        names: Vec<String>,
        /// `--output json`: an array of {user, mechanism, iterations}.
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
}

/// SCRAM mechanisms a user command applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScramChoice {
    /// SCRAM-SHA-256 only.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512 only.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
    /// Both.
    #[value(name = "both")]
    Both,
}

impl ScramChoice {
    fn mechanisms(self) -> Vec<Mechanism> {
        match self {
            ScramChoice::ScramSha256 => vec![Mechanism::ScramSha256],
            ScramChoice::ScramSha512 => vec![Mechanism::ScramSha512],
            ScramChoice::Both => vec![Mechanism::ScramSha256, Mechanism::ScramSha512],
        }
    }
}

/// Runs one `user` command; returns the process exit code.
pub fn run(cmd: UserCommand) -> i32 {
    exit_code(execute(cmd))
}

async fn execute(cmd: UserCommand) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add {
            name,
            mechanism,
            iterations,
            new_password_env,
            out,
            gateway,
        } => {
            check_name(&name)?;
            let password = new_password(&name, new_password_env.as_deref())?;
            let gw = connect(&gateway).await?;
            let mechanisms = mechanism.mechanisms();
            add(
                &gw,
                &name,
                &mechanisms,
                iterations,
                &password,
                out.is_json(),
            )
            .await
        }
        UserCommand::Delete {
            name,
            mechanism,
            out,
            gateway,
        } => {
            check_name(&name)?;
            let gw = connect(&gateway).await?;
            let mechanisms = match mechanism {
                Some(m) => m.mechanisms(),
                None => match describe(&gw, std::slice::from_ref(&name)).await? {
                    (_, true) => return Err(Failure::Refused),
                    (rows, false) => rows.into_iter().map(|(_, m, _)| m).collect(),
                },
            };
            if mechanisms.is_empty() {
                eprintln!("error: user {name} has no SCRAM credentials");
                return Err(Failure::Refused);
            }
            delete(&gw, &name, &mechanisms, out.is_json()).await
        }
        UserCommand::List {
            names,
            out,
            gateway,
        } => {
            let gw = connect(&gateway).await?;
            let (rows, failed) = describe(&gw, &names).await?;
            if out.is_json() {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(u, m, it)| json!({"user": u, "mechanism": m.name(), "iterations": it}))
                    .collect();
                print_json(&serde_json::Value::Array(v));
            } else if !failed || !rows.is_empty() {
                let rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|(u, m, it)| vec![u.clone(), m.name().to_owned(), it.to_string()])
                    .collect();
                print_table(&["USER", "MECHANISM", "ITERATIONS"], &rows);
            }
            if failed {
                Err(Failure::Refused)
            } else {
                Ok(())
            }
        }
    }
}

fn check_name(name: &str) -> Result<(), Failure> {
    if name.is_empty() {
        return Err(Failure::Local(anyhow!("the user name must not be empty")));
    }
    Ok(())
}

/// The new user's password: from `env` when given, else one line of stdin.
fn new_password(user: &str, env: Option<&str>) -> Result<String, Failure> {
    let password = match env {
        Some(var) => std::env::var(var).map_err(|_| {
            anyhow!("the environment variable {var} (--new-password-env) is not set or not UTF-8")
        })?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("Password for {user} (one line; it is echoed, so prefer a pipe): ");
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("cannot read the new password from stdin")?;
            let trimmed = line.strip_suffix('\n').unwrap_or(&line);
            trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
        }
    };
    if password.is_empty() {
        return Err(Failure::Local(anyhow!(
            "no password for {user}: pipe one line to stdin (e.g. `printf '%s\\n' \"$PW\" | \
             gatehouse user add {user}`) or use --new-password-env VAR"
        )));
    }
    Ok(password)
}

/// `Hi(password, salt, iterations)` of RFC 5802: PBKDF2 with the mechanism's HMAC.
fn salted_password(mechanism: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    match mechanism {
        Mechanism::ScramSha256 => {
            let mut out = vec![0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
            out
        }
        _ => {
            let mut out = vec![0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut out);
            out
        }
    }
}

/// One AlterUserScramCredentials upsertion: a fresh random salt and the salted password
/// computed here, so the password itself never leaves (shared with the admin REST API).
pub fn scram_upsertion(
    user: &str,
    mechanism: Mechanism,
    iterations: u32,
    password: &str,
) -> ScramCredentialUpsertion {
    let mut salt = vec![0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let salted = salted_password(mechanism, password, &salt, iterations);
    ScramCredentialUpsertion::default()
        .with_name(s(user))
        .with_mechanism(mechanism.scram_code().unwrap_or(0))
        .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
        .with_salt(salt.into())
        .with_salted_password(salted.into())
}

async fn add(
    gw: &Gateway,
    user: &str,
    mechanisms: &[Mechanism],
    iterations: u32,
    password: &str,
    json: bool,
) -> Result<(), Failure> {
    let upsertions = mechanisms
        .iter()
        .map(|m| scram_upsertion(user, *m, iterations, password))
        .collect();
    let resp = gw
        .send(AlterUserScramCredentialsRequest::default().with_upsertions(upsertions))
        .await?;
    let results: Vec<(String, i16, Option<StrBytes>)> = resp
        .results
        .into_iter()
        .map(|r| (r.user.to_string(), r.error_code, r.error_message))
        .collect();
    let (done, failed) = report_alter(user, mechanisms, &results);
    if json {
        let set: Vec<_> = done
            .iter()
            .map(|m| json!({"mechanism": m.name(), "iterations": iterations}))
            .collect();
        print_json(&json!({"name": user, "principal": format!("User:{user}"), "mechanisms": set}));
    } else {
        for m in &done {
            println!("user {user}: {m} credential set ({iterations} iterations)");
        }
    }
    if failed {
        Err(Failure::Refused)
    } else {
        Ok(())
    }
}

async fn delete(
    gw: &Gateway,
    user: &str,
    mechanisms: &[Mechanism],
    json: bool,
) -> Result<(), Failure> {
    let deletions = mechanisms
        .iter()
        .map(|m| {
            ScramCredentialDeletion::default()
                .with_name(s(user))
                .with_mechanism(m.scram_code().unwrap_or(0))
        })
        .collect();
    let resp = gw
        .send(AlterUserScramCredentialsRequest::default().with_deletions(deletions))
        .await?;
    let results: Vec<(String, i16, Option<StrBytes>)> = resp
        .results
        .into_iter()
        .map(|r| (r.user.to_string(), r.error_code, r.error_message))
        .collect();
    let (done, failed) = report_alter(user, mechanisms, &results);
    if json {
        let deleted: Vec<&str> = done.iter().map(|m| m.name()).collect();
        print_json(&json!({"name": user, "deleted": deleted}));
    } else {
        for m in &done {
            println!("user {user}: {m} credential deleted");
        }
    }
    if failed {
        return Err(Failure::Refused);
    }
    let note = format!(
        "ACLs naming User:{user} are kept; remove them with `gatehouse acl remove --all-matching --principal User:{user}`."
    );
    // JSON output stays one document on stdout.
    if json {
        eprintln!("{note}");
    } else {
        println!("{note}");
    }
    Ok(())
}

/// The outcome of an AlterUserScramCredentials call: the mechanisms that succeeded, and
/// whether any failed (each failure is printed). The gateway answers one result per deletion
/// or upsertion; Kafka answers one per user; both are read correctly.
fn report_alter(
    user: &str,
    mechanisms: &[Mechanism],
    results: &[(String, i16, Option<StrBytes>)],
) -> (Vec<Mechanism>, bool) {
    let mut failed = false;
    let mut done = Vec::new();
    if results.len() == mechanisms.len() {
        for (m, (_, code, message)) in mechanisms.iter().zip(results) {
            if *code == 0 {
                done.push(*m);
            } else {
                failed = true;
                eprintln!(
                    "error: user {user} {m}: {}",
                    kafka_error(*code, message.as_ref())
                );
            }
        }
    } else {
        for (u, code, message) in results.iter().filter(|(_, c, _)| *c != 0) {
            failed = true;
            eprintln!("error: user {u}: {}", kafka_error(*code, message.as_ref()));
        }
        if !failed {
            done.extend_from_slice(mechanisms);
        }
    }
    (done, failed)
}

/// One row of `user list`: user, mechanism, iterations.
type UserRow = (String, Mechanism, i32);

/// DescribeUserScramCredentials: the rows found, sorted by user, and whether any named user
/// failed (each per-user error is printed). A top-level error is printed and is
/// [`Failure::Refused`].
async fn describe(gw: &Gateway, names: &[String]) -> Result<(Vec<UserRow>, bool), Failure> {
    let users = (!names.is_empty()).then(|| {
        names
            .iter()
            .map(|n| UserName::default().with_name(s(n)))
            .collect()
    });
    let resp: DescribeUserScramCredentialsResponse = gw
        .send(DescribeUserScramCredentialsRequest::default().with_users(users))
        .await?;
    if resp.error_code != 0 {
        eprintln!(
            "error: {}",
            kafka_error(resp.error_code, resp.error_message.as_ref())
        );
        return Err(Failure::Refused);
    }
    let mut rows: BTreeMap<(String, i8), (Mechanism, i32)> = BTreeMap::new();
    let mut failed = false;
    for r in resp.results {
        let user = r.user.to_string();
        if r.error_code != 0 {
            failed = true;
            eprintln!(
                "error: user {user}: {}",
                kafka_error(r.error_code, r.error_message.as_ref())
            );
            continue;
        }
        for c in r.credential_infos {
            match Mechanism::from_scram_code(c.mechanism) {
                Some(m) => {
                    rows.insert((user.clone(), c.mechanism), (m, c.iterations));
                }
                None => eprintln!(
                    "warning: user {user} has a credential of unknown SCRAM mechanism code {}",
                    c.mechanism
                ),
            }
        }
    }
    let rows = rows
        .into_iter()
        .map(|((u, _), (m, it))| (u, m, it))
        .collect();
    Ok((rows, failed))
}
