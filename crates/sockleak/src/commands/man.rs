//! `sockleak man [--dir DIR]`: man pages (roff) generated from the clap
//! definitions, so they say what `--help` says.

use crate::exit;
use anyhow::{Context, Result};
use std::path::Path;

pub fn run(dir: Option<&Path>) -> Result<u8> {
    let cmd = crate::cli::command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("render man page")?;
            exit::write_stdout(&page)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            // sockleak.1 and sockleak-SUB.1 for each subcommand (as git does),
            // each page's SEE ALSO-free body being that command's --help.
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("write man pages into {}", dir.display()))?;
        }
    }
    Ok(exit::OK)
}
