//! Processes that `check` and `run` start, watch and stop: spawning under
//! a keeper process (`keeper.rs`) that stops the command's whole tree
//! (SIGTERM, then SIGKILL after a grace period) also when sockleak dies,
//! process trees by ppid, and Ctrl-C/SIGTERM turned into a flag every loop
//! polls.

use super::keeper;
use anyhow::{bail, Context, Result};
use sockleak_collect::procfs::{scan_processes, ProcOptions};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM; every wait loop of `check` polls it.
pub static CANCEL: AtomicBool = AtomicBool::new(false);
/// The signal that set [`CANCEL`].
pub static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    SIGNAL.store(sig, Ordering::Relaxed);
    CANCEL.store(true, Ordering::Relaxed);
}

/// Routes SIGINT and SIGTERM to [`CANCEL`] so the target is stopped and
/// reported instead of left behind.
pub fn catch_signals() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores atomics;
        // sigemptyset and sigaction are given valid pointers.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("install the handler for signal {sig}"));
        }
    }
    Ok(())
}

/// The exit code a shell reports for a run stopped by `sig` (130 for SIGINT).
pub fn signal_exit_code(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(255)
}

/// "exit status 3", "killed by signal 9 (SIGKILL)".
pub fn describe_status(st: ExitStatus) -> String {
    if let Some(code) = st.code() {
        format!("exit status {code}")
    } else if let Some(sig) = st.signal() {
        format!("killed by signal {sig} ({})", signal_name(sig))
    } else {
        "ended".to_string()
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Splits a command line into words like a POSIX shell does for a simple
/// command (quotes and backslashes); `None` when it uses shell syntax
/// (pipes, redirections, variables, `&&`...), which then needs `sh -c`.
pub fn split_words(cmd: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        ch => cur.push(ch),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        '$' | '`' => return None,
                        ch => cur.push(ch),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '~' | '#' => {
                return None
            }
            ch => {
                in_word = true;
                cur.push(ch);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    (!words.is_empty()).then_some(words)
}

/// How a started command is attached to sockleak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// `check`: a process group of its own (Ctrl-C is sockleak's to handle),
    /// stdin from /dev/null, stdout to sockleak's stderr (so `--json` on
    /// stdout stays clean).
    Detached,
    /// `run`: sockleak's process group (Ctrl-C reaches the command as
    /// usual), stdin, stdout and stderr inherited.
    Inherit,
}

/// How long sockleak waits for the keeper to report the command's pid.
/// Starting is a fork and two execs; the margin is for a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A command sockleak started, and the keeper (see `keeper.rs`) between
/// the two that stops the command's whole tree — also the children that
/// left its process group or were re-parented, and also when sockleak dies.
/// `pid` is the command's own pid, [`Spawned::poll`] its exit status.
/// Dropping it stops the tree.
pub struct Spawned {
    keeper: Child,
    /// The command's pid (the keeper's child).
    pub pid: u32,
    /// Set once the command has exited and been reaped.
    pub status: Option<ExitStatus>,
    what: String,
    /// Write end of the control pipe; its EOF alone makes the keeper stop.
    ctl: std::fs::File,
    /// Read end of the report pipe.
    report: std::fs::File,
    buf: Vec<u8>,
    /// The report pipe reached EOF: the keeper has exited.
    report_eof: bool,
    /// The keeper has been reaped.
    finished: bool,
    start_error: Option<std::io::Error>,
    /// The grace of the stop in progress (for the SIGKILL message), and of
    /// a stop by Drop.
    grace: Duration,
}

/// A pipe whose two ends are close-on-exec, so no other process sockleak
/// starts holds them (a stray write end would keep the keeper from seeing
/// EOF when sockleak dies).
fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: pipe2(2) writes two fds into a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("create a pipe for the keeper");
    }
    // SAFETY: pipe2 succeeded: both fds are new and owned only here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Spawned {
    /// Starts `cmd` detached ([`Attach::Detached`]): a simple command is
    /// executed directly so its pid is the program's; anything with shell
    /// syntax runs under `sh -c`. `grace` is the SIGTERM → SIGKILL grace of
    /// a stop by Drop and of the keeper's stop when sockleak dies.
    pub fn start(
        what: &str,
        cmd: &str,
        env: &[(&str, String)],
        grace: Duration,
    ) -> Result<Spawned> {
        let argv = match split_words(cmd) {
            Some(words) => words,
            None => vec!["sh".to_string(), "-c".to_string(), cmd.to_string()],
        };
        Spawned::start_argv(what, &argv, env, Attach::Detached, grace)?
            .with_context(|| format!("{what}: start {cmd:?}"))
    }

    /// Starts `argv` under a keeper. The outer error is sockleak's own (the
    /// keeper could not be started); the inner one is the command's (not
    /// found, not executable), which `run` turns into 127/126.
    pub fn start_argv(
        what: &str,
        argv: &[String],
        env: &[(&str, String)],
        attach: Attach,
        grace: Duration,
    ) -> Result<std::result::Result<Spawned, std::io::Error>> {
        if argv.is_empty() {
            bail!("{what}: empty command");
        }
        let (ctl_r, ctl_w) = cloexec_pipe()?;
        let (rep_r, rep_w) = cloexec_pipe()?;
        let (ctl_fd, rep_fd) = (ctl_r.as_raw_fd(), rep_w.as_raw_fd());
        let group = match attach {
            Attach::Detached => keeper::Group::Own,
            Attach::Inherit => keeper::Group::Inherit,
        };
        // /proc/self/exe rather than current_exe(): it still executes when
        // the binary was replaced or deleted (an upgrade) since sockleak began.
        let mut c = Command::new("/proc/self/exe");
        c.arg0("sockleak")
            .arg(keeper::KEEPER_ARG)
            .arg(ctl_fd.to_string())
            .arg(rep_fd.to_string())
            .arg(std::process::id().to_string())
            .arg(grace.as_millis().to_string())
            .arg(group.as_arg())
            .arg("--")
            .args(argv);
        if attach == Attach::Detached {
            let stdout = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .with_context(|| format!("{what}: duplicate stderr"))?;
            c.stdin(Stdio::null())
                .stdout(Stdio::from(stdout))
                .stderr(Stdio::inherit());
        }
        for (k, v) in env {
            c.env(k, v);
        }
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls fcntl(2), which is async-signal-safe: the keeper's two
        // pipe ends (and only those) survive its exec.
        unsafe {
            c.pre_exec(move || {
                for fd in [ctl_fd, rep_fd] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let keeper = c
            .spawn()
            .with_context(|| format!("{what}: start the process keeper (/proc/self/exe)"))?;
        drop(ctl_r);
        drop(rep_w);
        let mut s = Spawned {
            keeper,
            pid: 0,
            status: None,
            what: what.to_string(),
            ctl: std::fs::File::from(ctl_w),
            report: std::fs::File::from(rep_r),
            buf: Vec::new(),
            report_eof: false,
            finished: false,
            start_error: None,
            grace,
        };
        let until = Instant::now() + START_TIMEOUT;
        while s.pid == 0 && s.start_error.is_none() && !s.report_eof && Instant::now() < until {
            s.pump(100);
        }
        if let Some(e) = s.start_error.take() {
            s.reap_keeper();
            return Ok(Err(e));
        }
        if s.pid == 0 {
            let _ = s.keeper.kill();
            s.reap_keeper();
            bail!("{what}: the process keeper did not report the command's pid");
        }
        Ok(Ok(s))
    }

    /// The keeper's pid: the root of the tree that holds everything the
    /// command started (re-parented orphans included).
    pub fn keeper_pid(&self) -> u32 {
        self.keeper.id()
    }

    /// Reads what the keeper reported, waiting up to `wait_ms` for the
    /// first bytes.
    fn pump(&mut self, wait_ms: i32) {
        let mut wait = wait_ms;
        while !self.report_eof {
            let mut pfd = libc::pollfd {
                fd: self.report.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, wait) } <= 0 {
                return;
            }
            wait = 0;
            let mut chunk = [0u8; 512];
            match self.report.read(&mut chunk) {
                Ok(0) => self.report_eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
                Err(_) => self.report_eof = true,
            }
            while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line[..nl]).into_owned();
                self.on_report(&line);
            }
        }
    }

    fn on_report(&mut self, line: &str) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "pid" => self.pid = rest.trim().parse().unwrap_or(0),
            "exit" => {
                if let Ok(raw) = rest.trim().parse::<i32>() {
                    self.status = Some(ExitStatus::from_raw(raw));
                }
            }
            "error" => {
                let (errno, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                self.start_error = Some(match errno.parse::<i32>() {
                    Ok(n) if n > 0 => std::io::Error::from_raw_os_error(n),
                    _ => std::io::Error::other(msg.to_string()),
                });
            }
            "kill" => eprintln!(
                "sockleak: {} (pid {}) or its children did not stop within {:?} of SIGTERM; \
                 sending SIGKILL",
                self.what, self.pid, self.grace
            ),
            _ => {}
        }
    }

    /// Waits (bounded) for the keeper to exit and reaps it; SIGKILL if it
    /// does not.
    fn reap_keeper(&mut self) {
        let until = Instant::now() + Duration::from_secs(5);
        while !self.finished && Instant::now() < until {
            if let Ok(Some(_)) = self.keeper.try_wait() {
                self.finished = true;
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if !self.finished {
            let _ = self.keeper.kill();
            let _ = self.keeper.wait();
            self.finished = true;
        }
    }

    /// The command's exit status once it has exited (reaped by the keeper).
    pub fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.pump(0);
        }
        if self.status.is_none() && self.report_eof && !self.finished {
            // The keeper died without reporting (someone SIGKILLed it): its
            // end is the closest thing to the command's.
            if let Ok(Some(st)) = self.keeper.try_wait() {
                self.finished = true;
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Sends `sig` to the command itself (not its tree), through the keeper,
    /// which knows whether the pid is still its unreaped child.
    pub fn signal(&mut self, sig: libc::c_int) {
        let _ = writeln!(self.ctl, "signal {sig}");
    }

    /// Stops the whole tree: SIGTERM to every process in it (also those that
    /// left the process group), SIGKILL after `grace` to what is left; the
    /// keeper reaps them and exits. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        if self.finished {
            return;
        }
        self.grace = grace;
        let _ = writeln!(self.ctl, "stop {}", grace.as_millis());
        // The keeper's own bound: grace, then KILL_WAIT for SIGKILL; a
        // margin on top for a loaded machine.
        let until = Instant::now() + grace + Duration::from_secs(10);
        while !self.report_eof && Instant::now() < until {
            self.pump(100);
        }
        self.reap_keeper();
        let _ = self.poll();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop(self.grace);
    }
}

