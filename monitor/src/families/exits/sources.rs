//! The exit family's hook table: every kernel source of exit figures, the program that runs it
//! and the record layout it needs on this kernel (or why this kernel cannot give it).

use monitor_common::exits::{
    GLOBAL_KVM_EXIT_LAYOUT, GLOBAL_KVM_USERSPACE_EXIT_LAYOUT, PROG_KVM_EXIT,
    PROG_KVM_USERSPACE_EXIT, PROG_KVM_USERSPACE_EXIT_BTF, PROG_KVM_USERSPACE_EXIT_RAW,
    details::{DETAIL_EVENTS, DetailEvent, DetailKind as RawKind},
    latency::{
        GLOBAL_EXITS_TIMED, GLOBAL_KVM_FPU_LAYOUT, GLOBAL_KVM_VCPU_WAKEUP_LAYOUT, PROG_KVM_ENTRY,
        PROG_KVM_ENTRY_BTF, PROG_KVM_ENTRY_RAW, PROG_KVM_FPU, PROG_KVM_FPU_BTF, PROG_KVM_FPU_RAW,
        PROG_KVM_VCPU_WAKEUP, PROG_KVM_VCPU_WAKEUP_BTF, PROG_KVM_VCPU_WAKEUP_RAW,
    },
};

use super::layout;
use crate::{
    bpf::hooks::{Attempt, Global, SourceSpec, every_kind},
    family::{CollectLevel, HostView},
    model::{DetailKind, ExitSource},
};

/// Ends the hardware-exit interval a `kvm_exit` opened.
pub const KVM_ENTRY: &str = "kvm_entry";
/// The start of each `KVM_RUN` (`kvm:kvm_fpu`, load): ends the time-in-VMM interval a userspace
/// exit opened.
pub const KVM_RUN: &str = "kvm_run";

/// The source name of an exit source's counts.
#[must_use]
pub fn counts_source(source: ExitSource) -> &'static str {
    source.as_str()
}

/// The source name of a kind of detail.
#[must_use]
pub fn detail_source(kind: DetailKind) -> &'static str {
    kind.as_str()
}

/// The kernel-side number of a detail kind (`monitor_common::exits::details::DetailKind`).
#[must_use]
pub fn raw_kind(kind: DetailKind) -> RawKind {
    match kind {
        DetailKind::Pio => RawKind::Pio,
        DetailKind::Mmio => RawKind::Mmio,
        DetailKind::Msr => RawKind::Msr,
        DetailKind::PageFault => RawKind::PageFault,
        DetailKind::Hypercall => RawKind::Hypercall,
        DetailKind::ApicIpi => RawKind::ApicIpi,
        DetailKind::HaltPoll => RawKind::HaltPoll,
        DetailKind::Emulation => RawKind::Emulation,
    }
}

/// The tracepoint that reports a kind of detail.
#[must_use]
pub fn detail_event(kind: DetailKind) -> DetailEvent {
    let raw = raw_kind(kind) as u32;
    DETAIL_EVENTS
        .into_iter()
        .find(|e| e.kind as u32 == raw)
        .expect("every detail kind has its event")
}

