//! Keys to actions, per mode. Pure, so the key map is tested without a
//! terminal and documented in one place (the help screen lists the same).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    ToggleHelp,
    /// Move the selection (table) or scroll (detail) by this many rows.
    Move(i32),
    Top,
    Bottom,
    Open,
    Back,
    CycleSort,
    ReverseSort,
    /// Tab: processes ↔ findings.
    SwitchPane,
    /// Show or hide the processes without TCP sockets or fd changes.
    ToggleIdle,
    TogglePause,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterDone,
    FilterCancel,
    None,
}

/// Where keys go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Table,
    Detail,
    Help,
    EditingFilter,
}

/// Rows a page key moves.
pub const PAGE: i32 = 10;

pub fn action(key: KeyEvent, mode: Mode) -> Action {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c')) {
        return Action::Quit;
    }
    match mode {
        Mode::EditingFilter => match key.code {
            KeyCode::Enter => Action::FilterDone,
            KeyCode::Esc => Action::FilterCancel,
            KeyCode::Backspace => Action::FilterBackspace,
            KeyCode::Char(c) if !ctrl => Action::FilterChar(c),
            _ => Action::None,
        },
        Mode::Help => match key.code {
            KeyCode::Char('q') => Action::Quit,
            _ => Action::ToggleHelp,
        },
        Mode::Table | Mode::Detail => match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => Action::ToggleHelp,
            KeyCode::Up | KeyCode::Char('k') => Action::Move(-1),
            KeyCode::Down | KeyCode::Char('j') => Action::Move(1),
            KeyCode::PageUp => Action::Move(-PAGE),
            KeyCode::PageDown => Action::Move(PAGE),
            KeyCode::Home | KeyCode::Char('g') => Action::Top,
            KeyCode::End | KeyCode::Char('G') => Action::Bottom,
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') if mode == Mode::Table => {
                Action::Open
            }
            KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') | KeyCode::Backspace => Action::Back,
            KeyCode::Char('s') => Action::CycleSort,
            KeyCode::Char('r') => Action::ReverseSort,
            KeyCode::Tab | KeyCode::BackTab => Action::SwitchPane,
            KeyCode::Char('a') => Action::ToggleIdle,
            KeyCode::Char('p') | KeyCode::Char(' ') => Action::TogglePause,
            KeyCode::Char('/') => Action::StartFilter,
            _ => Action::None,
        },
    }
}

/// The key list the help screen shows.
pub const HELP: &[(&str, &str)] = &[
    (
        "↑ ↓  j k",
        "select a process or finding (scroll in details)",
    ),
    ("PgUp PgDn", "move by a page"),
    ("g G  Home End", "first / last row"),
    ("Enter → l", "details: groups, oldest sockets, findings"),
    ("Esc ← h", "back to the table (clears the filter there)"),
    ("Tab", "processes / findings (host-level ones too)"),
    (
        "s",
        "cycle sort: severity, CLOSE_WAIT, fds, growth, pid, name",
    ),
    ("r", "reverse the sort order"),
    (
        "a",
        "show / hide processes without TCP sockets or fd changes",
    ),
    ("/", "filter by name, command line or pid; Enter keeps it"),
    ("p  space", "pause / resume the display (sampling goes on)"),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn keys_per_mode() {
        assert_eq!(action(key(KeyCode::Char('q')), Mode::Table), Action::Quit);
        assert_eq!(
            action(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                Mode::EditingFilter
            ),
            Action::Quit
        );
        // In the filter, q is a letter.
        assert_eq!(
            action(key(KeyCode::Char('q')), Mode::EditingFilter),
            Action::FilterChar('q')
        );
        assert_eq!(action(key(KeyCode::Enter), Mode::Table), Action::Open);
        assert_eq!(action(key(KeyCode::Enter), Mode::Detail), Action::None);
        assert_eq!(action(key(KeyCode::Esc), Mode::Detail), Action::Back);
        assert_eq!(
            action(key(KeyCode::Char('x')), Mode::Help),
            Action::ToggleHelp
        );
        assert_eq!(
            action(key(KeyCode::Char('j')), Mode::Detail),
            Action::Move(1)
        );
        assert_eq!(action(key(KeyCode::Tab), Mode::Table), Action::SwitchPane);
        assert_eq!(
            action(key(KeyCode::Char('r')), Mode::Table),
            Action::ReverseSort
        );
        assert_eq!(
            action(key(KeyCode::Char('a')), Mode::Table),
            Action::ToggleIdle
        );
        // In the filter they are letters.
        assert_eq!(
            action(key(KeyCode::Char('r')), Mode::EditingFilter),
            Action::FilterChar('r')
        );
    }
}
