//! # gatehouse-policy
//!
//! Principals, authentication and authorization: SASL PLAIN, SCRAM-SHA-256/512, OAUTHBEARER
//! via OIDC and mTLS principal mapping; a casbin model with Kafka's ACL semantics (deny wins,
//! deny by default, implied operations) and RBAC role bindings, stored in `_gatehouse_acls` /
//! `_gatehouse_users`.

pub mod acl;
pub mod mtls;
pub mod oidc;
pub mod plain;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod store;
pub mod users;

pub use acl::{
    AclBinding, AclError, AclFilter, Authorizer, Decision, Explanation, MatchedBinding, Operation,
    PatternType, Permission, ResourceType, RoleBinding,
};
pub use mtls::{MappingError, PrincipalMapper};
pub use oidc::{OidcConfig, OidcError, OidcValidator};
pub use principal::{Principal, TokenError, TokenFuture, TokenValidator, ValidatedToken};
pub use sasl::{AuthError, Authenticator, AuthenticatorConfig, Mechanism, SaslSession, SaslStep};
pub use scram::{
    CredentialError, DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS, ScramCredential,
};
pub use store::{ACLS_TOPIC, MAC_HEADER, PolicyStore, StoreError, USERS_TOPIC};
pub use users::UserStore;
