//! Incremental samples (`sockleak_collect::incremental`) against full dumps
//! of the same moment, in a network namespace this test creates: after
//! sockets are opened, half-closed, closed into TIME_WAIT and added, a sample
//! built from the previous table and the tracked changes lists exactly the
//! sockets (cookie, state, holders) a full scan lists; a TIME_WAIT destroyed
//! without an event (`ss -K`) makes the namespace's counters disagree and
//! the sample a full dump. Needs root; skips loudly otherwise.

#![cfg(feature = "bpf")]

mod live_env;

use live_env::{root_or_skip, run, NetnsGuard};
use sockleak_collect::bpf::changes::TrackerError;
use sockleak_collect::incremental::Incremental;
use sockleak_collect::netns::{discover, run_in, NsEntry};
use sockleak_collect::procfs::cache::FdCache;
use sockleak_collect::scan::{scan_unfiltered, scan_unfiltered_incremental, ScanOptions};
use sockleak_model::filter::NetnsFilter;
use sockleak_model::{Filter, Snapshot, TcpState};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

fn rows(snap: &Snapshot, ns: u64) -> BTreeSet<(u64, TcpState, usize)> {
    snap.sockets
        .iter()
        .filter(|s| s.netns == ns)
        .map(|s| (s.cookie.0, s.state, s.owners.len()))
        .collect()
}

/// The sampler (a full dump every 100th sample: the tests choose when), a
/// fresh namespace and scan options for it alone; `None` (skipped loudly)
/// without root or the tracker.
fn setup(test: &str, ns_name: &str) -> Option<(Incremental, NetnsGuard, NsEntry, ScanOptions)> {
    if !root_or_skip(test) {
        return None;
    }
    let inc = match Incremental::new(100) {
        Ok(i) => i,
        Err(e @ TrackerError::Unsupported(_)) => {
            eprintln!("SKIPPED: {test}: {e}");
            return None;
        }
        Err(e) => panic!("tracker: {e}"),
    };
    let ns = NetnsGuard::new(ns_name);
    let entry = discover(Path::new("/proc"), Path::new("/run/netns"))
        .entries
        .into_iter()
        .find(|e| e.name.as_deref() == Some(ns.name.as_str()))
        .expect("namespace discovered");
    let opts = ScanOptions {
        filter: Filter {
            netns: vec![NetnsFilter::Name(ns.name.clone())],
            ..Filter::default()
        },
        ..ScanOptions::default()
    };
    Some((inc, ns, entry, opts))
}

fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
    let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    (c, s)
}

#[test]
fn incremental_samples_list_what_a_full_scan_lists() {
    let Some((mut inc, ns, entry, opts)) = setup(
        "incremental_samples_list_what_a_full_scan_lists",
        "sockleak-inc",
    ) else {
        return;
    };
    let mut cache = FdCache::default();
    let settle = || std::thread::sleep(Duration::from_millis(150));
    let check =
        |inc: &mut Incremental, cache: &mut FdCache, want_full: Option<&str>, step: &str| {
            let got = scan_unfiltered_incremental(&opts, cache, inc);
            let kind = inc.last().clone();
            assert_eq!(kind.full, want_full, "{step}: {kind:?}");
            let full = scan_unfiltered(&opts);
            assert_eq!(rows(&got, entry.id), rows(&full, entry.id), "{step}");
            rows(&got, entry.id)
        };

    // Step 0: a listener and three connections.
    let (listener, mut pairs) = run_in(&entry, || {
        let l = TcpListener::bind("127.0.0.1:0").expect("listen");
        let p: Vec<(TcpStream, TcpStream)> = (0..3).map(|_| pair(&l)).collect();
        (l, p)
    })
    .expect("enter namespace");
    settle();
    let first = check(&mut inc, &mut cache, Some("first sample"), "step 0");
    assert_eq!(first.len(), 7, "{first:?}");

    // Step 1: a half-close (FIN_WAIT2 / CLOSE_WAIT with unread bytes), a
    // close into TIME_WAIT, a new connection.
    {
        let (c0, _) = &mut pairs[0];
        c0.write_all(b"unread").expect("write");
        c0.shutdown(Shutdown::Write).expect("shutdown");
    }
    let (c1, s1) = pairs.remove(1);
    drop(c1);
    std::thread::sleep(Duration::from_millis(50));
    drop(s1);
    let new = run_in(&entry, || pair(&listener)).expect("enter namespace");
    settle();
    let after = check(&mut inc, &mut cache, None, "step 1");
    let states: Vec<TcpState> = after.iter().map(|r| r.1).collect();
    for s in [TcpState::FinWait2, TcpState::CloseWait, TcpState::TimeWait] {
        assert!(states.contains(&s), "{s:?} missing: {after:?}");
    }
    assert!(inc.last().changes >= 5, "{:?}", inc.last());

    // Step 2: nothing happens here (the host may change elsewhere).
    check(&mut inc, &mut cache, None, "step 2");

    // Step 3: the TIME_WAIT destroyed without a state-change event.
    run(&["ss", "-N", &ns.name, "-K", "state", "time-wait"]);
    settle();
    check(
        &mut inc,
        &mut cache,
        Some("the namespace's counters disagree with the table"),
        "step 3",
    );
    // Step 4: and incremental again after that full dump.
    let last = check(&mut inc, &mut cache, None, "step 4");
    assert!(!last.iter().any(|r| r.1 == TcpState::TimeWait), "{last:?}");
    drop((listener, pairs, new));
}

