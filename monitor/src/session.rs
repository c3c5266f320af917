//! A monitoring session: the loaded kernel programs, VM discovery, and sampling of both.
//!
//! [`Session::sample`] returns raw running totals; [`crate::window`] turns two samples into the
//! snapshot users see. Sampling does no presentation work.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::Context as _;

use crate::{
    bpf::Kernel,
    discovery::{Discovery, ProcRoot, Vmm},
    host::{topology::Topology, tracefs::TraceFs},
    model::{Host, SkippedEvents, Snapshot},
    privileges,
    signals::{
        block::{self, BlockCounters, BlockPlan, BlockTotals},
        exits::{ExitCounters, ExitTotals, ExitsPlan},
        numa::memory::{MemoryPlacement, MemoryReader},
        sched::{self, SchedCounters, SchedPlan, SchedTotals, VhostScan},
        tlb::{self, TlbCounters, TlbPlan, TlbTotals},
        vmms::VmmWatch,
    },
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
    sched: SchedCounters,
    /// The host's CPUs, caches and nodes; `None` when sysfs could not be read.
    topology: Option<Topology>,
    vhost: VhostScan,
    memory: MemoryReader,
    tlb: TlbCounters,
    block: BlockCounters,
    /// The VMM processes the TLB and block programs count for.
    vmm_watch: VmmWatch,
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
    pub sched: SchedTotals,
    /// The latest memory placement of each VM by pid (read at most every 30 s).
    pub memory: HashMap<u32, MemoryPlacement>,
    pub tlb: TlbTotals,
    pub block: BlockTotals,
    /// Per program, events the kernel skipped it for (running totals, see
    /// [`Kernel::skipped_events`]).
    pub skipped: BTreeMap<String, u64>,
    pub problems: Vec<String>,
}

impl Sample {
    /// What the scheduling figures need of this sample.
    fn sched_reading(&self) -> sched::window::Reading<'_> {
        sched::window::Reading {
            vmms: &self.vmms,
            totals: &self.sched,
            memory: &self.memory,
        }
    }
}

