//! The server side of SASL: [`Authenticator`] (shared, cheap to clone) starts one
//! [`SaslSession`] per authentication exchange for PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or
//! OAUTHBEARER, and answers HTTP Basic checks for the registry ([`Authenticator::verify_plain`]).
//!
//! Failures are shaped so a client learns nothing it should not: an unknown user and a wrong
//! password give the same [`AuthError::InvalidCredentials`] with Kafka's wording, SCRAM runs a
//! fake exchange for unknown users (deterministic fake salt, same message shape), and PLAIN
//! runs PBKDF2 against a fake credential. Every failed attempt counts toward a per-client-IP
//! limit ([`AuthenticatorConfig::max_failures_per_minute`], fixed one-minute windows, bounded
//! table); a limited address gets [`AuthError::RateLimited`] until its window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::plain::{self, DEFAULT_PLAIN_CACHE_TTL, PlainCache};
use crate::principal::{Principal, TokenValidator};
use crate::scram::{self, DEFAULT_ITERATIONS, ScramCredential, ScramHash, ScramServer};
use crate::users::UserStore;

/// A SASL mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    /// `PLAIN` (RFC 4616).
    #[serde(rename = "PLAIN")]
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677).
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628).
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer,
}

impl Mechanism {
    /// All mechanisms, in preference order of [`AuthenticatorConfig::default`].
    pub const ALL: [Mechanism; 4] = [
        Mechanism::ScramSha512,
        Mechanism::ScramSha256,
        Mechanism::OAuthBearer,
        Mechanism::Plain,
    ];

    /// Parses a mechanism name (case-sensitive, as Kafka does).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Self::Plain),
            "SCRAM-SHA-256" => Some(Self::ScramSha256),
            "SCRAM-SHA-512" => Some(Self::ScramSha512),
            "OAUTHBEARER" => Some(Self::OAuthBearer),
            _ => None,
        }
    }

    /// The IANA name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Kafka's `ScramMechanism` wire code (AlterUserScramCredentials): 1 = SHA-256,
    /// 2 = SHA-512; `None` for non-SCRAM mechanisms.
    pub fn scram_code(self) -> Option<i8> {
        match self {
            Self::ScramSha256 => Some(1),
            Self::ScramSha512 => Some(2),
            Self::Plain | Self::OAuthBearer => None,
        }
    }

    /// The mechanism of a Kafka `ScramMechanism` wire code.
    pub fn from_scram_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::ScramSha256),
            2 => Some(Self::ScramSha512),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why authentication failed. [`AuthError::client_message`] is what the client may see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The mechanism is unknown or not enabled.
    #[error("unsupported SASL mechanism {mechanism}")]
    UnsupportedMechanism {
        /// What the client asked for.
        mechanism: String,
        /// What is enabled.
        enabled: Vec<&'static str>,
    },
    /// Unknown user or wrong password/proof (indistinguishable on purpose).
    #[error("invalid credentials with SASL mechanism {mechanism}")]
    InvalidCredentials {
        /// The mechanism used.
        mechanism: &'static str,
    },
    /// The bearer token was refused by the validator.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// Why (safe for the client; never quotes the token).
        reason: String,
    },
    /// The client message could not be parsed (never quotes secrets).
    #[error("malformed SASL message: {0}")]
    Malformed(String),
    /// Too many failed attempts from this address.
    #[error("too many failed authentication attempts")]
    RateLimited,
    /// A step was sent after the exchange completed or failed.
    #[error("the SASL exchange is already finished")]
    ExchangeFinished,
    /// Something on our side failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// A message safe for the client, in Kafka's wording where Kafka has one.
    pub fn client_message(&self) -> String {
        match self {
            Self::UnsupportedMechanism { mechanism, enabled } => format!(
                "Unsupported SASL mechanism {mechanism}; enabled mechanisms are {enabled:?}"
            ),
            Self::InvalidCredentials { mechanism } => format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
            ),
            Self::InvalidToken { reason } => format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism OAUTHBEARER: {reason}"
            ),
            Self::Malformed(why) => format!("Authentication failed: {why}"),
            Self::RateLimited => {
                "Authentication failed: too many failed attempts from this address; try again later"
                    .to_string()
            }
            Self::ExchangeFinished => {
                "Authentication failed: unexpected SASL message after the exchange".to_string()
            }
            Self::Internal(_) => "Authentication failed: internal error".to_string(),
        }
    }

    /// Whether this failure counts toward the per-IP limit.
    fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            Self::InvalidCredentials { .. } | Self::InvalidToken { .. } | Self::Malformed(_)
        )
    }
}

