//! The exit programs' kernel logic, driven through `BPF_PROG_TEST_RUN` with synthetic events and
//! exact timestamps.
//!
//! `kvm:kvm_exit` and `kvm:kvm_entry` never fire on hosts whose KVM backend does not use VMX/SVM
//! exits (this test machine's PVM, some nested set-ups), so those code paths are exercised here:
//! a raw-tracepoint harness runs the same inline functions as the tracepoint programs, on
//! arguments the test chooses, and the test reads the real kernel maps back through the agent.

mod support;

use aya::programs::{RawTracePointRunOptions, TestRun as _};
use kvmtop::{
    families::exits::{
        ExitCounterKey, details::DetailCounterKey, reasons::ExitReason, sources::raw_kind,
    },
    model::{DetailKind, Histogram, running::Running as _},
    session::{Config, Session},
};
use monitor_common::{
    exits::{
        HARNESS_DETAIL, HARNESS_KVM_ENTRY, HARNESS_KVM_EXIT, HARNESS_KVM_RUN,
        HARNESS_USERSPACE_EXIT, HARNESS_WAKEUP, PROG_EXITS_HARNESS,
    },
    histogram::bucket_of,
};

/// Pids far above `pid_max`, so no real VM can collide with them. Each test uses its own.
const SYNTHETIC_PID: u32 = 4_000_000_001;
const VMX: u64 = 1;
const SVM: u64 = 2;

struct Harness {
    session: Session,
    pid: u64,
}

impl Harness {
    /// A session, or the reason this test cannot run here.
    fn open(test: &str, pid_offset: u32) -> Option<Self> {
        if let Some(reason) = support::missing_prerequisite(false, &[]) {
            support::skip(test, &reason);
            return None;
        }
        let session = Session::open(&Config::default()).expect("opening a session");
        Some(Self {
            session,
            pid: u64::from(SYNTHETIC_PID + pid_offset),
        })
    }

    fn run(&mut self, args: &[u64]) {
        let harness = self
            .session
            .kernel_mut()
            .load_harness(PROG_EXITS_HARNESS)
            .expect("loading harness");
        let mut options = RawTracePointRunOptions::new();
        options.args[..args.len()].copy_from_slice(args);
        harness.test_run(options).expect("BPF_PROG_TEST_RUN");
    }

    /// A hardware exit on thread `pid + tid` at `at_ns`.
    fn exit(&mut self, tid: u64, vcpu: u64, isa: u64, reason: u64, at_ns: u64) {
        let p = self.pid;
        self.run(&[HARNESS_KVM_EXIT, p, p + tid, vcpu, isa, reason, at_ns]);
    }

    fn entry(&mut self, tid: u64, at_ns: u64) {
        let p = self.pid;
        self.run(&[HARNESS_KVM_ENTRY, p, p + tid, at_ns]);
    }

    fn userspace_exit(&mut self, tid: u64, reason: u64, errno: i64, at_ns: u64) {
        let p = self.pid;
        self.run(&[
            HARNESS_USERSPACE_EXIT,
            p,
            p + tid,
            reason,
            errno.cast_unsigned(),
            at_ns,
        ]);
    }

    fn kvm_run(&mut self, tid: u64, at_ns: u64) {
        let p = self.pid;
        self.run(&[HARNESS_KVM_RUN, p, p + tid, at_ns]);
    }

    /// `n` exits of `reason`, each handled in `ns`, back to back from `start`.
    fn exits_taking(&mut self, tid: u64, isa: u64, reason: u64, n: u64, ns: u64, start: u64) {
        for i in 0..n {
            let at = start + i * (ns + 1_000);
            self.exit(tid, 0, isa, reason, at);
            self.entry(tid, at + ns);
        }
    }

    fn counts(&self) -> Vec<(ExitCounterKey, u64)> {
        let mut counts: Vec<_> = self
            .session
            .families()
            .exits
            .counters()
            .read()
            .counts
            .into_iter()
            .filter(|(k, _)| u64::from(k.pid) == self.pid)
            .collect();
        counts.sort();
        counts
    }

