//! What a guest pays: a port-I/O guest pinned to one CPU, its exits per second counted by
//! `perf stat -e kvm:kvm_pio` over runs alternating without and with `kvmtop serve` attached
//! (the order flipped every pair, so a slow drift of the host weighs on both sides alike). During
//! the runs with kvmtop, its programs' run time is read over the same interval, giving the ns it
//! spends per exit, and the running agent's CPU time and peak memory are read from /proc.

use std::{
    collections::BTreeMap,
    fs::File,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use guests::GuestKind;
use serde::Serialize;

use super::{
    Killed, POLL, agent,
    floors::Hook,
    progs::{self, names_event},
};
use crate::{
    interrupt,
    util::{self, cmd},
    vm,
};

/// Pairs of runs, one without and one with kvmtop, per collection level.
pub const PAIRS: usize = 8;
/// kvmtop's collection levels (`--collect`), the default first: the headline figures are its.
pub const LEVELS: [&str; 3] = ["details", "latency", "counts"];
/// Length of one counted run.
const RUN: Duration = Duration::from_secs(4);
/// The CPU the guest's threads are pinned to.
const GUEST_CPU: &str = "1";

pub const METHOD: &str = "A QEMU port-I/O guest (one vCPU looping on `out 0x80, al`, every \
    iteration an exit to QEMU), all its threads pinned to one CPU with `taskset -a -p`. Each run \
    counts the guest process's kvm:kvm_pio events (its exits) and the other exit-path tracepoints \
    kvmtop hooks with `perf stat -p PID` for a fixed time, alternately without kvmtop and with a \
    `kvmtop serve` started for the run (counting starts once all its programs are attached); the \
    order is flipped every pair. The pairs are repeated for each collection level (`--collect`), \
    each level against its own runs without kvmtop; the other figures are the default level's. \
    Each run also reads the CPU time the guest's threads got (`/proc/PID/task/*/schedstat`, which \
    leaves out time stolen by a hypervisor below this host): exits per second of the guest's own \
    CPU time is what one exit costs the guest, and stays steady when other work or a hypervisor \
    takes the guest's CPU for a while, which moves exits/s by several percent between runs of the \
    same kind. Both rates are reported; each level's percentage is the median over its pairs. \
    The pairs run with the kernel's BPF statistics off, as on a host in production (with them on, \
    every program run also pays two clock reads). One more run with kvmtop at the default level, \
    statistics on and not counted in the rates, costs each program: kvmtop's ns per exit, per \
    exit-path hook, is the guest's events on that hook per exit (from perf, this process only) \
    times the ns/event of kvmtop's program there (run_time_ns / run_cnt over the run, all \
    processes); their sum is what kvmtop's programs add to one exit. Host-wide, its programs' run time per second over the runs is also \
    shown. The agent's CPU is its utime + stime growth over the counted run; its peak RSS is \
    VmHWM.";

#[derive(Serialize)]
pub struct Throughput {
    pub method: &'static str,
    pub guest: String,
    pub runs: Vec<Run>,
    /// Mean exits/s without and with kvmtop.
    pub exits_per_second: Option<[f64; 2]>,
    /// How much slower the guest ran with kvmtop, in percent of the rate without.
    pub slowdown_percent: Option<f64>,
    /// The time each exit took longer with kvmtop: `1/rate_with − 1/rate_without`.
    pub added_ns_per_exit: Option<f64>,
    /// kvmtop's programs on the exit path, per exit, over the runs with kvmtop.
    pub exit_path: Vec<ExitCost>,
    /// The guest's exit rate at each collection level, the default first.
    pub levels: Vec<LevelThroughput>,
    /// The sum over the exit path: what kvmtop's programs add to one exit.
    pub exit_path_ns_per_exit: Option<f64>,
    /// All of kvmtop's programs' run time per second of the runs, host-wide, in percent of one
    /// CPU.
    pub programs_cpu_percent_of_one_cpu: Option<f64>,
    /// The running `kvmtop serve`, averaged over the runs with kvmtop.
    pub agent: Option<ServeAgent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// The guest's exit rate without and with kvmtop at one collection level.
#[derive(Debug, PartialEq, Serialize)]
pub struct LevelThroughput {
    /// As `--collect` takes it.
    pub level: &'static str,
    /// Mean exits/s without and with kvmtop, over this level's pairs.
    pub exits_per_second: [f64; 2],
    /// The rate with kvmtop, in percent of the rate without: the median over the pairs.
    pub percent_of_without: f64,
    /// Each pair's rate with kvmtop in percent of its rate without, in the order they ran: their
    /// spread is the noise of the host the bench ran on.
    pub pair_percents: Vec<f64>,
    /// Mean exits per second of the guest's own CPU time, without and with kvmtop.
    pub exits_per_cpu_second: Option<[f64; 2]>,
    /// What kvmtop's programs add to one exit at this level (its run with BPF statistics on):
    /// the sum over the exit-path hooks of the guest's events per exit × ns per event.
    pub programs_ns_per_exit: Option<f64>,
    /// The CPU-time rate with kvmtop in percent of the one without: the median over the pairs.
    /// What one exit costs the guest, unmoved by time the guest did not get its CPU.
    pub cpu_percent_of_without: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    /// The collection level of the pair this run belongs to.
    pub level: &'static str,
    pub with_kvmtop: bool,
    /// Run with BPF statistics on, to cost kvmtop's programs; not one of the pairs.
    pub costed: bool,
    pub exits: u64,
    pub seconds: f64,
    pub exits_per_second: f64,
    /// CPU time the guest's threads got over the run (the scheduler's own clock, without
    /// hypervisor steal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_cpu_ns: Option<u64>,
    /// Exits per second of the guest's CPU time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exits_per_cpu_second: Option<f64>,
    /// The guest's events per counted tracepoint (`kvm:kvm_pio` …), from perf.
    pub guest_events: BTreeMap<String, u64>,
    /// kvmtop's programs over the run: event name → (program, events, `run_time_ns`), for those
    /// on the counted tracepoints.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kvmtop: BTreeMap<String, (String, u64, u64)>,
    /// All of kvmtop's programs' run time from just before to just after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kvmtop_run_time_ns: Option<u64>,
    /// The time `kvmtop_run_time_ns` and the agent's CPU cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_peak_rss_kib: Option<u64>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct ExitCost {
    /// The tracepoint, `system:event`.
    pub tracepoint: String,
    pub program: String,
    /// The guest's events on it per exit.
    pub guest_events_per_exit: f64,
    /// kvmtop's program's cost per event over the runs.
    pub ns_per_event: Option<f64>,
    pub ns_per_exit: Option<f64>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct ServeAgent {
    /// Of one CPU, over the counted runs.
    pub cpu_percent_of_one_cpu: f64,
    pub peak_rss_kib: u64,
}

impl Throughput {
    fn unavailable(guest: String, why: String) -> Self {
        Self {
            method: METHOD,
            guest,
            runs: Vec::new(),
            exits_per_second: None,
            slowdown_percent: None,
            added_ns_per_exit: None,
            exit_path: Vec::new(),
            levels: Vec::new(),
            exit_path_ns_per_exit: None,
            programs_cpu_percent_of_one_cpu: None,
            agent: None,
            unavailable: Some(why),
        }
    }
}

/// The tracepoints one exit can fire that kvmtop hooks, `system:event`, the exit count first.
pub fn exit_tracepoints(hooks: &[Hook]) -> Vec<String> {
    let mut tracepoints = vec![EXITS.to_owned()];
    for hook in hooks {
        let system = match (&hook.system, hook.event.as_str()) {
            (Some(system), _) => system.as_str(),
            (None, event) if event.starts_with("kvm_") => "kvm",
            _ => continue,
        };
        let tracepoint = format!("{system}:{}", hook.event);
        if system == "kvm" && !tracepoints.contains(&tracepoint) {
            tracepoints.push(tracepoint);
        }
    }
    tracepoints
}

/// The exit count.
const EXITS: &str = "kvm:kvm_pio";

/// Runs the pairs; a failure makes the whole measurement unavailable, with its reason.
pub fn run(binary: &Path, out_dir: &Path, hooks: &[Hook]) -> Throughput {
    let mut guest_text = String::new();
    let tracepoints = exit_tracepoints(hooks);
    match measure(binary, out_dir, &tracepoints, &mut guest_text) {
        Ok(runs) => summarise(guest_text, runs),
        Err(err) => Throughput::unavailable(guest_text, format!("{err:#}")),
    }
}

fn measure(
    binary: &Path,
    out_dir: &Path,
    tracepoints: &[String],
    guest_text: &mut String,
) -> Result<Vec<Run>> {
    let guest = vm::start(GuestKind::PortIo, "bench-throughput", true)?;
    let pid = guest.pid();
    util::run(cmd("taskset").args(["-a", "-p", "-c", GUEST_CPU, &pid.to_string()]))?;
    *guest_text = format!("port-io guest bench-throughput (QEMU pid {pid}) on CPU {GUEST_CPU}");
    let mut runs = Vec::new();
    set_bpf_stats(false)?;
    for level in LEVELS {
        for pair in 0..PAIRS {
            let order = if pair % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for with in order {
                interrupt::bail_if_interrupted()?;
                let mut run = if with {
                    with_kvmtop(binary, out_dir, pid, tracepoints, level)?
                } else {
                    count(out_dir, pid, tracepoints)?
                };
                run.level = level;
                println!(
                    "  --collect {level:<7} pair {} {}: {:.0} exits/s, {} per CPU-second",
                    pair + 1,
                    if with {
                        "with kvmtop   "
                    } else {
                        "without kvmtop"
                    },
                    run.exits_per_second,
                    run.exits_per_cpu_second
                        .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}"))
                );
                runs.push(run);
            }
        }
    }
    set_bpf_stats(true)?;
    for level in LEVELS {
        interrupt::bail_if_interrupted()?;
        let mut costed = with_kvmtop(binary, out_dir, pid, tracepoints, level)?;
        costed.level = level;
        costed.costed = true;
        println!(
            "  --collect {level:<7} costing run, BPF statistics on: {:.0} exits/s",
            costed.exits_per_second
        );
        runs.push(costed);
    }
    drop(guest);
    Ok(runs)
}

/// Turns the kernel's BPF run-time statistics on or off (the bench turned them on and restores
/// the operator's setting at its end).
fn set_bpf_stats(on: bool) -> Result<()> {
    std::fs::write(
        "/proc/sys/kernel/bpf_stats_enabled",
        if on { "1" } else { "0" },
    )
    .context("setting kernel.bpf_stats_enabled")
}

/// One counted run without kvmtop.
fn count(out_dir: &Path, pid: u32, tracepoints: &[String]) -> Result<Run> {
    let counted = perf_count(out_dir, pid, tracepoints)?;
    Ok(Run::counted(false, counted))
}

impl Run {
    fn counted(with_kvmtop: bool, counted: Counted) -> Self {
        let exits = counted.events.get(EXITS).copied().unwrap_or(0);
        let seconds = RUN.as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
        Self {
            with_kvmtop,
            exits,
            seconds,
            exits_per_second: exits as f64 / seconds,
            exits_per_cpu_second: counted
                .cpu_ns
                .filter(|ns| *ns > 0)
                .map(|ns| exits as f64 / (ns as f64 / 1e9)),
            guest_cpu_ns: counted.cpu_ns,
            guest_events: counted.events,
            ..Self::default()
        }
    }
}

/// One counted run with a `kvmtop serve` started for it.
fn with_kvmtop(
    binary: &Path,
    out_dir: &Path,
    pid: u32,
    tracepoints: &[String],
    level: &str,
) -> Result<Run> {
    let mut serve = cmd(binary);
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--collect", level])
        .stdout(File::create(out_dir.join("serve.out"))?)
        .stderr(File::create(out_dir.join("serve.err"))?);
    util::echo(&serve);
    let mut kvmtop = Killed(serve.spawn().context("starting kvmtop serve")?);
    let agent_pid = kvmtop.0.id();
    let held = wait_attached(&mut kvmtop, agent_pid)?;
    let before = progs::sample()?;
    let usage_before = agent::read(agent_pid).context("kvmtop serve exited")?;
    let started = Instant::now();
    let counted = perf_count(out_dir, pid, tracepoints)?;
    let usage_after = agent::read(agent_pid).context("kvmtop serve exited")?;
    let after = progs::sample()?;
    let elapsed = started.elapsed().as_secs_f64();
    drop(kvmtop);
    let growth = |id: &u32| {
        let (a, b) = (before.get(id)?, after.get(id)?);
        let events = b.run_cnt.saturating_sub(a.run_cnt);
        let ns = b.run_time_ns.saturating_sub(a.run_time_ns);
        Some((b.name.clone(), events, ns))
    };
    let mut run = Run::counted(true, counted);
    // The programs' counters and the agent's CPU were read around the counted run, a little
    // longer than it: their rates are per second of the time they cover.
    run.kvmtop_run_time_ns = Some(
        held.ids
            .iter()
            .filter_map(growth)
            .map(|(_, _, ns)| ns)
            .sum(),
    );
    run.sampled_seconds = Some(elapsed);
    for tracepoint in tracepoints {
        let event = tracepoint.rsplit(':').next().unwrap_or(tracepoint);
        let id = held
            .tracepoints
            .iter()
            .find(|(_, tp)| *tp == event)
            .map(|(id, _)| *id)
            .or_else(|| {
                held.ids
                    .iter()
                    .copied()
                    .find(|id| after.get(id).is_some_and(|p| names_event(&p.name, event)))
            });
        if let Some(counters) = id.as_ref().and_then(growth) {
            run.kvmtop.insert(tracepoint.clone(), counters);
        }
    }
    run.agent_cpu_percent = Some((usage_after.cpu_ms - usage_before.cpu_ms) / (elapsed * 10.0));
    run.agent_peak_rss_kib = Some(usage_after.peak_rss_kib);
    Ok(run)
}

/// Waits until kvmtop's set of programs stops growing.
fn wait_attached(kvmtop: &mut Killed, pid: u32) -> Result<progs::Held> {
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut last = 0;
    let mut steady = 0;
    loop {
        interrupt::bail_if_interrupted()?;
        if let Some(status) = kvmtop.0.try_wait()? {
            bail!("kvmtop serve exited with {status} (see serve.err)");
        }
        let held = progs::held_by(pid, &progs::sample()?);
        let count = held.ids.len();
        steady = if count > 0 && count == last {
            steady + 1
        } else {
            0
        };
        if steady >= 3 {
            return Ok(held);
        }
        last = count;
        if Instant::now() > deadline {
            bail!("kvmtop serve did not attach its programs within a minute");
        }
        std::thread::sleep(POLL);
    }
}

/// One counted run of the guest.
struct Counted {
    /// Events by tracepoint.
    events: BTreeMap<String, u64>,
    /// The guest's CPU time over the run, where /proc had it for every read.
    cpu_ns: Option<u64>,
}

/// `perf stat -e TRACEPOINTS -p PID` for [`RUN`]: the events counted, by tracepoint, and the CPU
/// time the guest got meanwhile. perf counts while its command runs, so the command reads the
/// guest's CPU time at its start and end: both figures cover the same interval (perf's own start,
/// which takes a while with many tracepoints, is outside both).
fn perf_count(out_dir: &Path, pid: u32, tracepoints: &[String]) -> Result<Counted> {
    let out = out_dir.join("perf-stat.csv");
    let before = out_dir.join("schedstat-before");
    let after = out_dir.join("schedstat-after");
    let snapshot = |to: &Path| format!("cat /proc/{pid}/task/*/schedstat > '{}'", to.display());
    let script = format!(
        "{}; sleep {}; {}",
        snapshot(&before),
        RUN.as_secs(),
        snapshot(&after)
    );
    let mut perf = cmd("perf");
    perf.args(["stat", "-x", ","])
        .args(["-e", &tracepoints.join(",")])
        .args(["-p", &pid.to_string(), "-o"])
        .arg(&out)
        .args(["--", "sh", "-c", &script]);
    util::run(&mut perf)?;
    let counts = parse_perf(&std::fs::read_to_string(&out)?);
    if !counts.contains_key(EXITS) {
        bail!("no {EXITS} count in perf's output ({})", out.display());
    }
    let cpu = |path: &Path| std::fs::read_to_string(path).ok().and_then(|t| cpu_ns(&t));
    Ok(Counted {
        events: counts,
        cpu_ns: cpu(&before)
            .zip(cpu(&after))
            .and_then(|(before, after)| after.checked_sub(before)),
    })
}

/// The CPU time of a process's threads in ns: the sum of the first field of each thread's
/// `schedstat` line (the scheduler's `sum_exec_runtime`, which leaves out time a hypervisor stole
/// where the kernel accounts steal).
fn cpu_ns(schedstats: &str) -> Option<u64> {
    schedstats
        .lines()
        .map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The counts of `perf stat -x ,` output: `123456,,kvm:kvm_pio,5001234567,100.00,,`.
fn parse_perf(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let count = fields.first()?.parse().ok()?;
            Some(((*fields.get(2)?).to_owned(), count))
        })
        .collect()
}

/// The median of `values` (none when empty).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some(f64::midpoint(values[n / 2 - 1], values[n / 2])),
    }
}

