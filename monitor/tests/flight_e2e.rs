//! End to end: the flight recorder of `kvmtop serve` with a real QEMU/KVM guest.
//!
//! `serve` runs with a 20 s flight window (segments of 1 s) for long enough that the ring
//! rotates and ages segments out; a mark is put from another process (`kvmtop mark`); then the
//! ring is dumped twice, on SIGUSR1 and by `kvmtop dump-flight -o`. Each dump must open on its
//! own, reach back the window length as the test's own clock measures it (not more than one
//! window beyond, nor less than two windows short), hold every window of that
//! span without a gap (consecutive windows tile), show the guest the guests harness started, and
//! carry the mark; `kvmtop report --format json` and `kvmtop replay --format json` must read it.
//! All along, the ring directory must stay within its size bound and never reach back from its
//! newest frame more than the window and two segments (the one the cut falls in, and retention
//! running at segment switches) and a window. In the live view, driven through tmux, `m` and `D` do the
//! same.

mod support;

use std::{
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant, SystemTime},
};

use kvmtop::recording::{events::Event, playback::Recording, store::Reader, store::unix_ns};
use support::Observed;

const WINDOW: Duration = Duration::from_secs(20);
/// A twentieth of the window: the ring may reach back two of them beyond it.
const SEGMENT: Duration = Duration::from_secs(1);
const INTERVAL: Duration = Duration::from_secs(1);
/// The size bound given to the ring: 16 segments of 64 KiB.
const MAX_SIZE: u64 = 1 << 20;
/// How long serve runs before the dumps: the window, and as much again for the ring to rotate.
const RUN: Duration = Duration::from_secs(35);
/// Consecutive windows tile: one starts where the one before ends, up to float rounding.
const TILE_TOLERANCE_S: f64 = 1e-6;

#[test]
fn serve_keeps_the_last_window_in_a_bounded_ring_and_dumps_it_with_the_mark() {
    const TEST: &str = "serve_keeps_the_last_window_in_a_bounded_ring_and_dumps_it_with_the_mark";
    const NAME: &str = "kvmtop-e2e-flight";
    if let Some(reason) = support::missing_prerequisite(true, &[]) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio(NAME);
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("flight");
    let control = dir.path().join("control");

    let mut command = support::kvmtop();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--interval"])
        .arg(INTERVAL.as_secs_f64().to_string())
        .arg("--flight-recorder")
        .arg(&ring)
        .arg("--flight-window")
        .arg(format!("{}s", WINDOW.as_secs()))
        .arg("--flight-max-size")
        .arg(MAX_SIZE.to_string())
        .arg("--flight-control-dir")
        .arg(&control);
    let mut kvmtop = Observed::spawn(command);
    support::prometheus::serving_address(&mut kvmtop, "http");
    let started = Instant::now();
    let mut largest = 0;
    while started.elapsed() < RUN {
        thread::sleep(INTERVAL);
        largest = largest.max(ring_bytes(&ring));
        assert_ring_reach(&ring);
    }
    eprintln!("ring directory: at most {largest} bytes (bound {MAX_SIZE})");
    assert!(largest <= MAX_SIZE, "{largest} bytes in the ring");
    let segments = std::fs::read_dir(&ring).unwrap().count();
    assert!(
        segments >= 5,
        "{segments} segments after {RUN:?}: the ring did not rotate"
    );

    let mark = "deploy v2 from the flight test";
    let marked = support::kvmtop()
        .arg("mark")
        .arg("--control-dir")
        .arg(&control)
        .arg(mark)
        .output()
        .unwrap();
    assert!(
        marked.status.success(),
        "kvmtop mark: {}",
        String::from_utf8_lossy(&marked.stderr)
    );
    // The mark a few windows before the end, not on its edge.
    thread::sleep(INTERVAL * 3);

    let signalled_at = unix_ns(SystemTime::now());
    kvmtop.signal(libc::SIGUSR1);
    let line = kvmtop.wait_for("flight recording dumped to ", Duration::from_secs(30));
    let on_signal = PathBuf::from(line.split("dumped to ").nth(1).unwrap().trim());
    assert_eq!(on_signal.parent().unwrap(), dir.path().join("dumps"));
    check_dump(&on_signal, signalled_at, guest.pid(), mark);

    let out = dir.path().join("incident.kvmrec");
    let asked_at = unix_ns(SystemTime::now());
    let dumped = support::kvmtop()
        .args(["dump-flight", "--pid"])
        .arg(kvmtop.child.id().to_string())
        .arg("--control-dir")
        .arg(&control)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        dumped.status.success(),
        "kvmtop dump-flight: {}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&dumped.stdout).trim(),
        out.to_str().unwrap()
    );
    check_dump(&out, asked_at, guest.pid(), mark);
    let dumps: Vec<_> = std::fs::read_dir(dir.path().join("dumps"))
        .unwrap()
        .collect();
    assert_eq!(
        dumps.len(),
        1,
        "the moved dump is not left behind: {dumps:?}"
    );

    kvmtop.signal(libc::SIGTERM);
    kvmtop.wait(support::EXIT_LIMIT);
    let complaints: Vec<&String> = kvmtop
        .stderr_lines
        .iter()
        .filter(|l| l.contains("flight") && !l.contains("flight recording dumped to "))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}

