//! Not part of xtask: the source of a small program that `cargo xtask bench` builds as its own
//! crate against the kvmtop library (see `harness.rs`).
//!
//! It loads kvmtop's programs without attaching any, loads the `exits_harness` raw tracepoint
//! program, drives it through `BPF_PROG_TEST_RUN` the way a vCPU thread drives the real
//! tracepoints (an exit, then the entry or `KVM_RUN` that closes it), and prints per operation the
//! runs and run time the kernel's BPF statistics counted (`kernel.bpf_stats_enabled` must be 1).
//! Output: one `<operation> <runs> <run_time_ns>` line per operation.

use std::error::Error;

use aya::programs::{RawTracePoint, RawTracePointRunOptions, TestRun as _};
use kvmtop::bpf::Kernel;
use monitor_common::exits::{
    HARNESS_DETAIL, HARNESS_KVM_ENTRY, HARNESS_KVM_EXIT, HARNESS_KVM_RUN, HARNESS_USERSPACE_EXIT,
    PROG_EXITS_HARNESS,
};

/// Far above `pid_max`: no real process has it.
const TGID: u64 = 4_000_000_101;
const THREADS: u64 = 4;
/// Rounds run first and not counted: they create the map entries.
const WARM_UP: u64 = 1_000;
const VMX: u64 = 1;
/// VMX basic exit reasons: I/O instruction, EPT violation, HLT.
const REASONS: [u64; 3] = [30, 48, 12];
/// `DetailKind::Pio` as the harness numbers it.
const DETAIL_PIO: u64 = 1;
const OPERATIONS: [&str; 5] = [
    "kvm_exit",
    "kvm_entry",
    "kvm_userspace_exit",
    "kvm_run",
    "kvm_pio",
];

/// Runs one operation at a time and charges it the growth of the program's counters.
struct Meter<'a> {
    program: &'a RawTracePoint,
    runs: u64,
    ns: u64,
    totals: [(u64, u64); OPERATIONS.len()],
    counting: bool,
}

impl Meter<'_> {
    fn run(&mut self, operation: usize, args: &[u64]) -> Result<(), Box<dyn Error>> {
        let mut options = RawTracePointRunOptions::new();
        options.args[..args.len()].copy_from_slice(args);
        self.program.test_run(options)?;
        let info = self.program.info()?;
        let (runs, ns) = (info.run_count(), u64::try_from(info.run_time().as_nanos())?);
        if self.counting {
            self.totals[operation].0 += runs - self.runs;
            self.totals[operation].1 += ns - self.ns;
        }
        (self.runs, self.ns) = (runs, ns);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let rounds: u64 = std::env::args()
        .nth(1)
        .ok_or("usage: runner ROUNDS")?
        .parse()?;
    let mut kernel = Kernel::load(&[], &[])?;
    let program = kernel.load_harness(PROG_EXITS_HARNESS)?;
    let info = program.info()?;
    let mut meter = Meter {
        program,
        runs: info.run_count(),
        ns: u64::try_from(info.run_time().as_nanos())?,
        totals: [(0, 0); OPERATIONS.len()],
        counting: false,
    };
    let mut now: u64 = 1_000_000_000;
    for round in 0..WARM_UP + rounds {
        meter.counting = round >= WARM_UP;
        for thread in 0..THREADS {
            let tid = TGID + 1 + thread;
            let reason = REASONS[usize::try_from(round % 3)?];
            meter.run(0, &[HARNESS_KVM_EXIT, TGID, tid, thread, VMX, reason, now])?;
            meter.run(1, &[HARNESS_KVM_ENTRY, TGID, tid, now + 1_500])?;
            meter.run(2, &[HARNESS_USERSPACE_EXIT, TGID, tid, 2, 0, now + 2_000])?;
            meter.run(3, &[HARNESS_KVM_RUN, TGID, tid, now + 9_000])?;
            let port = 0x3f8 + (round % 2);
            meter.run(4, &[HARNESS_DETAIL, TGID, DETAIL_PIO, 1, port])?;
            now += 10_000;
        }
    }
    for (name, (runs, ns)) in OPERATIONS.iter().zip(meter.totals) {
        println!("{name} {runs} {ns}");
    }
    Ok(())
}
