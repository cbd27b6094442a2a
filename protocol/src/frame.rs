//! Size-prefixed Kafka frames: a big-endian `i32` length followed by that many bytes.
//!
//! [`FrameDecoder`] takes bytes as they arrive and yields whole frames; it never allocates more
//! than the configured maximum for one frame, so a hostile size prefix cannot exhaust memory.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ProtocolError;

/// Kafka's default `socket.request.max.bytes` (100 MiB).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Splits a byte stream into frames, refusing any frame over `max_frame_size`.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames larger than `max_frame_size` bytes (the prefix excluded).
    pub fn new(max_frame_size: usize) -> Self {
        Self { max_frame_size }
    }

    /// The configured limit.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Reads the size prefix at the start of `buf` without consuming it and checks it against
    /// the limit. `Ok(None)` means fewer than four bytes are buffered.
    pub fn peek_size(&self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size < 0 {
            return Err(ProtocolError::NegativeFrameSize(size));
        }
        let size = size as usize;
        if size > self.max_frame_size {
            return Err(ProtocolError::FrameTooLarge {
                size,
                max: self.max_frame_size,
            });
        }
        Ok(Some(size))
    }

    /// Takes one whole frame (without its prefix) off the front of `buf`, or `Ok(None)` when
    /// more bytes are needed. Reserves room for the rest of a partly received frame.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        let Some(size) = self.peek_size(buf)? else {
            return Ok(None);
        };
        if buf.len() < 4 + size {
            // Grow in steps of at most 1 MiB, so a peer announcing a large frame and sending
            // nothing cannot make us hold the whole announced size.
            buf.reserve((4 + size - buf.len()).min(1 << 20));
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }
}

/// Prefixes `body` with its length.
pub fn encode_frame(body: &[u8], out: &mut BytesMut) {
    out.reserve(4 + body.len());
    out.put_i32(body.len() as i32);
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_arriving_in_pieces() {
        let d = FrameDecoder::new(1024);
        let mut wire = BytesMut::new();
        encode_frame(b"hello", &mut wire);
        encode_frame(b"", &mut wire);
        encode_frame(b"world!", &mut wire);
        let all = wire.freeze();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in all.chunks(3) {
            buf.extend_from_slice(chunk);
            while let Some(f) = d.decode(&mut buf).expect("valid frames") {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![&b"hello"[..], &b""[..], &b"world!"[..]]);
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_oversized_and_negative_frames() {
        let d = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&17i32.to_be_bytes()[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ProtocolError::FrameTooLarge { size: 17, max: 16 })
        ));
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ProtocolError::NegativeFrameSize(-1))
        ));
    }
}
