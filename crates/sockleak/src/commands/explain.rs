//! `sockleak explain [TOPIC]`: plain-language explanations.

use crate::exit;
use anyhow::{bail, Result};
use sockleak_model::explain;
use std::fmt::Write;

pub fn run(topic: Option<&str>) -> Result<u8> {
    let text = match topic {
        None => {
            let mut out = String::from("Topics (sockleak explain TOPIC):\n");
            for (name, line) in explain::topics() {
                let _ = writeln!(out, "  {name:<24} {line}");
            }
            out
        }
        Some(t) => match explain::explain(t) {
            Some(text) => {
                let mut s = text.to_string();
                if !s.ends_with('\n') {
                    s.push('\n');
                }
                s
            }
            None => bail!("explain {t:?}: unknown topic (run `sockleak explain` for the list)"),
        },
    };
    exit::write_stdout(text.as_bytes())?;
    Ok(exit::OK)
}
