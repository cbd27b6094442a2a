//! RecordBatch v2, Kafka's on-wire and on-disk unit of records.
//!
//! Layout (61-byte header, big-endian):
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 (=2) | crc u32
//! | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64
//! | producerId i64 | producerEpoch i16 | baseSequence i32 | recordsCount i32 | records...
//! ```
//!
//! The CRC32C covers everything from `attributes` to the end, so a broker may stamp
//! `baseOffset` and `partitionLeaderEpoch` without recomputing it. [`BatchHeader`] reads the
//! header of a batch held in [`Bytes`] without copying; [`RawBatches`] walks a record set
//! (several batches back to back, possibly ending in a partial batch); [`RawBatch::records`]
//! decodes the records (decompressing if needed) and [`BatchBuilder`] writes new batches.

mod builder;
mod compression;
mod record;

pub use builder::BatchBuilder;
pub use compression::{Compression, MAX_DECOMPRESSED};
pub use record::{Record, RecordHeader};

use bytes::Bytes;

use crate::ProtocolError;

/// Size of the fixed batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// Offset of the batch length field plus its size: the bytes not counted by `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// Where the CRC-covered part of a batch begins.
pub const CRC_START: usize = 21;

/// Timestamp semantics of a batch (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Timestamps set by the producer.
    CreateTime,
    /// Timestamps set by the broker on append.
    LogAppendTime,
}

/// The decoded fixed header of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks the magic and that `batchLength` is
    /// large enough to hold the header; does not check the CRC.
    pub fn parse(buf: &[u8]) -> Result<Self, ProtocolError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(ProtocolError::Truncated {
                what: "record batch header",
                needed: BATCH_HEADER_LEN,
                had: buf.len(),
            });
        }
        let magic = buf[16] as i8;
        if magic != 2 {
            return Err(ProtocolError::UnsupportedMagic(magic));
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if (h.batch_length as i64) < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(ProtocolError::Malformed {
                what: "record batch",
                why: format!("batchLength {} is shorter than the header", h.batch_length),
            });
        }
        if h.last_offset_delta < 0 || h.records_count < 0 {
            return Err(ProtocolError::Malformed {
                what: "record batch",
                why: "negative lastOffsetDelta or recordsCount".into(),
            });
        }
        Ok(h)
    }

    /// Total size of the batch including the offset and length fields.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The compression codec named in the attributes.
    pub fn compression(&self) -> Result<Compression, ProtocolError> {
        Compression::from_attributes(self.attributes)
    }

    /// Timestamp type (attribute bit 3).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Transactional batch (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Control batch (attribute bit 5), e.g. a transaction marker.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// True when the batch comes from an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record (wrapping as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// Computes the CRC32C of a whole batch's covered range.
pub fn batch_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// One whole RecordBatch held without copying.
#[derive(Debug, Clone)]
pub struct RawBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl RawBatch {
    /// Wraps exactly one batch; `bytes` must be the whole batch.
    pub fn new(bytes: Bytes) -> Result<Self, ProtocolError> {
        let header = BatchHeader::parse(&bytes)?;
        if header.total_len() != bytes.len() {
            return Err(ProtocolError::Malformed {
                what: "record batch",
                why: format!(
                    "batchLength says {} bytes, buffer holds {}",
                    header.total_len(),
                    bytes.len()
                ),
            });
        }
        Ok(Self { header, bytes })
    }

    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, header included.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Consumes the batch, returning its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Checks the stored CRC32C against the batch contents.
    pub fn verify_crc(&self) -> Result<(), ProtocolError> {
        let computed = batch_crc(&self.bytes);
        if computed != self.header.crc {
            return Err(ProtocolError::CrcMismatch {
                stored: self.header.crc,
                computed,
            });
        }
        Ok(())
    }

    /// Decodes every record (decompressing the batch if needed), headers kept in order.
    pub fn records(&self) -> Result<Vec<Record>, ProtocolError> {
        record::decode_records(&self.header, &self.bytes)
    }