/// Settings of an [`Authenticator`].
#[derive(Debug, Clone)]
pub struct AuthenticatorConfig {
    /// Enabled mechanisms (OAUTHBEARER also needs a token validator).
    pub mechanisms: Vec<Mechanism>,
    /// Kafka's `connections.max.reauth.ms`: sessions end after this (`None`: never, except
    /// at token expiry).
    pub session_lifetime: Option<Duration>,
    /// Failed attempts per client IP per minute before [`AuthError::RateLimited`].
    pub max_failures_per_minute: u32,
}

impl Default for AuthenticatorConfig {
    fn default() -> Self {
        Self {
            mechanisms: Mechanism::ALL.to_vec(),
            session_lifetime: None,
            max_failures_per_minute: 20,
        }
    }
}

/// Most client addresses tracked by the rate limiter.
const MAX_TRACKED_IPS: usize = 65_536;
const WINDOW: Duration = Duration::from_secs(60);

/// Fixed-window failure counter per client IP.
struct RateLimiter {
    max: u32,
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn limited(&self, ip: IpAddr) -> bool {
        if self.max == 0 {
            return false;
        }
        let mut t = self.lock();
        match t.get(&ip) {
            Some((start, _)) if start.elapsed() >= WINDOW => {
                t.remove(&ip);
                false
            }
            Some((_, n)) => *n >= self.max,
            None => false,
        }
    }

    fn record_failure(&self, ip: IpAddr) {
        let mut t = self.lock();
        if t.len() >= MAX_TRACKED_IPS && !t.contains_key(&ip) {
            t.retain(|_, (start, _)| start.elapsed() < WINDOW);
            if t.len() >= MAX_TRACKED_IPS {
                // Still full of live windows: forget the oldest half.
                let mut starts: Vec<Instant> = t.values().map(|(s, _)| *s).collect();
                starts.sort();
                let cut = starts[starts.len() / 2];
                t.retain(|_, (start, _)| *start > cut);
            }
        }
        let e = t.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 = e.1.saturating_add(1);
        if e.1 == self.max {
            warn!(client = %ip, "authentication rate limit reached");
        }
    }
}

struct Inner {
    config: AuthenticatorConfig,
    users: UserStore,
    tokens: Option<Arc<dyn TokenValidator>>,
    limiter: RateLimiter,
    plain_cache: PlainCache,
    /// Key of the fake salts and credentials used for unknown users.
    fake_key: [u8; 32],
}

