//! Fuzz target `redact`: see harness/tool.rs.
#![no_main]

#[path = "../harness/tool.rs"]
#[allow(dead_code)] // each target calls one of the bodies
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::redact(data));
