//! Processes that `check` and `run` start, watch and stop: spawning in a
//! process group of its own, stopping by that group (SIGTERM, then SIGKILL
//! after a grace period), process trees by ppid, and Ctrl-C/SIGTERM turned
//! into a flag every loop polls.

use anyhow::{bail, Context, Result};
use sockleak_collect::procfs::{scan_processes, ProcOptions};
use std::collections::{HashMap, VecDeque};
use std::os::fd::AsFd;
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

/// A process sockleak started, in its own process group (pgid = its pid).
/// Dropping it stops the group.
pub struct Spawned {
    child: Child,
    pub pid: u32,
    /// Set once the process has exited and been reaped.
    pub status: Option<ExitStatus>,
    what: String,
}

impl Spawned {
    /// Starts `cmd` (a simple command is executed directly so its pid is the
    /// program's; anything with shell syntax runs under `sh -c`). Its stdout
    /// goes to sockleak's stderr, so `--json` on stdout stays clean.
    ///
    /// Must be called from the main thread: PR_SET_PDEATHSIG fires when the
    /// forking *thread* exits, and the main thread lives as long as sockleak.
    pub fn start(what: &str, cmd: &str, env: &[(&str, String)]) -> Result<Spawned> {
        let mut c = match split_words(cmd) {
            Some(words) => {
                let mut c = Command::new(&words[0]);
                c.args(&words[1..]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(cmd);
                c
            }
        };
        let stdout = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .with_context(|| format!("{what}: duplicate stderr"))?;
        c.stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::inherit())
            .process_group(0);
        for (k, v) in env {
            c.env(k, v);
        }
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls prctl(2), which is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                // If sockleak dies without cleaning up (SIGKILL), the child
                // gets SIGTERM instead of living on.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c
            .spawn()
            .with_context(|| format!("{what}: start {cmd:?}"))?;
        Ok(Spawned {
            pid: child.id(),
            child,
            status: None,
            what: what.to_string(),
        })
    }

    /// Reaps the process if it has exited; returns its status then.
    pub fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// SIGTERM to the whole group, SIGKILL after `grace` to what is left;
    /// reaps the leader. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        let pgid = self.pid as libc::pid_t;
        if !self.group_alive() {
            let _ = self.poll();
            return;
        }
        // SAFETY: kill(2) on the process group sockleak created (pgid =
        // the leader's pid, which the kernel does not reuse while the
        // group has members).
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let until = Instant::now() + grace;
        while Instant::now() < until {
            let _ = self.poll();
            if !self.group_alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "sockleak: {} (pid {}) did not stop within {:?} of SIGTERM; sending SIGKILL",
            self.what, self.pid, grace
        );
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let _ = self.poll();
            if !self.group_alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the leader is unreaped or any member of its group lives.
    fn group_alive(&mut self) -> bool {
        if self.poll().is_none() {
            return true;
        }
        // SAFETY: signal 0 only checks that the group exists.
        unsafe { libc::kill(-(self.pid as libc::pid_t), 0) == 0 }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
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
