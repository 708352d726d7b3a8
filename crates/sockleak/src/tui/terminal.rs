//! Leaving the terminal as it was found: a guard that restores it on drop, a
//! panic hook that restores it before the panic message is printed, and
//! SIGINT/SIGTERM handlers that ask the loops to stop (the guard then runs on
//! the normal path). Also used by non-interactive `watch`, to stop cleanly
//! and flush the recording on Ctrl-C or `kill`.

use crossterm::{cursor, execute, terminal};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the signal handlers (and the panic hook); polled by the loops.
static STOP: AtomicBool = AtomicBool::new(false);
/// Whether the terminal is in raw mode / the alternate screen now.
static ACTIVE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the stop flag instead of killing the process,
/// so a live view restores the terminal and a recording is flushed.
pub fn install_signal_handlers() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler is an `extern "C" fn(c_int)` that only does an
        // atomic store, and `sa_mask` is initialised by sigemptyset.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// True once SIGINT or SIGTERM arrived (or a thread panicked in the live
/// view).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Leaves raw mode and the alternate screen and shows the cursor. Safe to
/// call more than once and from the panic hook.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    }
}

/// The live view's hold on the terminal; restores it when dropped.
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    /// Raw mode, alternate screen, hidden cursor; installs the panic hook.
    pub fn enter() -> io::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Restore first, or the message lands on the alternate screen
            // and vanishes with it.
            restore();
            STOP.store(true, Ordering::SeqCst);
            previous(info);
        }));
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        if let Err(e) = execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e);
        }
        Ok(TerminalGuard { _private: () })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}
