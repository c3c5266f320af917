//! Exit details: per VMM process, which port, MSR, guest-physical region, hypercall or IPI target
//! KVM's detail tracepoints reported, counted in a bounded per-CPU map.

#![expect(clippy::inline_always)]

use aya_ebpf::{macros::map, maps::PerCpuHashMap, programs::TracePointContext};
use monitor_common::exits::details::{
    self, DETAIL_OTHER, DetailKey, DetailKind, DetailLayout, EXITS_DETAILS_CAPACITY,
    EXITS_DETAILS_OVERFLOW_CAPACITY, FAULT_ERROR_MASK, FAULT_GPA_SHIFT, MMIO_GPA_SHIFT,
};

use super::count_drop;
use crate::record::{current_tgid_tid, low32, read_field_sized, read_fixed_sized};

#[map(name = "EXITS_DETAILS")]
static EXITS_DETAILS: PerCpuHashMap<DetailKey, u64> =
    PerCpuHashMap::with_max_entries(EXITS_DETAILS_CAPACITY, 0);

#[map(name = "EXITS_DETAILS_OVERFLOW")]
static EXITS_DETAILS_OVERFLOW: PerCpuHashMap<DetailKey, u64> =
    PerCpuHashMap::with_max_entries(EXITS_DETAILS_OVERFLOW_CAPACITY, 0);

/// One program per detail tracepoint: read the two fields (at compile-time offsets when this
/// kernel's layout is the built-in one) and count them under the current process.
macro_rules! detail_program {
    ($program:ident, $tracepoint:literal, $global:ident, $event:path) => {
        // A module per program keeps each one's handler apart; symbols keep their names.
        mod $program {
            use super::*;

        // Overwritten by the loader with this kernel's layout (see counts.rs for why .rodata).
        #[unsafe(no_mangle)]
        static $global: DetailLayout = $event.default;

        crate::tracepoint_program!("kvm", $tracepoint, handle => $program);

        fn handle(ctx: TracePointContext) -> u32 {
            // SAFETY: volatile read of a loader-initialised global.
            let layout = unsafe { core::ptr::read_volatile(&raw const $global) };
            let (sub, value) = if layout == $event.default {
                const L: DetailLayout = $event.default;
                (
                    read_fixed_sized::<{ L.sub_offset as usize }, { L.sub_size }>(&ctx),
                    read_fixed_sized::<{ L.value_offset as usize }, { L.value_size }>(&ctx),
                )
            } else {
                (
                    read_field_sized(&ctx, layout.sub_offset, layout.sub_size),
                    read_field_sized(&ctx, layout.value_offset, layout.value_size),
                )
            };
            let (tgid, _) = current_tgid_tid();
            record_detail(tgid, $event.kind, sub, value);
            0
        }
        }
    };
}

detail_program!(kvm_pio, "kvm_pio", KVM_PIO_LAYOUT, details::PIO);
detail_program!(kvm_mmio, "kvm_mmio", KVM_MMIO_LAYOUT, details::MMIO);
detail_program!(kvm_msr, "kvm_msr", KVM_MSR_LAYOUT, details::MSR);
detail_program!(
    kvm_page_fault,
    "kvm_page_fault",
    KVM_PAGE_FAULT_LAYOUT,
    details::PAGE_FAULT
);
detail_program!(
    kvm_hypercall,
    "kvm_hypercall",
    KVM_HYPERCALL_LAYOUT,
    details::HYPERCALL
);
detail_program!(
    kvm_apic_ipi,
    "kvm_apic_ipi",
    KVM_APIC_IPI_LAYOUT,
    details::APIC_IPI
);
detail_program!(
    kvm_halt_poll_ns,
    "kvm_halt_poll_ns",
    KVM_HALT_POLL_NS_LAYOUT,
    details::HALT_POLL
);
detail_program!(
    kvm_emulate_insn,
    "kvm_emulate_insn",
    KVM_EMULATE_INSN_LAYOUT,
    details::EMULATION
);

/// Counts one detail event. `sub` and `value` are the raw record fields; the per-kind reduction
/// to bounded values happens here (`kind` is a constant in each program, so it folds away).
#[inline(always)]
pub fn record_detail(tgid: u32, kind: DetailKind, sub: u64, value: u64) {
    let (sub, value) = match kind {
        DetailKind::Mmio => (sub, value >> MMIO_GPA_SHIFT << MMIO_GPA_SHIFT),
        DetailKind::PageFault => (
            sub & FAULT_ERROR_MASK,
            value >> FAULT_GPA_SHIFT << FAULT_GPA_SHIFT,
        ),
        // Delivery mode: fixed, lowest priority, SMI, NMI, INIT, SIPI.
        DetailKind::ApicIpi => ((sub >> 8) & 0x7, value),
        DetailKind::HaltPoll | DetailKind::Emulation => (u64::from(sub != 0), 0),
        DetailKind::Pio | DetailKind::Msr | DetailKind::Hypercall => (sub, value),
    };
    let key = DetailKey {
        tgid,
        kind: kind as u32,
        sub: low32(sub),
        pad: 0,
        value,
    };
    if add(&EXITS_DETAILS, &key) {
        return;
    }
    // Too many distinct values host-wide: keep the total exact under (VM, kind, "other").
    let other = DetailKey {
        sub: 0,
        value: DETAIL_OTHER,
        ..key
    };
    if !add(&EXITS_DETAILS_OVERFLOW, &other) {
        count_drop();
    }
}

#[inline(always)]
fn add(map: &PerCpuHashMap<DetailKey, u64>, key: &DetailKey) -> bool {
    if let Some(counter) = map.get_ptr_mut(key) {
        // SAFETY: per-CPU value owned by this CPU while the program runs.
        unsafe { *counter += 1 };
        return true;
    }
    // See counts.rs: writing 1 is right even if another CPU created the key meanwhile.
    map.insert(key, 1, 0).is_ok()
}
