//! Fuzz target: one request frame through the gateway's router (header peek, per-API
//! authorization, request splitting and re-encoding), plus the PAN scanner and the governance
//! config checks on the same bytes. The body lives in `gatehouse_gateway::fuzzing` and also
//! runs on stable in the unit tests.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gatehouse_gateway::fuzzing::request_path(data);
    gatehouse_gateway::fuzzing::pan_and_configs(data);
});
