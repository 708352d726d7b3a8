//! `sockleak doctor`: what this run can see, what it cannot, and the command
//! or capability that would fix each gap.

use crate::exit;
use crate::output::style::Style;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

pub fn run(st: Style) -> Result<u8> {
    let checks = sockleak_collect::privileges::checks(Path::new("/proc"));
    let mut out = String::new();
    let mut gaps = 0;
    for c in &checks {
        let mark = if c.ok {
            st.cyan("ok  ")
        } else {
            st.yellow("MISS")
        };
        if !c.ok {
            gaps += 1;
        }
        let _ = writeln!(out, "{mark} {:<34} {}", c.name, c.detail);
        if let (false, Some(fix)) = (c.ok, &c.fix) {
            let _ = writeln!(out, "     fix: {fix}");
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        if gaps == 0 {
            "sockleak can see every socket, owner and namespace on this host.".to_string()
        } else {
            format!("{gaps} gap(s): scans will be partial and say so.")
        }
    );
    exit::write_stdout(out.as_bytes())?;
    Ok(exit::OK)
}
