//! `gatehouse`: the binary that wires the crates together.
//!
//! Subcommands follow the command-line contract of DESIGN.md: `serve` runs every part that
//! exists (today: the bundled broker and the admin listener's `/health`), `broker` runs the
//! broker core alone for development and benchmarks. Flags of parts not built yet are accepted
//! and reported, so scripts written against the contract keep working as parts land.

mod acl_cli;
mod admin;
mod admin_cli;
mod audit_cli;
mod audit_service;
mod cluster_cli;
mod config;
mod doctor;
mod evidence;
mod gateway_service;
mod group_cli;
mod http_client;
mod key_cli;
mod output;
mod role_cli;
mod schema_cli;
mod topic_cli;
mod user_cli;

use std::net::SocketAddr;

/// Absurd capacity requests from protocol decoders are mapped, not allocated (ADR 0005).
#[global_allocator]
static ALLOCATOR: gatehouse_alloc_guard::Guard = gatehouse_alloc_guard::Guard;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Schema registry, Kafka security gateway and bundled broker core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything: bundled broker, (later) registry and gateway, admin API with /health.
    Serve(CommonArgs),
    /// Run the broker core alone: serves clients directly, without auth, on loopback.
    Broker(CommonArgs),
    /// Print the effective configuration as TOML and exit.
    Config(CommonArgs),
    /// The auditor's offline tools (verify, prove, consistency, query, export, archive) and
    /// the running server's trail through the admin API (status, events, evidence).
    #[command(subcommand)]
    Audit(audit_cli::AuditCommand),
    /// Evidence package for an audit period, cut from the verified audit trail (offline).
    Evidence(evidence::EvidenceArgs),
    /// Schema registry client for CI: register, check, get, list, delete; overview (admin API).
    #[command(subcommand)]
    Schema(schema_cli::SchemaCommand),
    /// SCRAM users on the gateway (Kafka protocol, plaintext SASL listener): add, delete, list.
    #[command(subcommand)]
    User(user_cli::UserCommand),
    /// ACLs on the gateway (Kafka protocol, plaintext SASL listener): add, remove, list; and
    /// explain a decision (admin API).
    #[command(subcommand)]
    Acl(acl_cli::AclCommand),
    /// Role bindings through the admin API: list, bind, unbind.
    #[command(subcommand)]
    Role(role_cli::RoleCommand),
    /// The cluster overview through the admin API: brokers, counts, listeners, health.
    Cluster(cluster_cli::ClusterArgs),
    /// Key-encryption keys through the admin API: list, status, create, rotate, retire, destroy.
    #[command(subcommand)]
    Key(key_cli::KeyCommand),
    /// Topics through the admin API: list, create, describe, delete, alter, messages.
    #[command(subcommand)]
    Topic(topic_cli::TopicCommand),
    /// Consumer groups through the admin API: list, describe (members, offsets, lag).
    #[command(subcommand)]
    Group(group_cli::GroupCommand),
    /// Check a running deployment: health, clock skew, TLS expiry, upstream, audit, disk.
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Every flag of the contract; each is also a config key and a `GATEHOUSE_<KEY>` variable.
#[derive(Args, Debug, Default)]
struct CommonArgs {
    /// Config file (TOML); see docs/config.md.
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    config: Option<PathBuf>,
    /// Where all state lives.
    #[arg(long, env = "GATEHOUSE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listener of the bundled broker (loopback only).
    #[arg(long, env = "GATEHOUSE_BROKER_LISTEN")]
    broker_listen: Option<SocketAddr>,
    /// Under serve: the bundled broker accepts loopback clients without the internal credential.
    #[arg(long, env = "GATEHOUSE_BROKER_OPEN")]
    broker_open: Option<Option<bool>>,
    /// durable: acks=all answered after the covering fsync; os: the page cache flushes.
    #[arg(long, env = "GATEHOUSE_LOG_FLUSH", value_parser = ["durable", "os"])]
    log_flush: Option<String>,
    /// Create unknown topics on first use (Kafka's auto.create.topics.enable).
    #[arg(long, env = "GATEHOUSE_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<Option<bool>>,
    /// Gateway TLS listener.
    #[arg(long, env = "GATEHOUSE_GATEWAY_LISTEN")]
    gateway_listen: Option<SocketAddr>,
    /// Gateway plaintext (SASL) listener; loopback only unless configured.
    #[arg(long, env = "GATEHOUSE_GATEWAY_PLAIN_LISTEN")]
    gateway_plain_listen: Option<SocketAddr>,
    /// Host name the gateway advertises to clients.
    #[arg(long, env = "GATEHOUSE_GATEWAY_ADVERTISED_HOST")]
    gateway_advertised_host: Option<String>,
    /// External clusters: upstream node i is served on PORT+i.
    #[arg(long, env = "GATEHOUSE_GATEWAY_NODE_PORT_BASE")]
    gateway_node_port_base: Option<u16>,
    /// Schema registry listener.
    #[arg(long, env = "GATEHOUSE_REGISTRY_LISTEN")]
    registry_listen: Option<SocketAddr>,
    /// Admin API, console, /metrics and /health.
    #[arg(long, env = "GATEHOUSE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Front an existing Kafka cluster instead of the bundled broker.
    #[arg(long, env = "GATEHOUSE_UPSTREAM_BOOTSTRAP")]
    upstream_bootstrap: Option<String>,
    /// OIDC issuer URL (SASL/OAUTHBEARER, REST Bearer).
    #[arg(long, env = "GATEHOUSE_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// Expected OIDC audience.
    #[arg(long, env = "GATEHOUSE_OIDC_AUDIENCE")]
    oidc_audience: Option<String>,
    /// Token claim that names the principal.
    #[arg(long, env = "GATEHOUSE_OIDC_PRINCIPAL_CLAIM")]
    oidc_principal_claim: Option<String>,
    /// Key management: local or aws-kms.
    #[arg(long, env = "GATEHOUSE_KMS", value_parser = ["local", "aws-kms"])]
    kms: Option<String>,
    /// KMS endpoint URL.
    #[arg(long, env = "GATEHOUSE_KMS_ENDPOINT")]
    kms_endpoint: Option<String>,
    /// KMS key id.
    #[arg(long, env = "GATEHOUSE_KMS_KEY_ID")]
    kms_key_id: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

impl CommonArgs {
    /// Flags and environment variables as a TOML overlay.
    fn overrides(&self) -> toml::Table {
        let mut t = toml::Table::new();
        let mut put = |k: &str, v: Option<toml::Value>| {
            if let Some(v) = v {
                t.insert(k.to_owned(), v);
            }
        };
        let s = |v: &Option<String>| v.clone().map(toml::Value::String);
        let addr = |v: &Option<SocketAddr>| v.map(|a| toml::Value::String(a.to_string()));
        let flag = |v: &Option<Option<bool>>| v.map(|b| toml::Value::Boolean(b.unwrap_or(true)));
        put(
            "data_dir",
            self.data_dir
                .as_ref()
                .map(|p| toml::Value::String(p.display().to_string())),
        );
        put("broker_listen", addr(&self.broker_listen));
        put("broker_open", flag(&self.broker_open));
        put("log_flush", s(&self.log_flush));
        put("auto_create_topics", flag(&self.auto_create_topics));
        put("gateway_listen", addr(&self.gateway_listen));
        put("gateway_plain_listen", addr(&self.gateway_plain_listen));
        put("gateway_advertised_host", s(&self.gateway_advertised_host));
        put(
            "gateway_node_port_base",
            self.gateway_node_port_base
                .map(|p| toml::Value::Integer(i64::from(p))),
        );
        put("registry_listen", addr(&self.registry_listen));
        put("admin_listen", addr(&self.admin_listen));
        put("upstream_bootstrap", s(&self.upstream_bootstrap));
        put("oidc_issuer", s(&self.oidc_issuer));
        put("oidc_audience", s(&self.oidc_audience));
        put("oidc_principal_claim", s(&self.oidc_principal_claim));
        put("kms", s(&self.kms));
        put("kms_endpoint", s(&self.kms_endpoint));
        put("kms_key_id", s(&self.kms_key_id));
        put("log_format", s(&self.log_format));
        t
    }

