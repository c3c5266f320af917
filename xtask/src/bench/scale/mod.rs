//! `cargo xtask bench --scale`: `kvmtop serve --interval 1 --metrics-detail full` (every series)
//! on a host with many VMs. Mini VMMs with 2 vCPUs each, 10, 50 and 100 of them by default, then
//! the largest count again with 2,000 idle processes that are not VMs. For each configuration, a
//! fresh `kvmtop serve`: its CPU time and peak RSS over the window, every scrape's latency and
//! whether it parses, its system calls by call, `kvmtop snapshot --duration 5`'s wall time, and
//! whether every VM and vCPU thread is right. Prints a table against the targets and writes
//! `target/bench/scale.json`.

mod exposition;
mod fleet;
mod idle;
mod report;
mod scrape;
mod syscalls;
mod verify;
mod window;

use std::path::Path;

use anyhow::{Result, anyhow};
use guests::GuestKind;
use serde::Serialize;

use crate::{
    interrupt,
    util::{self, Phase},
};

use fleet::Fleet;
use idle::Idle;
use report::Measured;

/// What to run.
pub struct Options {
    /// Length of each configuration's measurement window, in seconds.
    pub seconds: u64,
    /// The VMM counts, each measured without idle processes.
    pub vmms: Vec<usize>,
    /// Idle processes added for one more run at the largest VMM count (0: no such run).
    pub idle: usize,
    /// Seconds between two scrapes (the window's last second is always scraped).
    pub scrape_every: u64,
}

#[derive(Serialize)]
struct Results<'a> {
    host: Host,
    /// How the VMMs were kept from starving the host.
    vmm_load: &'a fleet::Load,
    window_seconds: u64,
    scrape_every_seconds: u64,
    configurations: &'a [Measured],
    targets: &'a [report::Verdict],
}

#[derive(Serialize)]
struct Host {
    cpus: usize,
    kernel: String,
    /// `kernel.bpf_stats_enabled`: BPF run-time statistics add to every program run.
    bpf_stats_enabled: String,
}

impl Host {
    fn read() -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned())
        };
        Self {
            cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            kernel: read("/proc/sys/kernel/osrelease"),
            bpf_stats_enabled: read("/proc/sys/kernel/bpf_stats_enabled"),
        }
    }
}

/// Runs every configuration, prints the table and writes `scale.json` into `out_dir`.
pub fn run(binary: &Path, out_dir: &Path, options: &Options) -> Result<()> {
    guests::preflight_kind(GuestKind::MiniVmm)
        .map_err(|reason| anyhow!("cannot start mini VMMs here: {reason}"))?;
    let mut vmm_counts = options.vmms.clone();
    vmm_counts.sort_unstable();
    vmm_counts.dedup();
    let mut plan: Vec<(usize, usize)> = vmm_counts.iter().map(|n| (*n, 0)).collect();
    if let (Some(largest), true) = (vmm_counts.last(), options.idle > 0) {
        plan.push((*largest, options.idle));
    }
    println!(
        "scale bench: {} configurations (VMMs × {} vCPUs, idle processes): {}; {} s window \
         each, a scrape every {} s",
        plan.len(),
        fleet::VCPUS,
        plan.iter()
            .map(|(vmms, idle)| format!("{vmms}+{idle}"))
            .collect::<Vec<_>>()
            .join(", "),
        options.seconds,
        options.scrape_every
    );
    let others = other_vms();
    if others > 0 {
        util::warn(&format!(
            "{others} VMs not started by the bench run on this host; kvmtop watches them too, so \
             every figure includes them (the table's \"other VMs\" column)"
        ));
    }
    interrupt::install();
    // Declared first so they are dropped last, on every way out: the VMMs and idle processes
    // outlive every kvmtop started for them, and are stopped even when a step fails.
    let mut fleet = Fleet::new();
    let mut idle: Option<Idle> = None;
    println!("VMM load: {}", fleet.load.description);

    let mut configs = Vec::new();
    let mut broken: Option<String> = None;
    for (vmms, idle_count) in plan {
        let mut measured = Measured {
            vmms,
            idle_processes: idle_count,
            ..Measured::default()
        };
        if let Some(why) = &broken {
            measured.error = Some(format!("not run: {why}"));
            configs.push(measured);
            continue;
        }
        let phase = Phase::start(&format!(
            "scale: {vmms} VMMs × {} vCPUs, {idle_count} idle processes",
            fleet::VCPUS
        ));
        let set_up = set_up(&mut fleet, &mut idle, vmms, idle_count);
        interrupt::bail_if_interrupted()?;
        if let Err(err) = set_up {
            let why = format!("setting up {vmms} VMMs and {idle_count} processes: {err:#}")
                .trim_end()
                .to_owned();
            println!("  {why}");
            measured.error = Some(why);
            broken = Some(format!(
                "{vmms} VMMs and {idle_count} processes could not be set up"
            ));
            phase.finish(false);
            configs.push(measured);
            continue;
        }
        window::measure(binary, out_dir, &fleet, options, &mut measured);
        interrupt::bail_if_interrupted()?;
        phase.finish(measured.error.is_none());
        configs.push(measured);
    }
    println!("stopping the VMMs and idle processes…");
    let load = fleet.load.clone();
    drop(idle);
    drop(fleet);

    let verdicts = report::verdicts(&configs);
    report::print(&configs, &verdicts);
    println!("VMM load: {}", load.description);
    let results = Results {
        host: Host::read(),
        vmm_load: &load,
        window_seconds: options.seconds,
        scrape_every_seconds: options.scrape_every,
        configurations: &configs,
        targets: &verdicts,
    };
    let path = out_dir.join("scale.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
    println!("written to {}", path.display());
    Ok(())
}

/// Processes on the host holding a KVM VM now.
fn other_vms() -> usize {
    std::fs::read_dir("/proc").map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|pid| verify::holds_vm(*pid) == Some(true))
            .count()
    })
}

fn set_up(fleet: &mut Fleet, idle: &mut Option<Idle>, vmms: usize, count: usize) -> Result<()> {
    if fleet.vmms.len() > vmms {
        // The configurations run in growing order; a smaller one after a larger is not planned.
        fleet.vmms.truncate(vmms);
    }
    fleet.grow_to(vmms)?;
    match (count, idle.as_ref().map(Idle::len)) {
        (0, _) => *idle = None,
        (count, Some(len)) if len == count => {}
        (count, _) => {
            *idle = None;
            println!("starting {count} idle processes (sleep)…");
            *idle = Some(Idle::start(count)?);
        }
    }
    Ok(())
}
