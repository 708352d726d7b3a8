//! sockleak's Linux collection layer: everything that talks to the kernel.
//!
//! It returns model types, never prints and never decides: sock_diag dumps
//! ([`diag`]), the /proc walk ([`procfs`]), network namespaces ([`netns`]),
//! per-namespace sysctls and counters ([`context`]), what this run may see
//! ([`privileges`]), and [`scan`], which joins them into one
//! [`sockleak_model::Snapshot`].

#![cfg(target_os = "linux")]

#[cfg(feature = "bpf")]
pub mod bpf;
pub mod context;
pub mod diag;
#[cfg(feature = "bpf")]
pub mod incremental;
pub mod netns;
mod pool;
pub mod privileges;
pub mod procfs;
pub mod scan;

/// The eBPF objects compiled into this build, as (object, bytes): both
/// programs with the "bpf" feature, none without it. `sockleak --version`
/// says which.
pub fn embedded_bpf_objects() -> Vec<(&'static str, usize)> {
    #[cfg(feature = "bpf")]
    {
        bpf::embedded_objects().to_vec()
    }
    #[cfg(not(feature = "bpf"))]
    {
        Vec::new()
    }
}