/// A dump asked for at `asked_ns`: opens on its own, reaches back the window, tiles, holds the
/// guest and the mark, and reads with `report` and `replay`.
fn check_dump(path: &Path, asked_ns: u64, guest_pid: u32, mark: &str) {
    let recording = Recording::open(path).unwrap();
    assert!(
        recording.problems().is_empty(),
        "{:?}",
        recording.problems()
    );
    let times: Vec<u64> = recording.window_times().collect();
    let (first, last) = (times[0], *times.last().unwrap());
    let window_ns = u64::try_from(WINDOW.as_nanos()).unwrap();
    let interval_ns = u64::try_from(INTERVAL.as_nanos()).unwrap();
    // The first window ends within the window before the request; the first window of the ring
    // may start up to one window before that.
    let reach = asked_ns.saturating_sub(first) + interval_ns;
    eprintln!(
        "{}: {} windows, reaching back {:.1} s before the request, last window ended {:.1} s \
         before it",
        path.display(),
        times.len(),
        Duration::from_nanos(reach).as_secs_f64(),
        Duration::from_nanos(asked_ns.saturating_sub(last)).as_secs_f64(),
    );
    assert!(reach <= window_ns + interval_ns, "reaches back {reach} ns");
    assert!(
        reach + 2 * interval_ns >= window_ns,
        "reaches back only {reach} ns"
    );
    assert!(
        asked_ns.saturating_sub(last) <= 2 * interval_ns,
        "the last window ended {} ns before the request",
        asked_ns - last
    );
    let mut previous_end: Option<f64> = None;
    for index in 0..recording.window_count() {
        let snapshot = recording.window(index).unwrap();
        if let Some(end) = previous_end {
            assert!(
                (snapshot.window.start_unix_seconds - end).abs() < TILE_TOLERANCE_S,
                "window {index} starts at {} s, the one before ended at {end} s",
                snapshot.window.start_unix_seconds
            );
        }
        previous_end = Some(snapshot.window.start_unix_seconds + snapshot.window.duration_seconds);
        assert!(
            snapshot.vms.iter().any(|vm| vm.pid == guest_pid),
            "window {index} misses the guest (pid {guest_pid})"
        );
    }
    assert!(
        recording
            .events()
            .iter()
            .any(|e| matches!(&e.event, Event::Mark { text } if text.exact() == mark)),
        "no mark in {:?}",
        recording.events()
    );

    let report = run_ok(&["report", "--format", "json"], path);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(
        report["timeline"].to_string().contains(mark),
        "the report's timeline misses the mark: {}",
        report["timeline"]
    );
    let replayed = run_ok(&["replay", "--format", "json"], path);
    assert_eq!(replayed.lines().count(), times.len());
}

