//! End to end: an incident recorded with real QEMU/KVM guests, then reported.
//!
//! Two port-I/O guests run, each pinned to its own CPU, under `kvmtop record`. Half-way through,
//! a CPU hog at higher priority starts on guest B's CPU and a mark is put on the timeline from
//! another process (`kvmtop mark`); at the end the recorder is killed with SIGKILL. Then the
//! recording must open with at most one window lost, `kvmtop report --format json` must rank
//! B's steal rise first with its onset within two windows of the hog's start, and show the
//! mark; and the steal recorded for B must agree with the kernel's own run-queue accounting of
//! its vCPU thread (`/proc/PID/task/TID/schedstat`) over the incident, and B's contender lists
//! (read every 5 s or so) must name the hog once their span lies after its start. Last, `kvmtop replay`
//! runs in a real terminal (tmux), is stepped to the mark with its keys, and must show the
//! mark's time, and B's steal low before it and high after, as `replay --format json` has them.

mod support;

use std::{
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant, SystemTime},
};

use kvmtop::recording::{events::Event, playback::Recording, store::unix_ns};
use support::{Observed, tmux::Tmux};

/// Windows before and after the hog starts.
const HALF: Duration = Duration::from_secs(30);
/// Recorded steal vs the kernel's run-queue accounting, as an absolute share.
const STEAL_TOLERANCE: f64 = 0.08;
/// The guests run well above ordinary work (nice -10: about nine times its CPU share), so that
/// other load on a busy host, which the hog pushes from B's CPU to A's, costs them far less
/// than the hog costs B.
const GUEST_NICE: i32 = -10;
/// The hog runs far above the guests (nice -19 against -10: about 88 % of the CPU against B).
const HOG_NICE: &str = "-19";
/// B's steal rises by at least this much, whatever else the host runs.
const MIN_STEAL_RISE: f64 = 0.3;
const SECOND_NS: u64 = 1_000_000_000;

/// With autogroup scheduling (`kernel.sched_autogroup_enabled`), nice values count only within
/// a session's group, and each group gets an equal share of a CPU: a build in another shell
/// would take as much of the guests' CPUs as the whole test. The test's group (the test, its
/// guests, kvmtop and the hog) is raised as far as the guests for the scenario, and put back
/// after.
struct RaisedAutogroup {
    was: Option<String>,
}

impl RaisedAutogroup {
    fn to(nice: i32) -> Self {
        let path = "/proc/self/autogroup";
        // "/autogroup-115 nice 0"
        let was = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().nth(2).map(str::to_owned));
        if was.is_some() {
            std::fs::write(path, nice.to_string()).expect("raising the test's autogroup");
        }
        Self { was }
    }
}

impl Drop for RaisedAutogroup {
    fn drop(&mut self) {
        if let Some(was) = &self.was {
            let _ = std::fs::write("/proc/self/autogroup", was);
        }
    }
}

/// A port-I/O guest at [`GUEST_NICE`].
fn start_guest(name: &str) -> (guests::Guest, Vec<guests::VcpuThread>) {
    let guest = guests::Guest::start(
        &guests::GuestSpec::new(guests::GuestKind::PortIo)
            .name(name)
            .debug_threads(true)
            .nice(GUEST_NICE),
    )
    .expect("starting a port-I/O guest");
    let vcpus = guest
        .wait_for_vcpus(support::START_LIMIT)
        .expect("port-I/O vCPUs");
    (guest, vcpus)
}

fn pin_process(pid: u32, cpu: u32) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running taskset");
    assert!(status.success(), "taskset -a -p -c {cpu} {pid} failed");
}

/// The thread's run-queue wait so far, in ns (`schedstat`, second field).
fn run_delay_ns(pid: u32, tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .expect("schedstat")
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("run_delay in schedstat")
}

