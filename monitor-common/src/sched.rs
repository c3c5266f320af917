//! Scheduling of VMM threads: run-queue wait (steal), on-CPU time, context switches, migrations
//! by topology class, and which tasks held the CPU while a VMM thread waited.
//!
//! A migration is a watched thread starting a run on another CPU than the one it last ran on:
//! `sched_switch` counts it at switch-in, so a thread the load balancer moves several times while
//! it waits migrates once, and no program runs on `sched_migrate_task` (every task's moves).
//!
//! `sched_switch` and `sched_wakeup` fire for every task on the host, so the programs decide in
//! their first instructions whether a thread is watched: [`SCHED_WATCH_MAP`] is an array of u64
//! words, bit `tid % 64` of word `tid / 64` set for every watched thread. Array lookups are
//! inlined by the verifier (a bounds check and an add), so an unwatched event costs two loads
//! from the record and one or two of these tests. Userspace keeps the bitmap in step with
//! discovery and creates one [`ThreadSched`] entry per watched thread; the programs never insert
//! into [`SCHED_THREADS_MAP`], so its size is what userspace decides.

use crate::{histogram::LatencyHist, places::MIGRATION_CLASSES};

/// Array of u64 words: the watched-thread bitmap.
pub const SCHED_WATCH_MAP: &str = "SCHED_WATCH";
/// Words in the bitmap: `PID_MAX_LIMIT` (4 Mi tids, the most any kernel allows) / 64, so every
/// tid fits whatever `kernel.pid_max` is set to (512 KiB).
pub const WATCH_WORDS: u32 = 65_536;
/// Hash map: tid → [`ThreadSched`]. Entries are created and removed by userspace only.
pub const SCHED_THREADS_MAP: &str = "SCHED_THREADS";
/// Watched threads: vCPU and helper threads of every VM (36,000 on the reference host). Not
/// preallocated (an entry is 432 bytes); userspace creates the entries.
pub const SCHED_THREADS_CAPACITY: u32 = 65_536;
/// Hash map: [`ThreadCpuKey`] → on-CPU ns of that thread on that CPU (the dominant pCPU).
/// Not per-CPU: a thread's switches are serialised by the scheduler, so plain adds are exact.
pub const SCHED_CPU_TIME_MAP: &str = "SCHED_CPU_TIME";
/// Watched threads × the CPUs each ran on (8 on average). Not preallocated.
pub const SCHED_CPU_TIME_CAPACITY: u32 = 524_288;
/// Hash map (shared by the CPUs: a VM's vCPUs wait on many CPUs, and per-CPU values would cost
/// the capacity × 16 bytes × every CPU): [`ContenderKey`] → [`ContenderStat`], added to
/// atomically.
pub const SCHED_CONTENDERS_MAP: &str = "SCHED_CONTENDERS";
/// VMs × the processes that held their CPUs (16 each on the reference host).
pub const SCHED_CONTENDERS_CAPACITY: u32 = 16_384;
/// Hash map, as `SCHED_CONTENDERS`: [`ContenderKey`] with `contender` = [`CONTENDER_OTHER`] → waits that found
/// `SCHED_CONTENDERS` full, so a VM's totals stay exact however many tasks compete with it.
pub const SCHED_CONTENDERS_OVERFLOW_MAP: &str = "SCHED_CONTENDERS_OVERFLOW";
pub const SCHED_CONTENDERS_OVERFLOW_CAPACITY: u32 = 2_048;
pub const CONTENDER_OTHER: u32 = u32::MAX;
/// Per-CPU array, one u64: events lost to a full map (CPU time, contenders).
pub const SCHED_DROPS_MAP: &str = "SCHED_DROPS";
/// Per-CPU array indexed by [`WatchedEvent`]: events each program handled for a watched thread.
///
/// `bpftool prog show` (with `kernel.bpf_stats_enabled=1`) gives each program's `run_cnt` and
/// `run_time_ns` over all events; with this count of the watched ones, a benchmark that runs
/// twice with different watched shares (e.g. idle guests, then busy ones) can solve for the cost
/// of an unwatched event (the filter alone) and of a watched one (the accounting) separately.
pub const SCHED_WATCHED_EVENTS_MAP: &str = "SCHED_WATCHED_EVENTS";
/// Program names (≤ 15 bytes: the kernel keeps no more, and `bpftool` reports them by it).
pub const PROG_SCHED_SWITCH: &str = "sched_switch";
pub const PROG_SCHED_WAKEUP: &str = "sched_wakeup";
/// The same programs on the tracepoints' raw arguments, as BTF tracepoints (`tp_btf`) and raw
/// tracepoints (`raw_tp`): see `block::PROG_BLOCK_IO_START_BTF` for why they are preferred.
pub const PROG_SCHED_SWITCH_BTF: &str = "switch_btf";
pub const PROG_SCHED_SWITCH_RAW: &str = "switch_raw";
pub const PROG_SCHED_WAKEUP_BTF: &str = "wakeup_btf";
pub const PROG_SCHED_WAKEUP_RAW: &str = "wakeup_raw";
/// The process lifecycle programs, which mark a watched process changed for discovery (see
/// `vmms::VMM_CHANGES_MAP`): classic tracepoints, then their BTF and raw twins.
pub const PROG_PROCESS_FORK: &str = "process_fork";
pub const PROG_PROCESS_EXIT: &str = "process_exit";
pub const PROG_PROCESS_EXEC: &str = "process_exec";
pub const PROG_PROCESS_FORK_BTF: &str = "proc_fork_btf";
pub const PROG_PROCESS_FORK_RAW: &str = "proc_fork_raw";
pub const PROG_PROCESS_EXIT_BTF: &str = "proc_exit_btf";
pub const PROG_PROCESS_EXIT_RAW: &str = "proc_exit_raw";
pub const PROG_PROCESS_EXEC_BTF: &str = "proc_exec_btf";
pub const PROG_PROCESS_EXEC_RAW: &str = "proc_exec_raw";
/// Raw tracepoint program that runs the scheduling logic on synthetic arguments through
/// `BPF_PROG_TEST_RUN`; loaded by tests, never attached. `args[0]` is a `HARNESS_*` operation.
pub const PROG_SCHED_HARNESS: &str = "sched_harness";
/// cpu, prev tid, prev state, next tid, tgid of prev (the current task), timestamp ns.
pub const HARNESS_SWITCH: u64 = 1;
/// tid, timestamp ns.
pub const HARNESS_WAKEUP: u64 = 2;

