//! An hour of recording at a 1 s interval, the length of a real incident's flight dump: the
//! replay view opens on it, jumps to its last window and back, and `report` reads it.
//!
//! The times are printed as figures for the closing notes, not pass marks: on a loaded test host
//! any wall-clock limit is a coin toss. What is checked is that each step ends on the right
//! window within the terminal helper's minute.

mod support;

use std::{
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use support::tmux::Tmux;

const WINDOWS: u32 = 3_600;

/// An hour of the fixture host ending now, its steal rising in the last ten minutes, with a
/// mark at the rise. Every window differs, as real ones do: steal moves a little each second.
fn record_hour(dir: &Path) {
    let rise = WINDOWS - 600;
    let steal = |i| if i < rise { 0.02 } else { 0.45 } + f64::from(i % 7) * 0.001;
    let first_start_ago = f64::from(WINDOWS + 1);
    support::fixture::record_steal(dir, WINDOWS, first_start_ago, steal, (rise, "rise"), None);
}

/// The window the replay banner shows ("… — window 12 of 3600"), from 1.
fn shown_window(screen: &str) -> Option<u32> {
    let (_, place) = screen.lines().next()?.rsplit_once("— window ")?;
    let (number, of) = place.trim_end().split_once(" of ")?;
    (of == WINDOWS.to_string()).then_some(number.parse().ok()?)
}

/// How long until the screen shows `window`, polled every 5 ms.
fn time_to_window(tmux: &Tmux, window: u32, started: Instant) -> Duration {
    let deadline = started + Duration::from_mins(1);
    loop {
        if shown_window(&tmux.screen()) == Some(window) {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "window {window} not shown; screen:\n{}",
            tmux.screen()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_hour_of_recording_opens_in_the_replay_view_and_the_report() {
    const TEST: &str = "an_hour_of_recording_opens_in_the_replay_view_and_the_report";
    if let Some(reason) = support::missing_prerequisite(false, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("hour");
    let written = Instant::now();
    record_hour(&recording);
    let written = written.elapsed();
    let bytes: u64 = std::fs::read_dir(&recording)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

    let tmux = Tmux::start_sized(160, 40);
    let command = format!(
        "{} replay {}",
        env!("CARGO_BIN_EXE_kvmtop"),
        recording.display()
    );
    let started = Instant::now();
    tmux.type_line(&command);
    let opened = time_to_window(&tmux, 1, started);
    let started = Instant::now();
    tmux.key("End");
    let to_end = time_to_window(&tmux, WINDOWS, started);
    let started = Instant::now();
    tmux.key("Home");
    let to_start = time_to_window(&tmux, 1, started);
    tmux.key("q");
    tmux.wait_until("replay to leave the alternate screen", |t| {
        !t.alternate_screen()
    });

    let started = Instant::now();
    let report = Command::new(env!("CARGO_BIN_EXE_kvmtop"))
        .arg("report")
        .arg(&recording)
        .args(["--from", "-10m", "--format", "json"])
        .output()
        .unwrap();
    let reported = started.elapsed();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let first = &report["deviations"][0];
    assert_eq!(first["figure"]["name"], "steal", "{first:#}");
    eprintln!(
        "an hour ({WINDOWS} windows, {} KiB, written in {written:.1?}): the replay view showed \
         its first window {opened:.0?} after the command was typed, the last {to_end:.0?} after \
         End, the first again {to_start:.0?} after Home; report --from -10m took {reported:.0?}",
        bytes >> 10
    );
}