/// Authenticates SASL exchanges. Cloning is cheap; clones share caches and limits.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mechanisms", &self.mechanisms())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator over `users`, with `tokens` for OAUTHBEARER.
    pub fn new(
        config: AuthenticatorConfig,
        users: UserStore,
        tokens: Option<Arc<dyn TokenValidator>>,
    ) -> Self {
        let mut fake_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut fake_key);
        Self {
            inner: Arc::new(Inner {
                limiter: RateLimiter {
                    max: config.max_failures_per_minute,
                    table: Mutex::new(HashMap::new()),
                },
                config,
                users,
                tokens,
                plain_cache: PlainCache::new(DEFAULT_PLAIN_CACHE_TTL),
                fake_key,
            }),
        }
    }

    /// The user table.
    pub fn users(&self) -> &UserStore {
        &self.inner.users
    }

    fn enabled(&self, m: Mechanism) -> bool {
        self.inner.config.mechanisms.contains(&m)
            && (m != Mechanism::OAuthBearer || self.inner.tokens.is_some())
    }

    /// The enabled mechanism names, for the SaslHandshake answer.
    pub fn mechanisms(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for m in &self.inner.config.mechanisms {
            if self.enabled(*m) && !out.contains(&m.name()) {
                out.push(m.name());
            }
        }
        out
    }

    /// Starts an exchange for `mechanism` from `client`.
    pub fn start(&self, mechanism: &str, client: IpAddr) -> Result<SaslSession, AuthError> {
        if self.inner.limiter.limited(client) {
            return Err(AuthError::RateLimited);
        }
        let m = Mechanism::parse(mechanism)
            .filter(|m| self.enabled(*m))
            .ok_or_else(|| AuthError::UnsupportedMechanism {
                mechanism: mechanism.chars().take(64).collect(),
                enabled: self.mechanisms(),
            })?;
        Ok(SaslSession {
            auth: self.clone(),
            client,
            mechanism: m,
            state: State::Start,
            attempted_user: None,
        })
    }

    /// Records a failure for the rate limit and passes the error on.
    fn fail(&self, client: IpAddr, e: AuthError) -> AuthError {
        if e.counts_as_failure() {
            self.inner.limiter.record_failure(client);
        }
        e
    }

    /// Checks a user name and password (SASL/PLAIN, HTTP Basic) against the user's stored
    /// SCRAM credential. PBKDF2 runs on the blocking pool; successes are cached briefly.
    pub async fn verify_plain(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Principal, AuthError> {
        if self.inner.limiter.limited(client) {
            return Err(AuthError::RateLimited);
        }
        let result = self.check_password(user, password).await;
        match result {
            Ok(()) => Ok(Principal::user(user)),
            Err(e) => {
                debug!(user, client = %client, "PLAIN authentication failed");
                Err(self.fail(client, e))
            }
        }
    }

    async fn check_password(&self, user: &str, password: &str) -> Result<(), AuthError> {
        let invalid = AuthError::InvalidCredentials {
            mechanism: Mechanism::Plain.name(),
        };
        let users = &self.inner.users;
        let generation = users.generation(user);
        let credential = users
            .get(user, Mechanism::ScramSha512)
            .or_else(|| users.get(user, Mechanism::ScramSha256));
        if credential.is_some() && self.inner.plain_cache.hit(user, password, generation) {
            return Ok(());
        }
        let known = credential.is_some();
        let credential = match credential {
            Some(c) => c,
            None => self.fake_credential(user, Mechanism::ScramSha512),
        };
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || credential.verify_password(&pw))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        if ok && known {
            self.inner.plain_cache.insert(user, password, generation);
            Ok(())
        } else {
            Err(invalid)
        }
    }

    /// A deterministic stand-in credential for an unknown user (per process): salt derived
    /// from a secret key and the user name, keys that no password produces.
    fn fake_credential(&self, user: &str, mechanism: Mechanism) -> ScramCredential {
        let salt = self.fake_salt(user, mechanism);
        let len = if mechanism == Mechanism::ScramSha256 {
            32
        } else {
            64
        };
        let stored = scram::hmac_sha256(&self.inner.fake_key, &[b"stored", user.as_bytes()]);
        ScramCredential {
            mechanism,
            salt,
            iterations: DEFAULT_ITERATIONS,
            stored_key: stored.iter().cycle().take(len).copied().collect(),
            server_key: vec![0; len],
        }
    }

    fn fake_salt(&self, user: &str, mechanism: Mechanism) -> Vec<u8> {
        scram::hmac_sha256(
            &self.inner.fake_key,
            &[b"salt", mechanism.name().as_bytes(), &[0], user.as_bytes()],
        )
        .to_vec()
    }
}

/// The answer to one [`SaslSession::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this challenge and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated.
    Done {
        /// Who the connection now acts as.
        principal: Principal,
        /// The last server message (SCRAM's `v=`), empty for PLAIN and OAUTHBEARER.
        server_final: Vec<u8>,
        /// Kafka's `session_lifetime_ms` (0 = no limit).
        session_lifetime_ms: i64,
    },
}