/// For each of `level`'s pairs, `rate` with kvmtop in percent of `rate` without. Runs are paired
/// in the order they ran (each pair is one without and one with kvmtop, either first).
fn pair_percents(runs: &[Run], level: &str, rate: impl Fn(&Run) -> Option<f64>) -> Vec<f64> {
    let counted: Vec<&Run> = runs
        .iter()
        .filter(|run| run.level == level && !run.costed)
        .collect();
    counted
        .chunks(2)
        .filter_map(|pair| {
            let [a, b] = pair else { return None };
            let (without, with) = if a.with_kvmtop { (b, a) } else { (a, b) };
            if without.with_kvmtop || !with.with_kvmtop {
                return None;
            }
            let (without, with) = (rate(without)?, rate(with)?);
            (without > 0.0).then(|| with / without * 100.0)
        })
        .collect()
}

/// Mean exits per CPU-second of `level`'s runs without and with kvmtop.
#[allow(clippy::cast_precision_loss)] // Run counts are tiny.
fn mean_cpu_rates(runs: &[Run], level: &str) -> Option<[f64; 2]> {
    let mean = |with: bool| {
        let rates: Vec<f64> = runs
            .iter()
            .filter(|run| run.level == level && run.with_kvmtop == with && !run.costed)
            .map(|run| run.exits_per_cpu_second)
            .collect::<Option<_>>()?;
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    };
    Some([mean(false)?, mean(true)?])
}

