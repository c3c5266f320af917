//! The view's own keys and mouse, after the feed has had its turn (see [`super::Feed::key`]),
//! and the list of every key the help pane shows. Keep [`HELP`] in step with the matches here,
//! in [`super::replay`] and in [`super::flight_keys`].

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use super::state::{App, Overlay, View};

/// What the event loop does after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// Every key, grouped as the help pane shows them: (group, [(keys, what they do)]).
pub const HELP: &[(&str, &[(&str, &str)])] = &[
    (
        "Everywhere",
        &[
            ("q  Ctrl-C", "quit"),
            ("?", "this help"),
            ("s", "kernel sources, losses (↑↓)"),
            ("Esc", "close, back, clear filter"),
            ("a", "tuning advice in force"),
            ("Space", "pause live figures"),
        ],
    ),
    (
        "VM list",
        &[
            ("↑ ↓  j k", "select a VM (mouse: click)"),
            ("PgUp PgDn", "a page up / down"),
            ("Enter  →", "the VM's exits"),
            ("Tab  v", "its vCPUs, I/O, exits"),
            ("i", "its I/O"),
            ("< >", "sort: previous/next column"),
            ("r", "reverse the sort"),
            ("/", "filter: name, pid, uuid"),
        ],
    ),
    (
        "A VM's views, the advice",
        &[
            ("Tab  v", "exits → vCPUs → I/O"),
            ("↑ ↓  j k", "scroll (PgUp PgDn: a page)"),
            ("c", "charts off / on"),
            ("< >  r", "vCPUs: sort, reverse"),
            ("Esc ← Bksp", "back to the list"),
        ],
    ),
    (
        "Flight recorder (live)",
        &[("D", "dump the recent minutes"), ("m", "mark this moment")],
    ),
    (
        "Replay",
        &[
            ("Space", "play / pause"),
            ("← →  h l", "a window back / forward"),
            ("+ -", "faster / slower"),
            ("g", "go to a time"),
            ("n N", "next / previous event"),
            ("e", "events and marks"),
            ("Home End", "first / last window"),
        ],
    ),
];

/// How many of [`HELP`]'s groups go in the help pane's left column.
pub const HELP_LEFT_GROUPS: usize = 2;

/// Rows a page key moves.
const PAGE: isize = 10;

impl App {
    /// Whether the view takes every key before the feed: while its input line or a pane is
    /// open, a letter typed must not start a replay's prompt or a flight mark.
    #[must_use]
    pub fn captures_keys(&self) -> bool {
        self.filter.editing.is_some() || self.overlay.is_some()
    }

    /// A key for the view; Ctrl-C and `q` quit from anywhere but the filter's input line.
    pub fn key(&mut self, key: KeyEvent) -> Flow {
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if ctrl_c {
            return Flow::Quit;
        }
        if self.filter.editing.is_some() {
            self.filter_key(key);
            return Flow::Continue;
        }
        if let Some(overlay) = self.overlay {
            match key.code {
                KeyCode::Char('q') => return Flow::Quit,
                KeyCode::Esc => self.overlay = None,
                KeyCode::Char('?') if overlay == Overlay::Help => self.overlay = None,
                KeyCode::Char('s') if overlay == Overlay::Sources => self.overlay = None,
                KeyCode::Char('?') => self.open_overlay(Overlay::Help),
                KeyCode::Char('s') => self.open_overlay(Overlay::Sources),
                KeyCode::Down | KeyCode::Char('j') => self.scroll_pane(1, false),
                KeyCode::Up | KeyCode::Char('k') => self.scroll_pane(-1, false),
                KeyCode::PageDown => self.scroll_pane(1, true),
                KeyCode::PageUp => self.scroll_pane(-1, true),
                _ => {}
            }
            return Flow::Continue;
        }
        match key.code {
            KeyCode::Char('q') => return Flow::Quit,
            KeyCode::Esc => self.escape(),
            KeyCode::Backspace | KeyCode::Left => {
                self.back();
            }
            KeyCode::Enter | KeyCode::Right => self.open(),
            KeyCode::Tab | KeyCode::Char('v') => self.toggle_vm_view(),
            KeyCode::Char('a') => self.toggle_advice(),
            KeyCode::Char('i') => self.open_io(),
            KeyCode::Down | KeyCode::Char('j') => self.step(1),
            KeyCode::Up | KeyCode::Char('k') => self.step(-1),
            KeyCode::PageDown => self.page(1),
            KeyCode::PageUp => self.page(-1),
            KeyCode::Char('>' | '.') if self.view == View::Vcpus => self.sort_vcpus_by_next(1),
            KeyCode::Char('<' | ',') if self.view == View::Vcpus => self.sort_vcpus_by_next(-1),
            KeyCode::Char('r') if self.view == View::Vcpus => self.reverse_vcpu_sort(),
            KeyCode::Char('>' | '.') => self.sort_by_next(1),
            KeyCode::Char('<' | ',') => self.sort_by_next(-1),
            KeyCode::Char('r') => self.reverse_sort(),
            KeyCode::Char('c') => self.toggle_charts(),
            KeyCode::Char('/') => self.start_filter(),
            KeyCode::Char(' ') => self.toggle_pause(),
            KeyCode::Char('?') => self.open_overlay(Overlay::Help),
            KeyCode::Char('s') => self.open_overlay(Overlay::Sources),
            _ => {}
        }
        Flow::Continue
    }

