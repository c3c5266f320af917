//! Scheduling figures over a window: per vCPU, per VM, per VMM thread class, and the host-wide
//! state of their kernel sources.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use schemars::JsonSchema;

use super::Untrusted;

use super::{Bucket, Histogram, LatencySummary, LostEvents, SourceState};

/// What a VMM thread does, as its figures are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThreadClass {
    /// Runs a vCPU (`KVM_RUN`).
    Vcpu,
    /// The process's first thread: QEMU's main loop, which emulates devices without an iothread.
    Main,
    /// A QEMU `-object iothread` (`IO iothread0`, `IO mon_iothread`).
    #[serde(rename = "iothread")]
    IoThread,
    /// QEMU's thread pool (`worker`): `aio=threads` disk I/O and other blocking work.
    Worker,
    /// A vhost worker (`vhost-<pid>`): virtio rings served in the kernel.
    Vhost,
    Other,
}

impl ThreadClass {
    pub const ALL: [Self; 6] = [
        Self::Vcpu,
        Self::Main,
        Self::IoThread,
        Self::Worker,
        Self::Vhost,
        Self::Other,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vcpu => "vcpu",
            Self::Main => "main",
            Self::IoThread => "iothread",
            Self::Worker => "worker",
            Self::Vhost => "vhost",
            Self::Other => "other",
        }
    }
}

/// Host-wide state of the scheduling sources.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct HostSched {
    /// `sched_switch`, `sched_wakeup`, and `process_fork`, `process_exit`, `process_exec`,
    /// which give no figure: discovery follows them to re-read only the VMMs that changed.
    pub sources: BTreeMap<String, SourceState>,
    /// Where each source runs (`tracepoint:sched:sched_switch`, …).
    pub hooks: BTreeMap<String, String>,
    /// VMM threads the programs watch.
    pub watched_threads: usize,
    /// Per source, events the kernel did not run its program for (another BPF program was
    /// running on that CPU): in the window and since start. Only sources that lost any.
    pub lost: BTreeMap<String, LostEvents>,
    /// Events not counted because a kernel map (`SCHED_DROPS` counts them) was full.
    pub dropped: LostEvents,
}

/// Scheduling figures of one thread, or of a group of threads added up, over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SchedFigures {
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub threads: u32,
    /// Run-queue wait (runnable, not running) as a share of the threads' wall time: the steal
    /// a guest sees on a vCPU. 0-1, the mean over the threads; null without `sched_switch` and
    /// `sched_wakeup`.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub steal: Option<f64>,
    /// On-CPU time as a share of the threads' wall time, the mean over the threads; null
    /// without `sched_switch`.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub on_cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub wait_ns: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub run_ns: u64,
    /// The waits that ended in the window.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub wait: Option<LatencySummary>,
    /// Their log2 histogram: the non-empty buckets `[floor_ns, 2 × floor_ns)`.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub wait_buckets: Vec<Bucket>,
    /// Switches out while blocking (sleep, I/O).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub voluntary_switches: u64,
    /// Switches out while runnable (preempted).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub involuntary_switches: u64,
    /// Runs started on another host CPU than the thread's previous run (counted by
    /// `sched_switch` at switch-in: a thread moved several times while it waited migrates
    /// once); null without `sched_switch`.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub migrations: Option<Migrations>,
    /// Running totals, for Prometheus counters.
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative: SchedCumulative,
}

/// What a migration can cross, the keys of [`Migrations::by_class`]: every class is present,
/// at 0 when no thread moved that way.
pub const MIGRATION_CLASSES: [&str; 5] = [
    "same_core",
    "same_llc",
    "cross_llc",
    "cross_node",
    "unknown",
];

/// Migrations over the window, by what they crossed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Migrations {
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub count: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub rate: f64,
    /// `same_core` (SMT sibling), `same_llc`, `cross_llc`, `cross_node`, `unknown`.
    #[serde(
        serialize_with = "super::recorded::write_moved_classes",
        deserialize_with = "super::recorded::read_classes"
    )]
    pub by_class: BTreeMap<&'static str, MigrationCount>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationCount {
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub count: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub rate: f64,
}

/// Running totals since kvmtop started watching the threads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedCumulative {
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    pub wait_ns: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    pub run_ns: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    pub voluntary_switches: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    pub involuntary_switches: u64,
    #[serde(
        serialize_with = "super::recorded::write_moved_classes",
        deserialize_with = "super::recorded::read_classes"
    )]
    pub migrations: BTreeMap<&'static str, u64>,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    pub wait: Histogram,
}

/// A vCPU's scheduling figures and where it ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VcpuSched {
    #[serde(flatten)]
    pub figures: SchedFigures,
    pub placement: Placement,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Placement {
    /// The host CPU the thread runs on or last ran on, and that CPU's NUMA node.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub cpu: Option<u32>,
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub node: Option<u32>,
    /// The host CPU it ran on longest in the window, the share of its on-CPU time spent there,
    /// and that CPU's node.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub dominant_cpu: Option<u32>,
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub dominant_cpu_share: Option<f64>,
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub dominant_node: Option<u32>,
    /// The share of the VM's resident memory on other nodes than this vCPU's (its dominant
    /// CPU's node, else its current one): 0 when everything is local.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub remote_memory_share: Option<f64>,
}

/// A VM's scheduling figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmSched {
    /// The vCPU threads together.
    pub vcpus: SchedFigures,
    /// Each thread class of the VMM present, in a fixed order (vcpu, main, iothread, worker,
    /// vhost, other).
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub classes: Vec<ClassSched>,
    /// Who held the CPU when the VM's threads got it after waiting, most wait first, over the
    /// last `contenders_seconds`.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub contenders: Vec<ContenderFigures>,
    /// The span the contenders cover, in seconds: the window in a snapshot; in the live modes
    /// (`top`, `serve`, `record`) the contender map is read about every 5 s and the windows in
    /// between repeat the last list. 0 in recordings made before it was recorded.
    #[serde(default)]
    pub contenders_seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClassSched {
    pub class: ThreadClass,
    #[serde(flatten)]
    pub figures: SchedFigures,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContenderFigures {
    /// The process; null for the idle task and for "other".
    pub pid: Option<u32>,
    pub name: Untrusted,
    pub kind: ContenderKind,
    /// Waits it ended, and their total.
    pub waits: u64,
    pub wait_ns: u64,
    /// Its share of the VM's run-queue wait that ended in the span (`contenders_seconds`).
    pub share: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContenderKind {
    /// Another thread of the same VM.
    SameVm,
    /// Another VM.
    Vm,
    /// Any other process on the host (kernel threads included).
    Host,
    /// The CPU was idle: the wait was wake-up latency.
    Idle,
    /// The contenders beyond the ones listed.
    Other,
}

