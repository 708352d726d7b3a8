//! The trend of a count over time, and the decision whether it is a leak.
//!
//! Two robust estimators over the samples of a window:
//!
//! - **Theil–Sen slope**: the median of the slopes between every pair of
//!   samples. Up to ~29 % of the samples can be wild (a burst, a scan that
//!   missed a namespace) without moving it, unlike a least-squares fit.
//! - **Mann–Kendall tau**: (pairs that rise − pairs that fall) / all pairs, in
//!   [−1, 1]. It says how *consistently* a count grows: 1 for a count that
//!   only ever goes up, about 0 for noise, churn or a flat line.
//!
//! A leak is growth that is steady, spread out and lasting (see [`decide`]):
//! enough samples, a positive slope, a consistent rise (tau), rises in several
//! separate intervals (one jump is a burst or a step, not a leak), a fitted
//! increase of a few objects at least, and, for sockets, most of the sockets
//! that arrived in the window still there (sockets that come and go are churn).

use serde::Serialize;

/// Thresholds of the leak decision. The defaults are documented in
/// docs/watch.md; change both together.
#[derive(Clone, Debug, PartialEq)]
pub struct TrendConfig {
    /// Samples needed before anything is decided (default 5: four intervals).
    pub min_samples: usize,
    /// Intervals in which the count must have risen (default 3): a single
    /// jump, or two, is a step or a burst.
    pub min_rises: usize,
    /// Mann–Kendall tau at least this (default 0.5): the count rose between
    /// clearly more sample pairs than it fell.
    pub min_tau: f64,
    /// The fitted growth over the window (slope × span) at least this many
    /// objects (default 3), so ±1 noise on a small count is never a leak.
    pub min_increase: f64,
    /// Of the sockets seen in the group during the window, at least this
    /// share must still be there (default 0.5); below it, sockets come and
    /// go: churn.
    pub min_retention: f64,
}

impl Default for TrendConfig {
    fn default() -> Self {
        TrendConfig {
            min_samples: 5,
            min_rises: 3,
            min_tau: 0.5,
            min_increase: 3.0,
            min_retention: 0.5,
        }
    }
}

/// Beyond this many samples the O(n²) estimators use an evenly thinned subset:
/// 200 samples are 19 900 pairs, and a slope from them is as good.
pub const MAX_ESTIMATOR_POINTS: usize = 200;

/// What the estimators say about one series.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Trend {
    /// Samples in the window.
    pub samples: usize,
    /// Time from the first to the last sample, ms.
    pub span_ms: u64,
    /// Theil–Sen slope, per minute.
    pub rate_per_min: f64,
    /// Mann–Kendall tau in [−1, 1].
    pub tau: f64,
    /// Intervals (consecutive samples) in which the count went up.
    pub rises: usize,
    /// The first and last value of the window.
    pub first: f64,
    pub last: f64,
}

impl Trend {
    /// The growth the slope implies over the window.
    pub fn fitted_increase(&self) -> f64 {
        self.rate_per_min * self.span_ms as f64 / 60_000.0
    }

    /// Growing at all: enough samples, a positive slope and a consistent rise.
    /// Forecasts (time to a limit) need only this.
    pub fn is_growing(&self, cfg: &TrendConfig) -> bool {
        self.samples >= cfg.min_samples && self.rate_per_min > 0.0 && self.tau >= cfg.min_tau
    }

    /// Growing steadily: [`Self::is_growing`], rising in at least
    /// `min_rises` intervals and by at least `min_increase` over the window.
    pub fn is_steady_growth(&self, cfg: &TrendConfig) -> bool {
        self.is_growing(cfg)
            && self.rises >= cfg.min_rises
            && self.fitted_increase() >= cfg.min_increase
    }
}

/// The estimators over `(time ms, value)` samples, oldest first. `None` with
/// fewer than two samples or no time between them.
pub fn trend(points: &[(u64, f64)]) -> Option<Trend> {
    let (first, last) = (points.first()?, points.last()?);
    if points.len() < 2 || last.0 <= first.0 {
        return None;
    }
    let thin = thinned(points);
    let rate_per_ms = theil_sen(&thin)?;
    let rises = points.windows(2).filter(|w| w[1].1 > w[0].1).count();
    Some(Trend {
        samples: points.len(),
        span_ms: last.0 - first.0,
        rate_per_min: rate_per_ms * 60_000.0,
        tau: kendall_tau(&thin),
        rises,
        first: first.1,
        last: last.1,
    })
}