/// Which program handled a watched event: the index into [`SCHED_WATCHED_EVENTS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchedEvent {
    Switch = 0,
    Wakeup = 1,
    /// A watched process created a thread or a process.
    Fork = 2,
    /// A thread of a watched process ended.
    Exit = 3,
    /// A watched process exec'd another program.
    Exec = 4,
}
pub const WATCHED_EVENT_KINDS: u32 = 5;

/// `prev_state` bits that mean the task blocked (S, D, T, t, X, Z, P, I). A preempted task is
/// reported as 0 or, since 4.14, as `TASK_REPORT_MAX` (0x100): both leave these bits clear.
pub const TASK_BLOCKED_MASK: u64 = 0xFF;

/// Read-only globals holding the record layouts.
pub const GLOBAL_SCHED_SWITCH_LAYOUT: &str = "SCHED_SWITCH_LAYOUT";
pub const GLOBAL_SCHED_WAKEUP_LAYOUT: &str = "SCHED_WAKEUP_LAYOUT";
/// Read-only global: the [`TaskFields`] of this kernel, for the raw-argument programs.
pub const GLOBAL_SCHED_TASK_FIELDS: &str = "SCHED_TASK_FIELDS";

/// Where this kernel keeps what the raw-argument programs read of a `struct task_struct`, from
/// its BTF (Rust eBPF programs get no CO-RE relocations; see `block::RequestFields`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskFields {
    /// `task_struct.pid` (the thread id).
    pub pid: u32,
}

impl TaskFields {
    /// Placeholder until the loader sets this kernel's.
    pub const UNSET: Self = Self { pid: 0 };
}

/// A raw `prev_state` (the task's `__state`) turned into what the classic record reports, for
/// [`TASK_BLOCKED_MASK`]: a preempted task is runnable whatever its state says, and an RT
/// spinlock wait (`TASK_RTLOCK_WAIT`) reports as uninterruptible.
#[must_use]
pub const fn reported_prev_state(preempt: bool, state: u64) -> u64 {
    const TASK_UNINTERRUPTIBLE: u64 = 0x2;
    const TASK_RTLOCK_WAIT: u64 = 0x1000;
    if preempt {
        0
    } else if state & TASK_RTLOCK_WAIT != 0 {
        TASK_UNINTERRUPTIBLE
    } else {
        state & TASK_BLOCKED_MASK
    }
}

/// Where `sched:sched_switch` keeps the fields the program reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchLayout {
    pub prev_pid_offset: u32,
    pub prev_state_offset: u32,
    /// `long`: 8 on 64-bit kernels, 4 on 32-bit ones.
    pub prev_state_size: u32,
    pub next_pid_offset: u32,
}

impl SwitchLayout {
    /// Linux 4.x–6.18 on x86-64; userspace overrides it with what tracefs says.
    pub const DEFAULT: Self = Self {
        prev_pid_offset: 24,
        prev_state_offset: 32,
        prev_state_size: 8,
        next_pid_offset: 56,
    };
}

/// Where `sched:sched_wakeup` keeps `pid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedWakeupLayout {
    pub pid_offset: u32,
}

impl SchedWakeupLayout {
    pub const DEFAULT: Self = Self { pid_offset: 24 };
}

