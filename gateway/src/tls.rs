//! TLS for the gateway listeners: the generated certificate authority and server certificate,
//! a hot-reloadable rustls server configuration (TLS 1.2 and 1.3 only, optional or required
//! client certificates) and the client certificate's subject in RFC 2253 form for mTLS
//! principal mapping.
//!
//! The crypto provider (aws-lc-rs) is always passed explicitly, so nothing here depends on a
//! process-wide default provider being installed.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, RootCertStore, ServerConfig, ServerConnection};
use time::OffsetDateTime;
use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Validity of the generated certificate authority.
const CA_VALIDITY_DAYS: i64 = 3650;
/// Validity of the generated server certificate (the maximum browsers and Apple accept).
const SERVER_VALIDITY_DAYS: i64 = 825;
/// A server certificate expiring within this many days is re-issued at start.
const RENEW_BEFORE_DAYS: i64 = 30;
/// Names every generated server certificate covers besides the requested ones.
const ALWAYS_COVERED: [&str; 2] = ["localhost", "127.0.0.1"];

/// Why a TLS operation failed. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading, writing or creating a file or directory failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was attempted (`read`, `write`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file does not hold what it should.
    #[error("{}: {reason}", path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never quotes key material).
        reason: String,
    },
    /// A requested subject alternative name is neither an IP address nor a valid DNS name.
    #[error("invalid certificate name `{0}`")]
    InvalidName(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration (for example a key that does not match its certificate).
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built (for example an empty CA file).
    #[error("client certificate verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    /// Inconsistent settings.
    #[error("{0}")]
    Config(String),
}

/// Where [`ensure_certificates`] keeps the generated files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPaths {
    /// `ca.pem`: the certificate authority clients trust.
    pub ca_cert: PathBuf,
    /// `ca.key`: the CA's private key (mode 0600).
    pub ca_key: PathBuf,
    /// `server.pem`: the gateway's server certificate, signed by the CA.
    pub server_cert: PathBuf,
    /// `server.key`: the server certificate's private key (mode 0600).
    pub server_key: PathBuf,
}

impl CertPaths {
    /// The file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// Creates (first start) or checks (later starts) the gateway's certificate authority and server
/// certificate in `dir`.
///
/// The server certificate covers `sans` plus `localhost` and `127.0.0.1` (entries that parse as
/// IP addresses become IP SANs, the rest DNS SANs). It is re-issued with the same CA when it is
/// missing, unreadable, does not match its key or the CA, does not cover the requested names, or
/// expires within 30 days. Keys are written with mode 0600 and the directory is 0700; every file
/// is written atomically (temporary file + rename).
pub fn ensure_certificates(dir: &Path, sans: &[String]) -> Result<CertPaths, TlsError> {
    let paths = CertPaths::in_dir(dir);
    create_private_dir(dir)?;
    let wanted = wanted_names(sans)?;
    let provider = provider();

    let fresh_ca = !paths.ca_cert.exists();
    if fresh_ca {
        generate_ca(&paths)?;
    }
    let ca_der = load_certs(&paths.ca_cert)?
        .into_iter()
        .next()
        .ok_or_else(|| invalid(&paths.ca_cert, "no certificate found"))?;

    let reason = if fresh_ca {
        Some("new certificate authority".to_string())
    } else {
        server_reissue_reason(&paths, &ca_der, &wanted, &provider)
    };
    if let Some(reason) = reason {
        tracing::info!(
            dir = %dir.display(),
            %reason,
            "issuing gateway server certificate"
        );
        let ca_pem = read_string(&paths.ca_cert)?;
        let ca_key = load_rcgen_key(&paths.ca_key)?;
        check_ca_key(&paths, &ca_der, &ca_key, &provider)?;
        issue_server_certificate(&paths, &ca_pem, &ca_key, &wanted, SERVER_VALIDITY_DAYS)?;
    }
    Ok(paths)
}

/// Settings for a TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that sign acceptable client certificates; `None` disables client
    /// certificates.
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a certificate (needs `client_ca`); otherwise a certificate is
    /// requested but optional.
    pub require_client_cert: bool,
}

