//! Presentation: one file per output format. Never opens /proc or a netlink
//! socket; everything it shows comes in as model values.

pub mod check;
pub mod findings;
pub mod inventory;
pub mod json;
pub mod jsonl;
pub mod junit;
pub mod partial;
pub mod plain;
pub mod progress;
pub mod sockets;
pub mod style;
pub mod svg;

use sockleak_model::Snapshot;

/// Display name of a namespace: its `ip netns` name, "host" for the namespace
/// sockleak runs in, else the numeric id.
pub fn netns_label(snap: &Snapshot, id: u64) -> String {
    match snap.namespace(id) {
        Some(ns) => match &ns.name {
            Some(n) => n.clone(),
            None if ns.is_own => "host".to_string(),
            None => id.to_string(),
        },
        None if id == 0 => "-".to_string(),
        None => id.to_string(),
    }
}

/// Opens a file that will hold every process's command line (a `watch
/// --record` recording, a `run --json` report) for writing: created with
/// mode 0600, an existing one truncated and made 0600, and never through a
/// symlink at the path (O_NOFOLLOW: another user's link in /tmp must not
/// redirect root's write).
pub fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    e.kind(),
                    "it is a symlink; sockleak does not write through one",
                )
            } else {
                e
            }
        })?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Cuts `s` to `max` characters, marking the cut with '…'.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-11-22T18:44:32.123Z`)
/// without a date crate: days to civil date after Howard Hinnant's algorithm.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-22T18:44:32.123Z
        assert_eq!(
            super::rfc3339(1_795_373_072_123),
            "2026-11-22T18:44:32.123Z"
        );
        // Leap day.
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
