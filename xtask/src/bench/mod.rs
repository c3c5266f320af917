//! `cargo xtask bench`: kvmtop's per-event cost next to an equivalent bpftrace program, both
//! attached at the same time to the same busy guest, plus the agent's CPU time and memory.

mod agent;
mod progs;
mod report;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    interrupt,
    setup::{self, Purpose},
    util::{self, Phase, cmd, is_root},
    vm,
};

/// Counts the same events kvmtop's exit programs count, keyed the same way.
const BPFTRACE_PROGRAM: &str = "tracepoint:kvm:kvm_userspace_exit { @[pid, tid, args->reason] = count(); } \
     tracepoint:kvm:kvm_exit { @[pid, tid, args->exit_reason] = count(); }";
const POLL: Duration = Duration::from_millis(200);

pub fn run(seconds: u64) -> Result<()> {
    if !is_root() {
        bail!(
            "bench needs root: it changes kernel.bpf_stats_enabled and reads other processes' BPF \
             file descriptors. Run it from a root shell (e.g. `sudo -i`, then `cargo xtask bench`)."
        );
    }
    setup::ensure(Purpose::Test)?;
    let phase = Phase::start("build kvmtop");
    let built = util::build_kvmtop(true);
    phase.finish(built.is_ok());
    let binary = built?;
    let out_dir = util::target_dir()?.join("bench");
    std::fs::create_dir_all(&out_dir)?;

    interrupt::install();
    let phase = Phase::start(&format!("benchmark ({seconds}s window)"));
    let result = measure(&binary, &out_dir, seconds);
    phase.finish(result.is_ok());
    let report = result?;
    report::print(&report);
    let path = out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written to {}", path.display());
    Ok(())
}

fn measure(binary: &Path, out_dir: &Path, seconds: u64) -> Result<report::Report> {
    println!("starting a port-I/O guest (a steady stream of exits)…");
    let _guest = vm::start(guests::GuestKind::PortIo, "bench-portio", true)?;
    let _stats = StatsEnabled::turn_on()?;

    let mut bpftrace = cmd("bpftrace");
    bpftrace
        .args(["-e", BPFTRACE_PROGRAM])
        .stdout(File::create(out_dir.join("bpftrace.out"))?);
    util::echo(&bpftrace);
    println!(
        "  (bpftrace may say it cannot raise RLIMIT_MEMLOCK: harmless, kernels since 5.11 do not need it)"
    );
    let mut bpftrace = Killed(bpftrace.spawn().context("starting bpftrace")?);
    let bpftrace_pid = bpftrace.0.id();
    let bpftrace_ids = wait_for_programs(bpftrace_pid, 2, &mut bpftrace.0)?;

    let mut snapshot = cmd(binary);
    snapshot
        .args([
            "snapshot",
            "--duration",
            &seconds.to_string(),
            "--format",
            "json",
        ])
        .stdout(File::create(out_dir.join("snapshot.json"))?);
    util::echo(&snapshot);
    let started = Instant::now();
    let mut kvmtop = Killed(snapshot.spawn().context("starting kvmtop")?);
    let samples = sample_until_exit(&mut kvmtop.0)?;
    let status = kvmtop.0.wait()?;
    if !status.success() {
        bail!("kvmtop snapshot exited with {status}");
    }
    drop(bpftrace);

    let (first, last) = window(&samples.polls).context(
        "kvmtop's programs were never seen loaded; did it attach anything? (see its output above)",
    )?;
    let kvmtop_ids = &samples.polls[last].kvmtop;
    Ok(report::build(
        &report::Window {
            start: &samples.polls[first].progs,
            end: &samples.polls[last].progs,
            kvmtop: kvmtop_ids,
            bpftrace: &bpftrace_ids,
            length: samples.polls[last].at - samples.polls[first].at,
        },
        samples.usage,
        samples.last_usage_at.saturating_duration_since(started),
    ))
}

/// Waits until `pid` holds at least `count` programs; returns their ids.
fn wait_for_programs(pid: u32, count: usize, child: &mut Child) -> Result<BTreeSet<u32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        interrupt::bail_if_interrupted()?;
        if let Some(status) = child.try_wait()? {
            bail!("bpftrace exited early with {status} (see its messages above)");
        }
        let ids = progs::owned_by(pid, &progs::sample()?);
        if ids.len() >= count {
            return Ok(ids);
        }
        if Instant::now() > deadline {
            bail!("bpftrace did not attach its programs within 30 s");
        }
        std::thread::sleep(POLL);
    }
}

struct Poll {
    at: Instant,
    progs: BTreeMap<u32, progs::Prog>,
    kvmtop: BTreeSet<u32>,
}

struct Samples {
    polls: Vec<Poll>,
    usage: agent::Usage,
    last_usage_at: Instant,
}

/// Polls program statistics and the agent's usage until it exits. The agent's programs vanish
/// when it does, so the last poll that still sees them ends the window.
fn sample_until_exit(kvmtop: &mut Child) -> Result<Samples> {
    let pid = kvmtop.id();
    let mut samples = Samples {
        polls: Vec::new(),
        usage: agent::Usage::default(),
        last_usage_at: Instant::now(),
    };
    while kvmtop.try_wait()?.is_none() {
        if interrupt::interrupted() {
            let _ = kvmtop.kill();
            bail!("interrupted");
        }
        let progs = progs::sample()?;
        let owned = progs::owned_by(pid, &progs);
        if let Some(usage) = agent::read(pid) {
            samples.usage = usage;
            samples.last_usage_at = Instant::now();
        }
        if !owned.is_empty() {
            samples.polls.push(Poll {
                at: Instant::now(),
                progs,
                kvmtop: owned,
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(samples)
}

/// The first and last polls that see kvmtop's full set of programs. It attaches them one by one
/// at start-up and releases them one by one at exit, so polls at either end may see only some.
fn window(polls: &[Poll]) -> Option<(usize, usize)> {
    let full = &polls.iter().max_by_key(|poll| poll.kvmtop.len())?.kvmtop;
    let first = polls.iter().position(|poll| &poll.kvmtop == full)?;
    let last = polls.iter().rposition(|poll| &poll.kvmtop == full)?;
    Some((first, last))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(ids: &[u32]) -> Poll {
        Poll {
            at: Instant::now(),
            progs: BTreeMap::new(),
            kvmtop: ids.iter().copied().collect(),
        }
    }

    #[test]
    fn window_ignores_partial_sets_at_both_ends() {
        let polls = [
            poll(&[1]),
            poll(&[1, 2]),
            poll(&[1, 2]),
            poll(&[1, 2]),
            poll(&[2]),
        ];
        assert_eq!(window(&polls), Some((1, 3)));
        assert_eq!(window(&[]), None);
    }
}
