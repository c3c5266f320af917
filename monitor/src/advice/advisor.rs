//! The advisor: turns each snapshot into recommendations. It reads the configuration facts,
//! keeps the per-thread and host counters it needs between windows, and runs the rules engine
//! (with hysteresis, so advice does not flap from one window to the next).

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use super::{
    Engine, Evaluation, HostFacts, HostObservations, Inputs, Roots, Thresholds, VmFacts, VmInputs,
    facts::VmStat, observe,
};
use crate::{
    discovery::{Vmm, VmmId},
    host::proc::{ThreadAccounting, cpu_times, seconds_since_start, uptime},
    model::Snapshot,
};

/// Whether the kernel programs measured vCPU `index`'s run-queue wait and migrations in the
/// window, so the kernel's own accounting in procfs need not be read for it.
fn kernel_measured(vm: &crate::model::Vm, index: u32) -> bool {
    vm.vcpus
        .iter()
        .find(|v| v.index == Some(index))
        .and_then(|v| v.sched.as_ref())
        .is_some_and(|s| s.figures.steal.is_some() && s.figures.migrations.is_some())
}

/// Host CPU time from the first line of `/proc/stat`: (busy, total) in clock ticks.
type CpuTimes = (u64, u64);

/// Per (pid, tid): run-queue wait share and migrations per second over the last window.
type ThreadRates = HashMap<(u32, u32), (Option<f64>, Option<f64>)>;

/// A VM's configuration facts are read again once every this many windows (spread over pids),
/// or as soon as its vCPUs or threads change: they read a `status` file per thread and the
/// mount table (at every ten windows, 100 VMs cost 9 `mounts` reads a second and about 25
/// `status` reads, the 45 measured less the TLB family's 20; a `mounts` takes as long as 3–4
/// `status`), and change only when an operator reconfigures the VM. Advice that depends on
/// them (pinning, memory backing) follows a change within this many windows, as it does the
/// host's ([`STABLE_FACTS_REFRESH_EVERY`]).
const FACTS_REFRESH_EVERY: u64 = 30;

/// The host's stable facts (CPUs, nodes, governors, KVM's parameters, `/proc/cpuinfo`) are read
/// again once every this many windows: about a dozen files per CPU, so thousands a window on a
/// large host, for facts that change on CPU hotplug or a module reload. Advice that depends on
/// them follows a change within this many windows.
const STABLE_FACTS_REFRESH_EVERY: u64 = 30;

/// A VM's facts as last read, and the threads they were read for.
struct CachedFacts {
    facts: VmFacts,
    threads: Vec<(u32, Option<u32>)>,
}

impl CachedFacts {
    /// What the facts depend on: every vCPU's thread, and every thread.
    fn threads_of(vmm: &Vmm) -> Vec<(u32, Option<u32>)> {
        vmm.vcpus
            .iter()
            .map(|v| (v.index, v.tid))
            .chain(vmm.threads.iter().map(|t| (u32::MAX, Some(t.tid))))
            .collect()
    }
}

pub struct Advisor {
    engine: Engine,
    roots: Roots,
    /// Readings per thread of a VMM process: a new process on a reused pid, even with the
    /// same thread ids, starts over.
    threads: HashMap<(VmmId, u32), ThreadAccounting>,
    host: Option<(Instant, VmStat, Option<CpuTimes>)>,
    /// Start time of each VMM process advised on at the last window, by pid.
    processes: HashMap<u32, u64>,
    facts: HashMap<VmmId, CachedFacts>,
    /// The host's facts of the last window; their stable part is kept between reads.
    stable_host_facts: Option<HostFacts>,
    windows: u64,
}

impl Advisor {
    /// An advisor for a stream of windows: a rule fires and clears only after holding for the
    /// configured number of windows in a row.
    #[must_use]
    pub fn new(thresholds: Thresholds, roots: Roots) -> Self {
        Self {
            engine: Engine::new(thresholds),
            roots,
            threads: HashMap::new(),
            host: None,
            processes: HashMap::new(),
            facts: HashMap::new(),
            stable_host_facts: None,
            windows: 0,
        }
    }

    /// An advisor for a single window (`kvmtop snapshot`): what holds over it is reported.
    #[must_use]
    pub fn one_shot(mut thresholds: Thresholds, roots: Roots) -> Self {
        thresholds.fire_after = 1;
        thresholds.clear_after = 1;
        Self::new(thresholds, roots)
    }

    /// Takes the counter readings a window starts from.
    pub fn start_window(&mut self, vmms: &[Vmm]) {
        let _ = self.read_counters(vmms, None);
    }

