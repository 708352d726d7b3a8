//! Fuzz target `proc_net_tcp`: see harness/collect.rs.
#![no_main]

#[path = "../harness/collect.rs"]
#[allow(dead_code)] // each target calls one of the bodies
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::proc_net_tcp(data));
