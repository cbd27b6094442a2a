//! OpenID Connect bearer-token validation for SASL/OAUTHBEARER and the registry's
//! `Authorization: Bearer` header.
//!
//! [`OidcValidator::discover`] reads `{issuer}/.well-known/openid-configuration` (redirects are
//! not followed), requires the discovered `issuer` to equal the configured one exactly and loads
//! the issuer's JWKS. Access tokens are JWTs (RFC 9068) checked for:
//!
//! - an allowed asymmetric algorithm (RS256/384/512, PS256, ES256/384, EdDSA); `none`, HS* and
//!   anything else is refused before a key is even looked up (no algorithm confusion);
//! - `typ` absent, `at+jwt` (or `application/at+jwt`) or `JWT`; no `crit` header;
//! - a signature by the JWKS key whose `kid` matches, of the key type the algorithm needs;
//! - `iss` equal to the issuer, `aud` containing the audience, `exp` in the future and `nbf`
//!   not in the future, both within the configured clock skew;
//! - the principal claim (default `sub`) being a non-empty string → `User:<value>`.
//!
//! Key rotation: a token whose `kid` is unknown triggers one JWKS refetch, at most one per
//! [`OidcConfig::jwks_min_refresh`] (so forged key ids cannot make us hammer the issuer); a key
//! set older than [`JWKS_MAX_AGE`] is refetched on the next validation, and
//! [`OidcValidator::refresh_jwks`] forces a refetch. A refetch replaces the whole key set, so
//! keys the issuer removed stop validating. Rejection messages are safe to show to clients and
//! never quote the token.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::principal::{Principal, TokenError, TokenFuture, TokenValidator, ValidatedToken};

/// Default [`OidcConfig::principal_claim`].
pub const DEFAULT_PRINCIPAL_CLAIM: &str = "sub";
/// Default [`OidcConfig::clock_skew`].
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// Default [`OidcConfig::jwks_min_refresh`].
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(60);
/// A key set older than this is refetched (rate-limited like any refetch) on the next
/// validation, so keys the issuer removed stop validating even if no new `kid` shows up.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);

/// Longest token accepted; real access tokens are a few KiB.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest discovery document or JWKS accepted.
const MAX_DOCUMENT_LEN: usize = 1024 * 1024;
/// Longest principal name accepted from a claim.
const MAX_PRINCIPAL_LEN: usize = 1024;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How tokens from one OpenID provider are validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    /// The issuer identifier, e.g. `https://login.example.com/realms/kafka`; discovery is read
    /// from `{issuer}/.well-known/openid-configuration` and tokens' `iss` must equal it.
    pub issuer: String,
    /// The audience tokens must contain in `aud`, e.g. `urn:kafka:gateway`.
    pub audience: String,
    /// The claim holding the principal name (default `sub`); must be a string claim.
    pub principal_claim: String,
    /// Tolerance for `exp` / `nbf` (default 30 s).
    pub clock_skew: Duration,
    /// The least time between two JWKS fetches (default 60 s).
    pub jwks_min_refresh: Duration,
}

impl OidcConfig {
    /// A configuration with the defaults: principal claim `sub`, 30 s clock skew, 60 s between
    /// JWKS fetches.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            principal_claim: DEFAULT_PRINCIPAL_CLAIM.to_string(),
            clock_skew: DEFAULT_CLOCK_SKEW,
            jwks_min_refresh: DEFAULT_JWKS_MIN_REFRESH,
        }
    }
}

/// Why discovery or a JWKS fetch failed (operator-facing, not sent to clients).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The configuration is unusable.
    #[error("invalid OIDC configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("cannot build the OIDC HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A request to the issuer failed (connection, timeout, body).
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The issuer answered with a non-success status (redirects are not followed).
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// A discovery document or JWKS could not be used.
    #[error("invalid document from {url}: {reason}")]
    Document {
        /// The URL requested.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The discovery document names another issuer than the configured one.
    #[error("discovered issuer {discovered:?} does not match configured issuer {configured:?}")]
    IssuerMismatch {
        /// The configured issuer.
        configured: String,
        /// The `issuer` of the discovery document.
        discovered: String,
    },
    /// The JWKS holds no key usable for token signatures.
    #[error("JWKS at {url} contains no usable signing key")]
    NoUsableKeys {
        /// The JWKS URL.
        url: String,
    },
}

/// Validates JWT access tokens issued by one OpenID provider; see the module docs.
pub struct OidcValidator {
    config: OidcConfig,
    jwks_uri: String,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When the JWKS was last requested (successfully or not); serialises refetches.
    last_fetch: tokio::sync::Mutex<Instant>,
}

