//! Request-header peek and response encoding.
//!
//! [`RequestHeaderPeek::parse`] reads just the header of a request frame, so a broker or gateway
//! can route, authorize or refuse a request (UNSUPPORTED_VERSION for Produce v0-2, an unknown API
//! key) without decoding its body. [`encode_response`] writes a response with the header version
//! the (API, version) pair requires: ApiVersions always answers with header v0, other flexible
//! versions with header v1 (tagged fields).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::ProtocolError;

/// The fields of a request header, read without touching the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaderPeek {
    /// Raw API key (may be one this build does not know).
    pub api_key: i16,
    /// Requested API version.
    pub api_version: i16,
    /// Correlation id to echo in the response.
    pub correlation_id: i32,
    /// The client id, when present and valid UTF-8.
    pub client_id: Option<String>,
    /// Where the body starts in the frame; `None` when the API key is unknown, so the header
    /// layout past the correlation id cannot be known.
    pub body_offset: Option<usize>,
}

impl RequestHeaderPeek {
    /// Peeks the header at the start of `frame` (the frame without its size prefix).
    pub fn parse(frame: &[u8]) -> Result<Self, ProtocolError> {
        if frame.len() < 8 {
            return Err(ProtocolError::Truncated {
                what: "request header",
                needed: 8,
                had: frame.len(),
            });
        }
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let api_version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let Ok(key) = ApiKey::try_from(api_key) else {
            return Ok(Self {
                api_key,
                api_version,
                correlation_id,
                client_id: None,
                body_offset: None,
            });
        };
        let header_version = key.request_header_version(api_version);
        let mut pos = 8;
        let mut client_id = None;
        if header_version >= 1 {
            let len = read_i16(frame, pos, "client id length")?;
            pos += 2;
            if len >= 0 {
                let len = len as usize;
                let end = pos + len;
                if end > frame.len() {
                    return Err(ProtocolError::Truncated {
                        what: "client id",
                        needed: end,
                        had: frame.len(),
                    });
                }
                client_id = std::str::from_utf8(&frame[pos..end])
                    .ok()
                    .map(str::to_owned);
                pos = end;
            }
        }
        if header_version >= 2 {
            pos = skip_tagged_fields(frame, pos)?;
        }
        Ok(Self {
            api_key,
            api_version,
            correlation_id,
            client_id,
            body_offset: Some(pos),
        })
    }

    /// The API key, when this build knows it.
    pub fn key(&self) -> Option<ApiKey> {
        ApiKey::try_from(self.api_key).ok()
    }
}

fn read_i16(buf: &[u8], pos: usize, what: &'static str) -> Result<i16, ProtocolError> {
    if pos + 2 > buf.len() {
        return Err(ProtocolError::Truncated {
            what,
            needed: pos + 2,
            had: buf.len(),
        });
    }
    Ok(i16::from_be_bytes([buf[pos], buf[pos + 1]]))
}

/// Reads an unsigned varint at `pos`, returning the value and the position after it.
pub fn read_uvarint(buf: &[u8], mut pos: usize) -> Result<(u64, usize), ProtocolError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(pos) else {
            return Err(ProtocolError::Truncated {
                what: "varint",
                needed: pos + 1,
                had: buf.len(),
            });
        };
        pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((value, pos));
        }
    }
    Err(ProtocolError::Malformed {
        what: "varint",
        why: "more than 10 bytes".into(),
    })
}

fn skip_tagged_fields(buf: &[u8], pos: usize) -> Result<usize, ProtocolError> {
    let (count, mut pos) = read_uvarint(buf, pos)?;
    for _ in 0..count {
        let (_tag, p) = read_uvarint(buf, pos)?;
        let (size, p) = read_uvarint(buf, p)?;
        let end = p.saturating_add(size as usize);
        if end > buf.len() {
            return Err(ProtocolError::Truncated {
                what: "tagged field",
                needed: end,
                had: buf.len(),
            });
        }
        pos = end;
    }
    Ok(pos)
}

/// Decodes a request body of type `M` at `version` from the body slice of a frame.
pub fn decode_body<M: Decodable>(body: Bytes, version: i16) -> Result<M, ProtocolError> {
    let mut b = body;
    M::decode(&mut b, version).map_err(ProtocolError::codec)
}

