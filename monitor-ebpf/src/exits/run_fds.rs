//! The `kvm-vcpu` file each thread of an asked-about process passes to `KVM_RUN` (see
//! `monitor_common::exits::run_fds`).

// `tgid`/`tid` are the kernel's names.
#![expect(clippy::inline_always, clippy::similar_names)]

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs},
    macros::map,
    maps::{Array, HashMap},
};
use monitor_common::exits::run_fds::{
    EXITS_FD_WANTED_CAPACITY, EXITS_RUN_FDS_CAPACITY, IOCTL_NR, KVM_RUN, PT_REGS_DI,
    PT_REGS_ORIG_AX, PT_REGS_SI, RunFd,
};

use super::count_drop;

#[map(name = "EXITS_RUN_FDS")]
static EXITS_RUN_FDS: HashMap<u32, RunFd> =
    HashMap::with_max_entries(EXITS_RUN_FDS_CAPACITY, BPF_F_NO_PREALLOC);

#[map(name = "EXITS_FD_WANTED")]
static EXITS_FD_WANTED: HashMap<u32, u8> = HashMap::with_max_entries(EXITS_FD_WANTED_CAPACITY, 0);

#[map(name = "EXITS_FD_ASKING")]
static EXITS_FD_ASKING: Array<u32> = Array::with_max_entries(1, 0);

/// At the start of a `KVM_RUN` on thread `tid` of `tgid`: notes the file it runs, when the agent
/// asks about the process. Nothing asked (the usual case) costs one inlined array read.
#[inline(always)]
pub fn note_run_fd(tgid: u32, tid: u32) {
    if EXITS_FD_ASKING.get(0).is_none_or(|asking| *asking == 0) {
        return;
    }
    // SAFETY: a lookup that copies nothing; the value is only tested for presence.
    if unsafe { EXITS_FD_WANTED.get(tgid) }.is_none() {
        return;
    }
    // SAFETY: helpers without preconditions; the registers are read with probe reads, which
    // fail cleanly instead of faulting.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u64;
    let read = |offset: usize| {
        // SAFETY: see above; the offsets are of 8-byte registers.
        unsafe { bpf_probe_read_kernel(regs.wrapping_add(offset / 8)) }.ok()
    };
    // `kvm_fpu` loads in `KVM_RUN` only, but a read that says otherwise is not taken for one.
    let (Some(nr), Some(request), Some(fd)) =
        (read(PT_REGS_ORIG_AX), read(PT_REGS_SI), read(PT_REGS_DI))
    else {
        return;
    };
    if nr != IOCTL_NR || request & 0xFFFF_FFFF != KVM_RUN {
        return;
    }
    #[expect(clippy::cast_possible_truncation, reason = "an int argument")]
    let run = RunFd {
        tgid,
        fd: fd as u32,
    };
    // A thread runs the same vCPU again and again: written once a window (the agent removes
    // what it reads), looked up otherwise. A VMM stays asked about while one of its vCPUs has
    // no thread at all (QEMU keeps the descriptors of unplugged vCPUs).
    // SAFETY: a lookup; the value is copied out at once.
    if unsafe { EXITS_RUN_FDS.get(tid) }.is_some_and(|seen| *seen == run) {
        return;
    }
    if EXITS_RUN_FDS.insert(tid, run, 0).is_err() {
        count_drop();
    }
}
