//! VM exits over a window: counts and rates by source and reason, handling latency, what the
//! exits were about (ports, MSRs, guest pages, …), and where each vCPU's time went.

use std::{borrow::Cow, collections::BTreeMap};

use serde::{Deserialize, Serialize};
use schemars::JsonSchema;

use super::{Histogram, LatencySummary, LostEvents, SourceState, interned::StaticText};

/// The tracepoint that produced an exit count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExitSource {
    /// `kvm:kvm_exit`, every hardware exit.
    KvmExit,
    /// `kvm:kvm_userspace_exit`, every return of `KVM_RUN` to the VMM.
    Userspace,
    /// `kvm:kvm_vcpu_wakeup`, every end of a halt KVM handled in the kernel.
    Halt,
}

impl ExitSource {
    pub const ALL: [Self; 3] = [Self::KvmExit, Self::Userspace, Self::Halt];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KvmExit => "kvm_exit",
            Self::Userspace => "userspace",
            Self::Halt => "halt",
        }
    }

    /// The kernel tracepoint behind this source.
    #[must_use]
    pub fn tracepoint(self) -> &'static str {
        match self {
            Self::KvmExit => "kvm:kvm_exit",
            Self::Userspace => "kvm:kvm_userspace_exit",
            Self::Halt => "kvm:kvm_vcpu_wakeup",
        }
    }

    /// What the latency of an exit of this source measures.
    #[must_use]
    pub fn latency_meaning(self) -> &'static str {
        match self {
            Self::KvmExit => "kvm_exit → next kvm_entry on the thread",
            Self::Userspace => "userspace exit → next KVM_RUN (time in the VMM)",
            Self::Halt => "halt duration (kvm_vcpu_wakeup)",
        }
    }
}

/// Hardware virtualisation family of a hardware exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Isa {
    Vmx,
    Svm,
}

impl Isa {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vmx => "vmx",
            Self::Svm => "svm",
        }
    }
}

/// What a detail counts, with the tracepoint behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DetailKind {
    Pio,
    Mmio,
    Msr,
    PageFault,
    Hypercall,
    ApicIpi,
    HaltPoll,
    Emulation,
}

