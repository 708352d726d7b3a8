//! Live-test peers for the /proc walk: a python child that builds a known fd
//! table, prints what it built, and is killed by pid when the test ends.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A python interpreter by absolute path (so the child's cmdline is known
/// exactly and no shim sits in between), or `None` to skip.
pub fn python() -> Option<String> {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if std::path::Path::new(p).exists() {
            return Some(p.to_string());
        }
    }
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let exe = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!exe.is_empty()).then_some(exe)
}

/// Prepended to every child script: drop fds leaked in from whoever started
/// the test run (cargo, a CI shell) so the fd table is exactly what the
/// script builds, and bound the child's life in case the test is killed
/// before it can stop it.
pub const PRELUDE: &str = "import os, sys, socket, select, struct, resource, time\n\
os.closerange(3, 65536)\n";

/// Ends every child script: report, then wait to be killed (30 s at most).
pub const EPILOGUE: &str = "sys.stdout.flush()\ntime.sleep(30)\n";

/// A running child, killed (SIGKILL to its pid) and reaped on drop.
pub struct Peer {
    pub child: Child,
    pub python: String,
    pub script: String,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts `python -c PRELUDE+body+EPILOGUE` with stdin and stderr on
    /// /dev/null and stdout on a pipe, and waits for its first line.
    pub fn start(python: &str, body: &str) -> (Peer, String) {
        let script = format!("{PRELUDE}{body}{EPILOGUE}");
        let mut child = Command::new(python)
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python child");
        let stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut peer = Peer {
            child,
            python: python.to_string(),
            script,
            stdout,
        };
        let line = peer.line();
        (peer, line)
    }

    /// The next line the child printed; panics on EOF (the child died: its
    /// traceback is on stderr).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).expect("read child stdout");
        assert!(n > 0, "child exited early (see its stderr above)");
        line.trim_end().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the child by pid and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parses `fd:inode fd:inode ...` after a leading word.
pub fn fd_inodes(line: &str) -> Vec<(u32, u64)> {
    line.split_whitespace()
        .skip(1)
        .map(|pair| {
            let (fd, ino) = pair.split_once(':').expect("fd:inode");
            (fd.parse().expect("fd"), ino.parse().expect("inode"))
        })
        .collect()
}

/// Field 22 of /proc/PID/stat, parsed independently of the code under test.
pub fn start_time_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after = &stat[stat.rfind(')').expect("comm end") + 1..];
    after
        .split_whitespace()
        .nth(19)
        .expect("field 22")
        .parse()
        .expect("start time")
}
