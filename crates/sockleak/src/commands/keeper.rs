//! The keeper: a small process between sockleak and each command it starts
//! (`check --spawn`, `check --load-cmd`, `run -- CMD`), so that nothing the
//! command starts outlives sockleak — not a pipeline stage re-parented when
//! its shell dies, not a child that left the process group with setsid(),
//! and not after sockleak itself was SIGKILLed or OOM-killed.
//!
//! Why a separate process: only the parent side of a process tree can stop
//! it reliably once sockleak is gone, and a process group or PDEATHSIG reach
//! only the command itself (a `setsid` child leaves the group, a grandchild
//! never had PDEATHSIG). The keeper is sockleak re-executed
//! (`/proc/self/exe` with [`KEEPER_ARG`], handled in `main` before any CLI
//! parsing), so it is a fresh single-threaded process whatever threads
//! sockleak runs. It
//!
//! - makes itself a child subreaper, so every orphan of the tree (a
//!   re-parented pipeline stage, a daemonised or setsid() child) becomes its
//!   child instead of init's, and stays its descendant by ppid;
//! - ignores SIGINT, SIGQUIT, SIGHUP and SIGTERM (sockleak handles Ctrl-C
//!   and tells it to stop), so a signal to the foreground group cannot kill
//!   it before it has cleaned up; the command gets them back at default;
//! - starts the command as its child (PR_SET_PDEATHSIG=SIGTERM, reliable
//!   here because the keeper is single-threaded), reports the pid and later
//!   the raw wait status on the report pipe;
//! - holds the read end of the control pipe: on `stop MS`, on EOF (sockleak
//!   died: the kernel closed its end) or when its parent changes, it sends
//!   SIGTERM to every descendant (found by ppid in /proc), waits up to the
//!   grace, SIGKILLs what is left, reaps everything and exits. So the
//!   keeper never outlives its job.

use sockleak_collect::procfs::parse_stat;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// argv\[1\] that turns sockleak into a keeper. Not a subcommand: never in
/// `--help`, and nobody types it.
pub const KEEPER_ARG: &str = "__sockleak-keeper";

/// How long the keeper waits for SIGKILLed processes to be gone before it
/// gives up (they are in uninterruptible sleep or not ours any more).
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Where the command's process group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// A group of its own (pgid = its pid): terminal signals do not reach it.
    Own,
    /// sockleak's group: Ctrl-C on the terminal reaches it as usual.
    Inherit,
}

impl Group {
    pub fn as_arg(self) -> &'static str {
        match self {
            Group::Own => "own-group",
            Group::Inherit => "same-group",
        }
    }
}

/// Runs the keeper when argv\[1\] is [`KEEPER_ARG`]; `None` otherwise (the
/// normal CLI follows).
pub fn main_if_keeper() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let _exe = args.next();
    if args.next()? != KEEPER_ARG {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    Some(match Config::parse(&rest) {
        Some(cfg) => keep(cfg),
        None => {
            eprintln!("sockleak: {KEEPER_ARG} is internal (bad arguments)");
            ExitCode::from(crate::exit::ERROR)
        }
    })
}

/// The keeper's arguments: `CTL_FD REPORT_FD PARENT_PID GRACE_MS GROUP -- ARGV...`.
struct Config {
    ctl: RawFd,
    report: RawFd,
    parent: libc::pid_t,
    grace: Duration,
    group: Group,
    argv: Vec<OsString>,
}

impl Config {
    fn parse(args: &[OsString]) -> Option<Config> {
        let s = |i: usize| args.get(i).and_then(|a| a.to_str());
        let group = match s(4)? {
            "own-group" => Group::Own,
            "same-group" => Group::Inherit,
            _ => return None,
        };
        if s(5)? != "--" || args.len() < 7 {
            return None;
        }
        Some(Config {
            ctl: s(0)?.parse().ok()?,
            report: s(1)?.parse().ok()?,
            parent: s(2)?.parse().ok()?,
            grace: Duration::from_millis(s(3)?.parse().ok()?),
            group,
            argv: args[6..].to_vec(),
        })
    }
}

