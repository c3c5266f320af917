//! The live table (`kvmtop`), and the same view over a recording (`kvmtop replay`). State lives
//! in [`state`], drawing in [`draw`]; where the snapshots come from is a [`Feed`]: the sampler, or
//! a [`replay::Replay`] moved by its [`player::Player`]. This module owns the terminal and the
//! event loop.
//!
//! Keys: ↑↓ select a VM, Enter opens its exits, Tab cycles through its exits, vCPUs and I/O
//! (i opens I/O directly), a shows the tuning advice, Esc goes back (and quits from the list),
//! q quits. A replay's own keys (time, speed, the timeline) are offered to its feed first: see
//! [`replay`]. The live feed offers its flight recorder's ([`flight_keys`]) first: D dumps it,
//! m asks for a note to mark it with.
//!
//! The terminal is restored on every way out: `q`, Esc, Ctrl-C (a key event in raw mode),
//! SIGTERM, an error, or a panic (ratatui's init installs a restoring panic hook). A hang-up
//! (the terminal went away) ends kvmtop at once.

pub mod draw;
pub mod flight_keys;
pub mod player;
pub mod replay;
pub mod replay_status;
pub mod state;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, TryRecvError},
    },
    time::Duration,
};

use anyhow::Context as _;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::model::Snapshot;
use flight_keys::FlightKeys;
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
    let result = event_loop(&mut terminal, feed, app, &terminated);
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
        terminal.draw(|frame| {
            draw::draw(frame, &app);
            feed.draw(frame);
        })?;
        if terminated.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Short poll so new snapshots show promptly without busy-waiting.
        if event::poll(Duration::from_millis(100))?
            && let Event::Key(key) = event::read()?
        {
            if key.kind != KeyEventKind::Press {
                continue;
            }
            let ctrl_c =
                key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
            if !ctrl_c && feed.key(&mut app, key) {
                continue;
            }
            match key.code {
                KeyCode::Char('q') => return Ok(()),
                _ if ctrl_c => return Ok(()),
                // Esc goes back from a VM's views, and quits from the list.
                KeyCode::Esc if !app.back() => return Ok(()),
                KeyCode::Backspace | KeyCode::Left => {
                    app.back();
                }
                KeyCode::Enter | KeyCode::Right => app.open(),
                KeyCode::Tab | KeyCode::Char('v') => app.toggle_vm_view(),
                KeyCode::Char('a') => app.toggle_advice(),
                KeyCode::Char('i') => app.open_io(),
                KeyCode::Down | KeyCode::Char('j') => app.select_next(),
                KeyCode::Up | KeyCode::Char('k') => app.select_previous(),
                _ => {}
            }
        }
    }
}
