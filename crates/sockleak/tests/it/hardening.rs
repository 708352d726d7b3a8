//! Bounds that keep a mistyped flag from hurting the host (issue 15): a
//! sampling loop with no interval, an absurd thread count.

use crate::support::*;

#[test]
fn run_refuses_an_interval_that_would_busy_loop() {
    let (code, _, err) = run(&["run", "--interval", "0s", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--interval must be at least 100ms"), "{err}");
    let (code, _, err) = run(&["run", "--interval", "100ms", "--", "true"]);
    assert_eq!(code, 0, "the bound itself is accepted: {err}");
}

#[test]
fn threads_have_an_upper_bound() {
    for cmd in ["scan", "watch", "serve"] {
        let (code, _, err) = run(&[cmd, "--threads", "100000"]);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(err.contains("from 1 to 64"), "{cmd}: {err}");
        let (code, _, err) = run(&[cmd, "--threads", "0"]);
        assert_eq!(code, 2, "{cmd}: {err}");
    }
}
