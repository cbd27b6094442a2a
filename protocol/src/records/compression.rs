//! Compression codecs of record batches (attribute bits 0-2).
//!
//! When a batch is compressed, everything after its 61-byte header is the compressed form of
//! the concatenated records. The framings follow what the Java client writes and reads:
//!
//! - gzip: a gzip stream (concatenated members are accepted on decode);
//! - snappy: the xerial framing (`\x82SNAPPY\x00`, two version ints, then blocks of
//!   `[i32 length][raw snappy block]`) on encode; on decode both that framing and a plain raw
//!   snappy block are accepted;
//! - lz4: the LZ4 *frame* format with independent 64 KiB blocks (concatenated frames are
//!   accepted on decode, anything else after a frame is an error);
//! - zstd: a zstd frame, decoded with the streaming decoder so that a content-size field is
//!   never trusted for allocation.
//!
//! [`Compression::decompress`] takes a limit on the decompressed size so that a small hostile
//! batch cannot expand into gigabytes; [`MAX_DECOMPRESSED`] is the limit used by
//! [`RawBatch::records`](super::RawBatch::records).

use std::io::{Read, Write};

use crate::ProtocolError;

/// Default cap on the decompressed size of one batch's records (256 MiB).
pub const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

/// The xerial snappy stream header magic.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Magic plus the version and compatible-version ints.
const XERIAL_HEADER_LEN: usize = 16;
/// Uncompressed bytes per xerial block, as snappy-java's default.
const XERIAL_BLOCK: usize = 32 * 1024;
/// A raw snappy block can expand at most about 64/3 times (a 3-byte copy of 64 bytes); a
/// claimed length beyond this many times the input is a lie and is refused before allocating.
const SNAPPY_MAX_RATIO: usize = 22;
/// The LZ4 frame magic number, little-endian.
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
/// Magic, the three-byte minimal frame descriptor and the end mark.
const LZ4_MIN_FRAME_LEN: usize = 11;
/// zstd level Kafka uses by default.
const ZSTD_LEVEL: i32 = 3;

