//! TLB shootdowns in the snapshot: per VM (sent, received, by reason, by thread and CPU, guest
//! paravirtual flushes) and per host CPU.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use schemars::JsonSchema;

use crate::model::{LostEvents, SourceState, interned::StaticText};

/// Host-wide TLB flushing over the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct HostTlb {
    /// State of each TLB source (`tlb_flush`, `pv_tlb_flush`).
    pub sources: BTreeMap<String, SourceState>,
    /// Where each source runs (`tracepoint:tlb:tlb_flush`, …).
    pub hooks: BTreeMap<String, String>,
    /// Every CPU that has flushed since counting began, whatever task it ran; window counts
    /// may be 0.
    pub cpus: Vec<CpuTlb>,
    /// Per source, events the kernel did not run its program for (another BPF program was
    /// running on that CPU): in the window and since start. Only sources that lost any.
    pub lost: BTreeMap<String, LostEvents>,
    /// VMM flushes not counted because the kernel map (`TLB_DROPS` counts them) was full.
    pub dropped: LostEvents,
}

/// One host CPU over the window, all tasks.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CpuTlb {
    pub cpu: u32,
    /// Shootdowns this CPU received (`remote_shootdown`).
    pub received: FlushCount,
    /// Shootdowns this CPU sent (`remote_send_ipi`).
    pub sent: FlushCount,
    /// Flushes of every reason, task switches included.
    pub flushes: u64,
}

/// Flushes over the window and what they covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlushCount {
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub count: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub rate: f64,
    /// Pages of the ranged flushes.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub pages: u64,
    /// Flushes of a whole address space (no page count).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub full_flushes: u64,
    /// Events since kvmtop started counting (for Prometheus counters).
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative: u64,
}

/// A VM's TLB shootdowns over the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct VmTlb {
    /// Shootdowns the VMM's threads sent (`remote_send_ipi`): they changed the VM process's
    /// mappings while other CPUs were using them, and interrupted those CPUs.
    pub sent: FlushCount,
    /// Shootdowns received by CPUs while they ran the VMM's threads (`remote_shootdown`),
    /// vCPU threads included: each one interrupted the guest.
    pub received: FlushCount,
    /// Every flush reason seen in the VMM's threads, largest first.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub by_reason: Vec<TlbReasonCount>,
    /// Received shootdowns per thread, largest first; `vcpu` is the vCPU the thread runs.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub received_by_thread: Vec<ThreadShootdowns>,
    /// Received shootdowns per host CPU.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub received_by_cpu: Vec<CpuShootdowns>,
    /// The host CPUs the VM's vCPU threads may run on (their affinity); empty while unknown.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub vcpu_cpus: Vec<u32>,
    /// Shootdowns received on those CPUs by any task (not only this VM's): the interruptions its
    /// vCPUs can suffer from the rest of the host. Null while `vcpu_cpus` is unknown.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub received_on_vcpu_cpus: Option<FlushCount>,
    /// KVM's paravirtual TLB flushes for this guest (`kvm_pv_tlb_flush`).
    pub pv_flushes: PvFlushes,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TlbReasonCount {
    /// `task_switch`, `remote_shootdown`, `local_shootdown`, `local_mm_shootdown`,
    /// `remote_send_ipi`, `remote_wrong_cpu` or `other`.
    #[serde(deserialize_with = "super::interned::text")]
    pub reason: StaticText,
    /// The kernel's `enum tlb_flush_reason` value.
    pub code: u32,
    #[serde(flatten)]
    pub flushes: FlushCount,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ThreadShootdowns {
    pub tid: u32,
    pub vcpu: Option<u32>,
    pub count: u64,
    pub rate: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CpuShootdowns {
    pub cpu: u32,
    pub count: u64,
    pub rate: f64,
}

/// Paravirtual TLB flushes: instead of waiting for an IPI to reach a preempted vCPU, the guest
/// marks it, and KVM flushes its TLB when it next runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PvFlushes {
    /// Steal-time updates KVM checked for a pending flush.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub checks: u64,
    /// Flushes KVM performed on the guest's behalf.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub flushed: u64,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub flushed_rate: f64,
}
