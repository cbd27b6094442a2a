//! SASL PLAIN with the broker's one internal credential
//! ([`crate::config::InternalCredential`]).
//!
//! Only when a credential is configured: every connection starts unauthenticated and may send
//! ApiVersions, SaslHandshake (v0, v1) and SaslAuthenticate (v0-v2); any other request closes
//! it, as Kafka does (ILLEGAL_SASL_STATE). The only mechanism is PLAIN; the username and
//! password are compared in constant time.
//!
//! - SaslHandshake v1 → SaslAuthenticate carries the PLAIN token in a Kafka request.
//! - SaslHandshake v0 (the legacy flow, pre-KIP-152 clients): the next frame is the raw PLAIN
//!   token without a Kafka header; success is answered with an empty size-prefixed frame, a
//!   wrong credential closes the connection (the raw flow has no way to say why).
//! - A wrong credential answers SASL_AUTHENTICATION_FAILED ("Authentication failed: invalid
//!   credentials") and closes; an unknown mechanism answers UNSUPPORTED_SASL_MECHANISM and
//!   closes; SASL requests out of order (a second handshake, SaslAuthenticate before the
//!   handshake, re-authentication) answer ILLEGAL_SASL_STATE and close.
//!
//! Neither the password nor the token is ever logged.

use bytes::Bytes;
use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::header::{RequestHeaderPeek, decode_body};
use gatehouse_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use subtle::ConstantTimeEq;

use super::{ConnectionInfo, Outcome, respond};
use crate::config::InternalCredential;

/// The one mechanism we serve.
pub(crate) const PLAIN: &str = "PLAIN";

/// The message of SASL_AUTHENTICATION_FAILED (Kafka's wording for PLAIN).
pub(crate) const INVALID_CREDENTIALS: &str = "Authentication failed: invalid credentials";

/// Where a connection is in the SASL exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaslState {
    /// Authenticated, or no credential is configured: every request is served.
    Authenticated,
    /// Only ApiVersions and SaslHandshake are allowed.
    AwaitingHandshake,
    /// After SaslHandshake v1: SaslAuthenticate (or ApiVersions) comes next.
    AwaitingAuthenticate,
    /// After SaslHandshake v0: the next frame is a raw PLAIN token.
    AwaitingRawToken,
}

impl SaslState {
    /// The state a new connection starts in.
    pub(crate) fn initial(credential: Option<&InternalCredential>) -> Self {
        match credential {
            Some(_) => SaslState::AwaitingHandshake,
            None => SaslState::Authenticated,
        }
    }
}

