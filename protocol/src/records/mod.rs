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
pub use compression::Compression;
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
