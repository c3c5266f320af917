//! `cargo xtask bench`: kvmtop's per-event cost next to equivalent bpftrace programs, both
//! attached at the same time to the same busy guest, kvmtop's `kvm_exit`/`kvm_entry` logic through
//! `BPF_PROG_TEST_RUN`, and the agent's CPU time and memory. Then, phase by phase, its scheduling
//! programs next to `runqlat` (and split into the cost of unwatched and watched events), its block
//! programs next to `biolatency`, and its TLB program next to bpftrace (see `phases.rs`).

mod agent;
mod harness;
mod peer_tools;
mod peers;
mod phase_report;
mod phase_table;
mod phases;
mod progs;
mod report;
mod sampling;
mod split;
mod table;
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

pub fn run(seconds: u64) -> Result<()> {
    if !is_root() {
        bail!(
            "bench needs root: it changes kernel.bpf_stats_enabled and reads other processes' BPF \
             file descriptors. Run it from a root shell (e.g. `sudo -i`, then `cargo xtask bench`)."
        );
    }
    setup::ensure(Purpose::Test)?;
    let target_dir = util::target_dir()?;
    let phase = Phase::start("build kvmtop and the test-run harness runner");
    let built = util::build_kvmtop(true);
    let runner = built.as_ref().ok().map(|_| harness::build(&target_dir));
    phase.finish(built.is_ok());
    let binary = built?;
    let out_dir = target_dir.join("bench");
    std::fs::create_dir_all(&out_dir)?;

    interrupt::install();
    let _stats = StatsEnabled::turn_on()?;
    let phase = Phase::start(&format!("exits: benchmark ({seconds}s window)"));
    let before = load_average();
    let result = measure(&binary, &out_dir, seconds);
    let after = load_average();
    phase.finish(result.is_ok());
    let (sampled, (bpftrace, unavailable)) = result?;
    let phase = Phase::start("kvm_exit/kvm_entry logic through BPF_PROG_TEST_RUN");
    let test_run = match runner {
        Some(Ok(runner)) => harness::run(&runner),
        Some(Err(err)) => harness::TestRun::unavailable(format!("building the runner: {err:#}")),
        None => harness::TestRun::unavailable("not built".to_owned()),
    };
    phase.finish(test_run.unavailable.is_none());
    let window = report::Window {
        start: &sampled.start,
        end: &sampled.end,
        kvmtop: &sampled.kvmtop,
        bpftrace: &bpftrace,
        unavailable: &unavailable,
        length: sampled.length,
    };
    let mut report = report::build(&window, test_run, sampled.usage, sampled.lifetime);
    report.load_average = [before, after];
    report.phases = phases::run_all(&binary, &out_dir, seconds);
    report.sched_split = split::sched(&report.phases);
    table::print(&report);
    phase_table::print(&report.phases, &report.sched_split);
    let path = out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written to {}", path.display());
    Ok(())
}

/// bpftrace's program id → tracepoint, and why each peer left out is missing.
type Attached = (BTreeMap<u32, String>, BTreeMap<&'static str, String>);

/// The exits phase: a port-I/O guest, every bpftrace peer and kvmtop over the same window.
fn measure(binary: &Path, out_dir: &Path, seconds: u64) -> Result<(Sampled, Attached)> {
    println!("starting a port-I/O guest (a steady stream of exits)…");
    let _guest = vm::start(guests::GuestKind::PortIo, "bench-portio", true)?;
    let bpftrace = peers::start(out_dir)?;
    let sampled = sampling::snapshot(binary, out_dir, seconds, "snapshot")?;
    let attached = (bpftrace.tracepoints.clone(), bpftrace.unavailable.clone());
    // Stopped before the guest, as the other phases start from a quiet host.
    drop(bpftrace);
    Ok((sampled, attached))
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
