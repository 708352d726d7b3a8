//! When a growing count reaches its limit: the fd limit of a process, or the
//! ephemeral ports toward one destination. Pure arithmetic on rates the trend
//! estimator measured; `None` means "not on course to reach it".

use crate::age::TIME_WAIT_LEN_MS;

/// Seconds until `current` reaches `limit` at `rate_per_min`, rounded to the
/// nearest second. `Some(0)` when already at or past the limit; `None` when
/// the count is not growing (or the inputs are not finite).
pub fn eta_s(current: f64, limit: f64, rate_per_min: f64) -> Option<u64> {
    if !(current.is_finite() && limit.is_finite() && rate_per_min.is_finite()) {
        return None;
    }
    if current >= limit {
        return Some(0);
    }
    if rate_per_min <= 0.0 {
        return None;
    }
    let secs = (limit - current) / rate_per_min * 60.0;
    // Beyond ~30 years a forecast means nothing; it is also where u64 and f64
    // stop agreeing.
    (secs < 1e9).then(|| secs.round() as u64)
}

/// Time until a process runs out of file descriptors: `fd_count` open of a
/// soft limit of `fd_limit`, growing at `rate_per_min`.
pub fn fd_eta_s(fd_count: u32, fd_limit: u64, rate_per_min: f64) -> Option<u64> {
    eta_s(f64::from(fd_count), fd_limit as f64, rate_per_min)
}

/// Time until TIME_WAIT toward one destination uses every usable ephemeral
/// port.
///
/// TIME_WAIT sockets leave after 60 s, so the count levels off at
/// arrival rate × 60 s. The ports run out only if that level is above the
/// usable range; then the count keeps rising at its net rate until it gets
/// there. `arrivals_per_min` is the rate of new TIME_WAIT sockets (from
/// cookies), `net_rate_per_min` the measured slope of the count.
pub fn time_wait_eta_s(
    count: u64,
    usable_ports: u32,
    net_rate_per_min: f64,
    arrivals_per_min: f64,
) -> Option<u64> {
    let usable = f64::from(usable_ports);
    if count as f64 >= usable {
        return Some(0);
    }
    let level = arrivals_per_min * (TIME_WAIT_LEN_MS as f64 / 60_000.0);
    if level < usable {
        return None;
    }
    eta_s(count as f64, usable, net_rate_per_min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_at_a_steady_rate() {
        // 800 of 1000 fds, +1200/min = 20/s: 10 s.
        assert_eq!(fd_eta_s(800, 1000, 1200.0), Some(10));
        assert_eq!(fd_eta_s(1000, 1000, 1200.0), Some(0));
        assert_eq!(fd_eta_s(1200, 1000, 0.0), Some(0));
        assert_eq!(fd_eta_s(10, 1000, 0.0), None);
        assert_eq!(fd_eta_s(10, 1000, -5.0), None);
        assert_eq!(eta_s(0.0, 10.0, f64::NAN), None);
        // Rounded to the nearest second, not truncated.
        assert_eq!(eta_s(0.0, 10.0, 60.0 * 10.0 / 2.6), Some(3));
    }

    #[test]
    fn time_wait_only_runs_out_if_its_level_exceeds_the_ports() {
        // 100 new TIME_WAIT per second level off at 6000: below 28 232 ports.
        assert_eq!(time_wait_eta_s(3000, 28_232, 6000.0, 6000.0), None);
        // 1000/s level off at 60 000: the range runs out, at the net rate.
        assert_eq!(time_wait_eta_s(8232, 28_232, 60_000.0, 60_000.0), Some(20));
        assert_eq!(time_wait_eta_s(28_232, 28_232, 0.0, 0.0), Some(0));
    }
}
