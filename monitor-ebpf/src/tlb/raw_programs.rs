//! The TLB programs on the tracepoints' raw arguments, which are plain values: no kernel struct
//! is read, so these need nothing from the kernel's BTF.

// `tgid`/`tid` are the kernel's names; each handler is inlined into its two programs (BTF and
// raw), so each program is one flat function: a BPF-to-BPF call costs every event.
#![expect(clippy::similar_names, clippy::inline_always)]

use super::account::{on_flush, on_pv_flush};
use crate::{raw::Args, raw_programs, record::current_tgid_tid};

// (int reason, unsigned long pages)
raw_programs!("tlb_flush", on_tlb_flush_raw => tlb_flush_btf, tlb_flush_raw);

#[inline(always)]
fn on_tlb_flush_raw(args: Args) -> u32 {
    #[expect(clippy::cast_possible_truncation, reason = "an int argument")]
    let reason = args.get::<0>() as u32;
    let (tgid, tid) = current_tgid_tid();
    // An unknown (negative) reason lands in the host's "other" slot, as in the classic program.
    on_flush(tgid, tid, reason, args.get::<1>());
    0
}

// (unsigned int vcpu_id, bool need_flush_tlb); kvm is a module, so raw only (see monitor_common::tlb).
raw_programs!("kvm_pv_tlb_flush", on_pv_flush_raw => pv_flush_raw);

#[inline(always)]
fn on_pv_flush_raw(args: Args) -> u32 {
    let (tgid, tid) = current_tgid_tid();
    on_pv_flush(tgid, tid, args.get::<1>() & 0xff != 0);
    0
}
