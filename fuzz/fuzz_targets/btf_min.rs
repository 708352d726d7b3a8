//! Fuzz target `btf_min`: see harness/collect.rs.
#![no_main]

#[path = "../harness/collect.rs"]
#[allow(dead_code)] // each target calls one of the bodies
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::btf_min(data));
