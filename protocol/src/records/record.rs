//! Records inside a batch: the varint-framed entries that follow the 61-byte header.
//!
//! Each record is
//!
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//! | keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value
//! | headerCount varint | headers: (keyLength varint, key, valueLength varint (-1 = null), value)*
//! ```
//!
//! where every varint is zigzag-encoded. Decoding is zero-copy: keys, values and headers are
//! slices of the batch's [`Bytes`] (or of the decompressed buffer for a compressed batch).
//! Every length is checked against what remains, nothing is preallocated from a count the
//! input controls beyond what the remaining bytes could hold, and bytes left over after the
//! announced number of records are an error.

use bytes::{BufMut, Bytes};

use super::compression::MAX_DECOMPRESSED;
use super::{BATCH_HEADER_LEN, BatchHeader, TimestampType};
use crate::ProtocolError;

/// The smallest possible record: seven one-byte fields (length, attributes, timestampDelta,
/// offsetDelta, keyLength, valueLength, headerCount).
const MIN_RECORD_LEN: usize = 7;
/// The smallest possible header: a key length and a value length.
const MIN_HEADER_LEN: usize = 2;
/// Never reserve room for more records than this up front, whatever the batch claims.
const MAX_PREALLOC_RECORDS: usize = 4096;

/// One record header; keys may repeat and order is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl RecordHeader {
    /// A header with the given key and (possibly null) value.
    pub fn new(key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// The record's absolute offset within the partition (`baseOffset + offsetDelta`).
    pub fn offset(&self, batch: &BatchHeader) -> i64 {
        batch.base_offset.wrapping_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp as Kafka reports it: the batch's `maxTimestamp` for a
    /// log-append-time batch, otherwise `baseTimestamp + timestampDelta`.
    pub fn timestamp(&self, batch: &BatchHeader) -> i64 {
        match batch.timestamp_type() {
            TimestampType::LogAppendTime => batch.max_timestamp,
            TimestampType::CreateTime => batch.base_timestamp.wrapping_add(self.timestamp_delta),
        }
    }

    /// The headers whose key is `key`, in order.
    pub fn headers_named<'a>(
        &'a self,
        key: &'a [u8],
    ) -> impl Iterator<Item = &'a RecordHeader> + 'a {
        self.headers.iter().filter(move |h| h.key.as_ref() == key)
    }
}

/// Decodes the records of the whole batch `batch` (header included) with the default
/// decompression cap [`MAX_DECOMPRESSED`].
pub(crate) fn decode_records(h: &BatchHeader, batch: &Bytes) -> Result<Vec<Record>, ProtocolError> {
    decode_records_with_limit(h, batch, MAX_DECOMPRESSED)
}

/// Decodes the records of the whole batch `batch`, refusing to decompress more than `limit`
/// bytes.
pub(crate) fn decode_records_with_limit(
    h: &BatchHeader,
    batch: &Bytes,
    limit: usize,
) -> Result<Vec<Record>, ProtocolError> {
    if batch.len() < BATCH_HEADER_LEN {
        return Err(ProtocolError::Truncated {
            what: "record batch header",
            needed: BATCH_HEADER_LEN,
            had: batch.len(),
        });
    }
    let body = batch.slice(BATCH_HEADER_LEN..);
    let data = match h.compression()? {
        super::Compression::None => body,
        codec => Bytes::from(codec.decompress(&body, limit)?),
    };
    decode_record_body(&data, h.records_count)
}

/// Decodes exactly `count` records that must fill `data` completely.
pub(crate) fn decode_record_body(data: &Bytes, count: i32) -> Result<Vec<Record>, ProtocolError> {
    let count =
        usize::try_from(count).map_err(|_| malformed(format!("negative record count {count}")))?;
    let mut r = Reader {
        buf: data,
        pos: 0,
        end: data.len(),
    };
    let cap = count
        .min(data.len() / MIN_RECORD_LEN)
        .min(MAX_PREALLOC_RECORDS);
    let mut records = Vec::with_capacity(cap);
    for _ in 0..count {
        records.push(read_record(&mut r)?);
    }
    if r.pos != r.end {
        return Err(malformed(format!(
            "{} bytes left after the {count} records the batch announced",
            r.end - r.pos
        )));
    }
    Ok(records)
}

fn malformed(why: String) -> ProtocolError {
    ProtocolError::Malformed {
        what: "record",
        why,
    }
}

