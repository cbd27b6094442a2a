//! The segment file format: length + CRC framed records of canonical event JSON.
//!
//! ```text
//! segment  = magic "GHAUDSG1" (8 bytes) record* [trailer]
//! record   = len: u32 BE (1..=MAX_EVENT_BYTES) | seq: u64 BE | crc: u32 BE | payload (len bytes)
//! trailer  = 0: u32 BE                         | next seq: u64 BE | crc: u32 BE
//! crc      = CRC-32C over the 12 bytes len|seq followed by the payload
//! ```
//!
//! The payload is the event's canonical JSON; its Merkle leaf hash is
//! `SHA-256(0x00 || payload)`. A segment is *sealed* by its trailer: nothing may follow it,
//! and only the last segment of a log may be unsealed. Segments are named after their first
//! sequence number, zero-padded to 20 digits: `segments/00000000000000000000.seg`.

/// First bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"GHAUDSG1";
/// Bytes before a record's payload.
pub const HEADER_LEN: usize = 16;
/// Largest accepted event payload.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// File name of the segment whose first sequence is `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first sequence encoded in a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn crc(header12: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header12), payload)
}

/// Reserves a record header at the end of `out`; returns its offset for [`finish_record`].
pub(crate) fn begin_record(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    at
}

/// Fills in the header of the record begun at `at` whose payload is everything after it.
/// Returns the payload length.
pub(crate) fn finish_record(out: &mut [u8], at: usize, seq: u64) -> usize {
    let len = out.len() - at - HEADER_LEN;
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len32.to_be_bytes());
    out[at + 4..at + 12].copy_from_slice(&seq.to_be_bytes());
    let c = crc(&out[at..at + 12], &out[at + HEADER_LEN..]);
    out[at + 12..at + 16].copy_from_slice(&c.to_be_bytes());
    len
}

/// The sealing trailer.
pub(crate) fn trailer(next_seq: u64) -> [u8; HEADER_LEN] {
    let mut t = [0u8; HEADER_LEN];
    t[4..12].copy_from_slice(&next_seq.to_be_bytes());
    let c = crc(&t[..12], &[]);
    t[12..16].copy_from_slice(&c.to_be_bytes());
    t
}

/// One decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// An event record.
    Record { seq: u64, payload: &'a [u8] },
    /// The sealing trailer.
    Trailer { next_seq: u64 },
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer than [`HEADER_LEN`] bytes remain.
    ShortHeader,
    /// The payload runs past the end of the file.
    ShortPayload,
    /// Length field above [`MAX_EVENT_BYTES`].
    BadLength,
    /// CRC mismatch.
    Crc,
}

impl FrameError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::ShortHeader => "incomplete record header",
            Self::ShortPayload => "record extends past the end of the file",
            Self::BadLength => "record length out of range",
            Self::Crc => "record CRC mismatch",
        }
    }
}

/// Decodes the frame at `pos` (which must be `< data.len()`); returns it and its length.
pub(crate) fn decode(data: &[u8], pos: usize) -> Result<(Frame<'_>, usize), FrameError> {
    let rest = &data[pos..];
    if rest.len() < HEADER_LEN {
        return Err(FrameError::ShortHeader);
    }
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(&rest[0..4]);
    let mut seq8 = [0u8; 8];
    seq8.copy_from_slice(&rest[4..12]);
    let mut crc4 = [0u8; 4];
    crc4.copy_from_slice(&rest[12..16]);
    let len = u32::from_be_bytes(len4) as usize;
    let seq = u64::from_be_bytes(seq8);
    let stored = u32::from_be_bytes(crc4);
    if len == 0 {
        if crc(&rest[..12], &[]) != stored {
            return Err(FrameError::Crc);
        }
        return Ok((Frame::Trailer { next_seq: seq }, HEADER_LEN));
    }
    if len > MAX_EVENT_BYTES {
        return Err(FrameError::BadLength);
    }
    let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len) else {
        return Err(FrameError::ShortPayload);
    };
    if crc(&rest[..12], payload) != stored {
        return Err(FrameError::Crc);
    }
    Ok((Frame::Record { seq, payload }, HEADER_LEN + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let at = begin_record(&mut v);
        v.extend_from_slice(payload);
        finish_record(&mut v, at, seq);
        v
    }

    #[test]
    fn names() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
    }

    #[test]
    fn frames_round_trip_and_every_single_byte_change_is_caught() {
        let mut file = MAGIC.to_vec();
        file.extend(record(7, b"{\"a\":1}"));
        file.extend(record(8, b"{}"));
        file.extend(trailer(9));
        fn decode_all(f: &[u8]) -> Result<Vec<Frame<'_>>, FrameError> {
            let mut pos = MAGIC.len();
            let mut out = Vec::new();
            while pos < f.len() {
                let (fr, n) = decode(f, pos)?;
                out.push(fr);
                pos += n;
            }
            Ok(out)
        }
        let frames = decode_all(&file).unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::Record {
                    seq: 7,
                    payload: b"{\"a\":1}"
                },
                Frame::Record {
                    seq: 8,
                    payload: b"{}"
                },
                Frame::Trailer { next_seq: 9 },
            ]
        );
        for i in MAGIC.len()..file.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = file.clone();
                bad[i] ^= mask;
                assert_ne!(decode_all(&bad).ok(), Some(frames.clone()), "byte {i}");
            }
        }
        assert_eq!(decode(&file, file.len() - 3), Err(FrameError::ShortHeader));
        let cut = &file[..MAGIC.len() + HEADER_LEN + 3];
        assert_eq!(decode(cut, MAGIC.len()), Err(FrameError::ShortPayload));
    }
}
