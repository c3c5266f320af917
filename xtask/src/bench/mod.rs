//! `cargo xtask bench`: kvmtop's per-event cost next to equivalent bpftrace programs, both
//! attached at the same time to the same busy guest, kvmtop's `kvm_exit`/`kvm_entry` logic through
//! `BPF_PROG_TEST_RUN`, and the agent's CPU time and memory.

mod agent;
mod harness;
mod peers;
mod progs;
mod report;
mod table;

use std::{
    collections::BTreeMap,
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
    let phase = Phase::start(&format!("benchmark ({seconds}s window)"));
    let before = load_average();
    let result = measure(&binary, &out_dir, seconds);
    phase.finish(result.is_ok());
    let (window, usage, lifetime) = result?;
    let phase = Phase::start("kvm_exit/kvm_entry logic through BPF_PROG_TEST_RUN");
    let test_run = match runner {
        Some(Ok(runner)) => harness::run(&runner),
        Some(Err(err)) => harness::TestRun::unavailable(format!("building the runner: {err:#}")),
        None => harness::TestRun::unavailable("not built".to_owned()),
    };
    phase.finish(test_run.unavailable.is_none());
    let mut report = report::build(&window.borrow(), test_run, usage, lifetime);
    report.load_average = [before, load_average()];
    table::print(&report);
    let path = out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written to {}", path.display());
    Ok(())
}

/// The two polls bounding the window, and what each process held.
struct Sampled {
    start: BTreeMap<u32, progs::Prog>,
    end: BTreeMap<u32, progs::Prog>,
    kvmtop: progs::Held,
    bpftrace: BTreeMap<u32, String>,
    unavailable: BTreeMap<&'static str, String>,
    length: Duration,
}

impl Sampled {
    fn borrow(&self) -> report::Window<'_> {
        report::Window {
            start: &self.start,
            end: &self.end,
            kvmtop: &self.kvmtop,
            bpftrace: &self.bpftrace,
            unavailable: &self.unavailable,
            length: self.length,
        }
    }
}

fn measure(
    binary: &Path,
    out_dir: &Path,
    seconds: u64,
) -> Result<(Sampled, agent::Usage, Duration)> {
    println!("starting a port-I/O guest (a steady stream of exits)…");
    let _guest = vm::start(guests::GuestKind::PortIo, "bench-portio", true)?;
    let bpftrace = peers::start(out_dir)?;

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
    let mut samples = sample_until_exit(&mut kvmtop.0)?;
    let status = kvmtop.0.wait()?;
    if !status.success() {
        bail!("kvmtop snapshot exited with {status}");
    }
    let (first, last) = window(&samples.polls).context(
        "kvmtop's programs were never seen loaded; did it attach anything? (see its output above)",
    )?;
    if first == last {
        bail!("kvmtop's programs were all loaded for a single poll only: use a longer window");
    }
    // `last` first: removing it leaves the earlier index `first` in place.
    let end = samples.polls.swap_remove(last);
    let start = samples.polls.swap_remove(first);
    let span = Sampled {
        length: end.at - start.at,
        start: start.progs,
        end: end.progs,
        kvmtop: end.kvmtop,
        bpftrace: bpftrace.tracepoints.clone(),
        unavailable: bpftrace.unavailable.clone(),
    };
    drop(bpftrace);
    let lifetime = samples.last_usage_at.saturating_duration_since(started);
    Ok((span, samples.usage, lifetime))
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

struct Poll {
    at: Instant,
    progs: BTreeMap<u32, progs::Prog>,
    kvmtop: progs::Held,
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
        let held = progs::held_by(pid, &progs);
        if let Some(usage) = agent::read(pid) {
            samples.usage = usage;
            samples.last_usage_at = Instant::now();
        }
        if !held.ids.is_empty() {
            samples.polls.push(Poll {
                at: Instant::now(),
                progs,
                kvmtop: held,
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(samples)
}

/// The first and last polls that see kvmtop's full set of programs. It attaches them one by one
/// at start-up and releases them one by one at exit, so polls at either end may see only some.
fn window(polls: &[Poll]) -> Option<(usize, usize)> {
    let full = &polls
        .iter()
        .max_by_key(|poll| poll.kvmtop.ids.len())?
        .kvmtop
        .ids;
    let first = polls.iter().position(|poll| &poll.kvmtop.ids == full)?;
    let last = polls.iter().rposition(|poll| &poll.kvmtop.ids == full)?;
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
            kvmtop: progs::Held {
                ids: ids.iter().copied().collect(),
                tracepoints: BTreeMap::new(),
            },
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
