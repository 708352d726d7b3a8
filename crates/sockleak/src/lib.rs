//! The sockleak command-line tool as a library: the binary (`src/main.rs`)
//! is a thin `main` over [`cli`] and [`commands`]; the modules are a library
//! so that the fuzz targets in `fuzz/` reach the parsers of outside data
//! (the recording reader and chart of `report`, `--web-config`, command-line
//! redaction) through the same functions the tool calls.

#[cfg(target_os = "linux")]
pub mod cli;
#[cfg(target_os = "linux")]
pub mod commands;
pub mod exit;
#[cfg(target_os = "linux")]
pub mod exporter;
#[cfg(target_os = "linux")]
pub mod loadgen;
#[cfg(target_os = "linux")]
pub mod output;
#[cfg(target_os = "linux")]
pub mod tui;
