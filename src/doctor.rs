//! `gatehouse doctor`: checks a running deployment from the operator's machine.
//!
//! Each check answers `ok`, `warn`, `fail` or `skip` with one line an operator can act on:
//! the admin listener's `/health` and the clock skew against its `Date` header; the
//! gateway's TLS certificate (chain against the CA, days to expiry, negotiated version) and a
//! Kafka ApiVersions exchange through it; the schema registry answering; the upstream
//! cluster (or bundled broker) answering ApiVersions; the audit trail verifying offline; free
//! space of the data directory. Addresses come from the same configuration layers as `serve`
//! (`--config`, flags, `GATEHOUSE_*`), so `gatehouse doctor` next to `gatehouse serve` needs
//! no arguments.
//!
//! Exit codes: 0 no check failed (warnings are printed, and fail with `--strict`); 1 at
//! least one check failed; 2 usage errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use gatehouse_protocol::client::{Connection, ConnectionConfig};
use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::http_client::HttpClient;
use crate::output::{
    EXIT_FAILED, EXIT_OK, EXIT_USAGE, Output, OutputArgs, print_json, print_table,
};

/// Certificates closer to expiry than this warn by default.
const DEFAULT_WARN_DAYS: u64 = 30;
/// Clock skew that warns (the `Date` header has one-second resolution).
const SKEW_WARN: Duration = Duration::from_secs(2);
/// Clock skew that fails: token expiry, session lifetimes and audit time become unreliable.
const SKEW_FAIL: Duration = Duration::from_secs(30);
/// Free space below this fraction of the data directory's file system warns.
const DISK_WARN_FRACTION: f64 = 0.10;
/// Free space below this fraction fails (the broker and audit trail stop writing soon).
const DISK_FAIL_FRACTION: f64 = 0.02;
/// Time allowed for each network check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of `gatehouse doctor` (plus the configuration flags of `serve`).
#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub common: crate::CommonArgs,
    /// Admin API base URL (default: http://<admin_listen>).
    #[arg(long)]
    pub admin_url: Option<String>,
    /// Gateway TLS address (default: <gateway_listen>, a wildcard address read as loopback).
    #[arg(long)]
    pub gateway: Option<String>,
    /// TLS server name to check the gateway certificate against.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Schema registry base URL (default: https://localhost:<registry port>).
    #[arg(long)]
    pub registry_url: Option<String>,
    /// CA certificate (PEM) for the gateway and registry (default: <data-dir>/tls/ca.pem).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Warn when a certificate expires within this many days.
    #[arg(long, default_value_t = DEFAULT_WARN_DAYS)]
    pub warn_days: u64,
    /// Treat warnings as failures (exit 1).
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    Skip,
}

/// One check's result.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Self {
        Check {
            name,
            verdict,
            detail: detail.into(),
        }
    }
}

/// Runs `gatehouse doctor`; returns the exit code.
pub fn run(args: DoctorArgs) -> i32 {
    let config = match args.common.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_USAGE;
        }
    };
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
    let checks = rt.block_on(run_checks(&args, &config));
    print(&checks, args.out.format());
    exit_code(&checks, args.strict)
}

fn exit_code(checks: &[Check], strict: bool) -> i32 {
    let failed = checks
        .iter()
        .any(|c| c.verdict == Verdict::Fail || (strict && c.verdict == Verdict::Warn));
    if failed { EXIT_FAILED } else { EXIT_OK }
}

fn print(checks: &[Check], output: Output) {
    match output {
        Output::Json => {
            let ok = !checks.iter().any(|c| c.verdict == Verdict::Fail);
            print_json(&json!({ "ok": ok, "checks": checks }));
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = checks
                .iter()
                .map(|c| {
                    let v = match c.verdict {
                        Verdict::Ok => "ok",
                        Verdict::Warn => "WARN",
                        Verdict::Fail => "FAIL",
                        Verdict::Skip => "skip",
                    };
                    vec![v.to_string(), c.name.to_string(), c.detail.clone()]
                })
                .collect();
            print_table(&["RESULT", "CHECK", "DETAIL"], &rows);
        }
    }
}

/// A wildcard listen address is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    a
}

