//! What the live table shows, separate from how it is drawn.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent};

use super::{
    columns::{self, SortValue, VmColumn},
    history::{History, Point},
    vcpu_columns::VcpuSort,
};
use crate::model::{Snapshot, Vm};

pub struct App {
    pub interval: Duration,
    pub snapshot: Option<Snapshot>,
    /// Selected VM, by pid, so the selection follows the VM when the list reorders.
    pub selected_pid: Option<u32>,
    pub view: View,
    /// Where a replay stands, its timeline and its prompts; `None` in the live view.
    pub replay: Option<super::replay_status::Status>,
    /// The column the VM list is sorted by, and which way.
    pub sort: Sort,
    /// The VM list's filter: the one applied, and the one being typed.
    pub filter: Filter,
    /// How a VM's view shows its table: scrolled how far, and the vCPUs in which order.
    pub drill: Drill,
    /// Space in the live view: the figures stay as they are; the newest window waits in `held`.
    pub paused: bool,
    held: Option<Snapshot>,
    /// Windows recorded in the history while paused: the sparklines and charts leave them out,
    /// so they freeze with the figures.
    held_windows: usize,
    /// A pane over the view (help, sources), while open.
    pub overlay: Option<Overlay>,
    /// Rows of the sources pane scrolled past (a host has more sources than 80×24 has rows).
    pub pane_offset: usize,
    /// Where the VM list's rows were last drawn, for mouse clicks.
    pub drawn: Drawn,
    /// Colours on (off when `NO_COLOR` is set); emphasis stays either way.
    pub colour: bool,
    /// Each VM's recent windows, for the sparklines and charts; kept while paused too.
    pub history: History,
    /// Whether a VM's views draw its history charts above their table (`c` turns them off and
    /// on): on a small terminal they take rows a big VM's table needs.
    pub charts: bool,
}

/// Which screen is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Every VM, one row each.
    Vms,
    /// The selected VM's exits: per reason rate, share, latency, and what they were about.
    VmExits,
    /// The selected VM's vCPUs: exit rates and where their time went.
    Vcpus,
    /// The selected VM's block devices and TLB shootdowns.
    Io,
    /// Every recommendation in force, with its evidence and the change to make.
    Advice,
}

/// Panes drawn over the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlay {
    /// Every key.
    Help,
    /// Every kernel source with its state, hook and losses.
    Sources,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub column: VmColumn,
    /// The other way round from the column's natural order (biggest first for numbers, A–Z
    /// for text).
    pub reversed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Shown VMs contain this in their name, pid or uuid (case-insensitive).
    pub applied: Option<String>,
    /// What is being typed after `/`, while the input line is open.
    pub editing: Option<String>,
}

/// How a VM's view (exits, vCPUs, I/O) shows its table, and the advice view its list. A VM of
/// 64 vCPUs, or a host of 100 VMs' advice, has more rows than a terminal: ↑↓ and the page keys
/// scroll them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drill {
    /// Rows of the table scrolled past; back to 0 on every change of view.
    pub offset: usize,
    /// The vCPU table's order, kept from VM to VM.
    pub vcpu_sort: VcpuSort,
}

/// Where the last frame put the VM list's rows, and how much of a scrolled table (a VM's view,
/// the advice, the sources pane) it showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drawn {
    /// The screen rows of the list's body (the first data row and how many), and the index of
    /// the VM on the first.
    pub rows: Option<(u16, u16, usize)>,
    /// A VM's view or the advice: its table's rows, and how many of them the frame had room for.
    pub table: Option<TableFit>,
    /// The same for the sources pane, while open.
    pub pane: Option<TableFit>,
}

/// How much of a table a frame showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableFit {
    pub rows: usize,
    pub shown: usize,
}

impl TableFit {
    /// The furthest the table can be scrolled: its last row at the bottom.
    #[must_use]
    pub fn max_offset(self) -> usize {
        self.rows.saturating_sub(self.shown)
    }

    /// `offset` moved by `step` rows, no further than [`Self::max_offset`].
    #[must_use]
    pub fn scrolled(self, offset: usize, step: isize) -> usize {
        let max = self.max_offset();
        offset.min(max).saturating_add_signed(step).min(max)
    }
}

/// The longest filter the input line takes, in characters.
const MAX_FILTER: usize = 64;

