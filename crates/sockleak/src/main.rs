//! The sockleak command-line tool.
fn main() {}