async fn run_checks(args: &DoctorArgs, c: &Config) -> Vec<Check> {
    let ca = args
        .ca_cert
        .clone()
        .unwrap_or_else(|| c.data_dir.join("tls").join("ca.pem"));
    let ca = ca.exists().then_some(ca);
    let admin_url = args
        .admin_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", reachable(c.admin_listen)));
    let gateway = args
        .gateway
        .clone()
        .unwrap_or_else(|| reachable(c.gateway_listen).to_string());
    let registry_url = args
        .registry_url
        .clone()
        .unwrap_or_else(|| format!("https://localhost:{}", c.registry_listen.port()));

    let mut out = Vec::new();
    out.extend(admin_checks(&admin_url).await);
    out.extend(gateway_checks(&gateway, &args.server_name, ca.as_deref(), args.warn_days).await);
    out.push(registry_check(&registry_url, ca.as_deref()).await);
    out.push(upstream_check(c).await);
    out.push(audit_check(&c.data_dir.join("audit")));
    out.push(disk_check(&c.data_dir));
    out
}

async fn admin_checks(url: &str) -> Vec<Check> {
    let client = match HttpClient::new(url, "--admin-url", false, None) {
        Ok(c) => c,
        Err(e) => return vec![Check::new("admin /health", Verdict::Fail, format!("{e:#}"))],
    };
    let r = match tokio::time::timeout(CHECK_TIMEOUT, client.send("GET", "/health", None)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return vec![
                Check::new("admin /health", Verdict::Fail, format!("{e:#}")),
                Check::new("clock skew", Verdict::Skip, "no answer from the admin API"),
            ];
        }
        Err(_) => {
            return vec![
                Check::new(
                    "admin /health",
                    Verdict::Fail,
                    format!("{url}: no answer within {CHECK_TIMEOUT:?}"),
                ),
                Check::new("clock skew", Verdict::Skip, "no answer from the admin API"),
            ];
        }
    };
    let health = match r.status {
        200 => Check::new(
            "admin /health",
            Verdict::Ok,
            format!("{url}: every part serves"),
        ),
        503 => Check::new(
            "admin /health",
            Verdict::Fail,
            format!("{url}: still starting or degraded: {}", r.body.trim()),
        ),
        s => Check::new(
            "admin /health",
            Verdict::Fail,
            format!("{url}: unexpected HTTP {s}"),
        ),
    };
    let skew = match r.header("date").map(httpdate_to_system) {
        Some(Ok(server)) => skew_check(server, SystemTime::now()),
        Some(Err(e)) => Check::new("clock skew", Verdict::Warn, format!("bad Date header: {e}")),
        None => Check::new(
            "clock skew",
            Verdict::Skip,
            "the admin API sent no Date header",
        ),
    };
    vec![health, skew]
}