impl Filter {
    /// Whether `vm` passes the applied filter.
    #[must_use]
    pub fn matches(&self, vm: &Vm) -> bool {
        let Some(wanted) = &self.applied else {
            return true;
        };
        let wanted = wanted.to_lowercase();
        vm.name.to_string().to_lowercase().contains(&wanted)
            || vm.pid.to_string().contains(&wanted)
            || vm
                .uuid
                .as_deref()
                .is_some_and(|u| u.to_lowercase().contains(&wanted))
    }
}

impl App {
    #[must_use]
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            snapshot: None,
            selected_pid: None,
            view: View::Vms,
            replay: None,
            sort: Sort {
                column: VmColumn::Exits,
                reversed: false,
            },
            filter: Filter::default(),
            drill: Drill::default(),
            paused: false,
            held: None,
            held_windows: 0,
            overlay: None,
            pane_offset: 0,
            drawn: Drawn::default(),
            colour: colour_allowed(std::env::var_os("NO_COLOR").as_deref()),
            history: History::default(),
            charts: true,
        }
    }

    /// The selected VM, if it is still there.
    #[must_use]
    pub fn selected_vm(&self) -> Option<&Vm> {
        let pid = self.selected_pid?;
        self.snapshot.as_ref()?.vms.iter().find(|vm| vm.pid == pid)
    }

    /// The VMs the list shows: those passing the filter, in the chosen order (ties by name,
    /// then pid, so rows do not jump around).
    #[must_use]
    pub fn visible_vms(&self) -> Vec<&Vm> {
        let Some(snapshot) = &self.snapshot else {
            return Vec::new();
        };
        let column = self.sort.column;
        let mut keyed: Vec<(SortValue, &Vm)> = snapshot
            .vms
            .iter()
            .filter(|vm| self.filter.matches(vm))
            .map(|vm| (column.sort_value(vm, snapshot), vm))
            .collect();
        keyed.sort_by(|(a, vm_a), (b, vm_b)| {
            let natural = if column.numeric() {
                columns::compare(b, a)
            } else {
                columns::compare(a, b)
            };
            let natural = if self.sort.reversed {
                natural.reverse()
            } else {
                natural
            };
            natural
                .then_with(|| vm_a.name.cmp(&vm_b.name))
                .then_with(|| vm_a.pid.cmp(&vm_b.pid))
        });
        keyed.into_iter().map(|(_, vm)| vm).collect()
    }

    /// `vm`'s history up to the window shown, oldest first (while paused, the windows that came
    /// since stay out of sight).
    #[must_use]
    pub fn shown_history(&self, vm: &Vm) -> impl DoubleEndedIterator<Item = &Point> {
        let ring = self.history.of(vm);
        let shown = ring.map_or(0, |r| r.len().saturating_sub(self.held_windows));
        ring.into_iter().flat_map(move |r| r.range(..shown))
    }

    /// Enter: from the list into the selected VM's exits.
    pub fn open(&mut self) {
        if self.view == View::Vms && self.selected_vm().is_some() {
            self.show_view(View::VmExits);
        }
    }

    /// Shows `view`, its table from the top.
    fn show_view(&mut self, view: View) {
        self.view = view;
        self.drill.offset = 0;
    }

    /// ↑↓ and the page keys in a VM's view or the advice: scrolls its table by `step` rows, no
    /// further than its last row at the bottom of the last frame's table.
    pub fn scroll(&mut self, step: isize) {
        let fit = self.drawn.table.unwrap_or_default();
        self.drill.offset = fit.scrolled(self.drill.offset, step);
    }

    /// Opens `overlay` (or another in its place), from its top.
    pub fn open_overlay(&mut self, overlay: Overlay) {
        self.overlay = Some(overlay);
        self.pane_offset = 0;
    }

    /// ↑↓ and the page keys over the sources pane: scrolls it by `step` rows (a page: what the
    /// last frame showed of it), no further than its last row at the bottom.
    pub fn scroll_pane(&mut self, step: isize, page: bool) {
        let fit = self.drawn.pane.unwrap_or_default();
        let step = if page {
            step.saturating_mul(isize::try_from(fit.shown.max(1)).unwrap_or(isize::MAX))
        } else {
            step
        };
        self.pane_offset = fit.scrolled(self.pane_offset, step);
    }

    /// Rows a page key scrolls a table: what the last frame showed of it.
    #[must_use]
    pub fn table_page(&self) -> usize {
        self.drawn.table.map_or(1, |t| t.shown.max(1))
    }

    /// `<`/`>` in the vCPU view: sorts its table by the previous/next column, from the top.
    pub fn sort_vcpus_by_next(&mut self, step: isize) {
        self.drill.vcpu_sort.step(step);
        self.drill.offset = 0;
    }

    /// `r` in the vCPU view: reverses its order, from the top.
    pub fn reverse_vcpu_sort(&mut self) {
        self.drill.vcpu_sort.reversed = !self.drill.vcpu_sort.reversed;
        self.drill.offset = 0;
    }

    /// Tab: cycle through a VM's views: exits, vCPUs, I/O.
    pub fn toggle_vm_view(&mut self) {
        let view = match self.view {
            View::VmExits => View::Vcpus,
            View::Vcpus => View::Io,
            View::Io => View::VmExits,
            View::Vms if self.selected_vm().is_some() => View::Vcpus,
            View::Vms => View::Vms,
            View::Advice => View::Advice,
        };
        self.show_view(view);
    }

    /// `c` in a VM's views: hides the history charts, or shows them again, in every VM's views
    /// until pressed again.
    pub fn toggle_charts(&mut self) {
        if matches!(self.view, View::VmExits | View::Vcpus | View::Io) {
            self.charts = !self.charts;
        }
    }

    /// i: the selected VM's I/O view.
    pub fn open_io(&mut self) {
        if self.selected_vm().is_some() {
            self.show_view(View::Io);
        }
    }

    /// a: the recommendations, or back from them.
    pub fn toggle_advice(&mut self) {
        self.show_view(if self.view == View::Advice {
            View::Vms
        } else {
            View::Advice
        });
    }

    /// Backspace/←: back to the list. Returns false when already there.
    pub fn back(&mut self) -> bool {
        let moved = self.view != View::Vms;
        self.view = View::Vms;
        moved
    }

    /// Esc: the innermost thing open closes: a pane, then a VM's view, then the filter. It
    /// never quits.
    pub fn escape(&mut self) {
        if self.overlay.take().is_some() || self.back() {
            return;
        }
        self.filter.applied = None;
        self.keep_selection_visible();
    }

    /// A new window. While paused the figures stay as they are and the window waits, so the
    /// newest is shown the moment the view goes on.
    pub fn update(&mut self, snapshot: Snapshot) {
        self.history.record(&snapshot);
        if self.paused {
            self.held = Some(snapshot);
            self.held_windows += 1;
            return;
        }
        self.show(snapshot);
    }

    fn show(&mut self, snapshot: Snapshot) {
        let gone = self
            .selected_pid
            .is_none_or(|pid| snapshot.vms.iter().all(|vm| vm.pid != pid));
        self.snapshot = Some(snapshot);
        if gone {
            // The VM being looked at has gone: back to the list rather than show another VM
            // under the same heading.
            self.view = View::Vms;
            self.selected_pid = None;
        }
        self.keep_selection_visible();
    }

    /// Space: freezes the figures, or shows the newest window held meanwhile.
    pub fn toggle_pause(&mut self) {
        self.paused = !self.paused;
        self.held_windows = 0;
        if !self.paused
            && let Some(snapshot) = self.held.take()
        {
            self.show(snapshot);
        }
    }

    /// `>`/`<`: sorts by the next or previous column.
    pub fn sort_by_next(&mut self, step: isize) {
        let sortable = columns::sortable();
        let at = sortable
            .iter()
            .position(|&c| c == self.sort.column)
            .unwrap_or(0);
        let count = sortable.len();
        let next = (at + count).saturating_add_signed(step) % count;
        self.sort = Sort {
            column: sortable[next],
            reversed: false,
        };
    }

    /// r: the other way round.
    pub fn reverse_sort(&mut self) {
        self.sort.reversed = !self.sort.reversed;
    }

    /// `/`: opens the filter's input line with the filter applied now.
    pub fn start_filter(&mut self) {
        self.filter.editing = Some(self.filter.applied.clone().unwrap_or_default());
    }

    /// A key while the filter's input line is open. Enter applies it (an empty one shows
    /// every VM), Esc clears it.
    pub fn filter_key(&mut self, key: KeyEvent) {
        let Some(typed) = &mut self.filter.editing else {
            return;
        };
        match key.code {
            KeyCode::Esc => {
                self.filter = Filter::default();
            }
            KeyCode::Enter => {
                let typed = self.filter.editing.take().unwrap_or_default();
                let typed = typed.trim();
                self.filter.applied = (!typed.is_empty()).then(|| typed.to_owned());
            }
            KeyCode::Backspace => {
                typed.pop();
            }
            KeyCode::Char(c) if !c.is_control() && typed.chars().count() < MAX_FILTER => {
                typed.push(c);
            }
            _ => {}
        }
        self.keep_selection_visible();
    }

    /// Keeps the selection on a VM the list shows: the first when it went out of sight.
    fn keep_selection_visible(&mut self) {
        let visible = self.visible_vms();
        if self
            .selected_pid
            .is_none_or(|pid| visible.iter().all(|vm| vm.pid != pid))
        {
            let first = visible.first().map(|vm| vm.pid);
            if self.view != View::Vms && self.view != View::Advice {
                // A drill-down stays on its VM even when a filter hides it from the list.
                if self.selected_vm().is_some() {
                    return;
                }
                self.view = View::Vms;
            }
            self.selected_pid = first;
        }
    }

    /// Row index of the selected VM in the list as shown.
    #[must_use]
    pub fn selected_row(&self) -> Option<usize> {
        let pid = self.selected_pid?;
        self.visible_vms().iter().position(|vm| vm.pid == pid)
    }

    pub fn select_next(&mut self) {
        self.move_selection(1);
    }

    pub fn select_previous(&mut self) {
        self.move_selection(-1);
    }

    /// Moves the selection by `step` rows, stopping at either end.
    pub fn move_selection(&mut self, step: isize) {
        let visible = self.visible_vms();
        if visible.is_empty() {
            return;
        }
        let row = self.selected_row().unwrap_or(0);
        let next = row.saturating_add_signed(step).min(visible.len() - 1);
        self.selected_pid = Some(visible[next].pid);
    }

    /// A mouse click on screen row `y`: selects the VM drawn there, if any.
    pub fn click(&mut self, y: u16) {
        let Some((first, count, offset)) = self.drawn.rows else {
            return;
        };
        if y < first || y >= first + count {
            return;
        }
        let index = offset + usize::from(y - first);
        if let Some(vm) = self.visible_vms().get(index) {
            self.selected_pid = Some(vm.pid);
        }
    }
}

