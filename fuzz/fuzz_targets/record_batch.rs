//! Fuzz target: a record set walked with `RawBatches`, each batch's CRC checked and its
//! records decoded (decompressing as needed); whatever decodes must re-encode with
//! `BatchBuilder` and decode again to the same keys, values and headers.
//!
//! The same body runs on stable in `gatehouse-protocol`'s unit tests
//! (`records::tests::fuzz_record_batch`); keep them in sync.

#![no_main]

use bytes::Bytes;
use gatehouse_protocol::records::{BatchBuilder, RawBatch, RawBatches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
