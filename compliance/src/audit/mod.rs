//! The tamper-evident audit trail: events ([`event`]), RFC 6962 Merkle hashing
//! ([`merkle`]), the durable writer ([`log`]), offline verification, proofs, query and
//! export ([`verify`]), the small entry points the `gatehouse audit` CLI calls ([`cli`]),
//! evidence packages ([`evidence`]), the running node's self-check ([`selfcheck`]),
//! retention and archiving with anchors ([`archive`]) and the mirror to `_gatehouse_audit`
//! ([`mirror`]).

pub mod archive;
pub(crate) mod canonical;
pub mod checkpoint;
pub mod cli;
pub mod event;
pub mod evidence;
pub mod index;
pub mod keys;
pub mod log;
pub mod merkle;
pub mod mirror;
pub mod queue;
pub(crate) mod segment;
pub mod selfcheck;
pub mod time;
pub mod verify;