fn rfc3339(time_ns: u64) -> String {
    kvmtop::recording::playback::format_time(time_ns)
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, read top to bottom"
)]
fn a_recorded_incident_is_reported_with_its_onset_and_mark() {
    const TEST: &str = "a_recorded_incident_is_reported_with_its_onset_and_mark";
    if let Some(reason) = support::missing_prerequisite(true, &["taskset", "stress-ng", "nice"]) {
        return support::skip(TEST, &reason);
    }
    let online = kvmtop::host::topology::Topology::read(std::path::Path::new("/sys"))
        .expect("host topology")
        .online()
        .iter()
        .copied()
        .collect::<Vec<u32>>();
    let [cpu_a, cpu_b, ..] = online[..] else {
        return support::skip(TEST, "needs two online CPUs");
    };
    let _raised = RaisedAutogroup::to(GUEST_NICE);
    let (a, _) = start_guest("kvmtop-rec-a");
    let (b, b_vcpus) = start_guest("kvmtop-rec-b");
    pin_process(a.pid(), cpu_a);
    pin_process(b.pid(), cpu_b);
    let b_tid = b_vcpus[0].tid;

    let dir = tempfile::tempdir().unwrap();
    let recording_dir = dir.path().join("incident");
    let control_dir = dir.path().join("control");
    let mut command = support::kvmtop();
    command
        .arg("record")
        .arg("-o")
        .arg(&recording_dir)
        .arg("--control-dir")
        .arg(&control_dir)
        .args(["--interval", "1"]);
    let mut recorder = Observed::spawn(command);
    recorder.wait_for("recording a window", support::START_LIMIT);
    thread::sleep(HALF);

    let hog_start_ns = unix_ns(SystemTime::now());
    // In a session of its own, so that under autogroup scheduling it takes B's CPU without
    // taking the share of the test's group, A's included, on A's CPU. The session is made
    // before exec, so it exists once `spawn` returns and its group can be raised.
    let mut hog = Command::new("taskset");
    hog.args(["-c", &cpu_b.to_string(), "nice", "-n", HOG_NICE])
        .args(["stress-ng", "--cpu", "1", "--timeout", "300"]);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        hog.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let hog = Observed::spawn(hog);
    let hog_group = format!("/proc/{}/autogroup", hog.child.id());
    if std::path::Path::new(&hog_group).exists() {
        std::fs::write(&hog_group, HOG_NICE).expect("raising the hog's autogroup");
    }
    let mark_text = format!("hog started on CPU {cpu_b}");
    let marked = support::kvmtop()
        .arg("mark")
        .arg("--control-dir")
        .arg(&control_dir)
        .arg(&mark_text)
        .output()
        .expect("running kvmtop mark");
    assert!(
        marked.status.success(),
        "kvmtop mark: {}",
        String::from_utf8_lossy(&marked.stderr)
    );

    // The kernel's view of B's vCPU over most of the incident, away from both of its ends.
    thread::sleep(Duration::from_secs(5));
    let (t1, wait1) = (unix_ns(SystemTime::now()), run_delay_ns(b.pid(), b_tid));
    let t1_instant = Instant::now();
    thread::sleep(HALF.saturating_sub(Duration::from_secs(8)));
    let (t2, wait2) = (unix_ns(SystemTime::now()), run_delay_ns(b.pid(), b_tid));
    #[allow(clippy::cast_precision_loss)]
    let kernel_steal = (wait2 - wait1) as f64 / t1_instant.elapsed().as_nanos() as f64;
    thread::sleep(Duration::from_secs(3));
    recorder.child.kill().expect("SIGKILL to the recorder");
    let killed_ns = unix_ns(SystemTime::now());
    let _ = recorder.child.wait();
    drop(hog);

    // The recording opens; damage is at most a torn tail; at most one window is lost.
    let recording = Recording::open(&recording_dir).expect("opening the recording");
    for problem in recording.problems() {
        println!("problem: {problem}");
        assert!(problem.contains("no complete frame"), "{problem}");
    }
    let times: Vec<u64> = recording.window_times().collect();
    // About one per second; fewer when sampling is slow (their coverage is checked below).
    assert!(times.len() >= 30, "{} windows", times.len());
    let snapshots: Vec<_> = (0..times.len())
        .map(|i| recording.window(i).expect("reading a window"))
        .collect();
    // Each window starts where the one before ended: none is missing. (A window may last
    // longer than the interval when sampling is slow on a loaded host.)
    for pair in snapshots.windows(2) {
        let end = pair[0].window.start_unix_seconds + pair[0].window.duration_seconds;
        let start = pair[1].window.start_unix_seconds;
        assert!(
            (start - end).abs() < 0.01,
            "a window is missing between {end:.3} and {start:.3} (unix seconds)"
        );
    }
    // At the kill, one window was being sampled and at most one more may be lost: the last
    // one recorded ends less than two windows (of the longest length seen) before it.
    let last = *times.last().unwrap();
    let longest = snapshots
        .iter()
        .map(|s| s.window.duration_seconds)
        .fold(0.0, f64::max);
    #[allow(clippy::cast_precision_loss)]
    let last_before_kill = (killed_ns - last) as f64 / 1e9;
    assert!(
        last_before_kill < 2.0 * longest + 0.5,
        "the last window ends at {}, {last_before_kill:.1} s before the kill (windows last up to {longest:.1} s)",
        rfc3339(last),
    );

    // Steal as recorded over the kernel's span agrees with the kernel's accounting.
    let mut steal_windows = Vec::new();
    for (snapshot, &time) in snapshots.iter().zip(&times) {
        // Windows wholly inside [t1, t2].
        if time > t2 || time < t1 + SECOND_NS {
            continue;
        }
        let vm = snapshot.vms.iter().find(|vm| vm.pid == b.pid()).expect("B");
        steal_windows.push(vm.families.sched.vcpus.steal.expect("B's steal"));
    }
    #[allow(clippy::cast_precision_loss)]
    let recorded_steal = steal_windows.iter().sum::<f64>() / steal_windows.len() as f64;
    println!(
        "steal of B over the incident: recorded {recorded_steal:.3} ({} windows), kernel {kernel_steal:.3}",
        steal_windows.len()
    );
    assert!(
        (recorded_steal - kernel_steal).abs() <= STEAL_TOLERANCE,
        "recorded steal {recorded_steal:.3} vs the kernel's {kernel_steal:.3}"
    );

    contenders_cover_a_span_and_name_the_hog(&snapshots, &times, b.pid(), hog_start_ns, longest);

    // The report ranks B's steal first, from when the hog started, and shows the mark.
    let output = support::kvmtop()
        .arg("report")
        .arg(&recording_dir)
        .args(["--format", "json", "--from"])
        .arg(rfc3339(hog_start_ns - 5 * SECOND_NS))
        .output()
        .expect("running kvmtop report");
    assert!(
        output.status.success(),
        "kvmtop report: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // Among this scenario's guests: on a shared host, VMs of other tests may be recorded too.
    let ours: Vec<&serde_json::Value> = report["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["entity"]["pid"] == a.pid() || d["entity"]["pid"] == b.pid())
        .collect();
    for d in ours.iter().take(5) {
        println!(
            "deviation: {} {} {} {:.4} -> {:.4} score {:.2}",
            d["entity"]["kind"],
            d["entity"]["pid"],
            d["figure"]["name"],
            d["baseline"].as_f64().unwrap_or_default(),
            d["incident"].as_f64().unwrap_or_default(),
            d["score"].as_f64().unwrap_or_default()
        );
    }
    let first = ours.first().expect("a deviation of the scenario's guests");
    println!("first deviation: {first}");
    assert_eq!(first["entity"]["pid"], b.pid(), "{first}");
    assert_eq!(first["figure"]["name"], "steal", "{first}");
    let rise = first["incident"].as_f64().unwrap() - first["baseline"].as_f64().unwrap();
    assert!(rise >= MIN_STEAL_RISE, "steal rose by only {rise:.3}");
    let onset: jiff::Timestamp = first["onset"].as_str().unwrap().parse().unwrap();
    let onset_ns = u64::try_from(onset.as_nanosecond()).unwrap();
    #[allow(clippy::cast_precision_loss)]
    let delay = (i128::from(onset_ns) - i128::from(hog_start_ns)) as f64 / 1e9;
    println!("onset {delay:.2} s after the hog started");
    assert!(
        (0.0..=2.1).contains(&delay),
        "onset {delay:.2} s after the hog started, not within two windows"
    );
    let marks: Vec<&serde_json::Value> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "mark")
        .collect();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0]["text"], mark_text);
    assert!(
        recording
            .events()
            .iter()
            .any(|e| matches!(&e.event, Event::Mark { text } if text.exact() == mark_text))
    );
    let bytes: u64 = recording.store().segments().iter().map(|s| s.len).sum();
    let vms = snapshots[0].vms.len();
    #[allow(clippy::cast_precision_loss)]
    let per_vm_second = bytes as f64 / (times.len() * vms) as f64;
    println!(
        "{} windows of {vms} VMs, {bytes} bytes on disk: {per_vm_second:.0} bytes per VM-second",
        times.len()
    );
    // `a` is kept running until here so that both VMs are recorded throughout.
    drop(a);
    let pid_of_b = b.pid();
    drop(b);
    replay_steps_to_the_mark(&recording_dir, pid_of_b, &mark_text);
}

