//! Console sessions: server-side, in memory, keyed by a random 256-bit id carried in the
//! `gh_session` cookie (`HttpOnly; SameSite=Strict; Path=/console`, plus `Secure` behind a
//! TLS-terminating proxy). A session holds the principal, a per-session CSRF token and the
//! caller's credential — the password of a form login, or the OIDC access token of an SSO
//! login ([`Credential`]): the console acts as the caller through the gateway, like the REST
//! API, so it must be able to log in as them. The credential lives only here: never in a
//! cookie, a page, a log line or an audit event; it is overwritten when the session ends
//! (logout, idle or absolute expiry, the access token's expiry, eviction). Sessions do not
//! survive a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use rand::RngCore;

/// Name of the session cookie.
pub(super) const SESSION_COOKIE: &str = "gh_session";
/// Name of the pre-login CSRF cookie (double-submit token of the login form).
pub(super) const LOGIN_COOKIE: &str = "gh_login";
/// A session ends after this long without a request.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login, however active.
pub(super) const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(8 * 60 * 60);
/// Most sessions kept at once (a login beyond this is refused until some expire).
pub(super) const MAX_SESSIONS: usize = 1024;

/// A secret string: never printed, overwritten when dropped.
pub(super) struct Secret(String);

impl Secret {
    pub(super) fn new(s: String) -> Self {
        Self(s)
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// 32 random bytes from the thread's CSPRNG, hex-encoded (64 characters).
pub(super) fn random_token() -> String {
    let mut buf = [0u8; 32];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Compares two tokens in time independent of where they differ.
pub(super) fn tokens_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What the console presents to the REST handlers for a session.
#[derive(Debug, Clone)]
pub(super) enum Credential {
    /// A form login: the user's password (`Authorization: Basic`).
    Password(Secret),
    /// An SSO login: the OIDC access token (`Authorization: Bearer`), valid until `until`;
    /// the session ends then.
    Bearer { token: Secret, until: Instant },
}

/// One logged-in user.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub user: String,
    pub credential: Credential,
    pub principal: String,
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        let token_expired =
            matches!(&self.credential, Credential::Bearer { until, .. } if now >= *until);
        token_expired
            || now.saturating_duration_since(self.last_seen) >= IDLE_TIMEOUT
            || now.saturating_duration_since(self.created) >= ABSOLUTE_TIMEOUT
    }
}

/// The session store of one admin listener.
#[derive(Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Creates a session; `(id, csrf token)`, or `None` when the store is full.
    pub(super) fn create(
        &self,
        user: String,
        credential: Credential,
        principal: String,
        now: Instant,
    ) -> Option<(String, String)> {
        let mut map = self.lock();
        map.retain(|_, s| !s.expired(now));
        if map.len() >= MAX_SESSIONS {
            return None;
        }
        let id = random_token();
        let csrf = random_token();
        map.insert(
            id.clone(),
            Session {
                user,
                credential,
                principal,
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        Some((id, csrf))
    }

    /// The live session `id` names (its idle clock restarts); an expired one is removed.
    pub(super) fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.lock();
        let expired = map.get(id)?.expired(now);
        if expired {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// Ends a session (its credential is overwritten as it drops).
    pub(super) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value for a short-lived pre-login cookie that must come back on the
/// identity provider's redirect to the console: `SameSite=Lax` (a `Strict` cookie is not sent
/// on a navigation that another site started), otherwise like [`set_cookie`].
pub(super) fn set_lax_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let mut c = format!("{name}={value}; HttpOnly; SameSite=Lax; Path=/console; Max-Age={max_age}");
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Whether the browser reached us over HTTPS. The admin listener itself is plain HTTP on
/// loopback; behind a TLS-terminating proxy that says so (`X-Forwarded-Proto: https` or
/// `Forwarded: proto=https`) the cookies get `Secure`. A client faking the header only makes
/// its own cookie stricter.
pub(super) fn over_tls(headers: &HeaderMap) -> bool {
    let xfp = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let fwd = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        });
    xfp || fwd
}

/// A `Set-Cookie` value for the console (`max_age` 0 deletes the cookie).
pub(super) fn set_cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/console");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn pw(s: &str) -> Credential {
        Credential::Password(Secret::new(s.to_string()))
    }