/// Answers SaslHandshake or SaslAuthenticate (`h.key()` is one of them).
pub(crate) fn handle(
    credential: &InternalCredential,
    conn: &mut ConnectionInfo,
    h: &RequestHeaderPeek,
    key: ApiKey,
    frame: &Bytes,
) -> Outcome {
    let v = h.api_version;
    let Some(offset) = h.body_offset else {
        return Outcome::Close("SASL request header without body offset".into());
    };
    let body = frame.slice(offset..);
    match key {
        ApiKey::SaslHandshake => {
            if !(0..=1).contains(&v) {
                return Outcome::Close(format!("SaslHandshake v{v} is not supported"));
            }
            let req = match decode_body::<SaslHandshakeRequest>(body, v) {
                Ok(r) => r,
                Err(e) => return Outcome::Close(format!("malformed SaslHandshake v{v}: {e}")),
            };
            let answer = |code: ErrorCode| {
                SaslHandshakeResponse::default()
                    .with_error_code(code.code())
                    .with_mechanisms(vec![StrBytes::from_static_str(PLAIN)])
            };
            if conn.sasl != SaslState::AwaitingHandshake {
                return and_close(
                    respond(h, &answer(ErrorCode::IllegalSaslState)),
                    format!("unexpected SaslHandshake in SASL state {:?}", conn.sasl),
                );
            }
            if req.mechanism.as_str() != PLAIN {
                return and_close(
                    respond(h, &answer(ErrorCode::UnsupportedSaslMechanism)),
                    format!(
                        "unsupported SASL mechanism {:?} (only PLAIN is enabled)",
                        req.mechanism.as_str()
                    ),
                );
            }
            conn.sasl = if v == 0 {
                SaslState::AwaitingRawToken
            } else {
                SaslState::AwaitingAuthenticate
            };
            respond(h, &answer(ErrorCode::None))
        }
        ApiKey::SaslAuthenticate => {
            if !(0..=2).contains(&v) {
                return Outcome::Close(format!("SaslAuthenticate v{v} is not supported"));
            }
            let req = match decode_body::<SaslAuthenticateRequest>(body, v) {
                Ok(r) => r,
                Err(e) => return Outcome::Close(format!("malformed SaslAuthenticate v{v}: {e}")),
            };
            let answer = |code: ErrorCode, message: Option<String>| {
                SaslAuthenticateResponse::default()
                    .with_error_code(code.code())
                    .with_error_message(message.map(StrBytes::from_string))
            };
            if conn.sasl != SaslState::AwaitingAuthenticate {
                let why = format!("unexpected SaslAuthenticate in SASL state {:?}", conn.sasl);
                return and_close(
                    respond(h, &answer(ErrorCode::IllegalSaslState, Some(why.clone()))),
                    why,
                );
            }
            if plain_matches(credential, &req.auth_bytes) {
                conn.sasl = SaslState::Authenticated;
                tracing::debug!(client = %conn.client_host, "SASL PLAIN authentication succeeded.");
                respond(h, &answer(ErrorCode::None, None))
            } else {
                and_close(
                    respond(
                        h,
                        &answer(
                            ErrorCode::SaslAuthenticationFailed,
                            Some(INVALID_CREDENTIALS.to_owned()),
                        ),
                    ),
                    format!("SASL PLAIN authentication failed: {INVALID_CREDENTIALS}"),
                )
            }
        }
        other => Outcome::Close(format!("{other:?} is not a SASL request")),
    }
}

/// The frame after SaslHandshake v0: a raw PLAIN token. Success is answered with an empty
/// token (a zero size prefix); failure closes the connection.
pub(crate) fn raw_token(
    credential: &InternalCredential,
    conn: &mut ConnectionInfo,
    frame: &Bytes,
) -> Outcome {
    if plain_matches(credential, frame) {
        conn.sasl = SaslState::Authenticated;
        tracing::debug!(client = %conn.client_host, "SASL PLAIN authentication (v0 flow) succeeded.");
        Outcome::ready(Bytes::from_static(&[0, 0, 0, 0]))
    } else {
        Outcome::Close(format!(
            "SASL PLAIN authentication (SaslHandshake v0 flow) failed: {INVALID_CREDENTIALS}"
        ))
    }
}

/// Turns a response into "send it, then close".
fn and_close(out: Outcome, reason: String) -> Outcome {
    match out {
        Outcome::Respond(pending) => Outcome::RespondAndClose(pending, reason),
        other => other,
    }
}

/// True when `token` (`authzid NUL authcid NUL passwd`, RFC 4616) carries the credential.
/// The username and password are compared in constant time; the authorization id must be
/// empty or equal to the username (as Kafka requires).
fn plain_matches(credential: &InternalCredential, token: &[u8]) -> bool {
    let mut parts = token.splitn(3, |b| *b == 0);
    let (Some(authzid), Some(username), Some(password)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let user_ok = username.ct_eq(credential.username.as_bytes());
    let password_ok = password.ct_eq(credential.password.as_bytes());
    let authz_ok = authzid.is_empty() || authzid == username;
    bool::from(user_ok & password_ok) && authz_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tokens() {
        let c = InternalCredential::new("gatehouse", "pw");
        assert!(plain_matches(&c, b"\0gatehouse\0pw"));
        assert!(plain_matches(&c, b"gatehouse\0gatehouse\0pw"));
        for bad in [
            &b"\0gatehouse\0pX"[..],
            b"\0gatehouse\0pw\0",
            b"\0gatehousX\0pw",
            b"other\0gatehouse\0pw",
            b"\0gatehouse",
            b"",
            b"\0\0",
        ] {
            assert!(!plain_matches(&c, bad), "{bad:?}");
        }
        let shown = format!("{:?}", InternalCredential::new("gatehouse", "s3cret-pw"));
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
