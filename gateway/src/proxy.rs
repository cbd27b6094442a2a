//! PROXY protocol v2 (HAProxy's binary header), for listeners behind a load balancer: the
//! balancer prepends the real client address, so authorization (host ACLs), rate limits and
//! audit events see the client, not the balancer. When enabled on a listener the header is
//! required: a connection without one is refused (a client must not be able to reach a
//! PROXY-protocol port directly and claim any address... unless it is the balancer).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte v2 signature.
const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Longest address block + TLVs accepted.
const MAX_LEN: usize = 4096;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Reading failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// Not a v2 header.
    #[error("no PROXY protocol v2 header (is the load balancer configured to send one?)")]
    Missing,
    /// A malformed header.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Reads the header; returns the client's address (`None` for a LOCAL command, e.g. the
/// balancer's own health checks, or an unspecified family — the connection's own peer applies).
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<SocketAddr>, ProxyError> {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).await?;
    parse(&head, s).await
}

async fn parse<S: AsyncRead + Unpin>(
    head: &[u8; 16],
    s: &mut S,
) -> Result<Option<SocketAddr>, ProxyError> {
    if head[..12] != SIGNATURE {
        return Err(ProxyError::Missing);
    }
    let ver_cmd = head[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("version is not 2"));
    }
    let command = ver_cmd & 0x0F;
    let family = head[13];
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > MAX_LEN {
        return Err(ProxyError::Malformed("address block too long"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    match command {
        0x0 => return Ok(None), // LOCAL
        0x1 => {}               // PROXY
        _ => return Err(ProxyError::Malformed("unknown command")),
    }
    match family {
        // TCP over IPv4.
        0x11 => {
            if body.len() < 12 {
                return Err(ProxyError::Malformed("short IPv4 block"));
            }
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        // TCP over IPv6.
        0x21 => {
            if body.len() < 36 {
                return Err(ProxyError::Malformed("short IPv6 block"));
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        // UNSPEC: keep the connection's own address.
        0x00 => Ok(None),
        _ => Err(ProxyError::Malformed("unsupported address family")),
    }
}

/// Encodes a v2 PROXY header for `client` → `server` (tests, and documentation of the format).
pub fn encode_header(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21);
    match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&c.ip().octets());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
        (c, s) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(c).octets());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_v4_and_v6_and_refuses_garbage() {
        let c: SocketAddr = "203.0.113.7:51000"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let s: SocketAddr = "10.0.0.1:9092".parse().unwrap_or_else(|_| unreachable!());
        let mut bytes = encode_header(c, s);
        bytes.extend_from_slice(b"kafka frames follow");
        let mut r = &bytes[..];
        assert_eq!(read_header(&mut r).await.ok().flatten(), Some(c));
        assert_eq!(r, b"kafka frames follow");
        let c6: SocketAddr = "[2001:db8::7]:4000"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let b6 = encode_header(c6, s);
        assert_eq!(read_header(&mut &b6[..]).await.ok().flatten(), Some(c6));
        let garbage = [0u8; 16];
        assert!(matches!(
            read_header(&mut &garbage[..]).await,
            Err(ProxyError::Missing)
        ));
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read_header(&mut &local[..]).await.ok().flatten(), None);
    }
}
