//! Fuzz target: the size-prefixed frame decoder fed in pieces, and the request-header peek on
//! every frame it yields.
//!
//! The first input byte picks the size of the pieces the rest arrives in, so the fuzzer
//! explores partial prefixes and frames split across reads. The body lives in
//! `gatehouse_protocol::fuzzing` and also runs on stable in the unit tests.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatehouse_protocol::fuzzing::frame_decoder(data));