/// The contender lists of a recording (the live modes read the contender map about every 5 s
/// and repeat the last list in between): each covers a span of several windows, a list changes
/// only when the map is read again, and once a span lies wholly after the hog started, the hog
/// is among what B's vCPU waited behind.
fn contenders_cover_a_span_and_name_the_hog(
    snapshots: &[kvmtop::model::Snapshot],
    times: &[u64],
    b_pid: u32,
    hog_start_ns: u64,
    longest: f64,
) {
    let of_b = |snapshot: &kvmtop::model::Snapshot| {
        let vm = snapshot.vms.iter().find(|vm| vm.pid == b_pid).expect("B");
        (
            vm.families.sched.contenders.clone(),
            vm.families.sched.contenders_seconds,
        )
    };
    let lists: Vec<_> = snapshots.iter().map(of_b).collect();
    // The first two readings both read the map, the first window's list is held until the
    // seventh reading reads it again; from then on a list covers five readings.
    let spans: Vec<f64> = lists.iter().skip(6).map(|(_, span)| *span).collect();
    assert!(
        spans
            .iter()
            .all(|&span| span >= 4.0 && span <= 5.0 * longest + 0.5),
        "contender spans {spans:?} (windows up to {longest:.1} s)"
    );
    let changes = lists.windows(2).filter(|pair| pair[0] != pair[1]).count();
    assert!(
        changes <= lists.len() / 4 + 2,
        "the contender list changed {changes} times in {} windows",
        lists.len()
    );
    // Windows whose span began a second or more after the hog started: the last half minute
    // holds at least two spans of five windows, fewer when sampling is slow on a loaded host.
    let mut checked = 0;
    for ((contenders, span), &end) in lists.iter().zip(times) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let span_ns = (span * 1e9) as u64;
        if end.saturating_sub(span_ns) < hog_start_ns + SECOND_NS {
            continue;
        }
        checked += 1;
        // Listed, not necessarily first: on a busy host, tasks that switch often hand B its CPU
        // more often than the hog, which gives it up only when its slice ends.
        assert!(
            contenders
                .iter()
                .any(|c| c.name.exact().starts_with("stress-ng") && c.share > 0.1),
            "the hog is not among B's contenders after it started: {contenders:?}"
        );
    }
    assert!(
        checked >= 4,
        "{checked} windows with a span after the hog started"
    );
}

