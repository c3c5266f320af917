//! The kernel sources of exit figures: which tracepoint each program attaches to, the record
//! layouts this kernel needs, and attaching them one by one so a missing tracepoint costs only
//! the figures that need it.

use std::{collections::BTreeMap, path::Path};

use monitor_common::{
    DetailLayout, KvmExitLayout, UserspaceExitLayout,
    details::{DETAIL_EVENTS, DetailEvent, GLOBAL_IOCTL_LAYOUT, GLOBAL_WAKEUP_LAYOUT},
    details::{IoctlLayout, WakeupLayout},
    exits::{
        GLOBAL_KVM_EXIT_LAYOUT, GLOBAL_USERSPACE_EXIT_LAYOUT, PROG_KVM_EXIT,
        PROG_KVM_USERSPACE_EXIT,
    },
    latency::{PROG_KVM_ENTRY, PROG_KVM_RUN, PROG_VCPU_WAKEUP},
};
use serde::Serialize;

use super::{DetailKind, ExitSource, layout};
use crate::{bpf::Kernel, host::tracefs::TraceFs, model::Attachment};

/// One kernel source: a program and the tracepoint it attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// Counts of an exit source (and, for halts, their durations).
    Exits(ExitSource),
    /// `kvm_entry`: ends the hardware-exit latency interval.
    KvmEntry,
    /// `sys_enter_ioctl(KVM_RUN)`: ends the time-in-VMM interval.
    KvmRun,
    Detail(DetailKind),
}

impl Probe {
    /// Short name, as in snapshots and metrics labels.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Exits(source) => source.as_str(),
            Self::KvmEntry => "kvm_entry",
            Self::KvmRun => "kvm_run",
            Self::Detail(kind) => kind.as_str(),
        }
    }

    /// `system:event`.
    #[must_use]
    pub fn tracepoint(self) -> &'static str {
        match self {
            Self::Exits(source) => source.tracepoint(),
            Self::KvmEntry => "kvm:kvm_entry",
            Self::KvmRun => "syscalls:sys_enter_ioctl",
            Self::Detail(kind) => detail_event(kind).map_or("kvm:?", |e| tracepoint_of(&e)),
        }
    }

    fn program(self) -> &'static str {
        match self {
            Self::Exits(ExitSource::KvmExit) => PROG_KVM_EXIT,
            Self::Exits(ExitSource::Userspace) => PROG_KVM_USERSPACE_EXIT,
            Self::Exits(ExitSource::Halt) => PROG_VCPU_WAKEUP,
            Self::KvmEntry => PROG_KVM_ENTRY,
            Self::KvmRun => PROG_KVM_RUN,
            Self::Detail(kind) => detail_event(kind).map_or("", |e| e.program),
        }
    }
}

fn detail_event(kind: DetailKind) -> Option<DetailEvent> {
    DETAIL_EVENTS
        .into_iter()
        .find(|e| e.kind as u32 == super::details::raw_kind(kind))
}

fn tracepoint_of(event: &DetailEvent) -> &'static str {
    // The table's names are 'static; spelled out once here for `Probe::tracepoint`.
    match event.event {
        "kvm_pio" => "kvm:kvm_pio",
        "kvm_mmio" => "kvm:kvm_mmio",
        "kvm_msr" => "kvm:kvm_msr",
        "kvm_page_fault" => "kvm:kvm_page_fault",
        "kvm_hypercall" => "kvm:kvm_hypercall",
        "kvm_apic_ipi" => "kvm:kvm_apic_ipi",
        "kvm_halt_poll_ns" => "kvm:kvm_halt_poll_ns",
        "kvm_emulate_insn" => "kvm:kvm_emulate_insn",
        _ => "kvm:?",
    }
}

/// Whether a layout was found, keeping only the reason when it was not.
fn ready<T>(layout: &Result<T, String>) -> Result<(), String> {
    layout.as_ref().map(drop).map_err(Clone::clone)
}

/// What the exit programs need from this kernel, decided before loading: each source's record
/// layout, or why it cannot be used.
pub struct ExitsPlan {
    kvm_exit: Result<KvmExitLayout, String>,
    userspace: Result<UserspaceExitLayout, String>,
    wakeup: Result<WakeupLayout, String>,
    ioctl: Result<IoctlLayout, String>,
    details: Vec<(DetailEvent, Result<DetailLayout, String>)>,
}

impl ExitsPlan {
    #[must_use]
    pub fn read(tracefs: &TraceFs, proc_root: &Path) -> Self {
        Self {
            kvm_exit: layout::kvm_exit(tracefs, proc_root),
            userspace: layout::userspace_exit(tracefs),
            wakeup: layout::vcpu_wakeup(tracefs),
            ioctl: layout::ioctl(tracefs),
            details: DETAIL_EVENTS
                .iter()
                .map(|e| (*e, layout::detail(tracefs, e)))
                .collect(),
        }
    }

    /// Hands the record layouts to the programs.
    pub fn configure<'a>(&'a self, loader: &mut aya::EbpfLoader<'a>) {
        if let Ok(layout) = &self.kvm_exit {
            loader.override_global(GLOBAL_KVM_EXIT_LAYOUT, layout, true);
        }
        if let Ok(layout) = &self.userspace {
            loader.override_global(GLOBAL_USERSPACE_EXIT_LAYOUT, layout, true);
        }
        if let Ok(layout) = &self.wakeup {
            loader.override_global(GLOBAL_WAKEUP_LAYOUT, layout, true);
        }
        if let Ok(layout) = &self.ioctl {
            loader.override_global(GLOBAL_IOCTL_LAYOUT, layout, true);
        }
        for (event, layout) in &self.details {
            if let Ok(layout) = layout {
                loader.override_global(event.global, layout, true);
            }
        }
    }

    /// Attaches every program whose layout is known, and says for each source whether it runs.
    pub(super) fn attach(&self, kernel: &mut Kernel) -> BTreeMap<Probe, Attachment> {
        let mut plan: Vec<(Probe, Result<(), String>)> = vec![
            (Probe::Exits(ExitSource::KvmExit), ready(&self.kvm_exit)),
            (Probe::KvmEntry, Ok(())),
            (Probe::Exits(ExitSource::Userspace), ready(&self.userspace)),
            (Probe::KvmRun, ready(&self.ioctl)),
            (Probe::Exits(ExitSource::Halt), ready(&self.wakeup)),
        ];
        for kind in DetailKind::ALL {
            let layout = self
                .details
                .iter()
                .find(|(e, _)| e.kind as u32 == super::details::raw_kind(kind))
                .map_or_else(|| Err("not built in".to_owned()), |(_, l)| ready(l));
            plan.push((Probe::Detail(kind), layout));
        }
        plan.into_iter()
            .map(|(probe, ready)| {
                let (system, event) = probe.tracepoint().split_once(':').expect("system:event");
                let state = match ready
                    .and_then(|()| kernel.attach_tracepoint(probe.program(), system, event))
                {
                    Ok(()) => Attachment::Attached,
                    Err(why) => {
                        log::warn!("exit source {}: unavailable: {why}", probe.name());
                        Attachment::Unavailable(why)
                    }
                };
                (probe, state)
            })
            .collect()
    }
}
