//! The one shape of a signal family.
//!
//! A family (exits, sched, numa, tlb, block) owns its kernel programs' maps, turns their raw
//! contents into domain totals at the boundary, and fills its part of each window's snapshot.
//! The session drives every family through [`Family`] alone, in the order of the list in
//! [`crate::families`], and names none of them.
//!
//! A window is always computed the same way: two readings of running totals ([`Pair`]), and the
//! VMs of the later one, each marked new or not ([`VmSpan`]) by the session's one rule for "is
//! this the same VM as at the earlier reading?" (same pid *and* start time).

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
};

use crate::{
    bpf::{
        Kernel,
        hooks::{Global, HookKind, SourceSpec, Sources},
    },
    discovery::Vmm,
    host::{btf::KernelBtf, topology::Topology, tracefs::TraceFs},
    model::Snapshot,
};

/// A signal family; see the module documentation.
pub trait Family: Sized {
    /// The family's name: its key in snapshots, its label in metrics and the log.
    const NAME: &'static str;

    /// What the family's kernel programs (and, for some, procfs) hold at one instant, decoded.
    type Totals: Clone + Default + Send;

    /// The family's hook table: every kernel source, with the ways to run it on this kernel.
    #[must_use]
    fn sources(host: &HostView) -> Vec<SourceSpec>;

    /// Whether every source must run as the same kind of hook (its programs share state that
    /// each kind keys its own way); otherwise each source runs as the best kind it can.
    const SOURCES_RUN_AS_ONE_KIND: bool = false;

    /// The sources whose programs count the watched processes' lifecycle events
    /// (`VMM_CHANGES`) for discovery, which follows those counters only while every such
    /// source of every family is attached.
    const DISCOVERY_SOURCES: &'static [&'static str] = &[];

    /// Load-time constants that belong to no single source.
    #[must_use]
    fn globals(_host: &HostView) -> Vec<Global> {
        Vec::new()
    }

    /// Takes the family's maps once its sources are attached.
    fn start(kernel: &mut Kernel, sources: Sources, host: &HostView) -> anyhow::Result<Self>;

    /// What became of each source.
    fn sources_attached(&self) -> &Sources;

    /// Keeps the family's kernel state in step with the VMs discovery sees (which threads or
    /// processes the programs watch). Called on every scan, also between samples; returns what
    /// could not be done.
    fn follow(&mut self, _vms: &Vms<'_>) -> Vec<String> {
        Vec::new()
    }

    /// Reads the running totals, after forgetting those of processes `vms` does not keep.
    fn sample(&mut self, vms: &Vms<'_>) -> Self::Totals;

    /// vCPU threads the totals reveal about `vmms`, for discovery.
    fn vcpu_threads(_totals: &Self::Totals, _vmms: &[Vmm]) -> Vec<VcpuSighting> {
        Vec::new()
    }

    /// Processes the kernel programs saw running a vCPU that are not among the VMMs sampled,
    /// for discovery to inspect at its next scan.
    fn unknown_vmms(_totals: &Self::Totals) -> Vec<u32> {
        Vec::new()
    }

    /// Fills the family's part of the window's snapshot, whose VMs are `pair.vms` in order.
    fn window(&self, pair: &Pair<'_, Self::Totals>, snapshot: &mut Snapshot);
}

/// Where the families read the host from, and what of it they share.
pub struct HostView {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub tracefs: TraceFs,
    /// The host's CPUs, caches and nodes; `None` when sysfs could not be read.
    pub topology: Option<Topology>,
    /// The kernel's BTF (offsets for the raw-argument programs), or why it cannot be read.
    /// Only while the hook tables are built.
    pub btf: Result<KernelBtf, String>,
    /// The kinds of tracepoint program sources may run as.
    pub hook_kinds: Vec<HookKind>,
    /// How much the operator asked the families to collect.
    pub collect: CollectLevel,
    /// Readings per reading of the scheduler's contender map (see
    /// `families::sched::contender_span`): 1 in a snapshot, about 5 s of readings in the live
    /// modes.
    pub contender_readings: u64,
}

/// How deep kvmtop looks into every exit, trading depth for what each exit costs the guest: each
/// level attaches the programs of the one before and more, and a program not attached costs an
/// exit nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum CollectLevel {
    /// Exit counts by reason (`kvm_exit`, `kvm_userspace_exit`): the fewest programs per exit.
    Counts,
    /// Also the time each exit takes to handle, in KVM and in the VMM, and halt durations
    /// (`kvm_entry`, the start of each `KVM_RUN`, `kvm_vcpu_wakeup`).
    Latency,
    /// Also which port, MSR, guest-physical region, hypercall or IPI each exit was for (KVM's
    /// detail tracepoints).
    #[default]
    Details,
}