/// The codecs Kafka defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every codec, in attribute-id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Reads the codec from batch attributes.
    pub fn from_attributes(attributes: i16) -> Result<Self, ProtocolError> {
        match attributes & 0x07 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(ProtocolError::UnknownCompression(other)),
        }
    }

    /// The codec's id as it sits in attribute bits 0-2.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name for the codec (as in `compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec with Kafka's name `name` (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// Compresses `data` in the framing Kafka expects for this codec.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 2 + 64),
                    flate2::Compression::default(),
                );
                enc.write_all(data).map_err(|e| self.err(e))?;
                enc.finish().map_err(|e| self.err(e))
            }
            Compression::Snappy => self.xerial_compress(data),
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(
                    info,
                    Vec::with_capacity(data.len() / 2 + 64),
                );
                enc.write_all(data).map_err(|e| self.err(e))?;
                enc.finish().map_err(|e| self.err(e))
            }
            Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).map_err(|e| self.err(e)),
        }
    }

    /// Decompresses `data`, failing when the result would exceed `limit` bytes.
    pub fn decompress(self, data: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
        // Start small: the input size says little about the output size, and a hostile
        // header must not make us allocate up front.
        let hint = data.len().saturating_mul(4).min(limit).min(1 << 20);
        match self {
            Compression::None => {
                if data.len() > limit {
                    return Err(self.too_large(limit));
                }
                Ok(data.to_vec())
            }
            Compression::Gzip => {
                self.read_limited(flate2::read::MultiGzDecoder::new(data), limit, hint)
            }
            Compression::Snappy => self.snappy_decompress(data, limit),
            Compression::Lz4 => self.lz4_decompress(data, limit, hint),
            Compression::Zstd => {
                let dec =
                    zstd::stream::read::Decoder::with_buffer(data).map_err(|e| self.err(e))?;
                self.read_limited(dec, limit, hint)
            }
        }
    }

    fn err(self, why: impl std::fmt::Display) -> ProtocolError {
        ProtocolError::Compression {
            codec: self.name(),
            why: why.to_string(),
        }
    }

    fn too_large(self, limit: usize) -> ProtocolError {
        self.err(format!(
            "decompressed size exceeds the limit of {limit} bytes"
        ))
    }

    /// Reads `reader` to its end, refusing more than `limit` bytes.
    fn read_limited<R: Read>(
        self,
        reader: R,
        limit: usize,
        hint: usize,
    ) -> Result<Vec<u8>, ProtocolError> {
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let mut out = Vec::with_capacity(hint);
        reader
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| self.err(e))?;
        if out.len() > limit {
            return Err(self.too_large(limit));
        }
        Ok(out)
    }

    /// Decodes one or more concatenated LZ4 frames. The frame decoder stops quietly at the
    /// end of the first frame, so what follows is checked here: anything that is not another
    /// whole frame is an error rather than ignored. It also takes running out of input where
    /// a block or the end mark should start for the end of the frame, so [`ExactReader`]
    /// notes any read that the input could not fill.
    fn lz4_decompress(
        self,
        data: &[u8],
        limit: usize,
        hint: usize,
    ) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::with_capacity(hint);
        let mut rest = data;
        loop {
            if rest.len() < LZ4_MIN_FRAME_LEN || !rest.starts_with(&LZ4_MAGIC) {
                return Err(self.err("truncated lz4 frame or bytes that are not one"));
            }
            let room = limit.saturating_sub(out.len());
            let cap = u64::try_from(room).unwrap_or(u64::MAX).saturating_add(1);
            let mut input = ExactReader { rest, short: false };
            lz4_flex::frame::FrameDecoder::new(&mut input)
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| self.err(e))?;
            if out.len() > limit {
                return Err(self.too_large(limit));
            }
            if input.short {
                return Err(self.err("truncated lz4 frame"));
            }
            rest = input.rest;
            if rest.is_empty() {
                return Ok(out);
            }
        }
    }

    fn xerial_compress(self, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len() / 2 + 64);
        out.extend_from_slice(XERIAL_MAGIC);
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        let mut enc = snap::raw::Encoder::new();
        for chunk in data.chunks(XERIAL_BLOCK) {
            let block = enc.compress_vec(chunk).map_err(|e| self.err(e))?;
            let len = i32::try_from(block.len()).map_err(|e| self.err(e))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&block);
        }
        Ok(out)
    }

    fn snappy_decompress(self, data: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        if !data.starts_with(XERIAL_MAGIC) {
            self.snappy_block(data, &mut out, limit)?;
            return Ok(out);
        }
        if data.len() < XERIAL_HEADER_LEN {
            return Err(self.err("truncated xerial header"));
        }
        let mut rest = &data[XERIAL_HEADER_LEN..];
        while !rest.is_empty() {
            // snappy-java accepts streams concatenated header and all.
            if rest.starts_with(XERIAL_MAGIC) {
                if rest.len() < XERIAL_HEADER_LEN {
                    return Err(self.err("truncated xerial header"));
                }
                rest = &rest[XERIAL_HEADER_LEN..];
                continue;
            }
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return Err(self.err("truncated xerial block length"));
            };
            let len = i32::from_be_bytes(*len);
            let len = usize::try_from(len)
                .map_err(|_| self.err(format!("negative xerial block length {len}")))?;
            if len > tail.len() {
                return Err(self.err(format!(
                    "xerial block of {len} bytes but only {} remain",
                    tail.len()
                )));
            }
            let (block, tail) = tail.split_at(len);
            self.snappy_block(block, &mut out, limit)?;
            rest = tail;
        }
        Ok(out)
    }

    /// Appends one raw snappy block to `out`, keeping `out` within `limit`.
    fn snappy_block(
        self,
        block: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let len = snap::raw::decompress_len(block).map_err(|e| self.err(e))?;
        if len > block.len().saturating_mul(SNAPPY_MAX_RATIO) {
            return Err(self.err(format!(
                "snappy block of {} bytes claims {len} decompressed bytes",
                block.len()
            )));
        }
        if len > limit.saturating_sub(out.len()) {
            return Err(self.too_large(limit));
        }
        let start = out.len();
        out.resize(start + len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| self.err(e))?;
        if n != len {
            return Err(self.err(format!("snappy block gave {n} bytes, claimed {len}")));
        }
        Ok(())
    }
}

