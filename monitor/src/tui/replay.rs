//! `kvmtop replay PATH`: the live view over a recording. The [`Player`] decides which window is
//! shown; this module reads it from the recording, hands it to the view, and takes the time
//! keys. What the header and the event list show is in [`Status`], drawn by `draw::replay`.
//!
//! Keys: Space play/pause, ←/→ or h/l a window back/forward, `+`/`-` speed, `g` go to a time,
//! `n`/`N` next/previous event or mark, `e` the list of events and marks, Home/End the first and
//! last window.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent};

pub use super::replay_status::{Entry, Status};
use super::{Feed, player::Player, state::App};
use crate::recording::{
    events::Event,
    playback::{Recording, TimedEvent},
};

/// Windows read again for the history after a jump: two minutes at one-second windows, a
/// fraction of a second to decode.
const HISTORY_ON_JUMP: usize = 120;

/// Longest time a `g` prompt accepts, in characters: every form fits easily.
const PROMPT_CHARS: usize = 64;

/// A recording feeding the view.
pub struct Replay {
    recording: Recording,
    player: Player,
    /// Times of the events within the replay's bounds, sorted, for `n`/`N`.
    event_times: Vec<u64>,
    /// The window whose snapshot the view holds.
    loaded: Option<usize>,
    /// The window last read or tried: an unreadable one is not read again on every turn.
    tried: Option<usize>,
    last_tick: Option<Instant>,
}

impl Replay {
    /// A replay of the windows of `recording` whose times lie in `from..=to` (unix ns);
    /// `None` when no window does.
    #[must_use]
    pub fn new(recording: Recording, from: u64, to: u64) -> Option<Self> {
        let player = Player::new(recording.window_times().collect(), from, to)?;
        let event_times = recording
            .events()
            .iter()
            .map(|e| e.time_ns)
            .filter(|&t| player.covers(t))
            .collect();
        Some(Self {
            recording,
            player,
            event_times,
            loaded: None,
            tried: None,
            last_tick: None,
        })
    }

    /// The view's state to start with: the timeline and the damage, which do not change.
    #[must_use]
    pub fn app(&self) -> App {
        let mut app = App::new(Duration::ZERO);
        let status = Status {
            events: self
                .recording
                .events()
                .iter()
                .filter(|e| self.player.covers(e.time_ns))
                .map(|e| Entry {
                    window: self.player.window_of(e.time_ns),
                    mark: matches!(e.event, Event::Mark { .. }),
                    line: event_line(e),
                })
                .collect(),
            problems: self.recording.problems().to_vec(),
            ..Status::default()
        };
        app.replay = Some(status);
        app
    }

    #[must_use]
    pub fn player(&self) -> &Player {
        &self.player
    }

    /// Loads the window the player is on into `app`, unless it is there already.
    fn load(&mut self, app: &mut App) {
        let position = self.player.position();
        if self.tried == Some(position) {
            return;
        }
        self.tried = Some(position);
        if self.loaded.is_none_or(|loaded| loaded + 1 != position) {
            self.refill_history(app, position);
        }
        let unreadable = match self.recording.window(position) {
            Ok(snapshot) => {
                app.update(snapshot);
                self.loaded = Some(position);
                None
            }
            // The tables keep the last window read, and say so: damage is never fatal.
            Err(e) => Some(format!(
                "window {} could not be read ({e}){}",
                self.player.counted().0,
                if self.loaded.is_some() {
                    "; the tables still show the last window read"
                } else {
                    ""
                }
            )),
        };
        if let Some(status) = &mut app.replay {
            status.unreadable = unreadable;
        }
    }

    /// After a jump, the history is the recording's windows before `position`: up to
    /// [`HISTORY_ON_JUMP`] of them are read again (a step forward only adds the new one).
    fn refill_history(&self, app: &mut App, position: usize) {
        app.history.clear();
        for earlier in position.saturating_sub(HISTORY_ON_JUMP)..position {
            // Damaged windows leave a gap, as they do in the tables.
            if let Ok(snapshot) = self.recording.window(earlier) {
                app.history.record(&snapshot);
            }
        }
    }

    /// Copies where the player stands into the status the view draws.
    fn publish(&self, app: &mut App) {
        if let Some(status) = &mut app.replay {
            status.time_ns = self.player.time_ns();
            status.position = self.player.position();
            status.window = self.player.counted();
            status.playing = self.player.playing();
            status.speed = self.player.speed();
        }
    }

