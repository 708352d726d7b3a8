//! The TCP state tracker: which sockets changed state since the last look,
//! from a `tp_btf/inet_sock_set_state` program (statechg.bpf.c).
//!
//! Why: a `watch` sample at 150k sockets re-dumps every socket although
//! nearly none changed (docs/benchmarks.md: a steady sample costs a full
//! scan). With the tracker a sampler can look up only the sockets that
//! changed (exact sock_diag requests in their namespace, by the 4-tuple and
//! cookie recorded here) and dump everything only now and then or when the
//! tracker lost changes ([`crate::incremental`]).
//!
//! What it guarantees: every change of a TCP socket's state after
//! [`StateTracker::new`] returns is either in a later [`StateTracker::drain`]
//! or counted in its [`Drained::lost`] (the map was full). A drain takes the
//! entries out bucket by bucket, each under its lock (batched
//! lookup-and-delete), so a change that lands while draining is in this
//! drain or the next, never dropped. What it does not
//! see: sockets that change no state (queues, tcp_info), TIME_WAIT sockets
//! expiring (no full socket is involved: the sampler must expire them from
//! their timer), request sockets (SYN_RECV of a listener).
//!
//! Needs what the fd table needs (CAP_BPF + CAP_PERFMON or root, kernel BTF)
//! and Linux >= 5.6 for batched lookup-and-delete on hash maps.

use super::{chain, find_io_error};
use aya::maps::{Map, MapData};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use sockleak_model::{Cookie, Endpoint, Family, TcpState};
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// The compiled statechg.bpf.c (regenerate with `tools/bpf/build`).
pub(super) static STATECHG_OBJ: &[u8] = aya::include_bytes_aligned!("statechg.bpf.o");

const PROGRAM_NAME: &str = "sockleak_statechg";
const TRACEPOINT: &str = "inet_sock_set_state";
const CHANGED_MAP: &str = "changed";
const LOST_MAP: &str = "lost";

/// `sizeof(struct change)` in statechg.bpf.c.
pub const CHANGE_LEN: usize = 56;

/// Why the tracker cannot run or failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// This system cannot run it (no BTF, no bpf syscall, kernel too old).
    #[error("TCP state tracker unsupported here: {0}")]
    Unsupported(String),
    /// Loading or attaching was refused (EPERM/EACCES).
    #[error("TCP state tracker: {0}: permission denied (needs CAP_BPF and CAP_PERFMON, or root)")]
    Permission(String),
    /// Loading, attaching or reading the map failed otherwise.
    #[error("TCP state tracker: {0}")]
    Failed(String),
}

fn classify(what: &str, e: &(dyn std::error::Error + 'static)) -> TrackerError {
    let msg = format!("{what}: {}", chain(e));
    match find_io_error(e).and_then(io::Error::raw_os_error) {
        Some(libc::EPERM | libc::EACCES) => TrackerError::Permission(msg),
        Some(libc::ENOSYS) => TrackerError::Unsupported(format!("no bpf() syscall: {msg}")),
        _ => TrackerError::Failed(msg),
    }
}

/// One socket that changed state since the previous drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub cookie: Cookie,
    /// nsfs inode of the socket's network namespace.
    pub netns: u64,
    pub family: Family,
    /// Port 0 when the socket was only seen after it lost its local port
    /// (it closed).
    pub local: Endpoint,
    pub remote: Endpoint,
    /// The state before its first change since the previous drain; `None`
    /// for a value outside the known TCP states.
    pub old_state: Option<TcpState>,
    /// The state after its latest change.
    pub new_state: Option<TcpState>,
    /// Changes since the previous drain.
    pub changes: u32,
    /// CLOCK_MONOTONIC nanoseconds of the latest change.
    pub at_ns: u64,
}

/// What one drain found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub changes: Vec<StateChange>,
    /// Changes dropped since the previous drain because the map was full: a
    /// sampler must then dump everything again.
    pub lost: u64,
}

/// The attached program and its maps. Detached when dropped.
pub struct StateTracker {
    ebpf: Ebpf,
    lost_before: u64,
}

impl std::fmt::Debug for StateTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTracker").finish_non_exhaustive()
    }
}

impl StateTracker {
    /// Loads and attaches the tracker with room for 65536 changed sockets
    /// between drains.
    pub fn new() -> Result<StateTracker, TrackerError> {
        Self::with_capacity(None)
    }