impl Session {
    /// Checks privileges, loads the kernel programs and attaches every source this kernel has.
    /// Only a failure that stops every signal is an error; a missing tracepoint is reported per
    /// source (see [`Session::exit_sources`]).
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        privileges::check().map_err(anyhow::Error::msg)?;
        let exits_plan = ExitsPlan::read(&config.tracefs, &config.proc_root);
        let sched_plan = SchedPlan::read(&config.tracefs);
        let tlb_plan = TlbPlan::read(&config.tracefs);
        let block_plan = BlockPlan::read(&config.tracefs);
        let mut kernel = Kernel::load(|loader| {
            exits_plan.configure(loader);
            sched_plan.configure(loader);
            tlb_plan.configure(loader);
            block_plan.configure(loader);
        })?;
        let exits =
            ExitCounters::start(&mut kernel, &exits_plan).context("starting exit counters")?;
        // Without the topology migrations are still counted, as of unknown class.
        let topology = Topology::read(&config.sys_root)
            .inspect_err(|e| log::warn!("host topology: {e}"))
            .ok();
        let mut sched = SchedCounters::start(&mut kernel, &sched_plan, topology.as_ref())
            .context("starting scheduler counters")?;
        sched.set_proc_root(&config.proc_root);
        let mut tlb =
            TlbCounters::start(&mut kernel, &tlb_plan).context("starting TLB counters")?;
        tlb.set_proc_root(&config.proc_root);
        let block = BlockCounters::start(
            &mut kernel,
            &block_plan,
            &config.proc_root,
            &config.sys_root,
        )
        .context("starting block counters")?;
        let vmm_watch = VmmWatch::start(&mut kernel).context("starting the VMM watch")?;
        let discovery = Discovery::new(ProcRoot::new(&config.proc_root));
        Ok(Self {
            host: read_host(&config.proc_root),
            proc_root: config.proc_root.clone(),
            kernel,
            discovery,
            exits,
            sched,
            topology,
            vhost: VhostScan::default(),
            memory: MemoryReader::default(),
            tlb,
            block,
            vmm_watch,
            identities: HashMap::new(),
            reused_pids: HashSet::new(),
        })
    }

    #[must_use]
    pub fn exit_counters(&self) -> &ExitCounters {
        &self.exits
    }

    #[must_use]
    pub fn sched_counters(&self) -> &SchedCounters {
        &self.sched
    }

    /// The scheduler maps, e.g. for tests that watch synthetic threads.
    pub fn sched_counters_mut(&mut self) -> &mut SchedCounters {
        &mut self.sched
    }

    /// The host topology, when sysfs could be read.
    #[must_use]
    pub fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }

    #[must_use]
    pub fn tlb_counters(&self) -> &TlbCounters {
        &self.tlb
    }

    pub fn block_counters_mut(&mut self) -> &mut BlockCounters {
        &mut self.block
    }

    /// The VMM processes the TLB and block programs count for, e.g. for tests that add
    /// synthetic ones.
    pub fn vmm_watch_mut(&mut self) -> &mut VmmWatch {
        &mut self.vmm_watch
    }

    /// The loaded programs, e.g. for driving the test harnesses.
    pub fn kernel_mut(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    /// The snapshot of the window between two samples of this session.
    #[must_use]
    pub fn snapshot(&self, earlier: &Sample, later: &Sample) -> Snapshot {
        let mut snapshot = window::snapshot(earlier, later, self.exits.sources(), &self.host);
        let context = sched::window::Context {
            sources: self.sched.sources(),
            hooks: self.sched.hooks(),
            topology: self.topology.as_ref(),
            proc_root: &self.proc_root,
        };
        sched::window::fill(
            &mut snapshot,
            earlier.sched_reading(),
            later.sched_reading(),
            &context,
        );
        tlb::view::fill(&mut snapshot, earlier, later);
        block::view::fill(&mut snapshot, earlier, later);
        snapshot.skipped_events = later
            .skipped
            .iter()
            .map(|(program, &total)| {
                let before = earlier.skipped.get(program).copied().unwrap_or(0);
                (
                    program.clone(),
                    SkippedEvents {
                        count: total.saturating_sub(before),
                        total,
                    },
                )
            })
            .filter(|(_, skipped)| skipped.total > 0)
            .collect();
        snapshot
    }

    /// Scans for VMs without reading counters. Calling it between samples lets discovery watch
    /// vCPU threads while the guests run (a thread is seen inside `KVM_RUN` only then).
    pub fn rescan(&mut self) {
        let scan = self.discovery.scan();
        self.track_identities(&scan.vmms);
        // New threads are watched from now rather than from the next sample.
        for problem in self.watch_threads(&scan.vmms) {
            log::warn!("{problem}");
        }
        self.watch_vmms(&scan.vmms);
    }

    /// Scans for VMs and reads every counter.
    pub fn sample(&mut self) -> Sample {
        let mut scan = self.discovery.scan();
        self.track_identities(&scan.vmms);
        // Before the counters: reading placement can take a while for large guests.
        let (memory, memory_problems) = self.memory.sample(&self.proc_root, &scan.vmms);
        scan.problems.extend(memory_problems);
        // One rule for every family: counters belong to a VMM discovery sees now, under the
        // identity it had before. A process that is gone, no longer a VMM, or whose pid was
        // reused by another process loses its totals, so a reused pid never inherits them.
        let reused = std::mem::take(&mut self.reused_pids);
        let live_pids: HashSet<u32> = scan
            .vmms
            .iter()
            .map(|v| v.id.pid)
            .filter(|pid| !reused.contains(pid))
            .collect();
        self.exits.retain(|pid| live_pids.contains(&pid));
        let mut exits = self.exits.read();
        exits.counts.retain(|k, _| live_pids.contains(&k.pid));
        exits.latency.retain(|k, _| live_pids.contains(&k.pid));
        exits.details.retain(|k, _| live_pids.contains(&k.pid));
        self.learn_vcpu_threads(&mut scan.vmms, &exits);
        self.identities
            .retain(|pid, _| scan.vmms.iter().any(|v| v.id.pid == *pid));
        let watch_problems = self.watch_threads(&scan.vmms);
        scan.problems.extend(watch_problems);
        let sched = self.sched.read();
        let (tlb, block) = self.sample_io(&scan.vmms, &live_pids);
        Sample {
            at: Instant::now(),
            wall: SystemTime::now(),
            vmms: scan.vmms,
            exits,
            sched,
            memory,
            tlb,
            block,
            skipped: self.kernel.skipped_events(),
            problems: scan.problems,
        }
    }

    /// Forgets the TLB and block totals of processes that are not live VMMs (see
    /// [`Session::sample`]), watches the current VMMs in those programs, and reads both families.
    fn sample_io(&mut self, vmms: &[Vmm], live_pids: &HashSet<u32>) -> (TlbTotals, BlockTotals) {
        let live = |pid: u32| live_pids.contains(&pid);
        self.tlb.retain(live);
        self.block.retain(live);
        self.watch_vmms(vmms);
        let mut tlb = self.tlb.read();
        tlb.vcpu_cpus = vmms
            .iter()
            .map(|v| (v.id.pid, tlb::vcpu_cpus(&self.proc_root, v)))
            .collect();
        (tlb, self.block.read(vmms))
    }

    fn watch_vmms(&mut self, vmms: &[Vmm]) {
        for pid in self.vmm_watch.sync(vmms.iter().map(|v| v.id.pid)) {
            log::warn!("cannot watch VMM process {pid} for TLB and block figures");
        }
    }

    /// Watches every thread of `vmms`, and the vhost kernel threads serving them, in the
    /// scheduler programs.
    fn watch_threads(&mut self, vmms: &[Vmm]) -> Vec<String> {
        let pids: HashSet<u32> = vmms.iter().map(|v| v.id.pid).collect();
        let vhost = self.vhost.threads(&self.proc_root, &pids);
        let threads = sched::watch::threads_of(vmms, vhost);
        let proc_root = &self.proc_root;
        self.sched.watch(&threads, |thread| {
            sched::watch::is_runnable(proc_root, thread)
        })
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