    fn latency(&self, reason: ExitReason) -> Histogram {
        let totals = self.session.families().exits.counters().read();
        let mut merged = Histogram::default();
        for (key, hist) in &totals.latency {
            if u64::from(key.pid) == self.pid && key.reason == reason {
                merged.merge(hist);
            }
        }
        merged
    }

    fn details(&self) -> Vec<(DetailCounterKey, u64)> {
        let mut details: Vec<_> = self
            .session
            .families()
            .exits
            .counters()
            .read()
            .details
            .into_iter()
            .filter(|(k, _)| u64::from(k.pid) == self.pid)
            .collect();
        details.sort();
        details
    }
}

fn vmx(basic: u16) -> ExitReason {
    ExitReason::Vmx {
        basic,
        failed_vmentry: false,
        enclave: false,
    }
}

/// Checks a histogram against the intervals that went in: exact count, sum and max, each
/// interval in its log2 bucket, and the percentiles users see.
fn assert_histogram(h: &Histogram, intervals: &[(u64, u64)], p50: u64, p90: u64, p99: u64) {
    let count: u64 = intervals.iter().map(|(n, _)| n).sum();
    let sum: u64 = intervals.iter().map(|(n, ns)| n * ns).sum();
    assert_eq!(h.count, count, "{h:?}");
    assert_eq!(h.sum_ns, sum, "{h:?}");
    assert_eq!(h.max_ns, intervals.iter().map(|(_, ns)| *ns).max().unwrap());
    let mut expected = [0u64; monitor_common::histogram::HIST_BUCKETS];
    for (n, ns) in intervals {
        expected[bucket_of(*ns)] += n;
    }
    assert_eq!(h.buckets, expected);
    let summary = h.summary().expect("intervals recorded");
    assert_eq!(
        (summary.p50_ns, summary.p90_ns, summary.p99_ns),
        (p50, p90, p99),
        "{summary:?}"
    );
}

#[test]
fn synthetic_vmx_and_svm_exits_are_decoded_by_name() {
    let Some(mut h) = Harness::open("synthetic_vmx_and_svm_exits_are_decoded_by_name", 0) else {
        return;
    };
    for _ in 0..3 {
        h.exit(1, 0, VMX, 30, 0); // IO_INSTRUCTION
    }
    h.exit(1, 0, VMX, 0x8000_0021, 0); // failed entry
    h.exit(2, 1, SVM, 0x7b, 0); // io
    h.exit(2, 1, SVM, 0x400, 0); // npf
    h.exit(2, 1, SVM, 0x1234, 0); // unknown code

    let named: Vec<(u64, Option<u32>, String, String, u64)> = h
        .counts()
        .into_iter()
        .map(|(k, n)| {
            let isa = k.reason.isa().map_or("-", |i| i.as_str()).to_owned();
            (
                u64::from(k.tid) - h.pid,
                k.vcpu_id,
                isa,
                k.reason.name().into_owned(),
                n,
            )
        })
        .collect();
    let expected = [
        (1, Some(0), "vmx", "IO_INSTRUCTION", 3),
        (1, Some(0), "vmx", "INVALID_STATE FAILED_VMENTRY", 1),
        (2, Some(1), "svm", "npf", 1),
        (2, Some(1), "svm", "io", 1),
        (2, Some(1), "svm", "0x1234", 1),
    ];
    for (tid, vcpu, isa, name, count) in expected {
        assert!(
            named
                .iter()
                .any(|e| *e == (tid, vcpu, isa.to_owned(), name.to_owned(), count)),
            "expected {name} ({isa}, vcpu {vcpu:?}) x{count} in {named:#?}"
        );
    }
    assert_eq!(named.len(), expected.len(), "extra counters: {named:#?}");
}

