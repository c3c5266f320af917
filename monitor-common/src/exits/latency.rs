//! Exit-handling latency: log2 histograms kept in the kernel per (VMM, vCPU thread, source, reason).
//!
//! Three intervals are measured, each from an event to the next one on the same thread:
//! `kvm_exit` → `kvm_entry` (a hardware exit handled, by KVM or through the VMM),
//! `kvm_userspace_exit` → the thread's next `KVM_RUN` (time spent in the VMM), and the halt a
//! `kvm_vcpu_wakeup` reports (the kernel measures that one itself).
//!
//! The start of a `KVM_RUN` is seen on `kvm:kvm_fpu` (load), which KVM fires early in every
//! `KVM_RUN`, before the guest runs. The `syscalls:sys_enter_ioctl` tracepoint would say the same
//! a little earlier, but any program on a system-call tracepoint sends every system call of every
//! process on the host through the kernel's slow path for traced system calls.

use super::ExitKey;

/// Hash map: [`ExitKey`] → [`LatencyHist`]. Not per-CPU: every key names one thread, and a
/// thread's events never run concurrently, so plain updates are exact and the memory is
/// independent of the number of CPUs.
pub const EXITS_LATENCY_MAP: &str = "EXITS_LATENCY";
/// As many as `EXITS_COUNTS` has keys: every counted kind of exit can have its histogram. Not
/// preallocated (a histogram is 344 bytes), so a host pays for the keys it has.
pub const EXITS_LATENCY_CAPACITY: u32 = 262_144;
/// Hash maps: thread id → [`PendingExit`], the exit each thread is handling right now.
pub const EXITS_PENDING_MAP: &str = "EXITS_PENDING";
pub const EXITS_PENDING_USERSPACE_MAP: &str = "EXITS_PENDING_USERSPACE";
/// Threads tracked at once (vCPU threads of every VM on the host: 16,000 on the reference host,
/// twice that for headroom).
pub const PENDING_CAPACITY: u32 = 32_768;

/// Program names.
pub const PROG_KVM_ENTRY: &str = "kvm_entry";
/// `kvm:kvm_fpu`, filtered to loads (the start of a `KVM_RUN`) in its first instructions.
pub const PROG_KVM_FPU: &str = "kvm_fpu";
pub const PROG_KVM_VCPU_WAKEUP: &str = "kvm_vcpu_wakeup";
/// The same programs on the tracepoints' raw arguments, as BTF and as raw tracepoints.
pub const PROG_KVM_ENTRY_BTF: &str = "kvm_entry_btf";
pub const PROG_KVM_ENTRY_RAW: &str = "kvm_entry_raw";
pub const PROG_KVM_VCPU_WAKEUP_BTF: &str = "kvm_wakeup_btf";
pub const PROG_KVM_VCPU_WAKEUP_RAW: &str = "kvm_wakeup_raw";
pub const PROG_KVM_FPU_BTF: &str = "kvm_fpu_btf";
pub const PROG_KVM_FPU_RAW: &str = "kvm_fpu_raw";

/// `kvm:kvm_fpu`'s `load` when the guest's FPU state is loaded, at the start of a `KVM_RUN` (0
/// when it is put back, at its end).
pub const FPU_LOAD: u32 = 1;

/// Where the fields of `kvm:kvm_vcpu_wakeup` sit: `ns` (u64), `waited` and `valid` (bool).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeupLayout {
    pub ns_offset: u32,
    pub waited_offset: u32,
    /// [`crate::FIELD_ABSENT`] on kernels before 5.x that lack it (every wakeup is then valid).
    pub valid_offset: u32,
}

impl WakeupLayout {
    pub const DEFAULT: Self = Self {
        ns_offset: 8,
        waited_offset: 16,
        valid_offset: 17,
    };
}

/// Where `load` (u32) sits in a `kvm:kvm_fpu` record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpuLayout {
    pub load_offset: u32,
}

impl FpuLayout {
    pub const DEFAULT: Self = Self { load_offset: 8 };
}

pub const GLOBAL_KVM_VCPU_WAKEUP_LAYOUT: &str = "KVM_VCPU_WAKEUP_LAYOUT";
pub const GLOBAL_KVM_FPU_LAYOUT: &str = "KVM_FPU_LAYOUT";
/// A u32 set to 1 when exit latency is collected: the exit programs then open the intervals the
/// latency programs close. Left 0 (`--collect counts`), they only count, and save a map update and
/// a clock read per exit.
pub const GLOBAL_EXITS_TIMED: &str = "EXITS_TIMED";

/// The exit a thread is handling: what to file its latency under once it ends.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingExit {
    /// `bpf_ktime_get_ns()` at the exit; 0 once the interval has been recorded.
    pub start_ns: u64,
    /// The key the interval is recorded under (its `tid` is the map key).
    pub key: ExitKey,
}

/// `ExitKey::reason` of a halt (source [`super::ExitSource::Halt`]): bit 0 set when the vCPU
/// blocked (it was not woken while KVM polled), bit 1 set when the wakeup was spurious (KVM found
/// nothing to do and halts again).
pub const HALT_BLOCKED: u64 = 1;
pub const HALT_SPURIOUS: u64 = 2;

const _: () = assert!(core::mem::size_of::<PendingExit>() == 40);
const _: () = assert!(core::mem::size_of::<WakeupLayout>() == 12);
const _: () = assert!(core::mem::size_of::<FpuLayout>() == 4);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], integers only, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::PendingExit {}
    unsafe impl aya::Pod for super::WakeupLayout {}
    unsafe impl aya::Pod for super::FpuLayout {}
}
