//! Which `kvm-vcpu` file each thread passes to `KVM_RUN`: how a vCPU is matched to its thread
//! when nothing else tells (thread names that say nothing, threads that sleep in the VMM's own
//! code between exits, so `/proc/TID/syscall` never shows them in `KVM_RUN`, and no hardware
//! exit records with a vCPU id, as on nested hosts).
//!
//! At the start of a `KVM_RUN` (the `kvm_fpu` load), the program reads the system call's
//! arguments from the thread's saved user registers, but only for processes the agent asks
//! about: those with a vCPU whose thread is unknown. The agent maps the file descriptor to the
//! vCPU with the VMM's `/proc/PID/fd` (`anon_inode:kvm-vcpu:N`), which discovery has read.

/// `tid` → [`RunFd`]: the latest `KVM_RUN` of each thread of an asked-about process, removed by
/// the agent as it reads them.
pub const EXITS_RUN_FDS_MAP: &str = "EXITS_RUN_FDS";
/// Threads whose `KVM_RUN` file a window may bring: every vCPU thread of the processes asked
/// about, a few windows' worth.
/// Not preallocated: all threads of every VM of a large host at its start, few entries later.
pub const EXITS_RUN_FDS_CAPACITY: u32 = 65_536;
/// `tgid` → 1 for each process the agent asks about.
pub const EXITS_FD_WANTED_MAP: &str = "EXITS_FD_WANTED";
pub const EXITS_FD_WANTED_CAPACITY: u32 = 4_096;
/// One `u32`: how many processes are asked about. Read first on every `KVM_RUN`: an array
/// lookup the verifier inlines, so a host whose vCPUs are all matched pays only that.
pub const EXITS_FD_ASKING_MAP: &str = "EXITS_FD_ASKING";

/// What the kernel saw of a thread's `KVM_RUN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunFd {
    pub tgid: u32,
    /// The file descriptor `KVM_RUN` was called on.
    pub fd: u32,
}

const _: () = assert!(core::mem::size_of::<RunFd>() == 8);

/// `ioctl`'s system call number on x86-64.
pub const IOCTL_NR: u64 = 16;
/// `KVM_RUN`: `_IO(KVMIO, 0x80)`.
pub const KVM_RUN: u64 = 0xae80;

/// Offsets in x86-64's `struct pt_regs` (UAPI `asm/ptrace.h`, the user registers saved at
/// system call entry): the first two arguments and the system call number.
pub const PT_REGS_SI: usize = 13 * 8;
pub const PT_REGS_DI: usize = 14 * 8;
pub const PT_REGS_ORIG_AX: usize = 15 * 8;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], two u32 and no padding (size asserted above).
    unsafe impl aya::Pod for super::RunFd {}
}