fn skew_check(server: SystemTime, local: SystemTime) -> Check {
    let skew = match local.duration_since(server) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    let detail = format!(
        "server and this machine differ by {} s (Date header, 1 s resolution)",
        skew.as_secs()
    );
    let verdict = if skew >= SKEW_FAIL {
        Verdict::Fail
    } else if skew > SKEW_WARN {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    Check::new("clock skew", verdict, detail)
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only form servers send.
fn httpdate_to_system(s: &str) -> Result<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return Err(anyhow!("'{s}' is not an IMF-fixdate"));
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months
        .iter()
        .position(|m| m == month)
        .ok_or_else(|| anyhow!("bad month in '{s}'"))? as i64
        + 1;
    let day: i64 = day.parse().context("bad day")?;
    let year: i64 = year.parse().context("bad year")?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse::<i64>())
        .collect::<Result<_, _>>()
        .context("bad time")?;
    let [h, m, sec] = hms.as_slice() else {
        return Err(anyhow!("bad time in '{s}'"));
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    let secs = u64::try_from(secs).map_err(|_| anyhow!("date before 1970 in '{s}'"))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

async fn gateway_checks(
    addr: &str,
    server_name: &str,
    ca: Option<&Path>,
    warn_days: u64,
) -> Vec<Check> {
    let Some(ca) = ca else {
        return vec![Check::new(
            "gateway TLS",
            Verdict::Skip,
            "no CA certificate (give --ca-cert, or run next to the data dir)",
        )];
    };
    match tokio::time::timeout(CHECK_TIMEOUT, gateway_tls(addr, server_name, ca, warn_days)).await {
        Ok(Ok(checks)) => checks,
        Ok(Err(e)) => vec![Check::new(
            "gateway TLS",
            Verdict::Fail,
            format!("{addr}: {e:#}"),
        )],
        Err(_) => vec![Check::new(
            "gateway TLS",
            Verdict::Fail,
            format!("{addr}: no TLS handshake within {CHECK_TIMEOUT:?}"),
        )],
    }
}

async fn gateway_tls(
    addr: &str,
    server_name: &str,
    ca: &Path,
    warn_days: u64,
) -> Result<Vec<Check>> {
    let config = gatehouse_gateway::tls::client_config(ca, None)
        .with_context(|| format!("CA {}", ca.display()))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|_| anyhow!("--server-name {server_name} is not a valid name"))?;
    let tls = connector.connect(name, tcp).await.context(
        "TLS handshake failed (certificate not signed by the CA, wrong name, or not TLS)",
    )?;
    let (_, session) = tls.get_ref();
    let version = session
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "unknown".into());
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| anyhow!("the gateway sent no certificate"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| anyhow!("cannot parse the gateway certificate: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days_left = (not_after - now) / 86_400;
    let cert_check = if not_after <= now {
        Check::new(
            "gateway certificate",
            Verdict::Fail,
            format!("expired {} days ago", -days_left),
        )
    } else if days_left < warn_days as i64 {
        Check::new(
            "gateway certificate",
            Verdict::Warn,
            format!("expires in {days_left} days: renew it (SIGHUP reloads)"),
        )
    } else {
        Check::new(
            "gateway certificate",
            Verdict::Ok,
            format!("valid for {server_name}, {days_left} days left, {version}"),
        )
    };
    // ApiVersions through the gateway (allowed before authentication).
    let kafka = match Connection::from_stream(tls, addr.to_string(), kafka_config()).await {
        Ok(conn) => Check::new(
            "gateway Kafka",
            Verdict::Ok,
            format!(
                "{addr}: ApiVersions answered ({} APIs)",
                conn.broker_versions().len()
            ),
        ),
        Err(e) => Check::new("gateway Kafka", Verdict::Fail, format!("{addr}: {e}")),
    };
    Ok(vec![cert_check, kafka])
}

fn kafka_config() -> ConnectionConfig {
    ConnectionConfig {
        client_id: Some("gatehouse-doctor".into()),
        connect_timeout: CHECK_TIMEOUT,
        request_timeout: CHECK_TIMEOUT,
        ..ConnectionConfig::default()
    }
}

async fn registry_check(url: &str, ca: Option<&Path>) -> Check {
    let https = url.starts_with("https://");
    let client = match HttpClient::new(url, "--registry-url", true, if https { ca } else { None }) {
        Ok(c) => c,
        Err(e) => return Check::new("schema registry", Verdict::Fail, format!("{e:#}")),
    };
    match tokio::time::timeout(CHECK_TIMEOUT, client.send("GET", "/", None)).await {
        // 401: serving, and refusing anonymous callers as it should.
        Ok(Ok(r)) if r.status == 200 || r.status == 401 => Check::new(
            "schema registry",
            Verdict::Ok,
            format!("{url}: answering (HTTP {})", r.status),
        ),
        Ok(Ok(r)) => Check::new(
            "schema registry",
            Verdict::Fail,
            format!("{url}: HTTP {}", r.status),
        ),
        Ok(Err(e)) => Check::new("schema registry", Verdict::Fail, format!("{e:#}")),
        Err(_) => Check::new(
            "schema registry",
            Verdict::Fail,
            format!("{url}: no answer within {CHECK_TIMEOUT:?}"),
        ),
    }
}

async fn upstream_check(c: &Config) -> Check {
    let (what, addr) = match &c.upstream_bootstrap {
        Some(b) => (
            "upstream cluster",
            b.split(',').next().unwrap_or_default().trim().to_string(),
        ),
        None => ("bundled broker", c.broker_listen.to_string()),
    };
    match tokio::time::timeout(
        CHECK_TIMEOUT,
        Connection::connect(addr.as_str(), kafka_config()),
    )
    .await
    {
        Ok(Ok(conn)) => Check::new(
            "upstream",
            Verdict::Ok,
            format!(
                "{what} {addr}: ApiVersions answered ({} APIs)",
                conn.broker_versions().len()
            ),
        ),
        Ok(Err(e)) => Check::new("upstream", Verdict::Fail, format!("{what} {addr}: {e}")),
        Err(_) => Check::new(
            "upstream",
            Verdict::Fail,
            format!("{what} {addr}: no answer within {CHECK_TIMEOUT:?}"),
        ),
    }
}

fn audit_check(dir: &Path) -> Check {
    if !dir.exists() {
        return Check::new(
            "audit trail",
            Verdict::Skip,
            format!("{} not found (run next to the data dir)", dir.display()),
        );
    }
    match gatehouse_compliance::audit::cli::cli_verify(dir, &[]) {
        Ok(report) => {
            let summary = report
                .lines()
                .find(|l| l.to_ascii_lowercase().contains("event"))
                .unwrap_or("verified")
                .trim()
                .to_string();
            Check::new("audit trail", Verdict::Ok, summary)
        }
        Err(e) => Check::new(
            "audit trail",
            Verdict::Fail,
            format!("{}: {e}", dir.display()),
        ),
    }
}

fn disk_check(dir: &Path) -> Check {
    let probe = if dir.exists() {
        dir.to_path_buf()
    } else {
        dir.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    match rustix::fs::statvfs(&probe) {
        Ok(s) => {
            let total = s.f_blocks.saturating_mul(s.f_frsize);
            let free = s.f_bavail.saturating_mul(s.f_frsize);
            let fraction = if total == 0 {
                1.0
            } else {
                free as f64 / total as f64
            };
            let detail = format!(
                "{}: {:.1} GiB free of {:.1} GiB ({:.0}%)",
                probe.display(),
                free as f64 / (1u64 << 30) as f64,
                total as f64 / (1u64 << 30) as f64,
                fraction * 100.0
            );
            let verdict = if fraction < DISK_FAIL_FRACTION {
                Verdict::Fail
            } else if fraction < DISK_WARN_FRACTION {
                Verdict::Warn
            } else {
                Verdict::Ok
            };
            Check::new("disk space", verdict, detail)
        }
        Err(e) => Check::new(
            "disk space",
            Verdict::Warn,
            format!("{}: cannot read file system usage: {e}", probe.display()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        let t = httpdate_to_system("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        let t = httpdate_to_system("Wed, 25 Nov 2026 21:39:17 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_795_642_757
        );
        assert!(httpdate_to_system("Sunday, 06-Nov-94 08:49:37 GMT").is_err());
        assert!(httpdate_to_system("Sun, 06 Foo 1994 08:49:37 GMT").is_err());
    }

    #[test]
    fn skew_thresholds() {
        let now = SystemTime::now();
        assert_eq!(skew_check(now, now).verdict, Verdict::Ok);
        assert_eq!(
            skew_check(now - Duration::from_secs(5), now).verdict,
            Verdict::Warn
        );
        assert_eq!(
            skew_check(now + Duration::from_secs(60), now).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn exit_codes() {
        let w = vec![Check::new("a", Verdict::Warn, "")];
        assert_eq!(exit_code(&w, false), 0);
        assert_eq!(exit_code(&w, true), 1);
        assert_eq!(exit_code(&[Check::new("a", Verdict::Fail, "")], false), 1);
        assert_eq!(exit_code(&[Check::new("a", Verdict::Skip, "")], true), 0);
    }

    #[test]
    fn wildcard_is_loopback() {
        let a: SocketAddr = "0.0.0.0:9092".parse().unwrap();
        assert_eq!(reachable(a).to_string(), "127.0.0.1:9092");
    }

    #[test]
    fn disk_of_a_missing_dir_uses_its_parent() {
        let c = disk_check(Path::new("/tmp/gatehouse-doctor-no-such-dir/data"));
        assert_ne!(c.verdict, Verdict::Fail, "{}", c.detail);
    }
}
