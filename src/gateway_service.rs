//! The gateway under `gatehouse serve`: certificates, users and ACLs, the admin user, the
//! SASL mechanisms (OIDC when configured) — [`start_policy`], shared with the schema registry,
//! which serves HTTPS with the same certificate and checks the same identities and ACLs — and
//! the gateway itself in front of the bundled broker or an external cluster ([`start_gateway`]).
//!
//! First start creates `<data-dir>/tls/ca.pem` (the CA clients trust) and the server
//! certificate (unless `gateway.tls_cert` names one), and the `admin` super user whose password
//! is `GATEHOUSE_ADMIN_PASSWORD` when set, else generated and printed once. Users and ACLs live
//! in `_gatehouse_users` / `_gatehouse_acls` on the upstream, each record MACed under a key
//! derived from the master key.
//!
//! In front of an external cluster, `gateway.upstream_tls` makes every connection to it TLS
//! (the gateway's per-client connections and the internal clients alike): the brokers'
//! certificates must chain to `gateway.upstream_tls_ca` (else the system roots), and
//! `gateway.upstream_tls_cert` / `upstream_tls_key` present a client certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gatehouse_gateway::tls::{TlsServer, TlsSettings, ensure_certificates};
use gatehouse_gateway::{Gateway, GatewayConfig, GatewayDeps, UpstreamConfig};
use gatehouse_policy::{
    Authenticator, AuthenticatorConfig, Authorizer, Mechanism, OidcConfig, OidcValidator,
    PolicyStore, Principal, PrincipalMapper, ScramCredential, TokenValidator, UserStore,
};
use gatehouse_protocol::client::{Client, SaslCredentials, TlsConnector};
use gatehouse_registry::api::AuditSink;

use crate::config::Config;

/// The environment variable that sets the `admin` user's password.
pub const ADMIN_PASSWORD_ENV: &str = "GATEHOUSE_ADMIN_PASSWORD";
/// The environment variable with the password of the gateway's upstream SASL user.
pub const UPSTREAM_PASSWORD_ENV: &str = "GATEHOUSE_UPSTREAM_PASSWORD";

/// A running gateway and what `serve` prints about it.
pub struct RunningGateway {
    pub gateway: Gateway,
    pub tls: Arc<TlsServer>,
    pub ca: PathBuf,
    /// Set when this start created the admin user with a generated password.
    pub generated_admin_password: Option<String>,
    pub drain: Duration,
}

/// The advertised host: the configured one, else the listen host, else `localhost`.
pub fn advertised_host(c: &Config) -> String {
    if let Some(h) = &c.gateway_advertised_host {
        return h.clone();
    }
    let ip = c.gateway_listen.ip();
    if ip.is_unspecified() {
        "localhost".to_string()
    } else {
        ip.to_string()
    }
}

fn parse_mechanism(name: &str) -> Result<Mechanism> {
    Mechanism::parse(name).with_context(|| format!("unknown SASL mechanism {name:?}"))
}

fn upstream_sasl(c: &Config) -> Result<Option<SaslCredentials>> {
    let g = &c.gateway;
    if g.upstream_sasl_mechanism.is_empty() {
        return Ok(None);
    }
    let mechanism = match g.upstream_sasl_mechanism.as_str() {
        "PLAIN" => gatehouse_protocol::client::SaslMechanism::Plain,
        "SCRAM-SHA-256" => gatehouse_protocol::client::SaslMechanism::ScramSha256,
        "SCRAM-SHA-512" => gatehouse_protocol::client::SaslMechanism::ScramSha512,
        other => bail!(
            "gateway.upstream_sasl_mechanism {other:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
        ),
    };
    let password = std::env::var(UPSTREAM_PASSWORD_ENV).with_context(|| {
        format!("gateway.upstream_sasl_mechanism is set but {UPSTREAM_PASSWORD_ENV} is not")
    })?;
    Ok(Some(SaslCredentials::new(
        mechanism,
        g.upstream_username.clone(),
        password,
    )))
}