impl fmt::Debug for OidcValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcValidator")
            .field("config", &self.config)
            .field("jwks_uri", &self.jwks_uri)
            .field("keys", &self.snapshot().keys.len())
            .finish_non_exhaustive()
    }
}

/// The usable keys of one JWKS fetch.
struct KeySet {
    keys: Vec<SigningKey>,
    fetched_at: Instant,
}

/// One verification key from the JWKS.
struct SigningKey {
    kid: Option<String>,
    /// The JWK's `alg`, if it names one; the token must then use exactly this algorithm.
    alg: Option<Algorithm>,
    kind: KeyKind,
    key: DecodingKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn verifies(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (
                KeyKind::Rsa,
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256
            ) | (KeyKind::P256, Algorithm::ES256)
                | (KeyKind::P384, Algorithm::ES384)
                | (KeyKind::Ed25519, Algorithm::EdDSA)
        )
    }
}

impl SigningKey {
    fn verifies(&self, alg: Algorithm) -> bool {
        self.kind.verifies(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// The allowed token algorithms, by their `alg` header value.
fn allowed_algorithm(alg: &str) -> Option<Algorithm> {
    Some(match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The parts of the discovery document we use.
#[derive(Deserialize)]
struct ProviderMetadata {
    issuer: String,
    jwks_uri: String,
}

/// The JOSE header fields we check ourselves before handing the token to `jsonwebtoken`.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

fn refuse(message: &str) -> TokenError {
    TokenError(message.to_string())
}

impl OidcValidator {
    /// Runs OIDC discovery for `config.issuer`, checks the discovered issuer and loads the JWKS.
    pub async fn discover(config: OidcConfig) -> Result<Self, OidcError> {
        check_config(&config)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(HTTP_CONNECT_TIMEOUT)
            .build()
            .map_err(OidcError::Client)?;

        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            config.issuer.trim_end_matches('/')
        );
        let body = fetch(&http, &discovery_url).await?;
        let metadata: ProviderMetadata =
            serde_json::from_slice(&body).map_err(|e| OidcError::Document {
                url: discovery_url.clone(),
                reason: e.to_string(),
            })?;
        if metadata.issuer != config.issuer {
            return Err(OidcError::IssuerMismatch {
                configured: config.issuer.clone(),
                discovered: metadata.issuer,
            });
        }
        check_http_url(&metadata.jwks_uri).map_err(|reason| OidcError::Document {
            url: discovery_url.clone(),
            reason: format!("jwks_uri: {reason}"),
        })?;

        let keys = fetch_jwks(&http, &metadata.jwks_uri).await?;
        if keys.is_empty() {
            return Err(OidcError::NoUsableKeys {
                url: metadata.jwks_uri,
            });
        }
        tracing::info!(
            issuer = %config.issuer,
            jwks_uri = %metadata.jwks_uri,
            keys = keys.len(),
            "OIDC issuer discovered"
        );
        let now = Instant::now();
        Ok(Self {
            config,
            jwks_uri: metadata.jwks_uri,
            http,
            keys: RwLock::new(Arc::new(KeySet {
                keys,
                fetched_at: now,
            })),
            last_fetch: tokio::sync::Mutex::new(now),
        })
    }

    /// The configuration this validator was discovered with.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The JWKS URL from the discovery document.
    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }

    /// Refetches the JWKS now, ignoring the rate limit, and returns the number of usable keys.
    /// On error the previous key set stays in use.
    pub async fn refresh_jwks(&self) -> Result<usize, OidcError> {
        let mut last_fetch = self.last_fetch.lock().await;
        self.refetch(&mut last_fetch).await
    }

    /// Validates `token`; the same as [`TokenValidator::validate`].
    pub async fn validate_token(&self, token: &str) -> Result<ValidatedToken, TokenError> {
        let result = self.check(token).await;
        if let Err(e) = &result {
            tracing::debug!(issuer = %self.config.issuer, reason = %e, "bearer token refused");
        }
        result
    }

    async fn check(&self, token: &str) -> Result<ValidatedToken, TokenError> {
        let header = parse_header(token)?;
        let Some(alg) = allowed_algorithm(&header.alg) else {
            return Err(refuse("token algorithm is not allowed"));
        };
        if header.crit.is_some() {
            return Err(refuse("token has unsupported critical header parameters"));
        }
        if header.typ.as_deref().is_some_and(|typ| !accepted_type(typ)) {
            return Err(refuse("token type is not accepted"));
        }

        let mut keys = self.snapshot();
        if keys.fetched_at.elapsed() >= JWKS_MAX_AGE {
            // Refresh a stale set, but never wait behind a refetch already in flight: the
            // current keys are still good enough for a token whose `kid` we know.
            if let Ok(mut last_fetch) = self.last_fetch.try_lock() {
                keys = self.refetch_rate_limited(&mut last_fetch).await;
            }
        }
        let key = match select_key(&keys, header.kid.as_deref(), alg) {
            Err(KeyLookup::Unknown) => {
                // Perhaps the issuer rotated its keys: refetch once (rate-limited).
                keys = self.refetch_if_allowed().await;
                select_key(&keys, header.kid.as_deref(), alg).map_err(KeyLookup::into_error)?
            }
            other => other.map_err(KeyLookup::into_error)?,
        };

        let mut validation = Validation::new(alg);
        validation.leeway = self.config.clock_skew.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| map_jwt_error(&e))?;
        let claims = data.claims;

        // Defence in depth: `jsonwebtoken` also accepts an array `iss`; we want exactly ours.
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(refuse("token issuer does not match"));
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| refuse("token claim exp is invalid"))?;
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .ok_or_else(|| refuse("token claim exp is invalid"))?;
        let principal = principal_from(&claims, &self.config.principal_claim)?;
        Ok(ValidatedToken {
            principal,
            expires_at,
        })
    }

    fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Refetches the JWKS unless one was requested less than `jwks_min_refresh` ago; returns the
    /// current key set either way (including one a concurrent caller just fetched).
    async fn refetch_if_allowed(&self) -> Arc<KeySet> {
        let mut last_fetch = self.last_fetch.lock().await;
        self.refetch_rate_limited(&mut last_fetch).await
    }

    /// [`Self::refetch_if_allowed`] for a caller already holding the fetch lock.
    async fn refetch_rate_limited(&self, last_fetch: &mut Instant) -> Arc<KeySet> {
        if last_fetch.elapsed() >= self.config.jwks_min_refresh {
            if let Err(e) = self.refetch(last_fetch).await {
                tracing::warn!(
                    issuer = %self.config.issuer,
                    error = %e,
                    "JWKS refetch failed; keeping the previous keys"
                );
            }
        } else {
            tracing::debug!(issuer = %self.config.issuer, "JWKS refetch suppressed by rate limit");
        }
        self.snapshot()
    }

    /// Fetches the JWKS and replaces the key set; the caller holds the fetch lock.
    async fn refetch(&self, last_fetch: &mut Instant) -> Result<usize, OidcError> {
        *last_fetch = Instant::now();
        let keys = fetch_jwks(&self.http, &self.jwks_uri).await?;
        let count = keys.len();
        if count == 0 {
            tracing::warn!(jwks_uri = %self.jwks_uri, "JWKS holds no usable signing key");
        } else {
            tracing::info!(jwks_uri = %self.jwks_uri, keys = count, "JWKS refreshed");
        }
        let fresh = Arc::new(KeySet {
            keys,
            fetched_at: Instant::now(),
        });
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(count)
    }
}

impl TokenValidator for OidcValidator {
    fn validate<'a>(&'a self, token: &'a str) -> TokenFuture<'a> {
        Box::pin(self.validate_token(token))
    }
}

fn check_config(config: &OidcConfig) -> Result<(), OidcError> {
    check_http_url(&config.issuer)
        .map_err(|reason| OidcError::Config(format!("issuer: {reason}")))?;
    if config.audience.is_empty() {
        return Err(OidcError::Config("audience is empty".to_string()));
    }
    if config.principal_claim.is_empty() {
        return Err(OidcError::Config("principal claim is empty".to_string()));
    }
    Ok(())
}

/// Accepts absolute `https` URLs, and `http` ones with a warning unless the host is loopback.
fn check_http_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                tracing::warn!(
                    url,
                    "OIDC endpoint uses plain http; use https outside tests"
                );
            }
            Ok(())
        }
        other => Err(format!("{url:?} has unsupported scheme {other:?}")),
    }
}

