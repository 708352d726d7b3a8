//! The status line of `check` and `run`: one line on stderr, rewritten in
//! place with `\r` a few times a second while they wait, load and settle,
//! and cleared when they end. Only on a terminal: with stderr redirected
//! (CI logs, `2>file`) nothing is written at all.
//!
//! The line is drawn by its own thread from a closure that reads atomic
//! counters, so the work it reports on never waits for the terminal.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the line is redrawn: often enough to look live, rarely enough
/// to cost nothing (5 writes a second). The first draw is one tick late.
pub const TICK: Duration = Duration::from_millis(200);

/// A running status line; dropping it stops the thread and clears the line.
pub struct StatusLine {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StatusLine {
    /// Draws `render()` every [`TICK`] when stderr is a terminal; does
    /// nothing otherwise. `render` returns `None` for "nothing to show now".
    pub fn start<F>(render: F) -> StatusLine
    where
        F: FnMut() -> Option<String> + Send + 'static,
    {
        if !std::io::stderr().is_terminal() {
            return StatusLine {
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("status-line".into())
            .spawn(move || draw_until_stopped(render, &rx))
            .ok();
        StatusLine {
            stop: Some(tx),
            thread,
        }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once; it clears the line.
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn draw_until_stopped<F: FnMut() -> Option<String>>(mut render: F, stop: &mpsc::Receiver<()>) {
    let mut shown = 0usize;
    // The first line waits one tick: work that ends sooner shows nothing,
    // and what a started program prints first is not glued to the line.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(TICK) {
        if let Some(text) = render() {
            // One column short of the width, so the line never wraps (a
            // wrapped line cannot be rewritten with \r). A terminal that
            // does not say its size (0 columns) gets 80.
            let width = match crossterm::terminal::size() {
                Ok((w, _)) if w >= 20 => usize::from(w),
                _ => 80,
            };
            let text = fit(&text, width - 1);
            let len = text.chars().count();
            let pad = shown.saturating_sub(len);
            write_stderr(&format!("\r{text}{:pad$}", ""));
            shown = len;
        }
    }
    if shown > 0 {
        write_stderr(&format!("\r{:shown$}\r", ""));
    }
}

/// A broken or closed stderr only loses the status line.
fn write_stderr(s: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(s.as_bytes());
    let _ = err.flush();
}

/// `text` cut to `width` characters (with `…` when cut).
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Seconds with one decimal: `4.2 s`.
fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// What `check` is doing, as its status line shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckPhase {
    /// Waiting for a spawned target to listen.
    Ready {
        gives_up_in: Duration,
    },
    Baseline,
    /// The built-in load generator; `unit` is `requests` or `connections`.
    Load {
        done: u64,
        failed: u64,
        total: u64,
        unit: &'static str,
        running: Duration,
    },
    /// `--load-cmd`.
    LoadCommand {
        running: Duration,
        deadline_in: Duration,
    },
    /// Waiting for the counts to hold still for `quiet`.
    Settle {
        steady: Duration,
        quiet: Duration,
        gives_up_in: Duration,
    },
}

/// The status line of `check`, `elapsed` since it started.
pub fn check_line(elapsed: Duration, phase: &CheckPhase) -> String {
    let what = match phase {
        CheckPhase::Ready { gives_up_in } => {
            format!(
                "waiting for the target to listen, gives up in {}",
                secs(*gives_up_in)
            )
        }
        CheckPhase::Baseline => "baseline snapshot".to_string(),
        CheckPhase::Load {
            done,
            failed,
            total,
            unit,
            running,
        } => format!(
            "load {done}/{total} {unit}, {failed} failed, {}",
            secs(*running)
        ),
        CheckPhase::LoadCommand {
            running,
            deadline_in,
        } => format!(
            "load command running for {}, deadline in {}",
            secs(*running),
            secs(*deadline_in)
        ),
        CheckPhase::Settle {
            steady,
            quiet,
            gives_up_in,
        } => format!(
            "settling: counts steady for {} of {}, gives up in {}",
            secs(*steady.min(quiet)),
            secs(*quiet),
            secs(*gives_up_in)
        ),
    };
    format!("check {}: {what}", secs(elapsed))
}

/// The figures of `run`'s process tree at its latest sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeFigures {
    pub samples: u64,
    pub processes: u64,
    pub close_wait: u64,
    pub fds: u64,
}

/// The status line of `run`, `elapsed` since the command started.
pub fn run_line(elapsed: Duration, f: TreeFigures) -> String {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "run {}: {}, {}, {} CLOSE_WAIT, {} fds",
        secs(elapsed),
        plural(f.samples, "sample", "samples"),
        plural(f.processes, "process", "processes"),
        f.close_wait,
        f.fds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_lines_say_the_phase_and_its_figures() {
        let e = Duration::from_millis(4_210);
        assert_eq!(
            check_line(
                e,
                &CheckPhase::Load {
                    done: 420,
                    failed: 3,
                    total: 1000,
                    unit: "requests",
                    running: Duration::from_millis(800),
                }
            ),
            "check 4.2 s: load 420/1000 requests, 3 failed, 0.8 s"
        );
        assert_eq!(
            check_line(
                e,
                &CheckPhase::Settle {
                    steady: Duration::from_millis(1_500),
                    quiet: Duration::from_secs(1),
                    gives_up_in: Duration::from_millis(8_340),
                }
            ),
            "check 4.2 s: settling: counts steady for 1.0 s of 1.0 s, gives up in 8.3 s"
        );
        assert!(check_line(
            e,
            &CheckPhase::Ready {
                gives_up_in: Duration::from_secs(9)
            }
        )
        .ends_with("waiting for the target to listen, gives up in 9.0 s"));
        assert_eq!(
            check_line(Duration::ZERO, &CheckPhase::Baseline),
            "check 0.0 s: baseline snapshot"
        );
        assert!(check_line(
            e,
            &CheckPhase::LoadCommand {
                running: Duration::from_secs(2),
                deadline_in: Duration::from_secs(58),
            }
        )
        .ends_with("load command running for 2.0 s, deadline in 58.0 s"));
    }

    #[test]
    fn run_line_has_the_tree_figures() {
        let f = TreeFigures {
            samples: 15,
            processes: 3,
            close_wait: 8,
            fds: 42,
        };
        assert_eq!(
            run_line(Duration::from_millis(3_240), f),
            "run 3.2 s: 15 samples, 3 processes, 8 CLOSE_WAIT, 42 fds"
        );
        let one = TreeFigures {
            samples: 1,
            processes: 1,
            ..f
        };
        assert_eq!(
            run_line(Duration::ZERO, one),
            "run 0.0 s: 1 sample, 1 process, 8 CLOSE_WAIT, 42 fds"
        );
    }

    #[test]
    fn long_lines_are_cut_to_the_width() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdefg", 6), "abcde…");
        assert_eq!(fit("abcdefg", 6).chars().count(), 6);
    }
}