/// The running state and totals of one watched thread (value of `SCHED_THREADS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadSched {
    /// The VMM process, written by userspace: the key contenders are counted under.
    pub tgid: u32,
    /// The CPU it runs on or last ran on (set at switch-in and switch-out only: a switch-in on
    /// another CPU is a migration); [`CPU_UNKNOWN`] until seen.
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` when it was switched in; 0 while it is not on a CPU.
    pub run_start_ns: u64,
    /// When it became runnable (woken, or preempted); 0 while it is not waiting for a CPU.
    /// Both are set, to the same time, for a thread that was runnable when watching began:
    /// running or waiting, the next switch tells, and either interval counts from then.
    pub queue_start_ns: u64,
    /// On-CPU time of the intervals that ended.
    pub run_ns: u64,
    /// Switches out while blocking (sleep, I/O, stop): `nvcsw`.
    pub voluntary: u64,
    /// Switches out while still runnable (preempted, yielded): `nivcsw`.
    pub involuntary: u64,
    /// Migrations (runs started on another CPU than the last one) by [`MigrationClass`] index.
    pub migrations: [u64; MIGRATION_CLASSES],
    /// Run-queue waits that ended, in ns.
    pub wait: LatencyHist,
}

pub const CPU_UNKNOWN: u32 = u32::MAX;

impl ThreadSched {
    /// A freshly watched thread of `tgid`.
    #[must_use]
    pub const fn new(tgid: u32) -> Self {
        Self {
            tgid,
            cpu: CPU_UNKNOWN,
            run_start_ns: 0,
            queue_start_ns: 0,
            run_ns: 0,
            voluntary: 0,
            involuntary: 0,
            migrations: [0; MIGRATION_CLASSES],
            wait: LatencyHist::ZERO,
        }
    }

    /// A thread of `tgid` seen runnable at `now_ns` (on a CPU or waiting for one) as watching
    /// begins, so that a busy thread's first interval is not lost.
    #[must_use]
    pub const fn runnable(tgid: u32, now_ns: u64) -> Self {
        let mut fresh = Self::new(tgid);
        fresh.run_start_ns = now_ns;
        fresh.queue_start_ns = now_ns;
        fresh
    }
}

/// Key of `SCHED_CPU_TIME`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreadCpuKey {
    pub tid: u32,
    pub cpu: u32,
}

/// Key of `SCHED_CONTENDERS`: a VMM process and the process of the task that held the CPU until
/// one of the VMM's threads got it after waiting. 0 is the idle task (the CPU was free: the wait
/// was wake-up latency only).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContenderKey {
    pub tgid: u32,
    pub contender: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContenderStat {
    pub waits: u64,
    pub wait_ns: u64,
}

const _: () = assert!(core::mem::size_of::<ThreadSched>() == 8 * (6 + MIGRATION_CLASSES) + 344);
const _: () = assert!(core::mem::size_of::<ThreadCpuKey>() == 8);
const _: () = assert!(core::mem::size_of::<ContenderKey>() == 8);
const _: () = assert!(core::mem::size_of::<ContenderStat>() == 16);
const _: () = assert!(core::mem::size_of::<SwitchLayout>() == 16);
const _: () = assert!(core::mem::size_of::<SchedWakeupLayout>() == 4);
const _: () = assert!(core::mem::size_of::<TaskFields>() == 4);

/// Every program and map of the family, by the name the agent looks it up by.
const PROGRAMS: &[&str] = &[
    PROG_SCHED_SWITCH,
    PROG_SCHED_WAKEUP,
    PROG_SCHED_SWITCH_BTF,
    PROG_SCHED_SWITCH_RAW,
    PROG_SCHED_WAKEUP_BTF,
    PROG_SCHED_WAKEUP_RAW,
    PROG_PROCESS_FORK,
    PROG_PROCESS_EXIT,
    PROG_PROCESS_EXEC,
    PROG_PROCESS_FORK_BTF,
    PROG_PROCESS_FORK_RAW,
    PROG_PROCESS_EXIT_BTF,
    PROG_PROCESS_EXIT_RAW,
    PROG_PROCESS_EXEC_BTF,
    PROG_PROCESS_EXEC_RAW,
    PROG_SCHED_HARNESS,
];
const MAPS: &[&str] = &[
    SCHED_WATCH_MAP,
    SCHED_THREADS_MAP,
    SCHED_CPU_TIME_MAP,
    SCHED_CONTENDERS_MAP,
    SCHED_CONTENDERS_OVERFLOW_MAP,
    SCHED_DROPS_MAP,
    SCHED_WATCHED_EVENTS_MAP,
];
/// The read-only globals the agent sets before loading (record layouts, settings).
const GLOBALS: &[&str] = &[
    GLOBAL_SCHED_SWITCH_LAYOUT,
    GLOBAL_SCHED_WAKEUP_LAYOUT,
    GLOBAL_SCHED_TASK_FIELDS,
];
pub const NAMES: crate::Names = crate::Names {
    programs: PROGRAMS,
    maps: MAPS,
    globals: GLOBALS,
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], integers only, no padding (sizes asserted above).
    unsafe impl aya::Pod for super::ThreadSched {}
    unsafe impl aya::Pod for super::ThreadCpuKey {}
    unsafe impl aya::Pod for super::ContenderKey {}
    unsafe impl aya::Pod for super::ContenderStat {}
    unsafe impl aya::Pod for super::SwitchLayout {}
    unsafe impl aya::Pod for super::SchedWakeupLayout {}
    unsafe impl aya::Pod for super::TaskFields {}
}
