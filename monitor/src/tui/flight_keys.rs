//! The flight recorder's keys in the live view: `D` dumps the ring to a standalone recording,
//! `m` asks for a note in an input line at the bottom (Enter puts it on the timeline, Esc
//! cancels). Without a ring of its own, the live view passes both to the kvmtops that have one
//! (`kvmtop serve`), through the control socket, as `kvmtop dump-flight` and `kvmtop mark` do.
//! Nothing here waits: dumps and messages to other kvmtops run on threads of their own, and
//! their outcome shows in the bottom line.

use std::{
    path::PathBuf,
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::{
    Frame,
    layout::Rect,
    style::{Style, Stylize as _},
    text::{Line, Span},
    widgets::{Clear, Paragraph},
};

use crate::{control, model::Untrusted, recording::flight::Flight};

/// How long an outcome stays in the bottom line.
const STATUS_FOR: Duration = Duration::from_secs(15);
/// The longest note the input line takes, in characters.
const MAX_NOTE: usize = 200;

pub struct FlightKeys {
    flight: Option<Flight>,
    control_dir: PathBuf,
    /// What the recorder says by itself (a dump on SIGUSR1, a ring that could not start).
    notices: Receiver<String>,
    /// The note being typed, while the input line is open.
    note: Option<String>,
    /// A dump or mark under way, and what its outcome will say.
    pending: Option<Receiver<String>>,
    status: Option<(String, Instant)>,
}

impl FlightKeys {
    #[must_use]
    pub fn new(flight: Option<Flight>, control_dir: PathBuf, notices: Receiver<String>) -> Self {
        Self {
            flight,
            control_dir,
            notices,
            note: None,
            pending: None,
            status: None,
        }
    }

    /// Takes in outcomes that have arrived; called on every turn of the event loop.
    pub fn refresh(&mut self) {
        let mut said: Vec<String> = self.notices.try_iter().collect();
        if let Some(pending) = &self.pending
            && let Ok(outcome) = pending.try_recv()
        {
            said.push(outcome);
            self.pending = None;
        }
        if let Some(last) = said.pop() {
            self.status = Some((last, Instant::now()));
        }
        if self
            .status
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() > STATUS_FOR)
        {
            self.status = None;
        }
    }

    /// Offered every key first; returns whether it took it. While the input line is open it
    /// takes them all.
    pub fn key(&mut self, key: KeyEvent) -> bool {
        if let Some(note) = &mut self.note {
            match key.code {
                KeyCode::Esc => self.note = None,
                KeyCode::Enter => {
                    let text = self.note.take().unwrap_or_default();
                    if !text.trim().is_empty() {
                        self.mark(text);
                    }
                }
                KeyCode::Backspace => {
                    note.pop();
                }
                KeyCode::Char(c) if !c.is_control() && note.chars().count() < MAX_NOTE => {
                    note.push(c);
                }
                _ => {}
            }
            return true;
        }
        match key.code {
            KeyCode::Char('m') => self.note = Some(String::new()),
            KeyCode::Char('D') => self.dump(),
            _ => return false,
        }
        true
    }

    fn mark(&mut self, text: String) {
        let shown = Untrusted::new(&text).to_string();
        if let Some(flight) = &self.flight {
            let said = match flight.mark(Untrusted::new(&text)) {
                Ok(()) => format!("marked: {shown}"),
                Err(why) => format!("mark not recorded: {why}"),
            };
            self.status = Some((said, Instant::now()));
            return;
        }
        let dir = self.control_dir.clone();
        self.run_aside(move || match control::send_mark(&dir, &text) {
            Ok(sent) if !sent.accepted.is_empty() => format!(
                "marked: {shown} (in {} other kvmtop recording)",
                sent.accepted.len()
            ),
            Ok(_) => "mark not recorded: no kvmtop with a recording took it".to_owned(),
            Err(e) => format!("mark not recorded: {e:#}"),
        });
    }

    fn dump(&mut self) {
        if self.pending.is_some() {
            self.status = Some(("a dump is under way".to_owned(), Instant::now()));
            return;
        }
        if let Some(flight) = &self.flight {
            let answer = flight.dump();
            self.run_aside(move || {
                dumped(answer.recv().unwrap_or_else(|_| Err("no answer".into())))
            });
            return;
        }
        let dir = self.control_dir.clone();
        self.run_aside(move || match control::send_dump(&dir, None) {
            Ok(sent) => match (sent.accepted.first(), sent.refused.first()) {
                (Some((_, path)), _) => dumped(Ok(PathBuf::from(path))),
                (None, Some((_, why))) => dumped(Err(why.clone())),
                (None, None) => dumped(Err("no flight recorder on this host".into())),
            },
            Err(e) => dumped(Err(format!("{e:#}"))),
        });
    }

    fn run_aside(&mut self, work: impl FnOnce() -> String + Send + 'static) {
        let (tx, rx) = mpsc::channel();
        self.status = Some(("working…".to_owned(), Instant::now()));
        self.pending = Some(rx);
        let spawned = thread::Builder::new()
            .name("flight-key".into())
            .spawn(move || {
                let _ = tx.send(work());
            });
        if spawned.is_err() {
            self.pending = None;
            self.status = Some(("cannot start a thread".to_owned(), Instant::now()));
        }
    }

    /// The input line or the latest outcome, over the last line of `area` (the footer).
    pub fn draw(&self, frame: &mut Frame<'_>, area: Rect) {
        let line = if let Some(note) = &self.note {
            Line::from(vec![
                Span::styled(" mark ", Style::new().reversed()),
                Span::raw(format!(" {}", Untrusted::new(note))),
                Span::raw("▏").slow_blink(),
                Span::raw("   Enter saves · Esc cancels"),
            ])
        } else if let Some((status, _)) = &self.status {
            Line::from(format!(" {status}"))
        } else {
            return;
        };
        if area.height == 0 {
            return;
        }
        let bottom = Rect {
            y: area.bottom() - 1,
            height: 1,
            ..area
        };
        frame.render_widget(Clear, bottom);
        frame.render_widget(Paragraph::new(line), bottom);
    }
}

