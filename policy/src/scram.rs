//! SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks it: no channel binding
//! (GS2 header `n,,` or `n,a=<authzid>,`), the optional `tokenauth` extension refused (we have
//! no delegation tokens), and credentials stored only as salted keys ([`ScramCredential`]).
//!
//! The exchange is a small state machine ([`ScramServer`]): client-first → server-first
//! (combined nonce, salt, iterations) → client-final (proof checked in constant time) →
//! server-final (`v=` server signature). An unknown user gets a *fake* exchange with a salt
//! derived from a per-process key and the user name, so the server-first message looks the
//! same as for a real user and the failure comes at the same step.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::sasl::{AuthError, Mechanism};

/// Kafka's minimum SCRAM iteration count.
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's maximum SCRAM iteration count (`AlterUserScramCredentials` refuses more).
pub const MAX_ITERATIONS: u32 = 16384;
/// Iterations used by [`crate::UserStore::set_password`] callers that have no preference.
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// Salt length of generated credentials.
pub const SALT_LEN: usize = 32;

/// The hash a SCRAM mechanism is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    pub(crate) fn of(mechanism: Mechanism) -> Option<Self> {
        match mechanism {
            Mechanism::ScramSha256 => Some(Self::Sha256),
            Mechanism::ScramSha512 => Some(Self::Sha512),
            Mechanism::Plain | Mechanism::OAuthBearer => None,
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        match self {
            Self::Sha256 => hmac_sha256(key, data).to_vec(),
            Self::Sha512 => match <Hmac<Sha512> as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    for d in data {
                        m.update(d);
                    }
                    m.finalize().into_bytes().to_vec()
                }
                // HMAC accepts keys of any length; this arm is unreachable.
                Err(_) => vec![0; 64],
            },
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with HMAC of this hash.
    pub(crate) fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        match self {
            Self::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Self::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }
}

/// HMAC-SHA256 over the concatenation of `data`.
pub(crate) fn hmac_sha256(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        for d in data {
            m.update(d);
        }
        out.copy_from_slice(&m.finalize().into_bytes());
    }
    out
}

/// A stored SCRAM credential: salted keys only, never the password (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: Mechanism,
    /// The salt (stored as base64 in JSON).
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    /// PBKDF2 iterations, [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The mechanism is not a SCRAM mechanism.
    #[error("{0} has no stored credentials (only SCRAM-SHA-256 and SCRAM-SHA-512 do)")]
    NotScram(&'static str),
    /// Iterations outside Kafka's accepted range.
    #[error("iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}, got {0}")]
    Iterations(u32),
    /// Key lengths do not match the hash, or the salt is empty.
    #[error("credential keys or salt have the wrong length")]
    KeyLength,
    /// The user name is empty.
    #[error("user name must not be empty")]
    EmptyUser,
}

impl ScramCredential {
    /// Derives a credential from a password with a fresh random salt.
    pub fn from_password(
        mechanism: Mechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        let mut salt = vec![0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::from_password_and_salt(mechanism, password, salt, iterations)
    }

    /// Derives a credential from a password and a given salt.
    pub fn from_password_and_salt(
        mechanism: Mechanism,
        password: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        let hash = ScramHash::of(mechanism).ok_or(CredentialError::NotScram(mechanism.name()))?;
        check_iterations(iterations)?;
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
        Self::from_salted_password(mechanism, salt, iterations, &salted)
    }

    /// Builds a credential from an already salted password, as Kafka's
    /// `AlterUserScramCredentials` sends it (the client ran PBKDF2).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salt: Vec<u8>,
        iterations: u32,
        salted_password: &[u8],
    ) -> Result<Self, CredentialError> {
        let hash = ScramHash::of(mechanism).ok_or(CredentialError::NotScram(mechanism.name()))?;
        check_iterations(iterations)?;
        if salt.is_empty() || salted_password.len() != hash.len() {
            return Err(CredentialError::KeyLength);
        }
        let client_key = hash.hmac(salted_password, &[b"Client Key"]);
        let stored_key = hash.hash(&client_key);
        let server_key = hash.hmac(salted_password, &[b"Server Key"]);
        Ok(Self {
            mechanism,
            salt,
            iterations,
            stored_key,
            server_key,
        })
    }

