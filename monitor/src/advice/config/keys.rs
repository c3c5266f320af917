//! The declaration of every key. `[S]`/`[J]` and the rule ids are those of the reference.

use super::{Direction, KeyInfo, Origin};

super::thresholds! {
    /// Evaluations in a row a rule's condition must hold before the rule fires.
    fire_after: u32 = 2, "evaluations", Engine, Fixed, [];
    /// Evaluations in a row a firing rule must stay past its clearing threshold (the firing
    /// threshold moved by `clear_margin`) before it clears.
    clear_after: u32 = 2, "evaluations", Engine, Fixed, [];
    /// How far past its firing threshold a value must fall before a firing rule may clear:
    /// thresholds of the "above" kind are multiplied by (1 - margin), "below" ones by
    /// (1 + margin).
    clear_margin: f64 = 0.10, "share", Engine, Fixed, [];

    /// Run-queue wait (steal) of a vCPU thread, as a share of wall time, above which C1 warns.
    c1_wait_warn: f64 = 0.05, "share", Judgement, Above, ["C1", "C8", "E8"];
    /// Run-queue wait share above which C1 is critical.
    c1_wait_critical: f64 = 0.20, "share", Judgement, Above, ["C1"];
    /// Host-wide vCPUs per physical core above which C2 fires while the host is busy.
    c2_vcpus_per_core_busy: f64 = 5.0, "vCPUs per core", Source, Above, ["C2"];
    /// Host-wide vCPUs per physical core above which C2 fires whatever the load.
    c2_vcpus_per_core_max: f64 = 10.0, "vCPUs per core", Source, Above, ["C2"];
    /// Host CPU busy share above which the host counts as busy for C2.
    c2_busy_host_cpu: f64 = 0.5, "share", Judgement, Above, ["C2"];
    /// Migrations of a vCPU thread between CPUs per second above which C3 fires.
    c3_migrations_per_s: f64 = 10.0, "migrations/s", Judgement, Above, ["C3"];
    /// Migrations of a vCPU thread to another NUMA node per minute above which C3 fires.
    c3_cross_node_per_min: f64 = 1.0, "migrations/min", Judgement, Above, ["C3"];
    /// Share of a VM's resident memory outside its main node above which its memory counts
    /// as spanning nodes for C4.
    c4_off_node_memory_share: f64 = 0.02, "share", Judgement, Above, ["C4"];
    /// Run-queue wait share of the busiest vCPU above which C5 checks for emulator and I/O
    /// threads sharing the vCPUs' CPUs.
    c5_wait: f64 = 0.05, "share", Judgement, Above, ["C5"];
    /// HLT exits per second of a vCPU above which C6 fires.
    c6_halt_exits_per_s: f64 = 10000.0, "exits/s", Judgement, Above, ["C6"];
    /// Run-queue wait share below which the vCPU counts as uncontended for C6.
    c6_wait_low: f64 = 0.05, "share", Judgement, Below, ["C6"];
    /// Share of halt-polling time that ended without a wakeup above which C7 fires.
    c7_poll_fail_share: f64 = 0.5, "share", Judgement, Above, ["C7"];
    /// Host CPU busy share above which failed halt polling costs other work (C7).
    c7_host_cpu_busy: f64 = 0.8, "share", Judgement, Above, ["C7"];
    /// PAUSE exits (pause-loop exiting) per second of a vCPU above which C8 fires.
    c8_pause_exits_per_s: f64 = 1000.0, "exits/s", Judgement, Above, ["C8"];

    /// Port I/O exits per second of a VM above which E1 fires.
    e1_io_exits_per_s: f64 = 5000.0, "exits/s", Judgement, Above, ["E1"];
    /// MMIO exits to userspace (or EPT misconfigurations not handled as fast MMIO) per
    /// second of a vCPU above which E2 fires.
    e2_mmio_exits_per_s: f64 = 1000.0, "exits/s", Judgement, Above, ["E2"];
    /// EPT violations / nested page faults per second of a vCPU above which E3 fires.
    e3_ept_violations_per_s: f64 = 1000.0, "exits/s", Judgement, Above, ["E3"];
    /// Seconds after the VM started before E3 looks at page faults (guest RAM being faulted
    /// in at boot is expected).
    e3_warmup_seconds: f64 = 600.0, "seconds", Judgement, Fixed, ["E3"];
    /// MSR write exits per second of a vCPU above which E4 fires.
    e4_msr_writes_per_s: f64 = 10000.0, "exits/s", Judgement, Above, ["E4"];
    /// APIC access exits (unaccelerated AVIC accesses on AMD) per second of a vCPU above
    /// which E5 fires.
    e5_apic_access_per_s: f64 = 1000.0, "exits/s", Judgement, Above, ["E5"];
    /// External-interrupt exits per second of a vCPU above which E6 fires.
    e6_external_interrupts_per_s: f64 = 5000.0, "exits/s", Judgement, Above, ["E6"];
    /// Host TLB-shootdown IPIs per second to the CPUs running a VM's vCPUs above which E7
    /// fires.
    e7_tlb_shootdowns_per_s: f64 = 1000.0, "IPIs/s", Judgement, Above, ["E7"];
    /// IPIs sent by a VM's guest per second above which E8 fires under overcommit.
    e8_guest_ipis_per_s: f64 = 20000.0, "IPIs/s", Judgement, Above, ["E8"];
    /// 99th percentile of exit handling time (`kvm_exit` to `kvm_entry`) of one exit reason
    /// above which E9 fires.
    e9_exit_p99_ns: f64 = 50000.0, "ns", Judgement, Above, ["E9"];
    /// Share of a vCPU's time spent handling exits above which E9 fires.
    e9_exit_time_share: f64 = 0.10, "share", Judgement, Above, ["E9"];

    /// Share of NUMA hinting faults on memory of another node above which M1 fires.
    m1_remote_fault_share: f64 = 0.20, "share", Judgement, Above, ["M1"];
    /// NUMA hinting faults per minute below which M1 does not judge the remote share.
    m1_min_faults_per_min: f64 = 1000.0, "faults/min", Judgement, Above, ["M1"];
    /// Share of a VM's resident memory off its home node above which M3 fires.
    m3_off_node_rss_share: f64 = 0.10, "share", Judgement, Above, ["M3"];
    /// Share of guest RAM backed by transparent huge pages below which M4 fires for a VM
    /// without hugetlbfs.
    m4_anon_huge_share: f64 = 0.5, "share", Judgement, Below, ["M4"];
    /// Total guest RAM as a share of host RAM below which running KSM is not needed (M5).
    m5_guest_ram_share: f64 = 0.8, "share", Judgement, Below, ["M5"];
    /// KSM `pages_unshared` per `pages_sharing` above which KSM scans in vain (M5).
    m5_unshared_per_sharing: f64 = 1.0, "ratio", Judgement, Above, ["M5"];
    /// ksmd's CPU use as a share of one CPU above which M5 fires.
    m5_ksmd_cpu_share: f64 = 0.05, "share", Judgement, Above, ["M5"];
    /// Host RAM to keep for the host itself on top of guest RAM (RHEL 6: up to 4 GiB).
    m6_host_reserve_bytes: f64 = 4_294_967_296.0, "bytes", Source, Below, ["M6"];
    /// Pages swapped in plus out per second, host-wide, above which M6 fires.
    m6_swap_pages_per_s: f64 = 100.0, "pages/s", Judgement, Above, ["M6"];
    /// Free huge pages (all sizes and nodes) as a share of host RAM above which M7 reports
    /// them as idle.
    m7_unused_hugepage_share: f64 = 0.10, "share", Judgement, Above, ["M7"];

    /// 99th percentile of block request latency above which I3 fires for a device known to
    /// be solid-state.
    i3_p99_ssd_ns: f64 = 10_000_000.0, "ns", Judgement, Above, ["I3"];
    /// 99th percentile of block request latency above which I3 fires for a rotational
    /// device, and for a device whose kind is unknown.
    i3_p99_hdd_ns: f64 = 50_000_000.0, "ns", Judgement, Above, ["I3"];
    /// Share of a device's busy time used by one VM above which I3 fires.
    i3_device_time_share: f64 = 0.5, "share", Judgement, Above, ["I3"];
}