/// Encodes a whole response frame (size prefix, response header, body).
pub fn encode_response<M: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &M,
) -> Result<Bytes, ProtocolError> {
    let header_version = M::header_version(version);
    let body_size = body.compute_size(version).map_err(ProtocolError::codec)?;
    let header_size = if header_version >= 1 { 5 } else { 4 };
    let mut out = BytesMut::with_capacity(4 + header_size + body_size);
    out.put_i32((header_size + body_size) as i32);
    out.put_i32(correlation_id);
    if header_version >= 1 {
        out.put_u8(0); // empty tagged-field section
    }
    body.encode(&mut out, version)
        .map_err(ProtocolError::codec)?;
    Ok(out.freeze())
}

/// Encodes a whole request frame (size prefix, request header v1 or v2 as the API requires, body).
pub fn encode_request<M: Encodable + HeaderVersion>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &M,
) -> Result<Bytes, ProtocolError> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|c| StrBytes::from_string(c.to_owned())));
    let hv = M::header_version(version);
    let hsize = header.compute_size(hv).map_err(ProtocolError::codec)?;
    let bsize = body.compute_size(version).map_err(ProtocolError::codec)?;
    let mut out = BytesMut::with_capacity(4 + hsize + bsize);
    out.put_i32((hsize + bsize) as i32);
    header.encode(&mut out, hv).map_err(ProtocolError::codec)?;
    body.encode(&mut out, version)
        .map_err(ProtocolError::codec)?;
    Ok(out.freeze())
}

/// Reads the correlation id and skips the response header of a response frame, returning the
/// body. `header_version` comes from the response type's `HeaderVersion`.
pub fn split_response(frame: Bytes, header_version: i16) -> Result<(i32, Bytes), ProtocolError> {
    if frame.len() < 4 {
        return Err(ProtocolError::Truncated {
            what: "response header",
            needed: 4,
            had: frame.len(),
        });
    }
    let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let pos = if header_version >= 1 {
        skip_tagged_fields(&frame, 4)?
    } else {
        4
    };
    Ok((correlation_id, frame.slice(pos..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest};

    fn strip_prefix(b: Bytes) -> Bytes {
        b.slice(4..)
    }

    #[test]
    fn peeks_flexible_and_classic_headers() {
        for (key, version) in [(ApiKey::Metadata, 12), (ApiKey::Metadata, 1)] {
            let frame = strip_prefix(
                encode_request(key, version, 42, Some("cli"), &MetadataRequest::default())
                    .expect("encode"),
            );
            let h = RequestHeaderPeek::parse(&frame).expect("peek");
            assert_eq!(h.api_key, key as i16);
            assert_eq!(h.api_version, version);
            assert_eq!(h.correlation_id, 42);
            assert_eq!(h.client_id.as_deref(), Some("cli"));
            let body = frame.slice(h.body_offset.expect("known key")..);
            let _m: MetadataRequest = decode_body(body, version).expect("body decodes");
        }
    }

    #[test]
    fn peeks_old_produce_versions_the_codec_cannot_decode() {
        // Produce v2 (pre-MsgVer2): header v1; we must still read the correlation id.
        let mut f = BytesMut::new();
        f.put_i16(0);
        f.put_i16(2);
        f.put_i32(7);
        f.put_i16(-1);
        let h = RequestHeaderPeek::parse(&f).expect("peek");
        assert_eq!((h.api_key, h.api_version, h.correlation_id), (0, 2, 7));
        assert_eq!(h.body_offset, Some(10));
        let _ = ProduceRequest::default();
    }

    #[test]
    fn unknown_api_key_still_yields_correlation_id() {
        let mut f = BytesMut::new();
        f.put_i16(9999);
        f.put_i16(0);
        f.put_i32(5);
        let h = RequestHeaderPeek::parse(&f).expect("peek");
        assert_eq!(h.correlation_id, 5);
        assert_eq!(h.body_offset, None);
    }

    #[test]
    fn api_versions_response_uses_header_v0() {
        let r = kafka_protocol::messages::ApiVersionsResponse::default();
        let bytes = encode_response(1, 3, &r).expect("encode");
        let size = bytes.len() - 4;
        let body_size = r.compute_size(3).expect("size");
        assert_eq!(size, 4 + body_size, "no tagged-field byte in the header");
        let _ = ApiVersionsRequest::default();
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64usize {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = RequestHeaderPeek::parse(&junk);
        }
    }
}