    /// A click selects the VM row under it; the wheel moves the selection, or scrolls a VM's
    /// view, the advice or the sources pane.
    pub fn mouse(&mut self, mouse: MouseEvent) {
        if self.overlay == Some(Overlay::Sources) {
            match mouse.kind {
                MouseEventKind::ScrollDown => self.scroll_pane(1, false),
                MouseEventKind::ScrollUp => self.scroll_pane(-1, false),
                _ => {}
            }
            return;
        }
        if self.captures_keys() {
            return;
        }
        match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) => self.click(mouse.row),
            MouseEventKind::ScrollDown => self.step(1),
            MouseEventKind::ScrollUp => self.step(-1),
            _ => {}
        }
    }

    /// ↑↓ (and the wheel): the next or previous VM in the list; a VM's view or the advice
    /// scrolls.
    fn step(&mut self, step: isize) {
        if self.scrolls() {
            self.scroll(step);
        } else {
            self.move_selection(step);
        }
    }

    /// The page keys: ten VMs in the list; a VM's view or the advice scrolls by what it shows.
    fn page(&mut self, direction: isize) {
        if self.scrolls() {
            let page = isize::try_from(self.table_page()).unwrap_or(isize::MAX);
            self.scroll(direction.saturating_mul(page));
        } else {
            self.move_selection(direction * PAGE);
        }
    }

    fn scrolls(&self) -> bool {
        self.view != View::Vms
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{testing::fixture, tui::columns::VmColumn, tui::state::View};

    fn press(app: &mut App, code: KeyCode) -> Flow {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, KeyCode::Char(c));
        }
    }

    fn app() -> App {
        let mut app = App::new(Duration::from_secs(1));
        app.update(fixture::snapshot());
        app
    }

    fn order(app: &App) -> Vec<u32> {
        app.visible_vms().iter().map(|vm| vm.pid).collect()
    }

    #[test]
    fn esc_never_quits() {
        let mut app = app();
        for _ in 0..3 {
            assert_eq!(press(&mut app, KeyCode::Esc), Flow::Continue);
        }
        press(&mut app, KeyCode::Char('?'));
        assert_eq!(app.overlay, Some(Overlay::Help));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.overlay, None, "Esc closes the pane");
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.view, View::VmExits);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.view, View::Vms, "Esc goes back");
        assert_eq!(press(&mut app, KeyCode::Char('q')), Flow::Quit);
        assert_eq!(
            app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Flow::Quit
        );
    }

    #[test]
    fn sort_keys_change_the_order_and_mark_the_column() {
        let mut app = app();
        assert_eq!(app.sort.column, VmColumn::Exits);
        assert_eq!(order(&app), [4242, 5000], "busiest first");
        press(&mut app, KeyCode::Char('r'));
        assert_eq!(order(&app), [5000, 4242], "reversed");
        // Back to the name column: A to Z.
        press(&mut app, KeyCode::Char('r'));
        for _ in 0..3 {
            press(&mut app, KeyCode::Char('<'));
        }
        assert_eq!(app.sort.column, VmColumn::Name);
        assert_eq!(order(&app), [5000, 4242], "idle-db before web-1");
        press(&mut app, KeyCode::Char('<'));
        assert_eq!(app.sort.column, VmColumn::Uuid, "wraps around");
        press(&mut app, KeyCode::Char('>'));
        press(&mut app, KeyCode::Char('>'));
        assert_eq!(app.sort.column, VmColumn::Pid);
        assert_eq!(order(&app), [5000, 4242], "biggest pid first");
        // The selection follows its VM, not its row.
        let selected = app.selected_pid;
        press(&mut app, KeyCode::Char('r'));
        assert_eq!(app.selected_pid, selected);
    }

    #[test]
    fn the_filter_keeps_matching_vms_and_esc_clears_it() {
        let mut app = app();
        press(&mut app, KeyCode::Char('/'));
        assert!(app.captures_keys());
        typed(&mut app, "IDLE");
        assert_eq!(order(&app), [4242, 5000], "not applied while typing");
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.filter.applied.as_deref(), Some("IDLE"));
        assert_eq!(order(&app), [5000], "case-insensitive on the name");
        assert_eq!(
            app.selected_pid,
            Some(5000),
            "the selection moves to what is shown"
        );
        // By pid and by uuid.
        for (text, shown) in [("424", vec![4242]), ("c7a5fd", vec![4242]), ("zzz", vec![])] {
            press(&mut app, KeyCode::Char('/'));
            for _ in 0..10 {
                press(&mut app, KeyCode::Backspace);
            }
            typed(&mut app, text);
            press(&mut app, KeyCode::Enter);
            assert_eq!(order(&app), shown, "{text}");
        }
        press(&mut app, KeyCode::Esc);
        assert_eq!(
            app.filter.applied, None,
            "Esc on the list clears the filter"
        );
        assert_eq!(order(&app), [4242, 5000]);
        // Keys typed into the filter are not commands.
        press(&mut app, KeyCode::Char('/'));
        assert_eq!(press(&mut app, KeyCode::Char('q')), Flow::Continue);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.filter, crate::tui::state::Filter::default());
    }

    #[test]
    fn pause_freezes_the_figures_and_keeps_the_newest_window() {
        let mut app = app();
        press(&mut app, KeyCode::Char(' '));
        assert!(app.paused);
        let mut newer = fixture::snapshot();
        newer.window.start_unix_seconds += 2.0;
        app.update(newer.clone());
        newer.window.start_unix_seconds += 2.0;
        app.update(newer);
        let shown = |app: &App| app.snapshot.as_ref().unwrap().window.start_unix_seconds;
        assert!((shown(&app) - 1_700_000_000.0).abs() < 1e-9, "frozen");
        let vm = app.snapshot.as_ref().unwrap().vms[0].clone();
        assert_eq!(
            app.shown_history(&vm).count(),
            1,
            "the history is frozen too"
        );
        assert_eq!(app.history.of(&vm).unwrap().len(), 3, "but kept underneath");
        press(&mut app, KeyCode::Char(' '));
        assert!(!app.paused);
        assert!(
            (shown(&app) - 1_700_000_004.0).abs() < 1e-9,
            "the newest window, at once"
        );
        assert_eq!(app.shown_history(&vm).count(), 3);
    }

    #[test]
    fn a_click_selects_the_row_under_it() {
        let mut app = app();
        app.drawn.rows = Some((5, 2, 0));
        let click = |app: &mut App, row| {
            app.mouse(MouseEvent {
                kind: MouseEventKind::Down(MouseButton::Left),
                column: 3,
                row,
                modifiers: KeyModifiers::NONE,
            });
        };
        click(&mut app, 6);
        assert_eq!(app.selected_pid, Some(5000));
        click(&mut app, 9);
        assert_eq!(app.selected_pid, Some(5000), "below the rows: nothing");
        click(&mut app, 5);
        assert_eq!(app.selected_pid, Some(4242));
    }

    #[test]
    fn the_help_lists_every_key_the_views_take() {
        let keys: String = HELP
            .iter()
            .flat_map(|(_, keys)| keys.iter().map(|(k, _)| format!(" {k} ")))
            .collect();
        for key in [
            " q ", "?", " s ", "Esc", " a ", "Space", "Enter", "Tab", " i ", "<", ">", " r ", "/",
            " D ", " m ", " g ", " n N ", " e ", "Home", "+ -", "PgUp",
        ] {
            assert!(keys.contains(key), "{key} missing from the help");
        }
    }
}