/// GETs `url` and returns the body, at most [`MAX_DOCUMENT_LEN`] bytes.
async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, OidcError> {
    let transport = |source| OidcError::Http {
        url: url.to_string(),
        source,
    };
    let too_large = || OidcError::Document {
        url: url.to_string(),
        reason: format!("larger than {MAX_DOCUMENT_LEN} bytes"),
    };
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(OidcError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_DOCUMENT_LEN as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_LEN {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Fetches the JWKS and keeps the keys usable for signature verification; other keys
/// (encryption keys, symmetric keys, unsupported curves or types) are skipped.
async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Vec<SigningKey>, OidcError> {
    #[derive(Deserialize)]
    struct RawJwks {
        keys: Vec<Value>,
    }
    let body = fetch(http, url).await?;
    let raw: RawJwks = serde_json::from_slice(&body).map_err(|e| OidcError::Document {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let mut keys = Vec::with_capacity(raw.keys.len());
    for value in raw.keys {
        // One odd key (say an unknown `kty`) must not make the whole set unusable.
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            tracing::debug!(jwks_uri = url, "skipping unparsable JWK");
            continue;
        };
        match signing_key(&jwk) {
            Some(key) => keys.push(key),
            None => {
                tracing::debug!(jwks_uri = url, kid = ?jwk.common.key_id, "skipping JWK not usable for signatures")
            }
        }
    }
    Ok(keys)
}

fn signing_key(jwk: &Jwk) -> Option<SigningKey> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::RS384) => Some(Algorithm::RS384),
        Some(KeyAlgorithm::RS512) => Some(Algorithm::RS512),
        Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::ES384) => Some(Algorithm::ES384),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        // HS* (never from a JWKS), encryption algorithms, PS384/512, unknown ones.
        Some(_) => return None,
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return None,
        },
        AlgorithmParameters::OctetKey(_) => return None,
    };
    if alg.is_some_and(|alg| !kind.verifies(alg)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(SigningKey {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        key,
    })
}

