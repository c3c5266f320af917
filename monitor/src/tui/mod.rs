//! The live table (`kvmtop`). State lives in [`state`], drawing in [`draw`]; this module owns the
//! terminal and the event loop.
//!
//! Keys: ↑↓ select a VM, Enter opens its exits, Tab cycles through its exits, vCPUs and I/O
//! (i opens I/O directly), a shows the tuning advice, Esc goes back (and quits from the list),
//! q quits.
//!
//! The terminal is restored on every way out: `q`, Esc, Ctrl-C (a key event in raw mode),
//! SIGTERM, an error, or a panic (ratatui's init installs a restoring panic hook). A hang-up
//! (the terminal went away) ends kvmtop at once.

pub mod draw;
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
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::model::Snapshot;
use state::App;

/// Runs until the user quits or the sampler stops.
pub fn run(snapshots: &Receiver<Snapshot>, interval: Duration) -> anyhow::Result<()> {
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
    let result = event_loop(&mut terminal, snapshots, interval, &terminated);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    snapshots: &Receiver<Snapshot>,
    interval: Duration,
    terminated: &AtomicBool,
) -> anyhow::Result<()> {
    let mut app = App::new(interval);
    loop {
        match snapshots.try_recv() {
            Ok(snapshot) => app.update(snapshot),
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => anyhow::bail!("the sampler stopped unexpectedly"),
        }
        terminal.draw(|frame| draw::draw(frame, &app))?;
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
