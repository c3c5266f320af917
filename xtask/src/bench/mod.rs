//! `cargo xtask bench`: what kvmtop costs a user, in one run. Its per-event cost next to
//! equivalent bpftrace programs, both attached at the same time to the same busy guest, and next
//! to an empty program of the same hook kind on the same hook (the floor, `floors.rs`); its
//! `kvm_exit`/`kvm_entry` logic through `BPF_PROG_TEST_RUN`, and the agent's CPU time and memory.
//! Then, phase by phase, its scheduling programs next to `runqlat` (and split into the cost of
//! unwatched and watched events), its block programs next to `biolatency`, and its TLB program
//! next to bpftrace (see `phases.rs`); the events its programs are skipped for with all those
//! peers attached at once (`contention.rs`); and a pinned guest's exits per second without and
//! with `kvmtop serve`, with the running agent's CPU and memory (`throughput.rs`).
//! `--scale` instead measures `kvmtop serve` on a host with 10 to 100 VMs (`scale/`).

mod agent;
mod contention;
mod cost_table;
mod floors;
mod harness;
mod peer_tools;
mod peers;
mod phase_report;
mod phase_table;
mod phases;
mod progs;
mod recording;
mod report;
mod sampling;
mod scale;
mod split;
mod table;
mod throughput;
mod vmms;
mod watched;
mod workload;

use std::{
    collections::BTreeMap,
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use sampling::Sampled;

use crate::{
    interrupt,
    setup::{self, Purpose},
    util::{self, Phase, cmd, is_root},
    vm,
};

const POLL: Duration = Duration::from_millis(200);

/// A part of the bench that runs alone.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// The guest's exit rate without and with kvmtop at each collection level.
    Throughput,
    /// `kvmtop record` beside the demo guests: bytes per VM-second and the recorder's CPU.
    Recording,
    /// The scheduling programs' two phases (host switches alone, then with busy guests) and
    /// the split of their cost into unwatched and watched events.
    Sched,
}

pub use scale::Options as ScaleOptions;

pub fn run(seconds: u64, only: Option<Only>) -> Result<()> {
    if !is_root() {
        bail!(
            "bench needs root: it changes kernel.bpf_stats_enabled and reads other processes' BPF \
             file descriptors. Run it from a root shell (e.g. `sudo -i`, then `cargo xtask bench`)."
        );
    }
    setup::ensure(Purpose::Test)?;
    let target_dir = util::target_dir()?;
    if only == Some(Only::Recording) {
        return recording_alone(&target_dir, seconds);
    }
    let phase = Phase::start("build kvmtop and the test-run and floor runners");
    let built = util::build_kvmtop(true);
    let runners = built.as_ref().ok().map(|_| harness::build(&target_dir));
    phase.finish(built.is_ok());
    let binary = built?;
    let out_dir = target_dir.join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let (harness_runner, floor_runner) = match runners {
        Some(Ok(runners)) => (Ok(runners.harness), Ok(runners.floors)),
        Some(Err(err)) => {
            let why = format!("building the runners: {err:#}");
            (Err(why.clone()), Err(why))
        }
        None => (Err("not built".to_owned()), Err("not built".to_owned())),
    };

    interrupt::install();
    let _stats = StatsEnabled::turn_on()?;
    let phase = Phase::start("hooks: where kvmtop's sources run (a 1 s snapshot)");
    let hooks = floors::probe(&binary, &out_dir).map_err(|err| format!("{err:#}"));
    if let Ok(hooks) = &hooks {
        let list: Vec<String> = hooks
            .iter()
            .map(|hook| format!("{} ({})", hook.event, hook.kind))
            .collect();
        table::print_wrapped("  kvmtop's hooks:", &list.join(", "));
    }
    phase.finish(hooks.is_ok());
    let setting = Setting {
        binary: &binary,
        out_dir: &out_dir,
        seconds,
        floor_runner: floor_runner.as_deref().map_err(String::as_str),
        hooks: hooks.as_deref().unwrap_or_default(),
    };
    match only {
        Some(Only::Throughput) => return throughput_alone(&binary, &out_dir, setting.hooks),
        Some(Only::Sched) => return sched_alone(&setting),
        Some(Only::Recording) | None => {}
    }
    let phase = Phase::start(&format!("exits: benchmark ({seconds}s window)"));
    let before = load_average();
    let result = measure(&setting);
    let after = load_average();
    phase.finish(result.is_ok());
    let (sampled, (bpftrace, unavailable), floor_ids) = result?;
    let phase = Phase::start("kvm_exit/kvm_entry logic through BPF_PROG_TEST_RUN");
    let test_run = match &harness_runner {
        Ok(runner) => harness::run(runner),
        Err(why) => harness::TestRun::unavailable(why.clone()),
    };
    phase.finish(test_run.unavailable.is_none());
    let window = report::Window {
        start: &sampled.start,
        end: &sampled.end,
        kvmtop: &sampled.kvmtop,
        bpftrace: &bpftrace,
        unavailable: &unavailable,
        floors: &floor_ids,
        length: sampled.length,
    };
    let mut report = report::build(&window, test_run, sampled.usage, sampled.lifetime);
    report.load_average = [before, after];
    report.hooks.clone_from(&hooks);
    report.phases = phases::run_all(&setting);
    report.sched_split = split::sched(&report.phases);
    let phase = Phase::start(&format!(
        "contention: kvmtop with bpftrace, runqlat and biolatency at once ({seconds}s window)"
    ));
    let contention = contention::run(&binary, &out_dir, seconds);
    phase.finish(contention.unavailable.is_none());
    report.contention = Some(contention);
    let phase = Phase::start(&format!(
        "throughput: a pinned port-I/O guest without and with kvmtop serve ({} pairs)",
        throughput::PAIRS
    ));
    let throughput = throughput::run(&binary, &out_dir, setting.hooks);
    phase.finish(throughput.unavailable.is_none());
    report.throughput = Some(throughput);
    report.recording =
        Some(recording_phase(&binary, &out_dir, seconds).map_err(|err| format!("{err:#}")));
    table::print(&report);
    phase_table::print(&report.phases, &report.sched_split);
    cost_table::print(&report);
    recording::print_outcome(report.recording.as_ref());
    let path = out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written to {}", path.display());
    Ok(())
}

