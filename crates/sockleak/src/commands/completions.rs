//! `sockleak completions SHELL`: a completion script generated from the clap
//! definitions (the .deb installs the bash, zsh and fish ones).

use crate::exit;
use anyhow::Result;

pub fn run(shell: clap_complete::Shell) -> Result<u8> {
    let mut cmd = crate::cli::command();
    // Generated into memory first: clap_complete panics on a write error,
    // and `sockleak completions bash | head` must exit quietly.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sockleak", &mut script);
    exit::write_stdout(&script)?;
    Ok(exit::OK)
}
