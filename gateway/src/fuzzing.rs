//! Fuzz bodies for the gateway's request path, shared by the cargo-fuzz targets in `fuzz/` and
//! the stable unit tests below: whatever a client sends, routing (header peek, per-API
//! authorization, request splitting and re-encoding) and the PAN scanner return an answer or
//! an error, never a panic.
//!
//! This fuzzer found that `kafka-protocol` 0.18 pre-allocates `Vec::with_capacity(n)` for an
//! array length `n` read from the wire (kafka-protocol-rs PRs #152 / #200, open upstream): a
//! tiny request declaring billions of elements made the process abort. The binary installs
//! `gatehouse_alloc_guard::Guard` (ADR 0005), which serves such requests with address space
//! only; the stable test below runs under the same allocator and flips body bytes freely.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use gatehouse_policy::{
    AclBinding, Authorizer, Operation, PatternType, Permission, Principal, ResourceType,
};
use gatehouse_protocol::header::RequestHeaderPeek;

use crate::authz::{Access, Request, route};
use crate::rewrite::{NodePorts, Rewriter};

fn authorizer() -> Authorizer {
    let a = Authorizer::new(Vec::new()).unwrap_or_else(|_| unreachable_authorizer());
    let _ = a.create_acls(vec![AclBinding {
        principal: "User:alice".into(),
        host: "*".into(),
        resource_type: ResourceType::Topic,
        resource_name: "team-".into(),
        pattern_type: PatternType::Prefixed,
        operation: Operation::All,
        permission: Permission::Allow,
    }]);
    a
}

fn unreachable_authorizer() -> Authorizer {
    // `Authorizer::new` only fails on a broken built-in model; try again without super users.
    match Authorizer::new(Vec::new()) {
        Ok(a) => a,
        Err(e) => panic!("the built-in ACL model does not load: {e}"),
    }
}

/// One request frame (without size prefix) through the gateway's router.
pub fn request_path(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let Ok(h) = RequestHeaderPeek::parse(&frame) else {
        return;
    };
    let Some(body_offset) = h.body_offset else {
        return;
    };
    let mut access = Access::new(
        Principal::user("alice"),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        authorizer(),
    );
    let req = Request {
        api_key: h.api_key,
        version: h.api_version,
        correlation_id: h.correlation_id,
        frame: &frame,
        body_offset,
    };
    let rewriter = Rewriter::new("localhost", NodePorts::Same(9092));
    let _ = route(&req, &mut access, &rewriter);
}

/// Arbitrary bytes through the PAN scanner and the governance config checks.
pub fn pan_and_configs(data: &[u8]) {
    let _ = crate::pan::scan(data, &Default::default());
    let text = String::from_utf8_lossy(data);
    let (name, value) = text.split_once('=').unwrap_or((&text, ""));
    let _ = crate::governance::check(name, Some(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static A: gatehouse_alloc_guard::Guard = gatehouse_alloc_guard::Guard;
    use gatehouse_protocol::header::encode_request;
    use gatehouse_protocol::messages::*;

    /// Valid requests of several APIs, then every truncation and byte flip of them.
    #[test]
    fn mutated_requests_never_panic() {
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        let mut push = |b: Result<Bytes, gatehouse_protocol::ProtocolError>| {
            if let Ok(b) = b {
                seeds.push(b[4..].to_vec());
            }
        };
        push(encode_request(
            ApiKey::Metadata,
            12,
            1,
            Some("f"),
            &MetadataRequest::default(),
        ));
        push(encode_request(
            ApiKey::Produce,
            9,
            2,
            Some("f"),
            &ProduceRequest::default(),
        ));
        push(encode_request(
            ApiKey::Fetch,
            12,
            3,
            Some("f"),
            &FetchRequest::default(),
        ));
        push(encode_request(
            ApiKey::CreateTopics,
            7,
            4,
            None,
            &CreateTopicsRequest::default(),
        ));
        push(encode_request(
            ApiKey::OffsetCommit,
            8,
            5,
            None,
            &OffsetCommitRequest::default(),
        ));
        push(encode_request(
            ApiKey::DeleteTopics,
            6,
            6,
            None,
            &DeleteTopicsRequest::default(),
        ));
        push(encode_request(
            ApiKey::FindCoordinator,
            4,
            7,
            None,
            &FindCoordinatorRequest::default(),
        ));
        push(encode_request(
            ApiKey::DescribeConfigs,
            4,
            8,
            None,
            &DescribeConfigsRequest::default(),
        ));
        push(encode_request(
            ApiKey::IncrementalAlterConfigs,
            1,
            9,
            None,
            &IncrementalAlterConfigsRequest::default(),
        ));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in &seeds {
            for cut in 0..seed.len() {
                request_path(&seed[..cut]);
            }
            for _ in 0..2_000 {
                let mut m = seed.clone();
                let flips = 1 + (next() % 4) as usize;
                for _ in 0..flips {
                    let i = (next() as usize) % m.len().max(1);
                    if let Some(b) = m.get_mut(i) {
                        *b = next() as u8;
                    }
                }
                request_path(&m);
            }
        }
        for _ in 0..5_000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            request_path(&bytes);
            pan_and_configs(&bytes);
        }
    }
}
