//! C6–C9: halting, polling, pause-loop exits and frequency scaling.

use super::catalog::{C6, C7, C8, C9, I3};
use super::{
    Comparison, Ctx, Evidence, Recommendation, Severity, num, per_vcpu, target_pid, vcpu_target,
    vm_target,
};
use crate::advice::inputs::rate_in;

/// The kernel's `KVM_HALT_POLL_NS_DEFAULT` on x86: what polling would use if switched on.
const KVM_HALT_POLL_NS_DEFAULT: u64 = 200_000;
const HLT: &[&str] = &["HLT", "hlt"];
const PAUSE: &[&str] = &["PAUSE_INSTRUCTION", "pause"];

pub(super) fn evaluate(ctx: &mut Ctx<'_>) {
    c6(ctx);
    c7(ctx);
    c8(ctx);
}

fn c6(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    let configured = inputs.host.kvm.halt_poll_ns;
    let window = configured
        .filter(|n| *n > 0)
        .unwrap_or(KVM_HALT_POLL_NS_DEFAULT);
    let hlt =
        |v: &crate::advice::inputs::VcpuObservations| Some(rate_in(v.exit_rates.as_ref()?, HLT));
    per_vcpu(
        ctx,
        C6.id,
        "per-vCPU exit rates",
        hlt,
        |ctx, vm, index, rate| {
            if rate <= t.c6_halt_exits_per_s {
                return;
            }
            let Some(v) = vm.observations.vcpu(index) else {
                return;
            };
            let (Some(median), Some(wait)) = (v.median_halt_ns, v.run_delay_share) else {
                ctx.missing(C6.id, "median halt time and run-queue wait share");
                return;
            };
            if median >= num(window) || wait >= t.c6_wait_low {
                return;
            }
            let host = match configured {
                Some(0) => "kvm.halt_poll_ns is 0, so polling is off: set it to 200000 (the x86 \
                        default) on hosts with dedicated pCPUs"
                    .to_owned(),
                Some(n) => format!("keep or raise kvm.halt_poll_ns (now {n})"),
                None => "keep or raise kvm.halt_poll_ns (x86 default 200000)".to_owned(),
            };
            let rec = Recommendation::new(
                &C6,
                Severity::Info,
                vcpu_target(&vm.facts, index),
                ctx.measured(
                    "HLT exits/s",
                    rate,
                    Comparison::Above,
                    t.c6_halt_exits_per_s,
                ),
            )
            .with(ctx.measured("median halt ns", median, Comparison::Below, num(window)))
            .with(ctx.measured(
                "run-queue wait share",
                wait,
                Comparison::Below,
                t.c6_wait_low,
            ));
            let change = rec.change.clone().with_host(host);
            ctx.push(rec.change(change));
        },
    );
}

fn c7(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    let fail_share = |v: &crate::advice::inputs::VcpuObservations| {
        let (ok, fail) = (v.halt_poll_success_ns?, v.halt_poll_fail_ns?);
        (ok + fail > 0.0).then(|| fail / (ok + fail))
    };
    let busy = inputs.host_observations.cpu_busy_share;
    per_vcpu(
        ctx,
        C7.id,
        "per-vCPU halt-polling times",
        fail_share,
        |ctx, vm, index, share| {
            if share <= t.c7_poll_fail_share {
                return;
            }
            let Some(busy) = busy else {
                ctx.missing(C7.id, "host CPU busy share");
                return;
            };
            if busy <= t.c7_host_cpu_busy {
                return;
            }
            let rec = Recommendation::new(
                &C7,
                Severity::Warning,
                vcpu_target(&vm.facts, index),
                ctx.measured(
                    "failed share of halt-polling time",
                    share,
                    Comparison::Above,
                    t.c7_poll_fail_share,
                ),
            )
            .with(ctx.measured(
                "host CPU busy share",
                busy,
                Comparison::Above,
                t.c7_host_cpu_busy,
            ));
            ctx.push(rec);
        },
    );
}

fn c8(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    let pause =
        |v: &crate::advice::inputs::VcpuObservations| Some(rate_in(v.exit_rates.as_ref()?, PAUSE));
    per_vcpu(
        ctx,
        C8.id,
        "per-vCPU exit rates",
        pause,
        |ctx, vm, index, rate| {
            if rate <= t.c8_pause_exits_per_s {
                return;
            }
            let mut rec = Recommendation::new(
                &C8,
                Severity::Warning,
                vcpu_target(&vm.facts, index),
                ctx.measured(
                    "PAUSE exits/s",
                    rate,
                    Comparison::Above,
                    t.c8_pause_exits_per_s,
                ),
            );
            if let Some(wait) = vm
                .observations
                .vcpu(index)
                .and_then(|v| v.run_delay_share)
                .filter(|w| *w > t.c1_wait_warn)
            {
                rec = rec.with(ctx.measured(
                    "run-queue wait share",
                    wait,
                    Comparison::Above,
                    t.c1_wait_warn,
                ));
            }
            if vm.facts.pinned_one_to_one() {
                let kvm = &inputs.host.kvm;
                let host = match (&kvm.intel, &kvm.amd) {
                    (Some(i), _) => format!(
                        "vCPUs are pinned 1:1: kvm_intel.ple_gap=0 (now {})",
                        i.ple_gap
                            .map_or_else(|| "unknown".to_owned(), |g| g.to_string())
                    ),
                    (None, Some(a)) => format!(
                        "vCPUs are pinned 1:1: kvm_amd.pause_filter_count=0 (now {})",
                        a.pause_filter_count
                            .map_or_else(|| "unknown".to_owned(), |g| g.to_string())
                    ),
                    (None, None) => "vCPUs are pinned 1:1: kvm_intel.ple_gap=0 or \
                                 kvm_amd.pause_filter_count=0"
                        .to_owned(),
                };
                let change = rec.change.clone().with_host(host);
                rec = rec.change(change);
            }
            ctx.push(rec);
        },
    );
}

/// C9 runs after every other rule: it qualifies C6 and I3 findings.
pub(super) fn c9(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    for vm in &inputs.vms {
        let pid = vm.facts.pid;
        let mut latency: Vec<&str> = ctx
            .made()
            .iter()
            .filter(|r| (r.id == C6.id || r.id == I3.id) && target_pid(&r.target) == Some(pid))
            .map(|r| r.id)
            .collect();
        latency.sort_unstable();
        latency.dedup();
        if latency.is_empty() {
            continue;
        }
        let Some(cpus) = vm.facts.vcpu_cpus() else {
            ctx.missing(C9.id, "vCPU thread affinity");
            continue;
        };
        let governors: Vec<(u32, &str)> = cpus
            .iter()
            .filter_map(|c| Some((*c, inputs.host.governor(*c)?)))
            .collect();
        if governors.is_empty() {
            ctx.missing(C9.id, "cpufreq governors");
            continue;
        }
        let mut slow: Vec<&str> = governors
            .iter()
            .filter(|(_, g)| *g != "performance")
            .map(|(_, g)| *g)
            .collect();
        let count = slow.len();
        slow.sort_unstable();
        slow.dedup();
        if count == 0 {
            continue;
        }
        let rec = Recommendation::new(
            &C9,
            Severity::Info,
            vm_target(&vm.facts),
            Evidence::fact(
                format!(
                    "vCPU CPUs whose governor is not performance ({})",
                    slow.join(", ")
                ),
                num(count as u64),
                Comparison::Above,
                0.0,
            ),
        )
        .with(Evidence::fact(
            "latency rules firing for the VM",
            latency.join(", "),
            Comparison::OneOf,
            "C6, I3",
        ));
        ctx.push(rec);
    }
}