    /// [`new`](Self::new) with another map size (tests make it overflow).
    pub fn with_capacity(max_sockets: Option<u32>) -> Result<StateTracker, TrackerError> {
        let btf = Btf::from_sys_fs().map_err(|e| {
            if find_io_error(&e).is_some_and(|io| io.kind() == io::ErrorKind::NotFound) {
                TrackerError::Unsupported(format!(
                    "kernel BTF (/sys/kernel/btf/vmlinux) is missing: needs \
                     CONFIG_DEBUG_INFO_BTF ({})",
                    chain(&e)
                ))
            } else {
                classify("reading kernel BTF", &e)
            }
        })?;
        let mut loader = EbpfLoader::new();
        loader.btf(Some(&btf));
        if let Some(n) = max_sockets {
            loader.map_max_entries(CHANGED_MAP, n.max(1));
        }
        let mut ebpf = loader
            .load(STATECHG_OBJ)
            .map_err(|e| classify("loading the object", &e))?;
        let program: &mut BtfTracePoint = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| TrackerError::Failed(format!("{PROGRAM_NAME} not in the object")))?
            .try_into()
            .map_err(|e| classify("program type", &e))?;
        program.load(TRACEPOINT, &btf).map_err(|e| {
            if matches!(e, aya::programs::ProgramError::Btf(_)) {
                TrackerError::Unsupported(format!(
                    "the kernel has no BTF tracepoint {TRACEPOINT}: {}",
                    chain(&e)
                ))
            } else {
                classify("loading the program", &e)
            }
        })?;
        program
            .attach()
            .map_err(|e| classify("attaching to inet_sock_set_state", &e))?;
        let mut tracker = StateTracker {
            ebpf,
            lost_before: 0,
        };
        tracker.lost_before = tracker.lost_total()?;
        // A first drain (changes before `new` returns are not promised): a
        // kernel without batched map reads says so now, not at every sample.
        tracker.drain()?;
        Ok(tracker)
    }

    /// Takes every recorded change out of the map.
    pub fn drain(&mut self) -> Result<Drained, TrackerError> {
        let map = self
            .ebpf
            .map(CHANGED_MAP)
            .ok_or_else(|| TrackerError::Failed(format!("map {CHANGED_MAP} missing")))?;
        let Map::HashMap(data) = map else {
            return Err(TrackerError::Failed(format!(
                "map {CHANGED_MAP} is not a hash map"
            )));
        };
        let fd = data.fd().as_fd().as_raw_fd();
        let mut changes = Vec::new();
        take_all(fd, |key, value| {
            if let Some(c) = decode_change(key, value) {
                changes.push(c);
            }
        })
        .map_err(|e| match e.raw_os_error() {
            // An unknown bpf() command (before 5.6), or the kernel's own
            // ENOTSUPP (524) for a map type without batch operations.
            Some(libc::EINVAL | libc::EOPNOTSUPP | 524) => TrackerError::Unsupported(format!(
                "batched reads of the change map refused (needs Linux >= 5.6): {e}"
            )),
            _ => classify("taking the changes out of the map", &e),
        })?;
        let total = self.lost_total()?;
        let lost = total.saturating_sub(self.lost_before);
        self.lost_before = total;
        Ok(Drained { changes, lost })
    }

    /// The `lost` counter (monotonic; only the program writes it).
    fn lost_total(&self) -> Result<u64, TrackerError> {
        let map = self
            .ebpf
            .map(LOST_MAP)
            .ok_or_else(|| TrackerError::Failed(format!("map {LOST_MAP} missing")))?;
        let array = aya::maps::Array::<&MapData, u64>::try_from(map)
            .map_err(|e| classify("opening the lost counter", &e))?;
        array
            .get(&0, 0)
            .map_err(|e| classify("reading the lost counter", &e))
    }
}

/// Keys and values taken out of the map per `bpf()` call.
const BATCH: usize = 1024;

