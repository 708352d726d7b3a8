//! Request outcomes and latency percentiles of one load run.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latency summary in milliseconds (nearest-rank percentiles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Collects outcomes; one per worker, merged at the end (no locking on the
/// hot path).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// Latencies of successful requests, in microseconds.
    pub micros: Vec<u64>,
    pub ok: u64,
    pub failed: u64,
    /// Failure reason → count; reasons are short and few ("connect: connection
    /// refused"), so a map stays small.
    pub errors: BTreeMap<String, u64>,
    /// TCP connections opened.
    pub connections: u64,
}

impl Recorder {
    pub fn success(&mut self, took: Duration) {
        self.ok += 1;
        self.micros
            .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn failure(&mut self, reason: String) {
        self.failed += 1;
        *self.errors.entry(reason).or_default() += 1;
    }

    pub fn merge(&mut self, other: Recorder) {
        self.micros.extend(other.micros);
        self.ok += other.ok;
        self.failed += other.failed;
        self.connections += other.connections;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    /// Percentiles of the successful requests; zeros when there were none.
    pub fn latency(&self) -> Latency {
        let mut v = self.micros.clone();
        v.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50_ms: ms(percentile(&v, 50.0)),
            p90_ms: ms(percentile(&v, 90.0)),
            p99_ms: ms(percentile(&v, 99.0)),
            max_ms: ms(v.last().copied().unwrap_or(0)),
        }
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at
/// least `p` % of the values at or below it. 0 for an empty slice.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Recorder::default();
        a.success(Duration::from_millis(2));
        a.failure("connect: refused".into());
        let mut b = Recorder::default();
        b.success(Duration::from_millis(4));
        b.failure("connect: refused".into());
        b.connections = 3;
        a.merge(b);
        assert_eq!((a.ok, a.failed, a.connections), (2, 2, 3));
        assert_eq!(a.errors.get("connect: refused"), Some(&2));
        let l = a.latency();
        assert_eq!(l.p50_ms, 2.0);
        assert_eq!(l.max_ms, 4.0);
    }
}