enum State {
    Start,
    Scram(Box<ScramServer>, String),
    /// OAUTHBEARER sent `{"status":"invalid_token"}`; the client's `\x01` gets this error.
    TokenFailed(AuthError),
    Finished,
}

/// One authentication exchange, started by [`Authenticator::start`].
pub struct SaslSession {
    auth: Authenticator,
    client: IpAddr,
    mechanism: Mechanism,
    state: State,
    /// The user name the client claimed (PLAIN, SCRAM), for the audit event of a failure.
    attempted_user: Option<String>,
}

impl std::fmt::Debug for SaslSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSession")
            .field("mechanism", &self.mechanism)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SaslSession {
    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The user name the client claimed in this exchange (PLAIN and SCRAM; at most 256
    /// characters), authenticated or not: an audit trail names who tried, not only who
    /// succeeded. `None` before the client's first message and for OAUTHBEARER.
    pub fn attempted_user(&self) -> Option<&str> {
        self.attempted_user.as_deref()
    }

    fn lifetime_ms(&self) -> i64 {
        self.auth
            .inner
            .config
            .session_lifetime
            .map_or(0, |d| millis(d).max(1))
    }

    /// Processes the client's next message.
    pub async fn step(&mut self, client_message: &[u8]) -> Result<SaslStep, AuthError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        let result = self.advance(state, client_message).await;
        match result {
            Ok(step) => Ok(step),
            Err(e) => {
                self.state = State::Finished;
                Err(self.auth.fail(self.client, e))
            }
        }
    }

    async fn advance(&mut self, state: State, msg: &[u8]) -> Result<SaslStep, AuthError> {
        match (self.mechanism, state) {
            (_, State::Finished) => Err(AuthError::ExchangeFinished),
            (Mechanism::Plain, State::Start) => {
                let m = plain::parse(msg)?;
                self.attempted_user = Some(m.user.chars().take(256).collect());
                self.auth.check_password(&m.user, &m.password).await?;
                Ok(SaslStep::Done {
                    principal: Principal::user(m.user),
                    server_final: Vec::new(),
                    session_lifetime_ms: self.lifetime_ms(),
                })
            }
            (Mechanism::ScramSha256 | Mechanism::ScramSha512, State::Start) => {
                let hash = ScramHash::of(self.mechanism).ok_or_else(|| {
                    AuthError::Internal("SCRAM session without a SCRAM hash".into())
                })?;
                let first = scram::parse_client_first(msg)?;
                let user = first.user.clone();
                self.attempted_user = Some(user.chars().take(256).collect());
                let credential = self.auth.inner.users.get(&user, self.mechanism);
                let fake_salt = self.auth.fake_salt(&user, self.mechanism);
                let (server, reply) =
                    ScramServer::start(hash, first, credential, &fake_salt, DEFAULT_ITERATIONS);
                self.state = State::Scram(Box::new(server), user);
                Ok(SaslStep::Continue(reply))
            }
            (Mechanism::ScramSha256 | Mechanism::ScramSha512, State::Scram(server, user)) => {
                let server_final = server.finish(msg, self.mechanism)?;
                Ok(SaslStep::Done {
                    principal: Principal::user(user),
                    server_final,
                    session_lifetime_ms: self.lifetime_ms(),
                })
            }
            (Mechanism::OAuthBearer, State::Start) => self.oauth(msg).await,
            (Mechanism::OAuthBearer, State::TokenFailed(e)) => Err(e),
            _ => Err(AuthError::ExchangeFinished),
        }
    }

    async fn oauth(&mut self, msg: &[u8]) -> Result<SaslStep, AuthError> {
        let parsed = parse_oauthbearer(msg)?;
        let Some(validator) = self.auth.inner.tokens.clone() else {
            return Err(AuthError::UnsupportedMechanism {
                mechanism: Mechanism::OAuthBearer.name().into(),
                enabled: self.auth.mechanisms(),
            });
        };
        let outcome = validator.validate(&parsed.token).await;
        let failure = match outcome {
            Ok(token) => {
                let remaining = token
                    .expires_at
                    .duration_since(SystemTime::now())
                    .map(millis)
                    .unwrap_or(0);
                if remaining <= 0 {
                    AuthError::InvalidToken {
                        reason: "the token has expired".into(),
                    }
                } else if parsed
                    .authzid
                    .as_deref()
                    .is_some_and(|a| a != token.principal.name)
                {
                    AuthError::InvalidToken {
                        reason: "the authorization id does not match the token's principal".into(),
                    }
                } else {
                    let configured = self.lifetime_ms();
                    let lifetime = if configured == 0 {
                        remaining
                    } else {
                        configured.min(remaining)
                    };
                    return Ok(SaslStep::Done {
                        principal: token.principal,
                        server_final: Vec::new(),
                        session_lifetime_ms: lifetime,
                    });
                }
            }
            Err(e) => AuthError::InvalidToken { reason: e.0 },
        };
        self.state = State::TokenFailed(failure);
        Ok(SaslStep::Continue(
            b"{\"status\":\"invalid_token\"}".to_vec(),
        ))
    }
}

