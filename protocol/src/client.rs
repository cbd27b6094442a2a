//! A small async Kafka client (helper fills in).
