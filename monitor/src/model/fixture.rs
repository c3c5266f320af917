//! A fixed snapshot for presenter tests: one busy VM with two vCPUs, one idle VM.
use super::{sched as model_sched, *};
use crate::model::Histogram;

mod io;
mod sched;

fn reason(source: ExitSource, isa: Option<Isa>, code: u64, name: &str, count: u64) -> ReasonCount {
    #[expect(clippy::cast_precision_loss, reason = "small test numbers")]
    let rate = count as f64 / 2.0;
    // A fixed latency shape: most exits a few µs, a slow tail.
    let latency = (source != ExitSource::Userspace || code == 2).then(|| LatencySummary {
        count,
        total_ns: count * 4_000,
        mean_ns: 4_000,
        p50_ns: 2_500,
        p90_ns: 6_000,
        p99_ns: 60_000,
        max_ns: 250_000,
    });
    let mut histogram = Histogram {
        count: count * 10,
        sum_ns: count * 40_000,
        max_ns: 250_000,
        ..Histogram::default()
    };
    histogram.buckets[11] = count * 9;
    histogram.buckets[15] = count;
    ReasonCount {
        source,
        isa,
        code,
        reason: name.into(),
        count,
        rate,
        cumulative: count * 10,
        share: 0.0,
        latency,
        latency_meaning: source.latency_meaning(),
        cumulative_latency: latency.map(|_| histogram),
    }
}

fn exits(mut by_reason: Vec<ReasonCount>, kvm_exit: SourceState) -> Exits {
    let sum = |s| {
        by_reason
            .iter()
            .filter(|r| r.source == s)
            .map(|r| r.count)
            .sum()
    };
    let (total, userspace_total) = (sum(ExitSource::KvmExit), sum(ExitSource::Userspace));
    #[expect(clippy::cast_precision_loss, reason = "small test numbers")]
    for r in &mut by_reason {
        let of_source = if r.source == ExitSource::KvmExit {
            total
        } else {
            userspace_total
        };
        r.share = r.count as f64 / of_source as f64;
    }
    Exits {
        sources: [("kvm_exit", kvm_exit), ("userspace", SourceState::Live)].into(),
        total,
        userspace_total,
        halts: 0,
        by_reason,
    }
}

#[must_use]
#[expect(
    clippy::too_many_lines,
    reason = "one literal snapshot, read top to bottom"
)]
pub fn snapshot() -> Snapshot {
    let vcpu0 = vec![
        reason(
            ExitSource::KvmExit,
            Some(Isa::Vmx),
            30,
            "IO_INSTRUCTION",
            200_000,
        ),
        reason(ExitSource::Userspace, None, 2, "IO", 198_000),
        reason(
            ExitSource::KvmExit,
            Some(Isa::Vmx),
            1,
            "EXTERNAL_INTERRUPT",
            1_500,
        ),
    ];
    let vcpu1 = vec![reason(ExitSource::KvmExit, Some(Isa::Vmx), 12, "HLT", 40)];
    let mut all = vcpu0.clone();
    all.extend(vcpu1.clone());
    all.sort_by_key(|r| std::cmp::Reverse(r.count));
    let (web_sched, web_numa) = sched::vm();
    Snapshot {
        schema_version: SCHEMA_VERSION,
        kvmtop_version: "0.1.0".into(),
        host: Host {
            hostname: "hv1".into(),
            kernel: "6.18.0".into(),
        },
        window: Window {
            start_unix_seconds: 1_700_000_000.0,
            duration_seconds: 2.0,
        },
        exits: HostExits {
            sources: [
                ("kvm_exit", SourceState::Live),
                ("userspace", SourceState::Live),
            ]
            .into(),
            tracepoints: [
                ("kvm_exit", "kvm:kvm_exit"),
                ("userspace", "kvm:kvm_userspace_exit"),
            ]
            .into(),
            dropped: 0,
        },
        sched: sched::host(),
        tlb: io::host_tlb(),
        block: io::host_block(),
        vms: vec![
            Vm {
                pid: 4242,
                start_time: 123,
                name: "web-1".into(),
                uuid: Some("c7a5fdbd-cdaf-9455-926a-d65c16db1809".into()),
                vmm: "qemu".into(),
                vcpus: vec![
                    Vcpu {
                        index: Some(0),
                        tid: Some(4250),
                        exits: exits(vcpu0, SourceState::Live),
                        time: VcpuTime {
                            handling_exits: Some(0.42),
                            in_vmm: Some(0.2),
                            halted: Some(0.01),
                        },
                        sched: Some(sched::vcpu(0)),
                    },
                    Vcpu {
                        index: Some(1),
                        tid: Some(4251),
                        exits: exits(vcpu1, SourceState::Live),
                        time: VcpuTime {
                            handling_exits: Some(0.001),
                            in_vmm: Some(0.0),
                            halted: Some(0.95),
                        },
                        sched: Some(sched::vcpu(1)),
                    },
                ],
                exits: exits(all, SourceState::Live),
                exit_details: vec![port_io_details()],
                sched: web_sched,
                numa: web_numa,
                tlb: io::vm_tlb(),
                block: io::vm_block(),
            },
            Vm {
                pid: 5000,
                start_time: 456,
                name: "idle-db".into(),
                uuid: None,
                vmm: "qemu".into(),
                vcpus: vec![Vcpu {
                    index: Some(0),
                    tid: None,
                    exits: Exits::default(),
                    time: VcpuTime::default(),
                    sched: None,
                }],
                exits: exits(vec![], SourceState::Silent),
                exit_details: vec![],
                sched: model_sched::VmSched::default(),
                numa: model_sched::VmNuma::default(),
                tlb: super::tlb::VmTlb::default(),
                block: super::block::VmBlock::default(),
            },
        ],
        problems: vec![],
        skipped_events: [(
            "blk_rq_complete".to_owned(),
            SkippedEvents {
                count: 30,
                total: 400,
            },
        )]
        .into(),
        recommendations: vec![steal_advice()],
        advice_inputs_missing: vec![],
    }
}

fn port_io_details() -> DetailGroup {
    DetailGroup {
        kind: DetailKind::Pio,
        source: "kvm:kvm_pio",
        value_name: "port",
        count: 200_000,
        rate: 100_000.0,
        top: vec![
            DetailCount {
                sub: "out".into(),
                value: "0x80".into(),
                count: 199_000,
                rate: 99_500.0,
            },
            DetailCount {
                sub: "in".into(),
                value: "0x71".into(),
                count: 600,
                rate: 300.0,
            },
        ],
        other: 400,
        cumulative: 2_000_000,
    }
}

/// C1 on vCPU 0 of web-1, as the advisor would make it.
fn steal_advice() -> crate::advice::Recommendation {
    use crate::advice::rules::{Comparison, Evidence, Recommendation, Severity, Target, rule};
    Recommendation::new(
        rule("C1").expect("C1 is in the catalogue"),
        Severity::Critical,
        Target::Vcpu {
            pid: 4242,
            index: 0,
            tid: Some(4250),
        },
        Evidence::measured(
            "run-queue wait share",
            0.31,
            Comparison::Above,
            0.20,
            Some(2.0),
        ),
    )
}
