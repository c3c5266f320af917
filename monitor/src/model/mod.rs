//! What kvmtop shows: one snapshot of every VM over a sampling window, independent of how it is
//! presented (TUI, JSON, text, Prometheus). Serialised as-is for `kvmtop snapshot --format json`;
//! the JSON Schema in `monitor/schema/snapshot.schema.json` describes it. Bump
//! [`SCHEMA_VERSION`] on any incompatible change.

use std::collections::BTreeMap;

use serde::Serialize;

pub mod advice;
pub mod block;
pub mod exits;
pub mod histogram;
pub mod running;
pub mod sched;
pub mod source;
pub mod tlb;
pub mod untrusted;

pub use exits::{
    DetailCount, DetailGroup, DetailKind, ExitSource, Exits, HostExits, Isa, ReasonCount, VcpuTime,
};
pub use histogram::{Bucket, Histogram, LatencySummary};
pub use running::rate;
pub use source::{Attachment, SourceState};
pub use untrusted::Untrusted;

pub const SCHEMA_VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub schema_version: u32,
    pub kvmtop_version: String,
    pub host: Host,
    pub window: Window,
    /// Host-wide state of each exit source, and exits lost to a full map.
    pub exits: HostExits,
    /// Host-wide state of the scheduling and NUMA sources.
    pub sched: sched::HostSched,
    /// Host-wide TLB flushing per CPU, and the state of the TLB sources.
    pub tlb: tlb::HostTlb,
    /// State of the block sources, and where requests are attributed to VMs.
    pub block: block::HostBlock,
    pub vms: Vec<Vm>,
    /// Things that went wrong while sampling but did not stop it (a VM vanishing mid-scan, an
    /// unreadable /proc entry, …).
    pub problems: Vec<Untrusted>,
    /// Per kernel program, events the kernel did not run it for because another BPF program was
    /// already running on that CPU (only programs that have skipped any): figures built from
    /// those programs undercount by that much.
    pub skipped_events: BTreeMap<String, SkippedEvents>,
    /// Tuning advice in force after this window, each with its evidence (see `kvmtop explain`).
    pub recommendations: Vec<advice::Recommendation>,
    /// Rule inputs that could not be measured this window, so those rules stayed quiet.
    pub advice_inputs_missing: Vec<advice::Unavailable>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SkippedEvents {
    /// In the window.
    pub count: u64,
    /// Since the program was loaded.
    pub total: u64,
}

/// One signal family's kernel sources and the events it lost to full maps.
pub struct FamilyState<'a> {
    /// `exits`, `sched`, `tlb` or `block`.
    pub family: &'static str,
    pub sources: &'a BTreeMap<&'static str, SourceState>,
    /// Since counting began (not per window).
    pub dropped: u64,
}

impl Snapshot {
    /// Every family's sources and losses, so presenters report degradation of all of them.
    #[must_use]
    pub fn families(&self) -> [FamilyState<'_>; 4] {
        [
            FamilyState {
                family: "exits",
                sources: &self.exits.sources,
                dropped: self.exits.dropped,
            },
            FamilyState {
                family: "sched",
                sources: &self.sched.sources,
                dropped: self.sched.dropped,
            },
            FamilyState {
                family: "tlb",
                sources: &self.tlb.sources,
                dropped: self.tlb.dropped,
            },
            FamilyState {
                family: "block",
                sources: &self.block.sources,
                dropped: self.block.dropped,
            },
        ]
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub hostname: String,
    pub kernel: String,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Window {
    /// Start of the window, seconds since the Unix epoch.
    pub start_unix_seconds: f64,
    pub duration_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
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
    pub exits: Exits,
    /// What the VM's exits were about, per kind: the largest values and the rest.
    pub exit_details: Vec<DetailGroup>,
    /// Run-queue wait, on-CPU time, switches and migrations of the VM's threads.
    pub sched: sched::VmSched,
    /// Where the VM's memory sits, and its NUMA faults.
    pub numa: sched::VmNuma,
    /// TLB shootdowns the VM's process sent and received.
    pub tlb: tlb::VmTlb,
    /// Block I/O of the VM per host device and operation, and its drives.
    pub block: block::VmBlock,
}

#[derive(Clone, Debug, Serialize)]
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

/// A fixed snapshot for presenter tests: one busy VM with two vCPUs, one idle VM.
#[cfg(test)]
pub mod fixture;