/// The TLS connector for an external upstream (`gateway.upstream_tls*`), or `None`.
fn upstream_tls(c: &Config) -> Result<Option<TlsConnector>> {
    let g = &c.gateway;
    let any_file = [
        &g.upstream_tls_ca,
        &g.upstream_tls_cert,
        &g.upstream_tls_key,
    ]
    .iter()
    .any(|v| !v.is_empty());
    if !g.upstream_tls {
        if any_file || !g.upstream_tls_server_name.is_empty() {
            bail!("gateway.upstream_tls_* is set but gateway.upstream_tls is false");
        }
        return Ok(None);
    }
    let client_cert = match (g.upstream_tls_cert.as_str(), g.upstream_tls_key.as_str()) {
        ("", "") => None,
        ("", _) | (_, "") => {
            bail!("gateway.upstream_tls_cert and gateway.upstream_tls_key go together")
        }
        (cert, key) => Some((Path::new(cert), Path::new(key))),
    };
    let config = if g.upstream_tls_ca.is_empty() {
        system_roots_client_config(client_cert)?
    } else {
        gatehouse_gateway::tls::client_config(Path::new(&g.upstream_tls_ca), client_cert)
            .context("invalid gateway.upstream_tls_ca / upstream_tls_cert / upstream_tls_key")?
    };
    Ok(Some(
        TlsConnector::new(config).with_server_name(g.upstream_tls_server_name.clone()),
    ))
}

/// TLS 1.3/1.2 trusting the system's root certificates (aws-lc-rs, passed explicitly).
fn system_roots_client_config(
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        bail!(
            "gateway.upstream_tls: no system root certificates found; set gateway.upstream_tls_ca"
        );
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS configuration")?
        .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("gateway.upstream_tls_cert {}", cert.display()))?;
            if chain.is_empty() {
                bail!(
                    "gateway.upstream_tls_cert {}: no certificate found",
                    cert.display()
                );
            }
            // The PEM parser's messages may quote file content: not passed on for keys.
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|_| {
                anyhow::anyhow!(
                    "gateway.upstream_tls_key {}: no readable PEM private key",
                    key.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .context("gateway.upstream_tls_cert / upstream_tls_key")?
        }
    };
    Ok(Arc::new(config))
}

/// The upstream the gateway and the other internal clients use.
pub fn upstream_config(
    c: &Config,
    bundled: Option<(SocketAddr, SaslCredentials)>,
) -> Result<UpstreamConfig> {
    match bundled {
        Some((addr, credential)) => {
            if c.gateway.upstream_tls {
                tracing::warn!(
                    "gateway.upstream_tls applies to --upstream-bootstrap only; the bundled broker is reached over loopback without TLS."
                );
            }
            let mut u = UpstreamConfig::new(vec![addr.to_string()]);
            u.sasl = Some(credential);
            Ok(u)
        }
        None => {
            let list = c
                .upstream_bootstrap
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>();
            if list.is_empty() {
                bail!("--upstream-bootstrap is empty");
            }
            let mut u = UpstreamConfig::new(list);
            u.sasl = upstream_sasl(c)?;
            u.tls = upstream_tls(c)?;
            Ok(u)
        }
    }
}

fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A fresh random internal credential for the bundled broker (per process start: the broker
/// and every internal client live in this process, so it is never written anywhere).
pub fn internal_credential() -> (gatehouse_broker::InternalCredential, SaslCredentials) {
    let password = random_password();
    (
        gatehouse_broker::InternalCredential::new("gatehouse-internal", password.clone()),
        SaslCredentials::plain("gatehouse-internal", password),
    )
}

/// Creates or updates the `admin` user; returns the generated password if one was made.
async fn ensure_admin(store: &PolicyStore, users: &UserStore) -> Result<Option<String>> {
    let from_env = std::env::var(ADMIN_PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty());
    let exists = users.exists("admin");
    let (password, generated) = match (&from_env, exists) {
        (Some(p), true) => {
            let current = users.get("admin", Mechanism::ScramSha512);
            if current.is_some_and(|c| c.verify_password(p)) {
                return Ok(None);
            }
            tracing::info!("The admin password was changed from {ADMIN_PASSWORD_ENV}.");
            (p.clone(), false)
        }
        (Some(p), false) => (p.clone(), false),
        (None, true) => return Ok(None),
        (None, false) => (random_password(), true),
    };
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
        let credential = ScramCredential::from_password(
            mechanism,
            &password,
            gatehouse_policy::DEFAULT_ITERATIONS,
        )
        .context("cannot derive the admin credential")?;
        store
            .put_user("admin", credential)
            .await
            .context("cannot store the admin user")?;
    }
    Ok(generated.then_some(password))
}