/// The hook table; sources beyond the operator's `--collect` level are left out.
#[must_use]
pub fn table(host: &HostView) -> Vec<SourceSpec> {
    let tracefs = &host.tracefs;
    let at = |level: CollectLevel| host.collect.leaves_out(level);
    let mut table = vec![
        SourceSpec::one(
            counts_source(ExitSource::KvmExit),
            Attempt::tracepoint(
                "kvm",
                "kvm_exit",
                PROG_KVM_EXIT,
                timing(
                    host,
                    layout::kvm_exit(tracefs, &host.proc_root)
                        .map(|l| vec![Global::new(GLOBAL_KVM_EXIT_LAYOUT, &l)]),
                ),
            ),
        ),
        SourceSpec::new(
            KVM_ENTRY,
            every_kind(
                &host.btf,
                "kvm_entry",
                (PROG_KVM_ENTRY_BTF, PROG_KVM_ENTRY_RAW),
                // Its arguments are not read, so their number does not matter.
                described(host, "kvm_entry", None),
                Attempt::tracepoint("kvm", "kvm_entry", PROG_KVM_ENTRY, Ok(Vec::new())),
            ),
        )
        .unless_left_out(at(CollectLevel::Latency)),
        SourceSpec::new(
            counts_source(ExitSource::Userspace),
            every_kind(
                &host.btf,
                "kvm_userspace_exit",
                (PROG_KVM_USERSPACE_EXIT_BTF, PROG_KVM_USERSPACE_EXIT_RAW),
                timing(host, described(host, "kvm_userspace_exit", Some(2))),
                Attempt::tracepoint(
                    "kvm",
                    "kvm_userspace_exit",
                    PROG_KVM_USERSPACE_EXIT,
                    timing(
                        host,
                        layout::userspace_exit(tracefs)
                            .map(|l| vec![Global::new(GLOBAL_KVM_USERSPACE_EXIT_LAYOUT, &l)]),
                    ),
                ),
            ),
        ),
        SourceSpec::new(
            KVM_RUN,
            every_kind(
                &host.btf,
                "kvm_fpu",
                (PROG_KVM_FPU_BTF, PROG_KVM_FPU_RAW),
                described(host, "kvm_fpu", Some(1)),
                Attempt::tracepoint(
                    "kvm",
                    "kvm_fpu",
                    PROG_KVM_FPU,
                    layout::fpu(tracefs).map(|l| vec![Global::new(GLOBAL_KVM_FPU_LAYOUT, &l)]),
                ),
            ),
        )
        .unless_left_out(at(CollectLevel::Latency)),
        SourceSpec::new(
            counts_source(ExitSource::Halt),
            every_kind(
                &host.btf,
                "kvm_vcpu_wakeup",
                (PROG_KVM_VCPU_WAKEUP_BTF, PROG_KVM_VCPU_WAKEUP_RAW),
                described(host, "kvm_vcpu_wakeup", Some(3)),
                Attempt::tracepoint(
                    "kvm",
                    "kvm_vcpu_wakeup",
                    PROG_KVM_VCPU_WAKEUP,
                    layout::vcpu_wakeup(tracefs)
                        .map(|l| vec![Global::new(GLOBAL_KVM_VCPU_WAKEUP_LAYOUT, &l)]),
                ),
            ),
        )
        .unless_left_out(at(CollectLevel::Latency)),
    ];
    table.extend(DetailKind::ALL.into_iter().map(|kind| detail_spec(host, kind)));
    table
}

/// The source of one kind of detail, left out below `--collect details`.
fn detail_spec(host: &HostView, kind: DetailKind) -> SourceSpec {
    let event = detail_event(kind);
    SourceSpec::new(
        detail_source(kind),
        every_kind(
            &host.btf,
            event.event,
            event.raw_programs,
            described(host, event.event, Some(event.raw_args)),
            Attempt::tracepoint(
                "kvm",
                event.event,
                event.program,
                layout::detail(&host.tracefs, &event).map(|l| vec![Global::new(event.global, &l)]),
            ),
        ),
    )
    .unless_left_out(host.collect.leaves_out(CollectLevel::Details))
}

/// `needs`, plus the setting that makes the exit programs time each exit when latency is
/// collected. At `--collect counts` they only count: no interval map update, no clock read.
fn timing(host: &HostView, needs: Result<Vec<Global>, String>) -> Result<Vec<Global>, String> {
    let mut needs = needs?;
    if host.collect.leaves_out(CollectLevel::Latency).is_none() {
        needs.push(Global::new(GLOBAL_EXITS_TIMED, &1_u32));
    }
    Ok(needs)
}

/// What the raw-argument programs of `event` need: nothing but the kernel's BTF describing the
/// tracepoint, with `args` arguments where the programs read them by position. kvm is often a
/// module, whose tracepoints the kernel's own BTF does not describe: those run classic.
fn described(
    host: &HostView,
    event: &str,
    args: Option<usize>,
) -> Result<Vec<Global>, String> {
    let btf = host.btf.as_ref().map_err(Clone::clone)?;
    match args {
        Some(args) => btf.expect_args(event, args)?,
        None => {
            btf.tracepoint_args(event)?;
        }
    }
    Ok(Vec::new())
}