    #[test]
    fn tokens_are_random_256_bit_hex() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn csrf_comparison() {
        let t = random_token();
        assert!(tokens_equal(&t, &t.clone()));
        let mut other = t.clone();
        other.replace_range(63..64, if t.ends_with('0') { "1" } else { "0" });
        assert!(!tokens_equal(&t, &other));
        assert!(!tokens_equal(&t, &t[..63]));
        assert!(!tokens_equal("", ""));
        assert!(!tokens_equal(&t, ""));
    }

    #[test]
    fn sessions_expire_when_idle_and_absolutely() {
        let store = Sessions::default();
        let t0 = Instant::now();
        let (id, csrf) = store
            .create("alice".into(), pw("pw"), "User:alice".into(), t0)
            .expect("room");
        let s = store.get(&id, t0 + Duration::from_secs(60)).expect("live");
        assert_eq!(s.csrf, csrf);
        assert!(matches!(&s.credential, Credential::Password(p) if p.expose() == "pw"));
        // Activity keeps it alive past the idle timeout measured from login...
        let mut t = t0;
        for _ in 0..4 {
            t += IDLE_TIMEOUT - Duration::from_secs(1);
            assert!(store.get(&id, t).is_some());
        }
        // ...but not past the idle timeout since the last request.
        assert!(store.get(&id, t + IDLE_TIMEOUT).is_none());
        assert_eq!(store.len(), 0, "an expired session is removed");

        let (id, _) = store
            .create("bob".into(), pw("pw"), "User:bob".into(), t0)
            .expect("room");
        let mut t = t0;
        while t0 + ABSOLUTE_TIMEOUT > t + Duration::from_secs(600) {
            t += Duration::from_secs(600);
            assert!(store.get(&id, t).is_some());
        }
        assert!(store.get(&id, t0 + ABSOLUTE_TIMEOUT).is_none());
        assert!(store.get("unknown", t0).is_none());
    }

    #[test]
    fn logout_removes_and_the_store_is_bounded() {
        let store = Sessions::default();
        let t0 = Instant::now();
        let (id, _) = store
            .create("a".into(), pw("x"), "User:a".into(), t0)
            .expect("room");
        store.remove(&id);
        assert!(store.get(&id, t0).is_none());
        for _ in 0..MAX_SESSIONS {
            assert!(
                store
                    .create("a".into(), pw("x"), "User:a".into(), t0)
                    .is_some()
            );
        }
        assert!(
            store
                .create("a".into(), pw("x"), "User:a".into(), t0)
                .is_none()
        );
        // Expired sessions make room.
        assert!(
            store
                .create("a".into(), pw("x"), "User:a".into(), t0 + IDLE_TIMEOUT)
                .is_some()
        );
    }

    #[test]
    fn bearer_sessions_end_when_the_token_expires() {
        let store = Sessions::default();
        let t0 = Instant::now();
        let token = Credential::Bearer {
            token: Secret::new("eyJ.token.sig".into()),
            until: t0 + Duration::from_secs(300),
        };
        let (id, _) = store
            .create("alice".into(), token, "User:alice".into(), t0)
            .expect("room");
        let s = store.get(&id, t0 + Duration::from_secs(299)).expect("live");
        assert!(
            matches!(&s.credential, Credential::Bearer { token, .. } if token.expose() == "eyJ.token.sig")
        );
        assert!(!format!("{s:?}").contains("eyJ.token.sig"));
        assert!(store.get(&id, t0 + Duration::from_secs(300)).is_none());
        assert_eq!(store.len(), 0);
        let c = set_lax_cookie("gh_oidc", "v", 600, true);
        assert_eq!(
            c,
            "gh_oidc=v; HttpOnly; SameSite=Lax; Path=/console; Max-Age=600; Secure"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = store_session_debug();
        assert!(!s.contains("hunter2"), "{s}");
    }

    fn store_session_debug() -> String {
        let store = Sessions::default();
        let now = Instant::now();
        let (id, _) = store
            .create("a".into(), pw("hunter2"), "User:a".into(), now)
            .expect("room");
        format!("{:?}", store.get(&id, now))
    }

    #[test]
    fn cookies_parse_and_are_flagged() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; gh_session=abc ; gh_login="),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
        assert_eq!(cookie(&h, "missing"), None);
        let c = set_cookie(SESSION_COOKIE, "v", None, false);
        assert_eq!(c, "gh_session=v; HttpOnly; SameSite=Strict; Path=/console");
        assert!(set_cookie(SESSION_COOKIE, "", Some(0), true).ends_with("; Max-Age=0; Secure"));
        assert!(!over_tls(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&h));
    }
}
