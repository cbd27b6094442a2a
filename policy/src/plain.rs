//! SASL/PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, checked against the user's
//! stored SCRAM credential (SCRAM-SHA-512 if present, else SCRAM-SHA-256) by recomputing the
//! salted password — Gatehouse never stores a password.
//!
//! PBKDF2 is deliberately slow (≈ 8192 HMAC rounds), so successful verifications are cached
//! for a short TTL ([`DEFAULT_PLAIN_CACHE_TTL`]) under `HMAC-SHA256(per-process key,
//! user || 0 || password)`: a client reconnecting with the same password costs one HMAC, the
//! cache never holds the password, and an entry stops counting as soon as the user's
//! credential generation changes (new password or deletion).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sasl::AuthError;
use crate::scram::hmac_sha256;

/// How long a successful PLAIN verification is remembered.
pub const DEFAULT_PLAIN_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most cache entries kept; a full cache drops expired entries, then everything.
const MAX_CACHE_ENTRIES: usize = 10_000;

/// A parsed PLAIN message. The password is kept only for the verification at hand.
pub(crate) struct PlainMessage {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Parses `authzid NUL authcid NUL passwd`. A non-empty authzid must equal the authcid
/// (Kafka's rule: no impersonation through PLAIN).
pub(crate) fn parse(msg: &[u8]) -> Result<PlainMessage, AuthError> {
    let bad = |why: &str| AuthError::Malformed(format!("invalid SASL/PLAIN message: {why}"));
    let mut parts = msg.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected 3 NUL-separated fields"));
    };
    let authzid = std::str::from_utf8(authzid).map_err(|_| bad("not UTF-8"))?;
    let user = std::str::from_utf8(user).map_err(|_| bad("not UTF-8"))?;
    let password = std::str::from_utf8(password).map_err(|_| bad("not UTF-8"))?;
    if user.is_empty() {
        return Err(bad("empty user name"));
    }
    if password.is_empty() {
        return Err(bad("empty password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(AuthError::Malformed(
            "authorization id must match the user name".into(),
        ));
    }
    Ok(PlainMessage {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Cache of successful PLAIN verifications.
pub(crate) struct PlainCache {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Instant, u64)>>,
}

impl PlainCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        Self {
            key,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, user: &str, password: &str) -> [u8; 32] {
        hmac_sha256(&self.key, &[user.as_bytes(), &[0], password.as_bytes()])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Instant, u64)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `user`/`password` verified within the TTL at credential generation `generation`.
    pub(crate) fn hit(&self, user: &str, password: &str, generation: u64) -> bool {
        let tag = self.tag(user, password);
        let mut entries = self.lock();
        match entries.get(&tag) {
            Some((at, g)) if *g == generation && at.elapsed() < self.ttl => true,
            Some(_) => {
                entries.remove(&tag);
                false
            }
            None => false,
        }
    }

    /// Remembers a successful verification.
    pub(crate) fn insert(&self, user: &str, password: &str, generation: u64) {
        let tag = self.tag(user, password);
        let mut entries = self.lock();
        if entries.len() >= MAX_CACHE_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= MAX_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(tag, (Instant::now(), generation));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_messages() {
        let m = parse(b"\0alice\0secret").expect("ok");
        assert_eq!((m.user.as_str(), m.password.as_str()), ("alice", "secret"));
        assert!(parse(b"alice\0alice\0secret").is_ok());
        assert!(parse(b"bob\0alice\0secret").is_err());
        assert!(parse(b"\0alice").is_err());
        assert!(parse(b"\0\0secret").is_err());
        assert!(parse(b"\0alice\0").is_err());
        assert!(parse(b"\0a\0b\0c").is_err());
        assert!(!format!("{m:?}").contains("secret"));
    }

    #[test]
    fn cache_respects_generation_and_ttl() {
        let c = PlainCache::new(Duration::from_secs(60));
        assert!(!c.hit("alice", "pw", 1));
        c.insert("alice", "pw", 1);
        assert!(c.hit("alice", "pw", 1));
        assert!(!c.hit("alice", "other", 1));
        assert!(!c.hit("alice", "pw", 2));
        // The stale entry was dropped.
        assert_eq!(c.len(), 0);
        let short = PlainCache::new(Duration::from_millis(0));
        short.insert("a", "b", 1);
        assert!(!short.hit("a", "b", 1));
    }
}
