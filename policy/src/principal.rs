//! Principals (who a connection or request acts as) and the seam between SASL mechanisms and
//! token validation: [`TokenValidator`] is implemented by the OIDC module and used by the
//! OAUTHBEARER mechanism.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

/// An authenticated identity, written `Type:name` as Kafka does (`User:alice`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// The principal type; always `User` for SASL, OIDC and mTLS identities.
    pub kind: String,
    /// The name within the type.
    pub name: String,
}

impl Principal {
    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: "User".to_string(),
            name: name.into(),
        }
    }

    /// `User:ANONYMOUS`, Kafka's principal for unauthenticated plaintext connections.
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// Parses `Type:name`; `None` without a colon or with an empty part.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Self {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// A bearer token that passed validation.
#[derive(Clone, Debug)]
pub struct ValidatedToken {
    /// The principal taken from the configured claim.
    pub principal: Principal,
    /// The token's `exp`; the SASL session lifetime ends here at the latest.
    pub expires_at: SystemTime,
}

/// Why a token was refused. The message is safe to show the client (it never quotes the token).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

/// Boxed future returned by [`TokenValidator::validate`].
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ValidatedToken, TokenError>> + Send + 'a>>;

/// Validates bearer tokens (SASL/OAUTHBEARER and the registry's `Authorization: Bearer`).
pub trait TokenValidator: Send + Sync + 'static {
    /// Checks signature, issuer, audience, expiry (with the configured clock skew) and returns
    /// the principal.
    fn validate<'a>(&'a self, token: &'a str) -> TokenFuture<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let p = Principal::parse("User:alice").expect("parses");
        assert_eq!(p, Principal::user("alice"));
        assert_eq!(p.to_string(), "User:alice");
        assert_eq!(
            Principal::parse("User:CN=a:b").map(|p| p.name),
            Some("CN=a:b".to_string())
        );
        assert!(Principal::parse("alice").is_none());
        assert!(Principal::parse(":x").is_none());
    }
}
