//! sockleak's integration tests: one binary, one file per scenario. They run
//! the real `sockleak` binary against real sockets, processes and network
//! namespaces built by the peers in tools/peers/.

mod bench_selftest;
mod check_behaviors;
mod check_leak;
mod check_progress;
mod check_spawn;
mod check_support;
mod cli;
mod findings_close_wait;
mod findings_healthy;
mod findings_limits;
mod first_use;
mod fuzz_corpus;
mod hardening;
mod package_artifacts;
mod report_input;
mod run_leaks;
mod scan_netns;
mod scan_population;
mod scan_privileges;
mod scan_robustness;
mod serve_cardinality;
mod serve_cli;
mod serve_deploy;
mod serve_history;
mod serve_prometheus;
mod serve_robustness;
mod serve_support;
mod serve_tls;
mod support;
mod watch_leaks;
mod watch_quiet;
mod watch_report;
mod watch_support;
mod watch_tui;
