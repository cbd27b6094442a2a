//! Client-side SASL: the credentials a [`Connection`](super::Connection) authenticates with and
//! the PLAIN and SCRAM-SHA-256/512 (RFC 5802, RFC 7677) exchanges.
//!
//! The connection runs SaslHandshake v1 and SaslAuthenticate (v0..v2, as the broker supports)
//! right after ApiVersions; this module only builds and checks the SASL tokens, so it can be
//! tested without a broker. The SCRAM client checks the server's signature in server-final,
//! so a server that does not know the password cannot pass itself off as the broker.
//!
//! Limits: no channel binding (`n,,` GS2 header), no SASLprep of the password (it is used as
//! its UTF-8 bytes, which equals SASLprep for ASCII); the username gets the RFC 5802 `=2C` /
//! `=3D` escaping.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::ProtocolError;

/// A SASL mechanism the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): username and password in the clear; use it over TLS or loopback.
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism name as it goes into SaslHandshake (`"PLAIN"`, `"SCRAM-SHA-256"`...).
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a connection authenticates with. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// The mechanism asked for in SaslHandshake.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password (never logged).
    pub password: String,
}

impl SaslCredentials {
    /// Credentials for `mechanism`.
    pub fn new(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            mechanism,
            username: username.into(),
            password: password.into(),
        }
    }

    /// PLAIN credentials.
    pub fn plain(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::new(SaslMechanism::Plain, username, password)
    }
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The PLAIN token: `authzid \0 authcid \0 password`, with an empty authzid.
pub(crate) fn plain_token(username: &str, password: &str) -> Vec<u8> {
    let mut token = Vec::with_capacity(username.len() + password.len() + 2);
    token.push(0);
    token.extend_from_slice(username.as_bytes());
    token.push(0);
    token.extend_from_slice(password.as_bytes());
    token
}

/// Fewest PBKDF2 iterations accepted from a server (Kafka's minimum, RFC 7677's advice).
const MIN_ITERATIONS: u32 = 4096;
/// Most PBKDF2 iterations accepted, so a hostile server cannot make us spin.
const MAX_ITERATIONS: u32 = 1_000_000;

fn scram_error(why: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed {
        what: "SCRAM exchange",
        why: why.into(),
    }
}