fn dumped(outcome: Result<PathBuf, String>) -> String {
    match outcome {
        Ok(path) => format!(
            "flight recording dumped to {}",
            Untrusted::new(path.to_string_lossy())
        ),
        Err(why) => format!("flight dump failed: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyModifiers;

    fn press(keys: &mut FlightKeys, code: KeyCode) -> bool {
        keys.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn the_note_line_takes_every_key_until_enter_or_esc() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, notices) = mpsc::channel();
        let mut keys = FlightKeys::new(None, dir.path().join("none"), notices);
        assert!(!press(&mut keys, KeyCode::Char('q')), "q is the view's");
        assert!(press(&mut keys, KeyCode::Char('m')));
        for c in "qa\u{1b}b".chars() {
            assert!(press(&mut keys, KeyCode::Char(c)));
        }
        assert!(press(&mut keys, KeyCode::Backspace));
        assert_eq!(
            keys.note.as_deref(),
            Some("qa"),
            "control characters stay out"
        );
        assert!(press(&mut keys, KeyCode::Esc));
        assert!(keys.note.is_none() && keys.pending.is_none(), "Esc cancels");
        assert!(
            !press(&mut keys, KeyCode::Esc),
            "and then Esc is the view's again"
        );
        press(&mut keys, KeyCode::Char('m'));
        press(&mut keys, KeyCode::Char('x'));
        press(&mut keys, KeyCode::Enter);
        assert!(keys.note.is_none());
        let outcome = keys.pending.take().unwrap().recv().unwrap();
        assert!(outcome.contains("no kvmtop is recording"), "{outcome}");
    }
}
