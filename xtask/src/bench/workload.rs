//! What each phase runs on the host while it is measured: guests, a context-switch load, and a
//! process that makes TLB shootdowns.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use guests::{DiskAio, DiskCache, DiskInterface, DiskOptions, Guest, GuestKind, GuestSpec};

use super::Killed;
use crate::{
    util::{self, cmd},
    vm,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// Context switches of host tasks only.
    Switches,
    /// The same, plus guests whose threads kvmtop watches: two busy port-I/O guests (preempted
    /// by the load: watched switches) and a disk reader (its threads sleep and are woken:
    /// watched wakeups).
    GuestsAndSwitches,
    /// A guest reading its disk in a loop.
    DiskReader,
    /// A process unmapping touched pages on one CPU while its other thread runs on another.
    TlbChurn,
    /// All of the above at once, with one port-I/O guest: every hook kvmtop uses is busy.
    Everything,
}

/// Two tasks passing a message back and forth through a pipe, 5000 times a second: context
/// switches and wakeups of host tasks, none of them watched. Rate-limited so that with the guests
/// of [`Load::GuestsAndSwitches`] a good share of the events concern watched threads (at full
/// speed it makes about a million a second, and the guests' events would be lost among them).
pub const SWITCH_LOAD: [&str; 5] = ["stress-ng", "--switch", "1", "--switch-freq", "5000"];
/// `cache=none,aio=native`: every guest read reaches the host's block layer.
const DISK: DiskOptions = DiskOptions {
    interface: DiskInterface::Virtio,
    cache: DiskCache::None,
    aio: Some(DiskAio::Native),
};
const START_TIMEOUT: Duration = Duration::from_mins(1);
/// The CPUs of the TLB churn's unmapping thread and of its spinning thread.
const CHURN_CPUS: [&str; 2] = ["0", "1"];

/// A running workload; dropping it stops everything it started.
pub struct Running {
    guests: Vec<Guest>,
    children: Vec<Killed>,
    /// What runs: guests and exact commands.
    pub description: Vec<String>,
    /// The TLB churn process.
    pub churn_pid: Option<u32>,
}

impl Running {
    /// The processes started here that kvmtop takes for VMMs.
    pub fn vmm_pids(&self) -> Vec<u32> {
        self.guests
            .iter()
            .map(Guest::pid)
            .chain(self.churn_pid)
            .collect()
    }
}

impl Drop for Running {
    /// The load processes first, then the guests.
    fn drop(&mut self) {
        self.children.clear();
        self.guests.clear();
    }
}

pub fn start(load: Load, out_dir: &Path) -> Result<Running> {
    let mut running = Running {
        guests: Vec::new(),
        children: Vec::new(),
        description: Vec::new(),
        churn_pid: None,
    };
    match load {
        Load::Switches => running.switch_load(out_dir)?,
        Load::GuestsAndSwitches => {
            for name in ["bench-sched-a", "bench-sched-b"] {
                let guest = vm::start(GuestKind::PortIo, name, true)?;
                running
                    .description
                    .push(format!("port-io guest {name} (QEMU pid {})", guest.pid()));
                running.guests.push(guest);
            }
            running.disk_reader("bench-sched-disk")?;
            running.switch_load(out_dir)?;
        }
        Load::DiskReader => running.disk_reader("bench-disk")?,
        Load::TlbChurn => running.churn(out_dir)?,
        Load::Everything => {
            let name = "bench-all-portio";
            let guest = vm::start(GuestKind::PortIo, name, true)?;
            running
                .description
                .push(format!("port-io guest {name} (QEMU pid {})", guest.pid()));
            running.guests.push(guest);
            running.disk_reader("bench-all-disk")?;
            running.switch_load(out_dir)?;
            running.churn(out_dir)?;
        }
    }
    Ok(running)
}

impl Running {
    fn disk_reader(&mut self, name: &str) -> Result<()> {
        let guest = disk_reader(name)?;
        self.description.push(format!(
            "disk-reader guest {name} (QEMU pid {}, if=virtio,cache=none,aio=native)",
            guest.pid()
        ));
        self.guests.push(guest);
        Ok(())
    }

    fn switch_load(&mut self, out_dir: &Path) -> Result<()> {
        let mut command = cmd(SWITCH_LOAD[0]);
        command
            .args(&SWITCH_LOAD[1..])
            .stdout(File::create(out_dir.join("stress-ng.out"))?)
            .stderr(File::create(out_dir.join("stress-ng.err"))?);
        util::echo(&command);
        let child = command.spawn().context("starting stress-ng")?;
        self.description
            .push(format!("`{}` (pid {})", SWITCH_LOAD.join(" "), child.id()));
        self.children.push(Killed(child));
        Ok(())
    }

    fn churn(&mut self, out_dir: &Path) -> Result<()> {
        if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
            bail!("a remote TLB shootdown needs two CPUs");
        }
        let binary = build_churn(out_dir)?;
        let stderr = out_dir.join("tlb-churn.err");
        let mut command = cmd(&binary);
        command
            .args(CHURN_CPUS)
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr)?);
        util::echo(&command);
        let mut child = Killed(command.spawn().context("starting the TLB churn")?);
        let mut line = String::new();
        let stdout = child.0.stdout.take().context("the churn's stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("churning") {
            let why = std::fs::read_to_string(&stderr).unwrap_or_default();
            bail!("the TLB churn did not start: {}", why.trim());
        }
        let pid = child.0.id();
        self.description.push(format!(
            "TLB churn (pid {pid}, holds a KVM VM fd so kvmtop counts it as a VMM): `{} {}` maps, \
             touches and unmaps 16 pages in a loop on CPU {} while its other thread spins on CPU {}",
            binary.display(),
            CHURN_CPUS.join(" "),
            CHURN_CPUS[0],
            CHURN_CPUS[1]
        ));
        self.churn_pid = Some(pid);
        self.children.push(child);
        Ok(())
    }
}

fn disk_reader(name: &str) -> Result<Guest> {
    let kind = GuestKind::DiskReader;
    guests::preflight_kind(kind).map_err(|reason| {
        anyhow!("cannot start a {kind} guest here: {reason} (`cargo xtask setup` installs tools)")
    })?;
    let spec = GuestSpec::new(kind)
        .name(name)
        .debug_threads(true)
        .disk(DISK);
    let guest = Guest::start(&spec).with_context(|| format!("starting guest {name}"))?;
    guest
        .wait_for_vcpus(START_TIMEOUT)
        .with_context(|| format!("waiting for guest {name} to run"))?;
    println!("  {name} ({kind}): pid {}", guest.pid());
    Ok(guest)
}

/// Compiles `tlb_churn.rs` (standard library only) with `rustc`; returns the binary.
fn build_churn(out_dir: &Path) -> Result<PathBuf> {
    let dir = out_dir.join("tlb-churn");
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("main.rs");
    std::fs::write(&source, include_str!("tlb_churn.rs"))?;
    let binary = dir.join("kvmtop-bench-tlb-churn");
    util::run(
        cmd("rustc")
            .args(["--edition", "2024", "-C", "opt-level=2", "-o"])
            .arg(&binary)
            .arg(&source)
            .current_dir(util::workspace_root()),
    )?;
    Ok(binary)
}
