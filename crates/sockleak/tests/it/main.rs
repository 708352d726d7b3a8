//! sockleak's integration tests: one binary, one file per scenario. They run
//! the real `sockleak` binary against real sockets, processes and network
//! namespaces built by the peers in tools/peers/.

mod cli;
mod scan_netns;
mod scan_population;
mod scan_robustness;
mod support;