/// A TLS server configuration whose certificate can be swapped at run time ([`TlsServer::reload`]);
/// acceptors handed out earlier serve the new certificate on their next handshake.
#[derive(Debug)]
pub struct TlsServer {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    resolver: Arc<ReloadingResolver>,
    config: Arc<ServerConfig>,
}

impl TlsServer {
    /// Loads the certificate and key and builds the rustls configuration (TLS 1.3 and 1.2 only).
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(provider());
        let initial = load_certified_key(&settings.cert, &settings.key, &provider)?;
        let resolver = Arc::new(ReloadingResolver {
            current: RwLock::new(Arc::new(initial)),
        });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&TLS13, &TLS12])?;
        let builder = match (&settings.client_ca, settings.require_client_cert) {
            (Some(ca), require) => {
                let roots = load_roots(ca)?;
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                if !require {
                    verifier = verifier.allow_unauthenticated();
                }
                builder.with_client_cert_verifier(verifier.build()?)
            }
            (None, true) => {
                return Err(TlsError::Config(
                    "client certificates are required but no client CA is configured".to_string(),
                ));
            }
            (None, false) => builder.with_no_client_auth(),
        };
        let config = builder.with_cert_resolver(resolver.clone());
        Ok(Self {
            settings,
            provider,
            resolver,
            config: Arc::new(config),
        })
    }

    /// An acceptor for incoming connections; cheap to clone, follows [`TlsServer::reload`].
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// The rustls configuration (for HTTPS servers sharing the gateway's certificate).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The settings this server was built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Re-reads the certificate and key files. On any error the certificate in use stays in
    /// place and the error is returned. The client CA is not re-read.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified_key(&self.settings.cert, &self.settings.key, &self.provider)?;
        let expires = fresh
            .end_entity_cert()
            .ok()
            .and_then(|der| parse_certificate(der).map(|c| c.validity().not_after.to_string()));
        let mut current = self
            .resolver
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Arc::new(fresh);
        tracing::info!(
            cert = %self.settings.cert.display(),
            expires = expires.as_deref().unwrap_or("unknown"),
            "reloaded TLS certificate"
        );
        Ok(())
    }
}

/// Serves whatever certificate was loaded last.
#[derive(Debug)]
struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(current.clone())
    }
}

/// The subject of the peer's leaf certificate as an RFC 2253 string (`CN=alice,OU=eng,O=Acme`),
/// the form Kafka's `ssl.principal.mapping.rules` match against; `None` without a client
/// certificate.
pub fn client_certificate_subject(conn: &ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    certificate_subject(leaf.as_ref())
}

/// The subject of a DER certificate as an RFC 2253 string; `None` if it does not parse.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    parse_certificate(der).map(|cert| rfc2253(cert.subject()))
}