/// Whether the environment allows colour: `NO_COLOR` set to anything but the empty string
/// turns it off (<https://no-color.org>).
#[must_use]
pub fn colour_allowed(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(std::ffi::OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn no_color_set_to_anything_but_empty_turns_colour_off() {
        use std::ffi::OsStr;
        assert!(colour_allowed(None));
        assert!(colour_allowed(Some(OsStr::new(""))));
        assert!(!colour_allowed(Some(OsStr::new("1"))));
        assert!(
            !colour_allowed(Some(OsStr::new("false"))),
            "any value, even this"
        );
    }

    #[test]
    fn busiest_first_and_selection_follows_the_vm() {
        let mut app = App::new(Duration::from_secs(1));
        app.update(fixture::snapshot());
        assert_eq!(app.selected_pid, Some(4242));
        app.select_next();
        assert_eq!(app.selected_pid, Some(5000));
        app.select_next();
        assert_eq!(app.selected_pid, Some(5000), "stays on the last row");
        // The selected VM keeps its selection when rows reorder.
        let mut snapshot = fixture::snapshot();
        snapshot.vms.reverse();
        app.update(snapshot);
        assert_eq!(app.selected_row(), Some(1));
        app.select_previous();
        assert_eq!(app.selected_pid, Some(4242));
    }

    #[test]
    fn selection_resets_when_the_vm_exits() {
        let mut app = App::new(Duration::from_secs(1));
        app.update(fixture::snapshot());
        app.select_next();
        let mut snapshot = fixture::snapshot();
        snapshot.vms.retain(|vm| vm.pid != 5000);
        app.open();
        assert_eq!(app.view, View::VmExits);
        app.update(snapshot);
        assert_eq!(app.selected_pid, Some(4242));
        assert_eq!(app.view, View::Vms, "the VM being looked at is gone");
    }

    #[test]
    fn drill_down_and_back() {
        let mut app = App::new(Duration::from_secs(1));
        assert!(!app.back());
        app.open();
        assert_eq!(
            app.view,
            View::Vms,
            "nothing to open before the first sample"
        );
        app.update(fixture::snapshot());
        app.open();
        assert_eq!(app.view, View::VmExits);
        app.toggle_vm_view();
        assert_eq!(app.view, View::Vcpus);
        app.toggle_vm_view();
        assert_eq!(app.view, View::Io);
        app.toggle_vm_view();
        assert_eq!(app.view, View::VmExits);
        assert!(app.back());
        assert_eq!(app.view, View::Vms);
        app.open_io();
        assert_eq!(app.view, View::Io);
    }
}