/// The signals the keeper ignores and the command gets back at default.
const SHIELDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM];

fn set_disposition(sig: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: signal(2) with SIG_IGN or SIG_DFL, no handler code involved;
    // async-signal-safe, so also fine between fork and exec.
    unsafe { libc::signal(sig, handler) };
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl(2) on an fd number; a bad one only returns EBADF.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn keep(cfg: Config) -> ExitCode {
    for sig in SHIELDED {
        set_disposition(sig, libc::SIG_IGN);
    }
    // The pipes are the keeper's, not the command's.
    set_cloexec(cfg.ctl);
    set_cloexec(cfg.report);
    // SAFETY: the fds were handed over by sockleak for this process alone
    // (argv); each is owned by exactly one File from here on.
    let mut report = unsafe { std::fs::File::from_raw_fd(cfg.report) };
    // SAFETY: prctl(2) on this process only; PR_SET_NAME takes a
    // NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_NAME, c"sockleak-keeper".as_ptr(), 0, 0, 0);
    }
    let mut cmd = Command::new(&cfg.argv[0]);
    cmd.args(&cfg.argv[1..]);
    if cfg.group == Group::Own {
        cmd.process_group(0);
    }
    // SAFETY: runs in the child between fork and exec and calls only
    // signal(2) and prctl(2), both async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for sig in SHIELDED {
                set_disposition(sig, libc::SIG_DFL);
            }
            // The keeper is single-threaded, so this fires exactly when the
            // keeper dies (even by SIGKILL).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let target = match cmd.spawn() {
        Ok(c) => c.id(),
        Err(e) => {
            let _ = writeln!(report, "error {} {e}", e.raw_os_error().unwrap_or(0));
            return ExitCode::from(1);
        }
    };
    let _ = writeln!(report, "pid {target}");
    let me = std::process::id();
    let mut target_reaped = false;
    let mut ctl_buf = Vec::new();
    let grace = loop {
        reap(target, &mut target_reaped, &mut report);
        if cfg.parent != 0 && std::os::unix::process::parent_id() != cfg.parent as u32 {
            // sockleak is gone (re-parented): as on EOF.
            break cfg.grace;
        }
        match read_control(cfg.ctl, &mut ctl_buf) {
            Control::Nothing => {}
            Control::Stop(g) => break g.unwrap_or(cfg.grace),
            Control::Signal(sig) => {
                if !target_reaped {
                    // SAFETY: kill(2) on the keeper's own unreaped child, so
                    // the pid cannot have been reused.
                    unsafe { libc::kill(target as libc::pid_t, sig) };
                }
            }
        }
    };
    stop_tree(me, grace, target, &mut target_reaped, &mut report);
    let _ = writeln!(report, "done");
    ExitCode::SUCCESS
}

enum Control {
    Nothing,
    /// Stop the tree; `None`: with the grace given at start.
    Stop(Option<Duration>),
    Signal(libc::c_int),
}

/// Waits up to 50 ms for a command from sockleak. EOF (sockleak died, or
/// dropped its end) means stop with the grace given at start.
fn read_control(fd: RawFd, buf: &mut Vec<u8>) -> Control {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 50) };
    if n <= 0 {
        return Control::Nothing;
    }
    let mut chunk = [0u8; 256];
    // SAFETY: read(2) into a buffer of the given length.
    let got = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
    if got == 0 {
        return Control::Stop(None);
    }
    if got < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Control::Nothing
        } else {
            Control::Stop(None)
        };
    }
    buf.extend_from_slice(&chunk[..got as usize]);
    while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buf.drain(..=nl).collect();
        let line = String::from_utf8_lossy(&line[..nl]).into_owned();
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|w| w.parse::<u64>().ok()),
        ) {
            (Some("stop"), Some(ms)) => return Control::Stop(Some(Duration::from_millis(ms))),
            (Some("signal"), Some(sig)) => {
                return Control::Signal(libc::c_int::try_from(sig).unwrap_or(libc::SIGTERM))
            }
            _ => {}
        }
    }
    Control::Nothing
}

