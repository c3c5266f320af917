//! What kvmtop shows: one snapshot of every VM over a sampling window, independent of how it is
//! presented (TUI, JSON, text, Prometheus) and of how it was collected. Serialised as-is for
//! `kvmtop snapshot --format json`; the JSON Schema in `monitor/schema/snapshot.schema.json` is
//! generated from these types. Bump [`SCHEMA_VERSION`] on any incompatible change.
//!
//! This is the bottom layer: it imports nothing else of kvmtop.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod advice;
pub mod histogram;
pub mod host;
pub mod interned;
pub mod recorded;
pub mod running;
pub mod source;
pub mod untrusted;

pub use exits::{
    DetailCount, DetailGroup, DetailKind, ExitSource, Exits, HostExits, Isa, ReasonCount, VcpuTime,
};
pub use histogram::{Bucket, Histogram, LatencySummary};
pub use host::{Host, HostState};
pub use running::rate;
pub use source::{Attachment, LostEvents, SourceState};
pub use untrusted::Untrusted;

pub const SCHEMA_VERSION: u32 = 4;

/// Declares the signal families' figures: a module each, with a host-wide part
/// ([`HostFamilies`], in the snapshot) and a per-VM part ([`VmFamilies`], in each VM). Both are
/// flattened, so each family is one key of the snapshot and of each VM.
macro_rules! families {
    ($($(#[$doc:meta])* $name:ident: $host:ident, $vm:ident;)+) => {
        $(pub mod $name;)+

        /// Every family's host-wide figures: its sources, losses and host-level figures.
        #[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
        pub struct HostFamilies {
            $($(#[$doc])* pub $name: $name::$host,)+
        }

        /// Every family's figures of one VM.
        #[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
        pub struct VmFamilies {
            $($(#[$doc])* pub $name: $name::$vm,)+
        }

        impl HostFamilies {
            /// Every family's sources and losses, so presenters report the degradation of all of
            /// them.
            #[must_use]
            pub fn states(&self) -> Vec<FamilyState<'_>> {
                vec![$(FamilyState {
                    family: stringify!($name),
                    sources: &self.$name.sources,
                    hooks: &self.$name.hooks,
                    lost: &self.$name.lost,
                    dropped: self.$name.dropped,
                },)+]
            }

            /// The per-source losses of the family `family`, to fill in once the window's
            /// sources are known.
            pub fn lost_mut(&mut self, family: &str) -> Option<&mut BTreeMap<String, LostEvents>> {
                match family {
                    $(stringify!($name) => Some(&mut self.$name.lost),)+
                    _ => None,
                }
            }
        }
    };
}

families! {
    /// VM exits: counts by source and reason, handling latency, and what they were about.
    exits: HostExits, Exits;
    /// Scheduling of the VMs' threads: run-queue wait (steal), on-CPU time, migrations.
    sched: HostSched, VmSched;
    /// NUMA placement of the VMs' memory and their hinting faults.
    numa: HostNuma, VmNuma;
    /// TLB shootdowns the VMs' processes sent and received, and every CPU's flushes.
    tlb: HostTlb, VmTlb;
    /// Block I/O per VM, host device and operation, and where the VMs' drives sit.
    block: HostBlock, VmBlock;
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Snapshot {
    pub schema_version: u32,
    pub kvmtop_version: String,
    pub host: Host,
    pub window: Window,
    /// One key per family: its sources, losses and host-wide figures.
    #[serde(flatten)]
    pub families: HostFamilies,
    pub vms: Vec<Vm>,
    /// Things that went wrong while sampling but did not stop it (a VM vanishing mid-scan, an
    /// unreadable /proc entry, …).
    pub problems: Vec<Untrusted>,
    /// Per kernel program, events the kernel did not run it for because another BPF program was
    /// already running on that CPU (only programs that have skipped any): figures built from
    /// those programs undercount by that much. Each family's `lost` says which of its sources
    /// these are.
    pub skipped_events: BTreeMap<String, LostEvents>,
    /// Tuning advice in force after this window, each with its evidence (see `kvmtop explain`).
    #[serde(
        serialize_with = "advice::recorded::write",
        deserialize_with = "advice::recorded::read"
    )]
    #[schemars(with = "Vec<advice::Recommendation>")]
    pub recommendations: Vec<advice::Recommendation>,
    /// Rule inputs that could not be measured this window, so those rules stayed quiet.
    pub advice_inputs_missing: Vec<advice::Unavailable>,
}

/// One signal family's kernel sources and the events they lost.
pub struct FamilyState<'a> {
    /// The family's name (`exits`, `sched`, `numa`, `tlb`, `block`).
    pub family: &'static str,
    pub sources: &'a BTreeMap<String, SourceState>,
    /// Where each source runs (`tracepoint:sched:sched_switch`, `fentry:task_numa_fault`, …).
    pub hooks: &'a BTreeMap<String, String>,
    /// Per source, the events the kernel skipped its program for (only sources that lost any).
    pub lost: &'a BTreeMap<String, LostEvents>,
    /// Events the family's programs did not count because one of its kernel maps was full.
    pub dropped: LostEvents,
}

impl FamilyState<'_> {
    /// The events `source` lost in the window.
    #[must_use]
    pub fn lost_in_window(&self, source: &str) -> u64 {
        self.lost.get(source).map_or(0, |lost| lost.count)
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Window {
    /// Start of the window, seconds since the Unix epoch.
    pub start_unix_seconds: f64,
    pub duration_seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Vm {
    pub pid: u32,
    /// Process start time (clock ticks since boot): with `pid`, identifies this VM across pid reuse.
    pub start_time: u64,
    /// Chosen by the VM's owner: shown sanitized, kept exact in JSON and labels.
    pub name: Untrusted,
    pub uuid: Option<String>,
    /// "qemu" or the executable name of another VMM.
    pub vmm: Untrusted,
    pub vcpus: Vec<Vcpu>,
    /// One key per family: its figures of this VM.
    #[serde(flatten)]
    pub families: VmFamilies,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Vcpu {
    /// vCPU index; null for a thread seen entering `KVM_RUN` whose index is not known yet.
    pub index: Option<u32>,
    /// Thread running the vCPU; null while it is not known.
    pub tid: Option<u32>,
    pub exits: Exits,
    /// Where the vCPU's wall time went over the window, as fractions of it.
    pub time: VcpuTime,
    /// Scheduling of the vCPU's thread; null while the thread is not known.
    pub sched: Option<sched::VcpuSched>,
}

impl Vcpu {
    /// A vCPU before the families fill in its figures.
    #[must_use]
    pub fn new(index: Option<u32>, tid: Option<u32>) -> Self {
        Self {
            index,
            tid,
            exits: Exits::default(),
            time: VcpuTime::default(),
            sched: None,
        }
    }
}