enum KeyLookup {
    /// No key has the token's `kid` (or, without `kid`, none fits the algorithm).
    Unknown,
    /// The key with that `kid` is of another type or pinned to another algorithm.
    WrongAlgorithm,
    /// No `kid`, and several keys would fit.
    Ambiguous,
}

impl KeyLookup {
    fn into_error(self) -> TokenError {
        refuse(match self {
            KeyLookup::Unknown => "unknown signing key",
            KeyLookup::WrongAlgorithm => "token algorithm does not match the signing key",
            KeyLookup::Ambiguous => "token has no key id",
        })
    }
}

fn select_key<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'k SigningKey, KeyLookup> {
    match kid {
        Some(kid) => {
            let mut same_kid = keys
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .peekable();
            if same_kid.peek().is_none() {
                return Err(KeyLookup::Unknown);
            }
            same_kid
                .find(|k| k.verifies(alg))
                .ok_or(KeyLookup::WrongAlgorithm)
        }
        None => {
            let mut fitting = keys.keys.iter().filter(|k| k.verifies(alg));
            match (fitting.next(), fitting.next()) {
                (Some(key), None) => Ok(key),
                (None, _) => Err(KeyLookup::Unknown),
                (Some(_), Some(_)) => Err(KeyLookup::Ambiguous),
            }
        }
    }
}

fn parse_header(token: &str) -> Result<RawHeader, TokenError> {
    let malformed = || refuse("token is malformed");
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(malformed());
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
    serde_json::from_slice(&bytes).map_err(|_| malformed())
}

fn accepted_type(typ: &str) -> bool {
    ["at+jwt", "application/at+jwt", "JWT"]
        .iter()
        .any(|t| typ.eq_ignore_ascii_case(t))
}

fn principal_from(claims: &Map<String, Value>, claim: &str) -> Result<Principal, TokenError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Err(TokenError(format!("token is missing the {claim} claim"))),
        Some(Value::String(name))
            if !name.is_empty()
                && name.len() <= MAX_PRINCIPAL_LEN
                && !name.chars().any(char::is_control) =>
        {
            Ok(Principal::user(name.clone()))
        }
        Some(_) => Err(TokenError(format!(
            "token claim {claim} is not a valid principal name"
        ))),
    }
}

