//! How long a socket has been in its current state, estimated from one
//! snapshot (kernel timers and `tcp_info`) and, when history or eBPF know
//! better, from hints keyed by cookie.
//!
//! Why an estimate: CLOSE_WAIT has no kernel timer and the kernel keeps no
//! "entered this state at" time. What it does keep is `tcpi_last_ack_recv`,
//! the time since the last ACK-bearing segment arrived. The peer's FIN is such
//! a segment, and on an idle CLOSE_WAIT socket nothing arrives after it, so
//! the value approximates the time since the FIN. If the application later
//! sent data (or keepalive probes) and the peer acknowledged it, the value
//! moves forward: it is then a lower bound. Either way sockleak says "about".

use crate::socket::{Cookie, Socket, TcpState, Timer};
use serde::Serialize;
use std::collections::HashMap;

/// Linux keeps TIME_WAIT for a fixed 60 s (`TCP_TIMEWAIT_LEN`,
/// include/net/tcp.h); it is not tunable.
pub const TIME_WAIT_LEN_MS: u64 = 60_000;

/// How an age was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeSource {
    /// From one snapshot: `tcpi_last_ack_recv` (CLOSE_WAIT, FIN_WAIT2) or the
    /// remaining TIME_WAIT / FIN_WAIT2 timer. An estimate, usually a lower
    /// bound.
    TcpInfo,
    /// The first snapshot that saw the socket in this state (watch history): a
    /// lower bound, off by at most one sampling interval.
    FirstSeen,
    /// The exact time of the state change, from the eBPF tracepoint.
    Ebpf,
}

impl AgeSource {
    /// The word a sentence needs in front of an age of this source:
    /// "about 41 min", "at least 41 min", "41 min".
    pub fn qualifier(self) -> &'static str {
        match self {
            AgeSource::TcpInfo => "about ",
            AgeSource::FirstSeen => "at least ",
            AgeSource::Ebpf => "",
        }
    }
}

/// A socket's age in its current state, as of the `now_ms` it was computed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Age {
    pub ms: u64,
    pub source: AgeSource,
}

impl Age {
    pub fn secs(&self) -> u64 {
        self.ms / 1000
    }
}

/// What history or eBPF know about when sockets entered their state. The
/// findings engine asks this first; watch (first seen) and the eBPF collector
/// (exact transition times) implement it.
pub trait AgeHints {
    /// Unix time (ms) at which the socket with this cookie was known to be in
    /// `state`, and how that is known. `None` when there is no record.
    fn state_since(&self, cookie: Cookie, state: TcpState) -> Option<(u64, AgeSource)>;

    /// [`state_since`](Self::state_since) for `s`, the socket at `index` of
    /// the snapshot being diagnosed: a history that has just taken that
    /// snapshot in answers from a table in snapshot order (at 150k sockets a
    /// lookup by cookie misses the cache nearly every time).
    fn state_since_at(&self, index: usize, s: &Socket) -> Option<(u64, AgeSource)> {
        let _ = index;
        self.state_since(s.cookie, s.state)
    }
}

/// No history: ages come from the snapshot alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHints;

impl AgeHints for NoHints {
    fn state_since(&self, _: Cookie, _: TcpState) -> Option<(u64, AgeSource)> {
        None
    }
}

/// A plain map from cookie to (state, since unix ms, source), for callers that
/// keep their history in one.
impl AgeHints for HashMap<Cookie, (TcpState, u64, AgeSource)> {
    fn state_since(&self, cookie: Cookie, state: TcpState) -> Option<(u64, AgeSource)> {
        self.get(&cookie)
            .filter(|(s, _, _)| *s == state)
            .map(|(_, since, src)| (*since, *src))
    }
}

