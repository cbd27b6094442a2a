//! Address rewriting: clients must only ever learn the gateway's addresses.
//!
//! Every response that names brokers (Metadata, FindCoordinator v0-3 and v4+,
//! DescribeCluster, and the KIP-951 `node_endpoints` of Produce v10+) is rewritten so node `n`
//! appears at the gateway's advertised host and the gateway port that serves node `n` on the
//! listener the client came through. Node ids are kept, so clients that trust leader ids stay
//! consistent with the endpoints they were given.

use std::sync::Arc;

use bytes::Bytes;
use gatehouse_protocol::ProtocolError;
use gatehouse_protocol::header::{decode_body, encode_response, split_response};
use gatehouse_protocol::kafka_protocol::protocol::{HeaderVersion, StrBytes};
use gatehouse_protocol::messages::ProduceResponse;

/// How node ids map to gateway ports on one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodePorts {
    /// Every node is served on the listener's own port (a single-node upstream, such as the
    /// bundled broker).
    Same(u16),
    /// Node `n` is served on `base + n`.
    Base(u16),
}

/// Rewrites broker addresses for one listener.
#[derive(Clone, Debug)]
pub struct Rewriter {
    host: Arc<str>,
    ports: NodePorts,
}

impl Rewriter {
    /// A rewriter that advertises `host` with the given port rule.
    pub fn new(host: &str, ports: NodePorts) -> Self {
        Self {
            host: Arc::from(host),
            ports,
        }
    }

    /// The address clients are told for node `node_id`.
    pub fn address(&self, node_id: i32) -> (String, i32) {
        let port = match self.ports {
            NodePorts::Same(p) => i32::from(p),
            NodePorts::Base(base) => i32::from(base).saturating_add(node_id.max(0)),
        };
        (self.host.to_string(), port)
    }

    /// Rewrites the KIP-951 `node_endpoints` of a Produce response (v10+); the frame passes
    /// through untouched when it has none. `frame` starts at the correlation id.
    pub(crate) fn produce_endpoints(
        &self,
        frame: Bytes,
        version: i16,
    ) -> Result<Bytes, ProtocolError> {
        let (correlation_id, body) =
            split_response(frame.clone(), ProduceResponse::header_version(version))?;
        let mut resp: ProduceResponse = decode_body(body, version)?;
        if resp.node_endpoints.is_empty() {
            return Ok(crate::authz::with_size_prefix(frame));
        }
        for e in &mut resp.node_endpoints {
            let (host, port) = self.address(e.node_id.0);
            e.host = StrBytes::from_string(host);
            e.port = port;
        }
        encode_response(correlation_id, version, &resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_rule() {
        let same = Rewriter::new("gw.example", NodePorts::Same(9092));
        assert_eq!(same.address(7), ("gw.example".to_string(), 9092));
        let base = Rewriter::new("gw.example", NodePorts::Base(19000));
        assert_eq!(base.address(3), ("gw.example".to_string(), 19003));
    }
}
