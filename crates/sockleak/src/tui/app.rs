//! The live view's state: the watch session (its [`Watcher`]), the latest
//! snapshot and observation, and what the user selected, sorted and
//! filtered. Everything the screen shows is derived from here; nothing here
//! touches the terminal, so whole sessions are replayed in tests.

use super::input::{self, Action, Mode};
use super::Event;
use sockleak_model::age;
use sockleak_model::blame::ProcessIndex;
use sockleak_model::enrich::{Observation, ProcessView, Watcher};
use sockleak_model::findings::{Finding, FindingKey, Severity};
use sockleak_model::group::ListenerIndex;
use sockleak_model::history::{series_key, ProcKey, SeriesKey};
use sockleak_model::trend::{self, Verdict};
use sockleak_model::{Filter, Snapshot, Socket, TcpState};
use std::collections::{HashMap, HashSet};

/// CLOSE_WAIT and fd counts of one process over the window, for sparklines.
pub type Sparks = (Vec<u64>, Vec<u64>);

/// Which screen is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Table,
    Detail,
}

/// What the table lists; Tab switches. Findings without a process (TIME_WAIT
/// port pressure, orphans, accept queues of unowned listeners) live only in
/// the findings pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Processes,
    Findings,
}

/// Table order; `s` cycles through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Most severe finding first, then the fastest growing.
    Severity,
    CloseWait,
    Fds,
    Growth,
    Pid,
    Name,
}

impl SortKey {
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Severity => "severity, growth",
            SortKey::CloseWait => "CLOSE_WAIT",
            SortKey::Fds => "fds",
            SortKey::Growth => "growth",
            SortKey::Pid => "pid",
            SortKey::Name => "name",
        }
    }

    fn next(self) -> SortKey {
        match self {
            SortKey::Severity => SortKey::CloseWait,
            SortKey::CloseWait => SortKey::Fds,
            SortKey::Fds => SortKey::Growth,
            SortKey::Growth => SortKey::Pid,
            SortKey::Pid => SortKey::Name,
            SortKey::Name => SortKey::Severity,
        }
    }
}

/// One socket group of the selected process, for the detail view.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    pub key: SeriesKey,
    pub count: u32,
    pub rate_per_min: Option<f64>,
    /// For CLOSE_WAIT groups with enough samples.
    pub verdict: Option<Verdict>,
}

/// One of the oldest sockets of the selected process.
#[derive(Clone, Debug, PartialEq)]
pub struct OldSocket {
    pub state: TcpState,
    pub local: String,
    pub remote: String,
    pub age: Option<age::Age>,
    pub cookie: u64,
}

/// The live view's state.
pub struct App {
    watcher: Watcher,
    filter: Filter,
    pub interval_ms: u64,
    pub snapshot: Option<Snapshot>,
    pub obs: Option<Observation>,
    /// Sorted and text-filtered indices into `obs.processes`.
    pub rows: Vec<usize>,
    pub selected: Option<ProcKey>,
    /// The selection stays on the first row (the worst process) until the
    /// user moves it; `g`/Home goes back to following.
    pub follow_top: bool,
    pub sort: SortKey,
    /// `r`: the sort order turned around.
    pub reverse: bool,
    pub pane: Pane,
    /// The finding selected in the findings pane.
    pub selected_finding: Option<FindingKey>,
    /// `a`: also list the processes the model leaves out (no TCP sockets,
    /// fds unchanged during the session, no finding, under half their limit).
    pub show_idle: bool,
    /// How many processes of the shown snapshot are left out that way.
    pub idle_count: usize,
    /// Views of those processes, built only while `show_idle` is on; `rows`
    /// index past `obs.processes` into here.
    idle: Vec<ProcessView>,
    /// uid → user name for the USER column (uid itself when unknown).
    users: HashMap<u32, String>,
    pub filter_text: String,
    pub editing: bool,
    pub view: View,
    pub help: bool,
    pub paused: bool,
    pub detail_scroll: u16,
    pub quit: bool,
    /// The collector stopped (--count/--duration reached).
    pub collector_done: bool,
    /// Observed while paused, shown on resume.
    pending: Option<(Snapshot, Observation)>,
    /// A process never listed (sockleak itself).
    hide_pid: Option<u32>,
    /// The sparkline series as they were when the display was paused.
    frozen: Option<HashMap<ProcKey, Sparks>>,
    kept_before: HashSet<u32>,
}

