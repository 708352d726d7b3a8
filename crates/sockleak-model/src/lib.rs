//! sockleak's vocabulary and analysis. Pure: no I/O, no unsafe, no clock.
//!
//! Collection (`sockleak-collect`) fills a [`Snapshot`]; analysis in this crate
//! reads it with `now` passed in, so every age, rate and verdict is
//! deterministic in tests; presentation lives in the binary.

#![forbid(unsafe_code)]

pub mod age;
pub mod blame;
pub mod enrich;
pub mod explain;
pub mod filter;
pub mod findings;
pub mod forecast;
pub mod group;
pub mod history;
pub mod host;
pub mod process;
pub mod regression;
pub mod runtime;
pub mod snapshot;
pub mod socket;
#[cfg(test)]
mod test_support;
pub mod trend;

pub use age::{AgeHints, AgeSource, NoHints};
pub use blame::Holder;
pub use filter::{Filter, StateSet};
pub use findings::{
    diagnose, diagnose_with, sort_findings, DiagnoseConfig, Finding, FindingKey, FindingKind,
    Severity,
};
pub use group::{group_key, GroupKey, Role};
pub use host::{HostInfo, Namespace, NetnsId, PortRange, SockStat, TcpCounters};
pub use process::{FdKind, FdKinds, Process};
pub use snapshot::{
    add_note, describe_processes, merge_notes, NoteProcess, PartialCause, PartialKind, PartialNote,
    Snapshot,
};
pub use socket::{
    Cookie, Endpoint, Family, MemInfo, Owner, Owners, Socket, TcpInfo, TcpState, Timer,
};