    /// A key while the `g` prompt is open: it takes them all.
    fn prompt_key(&mut self, status: &mut Status, key: KeyEvent) {
        let Some(typed) = &mut status.prompt else {
            return;
        };
        match key.code {
            KeyCode::Esc => status.prompt = None,
            KeyCode::Backspace => {
                typed.pop();
            }
            KeyCode::Enter => {
                let text = status.prompt.take().unwrap_or_default();
                status.message = self.player.go_to(&text).err();
            }
            KeyCode::Char(c) if !c.is_control() && typed.chars().count() < PROMPT_CHARS => {
                typed.push(c);
            }
            _ => {}
        }
    }

    /// A key while the event list is open: it takes them all.
    fn list_key(&mut self, status: &mut Status, key: KeyEvent) {
        let Some(selected) = &mut status.list else {
            return;
        };
        let last = status.events.len().saturating_sub(1);
        match key.code {
            KeyCode::Esc | KeyCode::Char('e' | 'q') => status.list = None,
            KeyCode::Down | KeyCode::Char('j') => *selected = (*selected + 1).min(last),
            KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
            KeyCode::Home => *selected = 0,
            KeyCode::End => *selected = last,
            KeyCode::Enter => {
                if let Some(entry) = status.events.get(*selected) {
                    self.player.jump(entry.window);
                }
                status.list = None;
            }
            _ => {}
        }
    }
}

impl Feed for Replay {
    fn refresh(&mut self, app: &mut App) -> anyhow::Result<()> {
        let now = Instant::now();
        let elapsed = self.last_tick.map_or(Duration::ZERO, |t| now - t);
        self.last_tick = Some(now);
        self.player.advance(elapsed);
        self.load(app);
        self.publish(app);
        Ok(())
    }

    fn key(&mut self, app: &mut App, key: KeyEvent) -> bool {
        let Some(mut status) = app.replay.take() else {
            return false;
        };
        let taken = self.status_key(&mut status, key);
        app.replay = Some(status);
        if taken {
            self.load(app);
            self.publish(app);
        }
        taken
    }
}

impl Replay {
    fn status_key(&mut self, status: &mut Status, key: KeyEvent) -> bool {
        if status.prompt.is_some() {
            self.prompt_key(status, key);
            return true;
        }
        if status.list.is_some() {
            self.list_key(status, key);
            return true;
        }
        status.message = None;
        let player = &mut self.player;
        match key.code {
            KeyCode::Char(' ') => player.toggle_play(),
            KeyCode::Left | KeyCode::Char('h') => player.step(-1),
            KeyCode::Right | KeyCode::Char('l') => player.step(1),
            KeyCode::Char('+' | '=') => player.faster(),
            KeyCode::Char('-') => player.slower(),
            KeyCode::Home => player.to_first(),
            KeyCode::End => player.to_last(),
            KeyCode::Char('g') => status.prompt = Some(String::new()),
            KeyCode::Char('n') => match player.next_of(&self.event_times) {
                Some(window) => player.jump(window),
                None => status.message = Some("no event or mark after this window".into()),
            },
            KeyCode::Char('N') => match player.previous_of(&self.event_times) {
                Some(window) => player.jump(window),
                None => status.message = Some("no event or mark before this window".into()),
            },
            KeyCode::Char('e') => {
                if status.events.is_empty() {
                    status.message = Some("no events or marks in this replay".into());
                } else {
                    // The list opens on the first event at or after the window shown.
                    let position = player.position();
                    let at = status.events.iter().position(|e| e.window >= position);
                    status.list = Some(at.unwrap_or(status.events.len() - 1));
                }
            }
            _ => return false,
        }
        true
    }
}

