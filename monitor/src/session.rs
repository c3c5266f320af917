//! A monitoring session: the loaded kernel programs, VM discovery, and sampling of both.
//!
//! [`Session::sample`] returns raw running totals; [`crate::window`] turns two samples into the
//! snapshot users see. Sampling does no presentation work.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::Context as _;

use crate::{
    bpf::Kernel,
    discovery::{Discovery, ProcRoot, Vmm},
    host::tracefs::TraceFs,
    model::{Host, Snapshot},
    privileges,
    signals::exits::{ExitCounters, ExitTotals, ExitsPlan},
    window,
};

/// Where kvmtop reads the host from. Defaults are the live system; tests point them at fixtures.
#[derive(Clone, Debug)]
pub struct Config {
    pub proc_root: PathBuf,
    /// Root of sysfs, for the configuration facts the advice reads.
    pub sys_root: PathBuf,
    pub tracefs: TraceFs,
}

impl Config {
    /// Where the advice reads configuration facts from.
    #[must_use]
    pub fn advice_roots(&self) -> crate::advice::Roots {
        crate::advice::Roots {
            proc: self.proc_root.clone(),
            sys: self.sys_root.clone(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            tracefs: TraceFs::default(),
        }
    }
}

pub struct Session {
    proc_root: PathBuf,
    host: Host,
    kernel: Kernel,
    discovery: Discovery,
    exits: ExitCounters,
    /// Start time of each VMM pid seen, to notice pid reuse.
    identities: HashMap<u32, u64>,
    /// Pids reused since the last sample, whose counters must be forgotten.
    reused_pids: HashSet<u32>,
}

/// Running totals at one instant.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub wall: SystemTime,
    pub vmms: Vec<Vmm>,
    pub exits: ExitTotals,
    pub problems: Vec<String>,
}

impl Session {
    /// Checks privileges, loads the kernel programs and attaches every source this kernel has.
    /// Only a failure that stops every signal is an error; a missing tracepoint is reported per
    /// source (see [`Session::exit_sources`]).
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        privileges::check().map_err(anyhow::Error::msg)?;
        let exits_plan = ExitsPlan::read(&config.tracefs, &config.proc_root);
        let mut kernel = Kernel::load(|loader| exits_plan.configure(loader))?;
        let exits =
            ExitCounters::start(&mut kernel, &exits_plan).context("starting exit counters")?;
        let discovery = Discovery::new(ProcRoot::new(&config.proc_root));
        Ok(Self {
            host: read_host(&config.proc_root),
            proc_root: config.proc_root.clone(),
            kernel,
            discovery,
            exits,
            identities: HashMap::new(),
            reused_pids: HashSet::new(),
        })
    }

    #[must_use]
    pub fn exit_counters(&self) -> &ExitCounters {
        &self.exits
    }

    /// The loaded programs, e.g. for driving the test harnesses.
    pub fn kernel_mut(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    /// The snapshot of the window between two samples of this session.
    #[must_use]
    pub fn snapshot(&self, earlier: &Sample, later: &Sample) -> Snapshot {
        window::snapshot(earlier, later, self.exits.sources(), &self.host)
    }

    /// Scans for VMs without reading counters. Calling it between samples lets discovery watch
    /// vCPU threads while the guests run (a thread is seen inside `KVM_RUN` only then).
    pub fn rescan(&mut self) {
        let scan = self.discovery.scan();
        self.track_identities(&scan.vmms);
    }

    /// Scans for VMs and reads every counter.
    pub fn sample(&mut self) -> Sample {
        let mut scan = self.discovery.scan();
        self.track_identities(&scan.vmms);
        let mut exits = self.exits.read();
        self.learn_vcpu_threads(&mut scan.vmms, &exits);
        // Forget the counters of processes that are gone, and of pids now held by another
        // process: a reused pid must not inherit the old VM's totals.
        // Each pid is checked once; pids discovery just saw as VMMs are alive without a stat.
        let reused = std::mem::take(&mut self.reused_pids);
        let counted: HashSet<u32> = exits.counts.keys().map(|k| k.pid).collect();
        let stale: HashSet<u32> = counted
            .into_iter()
            .filter(|pid| {
                reused.contains(pid)
                    || (!scan.vmms.iter().any(|v| v.id.pid == *pid)
                        && !self.proc_root.join(pid.to_string()).exists())
            })
            .collect();
        if !stale.is_empty() {
            self.exits.retain(|pid| !stale.contains(&pid));
            exits.counts.retain(|k, _| !stale.contains(&k.pid));
            exits.latency.retain(|k, _| !stale.contains(&k.pid));
            exits.details.retain(|k, _| !stale.contains(&k.pid));
        }
        self.identities
            .retain(|pid, _| scan.vmms.iter().any(|v| v.id.pid == *pid));
        Sample {
            at: Instant::now(),
            wall: SystemTime::now(),
            vmms: scan.vmms,
            exits,
            problems: scan.problems,
        }
    }

    fn track_identities(&mut self, vmms: &[Vmm]) {
        for vmm in vmms {
            if let Some(old) = self.identities.insert(vmm.id.pid, vmm.id.start_time)
                && old != vmm.id.start_time
            {
                self.reused_pids.insert(vmm.id.pid);
            }
        }
    }

    /// Tells discovery which thread runs which vCPU, from what the kernel saw:
    /// `kvm_exit` records carry the vCPU id; and when a VM has exactly one vCPU whose thread is
    /// unknown and exactly one unassigned thread that entered `KVM_RUN`, that thread is it (only
    /// vCPU threads call `KVM_RUN`).
    fn learn_vcpu_threads(&mut self, vmms: &mut [Vmm], exits: &ExitTotals) {
        let mut learnt = Vec::new();
        for key in exits.counts.keys() {
            if let Some(vcpu) = key.vcpu_id {
                learnt.push((key.pid, key.tid, vcpu));
            }
        }
        for vmm in vmms.iter() {
            let unknown: Vec<u32> = vmm
                .vcpus
                .iter()
                .filter(|v| v.tid.is_none())
                .map(|v| v.index)
                .collect();
            let [index] = unknown[..] else { continue };
            let runners: HashSet<u32> = exits
                .counts
                .keys()
                .filter(|k| k.pid == vmm.id.pid)
                .map(|k| k.tid)
                .filter(|tid| vmm.vcpus.iter().all(|v| v.tid != Some(*tid)))
                .collect();
            if let [tid] = runners.into_iter().collect::<Vec<_>>()[..] {
                learnt.push((vmm.id.pid, tid, index));
            }
        }
        for (pid, tid, index) in learnt {
            self.discovery.note_vcpu_thread(pid, tid, index);
            let vcpu = vmms
                .iter_mut()
                .filter(|v| v.id.pid == pid)
                .flat_map(|v| v.vcpus.iter_mut())
                .find(|v| v.index == index);
            if let Some(vcpu) = vcpu {
                vcpu.tid = Some(tid);
            }
        }
    }
}

/// Host name and kernel release, read once: they do not change while kvmtop runs.
fn read_host(proc_root: &Path) -> Host {
    let read = |name: &str| {
        std::fs::read_to_string(proc_root.join("sys/kernel").join(name))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    Host {
        hostname: read("hostname"),
        kernel: read("osrelease"),
    }
}
