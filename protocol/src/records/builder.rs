//! Writing record batches.
//!
//! [`BatchBuilder`] collects records (each with an explicit timestamp), assigns offset deltas
//! 0, 1, 2, ... in push order and writes one RecordBatch v2: header fields, the (optionally
//! compressed) records and the CRC32C. The first record's timestamp becomes `baseTimestamp`,
//! as in the Java client, and the largest becomes `maxTimestamp`.
//!
//! ```
//! use gatehouse_protocol::records::{BatchBuilder, Compression, RawBatch, RecordHeader};
//!
//! let mut b = BatchBuilder::new().compression(Compression::Lz4).base_offset(42);
//! b.push(Some(b"k"), Some(b"v"), &[RecordHeader::new("trace", None)], 1_700_000_000_000)
//!     .expect("small record");
//! let batch = RawBatch::new(b.build().expect("build")).expect("valid batch");
//! batch.verify_crc().expect("crc");
//! assert_eq!(batch.records().expect("records")[0].offset(batch.header()), 42);
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::record::{Record, RecordHeader, put_nullable, put_sized, put_varint, put_varlong};
use super::{BATCH_HEADER_LEN, CRC_START, Compression, LOG_OVERHEAD, TimestampType, batch_crc};
use crate::ProtocolError;

/// Builds RecordBatch v2 bytes.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    timestamp_type: TimestampType,
    log_append_time: Option<i64>,
    /// The encoded records, uncompressed.
    records: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    scratch: Vec<u8>,
    /// Set by [`BatchBuilder::like`]: the original batch's `lastOffsetDelta`.
    last_offset_delta: Option<i32>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn too_big(why: String) -> ProtocolError {
    ProtocolError::Malformed {
        what: "record batch",
        why,
    }
}

impl BatchBuilder {
    /// An empty, uncompressed, non-transactional create-time batch at base offset 0, with no
    /// producer id (-1/-1/-1) and partition leader epoch -1.
    pub fn new() -> Self {
        Self {
            compression: Compression::None,
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            timestamp_type: TimestampType::CreateTime,
            log_append_time: None,
            records: Vec::new(),
            count: 0,
            base_timestamp: None,
            max_timestamp: -1,
            scratch: Vec::new(),
            last_offset_delta: None,
        }
    }

    /// A builder that writes a batch with the same header as `header` (offsets, leader
    /// epoch, producer id/epoch/sequence, attributes incl. compression, base timestamp and
    /// `lastOffsetDelta`), for re-encoding a batch whose records change (encryption):
    /// push the records with [`BatchBuilder::push_same_offset`]. Only the CRC (and the sizes)
    /// differ from the original.
    pub fn like(header: &super::BatchHeader) -> Result<Self, ProtocolError> {
        let mut b = Self::new()
            .compression(header.compression()?)
            .base_offset(header.base_offset)
            .partition_leader_epoch(header.partition_leader_epoch)
            .producer(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
            )
            .transactional(header.is_transactional())
            .control(header.is_control())
            .timestamp_type(header.timestamp_type());
        if header.timestamp_type() == TimestampType::LogAppendTime {
            b = b.log_append_time(header.max_timestamp);
        }
        b.base_timestamp = Some(header.base_timestamp);
        b.last_offset_delta = Some(header.last_offset_delta);
        Ok(b)
    }

    /// Appends a decoded record keeping its offset delta (compacted batches have gaps).
    pub fn push_same_offset(
        &mut self,
        record: &Record,
        timestamp: i64,
    ) -> Result<(), ProtocolError> {
        let count = self.count;
        self.count = record.offset_delta;
        let pushed = self.push(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
            timestamp,
        );
        self.count = count.saturating_add(1);
        pushed
    }

    /// Sets the compression codec.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the base offset (a producer writes 0; the broker stamps the real one).
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    /// Sets the partition leader epoch.
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Sets producer id, producer epoch and base sequence (idempotent/transactional producers).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the producer id alone.
    pub fn producer_id(mut self, producer_id: i64) -> Self {
        self.producer_id = producer_id;
        self
    }

    /// Sets the producer epoch alone.
    pub fn producer_epoch(mut self, producer_epoch: i16) -> Self {
        self.producer_epoch = producer_epoch;
        self
    }

    /// Sets the base sequence alone.
    pub fn base_sequence(mut self, base_sequence: i32) -> Self {
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch transactional (attribute bit 4).
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Marks the batch as a control batch (attribute bit 5), e.g. for transaction markers.
    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// Sets the timestamp type (attribute bit 3).
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }

    /// Makes a log-append-time batch whose `maxTimestamp` is `append_time`, as a broker writes
    /// when the topic uses `message.timestamp.type=LogAppendTime`.
    pub fn log_append_time(mut self, append_time: i64) -> Self {
        self.timestamp_type = TimestampType::LogAppendTime;
        self.log_append_time = Some(append_time);
        self
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        // `count` never goes negative.
        usize::try_from(self.count).unwrap_or(0)
    }

    /// True when no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size the batch would have uncompressed: the header plus the encoded records.
    pub fn uncompressed_size(&self) -> usize {
        BATCH_HEADER_LEN + self.records.len()
    }

    /// Appends a record with an explicit (absolute) timestamp; its offset delta is the number
    /// of records pushed before it. Headers are written in order, duplicate keys included.
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        timestamp: i64,
    ) -> Result<(), ProtocolError> {
        let offset_delta = self.count;
        let next_count = self
            .count
            .checked_add(1)
            .ok_or_else(|| too_big("more than i32::MAX records".into()))?;
        let base = self.base_timestamp.unwrap_or(timestamp);
        let timestamp_delta = timestamp.checked_sub(base).ok_or_else(|| {
            too_big(format!(
                "timestamp {timestamp} is too far from the base timestamp {base}"
            ))
        })?;
        let header_count = i32::try_from(headers.len())
            .map_err(|_| too_big("more than i32::MAX headers".into()))?;

        let mut f = std::mem::take(&mut self.scratch);
        f.clear();
        let body = (|| {
            f.push(0); // record attributes, unused
            put_varlong(&mut f, timestamp_delta);
            put_varint(&mut f, offset_delta);
            put_nullable(&mut f, key, "record key")?;
            put_nullable(&mut f, value, "record value")?;
            put_varint(&mut f, header_count);
            for h in headers {
                put_sized(&mut f, &h.key, "header key")?;
                put_nullable(&mut f, h.value.as_deref(), "header value")?;
            }
            Ok::<(), ProtocolError>(())
        })();
        let result = body.and_then(|()| {
            let len = i32::try_from(f.len())
                .map_err(|_| too_big(format!("record of {} bytes", f.len())))?;
            put_varint(&mut self.records, len);
            self.records.extend_from_slice(&f);
            Ok(())
        });
        self.scratch = f;
        result?;

        self.count = next_count;
        self.base_timestamp = Some(base);
        if self.count == 1 || timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
        }
        Ok(())
    }

    /// Appends a decoded record with the absolute `timestamp`. Its `offset_delta` and
    /// `timestamp_delta` are ignored: offsets are reassigned in push order.
    pub fn push_record(&mut self, record: &Record, timestamp: i64) -> Result<(), ProtocolError> {
        self.push(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
            timestamp,
        )
    }

    /// The attributes the batch will carry.
    pub fn attributes(&self) -> i16 {
        let mut a = self.compression.attribute_bits();
        if self.timestamp_type == TimestampType::LogAppendTime {
            a |= 0x08;
        }
        if self.transactional {
            a |= 0x10;
        }
        if self.control {
            a |= 0x20;
        }
        a
    }

    /// Writes the batch. An empty builder gives a batch with no records, `lastOffsetDelta` 0
    /// and timestamps -1.
    pub fn build(&self) -> Result<Bytes, ProtocolError> {
        let mut out = BytesMut::new();
        self.build_into(&mut out)?;
        Ok(out.freeze())
    }

    /// Reserves room for `additional` more bytes of encoded records (one allocation instead
    /// of repeated doubling when the size is known, as when re-encoding a batch).
    pub fn reserve(&mut self, additional: usize) {
        self.records.reserve(additional);
    }

    /// [`BatchBuilder::build`], appending the batch to `out` (no intermediate copy when
    /// several batches are concatenated).
    pub fn build_into(&self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        let compressed;
        let payload: &[u8] = match self.compression {
            Compression::None => &self.records,
            codec => {
                compressed = codec.compress(&self.records)?;
                &compressed
            }
        };
        let total = BATCH_HEADER_LEN + payload.len();
        let batch_length = i32::try_from(total - LOG_OVERHEAD)
            .map_err(|_| too_big(format!("batch of {total} bytes")))?;
        let base_timestamp = self.base_timestamp.unwrap_or(-1);
        let max_timestamp = self.log_append_time.unwrap_or(self.max_timestamp);
        let last_offset_delta = self
            .last_offset_delta
            .unwrap_or_else(|| (self.count - 1).max(0));

        let start = out.len();
        out.reserve(total);
        out.put_i64(self.base_offset);
        out.put_i32(batch_length);
        out.put_i32(self.partition_leader_epoch);
        out.put_i8(2);
        out.put_u32(0); // CRC, filled in below
        debug_assert_eq!(out.len() - start, CRC_START);
        out.put_i16(self.attributes());
        out.put_i32(last_offset_delta);
        out.put_i64(base_timestamp);
        out.put_i64(max_timestamp);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_i32(self.count);
        debug_assert_eq!(out.len() - start, BATCH_HEADER_LEN);
        out.put_slice(payload);
        let crc = batch_crc(&out[start..]);
        out[start + 17..start + CRC_START].copy_from_slice(&crc.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{BatchHeader, RawBatch};

    #[test]
    fn build_into_appends_the_same_bytes_as_build() {
        let mut first = BatchBuilder::new().base_offset(5).producer(9, 1, 0);
        first.reserve(64);
        first.push(Some(b"k"), Some(b"v1"), &[], 10).expect("push");
        let mut second = BatchBuilder::new()
            .base_offset(6)
            .compression(Compression::Lz4);
        second.push(None, Some(b"v2"), &[], 11).expect("push");
        let mut out = BytesMut::from(&b"prefix"[..]);
        first.build_into(&mut out).expect("first");
        second.build_into(&mut out).expect("second");
        let want = [
            &b"prefix"[..],
            &first.build().expect("build"),
            &second.build().expect("build"),
        ]
        .concat();
        assert_eq!(&out[..], &want[..]);
        // Each appended batch carries its own valid CRC.
        let a = RawBatch::new(Bytes::copy_from_slice(
            &out[6..6 + first.build().expect("b").len()],
        ))
        .expect("first batch");
        a.verify_crc().expect("crc");
    }

    #[test]
    fn header_fields_are_written() {
        let mut b = BatchBuilder::new()
            .base_offset(1000)
            .partition_leader_epoch(7)
            .producer(55, 3, 100)
            .transactional(true)
            .compression(Compression::Gzip);
        b.push(Some(b"a"), None, &[], 500).expect("push");
        b.push(None, Some(b"b"), &[], 400).expect("push");
        b.push(None, None, &[], 900).expect("push");
        assert_eq!(b.len(), 3);
        let bytes = b.build().expect("build");
        let h = BatchHeader::parse(&bytes).expect("header");
        assert_eq!(h.base_offset, 1000);
        assert_eq!(h.total_len(), bytes.len());
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.last_offset(), 1002);
        assert_eq!(h.base_timestamp, 500);
        assert_eq!(h.max_timestamp, 900);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (55, 3, 100)
        );
        assert_eq!(h.last_sequence(), 102);
        assert_eq!(h.records_count, 3);
        assert!(h.is_transactional());
        assert!(!h.is_control());
        assert_eq!(h.compression().expect("codec"), Compression::Gzip);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        let batch = RawBatch::new(bytes).expect("batch");
        batch.verify_crc().expect("crc");
        let recs = batch.records().expect("records");
        let ts: Vec<i64> = recs.iter().map(|r| r.timestamp(batch.header())).collect();
        assert_eq!(ts, vec![500, 400, 900]);
        let offs: Vec<i64> = recs.iter().map(|r| r.offset(batch.header())).collect();
        assert_eq!(offs, vec![1000, 1001, 1002]);
    }

    #[test]
    fn defaults_match_a_plain_producer() {
        let bytes = BatchBuilder::default().build().expect("empty build");
        let h = BatchHeader::parse(&bytes).expect("header");
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1)
        );
        assert_eq!(h.partition_leader_epoch, -1);
        assert_eq!(h.records_count, 0);
        assert_eq!(h.attributes, 0);
        assert_eq!(bytes.len(), BATCH_HEADER_LEN);
        let batch = RawBatch::new(bytes).expect("batch");
        batch.verify_crc().expect("crc");
        assert!(batch.records().expect("records").is_empty());
    }

    #[test]
    fn log_append_time_and_control() {
        let mut b = BatchBuilder::new().log_append_time(12345).control(true);
        b.push(None, None, &[], 10).expect("push");
        let batch = RawBatch::new(b.build().expect("build")).expect("batch");
        let h = *batch.header();
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert!(h.is_control());
        assert_eq!(h.max_timestamp, 12345);
        let recs = batch.records().expect("records");
        assert_eq!(recs[0].timestamp(&h), 12345);
    }

    #[test]
    fn extreme_timestamps_are_refused_not_wrapped() {
        let mut b = BatchBuilder::new();
        b.push(None, None, &[], i64::MIN).expect("first");
        assert!(b.push(None, None, &[], i64::MAX).is_err());
        assert_eq!(b.len(), 1);
        b.push(None, None, &[], -5).expect("near enough");
        let batch = RawBatch::new(b.build().expect("build")).expect("batch");
        let recs = batch.records().expect("records");
        assert_eq!(recs[1].timestamp(batch.header()), -5);
        assert_eq!(recs[1].offset_delta, 1);
    }
}