/// "10:42:07.512  mark: deploy 42": the time of day (UTC; the header has the date) and the
/// event, every text in it sanitized by the event's own display.
fn event_line(event: &TimedEvent) -> String {
    let time = jiff::Timestamp::from_nanosecond(i128::from(event.time_ns)).map_or_else(
        |_| "?".to_owned(),
        |t| t.strftime("%H:%M:%S%.3f").to_string(),
    );
    format!("{time}  {}", event.event)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crossterm::event::{KeyEventKind, KeyEventState, KeyModifiers};

    use super::*;
    use crate::{
        model::Untrusted,
        recording::{recorder::Recorder, store},
    };

    const SECOND: u64 = 1_000_000_000;

    /// Six windows of 10 s, the fourth holding this moment; the VM and the host named
    /// `vm_name`; a mark
    /// with `mark` put now (marks take the time they are put). Returns the first window's
    /// start, unix s.
    fn recorded(dir: &Path, vm_name: &str, mark: &str) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let start = now - 35;
        let mut recorder = Recorder::open(dir, store::Config::default()).unwrap();
        let mut snapshot = crate::testing::fixture::snapshot();
        snapshot.vms[0].name = Untrusted::new(vm_name);
        vm_name.clone_into(&mut snapshot.host.hostname);
        // No losses: the mark is the only event.
        snapshot.families.block.lost.clear();
        for i in 0..6_u32 {
            #[expect(clippy::cast_precision_loss, reason = "unix seconds")]
            let at = start as f64 + f64::from(i * 10);
            snapshot.window.start_unix_seconds = at;
            snapshot.window.duration_seconds = 10.0;
            recorder.record(&snapshot).unwrap();
            if i == 2 {
                recorder.mark(Untrusted::new(mark)).unwrap();
            }
        }
        recorder.close().unwrap();
        start
    }

    fn press(replay: &mut Replay, app: &mut App, code: KeyCode) -> bool {
        let key = KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        };
        replay.key(app, key)
    }

    fn open(dir: &Path) -> (Replay, App) {
        let recording = Recording::open(dir).unwrap();
        let mut replay = Replay::new(recording, 0, u64::MAX).unwrap();
        let mut app = replay.app();
        replay.refresh(&mut app).unwrap();
        (replay, app)
    }

    #[test]
    fn keys_move_through_the_recording_and_to_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let start = recorded(dir.path(), "web-1", "deploy 42");
        let (mut replay, mut app) = open(dir.path());
        let status = |app: &App| {
            let s = app.replay.as_ref().unwrap();
            (s.window, s.playing)
        };
        assert_eq!(status(&app), ((1, 6), false));
        assert!(app.snapshot.is_some());
        // The mark was put now: in the fourth window.
        assert!(press(&mut replay, &mut app, KeyCode::Char('n')));
        assert_eq!(status(&app).0, (4, 6));
        let s = app.replay.as_ref().unwrap();
        let here = s.current_events();
        assert!(
            here.len() == 1 && here[0].ends_with("mark: deploy 42"),
            "{here:?}"
        );
        press(&mut replay, &mut app, KeyCode::Left);
        assert_eq!(status(&app).0, (3, 6));
        let loaded = app.snapshot.as_ref().unwrap().window.start_unix_seconds;
        #[expect(clippy::cast_precision_loss, reason = "unix seconds")]
        let third = start as f64 + 20.0;
        assert!((loaded - third).abs() < 1e-6, "window 3 loaded");
        press(&mut replay, &mut app, KeyCode::End);
        assert_eq!(status(&app).0, (6, 6));
        press(&mut replay, &mut app, KeyCode::Char('N'));
        assert_eq!(status(&app).0, (4, 6));
        press(&mut replay, &mut app, KeyCode::Home);
        assert_eq!(status(&app).0, (1, 6));
        // The list opens on the first window's events (a source the fixture lacks, its
        // advice); Enter goes to the one selected, the mark last.
        press(&mut replay, &mut app, KeyCode::Char('e'));
        assert_eq!(app.replay.as_ref().unwrap().list, Some(0));
        assert!(
            press(&mut replay, &mut app, KeyCode::Char('q')),
            "the list takes q"
        );
        press(&mut replay, &mut app, KeyCode::Char('e'));
        press(&mut replay, &mut app, KeyCode::End);
        press(&mut replay, &mut app, KeyCode::Enter);
        assert_eq!(status(&app).0, (4, 6));
        // View keys are left to the view.
        assert!(!press(&mut replay, &mut app, KeyCode::Enter));
        assert!(!press(&mut replay, &mut app, KeyCode::Char('q')));
    }

    #[test]
    fn the_prompt_jumps_to_a_time_and_explains_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        recorded(dir.path(), "web-1", "deploy 42");
        let (mut replay, mut app) = open(dir.path());
        let type_in = |replay: &mut Replay, app: &mut App, text: &str| {
            press(replay, app, KeyCode::Char('g'));
            for c in text.chars() {
                assert!(press(replay, app, KeyCode::Char(c)));
            }
            press(replay, app, KeyCode::Enter);
        };
        type_in(&mut replay, &mut app, "+30s");
        assert_eq!(app.replay.as_ref().unwrap().window, (4, 6));
        type_in(&mut replay, &mut app, "-20s");
        assert_eq!(app.replay.as_ref().unwrap().window, (2, 6));
        type_in(&mut replay, &mut app, "qq");
        let s = app.replay.as_ref().unwrap();
        assert_eq!(s.window, (2, 6));
        assert!(s.message.as_deref().unwrap().contains("'qq' is not a time"));
        assert!(s.prompt.is_none());
    }

    #[test]
    fn bounds_leave_out_the_windows_and_events_outside_them() {
        let dir = tempfile::tempdir().unwrap();
        let start = recorded(dir.path(), "web-1", "deploy 42") * SECOND;
        let recording = Recording::open(dir.path()).unwrap();
        let replay = Replay::new(recording, start + 45 * SECOND, u64::MAX).unwrap();
        let app = replay.app();
        assert_eq!(replay.player().counted(), (1, 2));
        assert!(app.replay.unwrap().events.is_empty());
        let recording = Recording::open(dir.path()).unwrap();
        assert!(Replay::new(recording, start + 65 * SECOND, u64::MAX).is_none());
    }

    fn render(app: &App, width: u16, height: u16) -> String {
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| {
                super::super::draw::draw(frame, app);
            })
            .unwrap();
        terminal.backend().to_string()
    }

    #[test]
    fn the_banner_says_replay_with_the_recorded_time_host_and_place() {
        let dir = tempfile::tempdir().unwrap();
        recorded(dir.path(), "web-1", "deploy 42");
        let (mut replay, mut app) = open(dir.path());
        press(&mut replay, &mut app, KeyCode::Char('n'));
        press(&mut replay, &mut app, KeyCode::Char('+'));
        let screen = render(&app, 160, 14);
        let time = app.replay.as_ref().unwrap().time_ns;
        let recorded = jiff::Timestamp::from_nanosecond(i128::from(time))
            .unwrap()
            .strftime("%Y-%m-%d %H:%M:%S UTC")
            .to_string();
        for expected in [
            " REPLAY ",
            "⏸ paused 2×",
            &format!("recorded {recorded}"),
            "web-1 (Linux",
            "window 4 of 6",
            "this window: ",
            "mark: deploy 42",
            "Space",
        ] {
            assert!(screen.contains(expected), "{expected:?} not in\n{screen}");
        }
        assert!(
            !screen.contains("every 1.0 s"),
            "the live title is gone\n{screen}"
        );
        press(&mut replay, &mut app, KeyCode::Char(' '));
        assert!(render(&app, 160, 14).contains("▶ playing 2×"));
    }

    #[test]
    fn hostile_names_and_marks_reach_no_cell_raw() {
        let hostile = crate::model::untrusted::HOSTILE_NAME;
        let dir = tempfile::tempdir().unwrap();
        recorded(dir.path(), hostile, hostile);
        let (mut replay, mut app) = open(dir.path());
        let mut screens = Vec::new();
        press(&mut replay, &mut app, KeyCode::Char('n'));
        screens.push(render(&app, 400, 20));
        press(&mut replay, &mut app, KeyCode::Char('e'));
        screens.push(render(&app, 400, 20));
        press(&mut replay, &mut app, KeyCode::Esc);
        press(&mut replay, &mut app, KeyCode::Char('g'));
        for c in hostile.chars() {
            press(&mut replay, &mut app, KeyCode::Char(c));
        }
        screens.push(render(&app, 400, 20));
        press(&mut replay, &mut app, KeyCode::Enter);
        screens.push(render(&app, 400, 20));
        for screen in &screens {
            assert!(screen.contains("vm-ü-日本"), "{screen}");
            crate::testing::assert_terminal_safe(screen);
        }
        assert!(screens[0].contains("mark: q\"uote"), "{}", screens[0]);
    }

    #[test]
    fn damage_is_shown_and_the_replay_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        recorded(dir.path(), "web-1", "deploy 42");
        let clean = Recording::open(dir.path()).unwrap();
        let store = clean.store();
        let third = store
            .positions_of_kind(crate::recording::frames::WINDOW)
            .nth(2)
            .unwrap();
        // The segment that holds it: a mark stamped with the wall clock can start another.
        let segment = store.segments()[store.entries()[third].segment]
            .path
            .clone();
        let at = usize::try_from(store.entries()[third].offset).unwrap() + 40;
        drop(clean);
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[at] ^= 0xff;
        // And a torn tail, as a recorder killed mid-write leaves.
        bytes.extend_from_within(..30);
        std::fs::write(&segment, bytes).unwrap();

        let (mut replay, mut app) = open(dir.path());
        let problems = app.replay.as_ref().unwrap().problems.len();
        assert!(problems > 0, "the torn tail is reported");
        press(&mut replay, &mut app, KeyCode::Right);
        press(&mut replay, &mut app, KeyCode::Right);
        let screen = render(&app, 200, 14);
        assert!(
            screen.contains(&format!("damage: {problems} stepped over; first: ")),
            "{screen}"
        );
        assert!(
            screen.contains("window 3 could not be read")
                && screen.contains("the tables still show the last window read"),
            "{screen}"
        );
        assert!(
            screen.contains("web-1"),
            "the last window read stays\n{screen}"
        );
        press(&mut replay, &mut app, KeyCode::Right);
        let screen = render(&app, 200, 14);
        assert!(screen.contains("window 4 of 6"), "{screen}");
        assert!(!screen.contains("could not be read"), "{screen}");
    }
}