#[test]
fn vmx_exit_to_entry_latency_lands_in_the_expected_buckets() {
    let Some(mut h) = Harness::open(
        "vmx_exit_to_entry_latency_lands_in_the_expected_buckets",
        10,
    ) else {
        return;
    };
    // IO_INSTRUCTION: 100 exits handled in 3 µs each, all in bucket [2048, 4096) ns, which the
    // largest interval caps at 3000: p = 2048 + 952 × q.
    h.exits_taking(1, VMX, 30, 100, 3_000, 1_000_000);
    // HLT: 90 quick (1.5 µs) and 10 slow (1 ms) exits on another vCPU thread.
    h.exits_taking(2, VMX, 12, 90, 1_500, 5_000_000);
    h.exits_taking(2, VMX, 12, 10, 1_000_000, 50_000_000);
    // Noise that must not be recorded: an entry with no exit before it, a second entry after
    // one exit, and an exit superseded by a later one (its entry was never seen).
    h.entry(3, 1_000);
    h.exit(3, 0, VMX, 48, 2_000);
    h.entry(3, 2_100);
    h.entry(3, 9_000_000);
    h.exit(3, 0, VMX, 48, 10_000_000);
    h.exit(3, 0, VMX, 48, 20_000_000);
    h.entry(3, 20_000_200);

    assert_histogram(&h.latency(vmx(30)), &[(100, 3_000)], 2_524, 2_905, 2_990);
    // p50: rank 50 of 90 in [1024, 2048) → 1024 + 1024 × 50/90; p90 ends that bucket; p99: rank
    // 99 is 9 of 10 into [524288, 1048576) capped at 1e6 → 524288 + 475712 × 0.9.
    assert_histogram(
        &h.latency(vmx(12)),
        &[(90, 1_500), (10, 1_000_000)],
        1_593,
        2_048,
        952_429,
    );
    // 100 ns in [64, 128), 200 ns in [128, 256) capped at 200: p90 = 128 + 72 × 0.8.
    assert_histogram(&h.latency(vmx(48)), &[(1, 100), (1, 200)], 128, 186, 199);
    // Every exit is counted, whether or not its entry was seen.
    let ept: u64 = h
        .counts()
        .iter()
        .filter(|(k, _)| k.reason == vmx(48))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(ept, 3);
}

#[test]
fn svm_exit_to_entry_latency_lands_in_the_expected_buckets() {
    let Some(mut h) = Harness::open(
        "svm_exit_to_entry_latency_lands_in_the_expected_buckets",
        20,
    ) else {
        return;
    };
    // npf: 50 faults of 20 µs → [16384, 32768) capped at 20000: p = 16384 + 3616 × q.
    h.exits_taking(1, SVM, 0x400, 50, 20_000, 1_000);
    // io: 30 at 700 ns and 70 at 5 µs.
    h.exits_taking(1, SVM, 0x7b, 30, 700, 10_000_000);
    h.exits_taking(1, SVM, 0x7b, 70, 5_000, 20_000_000);

    let npf = ExitReason::Svm { code: 0x400 };
    assert_histogram(&h.latency(npf), &[(50, 20_000)], 18_192, 19_638, 19_964);
    // p50: rank 50 is 20 of 70 into [4096, 8192) capped at 5000 → 4096 + 904 × 20/70.
    let io = ExitReason::Svm { code: 0x7b };
    assert_histogram(
        &h.latency(io),
        &[(30, 700), (70, 5_000)],
        4_354,
        4_871,
        4_987,
    );
    assert_eq!(h.latency(io).max_bound(), Some(5_000));
}