/// Takes every entry out of the change map with
/// `BPF_MAP_LOOKUP_AND_DELETE_BATCH`: each hash bucket is copied and emptied
/// under its lock, so a change that lands while draining is in this drain or
/// the next, never dropped, and 25k changes cost ~25 calls instead of two
/// per key (listing the keys, then taking each: ~13 µs a change, measured).
fn take_all(map_fd: i32, mut each: impl FnMut(u64, &[u8; CHANGE_LEN])) -> io::Result<()> {
    /// The batch member of `union bpf_attr` (include/uapi/linux/bpf.h).
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
    let mut keys = vec![0u64; BATCH];
    let mut values = vec![[0u8; CHANGE_LEN]; BATCH];
    // A hash map's batch position is a bucket index (u32); no position
    // starts at the first bucket.
    let (mut pos_in, mut pos_out) = (0u32, 0u32);
    let mut first = true;
    // Bounded: every call but the last moves past at least one bucket, and
    // bucket positions are u32.
    for _ in 0..=(u32::MAX as usize / BATCH + 1) {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::addr_of!(pos_in) as u64
            },
            out_batch: std::ptr::addr_of_mut!(pos_out) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: map_fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: `attr` points at `pos_in`/`pos_out` (u32 bucket positions),
        // at `keys` (BATCH × 8 bytes, the map's key size) and `values`
        // (BATCH × CHANGE_LEN bytes, its value size), all alive for the call;
        // the kernel writes at most `count` keys and values and reads
        // `size_of::<BatchAttr>()` bytes of `attr`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                std::ptr::addr_of_mut!(attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (rc != 0).then(io::Error::last_os_error);
        // ENOENT: the last buckets were read; what they held is in `count`.
        let done = match err {
            None => false,
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Some(e) => return Err(e),
        };
        let n = (attr.count as usize).min(BATCH);
        for (k, v) in keys.iter().zip(&values).take(n) {
            each(*k, v);
        }
        if done {
            return Ok(());
        }
        first = false;
        pos_in = pos_out;
    }
    Err(io::Error::other("the change map did not end"))
}

/// Decodes one `struct change` (the value of the map entry whose key is
/// the socket cookie `key`); `None` for a family other than AF_INET/6.
pub fn decode_change(key: u64, v: &[u8; CHANGE_LEN]) -> Option<StateChange> {
    let u16_at = |at: usize| u16::from_ne_bytes([v[at], v[at + 1]]);
    let u32_at = |at: usize| u32::from_ne_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
    let addr = |at: usize, family: Family| {
        let mut raw = [0u8; 16];
        raw.copy_from_slice(&v[at..at + 16]);
        crate::diag::decode::addr(family, raw)
    };
    let family = match u16_at(4) {
        2 => Family::Inet,
        10 => Family::Inet6,
        _ => return None,
    };
    Some(StateChange {
        cookie: Cookie(key),
        netns: u64::from(u32_at(0)),
        family,
        local: Endpoint::new(addr(24, family), u16_at(6)),
        remote: Endpoint::new(addr(40, family), u16_at(8)),
        old_state: TcpState::from_kernel(v[10]),
        new_state: TcpState::from_kernel(v[11]),
        changes: u32_at(12),
        at_ns: u64::from_ne_bytes([v[16], v[17], v[18], v[19], v[20], v[21], v[22], v[23]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_layout_of_struct_change() {
        let mut v = [0u8; CHANGE_LEN];
        v[0..4].copy_from_slice(&4_026_531_833u32.to_ne_bytes());
        v[4..6].copy_from_slice(&2u16.to_ne_bytes());
        v[6..8].copy_from_slice(&8080u16.to_ne_bytes());
        v[8..10].copy_from_slice(&40000u16.to_ne_bytes());
        v[10] = 1; // ESTABLISHED
        v[11] = 8; // CLOSE_WAIT
        v[12..16].copy_from_slice(&2u32.to_ne_bytes());
        v[16..24].copy_from_slice(&123_456u64.to_ne_bytes());
        v[24..28].copy_from_slice(&[127, 0, 0, 1]);
        v[40..44].copy_from_slice(&[127, 0, 0, 2]);
        let c = decode_change(77, &v).expect("decoded");
        assert_eq!(c.cookie, Cookie(77));
        assert_eq!(c.netns, 4_026_531_833);
        assert_eq!(c.family, Family::Inet);
        assert_eq!(c.local.to_string(), "127.0.0.1:8080");
        assert_eq!(c.remote.to_string(), "127.0.0.2:40000");
        assert_eq!(c.old_state, Some(TcpState::Established));
        assert_eq!(c.new_state, Some(TcpState::CloseWait));
        assert_eq!((c.changes, c.at_ns), (2, 123_456));

        v[4..6].copy_from_slice(&10u16.to_ne_bytes());
        v[24..40].copy_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        let c = decode_change(78, &v).expect("decoded");
        assert_eq!(c.local.to_string(), "[::1]:8080");
        v[4..6].copy_from_slice(&1u16.to_ne_bytes());
        assert_eq!(decode_change(79, &v), None, "AF_UNIX is not TCP");
        v[4..6].copy_from_slice(&2u16.to_ne_bytes());
        v[11] = 200;
        assert_eq!(decode_change(80, &v).map(|c| c.new_state), Some(None));
    }
}