/// The age the kernel data of one snapshot implies, as of the dump (not of
/// `now`). `fin_timeout_s` is the namespace's `net.ipv4.tcp_fin_timeout`,
/// needed to read the timer of an orphaned FIN_WAIT2.
///
/// - CLOSE_WAIT, FIN_WAIT2 with `tcp_info`: `last_ack_recv_ms` (see the module
///   comment; for FIN_WAIT2 it is the ACK of our FIN or anything later).
/// - FIN_WAIT2 without `tcp_info` and a TIME_WAIT-type timer: an orphan the
///   kernel turned into a timewait socket (net/ipv4/tcp.c, `tcp_close`) that
///   expires `tcp_fin_timeout` after entering FIN_WAIT2, so age = timeout −
///   remaining.
/// - TIME_WAIT with its timer: 60 s − remaining (`ss -o` shows the same).
/// - Anything else: unknown.
pub fn snapshot_age_ms(s: &Socket, fin_timeout_s: Option<u32>) -> Option<u64> {
    match s.state {
        TcpState::CloseWait => s.tcp_info.as_ref().map(|i| u64::from(i.last_ack_recv_ms)),
        TcpState::FinWait2 => match (&s.tcp_info, s.timer, fin_timeout_s) {
            (Some(i), _, _) => Some(u64::from(i.last_ack_recv_ms)),
            (None, Timer::TimeWait, Some(t)) => {
                Some((u64::from(t) * 1000).saturating_sub(u64::from(s.timer_expires_ms)))
            }
            _ => None,
        },
        TcpState::TimeWait if s.timer == Timer::TimeWait => {
            Some(TIME_WAIT_LEN_MS.saturating_sub(u64::from(s.timer_expires_ms)))
        }
        _ => None,
    }
}

/// The best age of a socket in its current state as of `now_ms`.
///
/// `taken_at_ms` is when the snapshot was taken: a kernel-derived age is
/// advanced by the time since then, so a snapshot diagnosed later (a
/// recording) reports ages as of `now_ms`. A `now_ms` before the snapshot adds
/// nothing (clocks may step back).
///
/// Combination: an eBPF transition time is exact and wins. Otherwise both the
/// kernel estimate and first-seen are lower bounds, so the larger is the better
/// estimate, labelled with its own source.
pub fn estimate(
    s: &Socket,
    taken_at_ms: u64,
    now_ms: u64,
    fin_timeout_s: Option<u32>,
    hints: &dyn AgeHints,
) -> Option<Age> {
    estimate_hinted(
        s,
        taken_at_ms,
        now_ms,
        fin_timeout_s,
        hints.state_since(s.cookie, s.state),
    )
}

/// [`estimate`] with the hint already looked up.
pub fn estimate_hinted(
    s: &Socket,
    taken_at_ms: u64,
    now_ms: u64,
    fin_timeout_s: Option<u32>,
    hint: Option<(u64, AgeSource)>,
) -> Option<Age> {
    let hinted = hint.map(|(since, source)| Age {
        ms: now_ms.saturating_sub(since),
        source,
    });
    if let Some(a) = hinted.filter(|a| a.source == AgeSource::Ebpf) {
        return Some(a);
    }
    let kernel = snapshot_age_ms(s, fin_timeout_s).map(|ms| Age {
        ms: ms.saturating_add(now_ms.saturating_sub(taken_at_ms)),
        source: AgeSource::TcpInfo,
    });
    match (kernel, hinted) {
        (Some(k), Some(h)) => Some(if h.ms > k.ms { h } else { k }),
        (k, h) => k.or(h),
    }
}

/// "45 s", "41 min", "5 h", "3 days": coarse on purpose, ages are estimates.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7_199 => format!("{} min", secs / 60),
        7_200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// [`human_duration`] with sub-second detail below 10 s ("120 ms",
