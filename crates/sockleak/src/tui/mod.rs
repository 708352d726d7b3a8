//! The live view of `sockleak watch` (ratatui).
//!
//! One event enum feeds one loop: the collector thread sends whole
//! snapshots, an input thread sends keys, and the loop applies each to the
//! [`App`] and redraws. Collection never blocks drawing: the channel carries
//! finished snapshots only. Drawing is [`render::draw`] over the `App`, so the
//! same sessions run against ratatui's `TestBackend` in tests.

pub mod app;
pub mod input;
pub mod render;
pub mod terminal;
#[cfg(test)]
mod tests;

use anyhow::{Context, Result};
use app::App;
use crossterm::event::{self, KeyEvent, KeyEventKind};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use sockleak_model::enrich::Observation;
use sockleak_model::Snapshot;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// Everything the loop reacts to.
#[derive(Debug)]
pub enum Event {
    Snapshot(Box<Snapshot>),
    Key(KeyEvent),
    Resize,
    /// `--count` or `--duration` reached: no more snapshots.
    CollectorDone,
}

/// How often the loop wakes without events, to notice signals.
const TICK: Duration = Duration::from_millis(200);

/// Called with every observation (and its filtered snapshot) as it is made,
/// also while the display is paused: `--record` writes it out.
pub type Sink<'a> = &'a mut dyn FnMut(&Observation, &Snapshot) -> Result<()>;

/// Runs the live view until `q`, Ctrl-C or SIGINT/SIGTERM, starting with the
/// `first` snapshot. `tx` is a sender of the same channel, for the input
/// thread; `quit` tells the collector and the input thread to stop.
pub fn run(
    app: &mut App,
    first: Snapshot,
    rx: &Receiver<Event>,
    tx: SyncSender<Event>,
    quit: Arc<AtomicBool>,
    mut sink: Option<Sink<'_>>,
) -> Result<()> {
    handle(app, Event::Snapshot(Box::new(first)), &mut sink)?;
    let guard = terminal::TerminalGuard::enter().context("set up the terminal")?;
    let result = run_loop(app, rx, tx, &quit, &mut sink);
    quit.store(true, Ordering::SeqCst);
    drop(guard);
    result
}

/// Applies one event; hands a new observation to the sink.
fn handle(app: &mut App, ev: Event, sink: &mut Option<Sink<'_>>) -> Result<()> {
    let is_snapshot = matches!(ev, Event::Snapshot(_));
    app.handle(ev);
    if is_snapshot {
        if let (Some(sink), Some((obs, snap))) = (sink.as_mut(), app.latest()) {
            sink(obs, snap)?;
        }
        // The previous snapshot was just freed: hand its memory back, as the
        // --jsonl loop does, or the view grows to several snapshots' worth.
        sockleak_collect::scan::release_freed_memory();
    }
    Ok(())
}

fn run_loop(
    app: &mut App,
    rx: &Receiver<Event>,
    tx: SyncSender<Event>,
    quit: &Arc<AtomicBool>,
    sink: &mut Option<Sink<'_>>,
) -> Result<()> {
    let mut term =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).context("set up the terminal")?;
    let input_quit = Arc::clone(quit);
    std::thread::Builder::new()
        .name("sockleak-input".into())
        .spawn(move || input_loop(&tx, &input_quit))
        .context("start the input thread")?;
    term.draw(|f| render::draw(f, app)).context("draw")?;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(ev) => {
                handle(app, ev, sink)?;
                // Apply whatever else is queued before drawing once.
                while let Ok(ev) = rx.try_recv() {
                    handle(app, ev, sink)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if app.quit || terminal::stop_requested() {
            break;
        }
        term.draw(|f| render::draw(f, app)).context("draw")?;
    }
    Ok(())
}

/// Forwards key presses and resizes until `quit`; polls so it notices.
fn input_loop(tx: &SyncSender<Event>, quit: &AtomicBool) {
    while !quit.load(Ordering::SeqCst) {
        match event::poll(Duration::from_millis(100)) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => break,
        }
        let ev = match event::read() {
            Ok(event::Event::Key(k)) if k.kind != KeyEventKind::Release => Event::Key(k),
            Ok(event::Event::Resize(_, _)) => Event::Resize,
            Ok(_) => continue,
            Err(_) => break,
        };
        if tx.send(ev).is_err() {
            break;
        }
    }
}