impl App {
    /// `filter` is the scan filter: the watcher sees the whole collection,
    /// the screen only what the filter asks for.
    pub fn new(watcher: Watcher, filter: Filter, interval_ms: u64) -> App {
        App {
            watcher,
            filter,
            interval_ms,
            snapshot: None,
            obs: None,
            rows: Vec::new(),
            selected: None,
            follow_top: true,
            sort: SortKey::Severity,
            reverse: false,
            pane: Pane::Processes,
            selected_finding: None,
            show_idle: false,
            idle_count: 0,
            idle: Vec::new(),
            users: HashMap::new(),
            filter_text: String::new(),
            editing: false,
            view: View::Table,
            help: false,
            paused: false,
            detail_scroll: 0,
            quit: false,
            collector_done: false,
            pending: None,
            hide_pid: None,
            frozen: None,
            kept_before: HashSet::new(),
        }
    }

    /// Never lists `pid` (watch passes its own: its fd count moves while it
    /// walks /proc).
    pub fn hiding(mut self, pid: u32) -> App {
        self.hide_pid = Some(pid);
        self
    }

    /// User names for the USER column, as `ps` shows them.
    pub fn with_users(mut self, users: HashMap<u32, String>) -> App {
        self.users = users;
        self
    }

    /// The USER column of `uid`: its name, or the number as `ps` does.
    pub fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    pub fn mode(&self) -> Mode {
        if self.editing {
            Mode::EditingFilter
        } else if self.help {
            Mode::Help
        } else if self.view == View::Detail {
            Mode::Detail
        } else {
            Mode::Table
        }
    }

    pub fn handle(&mut self, ev: Event) {
        match ev {
            Event::Snapshot(s) => self.on_snapshot(*s),
            Event::Key(k) => {
                let a = input::action(k, self.mode());
                self.apply(a);
            }
            Event::Resize => {}
            Event::CollectorDone => self.collector_done = true,
        }
    }

    /// Feeds a snapshot to the session; shows it unless paused.
    pub fn on_snapshot(&mut self, mut snap: Snapshot) {
        let mut obs = self.watcher.observe(&snap, snap.taken_at_ms);
        if let Some(pid) = self.hide_pid {
            obs.hide_process(pid);
        }
        if self.filter.is_restricted() {
            self.filter.apply(&mut snap);
            let kept: HashSet<u32> = snap.processes.iter().map(|p| p.pid).collect();
            obs.narrow(&self.filter, &kept, &self.kept_before);
            self.kept_before = kept;
        }
        if self.paused {
            self.pending = Some((snap, obs));
        } else {
            self.show(snap, obs);
        }
    }

    /// Makes `snap` and `obs` the shown ones.
    fn show(&mut self, snap: Snapshot, obs: Observation) {
        self.snapshot = Some(snap);
        self.obs = Some(obs);
        self.refresh_idle();
        self.refresh_rows();
    }

    /// Counts the processes the model left out of the shown observation and,
    /// while they are asked for, builds their rows: no TCP sockets (else the
    /// model would list them), so only their fds are known.
    fn refresh_idle(&mut self) {
        self.idle.clear();
        self.idle_count = 0;
        let (Some(snap), Some(obs)) = (&self.snapshot, &self.obs) else {
            return;
        };
        let listed: HashSet<ProcKey> = obs.processes.iter().map(|p| p.key).collect();
        for p in &snap.processes {
            let key = ProcKey {
                pid: p.pid,
                start_time: p.start_time,
            };
            if Some(p.pid) == self.hide_pid || listed.contains(&key) {
                continue;
            }
            self.idle_count += 1;
            if self.show_idle {
                self.idle.push(ProcessView {
                    key,
                    comm: p.comm.clone(),
                    cmdline: p.cmdline.clone(),
                    uid: p.uid,
                    netns: p.netns,
                    fd_count: p.fd_count,
                    fd_limit: p.fd_limit,
                    fds: p.fds,
                    states: Default::default(),
                    delta: None,
                    close_wait_rate_per_min: None,
                    fd_rate_per_min: None,
                    eta_s: None,
                    severity: None,
                    leaking: false,
                });
            }
        }
    }