/// "2.5 s"): for times the kernel measures in ms (a socket's last send).
pub fn human_duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=9_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => human_duration(ms / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Endpoint, TcpInfo};
    use std::net::{IpAddr, Ipv4Addr};

    fn sock(state: TcpState) -> Socket {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Socket {
            recv_q: 1,
            inode: 1,
            netns: 1,
            ..Socket::new(
                Cookie(7),
                state,
                Endpoint::new(lo, 9530),
                Endpoint::new(lo, 40000),
            )
        }
    }

    fn with_ack(mut s: Socket, ms: u32) -> Socket {
        s.tcp_info = Some(TcpInfo {
            last_ack_recv_ms: ms,
            ..TcpInfo::default()
        });
        s
    }

    #[test]
    fn close_wait_age_is_last_ack_plus_time_since_snapshot() {
        let s = with_ack(sock(TcpState::CloseWait), 40_000);
        let a = estimate(&s, 1_000_000, 1_002_500, None, &NoHints).expect("age");
        assert_eq!(a.ms, 42_500);
        assert_eq!(a.source, AgeSource::TcpInfo);
        // A clock that stepped back adds nothing rather than underflowing.
        let a = estimate(&s, 1_000_000, 10, None, &NoHints).expect("age");
        assert_eq!(a.ms, 40_000);
    }

    #[test]
    fn close_wait_without_tcp_info_has_no_age() {
        assert_eq!(
            estimate(&sock(TcpState::CloseWait), 0, 0, None, &NoHints),
            None
        );
    }

    #[test]
    fn orphan_fin_wait2_age_from_timer_and_fin_timeout() {
        let mut s = sock(TcpState::FinWait2);
        s.inode = 0;
        s.timer = Timer::TimeWait;
        s.timer_expires_ms = 15_000;
        assert_eq!(snapshot_age_ms(&s, Some(60)), Some(45_000));
        // Without the namespace's fin timeout the timer means nothing.
        assert_eq!(snapshot_age_ms(&s, None), None);
    }

    #[test]
    fn time_wait_age_is_sixty_seconds_minus_remaining() {
        let mut s = sock(TcpState::TimeWait);
        s.timer = Timer::TimeWait;
        s.timer_expires_ms = 59_000;
        assert_eq!(snapshot_age_ms(&s, None), Some(1_000));
        s.timer_expires_ms = 70_000; // never negative
        assert_eq!(snapshot_age_ms(&s, None), Some(0));
    }

    #[test]
    fn hints_combine_ebpf_wins_else_larger_lower_bound() {
        let s = with_ack(sock(TcpState::CloseWait), 10_000);
        let mut h: HashMap<Cookie, (TcpState, u64, AgeSource)> = HashMap::new();
        h.insert(
            Cookie(7),
            (TcpState::CloseWait, 50_000, AgeSource::FirstSeen),
        );
        let a = estimate(&s, 100_000, 100_000, None, &h).expect("age");
        assert_eq!((a.ms, a.source), (50_000, AgeSource::FirstSeen));
        // First seen later than the kernel estimate: the kernel one is better.
        h.insert(
            Cookie(7),
            (TcpState::CloseWait, 95_000, AgeSource::FirstSeen),
        );
        let a = estimate(&s, 100_000, 100_000, None, &h).expect("age");
        assert_eq!((a.ms, a.source), (10_000, AgeSource::TcpInfo));
        // eBPF is exact even when smaller.
        h.insert(Cookie(7), (TcpState::CloseWait, 98_000, AgeSource::Ebpf));
        let a = estimate(&s, 100_000, 100_000, None, &h).expect("age");
        assert_eq!((a.ms, a.source), (2_000, AgeSource::Ebpf));
        // A hint for another state is ignored.
        h.insert(Cookie(7), (TcpState::Established, 0, AgeSource::Ebpf));
        let a = estimate(&s, 100_000, 100_000, None, &h).expect("age");
        assert_eq!(a.source, AgeSource::TcpInfo);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(45), "45 s");
        assert_eq!(human_duration(41 * 60 + 10), "41 min");
        assert_eq!(human_duration(5 * 3600), "5 h");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration_ms(120), "120 ms");
        assert_eq!(human_duration_ms(2_500), "2.5 s");
        assert_eq!(human_duration_ms(45_000), "45 s");
    }
}
