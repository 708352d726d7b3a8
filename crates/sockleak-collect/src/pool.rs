//! A scoped worker pool for the collection's parallel parts (the /proc walk,
//! the namespace dumps): up to N threads, the caller's among them, each take
//! the next index from a shared counter until none is left. Cheap, and
//! self-balancing when one item is slow (a process with 20k fds, the
//! namespace that holds most sockets).

use std::sync::atomic::{AtomicUsize, Ordering};

/// What [`drain`] returns.
pub(crate) struct Drained<S> {
    /// One state per worker that finished, the caller's first.
    pub outputs: Vec<S>,
    /// Workers that panicked: the items they had taken have no result, and
    /// the caller says so in a note.
    pub lost: u32,
}

/// Runs the indexes `0..count` over up to `threads` workers. Each worker
/// builds its state with `init` (its own buffers) and feeds it every index
/// it takes to `step`. A thread that cannot be spawned only means fewer
/// workers (the others, at least the caller, drain the counter); a panic on
/// the caller's own thread propagates.
pub(crate) fn drain<S: Send>(
    count: usize,
    threads: usize,
    name: &str,
    init: impl Fn() -> S + Sync,
    step: impl Fn(&mut S, usize) + Sync,
) -> Drained<S> {
    let workers = threads.clamp(1, count.max(1));
    let next = AtomicUsize::new(0);
    let run = || {
        let mut state = init();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                break;
            }
            step(&mut state, i);
        }
        state
    };
    let mut outputs = Vec::with_capacity(workers);
    let mut lost = 0u32;
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..workers)
            .map_while(|i| {
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn_scoped(s, run)
                    .ok()
            })
            .collect();
        outputs.push(run());
        for h in handles {
            match h.join() {
                Ok(o) => outputs.push(o),
                Err(_) => lost += 1,
            }
        }
    });
    Drained { outputs, lost }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_is_taken_once_whatever_the_thread_count() {
        for threads in [0, 1, 2, 7, 100] {
            let d = drain(50, threads, "t", Vec::new, |v: &mut Vec<usize>, i| {
                v.push(i)
            });
            assert_eq!(d.lost, 0);
            assert!(d.outputs.len() <= threads.clamp(1, 50));
            let mut all: Vec<usize> = d.outputs.into_iter().flatten().collect();
            all.sort_unstable();
            assert_eq!(all, (0..50).collect::<Vec<_>>(), "threads {threads}");
        }
        let none = drain(0, 4, "t", Vec::new, |v: &mut Vec<usize>, i| v.push(i));
        assert_eq!(none.outputs.len(), 1);
        assert!(none.outputs.iter().all(Vec::is_empty));
    }

    #[test]
    fn a_panicking_worker_is_counted_and_the_others_finish() {
        use std::sync::atomic::AtomicBool;
        use std::time::{Duration, Instant};
        // The spawned worker (named "t-1") panics on the first item it takes;
        // the caller waits (bounded) until that has happened before it takes
        // more, so the spawned worker surely gets an item.
        let worker_took = AtomicUsize::new(usize::MAX);
        let worker_ran = AtomicBool::new(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        let d = drain(40, 2, "t", Vec::new, |v: &mut Vec<usize>, i| {
            if std::thread::current().name() == Some("t-1") {
                worker_took.store(i, Ordering::SeqCst);
                worker_ran.store(true, Ordering::SeqCst);
                panic!("worker fails on item {i}");
            }
            while !worker_ran.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            v.push(i);
        });
        assert!(
            worker_ran.load(Ordering::SeqCst),
            "the spawned worker never ran"
        );
        assert_eq!(d.lost, 1);
        let lost_item = worker_took.load(Ordering::SeqCst);
        let mut done: Vec<usize> = d.outputs.into_iter().flatten().collect();
        done.sort_unstable();
        let want: Vec<usize> = (0..40).filter(|&i| i != lost_item).collect();
        assert_eq!(done, want);
    }
}
