//! The TLB tracepoint programs: read the record (at compile-time offsets when this kernel's layout
//! is the built-in one), then account in the current task's context.

// Program contexts are taken by value by aya's macros; `tgid`/`tid` are the kernel's names.
#![expect(clippy::needless_pass_by_value, clippy::similar_names)]

use crate::tracepoint_program;
use aya_ebpf::programs::TracePointContext;
use monitor_common::tlb::{PvTlbFlushLayout, TlbFlushLayout};

use super::account::{on_flush, on_pv_flush};
use crate::record::{current_tgid_tid, read_field, read_fixed};

// Record layouts, overwritten by the loader with this kernel's (see exits/counts.rs for why they
// are .rodata globals).
#[unsafe(no_mangle)]
static TLB_FLUSH_LAYOUT: TlbFlushLayout = TlbFlushLayout::DEFAULT;
#[unsafe(no_mangle)]
static KVM_PV_TLB_FLUSH_LAYOUT: PvTlbFlushLayout = PvTlbFlushLayout::DEFAULT;

const FLUSH: TlbFlushLayout = TlbFlushLayout::DEFAULT;
const PV: PvTlbFlushLayout = PvTlbFlushLayout::DEFAULT;

tracepoint_program!("tlb", "tlb_flush", on_tlb_flush => tlb_flush);

fn on_tlb_flush(ctx: TracePointContext) -> u32 {
    // SAFETY: volatile read of a loader-initialised global.
    let layout = unsafe { core::ptr::read_volatile(&raw const TLB_FLUSH_LAYOUT) };
    let (reason, pages) = if layout == FLUSH {
        (
            read_fixed::<i32, { FLUSH.reason_offset as usize }>(&ctx),
            read_fixed::<u64, { FLUSH.pages_offset as usize }>(&ctx),
        )
    } else {
        (
            read_field::<i32>(&ctx, layout.reason_offset).unwrap_or(-1),
            read_field::<u64>(&ctx, layout.pages_offset).unwrap_or(0),
        )
    };
    let (tgid, tid) = current_tgid_tid();
    // An unknown (negative) reason lands in the host's "other" slot.
    on_flush(tgid, tid, reason.cast_unsigned(), pages);
    0
}

tracepoint_program!("kvm", "kvm_pv_tlb_flush", on_pv_tlb_flush => kvm_pv_tlb_flush);

fn on_pv_tlb_flush(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let layout = unsafe { core::ptr::read_volatile(&raw const KVM_PV_TLB_FLUSH_LAYOUT) };
    let need_flush = if layout == PV {
        read_fixed::<u8, { PV.need_flush_offset as usize }>(&ctx)
    } else {
        read_field::<u8>(&ctx, layout.need_flush_offset).unwrap_or(0)
    };
    let (tgid, tid) = current_tgid_tid();
    on_pv_flush(tgid, tid, need_flush != 0);
    0
}