/// One cheap pass over /proc (no fd walk): pid → (ppid, netns).
pub fn process_table() -> HashMap<u32, (u32, u64)> {
    let scan = scan_processes(&ProcOptions {
        walk_fds: false,
        threads: 1,
        ..ProcOptions::default()
    });
    scan.processes
        .iter()
        .map(|p| (p.pid, (p.ppid, p.netns)))
        .collect()
}

/// `root` and every descendant (by ppid) in `table`, root first; empty when
/// root is gone.
pub fn tree(root: u32, table: &HashMap<u32, (u32, u64)>) -> Vec<u32> {
    if !table.contains_key(&root) {
        return Vec::new();
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &(ppid, _)) in table {
        if pid != root {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = vec![root];
    let mut queue = VecDeque::from([root]);
    while let Some(p) = queue.pop_front() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                // Bounded by the table: a cycle in racing data cannot loop.
                if out.len() <= table.len() && !out.contains(&k) {
                    out.push(k);
                    queue.push_back(k);
                }
            }
        }
    }
    out
}

/// Fails early with a clear message when `pid` does not exist.
pub fn require_process(pid: u32) -> Result<()> {
    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
        Ok(())
    } else {
        bail!("--pid {pid}: no such process")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_split_and_shell_syntax_does_not() {
        assert_eq!(
            split_words("python3 server.py --port 80"),
            Some(vec![
                "python3".into(),
                "server.py".into(),
                "--port".into(),
                "80".into()
            ])
        );
        assert_eq!(
            split_words(r#"a 'b c' "d \"e\"" f\ g"#),
            Some(vec![
                "a".into(),
                "b c".into(),
                "d \"e\"".into(),
                "f g".into()
            ])
        );
        assert_eq!(split_words("a | b"), None);
        assert_eq!(split_words("a && b"), None);
        assert_eq!(split_words("echo $HOME"), None);
        assert_eq!(split_words("'unterminated"), None);
        assert_eq!(split_words("   "), None);
    }

    #[test]
    fn tree_follows_ppid() {
        let t: HashMap<u32, (u32, u64)> = [
            (1, (0, 1)),
            (10, (1, 1)),
            (11, (10, 1)),
            (12, (11, 1)),
            (20, (1, 1)),
        ]
        .into_iter()
        .collect();
        let mut got = tree(10, &t);
        got.sort_unstable();
        assert_eq!(got, vec![10, 11, 12]);
        assert!(tree(99, &t).is_empty());
    }

    #[test]
    fn exit_codes_of_signals() {
        assert_eq!(signal_exit_code(libc::SIGINT), 130);
        assert_eq!(signal_exit_code(libc::SIGTERM), 143);
    }
}