/// A process that closes a connection and opens another between two samples
/// keeps its fd count, so its fd map is reused from the cache; the sample
/// must see that the closed socket left and walk that process again, or the
/// new sockets would show without their holder.
#[test]
fn a_process_that_swaps_a_connection_keeps_its_holders() {
    let Some((mut inc, ns, entry, opts)) = setup(
        "a_process_that_swaps_a_connection_keeps_its_holders",
        "sockleak-swap",
    ) else {
        return;
    };
    // Holds two connections to its own listener; "swap" on stdin closes the
    // first and opens a third (the fd count stays the same).
    const SCRIPT: &str = "import socket,sys\n\
        l=socket.socket(); l.bind(('127.0.0.1',0)); l.listen(8)\n\
        def pair():\n c=socket.create_connection(l.getsockname()); s,_=l.accept(); return c,s\n\
        held=[pair(),pair()]\n\
        print('ready',flush=True)\n\
        for line in sys.stdin:\n \
         c,s=held.pop(0); c.close(); s.close(); held.append(pair()); print('swapped',flush=True)\n";
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start python3 in the namespace");
    let mut child = live_env::ChildGuard(child);
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        child.0.stdout.take().expect("piped stdout"),
    ));
    let mut expect_line = |want: &str| {
        let got = lines.next().and_then(Result::ok);
        assert_eq!(got.as_deref(), Some(want), "the child's answer");
    };
    expect_line("ready");

    let mut cache = FdCache::default();
    let owned = |snap: &Snapshot| {
        snap.sockets
            .iter()
            .filter(|s| s.netns == entry.id && s.inode != 0)
            .map(|s| (s.cookie.0, s.owners.len()))
            .collect::<BTreeSet<_>>()
    };
    let first = scan_unfiltered_incremental(&opts, &mut cache, &mut inc);
    assert_eq!(inc.last().full, Some("first sample"));
    assert_eq!(owned(&first).len(), 5, "listener and two pairs");
    // Twice: the first walk after a full one may still differ in fds the
    // sampler itself opened (its diag socket).
    for _ in 0..2 {
        scan_unfiltered_incremental(&opts, &mut cache, &mut inc);
    }

    writeln!(stdin, "swap").expect("write to the child");
    stdin.flush().expect("flush");
    expect_line("swapped");
    std::thread::sleep(Duration::from_millis(150));
    let got = scan_unfiltered_incremental(&opts, &mut cache, &mut inc);
    assert_eq!(inc.last().full, None, "{:?}", inc.last());
    let full = scan_unfiltered(&opts);
    let (got, full) = (owned(&got), owned(&full));
    assert_eq!(got, full);
    assert!(
        got.iter().all(|(_, holders)| *holders == 1),
        "every open socket has its holder: {got:?}"
    );
    drop(stdin);
}
