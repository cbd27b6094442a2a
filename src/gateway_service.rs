//! The gateway under `gatehouse serve`: certificates, users and ACLs, the admin user, the
//! SASL mechanisms (OIDC when configured), and the gateway itself in front of the bundled
//! broker or an external cluster.
//!
//! First start creates `<data-dir>/tls/ca.pem` (the CA clients trust) and the server
//! certificate (unless `gateway.tls_cert` names one), and the `admin` super user whose password
//! is `GATEHOUSE_ADMIN_PASSWORD` when set, else generated and printed once. Users and ACLs live
//! in `_gatehouse_users` / `_gatehouse_acls` on the upstream, each record MACed under a key
//! derived from the master key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gatehouse_gateway::tls::{TlsServer, TlsSettings, ensure_certificates};
use gatehouse_gateway::{Gateway, GatewayConfig, GatewayDeps, UpstreamConfig};
use gatehouse_policy::{
    Authenticator, AuthenticatorConfig, Authorizer, Mechanism, OidcConfig, OidcValidator,
    PolicyStore, Principal, PrincipalMapper, ScramCredential, TokenValidator, UserStore,
};
use gatehouse_protocol::client::{Client, ClientConfig, SaslCredentials};
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
        other => bail!("gateway.upstream_sasl_mechanism {other:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
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

/// The upstream the gateway and the other internal clients use.
pub fn upstream_config(
    c: &Config,
    bundled: Option<(SocketAddr, SaslCredentials)>,
) -> Result<UpstreamConfig> {
    match bundled {
        Some((addr, credential)) => {
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

/// Starts the gateway.
pub async fn start(
    c: &Config,
    upstream: UpstreamConfig,
    audit: Option<Arc<dyn AuditSink>>,
    mac_key: [u8; 32],
    validator: Option<Arc<gatehouse_registry::validate::Validator>>,
) -> Result<RunningGateway> {
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
    let mut client_config = ClientConfig::new(upstream.bootstrap.clone());
    if let Some(sasl) = upstream.sasl.clone() {
        client_config = client_config.with_sasl(sasl);
    }
    let client = Client::connect(client_config)
        .await
        .context("the gateway cannot reach its upstream for the policy topics")?;
    let governance = gatehouse_gateway::governance::Governance::open(client.clone(), mac_key)
        .await
        .context("cannot open _gatehouse_topics")?;
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
        tokens,
    );
    let config = GatewayConfig {
        tls_listen: Some(c.gateway_listen),
        plain_listen: Some(c.gateway_plain_listen),
        allow_plaintext_remote: g.allow_plaintext_remote,
        advertised_host: host,
        node_port_base: c.gateway_node_port_base,
        max_frame_size: g.max_request_bytes,
        max_connections: g.max_connections,
        tls_handshake_timeout: Duration::from_secs(10),
    };
    let gateway = Gateway::start(
        config,
        GatewayDeps {
            tls: Some(tls.clone()),
            principal_mapper: (!g.client_ca.is_empty()).then_some(mapper),
            authenticator,
            authorizer,
            users,
            store: Some(store),
            audit,
            upstream,
            governance: Some(governance),
            validator,
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
