//! Replays the committed fuzz corpora of the collection parsers
//! (fuzz/corpus/<target>/, and fuzz/artifacts/<target>/ where a fuzzing run
//! left a finding) through the same functions the fuzz targets call
//! (fuzz/harness/collect.rs), on stable, as an ordinary test: every input
//! returns, without a panic, within a time bound. A target without corpus
//! files fails: an empty replay proves nothing.

#![cfg(feature = "bpf")] // the eBPF record decoders are in the "bpf" feature

#[path = "../../../fuzz/harness/collect.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A target's name and its body.
type Target = (&'static str, fn(&[u8]));

/// The targets whose bodies are in the harness included above.
const TARGETS: [Target; 6] = [
    ("diag_batch", harness::diag_batch),
    ("tcp_info", harness::tcp_info),
    ("procfs", harness::procfs),
    ("proc_net_tcp", harness::proc_net_tcp),
    ("btf_min", harness::btf_min),
    ("bpf_records", harness::bpf_records),
];

/// Per input, in a debug build: generous, but a hang (an endless loop on
/// one input) fails instead of stalling CI.
const LIMIT: Duration = Duration::from_secs(10);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "{target}: no corpus files in fuzz/corpus/{target}/"
    );
    let artifacts = files(&fuzz_dir().join("artifacts").join(target));
    for f in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        let start = Instant::now();
        let r = std::panic::catch_unwind(|| body(&data));
        assert!(r.is_ok(), "{target}: {} panicked", f.display());
        let took = start.elapsed();
        assert!(took < LIMIT, "{target}: {} took {took:?}", f.display());
    }
    corpus.len() + artifacts.len()
}

#[test]
fn every_collection_corpus_replays_without_a_panic() {
    for (target, body) in TARGETS {
        let n = replay(target, body);
        eprintln!("{target}: {n} inputs replayed");
    }
}

#[test]
fn every_fuzz_target_on_the_collection_harness_is_replayed() {
    let dir = fuzz_dir().join("fuzz_targets");
    let on_harness: Vec<String> = files(&dir)
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|s| s.contains("harness/collect.rs")))
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    assert!(!on_harness.is_empty(), "no targets in {}", dir.display());
    for t in &on_harness {
        assert!(
            TARGETS.iter().any(|(name, _)| name == t),
            "fuzz target {t} has no replay here"
        );
    }
    assert_eq!(on_harness.len(), TARGETS.len(), "{on_harness:?}");
}