/// Everything the gateway and the registry share: certificates, users, ACLs, the admin user,
/// the SASL mechanisms and the token validator. Built by [`start_policy`] before the registry
/// starts, then handed to [`start_gateway`].
pub struct Policy {
    pub tls: Arc<TlsServer>,
    pub ca: PathBuf,
    mapper: Option<PrincipalMapper>,
    pub users: UserStore,
    pub authorizer: Authorizer,
    pub authenticator: Authenticator,
    /// The OIDC validator (REST `Authorization: Bearer`, SASL/OAUTHBEARER) when configured.
    pub tokens: Option<Arc<dyn TokenValidator>>,
    store: PolicyStore,
    governance: gatehouse_gateway::governance::Governance,
    /// Set when this start created the admin user with a generated password.
    pub generated_admin_password: Option<String>,
    /// Key of the gateway's PAN-guard hashes (derived from the internal MAC key; replace it
    /// before [`start_gateway`] to derive it otherwise).
    pub pan_key: [u8; 32],
    /// Envelope encryption over the key vault (`_gatehouse_keys`).
    envelope: gatehouse_compliance::Envelope,
    /// Where key events are audited, set once the audit sink is known.
    key_audit: Arc<std::sync::OnceLock<Arc<dyn AuditSink>>>,
}

/// Opens the key vault: KEKs in the configured KMS (`local`: sealed by a key derived from the
/// master key; `aws-kms`: any endpoint speaking the AWS KMS API), state in `_gatehouse_keys`,
/// every key event sent to the audit trail.
async fn open_vault(
    c: &Config,
    client: Client,
    mac_key: [u8; 32],
    key_audit: Arc<std::sync::OnceLock<Arc<dyn AuditSink>>>,
) -> Result<gatehouse_compliance::Envelope> {
    use gatehouse_compliance::{AuditEvent, EventType, KeyEventKind, Kms};
    let kms: Arc<dyn Kms> = match c.kms {
        crate::config::Kms::Local => Arc::new(gatehouse_compliance::LocalKms::new(
            gatehouse_compliance::DataKey::from_bytes(derive_key(
                &mac_key,
                b"gatehouse/kek-wrap/v1",
            )),
        )),
        crate::config::Kms::AwsKms => {
            let config = gatehouse_compliance::AwsKmsConfig::from_env(c.kms_endpoint.clone())
                .context("--kms aws-kms: AWS credentials and region come from AWS_* variables")?;
            Arc::new(gatehouse_compliance::AwsKms::new(config).context("AWS KMS client")?)
        }
    };
    let events: gatehouse_compliance::KeyEvents = Arc::new(move |e| {
        let Some(sink) = key_audit.get().cloned() else {
            return;
        };
        let operation = match e.kind {
            KeyEventKind::KekCreated => "Create",
            KeyEventKind::KekRotated => "Rotate",
            KeyEventKind::DekCreated => "CreateDataKey",
            KeyEventKind::KekRetired => "Retire",
            KeyEventKind::KekDestroyed => "Destroy",
        };
        let mut b = AuditEvent::builder(EventType::Key)
            .service("gateway")
            .method(format!("key.{operation}"))
            .principal("System:gatehouse")
            .resource("Kek", e.kek_name.clone())
            .operation(operation)
            .granted(true)
            .attribute("kekId", e.kek_id.as_str().to_string());
        if let Some(v) = e.kek_version {
            b = b.attribute("kekVersion", v.to_string());
        }
        if let Some(d) = e.dek_id {
            b = b.attribute(
                "dekId",
                d.iter().map(|x| format!("{x:02x}")).collect::<String>(),
            );
        }
        if let Ok(event) = b.build() {
            tokio::spawn(async move {
                if let Err(err) = sink.record(event).await {
                    tracing::error!(error = %err, "A key event could not be audited.");
                }
            });
        }
    });
    let store = gatehouse_compliance::KeyStore::open(
        client,
        kms,
        mac_key,
        gatehouse_compliance::KeyStoreConfig {
            events: Some(events),
            ..Default::default()
        },
    )
    .await
    .context("cannot open the key vault (_gatehouse_keys)")?;
    Ok(gatehouse_compliance::Envelope::new(Arc::new(store)))
}