/// Windows either side of the mark's at which B's steal is compared: away from the window the
/// hog started in, which is only partly loaded.
const REPLAY_STEPS: usize = 3;

/// `kvmtop replay DIR` in a 160×40 terminal: `n` steps through the timeline until the mark's
/// window is shown, whose time and text the header must carry; then ← and → go
/// [`REPLAY_STEPS`] windows before and after it, where B's STEAL cell must show what
/// `kvmtop replay --format json` has for that window (to the cell's rounding: half a point),
/// low before the hog and high after. Then it plays to the end, and pauses there.
fn replay_steps_to_the_mark(recording_dir: &Path, b_pid: u32, mark_text: &str) {
    const PART: &str = "a_recorded_incident_is_reported_with_its_onset_and_mark (replay view)";
    if let Some(reason) = support::missing_prerequisite(false, &["tmux"]) {
        return support::skip(PART, &reason);
    }
    let exported = exported_steal(recording_dir, b_pid);
    let recording = Recording::open(recording_dir).unwrap();
    let times: Vec<u64> = recording.window_times().collect();
    assert_eq!(exported.len(), times.len(), "every window exported");
    let mark_ns = recording
        .events()
        .iter()
        .find(|e| matches!(&e.event, Event::Mark { .. }))
        .expect("the mark")
        .time_ns;
    // The window the mark falls in: the first to end at or after it.
    let mark_window = times.partition_point(|&t| t < mark_ns);
    assert!(
        mark_window >= REPLAY_STEPS && mark_window + REPLAY_STEPS < times.len(),
        "mark in window {mark_window} of {}",
        times.len()
    );

    let tmux = start_replay(recording_dir);
    // "… — window 12 of 57" at the end of the banner: the window shown, from 0.
    let total = times.len().to_string();
    let shown = |t: &Tmux| -> Option<usize> {
        let screen = t.screen();
        let (_, place) = screen.lines().next()?.rsplit_once("— window ")?;
        let (number, of) = place.trim_end().split_once(" of ")?;
        (of == total).then_some(number.parse::<usize>().ok()? - 1)
    };
    tmux.wait_until("the replay on its first window", |t| {
        t.alternate_screen() && t.screen().contains(" REPLAY ") && shown(t) == Some(0)
    });
    // `n` until the mark's window: other events (other tests' VMs, advice) may come first.
    let mut at = 0;
    while at < mark_window {
        tmux.key("n");
        tmux.wait_until("the next event's window", |t| {
            shown(t).is_some_and(|w| w > at)
        });
        at = shown(&tmux).unwrap();
    }
    assert_eq!(at, mark_window, "n went past the mark");
    let mark_time = rfc3339(mark_ns);
    // "this window: 12:31:04.512  mark: hog started on CPU 1", time of day as recorded.
    let expected = format!("this window: {}  mark: {mark_text}", &mark_time[11..23]);
    let recorded = format!(
        "recorded {} {} UTC",
        &rfc3339(times[mark_window])[..10],
        &rfc3339(times[mark_window])[11..19]
    );
    let screen = tmux.screen();
    println!("replay on the mark's window:\n{screen}");
    assert!(
        screen.contains(&expected),
        "{expected:?} not shown:\n{screen}"
    );
    assert!(
        screen.contains(&recorded),
        "{recorded:?} not shown:\n{screen}"
    );

    let steal_at = |key: &str, presses: usize, window: usize| -> f64 {
        for _ in 0..presses {
            tmux.key(key);
        }
        tmux.wait_until(&format!("window {}", window + 1), |t| {
            shown(t) == Some(window)
        });
        let screen = tmux.screen();
        let shown_steal = steal_cell(&screen, b_pid)
            .unwrap_or_else(|| panic!("no STEAL cell for pid {b_pid}:\n{screen}"));
        let exported = exported[window];
        println!(
            "window {}: B's steal shown {shown_steal}%, exported {exported:.2}%",
            window + 1
        );
        assert!(
            (shown_steal - exported).abs() <= 0.5 + 1e-6,
            "window {}: STEAL shows {shown_steal}%, the export has {exported:.2}%:\n{screen}",
            window + 1
        );
        shown_steal
    };
    let before = steal_at("Left", REPLAY_STEPS, mark_window - REPLAY_STEPS);
    let after = steal_at("Right", 2 * REPLAY_STEPS, mark_window + REPLAY_STEPS);
    assert!(
        after - before >= MIN_STEAL_RISE * 100.0,
        "B's steal shown {before}% before the mark and {after}% after"
    );
    // Played at 4× from here, the rest of the recording passes in a few seconds, and the last
    // window pauses the replay rather than ending it.
    tmux.key("+");
    tmux.key("+");
    tmux.key("Space");
    tmux.wait_until("playing at 4×", |t| t.screen().contains("▶ playing 4×"));
    tmux.wait_until("the last window, paused", |t| {
        shown(t) == Some(times.len() - 1) && t.screen().contains("⏸ paused 4×")
    });
    tmux.key("q");
    tmux.wait_until("replay to leave the alternate screen", |t| {
        !t.alternate_screen()
    });
}

