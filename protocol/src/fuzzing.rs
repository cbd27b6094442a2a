//! Bodies of the fuzz targets in `fuzz/`, here so the same code also runs on stable in the unit
//! tests over deterministic inputs. Not part of the stable API. The assertions are the
//! properties fuzzing checks: whatever decodes re-encodes to the same records, and nothing
//! panics on any input.
#![allow(clippy::expect_used)]

use bytes::{Bytes, BytesMut};

use crate::frame::FrameDecoder;
use crate::header::RequestHeaderPeek;
use crate::records::{BatchBuilder, RawBatch, RawBatches};

/// Body of the `record_batch` fuzz target: walk, CRC-check, decode and re-encode.
pub fn record_batch(data: &[u8]) {
    let mut batches = RawBatches::new(Bytes::copy_from_slice(data));
    for batch in batches.by_ref() {
        let Ok(batch) = batch else { break };
        let _ = batch.verify_crc();
        let h = *batch.header();
        assert_eq!(batch.bytes().len(), h.total_len());
        let Ok(records) = batch.records() else {
            continue;
        };
        assert_eq!(records.len(), h.records_count as usize);
        // Whatever decodes must re-encode and decode to the same keys, values, headers.
        let mut b = BatchBuilder::new();
        let mut pushed = true;
        for r in &records {
            let _ = (r.offset(&h), r.timestamp(&h));
            pushed &= b.push_record(r, 0).is_ok();
        }
        let Ok(again) = b.build() else { continue };
        if !pushed {
            continue;
        }
        let again = RawBatch::new(again).expect("own batch parses");
        again.verify_crc().expect("own crc");
        let round = again.records().expect("own records decode");
        assert_eq!(round.len(), records.len());
        for (x, y) in round.iter().zip(&records) {
            assert_eq!(
                (&x.key, &x.value, &x.headers),
                (&y.key, &y.value, &y.headers)
            );
        }
    }
    assert!(batches.remaining().len() <= data.len());
}

/// Body of the `frame_decoder` fuzz target: frames fed in pieces, each header peeked.
pub fn frame_decoder(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let decoder = FrameDecoder::new(1 << 20);
    let step = usize::from(first % 64) + 1;
    let mut buf = BytesMut::new();
    'feed: for chunk in rest.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Ok(peek) = RequestHeaderPeek::parse(&frame)
                        && let Some(at) = peek.body_offset
                    {
                        assert!(at <= frame.len());
                    }
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
}
