//! The tamper-evident audit trail: events ([`event`]), RFC 6962 Merkle hashing
//! ([`merkle`]), the durable writer ([`log`]), offline verification, proofs, query and
//! export ([`verify`]), and the small entry points the `gatehouse audit` CLI calls ([`cli`]).

pub(crate) mod canonical;
pub mod checkpoint;
pub mod cli;
pub mod event;
pub mod keys;
pub mod log;
pub mod merkle;
pub(crate) mod segment;
pub mod time;
pub mod verify;