    pub fn apply(&mut self, a: Action) {
        match a {
            Action::Quit => self.quit = true,
            Action::ToggleHelp => self.help = !self.help,
            Action::Move(n) => match self.view {
                View::Table if self.pane == Pane::Findings => self.move_finding(n),
                View::Table => {
                    self.follow_top = false;
                    self.move_selection(n);
                }
                View::Detail => {
                    let s = i64::from(self.detail_scroll) + i64::from(n);
                    self.detail_scroll = s.clamp(0, i64::from(u16::MAX)) as u16;
                }
            },
            Action::Top => match self.view {
                View::Table if self.pane == Pane::Findings => self.select_finding(0),
                View::Table => {
                    self.follow_top = true;
                    self.select_index(0);
                }
                View::Detail => self.detail_scroll = 0,
            },
            Action::Bottom if self.pane == Pane::Findings => {
                if self.view == View::Table {
                    self.select_finding(usize::MAX);
                }
            }
            Action::Bottom => {
                if self.view == View::Table {
                    self.follow_top = false;
                    self.select_index(self.rows.len().saturating_sub(1));
                }
            }
            Action::Open if self.pane == Pane::Findings => {
                if self.selected_finding_view().is_some() {
                    self.view = View::Detail;
                    self.detail_scroll = 0;
                }
            }
            Action::Open => {
                if self.selected.is_some() {
                    self.view = View::Detail;
                    self.detail_scroll = 0;
                }
            }
            Action::Back => {
                if self.view == View::Detail {
                    self.view = View::Table;
                } else if !self.filter_text.is_empty() {
                    self.filter_text.clear();
                    self.refresh_rows();
                }
            }
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.refresh_rows();
            }
            Action::ReverseSort => {
                self.reverse = !self.reverse;
                self.refresh_rows();
            }
            Action::SwitchPane => {
                self.pane = match self.pane {
                    Pane::Processes => Pane::Findings,
                    Pane::Findings => Pane::Processes,
                };
                self.view = View::Table;
                self.refresh_rows();
            }
            Action::ToggleIdle => {
                self.show_idle = !self.show_idle;
                self.refresh_idle();
                self.refresh_rows();
            }
            Action::TogglePause => {
                self.paused = !self.paused;
                self.frozen = self.paused.then(|| {
                    self.rows()
                        .iter()
                        .map(|p| (p.key, self.series_of(p.key)))
                        .collect()
                });
                if let Some((s, o)) = self.pending.take().filter(|_| !self.paused) {
                    self.show(s, o);
                }
            }
            Action::StartFilter => self.editing = true,
            Action::FilterChar(c) => {
                self.filter_text.push(c);
                self.refresh_rows();
            }
            Action::FilterBackspace => {
                self.filter_text.pop();
                self.refresh_rows();
            }
            Action::FilterDone => self.editing = false,
            Action::FilterCancel => {
                self.editing = false;
                self.filter_text.clear();
                self.refresh_rows();
            }
            Action::None => {}
        }
    }

    /// The processes in table order.
    pub fn rows(&self) -> Vec<&ProcessView> {
        self.rows
            .iter()
            .filter_map(|i| self.process_at(*i))
            .collect()
    }

    /// Listed processes, then (while shown) the idle ones.
    fn process_at(&self, i: usize) -> Option<&ProcessView> {
        let listed = self.obs.as_ref().map_or(&[][..], |o| &o.processes[..]);
        match i.checked_sub(listed.len()) {
            None => listed.get(i),
            Some(j) => self.idle.get(j),
        }
    }

    /// The findings pane: every current finding (those without a process
    /// too), most severe first, narrowed by the text filter.
    pub fn findings(&self) -> Vec<&Finding> {
        let Some(obs) = &self.obs else {
            return Vec::new();
        };
        let needle = self.filter_text.to_lowercase();
        obs.findings
            .iter()
            .filter(|f| {
                needle.is_empty()
                    || f.kind.as_str().contains(&needle)
                    || f.comm
                        .as_deref()
                        .is_some_and(|c| c.to_lowercase().contains(&needle))
                    || f.pid.is_some_and(|p| p.to_string() == needle)
                    || f.summary.to_lowercase().contains(&needle)
            })
            .collect()
    }

    /// Findings that belong to no process (host, namespace, orphans).
    pub fn host_findings(&self) -> usize {
        self.obs
            .as_ref()
            .map_or(0, |o| o.findings.iter().filter(|f| f.pid.is_none()).count())
    }

    pub fn selected_finding_index(&self) -> Option<usize> {
        let sel = self.selected_finding.as_ref()?;
        self.findings().iter().position(|f| &f.key() == sel)
    }

    pub fn selected_finding_view(&self) -> Option<&Finding> {
        let sel = self.selected_finding.as_ref()?;
        self.obs.as_ref()?.findings.iter().find(|f| &f.key() == sel)
    }

    /// Selects the `i`th finding of the pane (clamped).
    fn select_finding(&mut self, i: usize) {
        let list = self.findings();
        let key = list
            .get(i.min(list.len().saturating_sub(1)))
            .map(|f| f.key());
        if key.is_some() {
            self.selected_finding = key;
        }
    }

    fn move_finding(&mut self, n: i32) {
        let len = self.findings().len();
        if len == 0 {
            return;
        }
        let cur = self.selected_finding_index().unwrap_or(0) as i64;
        let next = (cur + i64::from(n)).clamp(0, len as i64 - 1) as usize;
        self.select_finding(next);
    }

    /// The newest observation and its filtered snapshot, shown or (while
    /// paused) pending.
    pub fn latest(&self) -> Option<(&Observation, &Snapshot)> {
        match &self.pending {
            Some((s, o)) => Some((o, s)),
            None => Some((self.obs.as_ref()?, self.snapshot.as_ref()?)),
        }
    }

    pub fn selected_index(&self) -> Option<usize> {
        let sel = self.selected?;
        self.rows().iter().position(|p| p.key == sel)
    }

    pub fn selected_view(&self) -> Option<&ProcessView> {
        let sel = self.selected?;
        self.obs
            .as_ref()?
            .processes
            .iter()
            .chain(self.idle.iter())
            .find(|p| p.key == sel)
    }

    fn select_index(&mut self, i: usize) {
        let key = self.rows().get(i).map(|p| p.key);
        if key.is_some() {
            self.selected = key;
        }
    }

    fn move_selection(&mut self, n: i32) {
        let len = self.rows.len();
        if len == 0 {
            return;
        }
        let cur = self.selected_index().unwrap_or(0) as i64;
        let next = (cur + i64::from(n)).clamp(0, len as i64 - 1) as usize;
        self.select_index(next);
    }

    /// Re-sorts and re-filters the table; keeps the selection on the same
    /// process, or the first row when it is gone.
    fn refresh_rows(&mut self) {
        let Some(obs) = &self.obs else {
            self.rows.clear();
            return;
        };
        let needle = self.filter_text.to_lowercase();
        let all: Vec<&ProcessView> = obs.processes.iter().chain(self.idle.iter()).collect();
        let mut rows: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                needle.is_empty()
                    || p.comm.to_lowercase().contains(&needle)
                    || p.cmdline.to_lowercase().contains(&needle)
                    || p.key.pid.to_string() == needle
            })
            .map(|(i, _)| i)
            .collect();
        let sort = self.sort;
        rows.sort_by(|a, b| compare(all[*a], all[*b], sort));
        if self.reverse {
            rows.reverse();
        }
        self.rows = rows;
        let still_there = self
            .selected
            .is_some_and(|k| self.rows().iter().any(|p| p.key == k));
        // In the detail view the selection never jumps under the reader.
        let follow = self.follow_top && self.view == View::Table;
        if !still_there || follow {
            self.selected = self.rows().first().map(|p| p.key);
            if self.selected.is_none() && self.pane == Pane::Processes {
                self.view = View::Table;
            }
        }
        // The findings pane keeps its selection while the finding lasts; its
        // detail view keeps it even then (and says it is gone).
        let reading = self.pane == Pane::Findings && self.view == View::Detail;
        if !reading && self.selected_finding_index().is_none() {
            self.selected_finding = self.findings().first().map(|f| f.key());
            if self.selected_finding.is_none() && self.pane == Pane::Findings {
                self.view = View::Table;
            }
        }
    }

    /// Findings about the selected process, most severe first.
    pub fn selected_findings(&self) -> Vec<&Finding> {
        let (Some(sel), Some(obs)) = (self.selected, &self.obs) else {
            return Vec::new();
        };
        obs.findings
            .iter()
            .filter(|f| f.pid == Some(sel.pid) && f.start_time.is_none_or(|s| s == sel.start_time))
            .collect()
    }

    /// Socket groups charged to the selected process, largest first.
    pub fn selected_groups(&self) -> Vec<GroupRow> {
        let (Some(sel), Some(snap)) = (self.selected, &self.snapshot) else {
            return Vec::new();
        };
        let procs = ProcessIndex::new(&snap.processes);
        let listeners = ListenerIndex::from_snapshot(snap);
        let mut counts: HashMap<SeriesKey, u32> = HashMap::new();
        let mut seen = HashSet::new();
        for s in &snap.sockets {
            if s.cookie.0 != 0 && !seen.insert(s.cookie) {
                continue;
            }
            let k = series_key(s, &procs, &listeners);
            if k.pid == Some(sel.pid) {
                *counts.entry(k).or_default() += 1;
            }
        }
        let hist = self.watcher.history();
        let cfg = &self.watcher.config().trend;
        let mut rows: Vec<GroupRow> = counts
            .into_iter()
            .map(|(key, count)| {
                let g = hist.group(&key);
                let t = g
                    .and_then(|g| trend::trend(&g.series()))
                    .filter(|t| t.samples >= cfg.min_samples);
                let verdict = (key.group.state == TcpState::CloseWait)
                    .then(|| trend::decide(t.as_ref(), g.map(|g| g.turnover()), cfg));
                GroupRow {
                    key,
                    count,
                    rate_per_min: t.map(|t| t.rate_per_min),
                    verdict,
                }
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
        rows
    }

    /// The selected process's oldest sockets (not listeners), oldest first.
    pub fn selected_oldest(&self, n: usize) -> Vec<OldSocket> {
        let (Some(sel), Some(snap)) = (self.selected, &self.snapshot) else {
            return Vec::new();
        };
        let now = snap.taken_at_ms;
        let hist = self.watcher.history();
        let mut v: Vec<(&Socket, Option<age::Age>)> = snap
            .sockets
            .iter()
            .filter(|s| s.state != TcpState::Listen && s.owners.iter().any(|o| o.pid == sel.pid))
            .map(|s| {
                let fin = snap.namespace(s.netns).and_then(|n| n.tcp_fin_timeout_s);
                (s, age::estimate(s, snap.taken_at_ms, now, fin, hist))
            })
            .collect();
        v.sort_by(|(a, aa), (b, ab)| {
            let ka = aa.map_or(0, |x| x.ms);
            let kb = ab.map_or(0, |x| x.ms);
            kb.cmp(&ka).then(a.cookie.cmp(&b.cookie))
        });
        v.into_iter()
            .take(n)
            .map(|(s, a)| OldSocket {
                state: s.state,
                local: s.local.to_string(),
                remote: s.remote.to_string(),
                age: a,
                cookie: s.cookie.0,
            })
            .collect()
    }

    /// CLOSE_WAIT and fd counts of the selected process over the window (as
    /// of the pause, while paused).
    pub fn selected_series(&self) -> Sparks {
        let Some(sel) = self.selected else {
            return (Vec::new(), Vec::new());
        };
        match &self.frozen {
            Some(f) => f.get(&sel).cloned().unwrap_or_default(),
            None => self.series_of(sel),
        }
    }

    fn series_of(&self, sel: ProcKey) -> Sparks {
        let Some(h) = self.watcher.history().process(sel) else {
            return (Vec::new(), Vec::new());
        };
        let pts = h.points();
        (
            pts.iter()
                .map(|p| u64::from(p.states.get(TcpState::CloseWait)))
                .collect(),
            pts.iter()
                .map(|p| u64::from(p.fd_count.unwrap_or(0)))
                .collect(),
        )
    }
}

/// Table order for `key`; ties by CLOSE_WAIT, fds, then pid, so the order is
/// stable between frames.
pub fn compare(a: &ProcessView, b: &ProcessView, key: SortKey) -> std::cmp::Ordering {
    let sev = |p: &ProcessView| p.severity.map_or(0, |s| 1 + s as u8);
    let cw = |p: &ProcessView| p.states.get(TcpState::CloseWait);
    let fds = |p: &ProcessView| p.fd_count.unwrap_or(0);
    let tie = || {
        cw(b)
            .cmp(&cw(a))
            .then(fds(b).cmp(&fds(a)))
            .then(a.key.cmp(&b.key))
    };
    match key {
        SortKey::Severity => sev(b)
            .cmp(&sev(a))
            .then(b.growth().total_cmp(&a.growth()))
            .then_with(tie),
        SortKey::CloseWait => tie(),
        SortKey::Fds => fds(b).cmp(&fds(a)).then_with(tie),
        SortKey::Growth => b.growth().total_cmp(&a.growth()).then_with(tie),
        SortKey::Pid => a.key.cmp(&b.key),
        SortKey::Name => a.comm.cmp(&b.comm).then(a.key.cmp(&b.key)),
    }
}

/// Short severity label for the table.
pub fn severity_label(s: Option<Severity>) -> &'static str {
    match s {
        Some(Severity::Critical) => "CRIT",
        Some(Severity::Warning) => "WARN",
        Some(Severity::Info) => "info",
        None => "",
    }
}