    /// Checks mechanism, iteration range and key lengths.
    pub fn validate(&self) -> Result<(), CredentialError> {
        let hash = ScramHash::of(self.mechanism)
            .ok_or(CredentialError::NotScram(self.mechanism.name()))?;
        check_iterations(self.iterations)?;
        if self.salt.is_empty()
            || self.stored_key.len() != hash.len()
            || self.server_key.len() != hash.len()
        {
            return Err(CredentialError::KeyLength);
        }
        Ok(())
    }

    /// Whether `password` is this credential's password (runs PBKDF2; constant-time compare).
    pub fn verify_password(&self, password: &str) -> bool {
        let Some(hash) = ScramHash::of(self.mechanism) else {
            return false;
        };
        let salted = hash.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        let stored = hash.hash(&client_key);
        bool::from(stored.ct_eq(&self.stored_key))
    }
}

fn check_iterations(iterations: u32) -> Result<(), CredentialError> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(())
    } else {
        Err(CredentialError::Iterations(iterations))
    }
}

/// Decodes a SCRAM `saslname` (`=2C` → `,`, `=3D` → `=`); `None` on a bad escape.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3)?;
        match esc {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn malformed(why: &str) -> AuthError {
    AuthError::Malformed(format!("invalid SCRAM message: {why}"))
}

/// The parsed client-first message.
#[derive(Debug)]
pub(crate) struct ClientFirst {
    pub user: String,
    gs2_header: String,
    bare: String,
    nonce: String,
}

/// Parses `gs2-header client-first-message-bare` (Kafka's variant).
pub(crate) fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, AuthError> {
    let text = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
    let (cbind, rest) = text
        .split_once(',')
        .ok_or_else(|| malformed("no GS2 header"))?;
    if cbind != "n" {
        return Err(malformed("channel binding is not supported"));
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed("no GS2 header"))?;
    let authzid = if authzid.is_empty() {
        None
    } else {
        let a = authzid
            .strip_prefix("a=")
            .ok_or_else(|| malformed("bad authzid"))?;
        Some(decode_saslname(a).ok_or_else(|| malformed("bad authzid"))?)
    };
    let gs2_header = format!("n,{},", rest.split_once(',').map_or("", |(a, _)| a));
    let mut user = None;
    let mut nonce = None;
    for (i, attr) in bare.split(',').enumerate() {
        let (k, v) = attr
            .split_once('=')
            .ok_or_else(|| malformed("bad attribute"))?;
        match (i, k) {
            (0, "m") => return Err(malformed("mandatory extensions are not supported")),
            (0, "n") => user = Some(decode_saslname(v).ok_or_else(|| malformed("bad user"))?),
            (1, "r") => nonce = Some(v.to_string()),
            (0, _) | (1, _) => return Err(malformed("unexpected attribute order")),
            (_, "tokenauth") if v.eq_ignore_ascii_case("true") => {
                return Err(AuthError::Malformed(
                    "delegation token authentication is not supported".into(),
                ));
            }
            _ => {} // other extensions are ignored
        }
    }
    let user = user.ok_or_else(|| malformed("no user"))?;
    let nonce = nonce.ok_or_else(|| malformed("no nonce"))?;
    if user.is_empty() {
        return Err(malformed("empty user"));
    }
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(malformed("bad nonce"));
    }
    if authzid.is_some_and(|a| a != user) {
        return Err(AuthError::Malformed(
            "authorization id must match the user name".into(),
        ));
    }
    Ok(ClientFirst {
        user,
        gs2_header,
        bare: bare.to_string(),
        nonce,
    })
}