fn run_ok(args: &[&str], path: &Path) -> String {
    let output = support::kvmtop().args(args).arg(path).output().unwrap();
    assert!(
        output.status.success(),
        "kvmtop {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn ring_bytes(ring: &Path) -> u64 {
    std::fs::read_dir(ring).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// The ring reaches back from its newest frame at most the window and two segments, and a
/// window for the one the switch came with. Measured from the newest frame rather than the
/// clock: retention runs when a frame is written, so a stalled kvmtop ages its ring unpruned.
fn assert_ring_reach(ring: &Path) {
    let Ok(reader) = Reader::open(ring) else {
        return;
    };
    let (Some(oldest), Some(newest)) = (reader.entries().first(), reader.entries().last()) else {
        return;
    };
    let reach = Duration::from_nanos(newest.time_ns.saturating_sub(oldest.time_ns));
    assert!(
        reach <= WINDOW + SEGMENT * 2 + INTERVAL,
        "the ring reaches back {reach:?} from its newest frame"
    );
}

/// The live view's keys in a real terminal (tmux): `m` opens the input line (Esc cancels it,
/// Enter marks), `D` dumps the ring; the dump holds the guest and the mark.
#[test]
fn the_live_view_marks_on_m_and_dumps_on_d() {
    const TEST: &str = "the_live_view_marks_on_m_and_dumps_on_d";
    const NAME: &str = "kvmtop-e2e-flight-tui";
    if let Some(reason) = support::missing_prerequisite(true, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio(NAME);
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("flight");
    let tmux = support::tmux::Tmux::start_sized(220, 40);
    tmux.type_line(&format!(
        "{} --interval 0.5 --flight-recorder {} --flight-control-dir {}",
        env!("CARGO_BIN_EXE_kvmtop"),
        ring.display(),
        dir.path().join("control").display()
    ));
    let pid = guest.pid().to_string();
    tmux.wait_until("the guest's row", |t| {
        t.alternate_screen()
            && t.screen()
                .lines()
                .any(|row| row.contains(NAME) && row.contains(&pid))
    });
    tmux.key("m");
    tmux.run(&["send-keys", "-t", "t", "-l", "not this one"]);
    tmux.wait_until("the input line", |t| t.screen().contains("not this one"));
    tmux.key("Escape");
    tmux.wait_until("the input line to close", |t| {
        !t.screen().contains("not this one")
    });
    assert!(tmux.alternate_screen(), "Esc closed the line, not the view");
    let note = "guest slow since the deploy";
    tmux.key("m");
    tmux.run(&["send-keys", "-t", "t", "-l", note]);
    tmux.key("Enter");
    tmux.wait_until("the mark's confirmation", |t| {
        t.screen().contains(&format!("marked: {note}"))
    });
    thread::sleep(Duration::from_secs(2));
    tmux.key("D");
    tmux.wait_until("the dump's path", |t| {
        t.screen().contains("flight recording dumped to ")
    });
    let screen = tmux.screen();
    let path = screen
        .lines()
        .find_map(|l| l.split("dumped to ").nth(1))
        .map(|p| PathBuf::from(p.trim()))
        .unwrap();
    tmux.key("q");
    tmux.wait_until("kvmtop to quit", |t| !t.alternate_screen());

    let recording = Recording::open(&path).unwrap();
    assert!(
        recording.window_count() >= 2,
        "{}",
        recording.window_count()
    );
    let last = recording.window(recording.window_count() - 1).unwrap();
    assert!(last.vms.iter().any(|vm| vm.pid == guest.pid()));
    assert!(
        recording
            .events()
            .iter()
            .any(|e| matches!(&e.event, Event::Mark { text } if text.exact() == note)),
        "no mark in {:?}",
        recording.events()
    );
}