/// The parts of an OAUTHBEARER client message we use.
struct OAuthMessage {
    authzid: Option<String>,
    token: String,
}

/// Parses `n,[a=authzid],\x01auth=Bearer <token>\x01[key=value\x01]*\x01` (RFC 7628 §3.1).
fn parse_oauthbearer(msg: &[u8]) -> Result<OAuthMessage, AuthError> {
    let bad = |why: &str| AuthError::Malformed(format!("invalid OAUTHBEARER message: {why}"));
    let text = std::str::from_utf8(msg).map_err(|_| bad("not UTF-8"))?;
    let (gs2, rest) = text
        .split_once('\x01')
        .ok_or_else(|| bad("no GS2 header"))?;
    let mut gs2_parts = gs2.splitn(3, ',');
    let (Some("n"), Some(authzid), Some("")) =
        (gs2_parts.next(), gs2_parts.next(), gs2_parts.next())
    else {
        return Err(bad("bad GS2 header"));
    };
    let authzid = if authzid.is_empty() {
        None
    } else {
        Some(
            authzid
                .strip_prefix("a=")
                .ok_or_else(|| bad("bad authzid"))?
                .to_string(),
        )
    };
    let body = rest
        .strip_suffix("\x01\x01")
        .or_else(|| (rest == "\x01").then_some(""))
        .ok_or_else(|| bad("not terminated by \\x01\\x01"))?;
    let mut token = None;
    for kv in body.split('\x01') {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| bad("bad key=value pair"))?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad("bad key"));
        }
        if k == "auth" {
            let (scheme, t) = v.split_once(' ').ok_or_else(|| bad("bad auth value"))?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(bad("auth scheme must be Bearer"));
            }
            let t = t.trim();
            if t.is_empty() {
                return Err(bad("empty token"));
            }
            token = Some(t.to_string());
        }
    }
    let token = token.ok_or_else(|| bad("no auth=Bearer"))?;
    Ok(OAuthMessage { authzid, token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{TokenError, TokenFuture, ValidatedToken};
    use crate::scram::tests::TestClient;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    struct FakeValidator;
    impl TokenValidator for FakeValidator {
        fn validate<'a>(&'a self, token: &'a str) -> TokenFuture<'a> {
            Box::pin(async move {
                match token {
                    "good" => Ok(ValidatedToken {
                        principal: Principal::user("svc"),
                        expires_at: SystemTime::now() + Duration::from_secs(30),
                    }),
                    "long" => Ok(ValidatedToken {
                        principal: Principal::user("svc"),
                        expires_at: SystemTime::now() + Duration::from_secs(3600),
                    }),
                    _ => Err(TokenError("signature invalid".into())),
                }
            })
        }
    }

    fn auth(tokens: bool, lifetime: Option<Duration>) -> Authenticator {
        let users = UserStore::new();
        users
            .set_password("alice", Mechanism::ScramSha256, "secret", 4096)
            .expect("set");
        users
            .set_password("alice", Mechanism::ScramSha512, "secret", 4096)
            .expect("set");
        Authenticator::new(
            AuthenticatorConfig {
                session_lifetime: lifetime,
                max_failures_per_minute: 5,
                ..AuthenticatorConfig::default()
            },
            users,
            tokens.then(|| Arc::new(FakeValidator) as Arc<dyn TokenValidator>),
        )
    }

    #[test]
    fn mechanism_names() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::parse(m.name()), Some(m));
        }
        assert_eq!(Mechanism::parse("scram-sha-256"), None);
        assert_eq!(
            Mechanism::from_scram_code(2).and_then(Mechanism::scram_code),
            Some(2)
        );
        assert_eq!(
            auth(false, None).mechanisms(),
            vec!["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
        );
        assert!(auth(true, None).mechanisms().contains(&"OAUTHBEARER"));
    }

    #[tokio::test]
    async fn scram_round_trip_and_unknown_user_looks_the_same() {
        let a = auth(false, Some(Duration::from_secs(600)));
        for mech in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            let mut s = a.start(mech.name(), IP).expect("start");
            let mut c = TestClient::new(mech, "alice", "secret");
            let SaslStep::Continue(sf) = s.step(&c.first()).await.expect("first") else {
                panic!("expected a challenge");
            };
            let fin = c.final_message(&sf);
            let SaslStep::Done {
                principal,
                server_final,
                session_lifetime_ms,
            } = s.step(&fin).await.expect("final")
            else {
                panic!("expected done");
            };
            assert_eq!(principal, Principal::user("alice"));
            assert_eq!(server_final, c.expected_server_final());
            assert_eq!(session_lifetime_ms, 600_000);
            assert_eq!(s.step(b"more").await, Err(AuthError::ExchangeFinished));
        }
        // Unknown user vs wrong password: same shape, same error, deterministic salt.
        let mut errors = Vec::new();
        let mut salts = Vec::new();
        for (user, pw) in [("alice", "wrong"), ("mallory", "x"), ("mallory", "y")] {
            let mut s = a.start("SCRAM-SHA-256", IP).expect("start");
            let mut c = TestClient::new(Mechanism::ScramSha256, user, pw);
            let SaslStep::Continue(sf) = s.step(&c.first()).await.expect("first") else {
                panic!("expected a challenge");
            };
            let sf_text = String::from_utf8(sf.clone()).expect("utf8");
            let salt = sf_text.split(',').nth(1).expect("salt").to_string();
            salts.push((salt.len(), salt));
            let err = s.step(&c.final_message(&sf)).await.expect_err("fails");
            errors.push(err.client_message());
            assert_eq!(
                s.attempted_user(),
                Some(user),
                "the claimed name, for the audit"
            );
        }
        assert_eq!(errors[0], errors[1]);
        assert_eq!(
            errors[0],
            "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
        );
        assert_eq!(salts[1], salts[2], "fake salt is deterministic");
        assert_eq!(salts[0].0, salts[1].0, "fake salt has the real length");
    }

    #[tokio::test]
    async fn plain_and_cache() {
        let a = auth(false, None);
        let mut s = a.start("PLAIN", IP).expect("start");
        let step = s.step(b"\0alice\0secret").await.expect("ok");
        assert!(matches!(step, SaslStep::Done { ref principal, .. } if principal.name == "alice"));
        assert_eq!(a.inner.plain_cache.len(), 1);
        // Cached: fast path.
        let t = Instant::now();
        a.verify_plain("alice", "secret", IP).await.expect("ok");
        assert!(t.elapsed() < Duration::from_millis(5), "{:?}", t.elapsed());
        let wrong = a.verify_plain("alice", "nope", IP).await.expect_err("bad");
        let unknown = a.verify_plain("bob", "nope", IP).await.expect_err("bad");
        assert_eq!(wrong.client_message(), unknown.client_message());
        // Password change invalidates the cache.
        a.users()
            .set_password("alice", Mechanism::ScramSha512, "new", 4096)
            .expect("set");
        assert!(a.verify_plain("alice", "secret", IP).await.is_err());
        a.verify_plain("alice", "new", IP).await.expect("new pw");
    }

    #[tokio::test]
    async fn a_failed_plain_exchange_keeps_the_claimed_name() {
        let a = auth(false, None);
        let mut s = a.start("PLAIN", IP).expect("start");
        assert_eq!(s.attempted_user(), None, "nothing claimed yet");
        assert!(s.step(b"\0mallory\0guess").await.is_err());
        assert_eq!(s.attempted_user(), Some("mallory"));
        // A very long name is cut, not carried whole into the trail.
        let long = format!("\0{}\0pw", "x".repeat(1000));
        let mut s = a.start("PLAIN", IP).expect("start");
        assert!(s.step(long.as_bytes()).await.is_err());
        assert_eq!(s.attempted_user().map(str::len), Some(256));
    }

    #[tokio::test]
    async fn rate_limit_counts_failures_per_ip() {
        let a = auth(false, None);
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        for _ in 0..5 {
            let mut s = a.start("PLAIN", IP).expect("start");
            assert!(s.step(b"\0alice\0bad").await.is_err());
        }
        assert_eq!(a.start("PLAIN", IP).err(), Some(AuthError::RateLimited));
        assert_eq!(
            a.verify_plain("alice", "secret", IP).await,
            Err(AuthError::RateLimited)
        );
        assert!(a.start("PLAIN", other).is_ok());
        assert!(matches!(
            a.start("GSSAPI", other),
            Err(AuthError::UnsupportedMechanism { .. })
        ));
        assert!(matches!(
            a.start("OAUTHBEARER", other),
            Err(AuthError::UnsupportedMechanism { .. })
        ));
    }

    #[tokio::test]
    async fn oauthbearer_success_and_failure() {
        let a = auth(true, Some(Duration::from_secs(600)));
        let mut s = a.start("OAUTHBEARER", IP).expect("start");
        let step = s
            .step(b"n,,\x01host=x\x01auth=Bearer good\x01\x01")
            .await
            .expect("ok");
        let SaslStep::Done {
            principal,
            session_lifetime_ms,
            ..
        } = step
        else {
            panic!("expected done");
        };
        assert_eq!(principal, Principal::user("svc"));
        assert!(session_lifetime_ms > 25_000 && session_lifetime_ms <= 30_000);

        let mut s = a.start("OAUTHBEARER", IP).expect("start");
        let step = s
            .step(b"n,a=svc,\x01auth=Bearer long\x01\x01")
            .await
            .expect("ok");
        assert!(matches!(
            step,
            SaslStep::Done {
                session_lifetime_ms: 600_000,
                ..
            }
        ));

        let mut s = a.start("OAUTHBEARER", IP).expect("start");
        let step = s
            .step(b"n,,\x01auth=Bearer bad\x01\x01")
            .await
            .expect("challenge");
        assert_eq!(
            step,
            SaslStep::Continue(b"{\"status\":\"invalid_token\"}".to_vec())
        );
        let err = s.step(b"\x01").await.expect_err("fails");
        assert!(err.client_message().contains("signature invalid"));

        let mut s = a.start("OAUTHBEARER", IP).expect("start");
        assert!(s.step(b"n,,\x01auth=Basic abc\x01\x01").await.is_err());
        assert!(parse_oauthbearer(b"n,,\x01auth=Bearer t\x01").is_err());
        assert!(parse_oauthbearer(b"y,,\x01auth=Bearer t\x01\x01").is_err());
        let p = parse_oauthbearer(b"n,a=bob,\x01auth=Bearer t\x01\x01").expect("ok");
        assert_eq!((p.authzid.as_deref(), p.token.as_str()), (Some("bob"), "t"));
    }
}