/// Server state after sending server-first.
pub(crate) struct ScramServer {
    hash: ScramHash,
    /// `None` for an unknown user: the proof can never verify.
    credential: Option<ScramCredential>,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    /// Answers client-first. `credential` is `None` for an unknown user; then `fake_salt` and
    /// `fake_iterations` make the server-first message look like a real one.
    pub(crate) fn start(
        hash: ScramHash,
        first: ClientFirst,
        credential: Option<ScramCredential>,
        fake_salt: &[u8],
        fake_iterations: u32,
    ) -> (Self, Vec<u8>) {
        let mut server_nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut server_nonce);
        let nonce = format!("{}{}", first.nonce, B64.encode(server_nonce));
        let (salt, iterations) = match &credential {
            Some(c) => (B64.encode(&c.salt), c.iterations),
            None => (B64.encode(fake_salt), fake_iterations),
        };
        let server_first = format!("r={nonce},s={salt},i={iterations}");
        let msg = server_first.clone().into_bytes();
        (
            Self {
                hash,
                credential,
                gs2_header: first.gs2_header,
                client_first_bare: first.bare,
                server_first,
                nonce,
            },
            msg,
        )
    }

    /// Checks client-final; returns server-final on success.
    pub(crate) fn finish(&self, msg: &[u8], mechanism: Mechanism) -> Result<Vec<u8>, AuthError> {
        let invalid = AuthError::InvalidCredentials {
            mechanism: mechanism.name(),
        };
        let text = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for (i, attr) in without_proof.split(',').enumerate() {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| malformed("bad attribute"))?;
            match (i, k) {
                (0, "c") => channel = Some(v),
                (1, "r") => nonce = Some(v),
                (0, _) | (1, _) => return Err(malformed("unexpected attribute order")),
                _ => {}
            }
        }
        let channel = channel.ok_or_else(|| malformed("no channel binding"))?;
        let nonce = nonce.ok_or_else(|| malformed("no nonce"))?;
        if B64.decode(channel).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(malformed("channel binding does not match the GS2 header"));
        }
        if nonce != self.nonce {
            return Err(malformed("nonce mismatch"));
        }
        let proof = B64.decode(proof).map_err(|_| malformed("bad proof"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let Some(cred) = &self.credential else {
            // Same work as a real check, then fail.
            let _ = self.hash.hmac(&[0u8; 32], &[auth_message.as_bytes()]);
            return Err(invalid);
        };
        if proof.len() != cred.stored_key.len() {
            return Err(invalid);
        }
        let client_signature = self.hash.hmac(&cred.stored_key, &[auth_message.as_bytes()]);
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let stored = self.hash.hash(&client_key);
        if !bool::from(stored.ct_eq(&cred.stored_key)) {
            return Err(invalid);
        }
        let server_signature = self.hash.hmac(&cred.server_key, &[auth_message.as_bytes()]);
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test client: returns (client-first, closure computing client-final).
    pub(crate) struct TestClient {
        pub hash_mech: Mechanism,
        pub user: String,
        pub password: String,
        pub nonce: String,
        pub salted: Option<Vec<u8>>,
        pub auth_message: String,
    }

    impl TestClient {
        pub(crate) fn new(mech: Mechanism, user: &str, password: &str) -> Self {
            Self {
                hash_mech: mech,
                user: user.into(),
                password: password.into(),
                nonce: "fyko+d2lbbFgONRv9qkxdawL".into(),
                salted: None,
                auth_message: String::new(),
            }
        }

        pub(crate) fn first(&self) -> Vec<u8> {
            format!("n,,n={},r={}", self.user, self.nonce).into_bytes()
        }

        pub(crate) fn final_message(&mut self, server_first: &[u8]) -> Vec<u8> {
            let hash = ScramHash::of(self.hash_mech).expect("scram");
            let sf = std::str::from_utf8(server_first).expect("utf8");
            let mut nonce = "";
            let mut salt = Vec::new();
            let mut iterations = 0;
            for a in sf.split(',') {
                let (k, v) = a.split_once('=').expect("attr");
                match k {
                    "r" => nonce = v,
                    "s" => salt = B64.decode(v).expect("salt"),
                    "i" => iterations = v.parse().expect("i"),
                    _ => {}
                }
            }
            let salted = hash.salted_password(self.password.as_bytes(), &salt, iterations);
            let without_proof = format!("c=biws,r={nonce}");
            self.auth_message =
                format!("n={},r={},{},{}", self.user, self.nonce, sf, without_proof);
            let client_key = hash.hmac(&salted, &[b"Client Key"]);
            let stored_key = hash.hash(&client_key);
            let sig = hash.hmac(&stored_key, &[self.auth_message.as_bytes()]);
            let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            self.salted = Some(salted);
            format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
        }

        pub(crate) fn expected_server_final(&self) -> Vec<u8> {
            let hash = ScramHash::of(self.hash_mech).expect("scram");
            let salted = self.salted.as_ref().expect("final sent");
            let server_key = hash.hmac(salted, &[b"Server Key"]);
            let sig = hash.hmac(&server_key, &[self.auth_message.as_bytes()]);
            format!("v={}", B64.encode(sig)).into_bytes()
        }
    }

    #[test]
    fn rfc7677_test_vector_keys() {
        // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, i=4096.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let cred =
            ScramCredential::from_password_and_salt(Mechanism::ScramSha256, "pencil", salt, 4096)
                .expect("cred");
        // The RFC's exchange: client-first-bare, server-first, client-final-without-proof.
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_sig = ScramHash::Sha256.hmac(&cred.server_key, &[auth.as_bytes()]);
        assert_eq!(
            B64.encode(server_sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(cred.verify_password("pencil"));
        assert!(!cred.verify_password("pencil2"));
    }

    #[test]
    fn full_exchange_and_wrong_password() {
        for mech in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            let cred = ScramCredential::from_password(mech, "secret", 4096).expect("cred");
            let hash = ScramHash::of(mech).expect("scram");
            let mut c = TestClient::new(mech, "alice", "secret");
            let first = parse_client_first(&c.first()).expect("first");
            let (server, sf) = ScramServer::start(hash, first, Some(cred.clone()), b"x", 4096);
            let fin = c.final_message(&sf);
            let out = server.finish(&fin, mech).expect("verified");
            assert_eq!(out, c.expected_server_final());

            let mut bad = TestClient::new(mech, "alice", "wrong");
            let first = parse_client_first(&bad.first()).expect("first");
            let (server, sf) = ScramServer::start(hash, first, Some(cred), b"x", 4096);
            let fin = bad.final_message(&sf);
            assert!(matches!(
                server.finish(&fin, mech),
                Err(AuthError::InvalidCredentials { .. })
            ));
        }
    }

    #[test]
    fn client_first_parsing() {
        let f = parse_client_first(b"n,,n=al=2Cice=3D,r=abc,tokenauth=false").expect("ok");
        assert_eq!(f.user, "al,ice=");
        assert_eq!(f.gs2_header, "n,,");
        let f = parse_client_first(b"n,a=bob,n=bob,r=abc").expect("ok");
        assert_eq!(f.gs2_header, "n,a=bob,");
        assert!(parse_client_first(b"n,a=eve,n=bob,r=abc").is_err());
        assert!(parse_client_first(b"p=tls-unique,,n=bob,r=abc").is_err());
        assert!(parse_client_first(b"y,,n=bob,r=abc").is_err());
        assert!(parse_client_first(b"n,,n=bob,r=abc,tokenauth=true").is_err());
        assert!(parse_client_first(b"n,,n=bob").is_err());
        assert!(parse_client_first(b"n,,r=abc,n=bob").is_err());
        assert!(parse_client_first(b"n,,n=b=5ob,r=abc").is_err());
        assert!(parse_client_first(b"\xff").is_err());
    }

    #[test]
    fn credential_validation() {
        assert_eq!(
            ScramCredential::from_password(Mechanism::ScramSha256, "x", 100),
            Err(CredentialError::Iterations(100))
        );
        assert!(matches!(
            ScramCredential::from_password(Mechanism::Plain, "x", 4096),
            Err(CredentialError::NotScram(_))
        ));
        let c = ScramCredential::from_password(Mechanism::ScramSha512, "x", 4096).expect("ok");
        assert!(c.validate().is_ok());
        assert_eq!(c.stored_key.len(), 64);
        let json = serde_json::to_string(&c).expect("json");
        assert!(json.contains("SCRAM-SHA-512"));
        let back: ScramCredential = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, c);
        assert!(!format!("{c:?}").contains("stored_key"));
    }
}
