//! # gatehouse-gateway
//!
//! The TLS-terminating Kafka-protocol security gateway (not built yet; issues 4 and 5). It will
//! own: rustls listeners (TLS 1.2/1.3 only), the per-connection filter chain (authenticate,
//! authorize, validate, encrypt, forward), ApiVersions intersection, address rewriting in every
//! response that carries broker addresses, and upstream routing to the bundled broker or any
//! Kafka cluster.
//!
//! Architecture invariant: the gateway never depends on the `broker` crate; it speaks the Kafka
//! protocol to any broker, the bundled one included.