/// Mean exits/s of `level`'s runs without and with kvmtop.
#[allow(clippy::cast_precision_loss)] // Run counts are tiny.
fn mean_rates(runs: &[Run], level: &str) -> Option<(f64, f64)> {
    let mean = |with: bool| {
        let rates: Vec<f64> = runs
            .iter()
            .filter(|run| run.level == level && run.with_kvmtop == with && !run.costed)
            .map(|run| run.exits_per_second)
            .collect();
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    };
    mean(false).zip(mean(true))
}

/// kvmtop's programs on the exit path over `costed`, per hook: the guest's events per exit and
/// the program's ns per event.
#[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
fn exit_path_costs(costed: &[&Run]) -> Vec<ExitCost> {
    let exits: u64 = costed.iter().map(|run| run.exits).sum();
    if exits == 0 {
        return Vec::new();
    }
    // Tracepoint → (program, guest events, program events, program ns), over the runs.
    let mut totals: BTreeMap<&str, (&str, u64, u64, u64)> = BTreeMap::new();
    for run in costed {
        for (tracepoint, (program, events, ns)) in &run.kvmtop {
            let total = totals.entry(tracepoint).or_insert((program, 0, 0, 0));
            total.1 += run.guest_events.get(tracepoint).copied().unwrap_or(0);
            total.2 += events;
            total.3 += ns;
        }
    }
    totals
        .into_iter()
        .map(|(tracepoint, (program, guest, events, ns))| {
            let guest_events_per_exit = guest as f64 / exits as f64;
            let ns_per_event = (events > 0).then(|| ns as f64 / events as f64);
            ExitCost {
                tracepoint: tracepoint.to_owned(),
                program: program.to_owned(),
                guest_events_per_exit,
                ns_per_event,
                ns_per_exit: ns_per_event.map(|ns| ns * guest_events_per_exit),
            }
        })
        .collect()
}