fn read_record(r: &mut Reader<'_>) -> Result<Record, ProtocolError> {
    let len = r.varint("record length")?;
    let len =
        usize::try_from(len).map_err(|_| malformed(format!("negative record length {len}")))?;
    if len > r.remaining() {
        return Err(ProtocolError::Truncated {
            what: "record",
            needed: len,
            had: r.remaining(),
        });
    }
    let end = r.pos + len;
    let mut rec = Reader {
        buf: r.buf,
        pos: r.pos,
        end,
    };
    let _attributes = rec.byte("record attributes")?;
    let timestamp_delta = rec.varlong("record timestampDelta")?;
    let offset_delta = rec.varint("record offsetDelta")?;
    let key = rec.nullable_bytes("record key")?;
    let value = rec.nullable_bytes("record value")?;
    let header_count = rec.varint("record header count")?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| malformed(format!("negative header count {header_count}")))?;
    let mut headers = Vec::with_capacity(header_count.min(rec.remaining() / MIN_HEADER_LEN));
    for _ in 0..header_count {
        let key_len = rec.varint("header key length")?;
        let key_len = usize::try_from(key_len)
            .map_err(|_| malformed(format!("negative header key length {key_len}")))?;
        let key = rec.bytes(key_len, "header key")?;
        let value = rec.nullable_bytes("header value")?;
        headers.push(RecordHeader { key, value });
    }
    if rec.pos != end {
        return Err(malformed(format!(
            "record length says {len} bytes but its fields took {}",
            len - (end - rec.pos)
        )));
    }
    r.pos = end;
    Ok(Record {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers,
    })
}

