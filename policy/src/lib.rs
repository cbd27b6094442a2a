//! # gatehouse-policy
//!
//! Principals, authentication and authorization: SASL PLAIN, SCRAM-SHA-256/512, OAUTHBEARER
//! via OIDC and mTLS principal mapping; a casbin model with Kafka's ACL semantics (deny wins,
//! deny by default, implied operations) and RBAC role bindings, stored in `_gatehouse_acls` /
//! `_gatehouse_users`.

pub mod principal;

pub use principal::{Principal, TokenError, TokenFuture, TokenValidator, ValidatedToken};