/// Reaps every exited child (the command and the orphans re-parented to
/// the keeper); reports the command's raw wait status once.
fn reap(target: u32, target_reaped: &mut bool, report: &mut std::fs::File) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) with a valid out pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if pid as u32 == target && !*target_reaped {
            *target_reaped = true;
            let _ = writeln!(report, "exit {status}");
        }
    }
}

/// The live (not zombie) descendants of `root` by ppid, from /proc. Because
/// the keeper is a subreaper, that is everything the command started that
/// still runs, wherever its process group or session went.
pub fn live_descendants(root: u32) -> Vec<u32> {
    let mut parent_of: HashMap<u32, (u32, bool)> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A process that exits meanwhile is simply not listed.
        if let Ok(buf) = std::fs::read(format!("/proc/{pid}/stat")) {
            if let Ok(st) = parse_stat(&buf) {
                let live = !matches!(st.state, b'Z' | b'X');
                parent_of.insert(pid, (st.ppid, live));
            }
        }
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &(ppid, _)) in &parent_of {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for &k in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            // `seen` bounds the walk: racing data cannot make it loop.
            if seen.insert(k) {
                queue.push(k);
                if parent_of.get(&k).is_some_and(|&(_, live)| live) {
                    out.push(k);
                }
            }
        }
    }
    out
}

/// SIGTERM to every descendant (each pid once, new ones as they appear),
/// SIGKILL to what is left after `grace`, then everything reaped.
fn stop_tree(
    me: u32,
    grace: Duration,
    target: u32,
    target_reaped: &mut bool,
    report: &mut std::fs::File,
) {
    let mut termed: HashSet<u32> = HashSet::new();
    let until = Instant::now() + grace;
    loop {
        reap(target, target_reaped, report);
        let live = live_descendants(me);
        if live.is_empty() {
            return;
        }
        if Instant::now() >= until {
            break;
        }
        for pid in live {
            if termed.insert(pid) {
                // SAFETY: kill(2) on a descendant just read from /proc.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = writeln!(report, "kill");
    let until = Instant::now() + KILL_WAIT;
    while Instant::now() < until {
        reap(target, target_reaped, report);
        let live = live_descendants(me);
        if live.is_empty() {
            break;
        }
        for pid in live {
            // SAFETY: kill(2) on a descendant just read from /proc.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reap(target, target_reaped, report);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_parse_and_bad_ones_do_not() {
        let c = Config::parse(&args(&[
            "3",
            "6",
            "100",
            "5000",
            "own-group",
            "--",
            "sh",
            "-c",
            "x",
        ]))
        .expect("valid");
        assert_eq!((c.ctl, c.report, c.parent), (3, 6, 100));
        assert_eq!(c.grace, Duration::from_secs(5));
        assert_eq!(c.group, Group::Own);
        assert_eq!(c.argv, args(&["sh", "-c", "x"]));
        for bad in [
            &["3", "6", "100", "5000", "own-group", "--"][..],
            &["3", "6", "100", "5000", "no-group", "--", "true"],
            &["3", "6", "100", "5000", "own-group", "true"],
            &["x", "6", "100", "5000", "own-group", "--", "true"],
        ] {
            assert!(Config::parse(&args(bad)).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn live_descendants_sees_a_grandchild_and_not_a_zombie() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start sh");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read pid");
        let grandchild: u32 = line.trim().parse().expect("pid");
        let found = live_descendants(std::process::id());
        // SAFETY: kill(2) on the sleep this test started.
        unsafe { libc::kill(grandchild as libc::pid_t, libc::SIGKILL) };
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(found.contains(&grandchild), "{found:?}");
        assert!(!live_descendants(std::process::id()).contains(&child.id()));
    }
}