fn map_jwt_error(error: &jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => refuse("token expired"),
        ErrorKind::ImmatureSignature => refuse("token is not yet valid"),
        ErrorKind::InvalidAudience => refuse("token audience does not match"),
        ErrorKind::InvalidIssuer => refuse("token issuer does not match"),
        ErrorKind::InvalidSignature => refuse("token signature is invalid"),
        ErrorKind::InvalidAlgorithm => refuse("token algorithm does not match the signing key"),
        // The claim names come from our own required-claims list, not from the token.
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => refuse("token is missing the exp claim"),
            "iss" => refuse("token is missing the iss claim"),
            "aud" => refuse("token is missing the aud claim"),
            _ => refuse("token is missing a required claim"),
        },
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "exp" => refuse("token claim exp is invalid"),
            "nbf" => refuse("token claim nbf is invalid"),
            _ => refuse("token has an invalid claim"),
        },
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => refuse("token is malformed"),
        _ => refuse("token is invalid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use axum::Router;
    use axum::extract::State;
    use axum::routing::get;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const AUDIENCE: &str = "urn:kafka:gateway";

    struct TestKey {
        kid: String,
        alg: Algorithm,
        encoding: EncodingKey,
        jwk: Value,
    }

    /// Reads one DER TLV: (tag, content, rest).
    fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let (bytes, after) = rest.split_at_checked(usize::from(first & 0x7f))?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let (content, rest) = rest.split_at_checked(len)?;
        Some((tag, content, rest))
    }

    /// PKCS#8 PrivateKeyInfo → the inner PKCS#1 RSAPrivateKey, which `jsonwebtoken` wants.
    fn pkcs8_to_pkcs1(der: &[u8]) -> Vec<u8> {
        let (_, info, _) = der_tlv(der).expect("PrivateKeyInfo");
        let (_, _, rest) = der_tlv(info).expect("version");
        let (_, _, rest) = der_tlv(rest).expect("algorithm");
        let (tag, key, _) = der_tlv(rest).expect("privateKey");
        assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
        key.to_vec()
    }

    fn with_kid(encoding: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
        let mut jwk = Jwk::from_encoding_key(encoding, alg).expect("jwk");
        jwk.common.key_id = Some(kid.to_string());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        serde_json::to_value(jwk).expect("jwk json")
    }

    fn rsa_key(kid: &str) -> TestKey {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("generate RSA");
        let pkcs8 = pair.as_der().expect("pkcs8");
        let encoding = EncodingKey::from_rsa_der(&pkcs8_to_pkcs1(pkcs8.as_ref()));
        let jwk = with_kid(&encoding, Algorithm::RS256, kid);
        TestKey {
            kid: kid.to_string(),
            alg: Algorithm::RS256,
            encoding,
            jwk,
        }
    }

    fn ec_key(kid: &str) -> TestKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("generate EC");
        let pkcs8 = pair.to_pkcs8v1().expect("pkcs8");
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let jwk = with_kid(&encoding, Algorithm::ES256, kid);
        TestKey {
            kid: kid.to_string(),
            alg: Algorithm::ES256,
            encoding,
            jwk,
        }
    }

    #[derive(Clone)]
    struct IssuerState {
        discovery: Value,
        jwks: Arc<Mutex<Value>>,
        jwks_fetches: Arc<AtomicUsize>,
    }

    /// A tiny issuer serving discovery and a JWKS that tests can swap.
    struct TestIssuer {
        url: String,
        jwks: Arc<Mutex<Value>>,
        jwks_fetches: Arc<AtomicUsize>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Drop for TestIssuer {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    impl TestIssuer {
        async fn start(keys: &[&TestKey]) -> Self {
            Self::start_claiming(keys, None).await
        }

        /// `claimed_issuer`: what discovery says the issuer is (default: the real URL).
        async fn start_claiming(keys: &[&TestKey], claimed_issuer: Option<&str>) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let jwks = Arc::new(Mutex::new(json!({ "keys": [] })));
            let jwks_fetches = Arc::new(AtomicUsize::new(0));
            let state = IssuerState {
                discovery: json!({
                    "issuer": claimed_issuer.unwrap_or(&url),
                    "jwks_uri": format!("{url}/jwks"),
                    "token_endpoint": format!("{url}/token"),
                }),
                jwks: Arc::clone(&jwks),
                jwks_fetches: Arc::clone(&jwks_fetches),
            };
            let app = Router::new()
                .route(
                    "/.well-known/openid-configuration",
                    get(|State(s): State<IssuerState>| async move { axum::Json(s.discovery) }),
                )
                .route(
                    "/jwks",
                    get(|State(s): State<IssuerState>| async move {
                        s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                        let body = s.jwks.lock().expect("jwks lock").clone();
                        axum::Json(body)
                    }),
                )
                .with_state(state);
            let server = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            let issuer = Self {
                url,
                jwks,
                jwks_fetches,
                server,
            };
            issuer.publish(keys);
            issuer
        }

        fn publish(&self, keys: &[&TestKey]) {
            let keys: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
            *self.jwks.lock().expect("jwks lock") = json!({ "keys": keys });
        }

        fn fetches(&self) -> usize {
            self.jwks_fetches.load(Ordering::SeqCst)
        }

        fn config(&self) -> OidcConfig {
            OidcConfig::new(self.url.clone(), AUDIENCE)
        }

        async fn validator(&self) -> OidcValidator {
            OidcValidator::discover(self.config())
                .await
                .expect("discover")
        }

        fn claims(&self) -> Value {
            let now = jsonwebtoken::get_current_timestamp();
            json!({
                "iss": self.url,
                "aud": AUDIENCE,
                "sub": "svc-orders",
                "iat": now,
                "exp": now + 300,
            })
        }
    }

    fn mint(key: &TestKey, claims: &Value) -> String {
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".to_string());
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("encode")
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
    }

    /// Asserts the token is refused with `expected`, and that the message does not quote it.
    async fn assert_refused(validator: &OidcValidator, token: &str, expected: &str) {
        let err = validator
            .validate(token)
            .await
            .expect_err("token must be refused");
        assert_eq!(err.0, expected);
        if token.len() >= 8 {
            assert!(!err.0.contains(token), "error quotes the token");
        }
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!err.0.contains(part), "error quotes the token");
        }
    }

    #[test]
    fn config_defaults() {
        let config = OidcConfig::new("https://idp.example.com", "urn:kafka:gateway");
        assert_eq!(config.principal_claim, "sub");
        assert_eq!(config.clock_skew, Duration::from_secs(30));
        assert_eq!(config.jwks_min_refresh, Duration::from_secs(60));
    }

    #[tokio::test]
    async fn bad_configuration_is_refused_before_any_request() {
        for config in [
            OidcConfig::new("not a url", AUDIENCE),
            OidcConfig::new("ftp://idp.example.com", AUDIENCE),
            OidcConfig::new("https://idp.example.com", ""),
        ] {
            let err = OidcValidator::discover(config).await.expect_err("refused");
            assert!(matches!(err, OidcError::Config(_)), "{err}");
        }
    }

    #[tokio::test]
    async fn valid_rsa_token_yields_principal_and_expiry() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        assert_eq!(validator.jwks_uri(), format!("{}/jwks", issuer.url));
        let claims = issuer.claims();
        let validated = validator
            .validate(&mint(&key, &claims))
            .await
            .expect("valid token");
        assert_eq!(validated.principal, Principal::user("svc-orders"));
        let exp = claims["exp"].as_u64().expect("exp");
        assert_eq!(validated.expires_at, UNIX_EPOCH + Duration::from_secs(exp));
        assert_eq!(issuer.fetches(), 1);
    }

    #[tokio::test]
    async fn valid_ec_token_with_typ_jwt_and_audience_list() {
        let key = ec_key("ec-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let mut claims = issuer.claims();
        claims["aud"] = json!(["urn:other", AUDIENCE]);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".to_string());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("encode");
        let validated = validator.validate(&token).await.expect("valid token");
        assert_eq!(validated.principal, Principal::user("svc-orders"));

        // Without typ and without kid (single fitting key) is fine too.
        let mut header = Header::new(Algorithm::ES256);
        header.typ = None;
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("encode");
        validator.validate(&token).await.expect("valid token");
    }

    #[tokio::test]
    async fn expiry_honours_the_clock_skew() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let now = jsonwebtoken::get_current_timestamp();

        let mut claims = issuer.claims();
        claims["exp"] = json!(now - 120);
        assert_refused(&validator, &mint(&key, &claims), "token expired").await;

        // Expired 10 s ago: inside the 30 s skew.
        claims["exp"] = json!(now - 10);
        validator
            .validate(&mint(&key, &claims))
            .await
            .expect("within skew");

        let mut no_exp = issuer.claims();
        no_exp.as_object_mut().expect("object").remove("exp");
        assert_refused(
            &validator,
            &mint(&key, &no_exp),
            "token is missing the exp claim",
        )
        .await;
    }

    #[tokio::test]
    async fn not_yet_valid_is_refused() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = issuer.claims();
        claims["nbf"] = json!(now + 120);
        assert_refused(&validator, &mint(&key, &claims), "token is not yet valid").await;
        claims["nbf"] = json!(now + 10);
        validator
            .validate(&mint(&key, &claims))
            .await
            .expect("within skew");
    }

    #[tokio::test]
    async fn wrong_audience_is_refused() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let mut claims = issuer.claims();
        claims["aud"] = json!("urn:kafka:other");
        assert_refused(
            &validator,
            &mint(&key, &claims),
            "token audience does not match",
        )
        .await;
        claims["aud"] = json!(["urn:a", "urn:b"]);
        assert_refused(
            &validator,
            &mint(&key, &claims),
            "token audience does not match",
        )
        .await;
        claims.as_object_mut().expect("object").remove("aud");
        assert_refused(
            &validator,
            &mint(&key, &claims),
            "token is missing the aud claim",
        )
        .await;
    }

    #[tokio::test]
    async fn wrong_issuer_is_refused() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let mut claims = issuer.claims();
        claims["iss"] = json!("https://evil.example.com");
        assert_refused(
            &validator,
            &mint(&key, &claims),
            "token issuer does not match",
        )
        .await;
        claims["iss"] = json!(format!("{}/", issuer.url));
        assert_refused(
            &validator,
            &mint(&key, &claims),
            "token issuer does not match",
        )
        .await;
    }

    #[tokio::test]
    async fn discovery_with_another_issuer_is_an_error() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start_claiming(&[&key], Some("https://evil.example.com")).await;
        let err = OidcValidator::discover(issuer.config())
            .await
            .expect_err("issuer mismatch");
        assert!(matches!(err, OidcError::IssuerMismatch { .. }), "{err}");
    }

    #[tokio::test]
    async fn discovery_without_usable_keys_is_an_error() {
        let issuer = TestIssuer::start(&[]).await;
        *issuer.jwks.lock().expect("jwks lock") = json!({
            "keys": [
                { "kty": "oct", "k": "c2VjcmV0", "kid": "hmac" },
                { "kty": "weird", "kid": "unknown-type" },
            ]
        });
        let err = OidcValidator::discover(issuer.config())
            .await
            .expect_err("no usable keys");
        assert!(matches!(err, OidcError::NoUsableKeys { .. }), "{err}");
    }

    #[tokio::test]
    async fn forged_signature_with_same_kid_is_refused() {
        let key = rsa_key("rsa-1");
        let forger = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let claims = issuer.claims();
        assert_refused(
            &validator,
            &mint(&forger, &claims),
            "token signature is invalid",
        )
        .await;

        // A genuine header and signature with tampered claims.
        let genuine = mint(&key, &claims);
        let mut parts: Vec<&str> = genuine.split('.').collect();
        let mut tampered = claims.clone();
        tampered["sub"] = json!("admin");
        let payload = b64(&tampered);
        parts[1] = &payload;
        assert_refused(&validator, &parts.join("."), "token signature is invalid").await;
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let claims = b64(&issuer.claims());
        for alg in ["none", "None", "NONE"] {
            let header = b64(&json!({ "alg": alg, "kid": "rsa-1", "typ": "at+jwt" }));
            assert_refused(
                &validator,
                &format!("{header}.{claims}."),
                "token algorithm is not allowed",
            )
            .await;
        }
    }

    #[tokio::test]
    async fn hs256_with_the_public_key_as_secret_is_refused() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let claims = issuer.claims();
        let n = key.jwk["n"].as_str().expect("n").to_string();
        let secrets = [
            serde_json::to_vec(&key.jwk).expect("jwk bytes"),
            n.into_bytes(),
        ];
        for secret in &secrets {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let mut header = Header::new(alg);
                header.kid = Some(key.kid.clone());
                let token =
                    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
                        .expect("encode");
                assert_refused(&validator, &token, "token algorithm is not allowed").await;
            }
        }
    }

    #[tokio::test]
    async fn key_type_must_match_the_algorithm() {
        let rsa = rsa_key("rsa-1");
        let ec = ec_key("ec-1");
        let issuer = TestIssuer::start(&[&rsa, &ec]).await;
        let validator = issuer.validator().await;
        // An RSA signature claiming the EC key's kid.
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("ec-1".to_string());
        let token = jsonwebtoken::encode(&header, &issuer.claims(), &rsa.encoding).expect("encode");
        assert_refused(
            &validator,
            &token,
            "token algorithm does not match the signing key",
        )
        .await;
        // A JWK pinned to RS256 does not verify PS256.
        let mut header = Header::new(Algorithm::PS256);
        header.kid = Some("rsa-1".to_string());
        let token = jsonwebtoken::encode(&header, &issuer.claims(), &rsa.encoding).expect("encode");
        assert_refused(
            &validator,
            &token,
            "token algorithm does not match the signing key",
        )
        .await;
    }

    #[tokio::test]
    async fn header_type_and_crit_are_checked() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let claims = issuer.claims();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("dpop+jwt".to_string());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("encode");
        assert_refused(&validator, &token, "token type is not accepted").await;

        // `crit` cannot be set through `Header`; the check happens before the signature.
        let header = b64(&json!({ "alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1 }));
        let token = format!("{header}.{}.c2ln", b64(&claims));
        assert_refused(
            &validator,
            &token,
            "token has unsupported critical header parameters",
        )
        .await;
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let validator = issuer.validator().await;
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        for token in ["", "abc", "a.b", "a.b.c.d", "!!!.b.c", long.as_str()] {
            assert_refused(&validator, token, "token is malformed").await;
        }
        // A well-formed header with garbage after it fails at the signature, before the
        // payload is even parsed.
        let header = b64(&json!({ "alg": "RS256", "kid": "rsa-1" }));
        assert_refused(
            &validator,
            &format!("{header}.not-json.c2ln"),
            "token signature is invalid",
        )
        .await;
    }

    #[tokio::test]
    async fn principal_claim_is_configurable_and_must_be_a_string() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let mut config = issuer.config();
        config.principal_claim = "client_id".to_string();
        let validator = OidcValidator::discover(config).await.expect("discover");
        let mut claims = issuer.claims();
        claims["client_id"] = json!("gateway-test");
        let validated = validator
            .validate(&mint(&key, &claims))
            .await
            .expect("valid");
        assert_eq!(validated.principal.to_string(), "User:gateway-test");

        claims["client_id"] = json!(42);
        assert_refused(
            &validator,
            &mint(&key, &claims),
            "token claim client_id is not a valid principal name",
        )
        .await;
        claims["client_id"] = json!("");
        assert_refused(
            &validator,
            &mint(&key, &claims),
            "token claim client_id is not a valid principal name",
        )
        .await;
        claims["client_id"] = json!("bad\nname");
        assert_refused(
            &validator,
            &mint(&key, &claims),
            "token claim client_id is not a valid principal name",
        )
        .await;
        claims.as_object_mut().expect("object").remove("client_id");
        assert_refused(
            &validator,
            &mint(&key, &claims),
            "token is missing the client_id claim",
        )
        .await;
    }

    #[tokio::test]
    async fn unknown_kid_refetches_and_picks_up_a_rotated_key() {
        let old = rsa_key("2025-old");
        let new = ec_key("2026-new");
        let issuer = TestIssuer::start(&[&old]).await;
        let mut config = issuer.config();
        config.jwks_min_refresh = Duration::ZERO;
        let validator = OidcValidator::discover(config).await.expect("discover");
        let claims = issuer.claims();
        validator
            .validate(&mint(&old, &claims))
            .await
            .expect("old key valid");
        assert_eq!(issuer.fetches(), 1);

        // The issuer rotates: the new key replaces the old one.
        issuer.publish(&[&new]);
        let validated = validator
            .validate(&mint(&new, &claims))
            .await
            .expect("rotated key picked up");
        assert_eq!(validated.principal, Principal::user("svc-orders"));
        assert_eq!(issuer.fetches(), 2);

        // The removed key no longer validates after that refresh.
        assert_refused(&validator, &mint(&old, &claims), "unknown signing key").await;
    }

    #[tokio::test]
    async fn refetch_is_rate_limited() {
        let key = rsa_key("rsa-1");
        let rotated = rsa_key("rsa-2");
        let issuer = TestIssuer::start(&[&key]).await;
        let mut config = issuer.config();
        config.jwks_min_refresh = Duration::from_millis(800);
        let validator = Arc::new(OidcValidator::discover(config).await.expect("discover"));
        let claims = issuer.claims();
        assert_eq!(issuer.fetches(), 1);

        // Right after discovery, forged kids cause no fetch at all, even concurrently.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let validator = Arc::clone(&validator);
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(format!("forged-{i}"));
            let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("encode");
            tasks.push(tokio::spawn(
                async move { validator.validate(&token).await },
            ));
        }
        for task in tasks {
            let err = task.await.expect("join").expect_err("forged kid");
            assert_eq!(err.0, "unknown signing key");
        }
        assert_eq!(issuer.fetches(), 1);

        // A genuine rotation inside the window is not seen yet ...
        issuer.publish(&[&key, &rotated]);
        assert_refused(&validator, &mint(&rotated, &claims), "unknown signing key").await;
        assert_eq!(issuer.fetches(), 1);

        // ... but once the window has passed, one refetch picks it up; further unknown kids
        // within the new window do not fetch again.
        tokio::time::sleep(Duration::from_millis(900)).await;
        validator
            .validate(&mint(&rotated, &claims))
            .await
            .expect("rotated key after window");
        assert_eq!(issuer.fetches(), 2);
        for i in 0..5 {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(format!("forged-again-{i}"));
            let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("encode");
            assert_refused(&validator, &token, "unknown signing key").await;
        }
        assert_eq!(issuer.fetches(), 2);
    }

    #[tokio::test]
    async fn forced_refresh_drops_removed_keys() {
        let key = rsa_key("rsa-1");
        let other = rsa_key("rsa-2");
        let issuer = TestIssuer::start(&[&key, &other]).await;
        let validator = issuer.validator().await;
        let claims = issuer.claims();
        validator
            .validate(&mint(&key, &claims))
            .await
            .expect("valid");
        issuer.publish(&[&other]);
        assert_eq!(validator.refresh_jwks().await.expect("refresh"), 1);
        assert_refused(&validator, &mint(&key, &claims), "unknown signing key").await;
        validator
            .validate(&mint(&other, &claims))
            .await
            .expect("remaining key valid");
    }

    #[tokio::test]
    async fn failed_refetch_keeps_the_previous_keys() {
        let key = rsa_key("rsa-1");
        let issuer = TestIssuer::start(&[&key]).await;
        let mut config = issuer.config();
        config.jwks_min_refresh = Duration::ZERO;
        let validator = OidcValidator::discover(config).await.expect("discover");
        *issuer.jwks.lock().expect("jwks lock") = json!("not a jwks");
        assert!(validator.refresh_jwks().await.is_err());
        validator
            .validate(&mint(&key, &issuer.claims()))
            .await
            .expect("old keys still in use");
    }
}
