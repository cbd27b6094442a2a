//! Fuzz target: the size-prefixed frame decoder fed in pieces, and the request-header peek on
//! every frame it yields.
//!
//! The first input byte picks the size of the pieces the rest arrives in, so the fuzzer
//! explores partial prefixes and frames split across reads. The same body runs on stable in
//! `gatehouse-protocol`'s unit tests (`records::tests::fuzz_frame_decoder`); keep them in sync.

#![no_main]

use bytes::BytesMut;
use gatehouse_protocol::frame::FrameDecoder;
use gatehouse_protocol::header::RequestHeaderPeek;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // A small maximum keeps a hostile size prefix from reserving the default 100 MiB per run.
    let decoder = FrameDecoder::new(1 << 20);
    let step = usize::from(first % 64) + 1;
    let mut buf = BytesMut::new();
    'feed: for chunk in rest.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Ok(peek) = RequestHeaderPeek::parse(&frame) {
                        if let Some(at) = peek.body_offset {
                            assert!(at <= frame.len());
                        }
                    }
                }
                Ok(None) => break,
                // A real connection is closed on a framing error.
                Err(_) => break 'feed,
            }
        }
    }
});
