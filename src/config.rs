//! The one typed configuration tree of the `gatehouse` binary.
//!
//! Layers, lowest first: the embedded default (`config/default.toml`), the `--config` file,
//! `GATEHOUSE_*` environment variables, command-line flags. Top-level keys are exactly the
//! flags of the command-line contract (DESIGN.md); `[broker]` holds tuning of the bundled
//! broker. Unknown keys are errors, so a typo is caught at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use gatehouse_broker::LogFlush;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Broker tuning, `[broker]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerTuning {
    pub node_id: i32,
    pub flush_window_us: u64,
    pub max_request_bytes: usize,
    pub default_partitions: i32,
    pub log_cleanup_interval_ms: u64,
    pub group_initial_rebalance_delay_ms: i32,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub topic_defaults: gatehouse_broker::TopicDefaults,
}

/// Gateway tuning, `[gateway]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayTuning {
    /// Allow the plaintext listener on a non-loopback address.
    pub allow_plaintext_remote: bool,
    /// Server certificate and key (PEM); empty: generated in `<data-dir>/tls`.
    pub tls_cert: String,
    pub tls_key: String,
    /// CA for client certificates (mTLS); empty: client certificates are not requested.
    pub client_ca: String,
    /// Refuse TLS clients without a certificate (only with `client_ca`).
    pub require_client_cert: bool,
    /// Kafka's `ssl.principal.mapping.rules` for mTLS principals.
    pub principal_mapping_rules: String,
    /// Principals allowed everything (except internal topics).
    pub super_users: Vec<String>,
    /// SASL mechanisms offered (OAUTHBEARER also needs `oidc_issuer`).
    pub sasl_mechanisms: Vec<String>,
    /// Longest SASL session before re-authentication (KIP-368); 0 = no limit.
    pub session_lifetime_ms: u64,
    /// Most client connections held at once.
    pub max_connections: usize,
    /// Failed logins per client IP per minute before further attempts are refused.
    pub max_failures_per_minute: u32,
    /// Largest request from an authenticated client.
    pub max_request_bytes: usize,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout_ms: u64,
    /// Listeners expect a PROXY protocol v2 header from a load balancer.
    pub proxy_protocol: bool,
    /// SASL mechanism for the gateway's own connections to an external upstream
    /// (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`; empty = none). The password comes from
    /// `GATEHOUSE_UPSTREAM_PASSWORD`, never from a file.
    pub upstream_sasl_mechanism: String,
    pub upstream_username: String,
    /// TLS on the gateway's own connections to an external upstream (`--upstream-bootstrap`).
    pub upstream_tls: bool,
    /// CA certificates (PEM) the upstream brokers' certificates must chain to; empty = the
    /// system's trusted roots.
    pub upstream_tls_ca: String,
    /// Client certificate chain and key (PEM) presented to the upstream; both or neither.
    pub upstream_tls_cert: String,
    pub upstream_tls_key: String,
    /// Name the upstream certificates must carry (and SNI); empty = each broker's host.
    pub upstream_tls_server_name: String,
}

/// Audit trail settings, `[audit]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditTuning {
    /// How often `serve` re-verifies the trail; 0 = off.
    pub self_check_interval_ms: u64,
    /// `gatehouse audit archive` refuses anything younger (PCI DSS 10.5.1).
    pub retention_min_days: u32,
    /// Ship events and checkpoints to the `_gatehouse_audit` topic.
    pub mirror_topic: bool,
}

impl Default for AuditTuning {
    fn default() -> Self {
        Self {
            self_check_interval_ms: 60_000,
            retention_min_days: 365,
            mirror_topic: false,
        }
    }
}

/// Schema registry settings, `[registry]` in the config file (several nodes: docs/registry.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryTuning {
    /// URL other nodes forward writes to; empty: `https://<advertised host>:<registry port>`.
    pub advertised_url: String,
    /// May this node become the writer of `_schemas`?
    pub leader_eligibility: bool,
    /// Kafka group of the writer election; empty: no election (this node is the only writer).
    pub group_id: String,
    /// Extra CA certificates (PEM) trusted when forwarding writes to the leader.
    pub forward_ca: String,
    /// Group session timeout: how long a silent leader keeps leadership.
    pub session_timeout_ms: u64,
}

impl Default for RegistryTuning {
    fn default() -> Self {
        Self {
            advertised_url: String::new(),
            leader_eligibility: true,
            group_id: "_gatehouse_registry".into(),
            forward_ca: String::new(),
            session_timeout_ms: 10_000,
        }
    }
}