impl DetailKind {
    pub const ALL: [Self; 8] = [
        Self::Pio,
        Self::Mmio,
        Self::Msr,
        Self::PageFault,
        Self::Hypercall,
        Self::ApicIpi,
        Self::HaltPoll,
        Self::Emulation,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pio => "pio",
            Self::Mmio => "mmio",
            Self::Msr => "msr",
            Self::PageFault => "page_fault",
            Self::Hypercall => "hypercall",
            Self::ApicIpi => "apic_ipi",
            Self::HaltPoll => "halt_poll",
            Self::Emulation => "emulation",
        }
    }

    /// Header for the detail's value column.
    #[must_use]
    pub fn value_name(self) -> &'static str {
        match self {
            Self::Pio => "port",
            Self::Mmio => "guest page",
            Self::Msr => "MSR",
            Self::PageFault => "guest 2 MiB region",
            Self::Hypercall => "hypercall nr",
            Self::ApicIpi => "destination APIC id",
            Self::HaltPoll => "poll window",
            Self::Emulation => "outcome",
        }
    }

    /// The detail kind that says what exits of this reason were about, by the reason's name
    /// in any of the tables (VMX, SVM, userspace).
    #[must_use]
    pub fn for_reason(name: &str) -> Option<Self> {
        Some(match name {
            "IO_INSTRUCTION" | "io" | "IO" => Self::Pio,
            "EPT_MISCONFIG" | "MMIO" => Self::Mmio,
            "EPT_VIOLATION" | "npf" => Self::PageFault,
            "MSR_READ" | "MSR_WRITE" | "MSR_WRITE_IMM" | "msr" => Self::Msr,
            "VMCALL" | "vmmcall" | "HYPERCALL" => Self::Hypercall,
            "HLT" | "hlt" | "HALT_POLLED" | "HALT_BLOCKED" => Self::HaltPoll,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct HostExits {
    /// State of every kernel source of exit figures, by short name (`kvm_exit`, `kvm_entry`,
    /// `userspace`, `kvm_run`, `halt`, `pio`, `mmio`, …).
    pub sources: BTreeMap<String, SourceState>,
    /// Where each source runs (`tracepoint:kvm:kvm_exit`, …).
    pub hooks: BTreeMap<String, String>,
    /// Per source, events the kernel did not run its program for (another BPF program was
    /// running on that CPU): in the window and since start. Only sources that lost any.
    pub lost: BTreeMap<String, LostEvents>,
    /// Exits that could not be counted because a kernel map (`EXITS_DROPS` counts them) was
    /// full.
    pub dropped: LostEvents,
}

/// One kind of exit detail of a VM over the window.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DetailGroup {
    pub kind: DetailKind,
    /// The tracepoint that reported it.
    pub source: String,
    /// What `value` is (port, MSR, guest page, …).
    #[serde(deserialize_with = "super::interned::text")]
    pub value_name: StaticText,
    pub count: u64,
    pub rate: f64,
    /// Largest first.
    pub top: Vec<DetailCount>,
    /// Events of this kind not in `top`.
    pub other: u64,
    /// Events since kvmtop started counting this VM (for Prometheus counters).
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DetailCount {
    /// Direction, access type, fault kind or delivery mode; empty when the kind has none.
    pub sub: String,
    pub value: String,
    /// `sub` as the tracepoint reports it (e.g. 1 for an MSR write, 0 for a port read).
    pub sub_code: u32,
    /// `value` as a number: the port, MSR index, guest-physical address (of the page or 2 MiB
    /// region), hypercall number or destination APIC id; null for kinds without one.
    pub number: Option<u64>,
    pub count: u64,
    pub rate: f64,
}

impl DetailGroup {
    /// The I/O ports of a `pio` group with the rate of each, reads and writes together.
    pub fn ports(&self) -> impl Iterator<Item = (u16, f64)> + '_ {
        self.top
            .iter()
            .filter(|_| self.kind == DetailKind::Pio)
            .filter_map(|d| Some((u16::try_from(d.number?).ok()?, d.rate)))
    }

    /// The MSRs written (`wrmsr`) in an `msr` group, with the rate of each.
    pub fn msr_writes(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.top
            .iter()
            .filter(|d| self.kind == DetailKind::Msr && d.sub_code == 1)
            .filter_map(|d| Some((u32::try_from(d.number?).ok()?, d.rate)))
    }
}

/// Shares (0–1) of a vCPU's wall time over the window; null where the source is unavailable
/// or the vCPU's thread is not known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VcpuTime {
    /// Handling hardware exits (`kvm_exit` → `kvm_entry`).
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub handling_exits: Option<f64>,
    /// In the VMM after a userspace exit, until the next `KVM_RUN`.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub in_vmm: Option<f64>,
    /// Halted in the kernel, waiting for an interrupt.
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub halted: Option<f64>,
}

/// Exit counts over the window, of a VM or of one vCPU.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Exits {
    /// State of each exit source for this VM in the window.
    // Keyed by the sources' static names: every vCPU of every VM has such a map each window.
    #[serde(deserialize_with = "super::interned::text_keys")]
    pub sources: BTreeMap<StaticText, SourceState>,
    /// Hardware exits in the window (`kvm_exit`).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub total: u64,
    /// Returns to the VMM in the window (userspace exits).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub userspace_total: u64,
    /// Halts that ended in the window (`kvm_vcpu_wakeup`).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub halts: u64,
    /// Sorted by count, largest first.
    #[serde(deserialize_with = "read_reasons")]
    pub by_reason: Vec<ReasonCount>,
    /// What the exits were about, per kind: the largest values and the rest (a VM's only; empty
    /// for a vCPU).
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub details: Vec<DetailGroup>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReasonCount {
    pub source: ExitSource,
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub isa: Option<Isa>,
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub code: u64,
    // Borrowed for the reasons this kvmtop names (nearly all), not copied per reason, vCPU and
    // window.
    pub reason: Cow<'static, str>,
    /// Events in the window.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub count: u64,
    /// Events per second over the window.
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub rate: f64,
    /// Events since kvmtop started counting this VM (for Prometheus counters).
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative: u64,
    /// This reason's share of its source's events in the window (0–1).
    #[serde(default, skip_serializing_if = "super::recorded::unset")]
    #[schemars(!default, !skip_serializing_if)]
    pub share: f64,
    /// Handling latency over the window (see `latency_meaning`); null when the interval's
    /// closing event is not seen (e.g. `kvm_entry` unavailable).
    #[serde(skip_serializing_if = "super::recorded::absent")]
    pub latency: Option<LatencySummary>,
    /// What the latency measures, for this reason's source.
    #[serde(
        default,
        deserialize_with = "super::interned::text",
        skip_serializing_if = "super::recorded::derived"
    )]
    // Always there outside recordings, which the schema does not describe.
    #[schemars(!default, !skip_serializing_if)]
    pub latency_meaning: StaticText,
    /// Running latency histogram (for Prometheus histograms).
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative_latency: Option<Histogram>,
}

/// Reads the reasons, each meaning a recording left out taken from its source.
fn read_reasons<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ReasonCount>, D::Error> {
    let mut reasons = Vec::<ReasonCount>::deserialize(d)?;
    for reason in &mut reasons {
        if reason.latency_meaning.is_empty() {
            reason.latency_meaning = reason.source.latency_meaning();
        }
    }
    Ok(reasons)
}

impl Exits {
    /// The reasons that had exits in the window (the others are kept for their running totals).
    pub fn seen(&self) -> impl Iterator<Item = &ReasonCount> {
        self.by_reason.iter().filter(|r| r.count > 0)
    }

    /// Events per second of one source.
    #[must_use]
    pub fn rate_of(&self, source: ExitSource) -> f64 {
        // fold from +0.0: an empty f64 sum() is -0.0, which would print as "-0".
        self.by_reason
            .iter()
            .filter(|r| r.source == source)
            .map(|r| r.rate)
            .fold(0.0, |a, b| a + b)
    }

    /// Exits per second as the VM list shows, sorts and charts them: hardware exits where
    /// `kvm_exit` counted some in the window, returns to the VMM otherwise. Where `kvm_exit` is
    /// silent (nested virtualization, PVM) or unavailable, the returns to the VMM are the exits
    /// the host sees; adding both would count every return twice on a host that has both, as
    /// each return to the VMM is a hardware exit first.
    #[must_use]
    pub fn headline_rate(&self) -> f64 {
        let source = if self.is_live(ExitSource::KvmExit) {
            ExitSource::KvmExit
        } else {
            ExitSource::Userspace
        };
        self.rate_of(source)
    }

    /// Whether the source's kernel hook is attached and counted events in the window.
    #[must_use]
    pub fn is_live(&self, source: ExitSource) -> bool {
        self.sources.get(source.as_str()) == Some(&super::SourceState::Live)
    }
}
