//! The Prometheus exporter behind `sockleak serve`: a collector thread scans
//! on its own interval and renders the metrics once per scan; the HTTP side
//! only hands out the latest rendering, so a scrape never triggers a scan and
//! concurrent scrapes share one copy of the text.
//!
//! - [`metrics`]: pure rendering of a snapshot and its findings into the
//!   Prometheus text format and OpenMetrics, with the cardinality caps.
//! - [`redact`]: hides secrets in command lines before they become labels.
//! - [`http`]: the hardened HTTP/1.1 server (limits, timeouts, connection cap
//!   with eviction and reserved slots, bounded password checks,
//!   graceful shutdown, content negotiation, basic auth).
//! - [`webconfig`]: the exporter-toolkit `--web-config` YAML (TLS, users).

pub mod http;
pub mod metrics;
pub mod redact;
pub mod webconfig;

use bytes::Bytes;
use sockleak_model::enrich::Watcher;
use sockleak_model::findings::{diagnose, DiagnoseConfig};
use sockleak_model::{Finding, Snapshot};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// One scan's metrics, rendered in both formats.
#[derive(Debug)]
pub struct Exposition {
    pub prometheus: Bytes,
    pub openmetrics: Bytes,
    /// When the scan that produced it finished.
    pub finished: Instant,
}

/// Counters of the HTTP side, read by the collector when it renders the self
/// metrics (so they lag by at most one interval; a scrape stays a plain copy).
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Connections accepted (including those rejected by the cap).
    pub connections: AtomicU64,
    /// Connections closed because `--max-connections` were open: one that
    /// was waiting for a request head, evicted for a newcomer, or the
    /// newcomer itself when every slot was busy answering.
    pub rejected: AtomicU64,
    /// Connections closed by the header-read or per-connection timeout.
    pub timed_out: AtomicU64,
    /// Requests refused for missing or wrong credentials (401) or because
    /// the password verifier was busy (429).
    pub unauthorized: AtomicU64,
}

impl HttpStats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the collector thread and the HTTP tasks share.
#[derive(Debug)]
pub struct Shared {
    latest: RwLock<Option<Arc<Exposition>>>,
    pub http: HttpStats,
    /// The collection interval, to judge staleness in `/healthz`.
    pub interval: Duration,
}

impl Shared {
    pub fn new(interval: Duration) -> Shared {
        Shared {
            latest: RwLock::new(None),
            http: HttpStats::default(),
            interval,
        }
    }

    /// The latest rendering; `None` until the first scan finished. A cheap
    /// `Arc` clone: the lock is held only for that.
    pub fn latest(&self) -> Option<Arc<Exposition>> {
        // A poisoned lock only means a writer panicked between two whole
        // assignments: the value inside is still a complete rendering.
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish(&self, e: Exposition) {
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(e));
    }

    /// How long after a scan the metrics count as stale for `/healthz`: three
    /// missed intervals, and never less than a minute (a scan of a very busy
    /// host can take seconds).
    pub fn stale_after(&self) -> Duration {
        (self.interval * 3).max(Duration::from_secs(60))
    }
}

/// Growth over time that one snapshot cannot know, keyed by pid.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessTrends {
    /// Seconds until the process reaches its soft fd limit at its current
    /// growth rate.
    pub fd_eta_s: HashMap<u32, u64>,
}

/// How each scan is diagnosed: from the snapshot alone, or with history
/// across scans. Gets the whole (unfiltered) snapshot; returns its findings,
/// most severe first, and per-process trends. The exporter renders whatever
/// rates and ETAs are filled in, and leaves their series out when none are.
pub trait Diagnosis: Send {
    fn diagnose(&mut self, snap: &Snapshot) -> (Vec<Finding>, ProcessTrends);
}

/// One snapshot at a time, as `scan` does: no rates, no ETAs.
#[derive(Debug)]
pub struct SnapshotOnly(pub DiagnoseConfig);

impl Diagnosis for SnapshotOnly {
    fn diagnose(&mut self, snap: &Snapshot) -> (Vec<Finding>, ProcessTrends) {
        (
            diagnose(snap, snap.taken_at_ms, &self.0),
            ProcessTrends::default(),
        )
    }
}

/// With `watch`'s engine ([`Watcher`]): first-seen ages, close_wait_leak
/// growth (`rate_per_min`), leaks judged by their trend, and fd exhaustion
/// ETAs. Its memory is bounded by the history window.
pub struct WithHistory(pub Watcher);

impl Diagnosis for WithHistory {
    fn diagnose(&mut self, snap: &Snapshot) -> (Vec<Finding>, ProcessTrends) {
        let obs = self.0.observe(snap, snap.taken_at_ms);
        let fd_eta_s = obs
            .processes
            .iter()
            .filter_map(|p| p.eta_s.map(|eta| (p.key.pid, eta)))
            .collect();
        (obs.findings, ProcessTrends { fd_eta_s })
    }
}
