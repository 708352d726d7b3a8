//! `sockleak explain [TOPIC|ERROR]`: plain-language explanations of states,
//! finding kinds and symptoms (the error messages leaks end in).

use crate::exit;
use anyhow::{bail, Result};
use sockleak_model::explain;
use std::fmt::Write;

pub fn run(topic: Option<&str>) -> Result<u8> {
    let text = match topic {
        None => list(),
        Some(t) => match explain::explain(t) {
            Some(text) => {
                let mut s = text.to_string();
                if !s.ends_with('\n') {
                    s.push('\n');
                }
                s
            }
            None => bail!(
                "explain {t:?}: unknown topic or symptom (run `sockleak explain` for the list)"
            ),
        },
    };
    exit::write_stdout(text.as_bytes())?;
    Ok(exit::OK)
}

/// The topics, then the symptoms, each with its one line.
fn list() -> String {
    let mut out = String::from("Topics (sockleak explain TOPIC):\n");
    for (name, line) in explain::topics() {
        let _ = writeln!(out, "  {name:<24} {line}");
    }
    out.push_str("\nSymptoms (sockleak explain \"ERROR MESSAGE\", pasted as it was printed):\n");
    for s in explain::symptoms() {
        let _ = writeln!(out, "  {:<32} {}", s.message, s.line);
    }
    out
}