/// At most [`MAX_ESTIMATOR_POINTS`] evenly spaced samples, always keeping the
/// first and the last.
fn thinned(points: &[(u64, f64)]) -> Vec<(u64, f64)> {
    let n = points.len();
    if n <= MAX_ESTIMATOR_POINTS {
        return points.to_vec();
    }
    let m = MAX_ESTIMATOR_POINTS;
    (0..m)
        .filter_map(|i| points.get(i * (n - 1) / (m - 1)).copied())
        .collect()
}

/// The median of the pairwise slopes (value per ms). Pairs at the same time
/// are skipped; `None` when no pair is left.
pub fn theil_sen(points: &[(u64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, a) in points.iter().enumerate() {
        for b in points.iter().skip(i + 1) {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 as f64 - a.0 as f64));
            }
        }
    }
    median(&mut slopes)
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Mann–Kendall S over all pairs, as a fraction of the pairs (tau-a).
pub fn kendall_tau(points: &[(u64, f64)]) -> f64 {
    let n = points.len();
    if n < 2 {
        return 0.0;
    }
    let mut s: i64 = 0;
    for (i, a) in points.iter().enumerate() {
        for b in points.iter().skip(i + 1) {
            if b.1 > a.1 {
                s += 1;
            } else if b.1 < a.1 {
                s -= 1;
            }
        }
    }
    s as f64 / (n * (n - 1) / 2) as f64
}

/// What a series is, in words the docs and the TUI use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Fewer than `min_samples` samples: nothing decided yet.
    Learning,
    /// Flat, falling, or noise around a level (a stable pool).
    Stable,
    /// Rose in too few intervals or by too little: a step or a burst so far.
    Step,
    /// Sockets arrive and leave: most seen in the window are gone.
    Churn,
    /// Keeps growing, and what arrives stays: a leak.
    Leak,
}

/// Which sockets of a group stayed over the window, from cookie-keyed
/// history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Turnover {
    /// Sockets in the group at the window's first sample, plus every socket
    /// that entered it since.
    pub entered: u64,
    /// Sockets that left the group since the window's first sample (closed,
    /// or moved to another state).
    pub left: u64,
}

impl Turnover {
    /// Share of the sockets seen in the window that are still there; 1 when
    /// none were seen.
    pub fn retention(&self) -> f64 {
        if self.entered == 0 {
            1.0
        } else {
            1.0 - (self.left.min(self.entered) as f64 / self.entered as f64)
        }
    }
}