/// Which hash a SCRAM exchange runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
            let mut mac = <M as KeyInit>::new_from_slice(key)
                .map_err(|e| scram_error(format!("HMAC key: {e}")))?;
            mac.update(data);
            Ok(mac.finalize().into_bytes().to_vec())
        }
        match self {
            ScramHash::Sha256 => run::<Hmac<Sha256>>(key, data),
            ScramHash::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// Escapes a SCRAM username (RFC 5802 §5.1: `,` → `=2C`, `=` → `=3D`).
fn escape_username(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// A fresh client nonce: 24 random bytes, base64 (printable, no commas).
pub(crate) fn new_nonce() -> String {
    BASE64.encode(rand::random::<[u8; 24]>())
}

/// The client side of one SCRAM exchange (RFC 5802), without channel binding.
pub(crate) struct ScramClient {
    hash: ScramHash,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    /// Set once client-final is built: the signature server-final must carry.
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A client for `mechanism` (must be a SCRAM one) with the given nonce.
    pub(crate) fn new(
        mechanism: SaslMechanism,
        username: &str,
        password: &str,
        client_nonce: String,
    ) -> Result<Self, ProtocolError> {
        let hash = match mechanism {
            SaslMechanism::ScramSha256 => ScramHash::Sha256,
            SaslMechanism::ScramSha512 => ScramHash::Sha512,
            SaslMechanism::Plain => return Err(scram_error("PLAIN is not a SCRAM mechanism")),
        };
        let client_first_bare = format!("n={},r={client_nonce}", escape_username(username));
        Ok(Self {
            hash,
            password: password.to_owned(),
            client_nonce,
            client_first_bare,
            expected_server_signature: None,
        })
    }

    /// client-first-message: `n,,n=user,r=nonce`.
    pub(crate) fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Takes server-first-message (`r=...,s=...,i=...`) and builds client-final-message.
    pub(crate) fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| scram_error("server-first-message is not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("e", v)) => return Err(scram_error(format!("server error: {v}"))),
                Some(("m", _)) => return Err(scram_error("server requires an unknown extension")),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(scram_error(
                "server-first-message lacks the nonce, salt or iteration count",
            ));
        };
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(scram_error("server nonce does not extend the client nonce"));
        }
        let salt = BASE64
            .decode(salt)
            .map_err(|e| scram_error(format!("salt is not base64: {e}")))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| scram_error(format!("iteration count {iterations:?} is not a number")))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(scram_error(format!(
                "iteration count {iterations} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            )));
        }
        let h = self.hash;
        let salted = h.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key")?;
        let stored_key = h.hash(&client_key);
        // "biws" is base64("n,,"): no channel binding, no authzid.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = h.hmac(&stored_key, auth_message.as_bytes())?;
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key")?;
        self.expected_server_signature = Some(h.hmac(&server_key, auth_message.as_bytes())?);
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// The ServerSignature server-final must carry (after [`ScramClient::client_final`]);
    /// lets tests play the server.
    #[cfg(test)]
    pub(crate) fn server_signature(&self) -> Option<&[u8]> {
        self.expected_server_signature.as_deref()
    }

    /// Checks server-final-message (`v=signature`, or `e=error`).
    pub(crate) fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ProtocolError> {
        let Some(expected) = &self.expected_server_signature else {
            return Err(scram_error(
                "server-final-message before client-final-message",
            ));
        };
        let text = std::str::from_utf8(server_final)
            .map_err(|_| scram_error("server-final-message is not UTF-8"))?;
        let first = text.split(',').next().unwrap_or_default();
        if let Some(e) = first.strip_prefix("e=") {
            return Err(scram_error(format!("server error: {e}")));
        }
        let Some(v) = first.strip_prefix("v=") else {
            return Err(scram_error(
                "server-final-message lacks the server signature",
            ));
        };
        let signature = BASE64
            .decode(v)
            .map_err(|e| scram_error(format!("server signature is not base64: {e}")))?;
        if constant_time_eq(&signature, expected) {
            Ok(())
        } else {
            Err(scram_error(
                "server signature does not match: the server does not know the password",
            ))
        }
    }
}

/// Compares two byte strings without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3.
    #[test]
    fn scram_sha256_matches_rfc7677() {
        let mut c = ScramClient::new(
            SaslMechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".to_owned(),
        )
        .expect("scram client");
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = c.client_final(server_first).expect("client final");
        assert_eq!(
            String::from_utf8(client_final).expect("utf8"),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("server signature verifies");
        let forged = c.verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(forged.is_err(), "a wrong server signature is refused");
        let refused = c.verify_server_final(b"e=invalid-proof");
        assert!(
            refused.is_err_and(|e| e.to_string().contains("invalid-proof")),
            "server error is reported"
        );
    }

    #[test]
    fn scram_refuses_bad_server_first() {
        let mk = || {
            ScramClient::new(SaslMechanism::ScramSha512, "u", "p", "abc".to_owned())
                .expect("scram client")
        };
        // Nonce not extending ours, too few iterations, missing salt.
        for bad in [
            "r=xyz123,s=AAAA,i=4096",
            "r=abc,s=AAAA,i=4096",
            "r=abcdef,s=AAAA,i=1",
            "r=abcdef,i=4096",
            "e=unknown-user",
        ] {
            assert!(mk().client_final(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(mk().client_final(b"r=abcdef,s=AAAA,i=4096").is_ok());
        assert!(
            mk().verify_server_final(b"v=AAAA").is_err(),
            "server-final before client-final"
        );
    }

    #[test]
    fn usernames_are_escaped_and_passwords_redacted() {
        let c = ScramClient::new(SaslMechanism::ScramSha256, "a,b=c", "p", "n".to_owned())
            .expect("scram client");
        assert_eq!(c.client_first(), b"n,,n=a=2Cb=3Dc,r=n");
        let creds = SaslCredentials::plain("alice", "s3cret-pw");
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("s3cret-pw") && shown.contains("alice"),
            "{shown}"
        );
        assert_eq!(plain_token("alice", "pw"), b"\0alice\0pw");
        assert!(ScramClient::new(SaslMechanism::Plain, "u", "p", "n".to_owned()).is_err());
        let n1 = new_nonce();
        assert!(n1.len() >= 32 && !n1.contains(',') && n1 != new_nonce());
    }
}