/// SHA-256(label ‖ 0 ‖ key): a key for one purpose derived from another.
fn derive_key(key: &[u8; 32], label: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(label);
    h.update([0u8]);
    h.update(key);
    h.finalize().into()
}

impl Policy {
    /// A handle on the durable users/ACLs/roles store (for the admin API).
    pub fn store_writer(&self) -> PolicyStore {
        self.store.writer()
    }

    /// What the registry authenticates and authorizes with (the gateway's identities and ACLs).
    pub fn registry_auth(&self) -> gatehouse_registry::api::RegistryAuth {
        gatehouse_registry::api::RegistryAuth {
            authenticator: self.authenticator.clone(),
            authorizer: self.authorizer.clone(),
            tokens: self.tokens.clone(),
        }
    }

    /// The key vault (cheap clone; shares the key store with the gateway), for the admin API.
    pub fn envelope(&self) -> gatehouse_compliance::Envelope {
        self.envelope.clone()
    }
}

/// Loads or creates the certificates, opens the policy topics (users, ACLs, governance),
/// ensures the admin user and builds the authenticator (with OIDC when configured).
pub async fn start_policy(
    c: &Config,
    upstream: &UpstreamConfig,
    mac_key: [u8; 32],
) -> Result<Policy> {
    let g = &c.gateway;
    let host = advertised_host(c);
    let tls_dir = c.data_dir.join("tls");
    let (cert, key, ca) = if g.tls_cert.is_empty() {
        let paths = ensure_certificates(&tls_dir, std::slice::from_ref(&host))
            .with_context(|| format!("cannot create the certificates in {}", tls_dir.display()))?;
        (paths.server_cert, paths.server_key, paths.ca_cert)
    } else {
        if g.tls_key.is_empty() {
            bail!("gateway.tls_cert is set but gateway.tls_key is not");
        }
        (
            PathBuf::from(&g.tls_cert),
            PathBuf::from(&g.tls_key),
            tls_dir.join("ca.pem"),
        )
    };
    if g.require_client_cert && g.client_ca.is_empty() {
        bail!("gateway.require_client_cert needs gateway.client_ca");
    }
    let tls = Arc::new(
        TlsServer::new(TlsSettings {
            cert,
            key,
            client_ca: (!g.client_ca.is_empty()).then(|| PathBuf::from(&g.client_ca)),
            require_client_cert: g.require_client_cert,
        })
        .context("cannot load the gateway's TLS certificate")?,
    );
    let mapper = PrincipalMapper::parse(&g.principal_mapping_rules)
        .context("invalid gateway.principal_mapping_rules")?;

    let users = UserStore::new();
    let super_users = g
        .super_users
        .iter()
        .map(|s| {
            Principal::parse(s)
                .with_context(|| format!("gateway.super_users: {s:?} is not Type:name"))
        })
        .collect::<Result<Vec<_>>>()?;
    let authorizer = Authorizer::new(super_users).context("cannot build the authorizer")?;
    let client = Client::connect_with(upstream.client_config(), upstream.connector())
        .await
        .context("the gateway cannot reach its upstream for the policy topics")?;
    let governance = gatehouse_gateway::governance::Governance::open(client.clone(), mac_key)
        .await
        .context("cannot open _gatehouse_topics")?;
    let key_audit = Arc::new(std::sync::OnceLock::new());
    let envelope = open_vault(c, client.clone(), mac_key, key_audit.clone()).await?;
    let store = PolicyStore::open(client, users.clone(), authorizer.clone(), mac_key)
        .await
        .context("cannot open _gatehouse_users / _gatehouse_acls")?;
    let generated_admin_password = ensure_admin(&store, &users).await?;

    let tokens: Option<Arc<dyn TokenValidator>> = match (&c.oidc_issuer, &c.oidc_audience) {
        (Some(issuer), Some(audience)) => {
            let mut oc = OidcConfig::new(issuer.clone(), audience.clone());
            oc.principal_claim = c.oidc_principal_claim.clone();
            let v = OidcValidator::discover(oc)
                .await
                .with_context(|| format!("OIDC discovery at {issuer} failed"))?;
            Some(Arc::new(v))
        }
        (Some(_), None) | (None, Some(_)) => {
            bail!("--oidc-issuer and --oidc-audience go together")
        }
        (None, None) => None,
    };
    let mechanisms = g
        .sasl_mechanisms
        .iter()
        .map(|m| parse_mechanism(m))
        .collect::<Result<Vec<_>>>()?;
    let authenticator = Authenticator::new(
        AuthenticatorConfig {
            mechanisms,
            session_lifetime: (g.session_lifetime_ms > 0)
                .then(|| Duration::from_millis(g.session_lifetime_ms)),
            max_failures_per_minute: g.max_failures_per_minute,
        },
        users.clone(),
        tokens.clone(),
    );
    Ok(Policy {
        tls,
        ca,
        mapper: (!g.client_ca.is_empty()).then_some(mapper),
        users,
        authorizer,
        authenticator,
        tokens,
        store,
        governance,
        generated_admin_password,
        pan_key: derive_key(&mac_key, b"gatehouse/pan-guard/v1"),
        envelope,
        key_audit,
    })
}

