//! The benchmark's own check: `tools/bench/run --selftest` builds a small
//! population (~2k sockets, 3 network namespaces, every state of the mix),
//! checks it exactly per state with `ss -tan`, makes a second TIME_WAIT
//! generation, tears everything down and checks nothing is left. The
//! benchmark's numbers are only worth something if its populations are
//! exact, so CI runs this.

use crate::support::*;
use std::process::Command;

#[test]
fn bench_selftest_builds_an_exact_population_and_leaves_nothing() {
    if !require_root(
        "bench_selftest_builds_an_exact_population_and_leaves_nothing",
        "creates network namespaces and destroys its TIME_WAIT sockets with ss -K",
    ) {
        return;
    }
    let out = Command::new("python3")
        .arg(repo_root().join("tools/bench/run"))
        .arg("--selftest")
        .output()
        .expect("run tools/bench/run --selftest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    let ok = stdout
        .lines()
        .find(|l| l.starts_with("selftest ok:"))
        .unwrap_or_else(|| panic!("no verdict line:\n{stdout}\n{stderr}"));
    // "selftest ok: 2000 sockets in 3 namespaces over 10 processes, ..."
    assert!(ok.contains("in 3 namespaces"), "{ok}");
}
