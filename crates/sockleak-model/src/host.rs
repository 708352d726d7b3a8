//! Host and per-namespace context needed to judge sockets: port ranges,
//! timeouts, limits and kernel counters.

use serde::Serialize;

/// A network namespace id: the inode of its nsfs file (`/proc/PID/ns/net`).
pub type NetnsId = u64;

/// An inclusive port range, as in `net.ipv4.ip_local_port_range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    pub fn len(&self) -> u32 {
        if self.high < self.low {
            0
        } else {
            u32::from(self.high) - u32::from(self.low) + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, port: u16) -> bool {
        port >= self.low && port <= self.high
    }
}

/// `/proc/net/sockstat` (+ `sockstat6`) TCP totals of one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct SockStat {
    /// "sockets: used" (all protocols).
    pub sockets_used: u64,
    pub tcp_inuse: u64,
    pub tcp_orphan: u64,
    pub tcp_tw: u64,
    pub tcp_alloc: u64,
    /// TCP memory in pages.
    pub tcp_mem_pages: u64,
    pub tcp6_inuse: u64,
}

/// `TcpExt:` counters from `/proc/net/netstat` (cumulative since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct TcpCounters {
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
    pub tcp_abort_on_close: Option<u64>,
    pub tcp_time_wait_overflow: Option<u64>,
}

/// One network namespace and its TCP settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Namespace {
    pub id: NetnsId,
    /// The `ip netns` name, when it has one under /run/netns.
    pub name: Option<String>,
    /// Whether this is the namespace sockleak itself runs in.
    pub is_own: bool,
    /// Whether its sockets were dumped (false: no permission, vanished...).
    pub scanned: bool,
    pub ip_local_port_range: Option<PortRange>,
    /// `net.ipv4.ip_local_reserved_ports`, as inclusive ranges.
    pub ip_local_reserved_ports: Vec<PortRange>,
    pub tcp_fin_timeout_s: Option<u32>,
    pub tcp_max_orphans: Option<u64>,
    pub tcp_max_tw_buckets: Option<u64>,
    pub somaxconn: Option<u32>,
    pub sockstat: Option<SockStat>,
    pub counters: TcpCounters,
}

impl Namespace {
    pub fn new(id: NetnsId) -> Namespace {
        Namespace {
            id,
            name: None,
            is_own: false,
            scanned: false,
            ip_local_port_range: None,
            ip_local_reserved_ports: Vec::new(),
            tcp_fin_timeout_s: None,
            tcp_max_orphans: None,
            tcp_max_tw_buckets: None,
            somaxconn: None,
            sockstat: None,
            counters: TcpCounters::default(),
        }
    }

    /// Ephemeral ports usable for outgoing connections: the local port range
    /// minus reserved ports inside it.
    pub fn usable_ephemeral_ports(&self) -> Option<u32> {
        let range = self.ip_local_port_range?;
        let mut reserved = 0u32;
        // Reserved ranges may overlap each other; count each port once.
        let mut ranges: Vec<PortRange> = self
            .ip_local_reserved_ports
            .iter()
            .filter_map(|r| {
                let low = r.low.max(range.low);
                let high = r.high.min(range.high);
                (low <= high).then_some(PortRange { low, high })
            })
            .collect();
        ranges.sort_by_key(|r| r.low);
        let mut next_free = range.low as u32;
        for r in ranges {
            let low = (r.low as u32).max(next_free);
            if low <= r.high as u32 {
                reserved += r.high as u32 - low + 1;
                next_free = r.high as u32 + 1;
            }
        }
        Some(range.len().saturating_sub(reserved))
    }

    /// "name" or the numeric id, for display.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self.id.to_string(),
        }
    }
}

/// Facts about the host itself.
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct HostInfo {
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// Clock ticks per second, to turn process start times into ages.
    pub clock_ticks: u64,
    /// Seconds since boot when the snapshot was taken.
    pub uptime_s: f64,
    /// Unix time (ms) of boot, derived from uptime.
    pub boot_time_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_ports_subtract_reserved_once() {
        let mut ns = Namespace::new(1);
        ns.ip_local_port_range = Some(PortRange {
            low: 1000,
            high: 1999,
        });
        ns.ip_local_reserved_ports = vec![
            PortRange {
                low: 900,
                high: 1009,
            }, // 10 inside
            PortRange {
                low: 1005,
                high: 1014,
            }, // overlaps: 5 new
            PortRange {
                low: 3000,
                high: 3010,
            }, // outside
        ];
        assert_eq!(ns.usable_ephemeral_ports(), Some(1000 - 15));
        ns.ip_local_port_range = None;
        assert_eq!(ns.usable_ephemeral_ports(), None);
    }
}
