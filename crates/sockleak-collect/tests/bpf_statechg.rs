//! The TCP state tracker (`sockleak_collect::bpf::changes`) on the real
//! kernel: the sockets this test opens and closes on loopback appear in a
//! drain with their cookie (SO_COOKIE), namespace, 4-tuple and states, once;
//! a drain after no change shows none of them; a full map counts what it
//! lost. The host is shared: other sockets' changes are ignored, never
//! assumed absent. Needs root (CAP_BPF + CAP_PERFMON); skips loudly without.

#![cfg(feature = "bpf")]

mod live_env;

use live_env::so_cookie;
use sockleak_collect::bpf::changes::{Drained, StateChange, StateTracker, TrackerError};
use sockleak_collect::netns::own_netns_id;
use sockleak_model::{Cookie, Family, TcpState};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Duration;

/// One tracker at a time: the tests count their own sockets' changes.
static ONE: Mutex<()> = Mutex::new(());

fn tracker_or_skip(test: &str, capacity: Option<u32>) -> Option<StateTracker> {
    match StateTracker::with_capacity(capacity) {
        Ok(t) => Some(t),
        Err(e @ TrackerError::Unsupported(_)) => {
            eprintln!("SKIPPED: {test}: {e}");
            None
        }
        Err(e @ TrackerError::Permission(_))
            if !sockleak_collect::privileges::probe().can_load_tracing_bpf() =>
        {
            eprintln!("SKIPPED: {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

fn find(d: &Drained, cookie: u64) -> Option<StateChange> {
    d.changes
        .iter()
        .copied()
        .find(|c| c.cookie == Cookie(cookie))
}

fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}

/// A listener, a client and the accepted server socket; the client shuts
/// down its sending side (FIN_WAIT2 / CLOSE_WAIT), then the server closes.
fn pair_story(bind: &str, family: Family) {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut t) = tracker_or_skip("pair_story", None) else {
        return;
    };
    let ns = own_netns_id().expect("own netns");
    let listener = TcpListener::bind(bind).expect("listen");
    let laddr: SocketAddr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(laddr).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let caddr = client.local_addr().expect("client addr");
    client.shutdown(Shutdown::Write).expect("shutdown");
    settle();
    let (lc, cc, sc) = (
        so_cookie(listener.as_raw_fd()),
        so_cookie(client.as_raw_fd()),
        so_cookie(server.as_raw_fd()),
    );

    let d = t.drain().expect("drain");
    assert_eq!(d.lost, 0, "nothing lost with 65536 entries");
    let l = find(&d, lc).expect("listener's change");
    assert_eq!(l.new_state, Some(TcpState::Listen));
    assert_eq!(l.old_state, Some(TcpState::Close));
    assert_eq!(l.local.port, laddr.port());
    let c = find(&d, cc).expect("client's changes");
    assert_eq!(c.old_state, Some(TcpState::Close), "{c:?}");
    assert_eq!(c.new_state, Some(TcpState::FinWait2), "{c:?}");
    assert!(
        c.changes >= 3,
        "CLOSE→SYN_SENT→ESTABLISHED→FIN_WAIT1→FIN_WAIT2: {c:?}"
    );
    assert_eq!((c.local.ip, c.local.port), (caddr.ip(), caddr.port()));
    assert_eq!((c.remote.ip, c.remote.port), (laddr.ip(), laddr.port()));
    let s = find(&d, sc).expect("server's changes");
    assert_eq!(s.new_state, Some(TcpState::CloseWait), "{s:?}");
    assert_eq!((s.local.ip, s.local.port), (laddr.ip(), laddr.port()));
    assert_eq!((s.remote.ip, s.remote.port), (caddr.ip(), caddr.port()));
    for x in [l, c, s] {
        assert_eq!(x.netns, ns);
        assert_eq!(x.family, family);
        assert!(x.at_ns > 0);
    }

    // Nothing changed: none of them again.
    let d = t.drain().expect("drain");
    for cookie in [lc, cc, sc] {
        assert!(find(&d, cookie).is_none(), "cookie {cookie} reported twice");
    }

    // The server closes its CLOSE_WAIT socket: LAST_ACK, then gone.
    drop(server);
    settle();
    let d = t.drain().expect("drain");
    let s = find(&d, sc).expect("server's close");
    assert_eq!(s.old_state, Some(TcpState::CloseWait), "{s:?}");
    assert_eq!(s.new_state, Some(TcpState::Close), "{s:?}");
    assert_eq!(s.local.port, laddr.port(), "the tuple survives the close");
    assert!(find(&d, cc).is_some(), "the client saw the server's FIN");
    drop((client, listener));
}

#[test]
fn ipv4_changes_are_drained_once_with_namespace_tuple_and_states() {
    pair_story("127.0.0.1:0", Family::Inet);
}

#[test]
fn ipv6_changes_are_drained_once_with_namespace_tuple_and_states() {
    pair_story("[::1]:0", Family::Inet6);
}

#[test]
fn a_full_map_counts_what_it_lost() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut t) = tracker_or_skip("a_full_map_counts_what_it_lost", Some(2)) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut held = Vec::new();
    for _ in 0..5 {
        let c = TcpStream::connect(addr).expect("connect");
        let (s, _) = listener.accept().expect("accept");
        held.push((c, s));
    }
    settle();
    let d = t.drain().expect("drain");
    assert!(
        d.changes.len() <= 2,
        "{} entries in a map of 2",
        d.changes.len()
    );
    assert!(d.lost > 0, "11 sockets changed, the map holds 2: {d:?}");
    // Drained: there is room again, and the counter restarts from there.
    drop(held);
    settle();
    let d2 = t.drain().expect("drain");
    assert!(d2.changes.len() <= 2);
    assert!(d2.lost > 0, "10 more sockets closed");
}

/// More changed sockets than one batch of the drain holds (1024): every one
/// is drained, none twice, and the map is empty after.
#[test]
fn a_drain_takes_many_changes_in_batches_each_once() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut t) = tracker_or_skip("a_drain_takes_many_changes_in_batches_each_once", None)
    else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let laddr = listener.local_addr().expect("addr");
    // 1500 connections: 3000 sockets that each changed state.
    let mut held = Vec::new();
    for _ in 0..1500 {
        let c = TcpStream::connect(laddr).expect("connect");
        let (s, _) = listener.accept().expect("accept");
        held.push((c, s));
    }
    settle();
    let ours: std::collections::HashSet<u64> = held
        .iter()
        .flat_map(|(c, s)| [so_cookie(c.as_raw_fd()), so_cookie(s.as_raw_fd())])
        .collect();
    assert_eq!(ours.len(), 3000);

    let d = t.drain().expect("drain");
    assert_eq!(d.lost, 0);
    let mut seen = std::collections::HashSet::new();
    for c in &d.changes {
        assert!(
            seen.insert(c.cookie.0),
            "cookie {} drained twice",
            c.cookie.0
        );
    }
    let missing = ours.iter().filter(|c| !seen.contains(c)).count();
    assert_eq!(missing, 0, "of 3000 changed sockets, {missing} not drained");
    assert!(d.changes.len() > 1024, "more than one batch");

    let d = t.drain().expect("drain");
    let again = d
        .changes
        .iter()
        .filter(|c| ours.contains(&c.cookie.0))
        .count();
    assert_eq!(again, 0, "nothing changed: none of ours again");
    drop((held, listener));
}
