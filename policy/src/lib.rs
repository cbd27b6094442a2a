//! # gatehouse-policy
//!
//! Principals, authentication and authorization (not built yet; issue 4). It will own: SASL
//! PLAIN, SCRAM-SHA-256/512, OAUTHBEARER via OIDC and mTLS principal mapping; a casbin model
//! with Kafka's ACL semantics (deny wins, deny by default, implied operations) and RBAC role
//! bindings stored in `_gatehouse_acls` / `_gatehouse_users`.