/// What the programs of `path` add to one exit, if any was costed.
fn sum_ns_per_exit(path: &[ExitCost]) -> Option<f64> {
    (!path.is_empty()).then(|| path.iter().filter_map(|c| c.ns_per_exit).sum())
}

/// Means, slowdown and kvmtop's cost per exit, at the default level; the rates at each level.
#[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
fn summarise(guest: String, runs: Vec<Run>) -> Throughput {
    let default = LEVELS[0];
    let rates = mean_rates(&runs, default);
    let levels = LEVELS
        .iter()
        .filter_map(|level| {
            let (without, with) = mean_rates(&runs, level)?;
            let pairs = pair_percents(&runs, level, |run| Some(run.exits_per_second));
            Some(LevelThroughput {
                level,
                exits_per_second: [without, with],
                percent_of_without: median(pairs.clone()).unwrap_or(with / without * 100.0),
                pair_percents: pairs,
                exits_per_cpu_second: mean_cpu_rates(&runs, level),
                programs_ns_per_exit: sum_ns_per_exit(&exit_path_costs(
                    &runs
                        .iter()
                        .filter(|run| run.costed && run.level == *level)
                        .collect::<Vec<_>>(),
                )),
                cpu_percent_of_without: median(pair_percents(&runs, level, |run| {
                    run.exits_per_cpu_second
                })),
            })
        })
        .collect();
    let with: Vec<&Run> = runs
        .iter()
        .filter(|run| run.with_kvmtop && run.level == default && !run.costed)
        .collect();
    // Program costs come from the run with statistics on, or from the pairs when there was none.
    let costed: Vec<&Run> = {
        let costed: Vec<&Run> = runs
            .iter()
            .filter(|run| run.costed && run.level == default)
            .collect();
        if costed.is_empty() {
            with.clone()
        } else {
            costed
        }
    };
    let exit_path = exit_path_costs(&costed);
    let exit_path_ns_per_exit = sum_ns_per_exit(&exit_path);
    let seconds: f64 = costed.iter().map(|run| run.seconds).sum();
    let run_time: Vec<u64> = costed
        .iter()
        .filter_map(|run| run.kvmtop_run_time_ns)
        .collect();
    let programs_cpu_percent_of_one_cpu = (!run_time.is_empty() && seconds > 0.0)
        .then(|| run_time.iter().sum::<u64>() as f64 / (seconds * 1e9) * 100.0);
    let cpu: Vec<f64> = with
        .iter()
        .filter_map(|run| run.agent_cpu_percent)
        .collect();
    let agent = (!cpu.is_empty()).then(|| ServeAgent {
        cpu_percent_of_one_cpu: cpu.iter().sum::<f64>() / cpu.len() as f64,
        peak_rss_kib: with
            .iter()
            .filter_map(|run| run.agent_peak_rss_kib)
            .max()
            .unwrap_or(0),
    });
    Throughput {
        method: METHOD,
        guest,
        exits_per_second: rates.map(|(a, b)| [a, b]),
        slowdown_percent: rates.map(|(without, with)| (1.0 - with / without) * 100.0),
        added_ns_per_exit: rates.map(|(without, with)| 1e9 / with - 1e9 / without),
        exit_path,
        levels,
        exit_path_ns_per_exit,
        programs_cpu_percent_of_one_cpu,
        agent,
        runs,
        unavailable: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(with: bool, guest: &[(&str, u64)], kvmtop: &[(&str, &str, u64, u64)]) -> Run {
        let mut run = Run::counted(
            with,
            Counted {
                events: guest.iter().map(|(tp, n)| ((*tp).to_owned(), *n)).collect(),
                cpu_ns: None,
            },
        );
        // The figures below are for 5 s runs, whatever length the bench uses.
        run.seconds = 5.0;
        #[allow(clippy::cast_precision_loss)]
        {
            run.exits_per_second = run.exits as f64 / 5.0;
        }
        run.level = LEVELS[0];
        run.kvmtop = kvmtop
            .iter()
            .map(|(tp, name, events, ns)| ((*tp).to_owned(), ((*name).to_owned(), *events, *ns)))
            .collect();
        if with {
            run.kvmtop_run_time_ns = Some(50_000_000);
            run.sampled_seconds = Some(5.0);
            run.agent_cpu_percent = Some(2.0);
            run.agent_peak_rss_kib = Some(10_000);
        }
        run
    }

    #[test]
    fn summarises_slowdown_and_cost_per_exit() {
        // 500k exits in 5 s without, 400k with; each exit one kvm_pio and two emulated
        // instructions in this guest, while kvmtop's programs also ran for other processes.
        let with = run(
            true,
            &[("kvm:kvm_pio", 400_000), ("kvm:kvm_emulate_insn", 800_000)],
            &[
                ("kvm:kvm_pio", "kvm_pio", 500_000, 25_000_000),
                (
                    "kvm:kvm_emulate_insn",
                    "kvm_emulate_insn",
                    1_000_000,
                    30_000_000,
                ),
            ],
        );
        let without = run(false, &[("kvm:kvm_pio", 500_000)], &[]);
        let runs = vec![without.clone(), with.clone(), with, without];
        let t = summarise(String::new(), runs);
        assert_eq!(t.exits_per_second, Some([100_000.0, 80_000.0]));
        assert!((t.slowdown_percent.unwrap() - 20.0).abs() < 1e-9);
        // 12.5 µs per exit with, 10 µs without.
        assert!((t.added_ns_per_exit.unwrap() - 2_500.0).abs() < 1e-6);
        let pio = &t.exit_path[1];
        assert_eq!(pio.tracepoint, "kvm:kvm_pio");
        assert_eq!(pio.ns_per_event, Some(50.0));
        assert!((pio.guest_events_per_exit - 1.0).abs() < 1e-12);
        let emulate = &t.exit_path[0];
        assert_eq!(emulate.ns_per_exit, Some(60.0));
        assert!((t.exit_path_ns_per_exit.unwrap() - 110.0).abs() < 1e-9);
        // 50 ms of program run time in each 5 s run.
        assert!((t.programs_cpu_percent_of_one_cpu.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(
            t.agent,
            Some(ServeAgent {
                cpu_percent_of_one_cpu: 2.0,
                peak_rss_kib: 10_000
            })
        );
    }

    #[test]
    fn each_level_is_compared_with_its_own_runs_without_kvmtop() {
        let at = |level, with, exits| {
            let mut r = run(with, &[("kvm:kvm_pio", exits)], &[]);
            r.level = level;
            r
        };
        let runs = vec![
            at("details", false, 500_000),
            at("details", true, 450_000),
            at("counts", false, 400_000),
            at("counts", true, 396_000),
        ];
        let t = summarise(String::new(), runs);
        assert_eq!(t.exits_per_second, Some([100_000.0, 90_000.0]));
        let levels: Vec<(&str, f64)> = t
            .levels
            .iter()
            .map(|l| (l.level, l.percent_of_without))
            .collect();
        assert_eq!(levels.len(), 2, "{levels:?}");
        assert_eq!(levels[0].0, "details");
        assert!((levels[0].1 - 90.0).abs() < 1e-9);
        assert_eq!(levels[1].0, "counts");
        assert!((levels[1].1 - 99.0).abs() < 1e-9);
    }

    #[test]
    fn each_level_takes_the_median_pair_and_the_cpu_normalised_rate() {
        // Exits and guest CPU time (ms) per run; pairs in the order they ran, either side first.
        let at = |with, exits, cpu_ms: u64| {
            let mut r = Run::counted(
                with,
                Counted {
                    events: BTreeMap::from([("kvm:kvm_pio".to_owned(), exits)]),
                    cpu_ns: Some(cpu_ms * 1_000_000),
                },
            );
            r.level = LEVELS[0];
            r
        };
        let runs = vec![
            // The host took the guest's CPU during this pair: exits/s fell, exits per CPU-second
            // did not.
            at(false, 500_000, 5_000),
            at(true, 300_000, 3_060),
            at(true, 490_000, 5_000),
            at(false, 500_000, 5_000),
            at(false, 500_000, 5_000),
            at(true, 480_000, 5_000),
        ];
        let t = summarise(String::new(), runs);
        let level = &t.levels[0];
        // Pair ratios 60 %, 98 %, 96 %: the median is 96 %.
        assert!((level.percent_of_without - 96.0).abs() < 1e-9, "{level:?}");
        // Per CPU-second: 98.04 %, 98 %, 96 %.
        let cpu = level.cpu_percent_of_without.unwrap();
        assert!((cpu - 98.0).abs() < 1e-9, "{level:?}");
        assert_eq!(
            level.exits_per_cpu_second.map(|r| r[0].round()),
            Some(100_000.0)
        );
    }

    #[test]
    fn sums_the_threads_cpu_time() {
        assert_eq!(cpu_ns("100 5 2\n250 1 1\n"), Some(350));
        assert_eq!(cpu_ns("100 5 2\nx 1 1\n"), None);
    }

    #[test]
    fn reads_perf_csv() {
        let text = "# started on Thu\n\n523456,,kvm:kvm_pio,5001234567,100.00,,\n\
                    <not counted>,,kvm:kvm_exit,0,0.00,,\n12,,syscalls:sys_enter_ioctl,5,100.00,,\n";
        let counts = parse_perf(text);
        assert_eq!(counts["kvm:kvm_pio"], 523_456);
        assert_eq!(counts["syscalls:sys_enter_ioctl"], 12);
        assert!(!counts.contains_key("kvm:kvm_exit"));
    }

    #[test]
    fn counts_the_exit_path_tracepoints_kvmtop_hooks() {
        let hooks = [
            Hook::parse("pio", "tracepoint:kvm:kvm_pio").unwrap(),
            Hook::parse("run", "tp_btf:kvm_fpu").unwrap(),
            Hook::parse("exit", "raw_tp:kvm_exit").unwrap(),
            Hook::parse("switch", "tp_btf:sched_switch").unwrap(),
            Hook::parse("other", "tracepoint:syscalls:sys_enter_ioctl").unwrap(),
        ];
        assert_eq!(
            exit_tracepoints(&hooks),
            ["kvm:kvm_pio", "kvm:kvm_fpu", "kvm:kvm_exit"]
        );
    }
}