/// Web console settings, `[console]` in the config file (docs/console.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleTuning {
    /// Client id of the console at the OIDC issuer (`oidc_issuer`); empty: no SSO login. The
    /// client secret comes from `GATEHOUSE_CONSOLE_OIDC_CLIENT_SECRET` or
    /// `oidc_client_secret_file`, never from the config itself.
    pub oidc_client_id: String,
    /// File holding the client secret (first line); used when the environment variable is
    /// unset. Neither set: a public client (PKCE only).
    pub oidc_client_secret_file: String,
    /// Scopes requested besides `openid` (e.g. what the gateway's audience needs).
    pub oidc_scopes: Vec<String>,
    /// Send `resource=<oidc_audience>` (RFC 8707) in the authorization request, so the access
    /// token is issued for the gateway.
    pub oidc_resource_indicator: bool,
    /// Base URL of the admin listener as the browser reaches it (e.g.
    /// `https://gatehouse.example.com`); the redirect URI is `<public_url>/console/oidc/callback`.
    /// Empty: taken from the request's `Host` (fine on loopback).
    pub public_url: String,
}

impl Default for ConsoleTuning {
    fn default() -> Self {
        Self {
            oidc_client_id: String::new(),
            oidc_client_secret_file: String::new(),
            oidc_scopes: Vec::new(),
            oidc_resource_indicator: true,
            public_url: String::new(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Key management provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kms {
    Local,
    AwsKms,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub broker_listen: SocketAddr,
    pub broker_open: bool,
    pub log_flush: LogFlush,
    pub auto_create_topics: bool,
    pub gateway_listen: SocketAddr,
    pub gateway_plain_listen: SocketAddr,
    pub gateway_advertised_host: Option<String>,
    pub gateway_node_port_base: Option<u16>,
    pub registry_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub upstream_bootstrap: Option<String>,
    pub oidc_issuer: Option<String>,
    pub oidc_audience: Option<String>,
    pub oidc_principal_claim: String,
    pub kms: Kms,
    pub kms_endpoint: Option<String>,
    pub kms_key_id: Option<String>,
    pub log_format: LogFormat,
    pub broker: BrokerTuning,
    pub gateway: GatewayTuning,
    #[serde(default)]
    pub audit: AuditTuning,
    #[serde(default)]
    pub registry: RegistryTuning,
    #[serde(default)]
    pub console: ConsoleTuning,
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

impl Config {
    /// Builds the configuration from the embedded default, an optional file and overrides
    /// (flags and environment, already merged by clap) given as a TOML table.
    pub fn load(file: Option<&std::path::Path>, overrides: toml::Table) -> Result<Config> {
        let mut value: toml::Value =
            toml::from_str(DEFAULT_TOML).context("the embedded default config is invalid")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let file_value: toml::Value = toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
            merge(&mut value, file_value);
        }
        merge(&mut value, toml::Value::Table(overrides));
        let config: Config = value
            .try_into()
            .context("invalid configuration (see docs/config.md for every key)")?;
        Ok(config)
    }

    /// The broker section as the broker crate wants it.
    pub fn broker_config(&self, listen: SocketAddr) -> gatehouse_broker::BrokerConfig {
        let t = &self.broker;
        gatehouse_broker::BrokerConfig {
            data_dir: self.data_dir.join("broker"),
            listen,
            advertised_host: None,
            node_id: t.node_id,
            log_flush: self.log_flush,
            flush_window_us: t.flush_window_us,
            max_request_bytes: t.max_request_bytes,
            auto_create_topics: self.auto_create_topics,
            default_partitions: t.default_partitions,
            log_cleanup_interval_ms: t.log_cleanup_interval_ms,
            group_initial_rebalance_delay_ms: t.group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms: t.group_min_session_timeout_ms,
            group_max_session_timeout_ms: t.group_max_session_timeout_ms,
            topic_defaults: t.topic_defaults.clone(),
            internal_credential: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_loads() {
        let c = Config::load(None, toml::Table::new()).expect("default config");
        assert_eq!(c.broker_listen.to_string(), "127.0.0.1:19092");
        assert_eq!(c.log_flush, LogFlush::Durable);
        assert_eq!(c.data_dir, PathBuf::from("./gatehouse-data"));
    }

    #[test]
    fn overrides_win_and_unknown_keys_fail() {
        let mut o = toml::Table::new();
        o.insert("log_flush".into(), toml::Value::String("os".into()));
        let c = Config::load(None, o).expect("config");
        assert_eq!(c.log_flush, LogFlush::Os);
        let mut bad = toml::Table::new();
        bad.insert("retention".into(), toml::Value::Integer(1));
        assert!(Config::load(None, bad).is_err());
    }

    #[test]
    fn docs_list_every_key() {
        let doc = include_str!("../docs/config.md");
        let value: toml::Value = toml::from_str(DEFAULT_TOML).expect("toml");
        fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if v.is_table() {
                        walk(&key, v, out);
                    } else {
                        out.push(key);
                    }
                }
            }
        }
        let mut keys = Vec::new();
        walk("", &value, &mut keys);
        for k in keys {
            assert!(
                doc.contains(&format!("`{k}`")),
                "docs/config.md does not document `{k}`"
            );
        }
    }
}