#[test]
fn time_in_the_vmm_runs_from_userspace_exit_to_the_next_kvm_run() {
    let Some(mut h) = Harness::open(
        "time_in_the_vmm_runs_from_userspace_exit_to_the_next_kvm_run",
        30,
    ) else {
        return;
    };
    for i in 0..40 {
        let at = 1_000_000 + i * 100_000;
        h.userspace_exit(1, 2, 0, at); // IO
        h.kvm_run(1, at + 10_000);
        h.kvm_run(1, at + 50_000); // a second KVM_RUN with nothing pending
    }
    h.userspace_exit(1, 6, 0, 9_000_000); // MMIO, 40 µs in the VMM
    h.kvm_run(1, 9_040_000);
    h.userspace_exit(1, 2, -4, 9_100_000); // EINTR: counted apart, with its own time
    h.kvm_run(1, 9_100_500);

    let io = ExitReason::Userspace { exit: 2 };
    // [8192, 16384) capped at 10000: p = 8192 + 1808 × q.
    assert_histogram(&h.latency(io), &[(40, 10_000)], 9_096, 9_819, 9_982);
    let mmio = ExitReason::Userspace { exit: 6 };
    assert_eq!(h.latency(mmio).count, 1);
    assert_eq!(h.latency(mmio).sum_ns, 40_000);
    let restart = ExitReason::UserspaceError { errno: 4 };
    assert_eq!(h.latency(restart).sum_ns, 500);
    let counts = h.counts();
    let count = |reason| {
        counts
            .iter()
            .find(|(k, _)| k.reason == reason)
            .map(|(_, n)| *n)
    };
    assert_eq!(count(io), Some(40), "{counts:?}");
    assert_eq!(count(mmio), Some(1));
    assert_eq!(count(restart), Some(1));
    assert!(counts.iter().all(|(k, _)| k.vcpu_id.is_none()));
}

#[test]
fn halts_are_split_by_outcome_with_their_durations() {
    let Some(mut h) = Harness::open("halts_are_split_by_outcome_with_their_durations", 40) else {
        return;
    };
    let p = h.pid;
    for _ in 0..5 {
        h.run(&[HARNESS_WAKEUP, p, p + 1, 20_000, 0, 1]); // polled, 20 µs
    }
    for _ in 0..3 {
        h.run(&[HARNESS_WAKEUP, p, p + 1, 50_000_000, 1, 1]); // blocked, 50 ms
    }
    h.run(&[HARNESS_WAKEUP, p, p + 1, 300, 0, 0]); // spurious

    let polled = ExitReason::Halt {
        blocked: false,
        spurious: false,
    };
    let blocked = ExitReason::Halt {
        blocked: true,
        spurious: false,
    };
    assert_eq!(h.latency(polled).count, 5);
    assert_eq!(h.latency(polled).buckets[bucket_of(20_000)], 5);
    assert_eq!(h.latency(blocked).count, 3);
    assert_eq!(h.latency(blocked).sum_ns, 150_000_000);
    let names: Vec<(String, u64)> = h
        .counts()
        .into_iter()
        .map(|(k, n)| (k.reason.name().into_owned(), n))
        .collect();
    assert_eq!(
        names,
        [
            ("HALT_POLLED".to_owned(), 5),
            ("HALT_POLLED_SPURIOUS".to_owned(), 1),
            ("HALT_BLOCKED".to_owned(), 3)
        ]
    );
}