/// Starts the gateway with the policy objects of [`start_policy`].
pub async fn start_gateway(
    c: &Config,
    policy: Policy,
    upstream: UpstreamConfig,
    audit: Option<Arc<dyn AuditSink>>,
    validator: Option<Arc<gatehouse_registry::validate::Validator>>,
) -> Result<RunningGateway> {
    let g = &c.gateway;
    let config = GatewayConfig {
        tls_listen: Some(c.gateway_listen),
        plain_listen: Some(c.gateway_plain_listen),
        allow_plaintext_remote: g.allow_plaintext_remote,
        advertised_host: advertised_host(c),
        node_port_base: c.gateway_node_port_base,
        max_frame_size: g.max_request_bytes,
        max_connections: g.max_connections,
        tls_handshake_timeout: Duration::from_secs(10),
        proxy_protocol: g.proxy_protocol,
    };
    let Policy {
        tls,
        ca,
        mapper,
        users,
        authorizer,
        authenticator,
        store,
        governance,
        generated_admin_password,
        pan_key,
        envelope,
        key_audit,
        ..
    } = policy;
    if let Some(sink) = &audit {
        let _ = key_audit.set(sink.clone());
    }
    let gateway = Gateway::start(
        config,
        GatewayDeps {
            tls: Some(tls.clone()),
            principal_mapper: mapper,
            authenticator,
            authorizer,
            users,
            store: Some(store),
            audit,
            upstream,
            governance: Some(governance),
            validator,
            pan_key,
            envelope: Some(envelope),
        },
    )
    .await
    .context("the gateway could not start")?;
    Ok(RunningGateway {
        gateway,
        tls,
        ca,
        generated_admin_password,
        drain: Duration::from_millis(g.drain_timeout_ms),
    })
}