/// A client configuration trusting the CA certificates in `ca` (PEM), optionally presenting a
/// client certificate `(cert chain PEM, key PEM)`. TLS 1.3 and 1.2 only.
pub fn client_config(
    ca: &Path,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&TLS13, &TLS12])?
        .with_root_certificates(roots);
    let config = match client_cert {
        Some((cert, key)) => {
            builder.with_client_auth_cert(load_certs(cert)?, load_private_key(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

// ---------------------------------------------------------------------------------------------
// Certificate generation

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Name {
    Dns(String),
    Ip(IpAddr),
}

/// The requested names plus the always-covered ones, normalised and without duplicates.
fn wanted_names(sans: &[String]) -> Result<Vec<Name>, TlsError> {
    let mut names: Vec<Name> = Vec::new();
    let requested = sans.iter().map(String::as_str).chain(ALWAYS_COVERED);
    for raw in requested {
        let text = raw.trim();
        if text.is_empty() {
            continue;
        }
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        let name = match unbracketed.parse::<IpAddr>() {
            Ok(ip) => Name::Ip(ip),
            Err(_) => {
                let dns = text.trim_end_matches('.').to_ascii_lowercase();
                if DnsName::try_from(dns.as_str()).is_err() {
                    return Err(TlsError::InvalidName(text.to_string()));
                }
                Name::Dns(dns)
            }
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn gatehouse_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Gatehouse");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn generate_ca(paths: &CertPaths) -> Result<(), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    // A per-installation suffix keeps CAs of different installations apart in trust stores.
    let id: String = params
        .key_identifier(&key)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    params.distinguished_name = gatehouse_dn(&format!("Gatehouse CA {id}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now() - time::Duration::hours(1);
    params.not_after = now() + time::Duration::days(CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key)?;
    write_atomic(&paths.ca_key, key.serialize_pem().as_bytes(), true)?;
    write_atomic(&paths.ca_cert, cert.pem().as_bytes(), false)?;
    tracing::info!(ca = %paths.ca_cert.display(), "generated gateway certificate authority");
    Ok(())
}

fn issue_server_certificate(
    paths: &CertPaths,
    ca_pem: &str,
    ca_key: &KeyPair,
    names: &[Name],
    validity_days: i64,
) -> Result<(), TlsError> {
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let common_name = match names.first() {
        Some(Name::Dns(dns)) => dns.clone(),
        Some(Name::Ip(ip)) => ip.to_string(),
        None => "localhost".to_string(),
    };
    params.distinguished_name = gatehouse_dn(&common_name);
    params.subject_alt_names = names
        .iter()
        .map(|name| match name {
            Name::Dns(dns) => Ok(SanType::DnsName(dns.clone().try_into()?)),
            Name::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<Vec<_>, rcgen::Error>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now() - time::Duration::hours(1);
    params.not_after = now() + time::Duration::days(validity_days);
    let cert = params.signed_by(&key, &issuer)?;
    write_atomic(&paths.server_key, key.serialize_pem().as_bytes(), true)?;
    write_atomic(&paths.server_cert, cert.pem().as_bytes(), false)?;
    Ok(())
}

/// Why the server certificate must be (re-)issued, or `None` if it is fine.
fn server_reissue_reason(
    paths: &CertPaths,
    ca_der: &CertificateDer<'_>,
    wanted: &[Name],
    provider: &CryptoProvider,
) -> Option<String> {
    if !paths.server_cert.exists() || !paths.server_key.exists() {
        return Some("no server certificate".to_string());
    }
    let certified = match load_certified_key(&paths.server_cert, &paths.server_key, provider) {
        Ok(certified) => certified,
        Err(e) => return Some(format!("unusable server certificate or key: {e}")),
    };
    let leaf = certified.end_entity_cert().ok()?;
    let Some(cert) = parse_certificate(leaf) else {
        return Some("server certificate does not parse".to_string());
    };
    let Some(ca) = parse_certificate(ca_der) else {
        return Some("CA certificate does not parse".to_string());
    };
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Some("server certificate is not signed by the CA".to_string());
    }
    let remaining = cert.validity().not_after.timestamp() - now().unix_timestamp();
    if remaining < RENEW_BEFORE_DAYS * 86_400 {
        return Some(format!(
            "server certificate expires within {RENEW_BEFORE_DAYS} days"
        ));
    }
    let present = certificate_names(&cert);
    let missing: Vec<String> = wanted
        .iter()
        .filter(|name| !present.contains(name))
        .map(|name| match name {
            Name::Dns(dns) => dns.clone(),
            Name::Ip(ip) => ip.to_string(),
        })
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "server certificate does not cover {}",
            missing.join(", ")
        ));
    }
    None
}

fn certificate_names(cert: &X509Certificate<'_>) -> Vec<Name> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|general| match general {
            GeneralName::DNSName(dns) => Some(Name::Dns(dns.to_ascii_lowercase())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| Name::Ip(IpAddr::from(b))),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| Name::Ip(IpAddr::from(b))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Refuses a CA key that does not belong to the CA certificate.
fn check_ca_key(
    paths: &CertPaths,
    ca_der: &CertificateDer<'static>,
    ca_key: &KeyPair,
    provider: &CryptoProvider,
) -> Result<(), TlsError> {
    let key_der = PrivateKeyDer::try_from(ca_key.serialize_der())
        .map_err(|_| invalid(&paths.ca_key, "not a supported private key"))?;
    CertifiedKey::from_der(vec![ca_der.clone()], key_der, provider)
        .map(|_| ())
        .map_err(|_| invalid(&paths.ca_key, "does not match the CA certificate"))
}

// ---------------------------------------------------------------------------------------------
// Files

fn invalid(path: &Path, reason: &str) -> TlsError {
    TlsError::InvalidFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TlsError {
    let path = path.to_path_buf();
    move |source| TlsError::Io {
        action,
        path,
        source,
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(io_error("read", path))
}

fn read_string(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(io_error("read", path))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_bytes(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, &format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no certificate found"));
    }
    Ok(certs)
}

fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_bytes(path)?;
    // The PEM parser's messages may quote file content, so they are not passed on for keys.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| invalid(path, "no valid PEM private key"))
}

fn load_rcgen_key(path: &Path) -> Result<KeyPair, TlsError> {
    let pem = read_string(path)?;
    KeyPair::from_pem(&pem).map_err(|_| invalid(path, "no supported PEM private key"))
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(path, &format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_private_key(key)?;
    CertifiedKey::from_der(chain, key_der, provider).map_err(|e| TlsError::InvalidFile {
        path: key.to_path_buf(),
        reason: format!("unusable with {}: {e}", cert.display()),
    })
}

fn parse_certificate(der: &[u8]) -> Option<X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, cert)| cert)
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    set_mode(dir, 0o700)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error("set permissions on", path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), TlsError> {
    Ok(())
}

/// Writes `contents` to a temporary file next to `path` and renames it into place, so readers
/// see either the old or the new file. `secret` files get mode 0600 from creation on.
fn write_atomic(path: &Path, contents: &[u8], secret: bool) -> Result<(), TlsError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let result = (|| {
        let mut file = options.open(&tmp).map_err(io_error("create", &tmp))?;
        file.write_all(contents).map_err(io_error("write", &tmp))?;
        file.sync_all().map_err(io_error("sync", &tmp))?;
        drop(file);
        if secret {
            set_mode(&tmp, 0o600)?;
        }
        fs::rename(&tmp, path).map_err(io_error("rename into", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Some(parent) = path.parent() {
        // Best effort: make the rename durable.
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// RFC 2253 subject formatting (as Java's `X500Principal.getName()`, which Kafka uses)

fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(attribute_to_string)
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    // RFC 2253 lists the RDNs in reverse order of the encoding (most specific first).
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute_to_string(attr: &AttributeTypeAndValue<'_>) -> String {
    let oid = attr.attr_type().to_id_string();
    let keyword = match oid.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.9" => Some("STREET"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        _ => None,
    };
    match (keyword, decode_directory_string(attr.attr_value())) {
        (Some(keyword), Some(value)) => format!("{keyword}={}", escape_rfc2253(&value)),
        (keyword, _) => {
            let der = attr.attr_value().to_der_vec().unwrap_or_default();
            let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}=#{hex}", keyword.map_or(oid.as_str(), |k| k))
        }
    }
}

fn decode_directory_string(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_string),
        // Latin-1 is the practical reading of T61String.
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsConnector;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn server_settings(paths: &CertPaths) -> TlsSettings {
        TlsSettings {
            cert: paths.server_cert.clone(),
            key: paths.server_key.clone(),
            client_ca: None,
            require_client_cert: false,
        }
    }

    /// Accepts one connection, writes `hello` and reports the client's subject (or the error).
    async fn serve_once(
        server: &TlsServer,
    ) -> (u16, tokio::task::JoinHandle<Result<Option<String>, String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = server.acceptor();
        let handle = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let subject = client_certificate_subject(tls.get_ref().1);
            tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
            tls.shutdown().await.map_err(|e| e.to_string())?;
            Ok(subject)
        });
        (port, handle)
    }

    /// Connects as `host`, reads the greeting and returns the served leaf certificate.
    async fn connect(
        port: u16,
        host: &str,
        config: Arc<ClientConfig>,
    ) -> Result<CertificateDer<'static>, String> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
        let mut tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(buf, b"hello");
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        Ok(leaf)
    }

    /// The same client configuration without session resumption, so every connection sees the
    /// certificate the server serves now (a resumed session reports the original certificate).
    fn without_resumption(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
        let mut config = (*config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }

    /// Issues a client certificate signed by the generated CA; returns (cert, key) paths.
    fn issue_client_cert(paths: &CertPaths, dir: &Path) -> (PathBuf, PathBuf) {
        let ca_pem = fs::read_to_string(&paths.ca_cert).unwrap();
        let ca_key = KeyPair::from_pem(&fs::read_to_string(&paths.ca_key).unwrap()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Acme");
        dn.push(DnType::OrganizationalUnitName, "eng");
        dn.push(DnType::CommonName, "alice");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now() - time::Duration::hours(1);
        params.not_after = now() + time::Duration::days(30);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cert_path = dir.join("alice.pem");
        let key_path = dir.join("alice.key");
        fs::write(&cert_path, cert.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn wanted_names_detects_ips_and_dedupes() {
        let wanted = wanted_names(&names(&[
            "Kafka.Example.com.",
            "10.0.0.5",
            "[::1]",
            "localhost",
            "",
        ]))
        .unwrap();
        assert_eq!(
            wanted,
            vec![
                Name::Dns("kafka.example.com".into()),
                Name::Ip("10.0.0.5".parse().unwrap()),
                Name::Ip("::1".parse().unwrap()),
                Name::Dns("localhost".into()),
                Name::Ip("127.0.0.1".parse().unwrap()),
            ]
        );
        assert!(matches!(
            wanted_names(&names(&["bad host"])),
            Err(TlsError::InvalidName(_))
        ));
    }

    #[test]
    fn first_start_creates_files_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let paths = ensure_certificates(&dir, &names(&["kafka.example.com", "10.1.2.3"])).unwrap();
        for p in [
            &paths.ca_cert,
            &paths.ca_key,
            &paths.server_cert,
            &paths.server_key,
        ] {
            assert!(p.exists(), "{}", p.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&paths.ca_key), 0o600);
            assert_eq!(mode(&paths.server_key), 0o600);
        }
        let pem = fs::read(&paths.server_cert).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let cert = parse_certificate(&der).unwrap();
        let got = certificate_names(&cert);
        for want in [
            Name::Dns("kafka.example.com".into()),
            Name::Ip("10.1.2.3".parse().unwrap()),
            Name::Dns("localhost".into()),
            Name::Ip("127.0.0.1".parse().unwrap()),
        ] {
            assert!(got.contains(&want), "{want:?} missing from {got:?}");
        }
        let days = (cert.validity().not_after.timestamp() - now().unix_timestamp()) / 86_400;
        assert!((823..=825).contains(&days), "{days}");
        let ca_der = CertificateDer::from_pem_slice(&fs::read(&paths.ca_cert).unwrap()).unwrap();
        let ca = parse_certificate(&ca_der).unwrap();
        assert!(ca.is_ca());
        let ca_days = (ca.validity().not_after.timestamp() - now().unix_timestamp()) / 86_400;
        assert!((3648..=3650).contains(&ca_days), "{ca_days}");
        // No temporary files left behind.
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn later_starts_reuse_and_san_change_reissues_with_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let paths = ensure_certificates(dir, &names(&["kafka.example.com"])).unwrap();
        let ca1 = fs::read(&paths.ca_cert).unwrap();
        let server1 = fs::read(&paths.server_cert).unwrap();

        // Same names (and a subset) → untouched.
        ensure_certificates(dir, &names(&["kafka.example.com"])).unwrap();
        ensure_certificates(dir, &names(&[])).unwrap();
        assert_eq!(fs::read(&paths.server_cert).unwrap(), server1);

        // A new name → re-issued server cert, same CA.
        ensure_certificates(dir, &names(&["other.example.com", "192.168.7.7"])).unwrap();
        assert_eq!(fs::read(&paths.ca_cert).unwrap(), ca1);
        let server2 = fs::read(&paths.server_cert).unwrap();
        assert_ne!(server2, server1);
        let der = CertificateDer::from_pem_slice(&server2).unwrap();
        let got = certificate_names(&parse_certificate(&der).unwrap());
        assert!(got.contains(&Name::Dns("other.example.com".into())));
        assert!(got.contains(&Name::Ip("192.168.7.7".parse().unwrap())));
        let ca_der = CertificateDer::from_pem_slice(&ca1).unwrap();
        let ca = parse_certificate(&ca_der).unwrap();
        assert!(
            parse_certificate(&der)
                .unwrap()
                .verify_signature(Some(ca.public_key()))
                .is_ok()
        );
    }

    #[test]
    fn near_expiry_and_broken_server_cert_are_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let paths = ensure_certificates(dir, &names(&["kafka.example.com"])).unwrap();
        let ca_pem = fs::read_to_string(&paths.ca_cert).unwrap();
        let ca_key = KeyPair::from_pem(&fs::read_to_string(&paths.ca_key).unwrap()).unwrap();
        let wanted = wanted_names(&names(&["kafka.example.com"])).unwrap();
        issue_server_certificate(&paths, &ca_pem, &ca_key, &wanted, 10).unwrap();
        let short = fs::read(&paths.server_cert).unwrap();
        ensure_certificates(dir, &names(&["kafka.example.com"])).unwrap();
        let renewed = fs::read(&paths.server_cert).unwrap();
        assert_ne!(renewed, short, "a cert expiring in 10 days is renewed");

        // A key that does not match the certificate → re-issued.
        fs::write(
            &paths.server_key,
            KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        ensure_certificates(dir, &names(&["kafka.example.com"])).unwrap();
        assert_ne!(fs::read(&paths.server_cert).unwrap(), renewed);
        let provider = provider();
        load_certified_key(&paths.server_cert, &paths.server_key, &provider).unwrap();
    }

    #[tokio::test]
    async fn generated_certificates_verify_over_tcp() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = ensure_certificates(tmp.path(), &names(&["kafka.example.com"])).unwrap();
        let server = TlsServer::new(server_settings(&paths)).unwrap();
        let client = client_config(&paths.ca_cert, None).unwrap();
        for host in ["localhost", "127.0.0.1"] {
            let (port, handle) = serve_once(&server).await;
            connect(port, host, client.clone()).await.unwrap();
            assert_eq!(handle.await.unwrap(), Ok(None));
        }

        // A client trusting another CA refuses the server.
        let other = tempfile::tempdir().unwrap();
        let other_paths = ensure_certificates(other.path(), &[]).unwrap();
        let stranger = client_config(&other_paths.ca_cert, None).unwrap();
        let (port, handle) = serve_once(&server).await;
        assert!(connect(port, "localhost", stranger).await.is_err());
        assert!(handle.await.unwrap().is_err());
    }

    /// A minimal ClientHello record offering only `version` (0x0301 = TLS 1.0, 0x0302 = 1.1),
    /// optionally with a signature_algorithms extension (which rustls wants before it looks at
    /// the version; a real TLS 1.0 client sends none).
    fn legacy_client_hello(version: [u8; 2], signature_algorithms: bool) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&version); // client_version
        body.extend_from_slice(&[0x42; 32]); // random
        body.push(0); // session id length
        // AES-CBC-SHA suites, plus ECDHE-ECDSA-AES128-GCM so the refusal is about the version.
        body.extend_from_slice(&[0x00, 0x06, 0x00, 0x2f, 0x00, 0x35, 0xc0, 0x2b]);
        body.extend_from_slice(&[0x01, 0x00]); // compression: null
        if signature_algorithms {
            // extensions length 10; signature_algorithms (13), length 6, list length 4:
            // ecdsa_secp256r1_sha256, rsa_pkcs1_sha256.
            body.extend_from_slice(&[0x00, 0x0a, 0x00, 0x0d, 0x00, 0x06, 0x00, 0x04]);
            body.extend_from_slice(&[0x04, 0x03, 0x04, 0x01]);
        }
        let mut handshake = vec![0x01]; // ClientHello
        let len = u32::try_from(body.len()).unwrap();
        handshake.extend_from_slice(&len.to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![0x16, version[0], version[1]];
        record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[tokio::test]
    async fn tls10_and_tls11_client_hellos_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = ensure_certificates(tmp.path(), &[]).unwrap();
        let server = TlsServer::new(server_settings(&paths)).unwrap();
        for version in [[0x03, 0x01], [0x03, 0x02]] {
            for signature_algorithms in [false, true] {
                let (port, handle) = serve_once(&server).await;
                let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let hello = legacy_client_hello(version, signature_algorithms);
                tcp.write_all(&hello).await.unwrap();
                let mut reply = Vec::new();
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    tcp.read_to_end(&mut reply),
                )
                .await;
                assert!(read.is_ok(), "the server must answer and close");
                let server_side = handle.await.unwrap();
                assert!(server_side.is_err(), "handshake must fail");
                // A fatal alert record (content type 21, level 2), never a ServerHello (a
                // handshake record, content type 22). With signature_algorithms present the
                // refusal is protocol_version (70); without, handshake_failure (40).
                assert!(reply.len() >= 7, "expected an alert, got {reply:02x?}");
                assert_eq!(reply[0], 0x15, "expected an alert record, got {reply:02x?}");
                assert_eq!(reply[5], 2, "expected a fatal alert, got {reply:02x?}");
                let expected = if signature_algorithms { 70 } else { 40 };
                assert_eq!(
                    reply[6], expected,
                    "unexpected alert {reply:02x?} ({server_side:?})"
                );
            }
        }
    }

    #[tokio::test]
    async fn reload_swaps_certificate_and_keeps_old_one_on_error() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = ensure_certificates(tmp.path(), &names(&["kafka.example.com"])).unwrap();
        let server = TlsServer::new(server_settings(&paths)).unwrap();
        let acceptor_before = server.acceptor();
        let client = without_resumption(client_config(&paths.ca_cert, None).unwrap());

        let (port, handle) = serve_once(&server).await;
        let first = connect(port, "localhost", client.clone()).await.unwrap();
        handle.await.unwrap().unwrap();

        // New SANs → new server cert on disk; reload picks it up.
        ensure_certificates(tmp.path(), &names(&["new.example.com"])).unwrap();
        server.reload().unwrap();
        let (port, handle) = serve_once(&server).await;
        let second = connect(port, "new.example.com", client.clone())
            .await
            .unwrap();
        handle.await.unwrap().unwrap();
        assert_ne!(first, second);

        // An acceptor created before the reload serves the new cert as well.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor_before.accept(tcp).await.unwrap();
            tls.write_all(b"hello").await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let via_old = connect(port, "localhost", client.clone()).await.unwrap();
        task.await.unwrap();
        assert_eq!(via_old, second);

        // A broken file: reload fails, the old cert stays.
        let good = fs::read(&paths.server_cert).unwrap();
        fs::write(&paths.server_cert, b"not a certificate").unwrap();
        assert!(server.reload().is_err());
        // A cert that does not match the key: refused as well.
        let other = tempfile::tempdir().unwrap();
        let other_paths = ensure_certificates(other.path(), &[]).unwrap();
        fs::copy(&other_paths.server_cert, &paths.server_cert).unwrap();
        assert!(server.reload().is_err());
        let (port, handle) = serve_once(&server).await;
        let third = connect(port, "localhost", client).await.unwrap();
        handle.await.unwrap().unwrap();
        assert_eq!(third, second);
        fs::write(&paths.server_cert, good).unwrap();
        server.reload().unwrap();
    }

    #[tokio::test]
    async fn required_client_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = ensure_certificates(tmp.path(), &[]).unwrap();
        let (alice_cert, alice_key) = issue_client_cert(&paths, tmp.path());
        let server = TlsServer::new(TlsSettings {
            client_ca: Some(paths.ca_cert.clone()),
            require_client_cert: true,
            ..server_settings(&paths)
        })
        .unwrap();

        // Without a certificate: refused.
        let anonymous = client_config(&paths.ca_cert, None).unwrap();
        let (port, handle) = serve_once(&server).await;
        let _ = connect(port, "localhost", anonymous.clone()).await;
        assert!(handle.await.unwrap().is_err(), "server must refuse");

        // With a certificate from the same CA: accepted, subject in RFC 2253 form.
        let alice = client_config(&paths.ca_cert, Some((&alice_cert, &alice_key))).unwrap();
        let (port, handle) = serve_once(&server).await;
        connect(port, "localhost", alice.clone()).await.unwrap();
        assert_eq!(
            handle.await.unwrap(),
            Ok(Some("CN=alice,OU=eng,O=Acme".to_string()))
        );

        // With a certificate from another CA: refused.
        let other = tempfile::tempdir().unwrap();
        let other_paths = ensure_certificates(other.path(), &[]).unwrap();
        let (mallory_cert, mallory_key) = issue_client_cert(&other_paths, other.path());
        let mallory = client_config(&paths.ca_cert, Some((&mallory_cert, &mallory_key))).unwrap();
        let (port, handle) = serve_once(&server).await;
        let _ = connect(port, "localhost", mallory).await;
        assert!(handle.await.unwrap().is_err());

        // Optional client certificates: both kinds of clients get in.
        let optional = TlsServer::new(TlsSettings {
            client_ca: Some(paths.ca_cert.clone()),
            require_client_cert: false,
            ..server_settings(&paths)
        })
        .unwrap();
        let (port, handle) = serve_once(&optional).await;
        connect(port, "localhost", anonymous).await.unwrap();
        assert_eq!(handle.await.unwrap(), Ok(None));
        let (port, handle) = serve_once(&optional).await;
        connect(port, "localhost", alice).await.unwrap();
        assert_eq!(
            handle.await.unwrap(),
            Ok(Some("CN=alice,OU=eng,O=Acme".to_string()))
        );
    }

    #[test]
    fn require_without_ca_is_a_config_error() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = ensure_certificates(tmp.path(), &[]).unwrap();
        let result = TlsServer::new(TlsSettings {
            require_client_cert: true,
            ..server_settings(&paths)
        });
        assert!(matches!(result, Err(TlsError::Config(_))));
    }

    #[test]
    fn rfc2253_escaping_and_order() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "Acme, Inc.");
        dn.push(DnType::CommonName, " a+b=c ");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_subject(cert.der()).as_deref(),
            Some(r"CN=\ a\+b\=c\ ,O=Acme\, Inc.,C=US")
        );
        assert_eq!(certificate_subject(b"garbage"), None);
    }

    #[test]
    fn errors_never_quote_key_material() {
        let tmp = tempfile::tempdir().unwrap();
        let key_path = tmp.path().join("k.pem");
        fs::write(
            &key_path,
            "-----BEGIN PRIVATE KEY-----\nSECRETSECRET!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = load_private_key(&key_path).unwrap_err().to_string();
        assert!(!err.contains("SECRET"), "{err}");
    }
}
