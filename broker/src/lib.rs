//! # gatehouse-broker
//!
//! The bundled broker core: a single-node Kafka broker that unmodified clients (librdkafka,
//! Java, kafka-python, kcat) produce to and consume from, with nothing acknowledged lost across
//! a crash.
//!
//! - [`log`]: the segmented partition log in Kafka's on-disk layout (`<base>.log`, sparse
//!   `.index` and `.timeindex`), CRC-checked recovery, group-commit fsync, retention,
//!   compaction and idempotent-producer state.
//! - [`group`]: the classic consumer-group coordinator and durable committed offsets.
//! - `topics`: durable topic metadata and per-topic configs.
//! - `server` and `handlers`: the listener, per-connection request pipeline and one handler per
//!   Kafka API.
//!
//! Architecture invariant: the broker depends only on `gatehouse-protocol`; it knows nothing of
//! policy, registry or gateway.

pub mod group;
pub mod log;
