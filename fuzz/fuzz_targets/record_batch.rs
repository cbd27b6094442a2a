//! Fuzz target: a record set walked with `RawBatches`, each batch's CRC checked and its
//! records decoded (decompressing as needed); whatever decodes must re-encode with
//! `BatchBuilder` and decode again to the same keys, values and headers.
//!
//! The body lives in `gatehouse_protocol::fuzzing` and also runs on stable in the unit tests.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatehouse_protocol::fuzzing::record_batch(data));
