//! `sockleak scan`: one snapshot of the host, its findings and inventory.

use crate::cli::{FailOn, ScanArgs};
use crate::exit;
use crate::output::{self, style::Style};
use anyhow::{bail, Result};
use sockleak_collect::scan::{scan_unfiltered, ScanOptions};
use sockleak_model::findings::{diagnose, unjudged_close_wait, DiagnoseConfig, Finding, Severity};
use sockleak_model::Snapshot;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::fd::AsFd;

pub fn run(args: &ScanArgs, style: Style) -> Result<u8> {
    let filter = args.filter.to_filter()?;
    super::require_pids(&filter)?;
    if !(0.0..=1.0).contains(&args.time_wait_warn)
        || !(0.0..=1.0).contains(&args.time_wait_crit)
        || args.time_wait_warn > args.time_wait_crit
    {
        bail!("--time-wait-warn and --time-wait-crit must be ratios with warn <= crit <= 1");
    }
    let mut opts = ScanOptions {
        filter,
        fd_source: args.fd_source.into(),
        ..ScanOptions::default()
    };
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    // Diagnose the whole collection (peers and listeners outside the user's
    // view matter for blame), then narrow both to what was asked.
    let mut snap = scan_unfiltered(&opts);
    for name in opts.filter.unmatched_names(&snap.processes) {
        eprintln!("sockleak: no process matches --process {name}");
    }
    if !snap.namespaces.iter().any(|n| n.scanned) {
        report_partial(&snap);
        bail!("no network namespace could be scanned (see the notes above)");
    }
    let cfg = DiagnoseConfig {
        min_age_s: args.min_age,
        time_wait_warn: args.time_wait_warn,
        time_wait_crit: args.time_wait_crit,
        ..DiagnoseConfig::default()
    };
    if args.json && !opts.filter.is_restricted() {
        report_partial(&snap);
        let verdict = json_overlapped(&snap, &cfg, args.fail_on);
        // The process ends next: freeing 150k sockets' owner lists one by
        // one (~5–10 ms) would only delay the exit that frees them at once.
        std::mem::forget(snap);
        return verdict;
    }
    let mut findings = diagnose(&snap, snap.taken_at_ms, &cfg);
    opts.filter.apply(&mut snap);
    let kept: HashSet<u32> = snap.processes.iter().map(|p| p.pid).collect();
    findings.retain(|f| opts.filter.matches_finding(f, &kept));
    report_partial(&snap);

    if args.json {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        let res = output::json::write(&mut w, &snap, &findings)
            .and_then(|_| w.flush().map_err(serde_json::Error::io));
        match res {
            Err(e) if e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe) => {
                return Ok(exit::OK)
            }
            Err(e) => return Err(e.into()),
            Ok(()) => {}
        }
    } else if args.sockets {
        exit::write_stdout(output::sockets::render(&snap, style).as_bytes())?;
    } else {
        let users = read_users();
        let mut text = output::findings::render(&snap, &findings, style);
        // Over what is shown: the young sockets of the filtered view.
        let unjudged = unjudged_close_wait(&snap, snap.taken_at_ms, &cfg);
        text.push_str(&output::findings::render_unjudged(&unjudged, style));
        text.push_str(&output::inventory::render(
            &snap,
            &output::inventory::InventoryOptions {
                style,
                wide: args.wide,
                users: &users,
            },
        ));
        exit::write_stdout(text.as_bytes())?;
    }
    Ok(verdict(&findings, args.fail_on))
}

/// `--json` of an unfiltered scan: the document lists sockets and processes
/// before findings, so they are written while the diagnosis runs on another
/// thread (without a filter there is nothing to narrow first).
fn json_overlapped(snap: &Snapshot, cfg: &DiagnoseConfig, fail_on: FailOn) -> Result<u8> {
    let res = std::thread::scope(|s| {
        let diag = s.spawn(|| diagnose(snap, snap.taken_at_ms, cfg));
        let stdout = std::io::stdout();
        let lock = stdout.lock();
        // A duplicate of fd 1 without std's line buffering: the document
        // is one line of tens of MB, and the LineWriter searched every
        // 64 KiB chunk for a newline (~1 % of a 150k-socket scan).
        let out = lock
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(serde_json::Error::io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 16, out);
        output::json::write_with(&mut w, snap, || match diag.join() {
            Ok(f) => f,
            Err(panic) => std::panic::resume_unwind(panic),
        })
        .and_then(|f| w.flush().map(|_| f).map_err(serde_json::Error::io))
    });
    match res {
        Err(e) if e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe) => Ok(exit::OK),
        Err(e) => Err(e.into()),
        Ok(findings) => Ok(verdict(&findings, fail_on)),
    }
}

/// Exit 1 when a finding reaches `--fail-on`.
pub fn verdict(findings: &[Finding], fail_on: FailOn) -> u8 {
    let threshold = match fail_on {
        FailOn::Info => Severity::Info,
        FailOn::Warning => Severity::Warning,
        FailOn::Critical => Severity::Critical,
        FailOn::Never => return exit::OK,
    };
    if findings.iter().any(|f| f.severity >= threshold) {
        exit::FINDINGS
    } else {
        exit::OK
    }
}

/// Says once on stderr what could not be seen and what would fix it; what
/// a sandbox guards is one quiet note, vanished processes (normal churn) are
/// only counted.
fn report_partial(snap: &Snapshot) {
    let mut err = std::io::stderr().lock();
    for l in output::partial::lines(&snap.partial, true) {
        let _ = writeln!(err, "sockleak: {}", l.text);
    }
}

/// uid → user name from /etc/passwd, as `ps` shows; empty when unreadable.
pub(crate) fn read_users() -> HashMap<u32, String> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}