/// `kvmtop replay DIR` in a 160×40 terminal of its own.
fn start_replay(recording_dir: &Path) -> Tmux {
    let tmux = Tmux::start_sized(160, 40);
    tmux.type_line(&format!(
        "{} replay {}",
        env!("CARGO_BIN_EXE_kvmtop"),
        recording_dir.display()
    ));
    tmux
}

/// The steal of `pid`'s vCPUs in each window as `kvmtop replay --format json` has it, in
/// percent.
fn exported_steal(recording_dir: &Path, pid: u32) -> Vec<f64> {
    let exported = support::kvmtop()
        .arg("replay")
        .arg(recording_dir)
        .args(["--format", "json"])
        .output()
        .expect("running kvmtop replay --format json");
    assert!(exported.status.success(), "kvmtop replay --format json");
    String::from_utf8(exported.stdout)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(index, line)| {
            let window: serde_json::Value = serde_json::from_str(line).unwrap();
            let vm = window["vms"]
                .as_array()
                .unwrap()
                .iter()
                .find(|vm| vm["pid"] == pid)
                .unwrap_or_else(|| panic!("pid {pid} in exported window {index}"))
                .clone();
            vm.pointer("/sched/vcpus/steal")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or_else(|| panic!("steal in exported window {index}: {vm}"))
                * 100.0
        })
        .collect()
}

/// B's STEAL cell, in percent: the text under the STEAL heading in the row with B's pid.
fn steal_cell(screen: &str, pid: u32) -> Option<f64> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let heading: Vec<char> = "STEAL".chars().collect();
    let (header, column) = lines.iter().enumerate().find_map(|(i, line)| {
        line.windows(heading.len())
            .position(|w| w == heading.as_slice())
            .map(|c| (i, c))
    })?;
    let pid = pid.to_string();
    let row = lines[header + 1..].iter().find(|line| {
        let text: String = line.iter().collect();
        text.split_whitespace().any(|cell| cell == pid)
    })?;
    // The cell is the word under the heading, whichever way the column aligns its numbers.
    let under = (column..column + heading.len())
        .find(|&c| row.get(c).is_some_and(|c| !c.is_whitespace()))?;
    let start = (0..=under)
        .rev()
        .take_while(|&c| !row[c].is_whitespace())
        .last()?;
    let cell: String = row[start..]
        .iter()
        .take_while(|c| !c.is_whitespace())
        .collect();
    cell.strip_suffix('%')?.parse().ok()
}