/// `--scale`: kvmtop serve with many VMs; needs no BPF statistics, peers or floors.
pub fn run_scale(options: &ScaleOptions) -> Result<()> {
    if !is_root() {
        bail!(
            "bench --scale needs root: it starts KVM VMs, runs kvmtop and traces its system calls. \
             Run it from a root shell (e.g. `sudo -i`, then `cargo xtask bench --scale`)."
        );
    }
    setup::ensure(Purpose::Test)?;
    let binary = util::build_kvmtop_phase(true)?;
    let out_dir = util::target_dir()?.join("bench");
    std::fs::create_dir_all(&out_dir)?;
    scale::run(&binary, &out_dir, options)
}

/// `--only throughput`: the pairs, their table and `throughput.json`.
fn throughput_alone(binary: &Path, out_dir: &Path, hooks: &[floors::Hook]) -> Result<()> {
    let phase = Phase::start(&format!(
        "throughput: a pinned port-I/O guest without and with kvmtop serve ({} pairs)",
        throughput::PAIRS
    ));
    let throughput = throughput::run(binary, out_dir, hooks);
    phase.finish(throughput.unavailable.is_none());
    cost_table::print_throughput(&throughput);
    let path = out_dir.join("throughput.json");
    std::fs::write(&path, serde_json::to_string_pretty(&throughput)? + "\n")?;
    println!("written to {}", path.display());
    Ok(())
}

/// `--only sched`: the scheduling phases, their table and split, and `sched.json`.
fn sched_alone(setting: &Setting<'_>) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Sched {
        phases: Vec<phase_report::PhaseReport>,
        sched_split: split::SchedSplit,
    }
    let phases = phases::run_sched(setting);
    let sched_split = split::sched(&phases);
    phase_table::print(&phases, &sched_split);
    let path = setting.out_dir.join("sched.json");
    let report = Sched {
        phases,
        sched_split,
    };
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written to {}", path.display());
    Ok(())
}

/// `--only recording`: the recording's cost and `recording.json`.
/// Needs neither the runners nor BPF statistics.
fn recording_alone(target_dir: &Path, seconds: u64) -> Result<()> {
    let binary = util::build_kvmtop_phase(true)?;
    let out_dir = target_dir.join("bench");
    std::fs::create_dir_all(&out_dir)?;
    interrupt::install();
    let cost = recording_phase(&binary, &out_dir, seconds)?;
    recording::print(&cost);
    let path = out_dir.join("recording.json");
    std::fs::write(&path, serde_json::to_string_pretty(&cost)? + "\n")?;
    println!("written to {}", path.display());
    Ok(())
}

fn recording_phase(
    binary: &Path,
    out_dir: &Path,
    seconds: u64,
) -> Result<recording::RecordingCost> {
    let phase = Phase::start(&format!(
        "recording: kvmtop record beside the demo guests ({seconds}s)"
    ));
    let cost = recording::run(binary, out_dir, seconds);
    phase.finish(cost.is_ok());
    cost
}

/// What every measured window needs: kvmtop, where to write, how long, and the floors.
pub struct Setting<'a> {
    pub binary: &'a Path,
    pub out_dir: &'a Path,
    pub seconds: u64,
    /// The floor runner, or why it is missing.
    pub floor_runner: Result<&'a Path, &'a str>,
    /// Where kvmtop's sources run.
    pub hooks: &'a [floors::Hook],
}

/// bpftrace's program id → tracepoint, and why each peer left out is missing.
type Attached = (BTreeMap<u32, String>, BTreeMap<&'static str, String>);

/// The exits phase: a port-I/O guest, every bpftrace peer, the floors and kvmtop over the same
/// window.
fn measure(setting: &Setting<'_>) -> Result<(Sampled, Attached, floors::FloorIds)> {
    println!("starting a port-I/O guest (a steady stream of exits)…");
    let _guest = vm::start(guests::GuestKind::PortIo, "bench-portio", true)?;
    let bpftrace = peers::start(setting.out_dir)?;
    let floors = floors::for_window(setting.floor_runner, setting.hooks);
    let sampled = sampling::snapshot(setting.binary, setting.out_dir, setting.seconds, "snapshot")?;
    let attached = (bpftrace.tracepoints.clone(), bpftrace.unavailable.clone());
    // Stopped before the guest, as the other phases start from a quiet host.
    let floor_ids = floors.attached.clone();
    drop(floors);
    drop(bpftrace);
    Ok((sampled, attached, floor_ids))
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

/// Turns BPF run-time statistics on and restores the previous setting when dropped.
struct StatsEnabled {
    previous: String,
}

impl StatsEnabled {
    const KEY: &str = "kernel.bpf_stats_enabled";

    fn turn_on() -> Result<Self> {
        let previous = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .context("reading kernel.bpf_stats_enabled")?
            .trim()
            .to_owned();
        util::run(cmd("sysctl").args(["-w", &format!("{}=1", Self::KEY)]))?;
        Ok(Self { previous })
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        if self.previous != "1" {
            let _ =
                util::run(cmd("sysctl").args(["-w", &format!("{}={}", Self::KEY, self.previous)]));
        }
    }
}

/// A child stopped when dropped: SIGINT first (bpftrace prints its maps and detaches).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our un-reaped child.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