    /// Like [`RawBatch::records`] but refusing to decompress more than `limit` bytes (the
    /// default is [`MAX_DECOMPRESSED`]).
    pub fn records_with_limit(&self, limit: usize) -> Result<Vec<Record>, ProtocolError> {
        record::decode_records_with_limit(&self.header, &self.bytes, limit)
    }
}

/// Overwrites the base offset of the batch at the start of `batch` (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites the partition leader epoch of the batch at the start of `batch` (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Walks a record set: batches back to back. Stops quietly at a trailing partial batch (which
/// a fetch response may legally end with); yields an error for a malformed header.
#[derive(Debug, Clone)]
pub struct RawBatches {
    rest: Bytes,
}

impl RawBatches {
    /// Iterates over the batches in `records`.
    pub fn new(records: Bytes) -> Self {
        Self { rest: records }
    }

    /// Bytes not yet consumed (a trailing partial batch, once iteration ends).
    pub fn remaining(&self) -> &Bytes {
        &self.rest
    }
}

impl Iterator for RawBatches {
    type Item = Result<RawBatch, ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < LOG_OVERHEAD {
            return None;
        }
        let len = be_i32(&self.rest, 8);
        if len < 0 {
            let e = ProtocolError::Malformed {
                what: "record batch",
                why: format!("negative batchLength {len}"),
            };
            self.rest = Bytes::new();
            return Some(Err(e));
        }
        let total = len as usize + LOG_OVERHEAD;
        if self.rest.len() < total {
            return None;
        }
        let batch = self.rest.split_to(total);
        match RawBatch::new(batch) {
            Ok(b) => Some(Ok(b)),
            Err(e) => {
                self.rest = Bytes::new();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;
    use bytes::{BufMut, BytesMut};

    /// Records covering null and present keys and values, empty ones and duplicate headers.
    fn sample_builder(codec: Compression) -> BatchBuilder {
        let mut b = BatchBuilder::new()
            .compression(codec)
            .base_offset(100)
            .producer(9, 1, 0);
        let dup = [
            RecordHeader::new("trace", Some(Bytes::from_static(b"a"))),
            RecordHeader::new("other", None),
            RecordHeader::new("trace", Some(Bytes::from_static(b"b"))),
            RecordHeader::new("trace", Some(Bytes::new())),
        ];
        b.push(Some(b"key-1"), Some(b"value-1"), &[], 1_000)
            .expect("push");
        b.push(None, Some(b"value-2"), &dup, 1_005).expect("push");
        b.push(Some(b"key-3"), None, &[], 990).expect("push");
        b.push(None, None, &dup[1..2], 1_001).expect("push");
        b.push(Some(b""), Some(b""), &[], 1_002).expect("push");
        let big = vec![b'x'; 100_000];
        b.push(Some(b"big"), Some(&big), &[], 1_003).expect("push");
        b
    }

    fn check_sample(batch: &RawBatch) {
        batch.verify_crc().expect("crc");
        let h = batch.header();
        assert_eq!(h.records_count, 6);
        assert_eq!(h.last_offset_delta, 5);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_005);
        let recs = batch.records().expect("records");
        assert_eq!(recs.len(), 6);
        let keys: Vec<Option<&[u8]>> = recs.iter().map(|r| r.key.as_deref()).collect();
        assert_eq!(
            keys,
            vec![
                Some(&b"key-1"[..]),
                None,
                Some(&b"key-3"[..]),
                None,
                Some(&b""[..]),
                Some(&b"big"[..])
            ]
        );
        let values: Vec<Option<usize>> = recs
            .iter()
            .map(|r| r.value.as_ref().map(Bytes::len))
            .collect();
        assert_eq!(
            values,
            vec![Some(7), Some(7), None, None, Some(0), Some(100_000)]
        );
        let hs: Vec<(&[u8], Option<&[u8]>)> = recs[1]
            .headers
            .iter()
            .map(|h| (h.key.as_ref(), h.value.as_deref()))
            .collect();
        assert_eq!(
            hs,
            vec![
                (&b"trace"[..], Some(&b"a"[..])),
                (&b"other"[..], None),
                (&b"trace"[..], Some(&b"b"[..])),
                (&b"trace"[..], Some(&b""[..])),
            ]
        );
        let traces: Vec<_> = recs[1]
            .headers_named(b"trace")
            .filter_map(|h| h.value.clone())
            .collect();
        assert_eq!(traces, vec![&b"a"[..], &b"b"[..], &b""[..]]);
        assert_eq!(recs[3].headers, vec![RecordHeader::new("other", None)]);
        let offsets: Vec<i64> = recs.iter().map(|r| r.offset(h)).collect();
        assert_eq!(offsets, (100..106).collect::<Vec<_>>());
        let ts: Vec<i64> = recs.iter().map(|r| r.timestamp(h)).collect();
        assert_eq!(ts, vec![1_000, 1_005, 990, 1_001, 1_002, 1_003]);
    }

    #[test]
    fn round_trip_every_codec() {
        for codec in Compression::ALL {
            let bytes = sample_builder(codec).build().expect("build");
            let mut it = RawBatches::new(bytes);
            let batch = it.next().expect("one batch").expect("valid batch");
            assert!(it.next().is_none());
            assert!(it.remaining().is_empty());
            assert_eq!(batch.header().compression().expect("codec"), codec);
            check_sample(&batch);
        }
    }

    #[test]
    fn uncompressed_records_borrow_the_batch() {
        let bytes = sample_builder(Compression::None).build().expect("build");
        let batch = RawBatch::new(bytes.clone()).expect("batch");
        let recs = batch.records().expect("records");
        let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        let v = recs[5].value.as_ref().expect("value");
        assert!(range.contains(&(v.as_ptr() as usize)));
    }

    #[test]
    fn crc_detects_any_flipped_covered_byte() {
        for codec in [Compression::None, Compression::Zstd] {
            let bytes = sample_builder(codec).build().expect("build");
            RawBatch::new(bytes.clone())
                .expect("batch")
                .verify_crc()
                .expect("crc");
            let step = (bytes.len() / 97).max(1);
            for at in (17..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
                let mut m = bytes.to_vec();
                m[at] ^= 0x01;
                // Flipping a header byte may make the header itself invalid; either way the
                // batch must not pass as intact.
                if let Ok(b) = RawBatch::new(Bytes::from(m)) {
                    assert!(
                        matches!(b.verify_crc(), Err(ProtocolError::CrcMismatch { .. })),
                        "{codec:?} flip at {at}"
                    );
                }
            }
            // Base offset and partition leader epoch are outside the CRC.
            let mut m = bytes.to_vec();
            set_base_offset(&mut m, 77);
            set_partition_leader_epoch(&mut m, 5);
            let b = RawBatch::new(Bytes::from(m)).expect("batch");
            b.verify_crc().expect("still intact");
            assert_eq!(b.header().base_offset, 77);
            assert_eq!(b.records().expect("records")[2].offset(b.header()), 79);
        }
    }

    #[test]
    fn record_set_with_partial_trailing_batch() {
        let a = sample_builder(Compression::Snappy).build().expect("a");
        let mut b = BatchBuilder::new().base_offset(106);
        b.push(Some(b"k"), Some(b"v"), &[], 5).expect("push");
        let b = b.build().expect("b");
        let c = sample_builder(Compression::Gzip).build().expect("c");
        for cut in [1, 11, 12, 60, 61, c.len() - 1] {
            let mut set = BytesMut::new();
            set.put_slice(&a);
            set.put_slice(&b);
            set.put_slice(&c[..cut]);
            let mut it = RawBatches::new(set.freeze());
            let first = it.next().expect("a").expect("valid a");
            check_sample(&first);
            let second = it.next().expect("b").expect("valid b");
            assert_eq!(second.header().base_offset, 106);
            assert_eq!(second.records().expect("records").len(), 1);
            assert!(it.next().is_none(), "cut {cut}");
            assert_eq!(it.remaining().as_ref(), &c[..cut]);
        }
    }

    /// Rewrites the records count and the CRC of a whole batch.
    fn with_count(batch: &[u8], count: i32) -> Bytes {
        let mut m = batch.to_vec();
        m[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = batch_crc(&m);
        m[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(m)
    }

    /// A batch with the given attributes and raw body, with a correct header and CRC.
    fn raw_batch(attributes: i16, count: i32, body: &[u8]) -> Bytes {
        let mut m = BatchBuilder::new().build().expect("empty").to_vec();
        m.extend_from_slice(body);
        let len = (m.len() - LOG_OVERHEAD) as i32;
        m[8..12].copy_from_slice(&len.to_be_bytes());
        m[21..23].copy_from_slice(&attributes.to_be_bytes());
        m[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = batch_crc(&m);
        m[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(m)
    }

    #[test]
    fn hostile_batches_are_errors_not_panics() {
        for codec in Compression::ALL {
            let good = sample_builder(codec).build().expect("build");
            // Record count too large, too small, huge.
            for count in [7, 5, 0, i32::MAX] {
                let b = RawBatch::new(with_count(&good, count)).expect("header ok");
                b.verify_crc().expect("crc fixed up");
                assert!(b.records().is_err(), "{codec:?} count {count}");
            }
            // Negative record count is refused at the header.
            assert!(RawBatch::new(with_count(&good, -1)).is_err());
            // Body replaced by garbage.
            let garbage = raw_batch(codec.attribute_bits(), 1, &[0xff; 40]);
            assert!(
                RawBatch::new(garbage)
                    .expect("header ok")
                    .records()
                    .is_err()
            );
            // Body truncated (with the header fixed up to match).
            let body = &good[BATCH_HEADER_LEN..];
            let cut = raw_batch(codec.attribute_bits(), 6, &body[..body.len() - 3]);
            assert!(
                RawBatch::new(cut).expect("header ok").records().is_err(),
                "{codec:?} cut"
            );
            // Trailing garbage after the records.
            let mut long = body.to_vec();
            long.extend_from_slice(&[0, 0, 0]);
            let long = raw_batch(codec.attribute_bits(), 6, &long);
            assert!(RawBatch::new(long).expect("header ok").records().is_err());
        }
        // Unknown codec.
        let b = RawBatch::new(raw_batch(5, 0, &[])).expect("header ok");
        assert!(matches!(
            b.records(),
            Err(ProtocolError::UnknownCompression(5))
        ));
        // Too short, bad magic, length too small, negative length.
        assert!(RawBatch::new(Bytes::from_static(&[0; 30])).is_err());
        let good = sample_builder(Compression::None).build().expect("build");
        let mut m = good.to_vec();
        m[16] = 1;
        assert!(matches!(
            RawBatch::new(Bytes::from(m)),
            Err(ProtocolError::UnsupportedMagic(1))
        ));
        let mut m = good.to_vec();
        m[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        let mut it = RawBatches::new(Bytes::from(m));
        assert!(it.next().expect("an error").is_err());
        assert!(it.next().is_none());
        let mut m = good.to_vec();
        m[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(
            RawBatches::new(Bytes::from(m))
                .next()
                .expect("an error")
                .is_err()
        );
    }

    #[test]
    fn decompression_bomb_is_capped() {
        // 64 MiB of zeros as one record value compresses to very little.
        let zeros = vec![0u8; 64 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut b = BatchBuilder::new().compression(codec);
            b.push(None, Some(&zeros), &[], 0).expect("push");
            let bytes = b.build().expect("build");
            assert!(bytes.len() < 4 << 20, "{codec:?} {}", bytes.len());
            let batch = RawBatch::new(bytes).expect("batch");
            assert!(
                matches!(
                    batch.records_with_limit(1 << 20),
                    Err(ProtocolError::Compression { .. })
                ),
                "{codec:?}"
            );
            let recs = batch.records().expect("under the default cap");
            assert_eq!(recs[0].value.as_ref().map(Bytes::len), Some(64 << 20));
        }
    }

    #[test]
    fn raw_snappy_body_is_accepted() {
        // What a producer writing plain (unframed) snappy would send.
        let plain = sample_builder(Compression::None).build().expect("build");
        let records = &plain[BATCH_HEADER_LEN..];
        let raw = snap::raw::Encoder::new()
            .compress_vec(records)
            .expect("snappy");
        let batch =
            RawBatch::new(raw_batch(Compression::Snappy.attribute_bits(), 6, &raw)).expect("batch");
        let a = batch.records().expect("records");
        let b = RawBatch::new(plain)
            .expect("batch")
            .records()
            .expect("records");
        assert_eq!(a, b);
    }

    mod kafka_protocol_cross_check {
        use super::*;
        use kafka_protocol::protocol::StrBytes;
        use kafka_protocol::records::{
            Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
            RecordEncodeOptions, TimestampType as KTimestampType,
        };

        fn krecord(i: i64) -> KRecord {
            let mut headers = kafka_protocol::indexmap::IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("h1"),
                Some(Bytes::from(format!("v{i}"))),
            );
            headers.insert(StrBytes::from_static_str("h2"), None);
            KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 3,
                producer_id: 77,
                producer_epoch: 2,
                timestamp_type: KTimestampType::Creation,
                offset: 500 + i,
                sequence: 10 + i as i32,
                timestamp: 1_700_000_000_000 + i * 3,
                key: if i % 2 == 0 {
                    Some(Bytes::from(format!("k{i}")))
                } else {
                    None
                },
                value: if i % 3 == 0 {
                    None
                } else {
                    Some(Bytes::from(vec![i as u8; i as usize]))
                },
                headers,
            }
        }

        #[test]
        fn theirs_to_ours() {
            let theirs: Vec<KRecord> = (0..5).map(krecord).collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &theirs,
                &RecordEncodeOptions {
                    version: 2,
                    compression: KCompression::None,
                },
            )
            .expect("their encoder");
            let mut it = RawBatches::new(buf.freeze());
            let batch = it.next().expect("a batch").expect("valid");
            assert!(it.next().is_none());
            batch.verify_crc().expect("crc");
            let h = batch.header();
            assert_eq!(h.base_offset, 500);
            assert_eq!(h.last_offset_delta, 4);
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (77, 2, 10)
            );
            assert_eq!(h.partition_leader_epoch, 3);
            let ours = batch.records().expect("our decoder");
            assert_eq!(ours.len(), theirs.len());
            for (o, t) in ours.iter().zip(&theirs) {
                assert_eq!(o.offset(h), t.offset);
                assert_eq!(o.timestamp(h), t.timestamp);
                assert_eq!(o.key, t.key);
                assert_eq!(o.value, t.value);
                let th: Vec<(Bytes, Option<Bytes>)> = t
                    .headers
                    .iter()
                    .map(|(k, v)| (Bytes::copy_from_slice(k.as_str().as_bytes()), v.clone()))
                    .collect();
                let oh: Vec<(Bytes, Option<Bytes>)> = o
                    .headers
                    .iter()
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect();
                assert_eq!(oh, th);
            }
        }

        #[test]
        fn ours_to_theirs() {
            let mut b = BatchBuilder::new()
                .base_offset(40)
                .producer(5, 6, 7)
                .partition_leader_epoch(8);
            let hs = [
                RecordHeader::new("a", Some(Bytes::from_static(b"1"))),
                RecordHeader::new("b", None),
            ];
            b.push(Some(b"k0"), Some(b"v0"), &hs, 2_000).expect("push");
            b.push(None, Some(b"v1"), &[], 1_990).expect("push");
            b.push(Some(b"k2"), None, &hs[1..], 2_010).expect("push");
            let mut bytes = b.build().expect("build");
            let set = RecordBatchDecoder::decode(&mut bytes).expect("their decoder");
            assert_eq!(set.version, 2);
            assert_eq!(set.compression, KCompression::None);
            let r = &set.records;
            assert_eq!(r.len(), 3);
            let offsets: Vec<i64> = r.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![40, 41, 42]);
            let ts: Vec<i64> = r.iter().map(|r| r.timestamp).collect();
            assert_eq!(ts, vec![2_000, 1_990, 2_010]);
            let seqs: Vec<i32> = r.iter().map(|r| r.sequence).collect();
            assert_eq!(seqs, vec![7, 8, 9]);
            assert_eq!((r[0].producer_id, r[0].producer_epoch), (5, 6));
            assert_eq!(r[0].partition_leader_epoch, 8);
            assert_eq!(r[0].key.as_deref(), Some(&b"k0"[..]));
            assert_eq!(r[1].key, None);
            assert_eq!(r[2].value, None);
            let h0: Vec<(&str, Option<&[u8]>)> = r[0]
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect();
            assert_eq!(h0, vec![("a", Some(&b"1"[..])), ("b", None)]);
            assert_eq!(r[1].headers.len(), 0);
            assert_eq!(r[2].headers.len(), 1);
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        type Hdr = (Vec<u8>, Option<Vec<u8>>);
        type Rec = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<Hdr>, i64);

        fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(any::<u8>(), 0..max)
        }

        fn rec() -> impl Strategy<Value = Rec> {
            (
                proptest::option::of(bytes(40)),
                proptest::option::of(bytes(300)),
                proptest::collection::vec(
                    (
                        proptest::sample::select(vec![
                            b"a".to_vec(),
                            b"b".to_vec(),
                            b"".to_vec(),
                            b"x-id".to_vec(),
                        ]),
                        proptest::option::of(bytes(20)),
                    ),
                    0..5,
                ),
                -(1i64 << 50)..(1i64 << 50),
            )
        }

        proptest! {
            #[test]
            fn builder_round_trips(
                recs in proptest::collection::vec(rec(), 0..20),
                codec in proptest::sample::select(Compression::ALL.to_vec()),
                base_offset in 0i64..(1 << 60),
                producer in (-1i64..1000, -1i16..10, -1i32..1000),
                transactional in any::<bool>(),
                leader_epoch in -1i32..100,
            ) {
                let mut b = BatchBuilder::new()
                    .compression(codec)
                    .base_offset(base_offset)
                    .producer(producer.0, producer.1, producer.2)
                    .transactional(transactional)
                    .partition_leader_epoch(leader_epoch);
                for (k, v, hs, ts) in &recs {
                    let hs: Vec<RecordHeader> = hs
                        .iter()
                        .map(|(k, v)| RecordHeader::new(k.clone(), v.clone().map(Bytes::from)))
                        .collect();
                    b.push(k.as_deref(), v.as_deref(), &hs, *ts).expect("push");
                }
                let bytes = b.build().expect("build");
                let mut it = RawBatches::new(bytes);
                let batch = it.next().expect("one").expect("valid");
                prop_assert!(it.next().is_none());
                batch.verify_crc().expect("crc");
                let h = *batch.header();
                prop_assert_eq!(h.base_offset, base_offset);
                prop_assert_eq!(h.is_transactional(), transactional);
                prop_assert_eq!(h.records_count as usize, recs.len());
                let out = batch.records().expect("records");
                prop_assert_eq!(out.len(), recs.len());
                if let Some(max) = recs.iter().map(|r| r.3).max() {
                    prop_assert_eq!(h.max_timestamp, max);
                }
                for (i, (o, (k, v, hs, ts))) in out.iter().zip(&recs).enumerate() {
                    prop_assert_eq!(o.offset(&h), base_offset + i as i64);
                    prop_assert_eq!(o.timestamp(&h), *ts);
                    prop_assert_eq!(o.key.as_deref(), k.as_deref());
                    prop_assert_eq!(o.value.as_deref(), v.as_deref());
                    let oh: Vec<Hdr> = o
                        .headers
                        .iter()
                        .map(|h| (h.key.to_vec(), h.value.as_ref().map(|v| v.to_vec())))
                        .collect();
                    prop_assert_eq!(&oh, hs);
                }
            }
        }
    }

    // ---- The fuzz target bodies (keep in sync with fuzz/fuzz_targets/*.rs), run on stable
    // over deterministic pseudo-random and mutated inputs.

    use crate::fuzzing::{frame_decoder as fuzz_frame_decoder, record_batch as fuzz_record_batch};

    /// SplitMix64: a tiny deterministic generator for the fuzz-style tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn mutate(rng: &mut Rng, mut v: Vec<u8>) -> Vec<u8> {
        for _ in 0..=rng.below(4) {
            let len = v.len();
            match rng.below(7) {
                0 if len > 0 => {
                    let at = rng.below(len);
                    v[at] ^= 1 << rng.below(8);
                }
                1 if len > 0 => {
                    let at = rng.below(len);
                    v[at] = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)];
                }
                2 => v.truncate(rng.below(len + 1)),
                3 => {
                    let at = rng.below(len + 1);
                    let n = rng.below(8) + 1;
                    let extra = rng.bytes(n);
                    v.splice(at..at, extra);
                }
                4 if len > 0 => {
                    let from = rng.below(len);
                    let to = (from + rng.below(32)).min(len);
                    let piece = v[from..to].to_vec();
                    let at = rng.below(len + 1);
                    v.splice(at..at, piece);
                }
                5 if len >= 4 => {
                    let at = rng.below(len - 3);
                    let x = [0i32, -1, -2, i32::MAX, i32::MIN, 1 << 20][rng.below(6)];
                    v[at..at + 4].copy_from_slice(&x.to_be_bytes());
                }
                _ => {
                    let at = rng.below(len + 1);
                    v.truncate(at);
                }
            }
        }
        v
    }

    /// Fixes up the batch length and CRC of the first batch so mutations reach the records.
    fn fix_first_batch(v: &mut [u8]) {
        if v.len() >= BATCH_HEADER_LEN {
            let len = (v.len() - LOG_OVERHEAD) as i32;
            v[8..12].copy_from_slice(&len.to_be_bytes());
            let crc = batch_crc(v);
            v[17..21].copy_from_slice(&crc.to_be_bytes());
        }
    }

    #[test]
    fn fuzz_bodies_on_mutated_batches() {
        let mut rng = Rng(0x5eed_0001);
        let mut seeds = Vec::new();
        for codec in Compression::ALL {
            let mut b = BatchBuilder::new().compression(codec).base_offset(3);
            for i in 0..4u8 {
                let hs = [
                    RecordHeader::new("h", Some(Bytes::from(vec![i; 3]))),
                    RecordHeader::new("h", None),
                ];
                b.push(Some(&[i; 4]), Some(&[i; 9]), &hs, 10 + i64::from(i))
                    .expect("push");
            }
            let one = b.build().expect("build");
            let mut two = one.to_vec();
            two.extend_from_slice(&one);
            seeds.push(one.to_vec());
            seeds.push(two);
        }
        for i in 0..3000 {
            let seed = &seeds[rng.below(seeds.len())];
            let mut v = mutate(&mut rng, seed.clone());
            if i % 2 == 0 {
                fix_first_batch(&mut v);
            }
            fuzz_record_batch(&v);
            fuzz_frame_decoder(&v);
        }
        for _ in 0..1000 {
            let n = rng.below(200);
            let v = rng.bytes(n);
            fuzz_record_batch(&v);
            fuzz_frame_decoder(&v);
        }
    }

    #[test]
    fn fuzz_bodies_on_mutated_frames() {
        let mut rng = Rng(0x5eed_0002);
        let mut seeds = Vec::new();
        for (key, version) in [(18i16, 0i16), (18, 3), (0, 9), (1, 12), (3, 1), (999, 0)] {
            let mut body = BytesMut::new();
            body.put_i16(key);
            body.put_i16(version);
            body.put_i32(42);
            body.put_i16(6);
            body.put_slice(b"client");
            body.put_u8(0); // empty tagged fields
            body.put_slice(b"body");
            let mut wire = BytesMut::new();
            encode_frame(&body, &mut wire);
            encode_frame(&body[..8], &mut wire);
            let mut v = vec![rng.below(256) as u8];
            v.extend_from_slice(&wire);
            seeds.push(v);
        }
        for _ in 0..3000 {
            let seed = &seeds[rng.below(seeds.len())];
            let v = mutate(&mut rng, seed.clone());
            fuzz_frame_decoder(&v);
            fuzz_record_batch(&v);
        }
    }
}