    fn load(&self) -> Result<Config> {
        Config::load(self.config.as_deref(), self.overrides())
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Notes, once at start-up, the flags of parts that are not built yet.
fn report_unbuilt(c: &Config, serve: bool) {
    let mut pending = Vec::new();
    if c.kms_endpoint.is_some() || c.kms_key_id.is_some() || c.kms != config::Kms::Local {
        pending.push("--kms* (key vault: issue 5)");
    }
    if !serve && (c.upstream_bootstrap.is_some() || c.oidc_issuer.is_some()) {
        pending.push("--upstream-bootstrap / --oidc-* (used by `serve` only)");
    }
    for p in pending {
        tracing::warn!(
            flag = p,
            "Accepted, but the part it configures is not built yet; it has no effect."
        );
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `host:port` for the registry's URL: the advertised host (which the certificate covers)
/// and the bound port.
fn registry_host_port(c: &Config, bound: SocketAddr) -> String {
    let host = gateway_service::advertised_host(c);
    if host.contains(':') {
        format!("[{host}]:{}", bound.port())
    } else {
        format!("{host}:{}", bound.port())
    }
}

/// `[registry]`: the writer election among registry nodes sharing the Kafka cluster; the
/// election is signed with the master-key-derived internal key, and forwarding trusts the
/// gateway's CA plus `registry.forward_ca`.
fn registry_cluster(
    c: &Config,
    ca: PathBuf,
    audit: Option<&audit_service::AuditService>,
) -> Result<gatehouse_registry::ClusterConfig> {
    let r = &c.registry;
    if r.session_timeout_ms < 3000 {
        anyhow::bail!(
            "registry.session_timeout_ms = {} is too short: the writer's lease keeps 2000 ms free, so it must be at least 3000",
            r.session_timeout_ms
        );
    }
    let advertised_url = if r.advertised_url.is_empty() {
        format!("https://{}", registry_host_port(c, c.registry_listen))
    } else {
        r.advertised_url.trim_end_matches('/').to_string()
    };
    let session = std::time::Duration::from_millis(r.session_timeout_ms);
    let mut election = gatehouse_registry::kafka::ElectionConfig::new(advertised_url);
    election.group_id = r.group_id.clone();
    election.eligible = r.leader_eligibility;
    election.mac_key = audit.map(|a| a.internal_mac_key());
    election.session_timeout = session;
    election.heartbeat_interval = (session / 10).clamp(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(3),
    );
    let mut forward_ca = vec![ca];
    if !r.forward_ca.is_empty() {
        forward_ca.push(PathBuf::from(&r.forward_ca));
    }
    Ok(gatehouse_registry::ClusterConfig {
        election,
        forward_ca,
        store: gatehouse_registry::StoreOptions::with_index(c.data_dir.join("registry-index")),
    })
}

async fn run_broker(c: Config, serve: bool) -> Result<()> {
    if !c.broker_listen.ip().is_loopback() {
        anyhow::bail!(
            "--broker-listen {} is not a loopback address: the bundled broker serves loopback only (clients reach it through the gateway)",
            c.broker_listen
        );
    }
    if serve && c.broker_open {
        tracing::warn!(
            "--broker-open: the bundled broker accepts loopback clients without the internal credential (benchmarks only)."
        );
    }
    report_unbuilt(&c, serve);
    // The audit trail opens first: a wrong master key stops start-up before anything serves.
    let audit = if serve {
        Some(
            audit_service::open(&c.data_dir)
                .await
                .context("the audit trail could not start")?,
        )
    } else {
        None
    };
    let external = serve && c.upstream_bootstrap.is_some();
    // Under serve the bundled broker requires a per-start internal credential (unless
    // --broker-open), so only the gateway and the internal clients can use it.
    let internal =
        (serve && !c.broker_open && !external).then(gateway_service::internal_credential);
    let broker = if external {
        None
    } else {
        let mut bc = c.broker_config(c.broker_listen);
        bc.internal_credential = internal.as_ref().map(|(b, _)| b.clone());
        Some(
            gatehouse_broker::Broker::start(bc)
                .await
                .context("the broker could not start")?,
        )
    };
    let mut parts = vec![];
    if broker.is_some() {
        parts.push("broker");
    }
    if serve {
        parts.push("registry");
        parts.push("gateway");
    }
    let admin = admin::start(c.admin_listen, admin::Health::new(parts))
        .await
        .context("the admin listener could not start")?;
    if let Some(a) = &audit {
        admin.attach_audit_dir(c.data_dir.join("audit"));
        admin.attach_evidence(admin::EvidenceSource {
            log: a.log(),
            configuration: evidence::configuration_of(
                &c,
                None,
                "the configuration this `serve` runs with (embedded defaults, config file, environment and flags)",
            ),
        });
    }
    // The audit trail's self-check (PCI DSS 10.3.4, 10.7.2): incremental re-verification
    // and liveness every `[audit] self_check_interval_ms`, off the append path.
    let self_check = match &audit {
        Some(a) if c.audit.self_check_interval_ms > 0 => {
            use gatehouse_compliance::audit::selfcheck;
            let interval = std::time::Duration::from_millis(c.audit.self_check_interval_ms);
            let metrics = std::sync::Arc::new(selfcheck::SelfCheckMetrics::default());
            admin.attach_audit_self_check(metrics.clone());
            // A checkpoint is signed at least every 60 s while events wait.
            let stale_after = (interval * 3).max(std::time::Duration::from_secs(180));
            let checker = selfcheck::SelfChecker::new(
                c.data_dir.join("audit"),
                None,
                60,
                stale_after,
                metrics,
            );
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(selfcheck::run(
                a.log(),
                checker,
                a.node_id().to_owned(),
                interval,
                stopped,
            ));
            Some((stop, task))
        }
        _ => None,
    };
    let upstream = match &broker {
        Some(b) => {
            admin.health.set_ready("broker");
            let credential = internal.as_ref().map(|(_, s)| s.clone());
            match credential {
                Some(cred) => gateway_service::upstream_config(&c, Some((b.local_addr(), cred)))?,
                None => gatehouse_gateway::UpstreamConfig::new(vec![b.local_addr().to_string()]),
            }
        }
        None => gateway_service::upstream_config(&c, None)?,
    };
    // Under serve the policy (certificates, users, ACLs, admin user, OIDC) comes first: the
    // registry authenticates and authorizes with it and serves HTTPS with the gateway's
    // certificate; the gateway then validates records against the registry's store.
    let policy = match &audit {
        Some(a) if serve => {
            Some(gateway_service::start_policy(&c, &upstream, a.internal_mac_key()).await?)
        }
        _ => None,
    };
    // `[audit] mirror_topic`: checkpoints and events shipped to `_gatehouse_audit` through
    // the broker with the internal credential, read from disk (never on the append path).
    let mirror = match &audit {
        Some(a) if serve && c.audit.mirror_topic => {
            use gatehouse_compliance::audit::mirror;
            let client = gatehouse_protocol::client::Client::connect_with(
                upstream.client_config(),
                upstream.connector(),
            )
            .await
            .context("the audit mirror cannot reach the broker")?;
            let metrics = std::sync::Arc::new(mirror::MirrorMetrics::default());
            admin.attach_audit_mirror(metrics.clone());
            let cfg = || mirror::MirrorConfig {
                dir: c.data_dir.join("audit"),
                cursor_file: c.data_dir.join("audit-mirror.cursor"),
                mac_key: a.internal_mac_key(),
                interval: std::time::Duration::from_millis(1000),
            };
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(mirror::run(client.clone(), cfg(), metrics.clone(), stopped));
            Some((stop, task, client, cfg(), metrics))
        }
        _ => None,
    };
    let registry = match &policy {
        Some(p) => {
            let rcfg = gatehouse_registry::RegistryServerConfig {
                listen: c.registry_listen,
                bootstrap: upstream.bootstrap.join(","),
                sasl: upstream.sasl.clone(),
                tls: Some(p.tls.config()),
                auth: Some(p.registry_auth()),
            };
            let cluster = registry_cluster(&c, p.ca.clone(), audit.as_ref())?;
            let r = gatehouse_registry::server::start_with_cluster(
                rcfg,
                audit.as_ref().map(|a| a.sink()),
                upstream.connector(),
                cluster,
            )
            .await
            .context("the schema registry could not start")?;
            admin.health.set_ready("registry");
            Some(r)
        }
        None => None,
    };
    let gateway = match (&audit, policy) {
        (Some(a), Some(policy)) => {
            // The key API (issue 7) shares the gateway's vault, identities and ACLs.
            admin.enable_keys(admin::KeyApi {
                envelope: policy.envelope(),
                roles: Some(policy.store_writer()),
                authenticator: policy.authenticator.clone(),
                authorizer: policy.authorizer.clone(),
                audit: Some(a.sink()),
            });
            let tokens = policy.tokens.clone();
            let validator = registry.as_ref().map(|r| {
                let store: std::sync::Arc<dyn gatehouse_registry::api::SchemaStore> =
                    r.store().clone();
                std::sync::Arc::new(
                    gatehouse_registry::validate::Validator::new(store)
                        .with_guid_lookup(r.store().clone()),
                )
            });
            let g = gateway_service::start_gateway(
                &c,
                policy,
                upstream.clone(),
                Some(a.sink()),
                validator,
            )
            .await?;
            // The Kafka-facing admin REST API acts as its callers through the plain listener.
            if let Some(plain) = g.gateway.addr(gatehouse_gateway::ListenerKind::Plain) {
                let registry_url = registry
                    .as_ref()
                    .map(|r| format!("https://{}", registry_host_port(&c, r.local_addr())));
                let mut listeners = vec![("gateway_plain".to_string(), plain.to_string())];
                if let Some(tls) = g.gateway.addr(gatehouse_gateway::ListenerKind::Tls) {
                    listeners.push(("gateway_tls".to_string(), tls.to_string()));
                }
                listeners.push(("admin".to_string(), admin.local_addr.to_string()));
                if let Some(u) = &registry_url {
                    listeners.push(("registry".to_string(), u.clone()));
                }
                admin.enable_rest(admin::RestApi {
                    gateway_plain: plain,
                    proxy_protocol: c.gateway.proxy_protocol,
                    tokens,
                    registry_url,
                    registry_ca: Some(g.ca.clone()),
                    listeners,
                    console_sso: admin::ConsoleSso::from_config(&c)?,
                });
            }
            admin.health.set_ready("gateway");
            Some(g)
        }
        _ => None,
    };
    println!("Gatehouse is up.");
    if let Some(b) = &broker {
        let how = if internal.is_some() {
            " (loopback, internal credential only)"
        } else {
            ""
        };
        println!("  broker (Kafka protocol): {}{how}", b.local_addr());
    }
    if let Some(g) = &gateway {
        if let Some(a) = g.gateway.addr(gatehouse_gateway::ListenerKind::Tls) {
            println!("  gateway (TLS + SASL):    {a}");
        }
        if let Some(a) = g.gateway.addr(gatehouse_gateway::ListenerKind::Plain) {
            println!("  gateway (plain + SASL):  {a}");
        }
        println!("  CA certificate:          {}", g.ca.display());
    }
    if let Some(r) = &registry {
        println!(
            "  schema registry (REST):  https://{}",
            registry_host_port(&c, r.local_addr())
        );
    }
    println!(
        "  health:                  http://{}/health",
        admin.local_addr
    );
    println!(
        "  metrics (Prometheus):    http://{}/metrics",
        admin.local_addr
    );
    if gateway.is_some() {
        println!(
            "  admin API (OpenAPI):     http://{}/openapi.json",
            admin.local_addr
        );
    }
    println!("  data directory:          {}", c.data_dir.display());
    match &gateway {
        Some(g) => {
            if let Some(p) = &g.generated_admin_password {
                println!(
                    "The admin user was created with this password (shown once; set {} to choose it):",
                    gateway_service::ADMIN_PASSWORD_ENV
                );
                println!("  {p}");
            }
            let host = gateway_service::advertised_host(&c);
            let port = c.gateway_listen.port();
            let ca = g.ca.display();
            println!(
                "Try it (user admin, the password above or ${}):",
                gateway_service::ADMIN_PASSWORD_ENV
            );
            println!(
                "  kcat -b {host}:{port} -X security.protocol=SASL_SSL -X ssl.ca.location={ca} \\\n       -X sasl.mechanisms=SCRAM-SHA-256 -X sasl.username=admin -X sasl.password=\"${}\" -L",
                gateway_service::ADMIN_PASSWORD_ENV
            );
            println!(
                "  python3 -c \"import os; from confluent_kafka import Producer; p=Producer({{'bootstrap.servers':'{host}:{port}','security.protocol':'SASL_SSL','ssl.ca.location':'{ca}','sasl.mechanisms':'SCRAM-SHA-256','sasl.username':'admin','sasl.password':os.environ['{}']}}); p.produce('demo', b'hello'); p.flush()\"",
                gateway_service::ADMIN_PASSWORD_ENV
            );
        }
        None => {
            if let Some(b) = &broker {
                let addr = b.local_addr();
                println!("Try it:");
                println!("  kcat -b {addr} -L");
                println!(
                    "  python3 -c \"from confluent_kafka import Producer; p=Producer({{'bootstrap.servers':'{addr}'}}); p.produce('demo', b'hello'); p.flush()\""
                );
            }
        }
    }
    println!(
        "  (create topics first, e.g. with confluent_kafka.admin.AdminClient; auto-create is off unless --auto-create-topics)"
    );
    if let (Some(r), Some(g)) = (&registry, &gateway) {
        println!(
            "  curl --cacert {} -u admin:\"${}\" https://{}/subjects",
            g.ca.display(),
            gateway_service::ADMIN_PASSWORD_ENV,
            registry_host_port(&c, r.local_addr())
        );
    }
    let reload = gateway.as_ref().map(|g| g.tls.clone());
    // The admin listener holds the gateway meanwhile, for /metrics.
    let drain = gateway.map(|g| {
        admin.attach_gateway(g.gateway);
        g.drain
    });
    wait_for_stop(reload).await;
    tracing::info!("Shutting down.");
    admin.health.set_stopping();
    if let (Some(gw), Some(drain)) = (admin.take_gateway(), drain) {
        gw.shutdown(drain).await;
    }
    if let Some(r) = registry
        && let Err(e) = r.shutdown().await
    {
        tracing::warn!(error = %e, "The registry did not stop cleanly.");
    }
    if let Some((stop, task)) = self_check {
        let _ = stop.send(true);
        let _ = task.await;
    }
    let mut audit = audit;
    if let Some((stop, task, client, cfg, metrics)) = mirror {
        // Close the trail while the broker still runs, so the final checkpoint leaves too.
        let _ = stop.send(true);
        let _ = task.await;
        if let Some(a) = audit.take()
            && let Err(e) = a.close().await
        {
            tracing::warn!(error = %format!("{e:#}"), "The audit trail did not close cleanly.");
        }
        gatehouse_compliance::audit::mirror::flush(&client, &cfg, &metrics).await;
    }
    if let Some(b) = broker {
        b.shutdown().await;
    }
    if let Some(a) = audit
        && let Err(e) = a.close().await
    {
        tracing::warn!(error = %format!("{e:#}"), "The audit trail did not close cleanly.");
    }
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C; SIGHUP reloads the gateway's certificate meanwhile.
async fn wait_for_stop(tls: Option<std::sync::Arc<gatehouse_gateway::tls::TlsServer>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            let stop = shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = hup.recv() => match &tls {
                        Some(t) => match t.reload() {
                            Ok(()) => tracing::info!("SIGHUP: the gateway certificate was reloaded."),
                            Err(e) => tracing::error!(error = %e, "SIGHUP: the new certificate could not be loaded; the old one stays."),
                        },
                        None => tracing::info!("SIGHUP: nothing to reload."),
                    },
                }
            }
        }
    }
    let _ = tls;
    shutdown_signal().await;
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (args, which) = match cli.command {
        Command::Serve(ref a) => (a, "serve"),
        Command::Broker(ref a) => (a, "broker"),
        Command::Config(ref a) => (a, "config"),
        Command::Schema(cmd) => std::process::exit(schema_cli::run(cmd)?),
        Command::User(cmd) => std::process::exit(user_cli::run(cmd)),
        Command::Acl(cmd) => std::process::exit(acl_cli::run(cmd)),
        Command::Role(cmd) => std::process::exit(role_cli::run(cmd)),
        Command::Cluster(args) => std::process::exit(cluster_cli::run(args)),
        Command::Key(cmd) => std::process::exit(key_cli::run(cmd)),
        Command::Topic(cmd) => std::process::exit(topic_cli::run(cmd)),
        Command::Group(cmd) => std::process::exit(group_cli::run(cmd)),
        Command::Doctor(args) => std::process::exit(doctor::run(args)),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "gatehouse", &mut std::io::stdout());
            return Ok(());
        }
        Command::Evidence(args) => {
            if let Err(e) = evidence::run(args) {
                eprintln!("{e:#}");
                std::process::exit(1);
            }
            return Ok(());
        }
        Command::Audit(cmd) => std::process::exit(audit_cli::run(cmd)),
    };
    let config = args.load()?;
    if which == "config" {
        print!(
            "{}",
            toml::to_string_pretty(&config).context("cannot print config")?
        );
        return Ok(());
    }
    init_logging(config.log_format);
    // Both ring and aws-lc-rs are linked; rustls needs the process default chosen once.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_broker(config, which == "serve"))
}