/// The leak decision for one series. `turnover` is known for socket groups
/// (cookies say which sockets stayed) and `None` for fd counts.
pub fn decide(t: Option<&Trend>, turnover: Option<Turnover>, cfg: &TrendConfig) -> Verdict {
    let Some(t) = t.filter(|t| t.samples >= cfg.min_samples) else {
        return Verdict::Learning;
    };
    if !t.is_growing(cfg) {
        return Verdict::Stable;
    }
    if turnover.is_some_and(|o| o.retention() < cfg.min_retention) {
        return Verdict::Churn;
    }
    if !t.is_steady_growth(cfg) {
        return Verdict::Step;
    }
    Verdict::Leak
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64], step_ms: u64) -> Vec<(u64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (1_000_000 + i as u64 * step_ms, *v))
            .collect()
    }

    #[test]
    fn theil_sen_recovers_a_linear_rate_despite_outliers() {
        // 3 per 300 ms = 600/min, with two wild samples.
        let mut v: Vec<f64> = (0..12).map(|i| 10.0 + 3.0 * i as f64).collect();
        v[4] = 200.0;
        v[9] = 0.0;
        let t = trend(&series(&v, 300)).expect("trend");
        assert!((t.rate_per_min - 600.0).abs() < 1.0, "{t:?}");
        assert!(t.tau > 0.5);
    }

    #[test]
    fn a_steady_leak_is_a_leak_after_min_samples() {
        let cfg = TrendConfig::default();
        let pts = series(&[10.0, 13.0, 16.0, 19.0, 22.0], 300);
        let t = trend(&pts).expect("trend");
        let stay = Turnover {
            entered: 22,
            left: 0,
        };
        assert_eq!(decide(Some(&t), Some(stay), &cfg), Verdict::Leak);
        // One sample fewer: still learning.
        let t4 = trend(&pts[..4]).expect("trend");
        assert_eq!(decide(Some(&t4), Some(stay), &cfg), Verdict::Learning);
        assert_eq!(decide(None, None, &cfg), Verdict::Learning);
    }

    #[test]
    fn a_burst_is_a_step_then_stable_when_it_goes() {
        let cfg = TrendConfig::default();
        // 20 sockets appear in one interval and stay for a few samples.
        let t = trend(&series(&[0.0, 0.0, 20.0, 20.0, 20.0], 300)).expect("trend");
        let o = Turnover {
            entered: 20,
            left: 0,
        };
        assert_eq!(decide(Some(&t), Some(o), &cfg), Verdict::Step);
        // Then they are closed: gone, and nothing grows.
        let v = [0.0, 0.0, 20.0, 20.0, 20.0, 0.0, 0.0, 0.0, 0.0];
        let t = trend(&series(&v, 300)).expect("trend");
        let o = Turnover {
            entered: 20,
            left: 20,
        };
        assert_ne!(decide(Some(&t), Some(o), &cfg), Verdict::Leak);
    }

    #[test]
    fn churn_and_a_stable_pool_are_not_leaks() {
        let cfg = TrendConfig::default();
        let churn = [9.0, 11.0, 10.0, 12.0, 9.0, 10.0, 11.0, 10.0, 12.0, 9.0];
        let t = trend(&series(&churn, 300)).expect("trend");
        let o = Turnover {
            entered: 100,
            left: 99,
        };
        assert_ne!(decide(Some(&t), Some(o), &cfg), Verdict::Leak);
        // Churn that happens to drift up is still churn: what arrives leaves.
        let up = [5.0, 7.0, 8.0, 10.0, 11.0, 13.0];
        let t = trend(&series(&up, 300)).expect("trend");
        assert_eq!(decide(Some(&t), Some(o), &cfg), Verdict::Churn);
        let pool = [8.0; 10];
        let t = trend(&series(&pool, 300)).expect("trend");
        assert_eq!(decide(Some(&t), None, &cfg), Verdict::Stable);
        assert_eq!(t.rate_per_min, 0.0);
    }

    #[test]
    fn a_pool_that_filled_and_plateaued_becomes_stable() {
        let cfg = TrendConfig::default();
        // Once the plateau holds most of the window, most pairs are flat.
        let mut v = vec![0.0, 2.0, 4.0, 6.0];
        v.extend([8.0; 13]);
        let t = trend(&series(&v, 1000)).expect("trend");
        assert_eq!(t.rate_per_min, 0.0, "{t:?}");
        assert_eq!(decide(Some(&t), None, &cfg), Verdict::Stable);
    }

    #[test]
    fn tiny_growth_is_not_a_leak() {
        let cfg = TrendConfig::default();
        // +1 in three intervals over a long window: below min_increase.
        let v = [4.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0];
        let t = trend(&series(&v, 1000)).expect("trend");
        assert_ne!(decide(Some(&t), None, &cfg), Verdict::Leak);
    }

    #[test]
    fn thinning_keeps_the_slope_and_bounds_the_work() {
        let v: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
        let pts = series(&v, 1000);
        let t = trend(&pts).expect("trend");
        assert!((t.rate_per_min - 30.0).abs() < 1e-6, "{t:?}");
        assert_eq!(t.samples, 1000);
        assert_eq!(thinned(&pts).len(), MAX_ESTIMATOR_POINTS);
    }

    #[test]
    fn degenerate_series() {
        assert!(trend(&[]).is_none());
        assert!(trend(&[(5, 1.0)]).is_none());
        assert!(trend(&[(5, 1.0), (5, 2.0)]).is_none());
        assert_eq!(kendall_tau(&[(1, 1.0)]), 0.0);
        assert_eq!(Turnover::default().retention(), 1.0);
    }
}