/// Reads from a slice like `&[u8]` does, but remembers whether a read asked for more bytes
/// than were left. The LZ4 frame decoder only asks for exactly the bytes a well-formed frame
/// holds, so a short read means the frame was cut off.
struct ExactReader<'a> {
    rest: &'a [u8],
    short: bool,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.short = true;
        }
        let n = buf.len().min(self.rest.len());
        let (head, tail) = self.rest.split_at(n);
        buf[..n].copy_from_slice(head);
        self.rest = tail;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..100_000u32 {
            v.extend_from_slice(&(i % 251).to_le_bytes());
            if i % 7 == 0 {
                v.extend_from_slice(b"kafka");
            }
        }
        v
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for c in Compression::ALL {
            let z = c.compress(&data).expect("compress");
            assert_eq!(
                c.decompress(&z, MAX_DECOMPRESSED).expect("decompress"),
                data,
                "{c:?}"
            );
            let z = c.compress(&[]).expect("compress empty");
            assert!(
                c.decompress(&z, 0).expect("decompress empty").is_empty(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn attribute_bits_and_names_agree() {
        for c in Compression::ALL {
            assert_eq!(
                Compression::from_attributes(c.attribute_bits()).expect("known"),
                c
            );
            assert_eq!(Compression::from_name(c.name()), Some(c));
            assert_eq!(Compression::from_name(&c.name().to_uppercase()), Some(c));
        }
        assert_eq!(Compression::from_name("brotli"), None);
        for bits in 5..8 {
            assert!(matches!(
                Compression::from_attributes(bits),
                Err(ProtocolError::UnknownCompression(b)) if b == bits
            ));
        }
    }

    #[test]
    fn limit_is_enforced_for_every_codec() {
        let data = vec![0u8; 1 << 20];
        for c in Compression::ALL {
            let z = c.compress(&data).expect("compress");
            assert!(
                matches!(
                    c.decompress(&z, (1 << 20) - 1),
                    Err(ProtocolError::Compression { .. })
                ),
                "{c:?}"
            );
            assert_eq!(
                c.decompress(&z, 1 << 20).expect("at the limit").len(),
                1 << 20
            );
        }
    }

    #[test]
    fn snappy_accepts_xerial_and_raw_and_writes_xerial() {
        let data = sample();
        let framed = Compression::Snappy.compress(&data).expect("compress");
        assert!(framed.starts_with(XERIAL_MAGIC));
        assert_eq!(&framed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let raw = snap::raw::Encoder::new().compress_vec(&data).expect("raw");
        let out = Compression::Snappy
            .decompress(&raw, MAX_DECOMPRESSED)
            .expect("raw block");
        assert_eq!(out, data);
        // Two xerial streams back to back decode to the concatenation.
        let mut twice = framed.clone();
        twice.extend_from_slice(&framed);
        let out = Compression::Snappy
            .decompress(&twice, MAX_DECOMPRESSED)
            .expect("concatenated");
        assert_eq!(out.len(), data.len() * 2);
    }

    #[test]
    fn snappy_refuses_lies_and_truncation() {
        // A raw block that claims 2^31 bytes from a handful of input bytes.
        let lie = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        assert!(
            Compression::Snappy
                .decompress(&lie, MAX_DECOMPRESSED)
                .is_err()
        );
        let framed = Compression::Snappy.compress(&sample()).expect("compress");
        for cut in [9, 17, 20, framed.len() - 1] {
            assert!(
                Compression::Snappy
                    .decompress(&framed[..cut], MAX_DECOMPRESSED)
                    .is_err(),
                "cut at {cut}"
            );
        }
        let mut neg = framed[..16].to_vec();
        neg.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(
            Compression::Snappy
                .decompress(&neg, MAX_DECOMPRESSED)
                .is_err()
        );
    }

    #[test]
    fn lz4_accepts_concatenated_frames_only() {
        let a = Compression::Lz4.compress(b"hello ").expect("a");
        let b = Compression::Lz4.compress(b"world").expect("b");
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let out = Compression::Lz4
            .decompress(&both, MAX_DECOMPRESSED)
            .expect("two frames");
        assert_eq!(out, b"hello world");
        assert!(Compression::Lz4.decompress(&both, 10).is_err());
        for tail in [&b"\x04\x22\x4d\x18"[..], b"\x00", b"garbage garbage"] {
            let mut t = a.clone();
            t.extend_from_slice(tail);
            assert!(Compression::Lz4.decompress(&t, MAX_DECOMPRESSED).is_err());
        }
        assert!(Compression::Lz4.decompress(&[], MAX_DECOMPRESSED).is_err());
        let long = Compression::Lz4.compress(&sample()).expect("long");
        for cut in 0..long.len() {
            if cut % 97 == 0 || cut + 12 > long.len() {
                assert!(
                    Compression::Lz4
                        .decompress(&long[..cut], MAX_DECOMPRESSED)
                        .is_err(),
                    "cut at {cut} of {}",
                    long.len()
                );
            }
        }
    }

    #[test]
    fn garbage_and_truncation_fail_cleanly() {
        let data = sample();
        for c in Compression::ALL {
            if c == Compression::None {
                continue;
            }
            let z = c.compress(&data).expect("compress");
            assert!(
                c.decompress(&z[..z.len() / 2], MAX_DECOMPRESSED).is_err(),
                "{c:?}"
            );
            let mut trailing = z.clone();
            trailing.extend_from_slice(b"garbage!");
            assert!(c.decompress(&trailing, MAX_DECOMPRESSED).is_err(), "{c:?}");
            assert!(
                c.decompress(b"not compressed at all", MAX_DECOMPRESSED)
                    .is_err(),
                "{c:?}"
            );
        }
    }
}
