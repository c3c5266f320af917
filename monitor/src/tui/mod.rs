//! The live table (`kvmtop`), and the same view over a recording (`kvmtop replay`). State lives
//! in [`state`], drawing in [`draw`]; where the snapshots come from is a [`Feed`]: the sampler, or
//! a [`replay::Replay`] moved by its [`player::Player`]. This module owns the terminal and the
//! event loop.
//!
//! Keys (every one is in [`keys::HELP`], which `?` shows): ↑↓ select a VM (or a mouse click),
//! Enter opens its exits, Tab cycles through its exits, vCPUs and I/O (i opens I/O directly),
//! a shows the tuning advice, `<`/`>` sort by the previous/next column and r reverses (in the
//! vCPU view, its vCPUs), ↑↓ and the page keys scroll a VM's view, c turns its history charts
//! off and on, `/` filters by name, pid or
//! uuid, Space pauses, s lists the kernel sources, Esc closes a pane,
//! goes back or clears the filter (it never quits), q or Ctrl-C quit. A replay's own keys
//! (Space play/pause, time, speed, the timeline) are offered to its feed first: see [`replay`].
//! The live feed offers its flight recorder's ([`flight_keys`]) first: D dumps it, m asks for a
//! note to mark it with. While the filter's input line or a pane is open the view takes every
//! key first.
//!
//! The terminal is restored on every way out: `q`, Ctrl-C (a key event in raw mode),
//! SIGTERM, an error, or a panic (ratatui's init installs a restoring panic hook). A hang-up
//! (the terminal went away) ends kvmtop at once.

pub mod columns;
pub mod draw;
pub mod flight_keys;
pub mod history;
pub mod keys;
pub mod player;
pub mod replay;
pub mod replay_status;
pub mod state;
pub mod vcpu_columns;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, TryRecvError},
    },
    time::Duration,
};

use anyhow::Context as _;
use crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event, KeyCode, KeyEvent, KeyEventKind,
    KeyModifiers,
};

use crate::model::Snapshot;
use flight_keys::FlightKeys;
use keys::Flow;
use state::App;

/// Where the view's snapshots come from, and the keys that belong to it.
pub trait Feed {
    /// Gives `app` what is new; called on every turn of the loop. An error ends the view.
    fn refresh(&mut self, app: &mut App) -> anyhow::Result<()>;

    /// Offered each key before the view's own keys; returns whether it took it.
    fn key(&mut self, _app: &mut App, _key: KeyEvent) -> bool {
        false
    }

    /// Draws what belongs to the feed over the drawn view (an input line, say).
    fn draw(&self, _frame: &mut ratatui::Frame<'_>) {}
}

/// The sampler's snapshots, as they come, and the flight recorder's keys.
struct Live<'a> {
    snapshots: &'a Receiver<Snapshot>,
    flight: FlightKeys,
}

impl Feed for Live<'_> {
    fn refresh(&mut self, app: &mut App) -> anyhow::Result<()> {
        match self.snapshots.try_recv() {
            Ok(snapshot) => app.update(snapshot),
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => anyhow::bail!("the sampler stopped unexpectedly"),
        }
        self.flight.refresh();
        Ok(())
    }

    fn key(&mut self, _app: &mut App, key: KeyEvent) -> bool {
        self.flight.key(key)
    }

    fn draw(&self, frame: &mut ratatui::Frame<'_>) {
        self.flight.draw(frame, frame.area());
    }
}

/// Runs until the user quits or the sampler stops.
pub fn run(
    snapshots: &Receiver<Snapshot>,
    interval: Duration,
    flight: FlightKeys,
) -> anyhow::Result<()> {
    show(&mut Live { snapshots, flight }, App::new(interval))
}

/// Shows `app` fed by `feed` until the user quits or the feed fails.
pub fn show(feed: &mut dyn Feed, app: App) -> anyhow::Result<()> {
    let terminated = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&terminated))
        .context("installing signal handlers")?;
    // A hang-up means the terminal is gone (SSH dropped, window closed): there is nothing left
    // to restore, and the input side would only return end-of-file from now on, which the
    // event reader spins on. Exit at once; the kernel releases the programs with the process.
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGHUP,
        1,
        Arc::new(AtomicBool::new(true)),
    )
    .context("installing signal handlers")?;
    let mut terminal =
        ratatui::try_init().context("cannot set up the terminal (is stdout a TTY?)")?;
    let mouse = MouseCapture::on();
    let result = event_loop(&mut terminal, feed, app, &terminated);
    drop(mouse);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    feed: &mut dyn Feed,
    mut app: App,
    terminated: &AtomicBool,
) -> anyhow::Result<()> {
    loop {
        feed.refresh(&mut app)?;
        let mut drawn = app.drawn;
        terminal.draw(|frame| {
            drawn = draw::draw(frame, &app);
            feed.draw(frame);
            draw::finish(frame.buffer_mut(), app.colour);
        })?;
        app.drawn = drawn;
        if terminated.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Short poll so new snapshots show promptly without busy-waiting.
        if !event::poll(Duration::from_millis(100))? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind == KeyEventKind::Press => {
                let ctrl_c =
                    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
                // The view's input line and panes come first: a letter typed there must not
                // start a replay's prompt or a flight mark.
                if !ctrl_c && !app.captures_keys() && feed.key(&mut app, key) {
                    continue;
                }
                if app.key(key) == Flow::Quit {
                    return Ok(());
                }
            }
            Event::Mouse(mouse) => app.mouse(mouse),
            _ => {}
        }
    }
}

/// Mouse reports on for the view's life, off again on every way out, a panic included
/// (ratatui's own hook restores the rest of the terminal).
struct MouseCapture;

impl MouseCapture {
    fn on() -> Self {
        // Without mouse reports the view still works from the keyboard: not worth failing for.
        let _ = crossterm::execute!(std::io::stdout(), EnableMouseCapture);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
            previous(info);
        }));
        Self
    }
}

impl Drop for MouseCapture {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    }
}