impl CollectLevel {
    /// Why a source of `level` is not attached at this level, or `None` when it is.
    #[must_use]
    pub fn leaves_out(self, level: Self) -> Option<String> {
        (level > self).then(|| format!("not collected (--collect {self}; it needs {level})"))
    }
}

impl std::fmt::Display for CollectLevel {
    /// As `--collect` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Counts => "counts",
            Self::Latency => "latency",
            Self::Details => "details",
        })
    }
}

/// The VMs discovery sees now, and whose counters the families keep.
pub struct Vms<'a> {
    pub vmms: &'a [Vmm],
    /// Each VMM's vhost kernel threads, outside its process (`ScanResult::vhost_workers`).
    pub vhost_workers: &'a BTreeMap<u32, Vec<u32>>,
    keep: HashSet<u32>,
}

impl<'a> Vms<'a> {
    /// `vmms`, of which those whose pid is in `reused` (another process than at the last sample)
    /// lose their counters.
    #[must_use]
    pub fn new(
        vmms: &'a [Vmm],
        vhost_workers: &'a BTreeMap<u32, Vec<u32>>,
        reused: &HashSet<u32>,
    ) -> Self {
        let keep = vmms
            .iter()
            .map(|v| v.id.pid)
            .filter(|pid| !reused.contains(pid))
            .collect();
        Self {
            vmms,
            vhost_workers,
            keep,
        }
    }

    /// The one rule for forgetting counters: a process keeps its counters while it is a VMM
    /// discovery sees now, under the identity it had before. A process that is gone, no longer a
    /// VMM, or whose pid was reused loses them, so a reused pid never inherits them.
    #[must_use]
    pub fn keeps(&self, pid: u32) -> bool {
        self.keep.contains(&pid)
    }
}

/// A thread the kernel saw running a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuSighting {
    pub pid: u32,
    pub tid: u32,
    pub index: u32,
}

/// A VM of a window.
#[derive(Clone, Copy, Debug)]
pub struct VmSpan<'a> {
    pub vmm: &'a Vmm,
    /// Whether the VM is new in the window: it started during it, or its pid was another process
    /// at the earlier reading. Its counters then count from zero.
    pub new: bool,
}

impl VmSpan<'_> {
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.vmm.id.pid
    }
}

/// Two readings of a family's running totals and the window between them.
pub struct Pair<'a, T> {
    pub now: &'a T,
    pub before: &'a T,
    /// The VMs at the later reading, in the order of the snapshot's.
    pub vms: &'a [VmSpan<'a>],
    pub seconds: f64,
}

impl<T> Pair<'_, T> {
    /// The earlier totals to subtract for `vm`'s counters: none for a VM new in the window.
    #[must_use]
    pub fn before_for(&self, vm: &VmSpan<'_>) -> Option<&T> {
        (!vm.new).then_some(self.before)
    }

    /// The window's VM with pid `pid`.
    #[must_use]
    pub fn vm(&self, pid: u32) -> Option<&VmSpan<'_>> {
        self.vms.iter().find(|v| v.pid() == pid)
    }
}