#[test]
fn details_are_reduced_to_bounded_values_in_the_kernel() {
    let Some(mut h) = Harness::open("details_are_reduced_to_bounded_values_in_the_kernel", 50)
    else {
        return;
    };
    let p = h.pid;
    let detail = |kind: DetailKind, sub: u64, value: u64| {
        [HARNESS_DETAIL, p, raw_kind(kind) as u64, sub, value]
    };
    for _ in 0..3 {
        h.run(&detail(DetailKind::Pio, 1, 0x80));
    }
    h.run(&detail(DetailKind::Mmio, 2, 0xfee0_0304));
    h.run(&detail(DetailKind::Mmio, 2, 0xfee0_0ff0)); // same page
    h.run(&detail(DetailKind::PageFault, 0x11f, 0x1234_5678));
    h.run(&detail(DetailKind::ApicIpi, 0x4400, 3)); // NMI to APIC 3
    h.run(&detail(DetailKind::Msr, 1, 0x6e0));
    h.run(&detail(DetailKind::HaltPoll, 1, 0));
    h.run(&detail(DetailKind::Emulation, 0, 0));

    let labelled: Vec<(DetailKind, String, String, u64)> = h
        .details()
        .into_iter()
        .map(|(k, n)| (k.kind, k.sub_label().into_owned(), k.value_label(), n))
        .collect();
    let expected = [
        (DetailKind::Pio, "out", "0x80", 3),
        (DetailKind::Mmio, "write", "0xfee00000", 2),
        (DetailKind::Msr, "wrmsr", "0x6e0 TSC_DEADLINE", 1),
        (
            DetailKind::PageFault,
            "present write user reserved fetch",
            "0x12200000",
            1,
        ),
        (DetailKind::ApicIpi, "NMI", "3", 1),
        (DetailKind::HaltPoll, "grew", "", 1),
        (DetailKind::Emulation, "emulated", "", 1),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(k, s, v, n)| (k, s.to_owned(), v.to_owned(), n))
        .collect();
    assert_eq!(labelled, expected);
}

#[test]
fn details_beyond_the_map_capacity_are_kept_as_other() {
    let Some(mut h) = Harness::open("details_beyond_the_map_capacity_are_kept_as_other", 60) else {
        return;
    };
    let p = h.pid;
    let capacity = u64::from(monitor_common::exits::details::EXITS_DETAILS_CAPACITY);
    // A guest touching more distinct ports than the map holds: the totals stay exact.
    for port in 0..capacity + 10 {
        h.run(&[HARNESS_DETAIL, p, raw_kind(DetailKind::Pio) as u64, 0, port]);
    }
    let details = h.details();
    let total: u64 = details.iter().map(|(_, n)| n).sum();
    assert_eq!(total, capacity + 10);
    let other: Vec<_> = details.iter().filter(|(k, _)| k.value.is_none()).collect();
    assert_eq!(other.len(), 1, "one (VM, kind) overflow counter");
    // Real guests running meanwhile hold some of the map too (the programs are attached), so
    // at least 10 values, and exactly those that found no room, are "other".
    let named = details.iter().filter(|(k, _)| k.value.is_some()).count() as u64;
    assert!(other[0].1 >= 10, "{}", other[0].1);
    assert_eq!(other[0].1, capacity + 10 - named);
    assert_eq!(h.session.families().exits.counters().read().dropped, 0);
}

#[test]
fn the_first_full_map_is_logged_once_by_the_kernel_programs() {
    let Some(mut h) = Harness::open(
        "the_first_full_map_is_logged_once_by_the_kernel_programs",
        70,
    ) else {
        return;
    };
    let details = u64::from(monitor_common::exits::details::EXITS_DETAILS_CAPACITY);
    let overflow = u64::from(monitor_common::exits::details::EXITS_DETAILS_OVERFLOW_CAPACITY);
    let pio = raw_kind(DetailKind::Pio) as u64;
    // Distinct ports of one VM fill the details map; then each further VM has its first port
    // counted under its own "other" entry, until that map is full too and events are dropped.
    for port in 0..details {
        h.run(&[HARNESS_DETAIL, h.pid, pio, 0, port]);
    }
    for vm in 0..overflow + 20 {
        h.run(&[HARNESS_DETAIL, h.pid + 1 + vm, pio, 0, 0x80]);
    }
    let dropped = h.session.families().exits.counters().read().dropped;
    assert!(dropped >= 20, "dropped {dropped}");
    let messages = h.session.kernel_mut().diagnostics();
    let full: Vec<_> = messages
        .iter()
        .filter(|m| m.starts_with("exits: a map is full"))
        .collect();
    assert_eq!(full.len(), 1, "{messages:?}");
    // Logged once per load, not per dropped event.
    h.run(&[HARNESS_DETAIL, h.pid + overflow + 100, pio, 0, 0x80]);
    assert_eq!(h.session.kernel_mut().diagnostics(), Vec::<String>::new());
}