    /// The recommendations in force after the window `snapshot` describes. `vmms` are the VMs
    /// discovered at the end of the window.
    pub fn advise(&mut self, snapshot: &Snapshot, vmms: &[Vmm]) -> Evaluation {
        let seconds = snapshot.window.duration_seconds;
        self.forget_gone_processes(vmms);
        self.windows += 1;
        let (threads, host_observations) = self.read_counters(vmms, Some(snapshot));
        self.refresh_facts(vmms);
        let host = self.host_facts();
        let uptime = uptime(&self.roots.proc);
        let vm_inputs = vmms
            .iter()
            .filter_map(|vmm| {
                let vm = snapshot.vms.iter().find(|v| v.pid == vmm.id.pid)?;
                let per_vcpu: BTreeMap<u32, (Option<f64>, Option<f64>)> = vmm
                    .vcpus
                    .iter()
                    .filter_map(|v| Some((v.index, *threads.get(&(vmm.id.pid, v.tid?))?)))
                    .collect();
                let uptime_seconds = uptime.map(|up| seconds_since_start(up, vmm.id.start_time));
                Some(VmInputs {
                    facts: self.facts.get(&vmm.id)?.facts.clone(),
                    observations: observe::vm_observations(vm, uptime_seconds, &per_vcpu),
                })
            })
            .collect();
        let inputs = Inputs {
            window_seconds: Some(seconds),
            host,
            host_observations,
            vms: vm_inputs,
        };
        let mut evaluation = self.engine.evaluate(&inputs);
        evaluation.host = inputs.host_state();
        evaluation
    }

    /// The host's facts for this window: the stable ones as last read (again every
    /// [`STABLE_FACTS_REFRESH_EVERY`] windows), the others read now, with the `/proc/vmstat`
    /// reading the window's counters took.
    fn host_facts(&mut self) -> HostFacts {
        let due = self.windows.is_multiple_of(STABLE_FACTS_REFRESH_EVERY);
        let mut facts = match self.stable_host_facts.take() {
            Some(facts) if !due => facts,
            _ => HostFacts::read_stable(&self.roots),
        };
        let vmstat = self.host.as_ref().map_or_else(
            || HostFacts::read_vmstat(&self.roots),
            |(_, v, _)| v.clone(),
        );
        facts.refresh(&self.roots, vmstat);
        self.stable_host_facts = Some(facts.clone());
        facts
    }

    /// Forgets the advice history of processes that exited or whose pid now names another
    /// process, so advice about a VM ends with it and a new VM on its pid starts afresh.
    fn forget_gone_processes(&mut self, vmms: &[Vmm]) {
        let now: HashMap<u32, u64> = vmms.iter().map(|v| (v.id.pid, v.id.start_time)).collect();
        let before = std::mem::replace(&mut self.processes, now);
        let now = &self.processes;
        self.engine
            .forget_processes(|pid| now.get(&pid).is_none_or(|t| before.get(&pid) != Some(t)));
    }

    /// Reads the facts of VMs that are new, changed or due (see [`FACTS_REFRESH_EVERY`]) and
    /// forgets those of VMs gone.
    fn refresh_facts(&mut self, vmms: &[Vmm]) {
        let mut facts = HashMap::with_capacity(vmms.len());
        for vmm in vmms {
            let threads = CachedFacts::threads_of(vmm);
            let due = (self.windows + u64::from(vmm.id.pid)).is_multiple_of(FACTS_REFRESH_EVERY);
            let cached = self
                .facts
                .remove(&vmm.id)
                .filter(|c| !due && c.threads == threads);
            let cached = cached.unwrap_or_else(|| CachedFacts {
                facts: VmFacts::collect(vmm, &self.roots),
                threads,
            });
            facts.insert(vmm.id, cached);
        }
        self.facts = facts;
    }

    /// Reads the host counters and the run-queue wait and migrations of the vCPU threads the
    /// kernel programs gave no figures for in `snapshot` (of every vCPU thread without one);
    /// returns the rates since the previous reading.
    fn read_counters(
        &mut self,
        vmms: &[Vmm],
        snapshot: Option<&Snapshot>,
    ) -> (ThreadRates, HostObservations) {
        let now = Instant::now();
        let seconds = self
            .host
            .as_ref()
            .map_or(0.0, |(at, _, _)| now.duration_since(*at).as_secs_f64());
        let mut readings = HashMap::new();
        let mut rates = HashMap::new();
        for vmm in vmms {
            let vm = snapshot.and_then(|s| s.vms.iter().find(|v| v.pid == vmm.id.pid));
            for (index, tid) in vmm.vcpus.iter().filter_map(|v| Some((v.index, v.tid?))) {
                if vm.is_some_and(|vm| kernel_measured(vm, index)) {
                    continue;
                }
                let key = (vmm.id, tid);
                let reading = ThreadAccounting::read(&self.roots.proc, vmm.id.pid, tid);
                rates.insert(
                    (vmm.id.pid, tid),
                    observe::thread_rates(self.threads.get(&key), &reading, seconds),
                );
                readings.insert(key, reading);
            }
        }
        // Threads that are gone are forgotten; a reused tid or pid starts over.
        self.threads = readings;
        let vmstat = HostFacts::read_vmstat(&self.roots);
        let cpu = cpu_times(&self.roots.proc);
        let mut host = HostObservations::default();
        if let Some((_, before, cpu_before)) = &self.host {
            host = HostObservations::from_vmstat(before, &vmstat, seconds);
            if let (Some((busy0, total0)), Some((busy1, total1))) = (*cpu_before, cpu) {
                #[expect(clippy::cast_precision_loss, reason = "tick deltas far below 2^52")]
                let share = (total1 > total0)
                    .then(|| busy1.saturating_sub(busy0) as f64 / (total1 - total0) as f64);
                host.cpu_busy_share = share;
            }
        }
        self.host = Some((now, vmstat, cpu));
        (rates, host)
    }
}

#[cfg(test)]
mod tests;
