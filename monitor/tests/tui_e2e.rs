//! The live table in a real terminal (tmux): it shows a running guest, and every way out — `q`,
//! Ctrl-C, SIGTERM — leaves the terminal as it found it (main screen, canonical mode, line
//! endings), with exit status 0.

mod support;

use std::{
    thread,
    time::{Duration, Instant},
};

use support::tmux::Tmux;

const VM_NAME: &str = "kvmtop-e2e-tui";

#[test]
fn live_table_shows_the_guest_and_every_exit_restores_the_terminal() {
    const TEST: &str = "live_table_shows_the_guest_and_every_exit_restores_the_terminal";
    if let Some(reason) = support::missing_prerequisite(true, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio(VM_NAME);
    let tmux = Tmux::start();
    let kvmtop = env!("CARGO_BIN_EXE_kvmtop");

    for (round, way_out) in ["q", "ctrl-c", "sigterm"].into_iter().enumerate() {
        tmux.type_line(&format!("{kvmtop} --interval 0.5"));
        // The guest's row, with its pid and a non-zero exit rate (shown from the second frame).
        let pid = guest.pid().to_string();
        tmux.wait_until("the guest's row with its I/O exits", |t| {
            let screen = t.screen();
            t.alternate_screen()
                && screen.contains("USER/s")
                && screen
                    .lines()
                    .any(|row| row.contains(VM_NAME) && row.contains(&pid) && row.contains("IO "))
        });
        match way_out {
            "q" => tmux.run(&["send-keys", "-t", "t", "q"]),
            "ctrl-c" => tmux.run(&["send-keys", "-t", "t", "C-c"]),
            _ => {
                let pid = tmux.kvmtop_pid();
                // SAFETY: plain kill(2).
                assert_eq!(unsafe { libc::kill(pid.cast_signed(), libc::SIGTERM) }, 0);
                String::new()
            }
        };
        tmux.wait_until("kvmtop to leave the alternate screen", |t| {
            !t.alternate_screen()
        });
        // A computed answer proves the shell got the line back in canonical mode with working
        // line endings (raw mode would leave Enter as a bare CR and nothing would run).
        tmux.type_line(&format!("echo status=$? restored-$(({round} * 7 + 35))"));
        let expected = format!("status=0 restored-{}", round * 7 + 35);
        tmux.wait_until(&format!("'{expected}' after {way_out}"), |t| {
            t.screen().lines().any(|l| l.trim() == expected)
        });
        tmux.type_line("clear");
    }
}

#[test]
fn closing_the_terminal_ends_kvmtop() {
    const TEST: &str = "closing_the_terminal_ends_kvmtop";
    if let Some(reason) = support::missing_prerequisite(false, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let tmux = Tmux::start();
    tmux.type_line(&format!("{} --interval 0.5", env!("CARGO_BIN_EXE_kvmtop")));
    tmux.wait_until("the live view", |t| {
        t.alternate_screen() && t.screen().contains("sources")
    });
    let pid = tmux.kvmtop_pid();
    // The terminal goes away under kvmtop, as when an SSH session drops.
    drop(tmux);
    let deadline = Instant::now() + support::EXIT_LIMIT;
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && support::process_state(pid) != Some('Z')
    {
        assert!(
            Instant::now() < deadline,
            "kvmtop (pid {pid}) still runs {:?} after its terminal closed",
            support::EXIT_LIMIT
        );
        thread::sleep(Duration::from_millis(100));
    }
}
