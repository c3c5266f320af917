//! Shared by the integration tests: skipping with a reason, one guest at a time, and counting
//! tracepoints with `perf stat` as the independent observer.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use guests::GuestKind;

/// Generous: `SeaBIOS` start-up under the instruction emulator takes ~1.5 s, and the machine may
/// be busy with other builds.
pub const START: Duration = Duration::from_mins(1);

/// Guests are CPU-bound and this machine kind has 2 CPUs: tests that measure rates run one guest
/// at a time so they do not halve each other's numbers.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// `true` (after printing `SKIP <test>: <reason>`) when this machine cannot run `kind`, or when
/// the test needs `perf` and root and does not have them.
pub fn skip(test: &str, kind: GuestKind, needs_perf: bool) -> bool {
    let mut reason = guests::preflight_kind(kind).err();
    if reason.is_none() && needs_perf {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            reason = Some("counting kvm/block tracepoints with perf needs root".into());
        } else if !on_path("perf") {
            reason = Some("perf is not installed (Debian package \"linux-perf\")".into());
        }
    }
    match reason {
        Some(reason) => {
            eprintln!("SKIP {test}: {reason}");
            // `cargo xtask test` counts and lists skips from this file; one write per line
            // because tests append to it in parallel.
            if let Some(path) = std::env::var_os("KVMTOP_SKIP_LOG") {
                use std::io::Write as _;
                let mut log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("opening the skip log");
                log.write_all(format!("{test}\t{reason}\n").as_bytes())
                    .expect("writing the skip log");
            }
            true
        }
        None => false,
    }
}

/// A tracepoint to count, optionally with a perf filter on its fields.
pub struct Event<'a> {
    pub name: &'a str,
    pub filter: Option<&'a str>,
}

pub const fn event(name: &str) -> Event<'_> {
    Event { name, filter: None }
}

pub const fn filtered<'a>(name: &'a str, filter: &'a str) -> Event<'a> {
    Event {
        name,
        filter: Some(filter),
    }
}

/// Whose events perf counts.
#[derive(Clone, Copy)]
pub enum Target {
    /// Every thread of a process.
    Process(u32),
    /// One thread.
    Thread(u32),
}

/// Counts `events` over `window` with `perf stat`, returning per-second rates in the same order.
pub fn rates(target: Target, events: &[Event<'_>], window: Duration) -> Vec<f64> {
    let mut perf = Command::new("perf");
    perf.args(["stat", "-x", ","]);
    for event in events {
        perf.args(["-e", event.name]);
        if let Some(filter) = event.filter {
            perf.args(["--filter", filter]);
        }
    }
    match target {
        Target::Process(pid) => perf.args(["-p", &pid.to_string()]),
        Target::Thread(tid) => perf.args(["-t", &tid.to_string()]),
    };
    perf.args(["--", "sleep", &format!("{}", window.as_secs_f64())]);
    let out = perf.output().expect("running perf");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{perf:?} failed:\n{text}");
    // CSV lines: `count,unit,event,run-time,percent,,` in the order the events were given.
    let counts: Vec<f64> = text
        .lines()
        .filter(|line| {
            events
                .iter()
                .any(|e| line.split(',').nth(2) == Some(e.name))
        })
        .map(|line| {
            let count = line.split(',').next().unwrap_or_default();
            // A thread that never ran during the window is reported as "<not counted>".
            count.parse::<f64>().unwrap_or(0.0)
        })
        .collect();
    assert_eq!(
        counts.len(),
        events.len(),
        "unexpected perf output:\n{text}"
    );
    counts
        .into_iter()
        .map(|count| count / window.as_secs_f64())
        .collect()
}

/// Like [`rates`], retried up to three windows until the first event reaches `min` per second:
/// on a loaded host (other test binaries' guests and stress-ng on two CPUs) a guest thread can be
/// starved for a whole window. Returns the window with the highest first rate.
pub fn rates_reaching(
    target: Target,
    events: &[Event<'_>],
    window: Duration,
    min: f64,
) -> Vec<f64> {
    let mut best = rates(target, events, window);
    for _ in 1..3 {
        if best[0] >= min {
            break;
        }
        let again = rates(target, events, window);
        if again[0] > best[0] {
            best = again;
        }
    }
    best
}

/// The one-letter state of a process or thread (`R`, `S`, `T`, `Z`, …), `None` if it is gone.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// `comm` of a thread of `pid`.
pub fn thread_name(pid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// Targets of all `/proc/PID/fd` links.
pub fn fd_links(pid: u32) -> Vec<String> {
    let mut links: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("listing fds")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect();
    links.sort();
    links
}

/// The nice value of a thread of `pid` (field 19 of its `stat`), `None` if it is gone.
pub fn nice(pid: u32, tid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // Fields after the command name start with the state, field 3.
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(19 - 3)?
        .parse()
        .ok()
}