/// A cursor over `buf[pos..end]`.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        if self.pos >= self.end {
            return Err(ProtocolError::Truncated {
                what,
                needed: 1,
                had: 0,
            });
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    /// An unsigned LEB128 value of at most `bits` bits (32 or 64).
    fn uvarint(&mut self, bits: u32, what: &'static str) -> Result<u64, ProtocolError> {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.byte(what)?;
            let payload = u64::from(b & 0x7f);
            if shift + 7 > bits && payload >> (bits - shift) != 0 {
                return Err(ProtocolError::Malformed {
                    what,
                    why: format!("varint overflows {bits} bits"),
                });
            }
            value |= payload << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift >= bits {
                return Err(ProtocolError::Malformed {
                    what,
                    why: format!("varint longer than a {bits}-bit value allows"),
                });
            }
        }
    }

    fn varint(&mut self, what: &'static str) -> Result<i32, ProtocolError> {
        let v = self.uvarint(32, what)? as u32;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    fn varlong(&mut self, what: &'static str) -> Result<i64, ProtocolError> {
        let v = self.uvarint(64, what)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn bytes(&mut self, len: usize, what: &'static str) -> Result<Bytes, ProtocolError> {
        if len > self.remaining() {
            return Err(ProtocolError::Truncated {
                what,
                needed: len,
                had: self.remaining(),
            });
        }
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    /// A varint length (-1 = null) followed by that many bytes.
    fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<Bytes>, ProtocolError> {
        let len = self.varint(what)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| ProtocolError::Malformed {
            what,
            why: format!("invalid length {len}"),
        })?;
        self.bytes(len, what).map(Some)
    }
}

/// Appends `v` zigzag-encoded as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

/// Appends `v` zigzag-encoded as a varlong.
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Appends a varint length (-1 for `None`) and the bytes.
pub(crate) fn put_nullable(
    out: &mut Vec<u8>,
    b: Option<&[u8]>,
    what: &'static str,
) -> Result<(), ProtocolError> {
    match b {
        None => put_varint(out, -1),
        Some(b) => put_sized(out, b, what)?,
    }
    Ok(())
}

/// Appends a varint length and the bytes.
pub(crate) fn put_sized(
    out: &mut Vec<u8>,
    b: &[u8],
    what: &'static str,
) -> Result<(), ProtocolError> {
    let len = i32::try_from(b.len()).map_err(|_| ProtocolError::Malformed {
        what,
        why: format!("{} bytes do not fit a varint length", b.len()),
    })?;
    put_varint(out, len);
    out.extend_from_slice(b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(b: &Bytes) -> Reader<'_> {
        Reader {
            buf: b,
            pos: 0,
            end: b.len(),
        }
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, -1, 63, -64, 64, -65, i32::MAX, i32::MIN, 300, -300] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let b = Bytes::from(out);
            let mut r = reader(&b);
            assert_eq!(r.varint("t").expect("varint"), v);
            assert_eq!(r.remaining(), 0);
        }
        for v in [0, 1, -1, i64::MAX, i64::MIN, 1 << 40, -(1 << 40)] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            let b = Bytes::from(out);
            let mut r = reader(&b);
            assert_eq!(r.varlong("t").expect("varlong"), v);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn known_varint_encodings() {
        // Zigzag: 0->0, -1->1, 1->2, -2->3; 150 -> 300 -> [0xac, 0x02].
        let cases: [(i32, &[u8]); 5] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (150, &[0xac, 0x02]),
        ];
        for (v, enc) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, enc, "{v}");
        }
    }

    #[test]
    fn overlong_and_overflowing_varints_are_refused() {
        let overlong = Bytes::from_static(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
        assert!(reader(&overlong).varint("t").is_err());
        let overflow = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x1f]);
        assert!(reader(&overflow).varint("t").is_err());
        let max = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(reader(&max).varint("t").expect("u32::MAX"), i32::MIN);
        let long_overflow =
            Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        assert!(reader(&long_overflow).varlong("t").is_err());
        let long_max =
            Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(reader(&long_max).varlong("t").expect("u64::MAX"), i64::MIN);
        let truncated = Bytes::from_static(&[0x80]);
        assert!(reader(&truncated).varint("t").is_err());
    }

    /// Encodes one record by hand, the way the format describes it.
    fn record_bytes(fields: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, fields.len() as i32);
        out.extend_from_slice(fields);
        out
    }

    #[test]
    fn decodes_a_hand_written_record() {
        let mut f = vec![0u8]; // attributes
        put_varlong(&mut f, 5);
        put_varint(&mut f, 0);
        put_varint(&mut f, -1); // null key
        put_sized(&mut f, b"v", "t").expect("value");
        put_varint(&mut f, 2);
        put_sized(&mut f, b"h", "t").expect("hk");
        put_nullable(&mut f, None, "t").expect("hv");
        put_sized(&mut f, b"h", "t").expect("hk");
        put_nullable(&mut f, Some(b"x"), "t").expect("hv");
        let data = Bytes::from(record_bytes(&f));
        let recs = decode_record_body(&data, 1).expect("decode");
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.timestamp_delta, 5);
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(
            r.headers,
            vec![
                RecordHeader::new(Bytes::from_static(b"h"), None),
                RecordHeader::new(Bytes::from_static(b"h"), Some(Bytes::from_static(b"x"))),
            ]
        );
        assert_eq!(r.headers_named(b"h").count(), 2);
        // Zero copy: the value points into `data`.
        let v = r.value.as_ref().expect("value");
        let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
        assert!(range.contains(&(v.as_ptr() as usize)));
    }

    #[test]
    fn record_length_must_match_its_fields() {
        let mut f = vec![0u8];
        put_varlong(&mut f, 0);
        put_varint(&mut f, 0);
        put_varint(&mut f, -1);
        put_varint(&mut f, -1);
        put_varint(&mut f, 0);
        let good = record_bytes(&f);
        assert!(decode_record_body(&Bytes::from(good.clone()), 1).is_ok());
        // Announce one byte more than the fields take, and supply it.
        let mut longer = Vec::new();
        put_varint(&mut longer, f.len() as i32 + 1);
        longer.extend_from_slice(&f);
        longer.push(0);
        assert!(decode_record_body(&Bytes::from(longer), 1).is_err());
        // Announce one byte less.
        let mut shorter = Vec::new();
        put_varint(&mut shorter, f.len() as i32 - 1);
        shorter.extend_from_slice(&f);
        assert!(decode_record_body(&Bytes::from(shorter), 1).is_err());
        // Trailing garbage after the announced records.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_record_body(&Bytes::from(trailing), 1).is_err());
        // Fewer records than announced.
        assert!(decode_record_body(&Bytes::from(good), 2).is_err());
        assert!(decode_record_body(&Bytes::new(), i32::MAX).is_err());
        assert!(decode_record_body(&Bytes::new(), -1).is_err());
    }

    #[test]
    fn hostile_lengths_are_refused() {
        let cases: Vec<Vec<u8>> = vec![
            // negative record length
            vec![0x01],
            // record length past the end
            vec![0x7e, 0, 0, 0],
            // key length -2
            {
                let mut f = vec![0u8, 0, 0];
                put_varint(&mut f, -2);
                record_bytes(&f)
            },
            // key length huge
            {
                let mut f = vec![0u8, 0, 0];
                put_varint(&mut f, i32::MAX);
                record_bytes(&f)
            },
            // negative header count
            {
                let mut f = vec![0u8, 0, 0, 1, 1];
                put_varint(&mut f, -1);
                record_bytes(&f)
            },
            // huge header count
            {
                let mut f = vec![0u8, 0, 0, 1, 1];
                put_varint(&mut f, i32::MAX);
                record_bytes(&f)
            },
            // negative header key length
            {
                let mut f = vec![0u8, 0, 0, 1, 1, 2];
                put_varint(&mut f, -1);
                record_bytes(&f)
            },
        ];
        for (i, c) in cases.into_iter().enumerate() {
            assert!(decode_record_body(&Bytes::from(c), 1).is_err(), "case {i}");
        }
    }
}
