//! C1–C5: CPU contention and placement.

use super::catalog::{C1, C2, C3, C4, C5};
use super::{
    Comparison, Ctx, Evidence, Recommendation, Severity, Target, num, per_vcpu, vcpu_target,
    vm_target,
};
use crate::discovery::ThreadRole;

pub(super) fn evaluate(ctx: &mut Ctx<'_>) {
    c1(ctx);
    c2(ctx);
    c3(ctx);
    c4(ctx);
    c5(ctx);
}

fn c1(ctx: &mut Ctx<'_>) {
    let t = ctx.t;
    per_vcpu(
        ctx,
        C1.id,
        "per-vCPU run-queue wait share",
        |v| v.run_delay_share,
        |ctx, vm, index, wait| {
            if wait <= t.c1_wait_warn {
                return;
            }
            let (severity, threshold) = if wait > t.c1_wait_critical {
                (Severity::Critical, t.c1_wait_critical)
            } else {
                (Severity::Warning, t.c1_wait_warn)
            };
            let evidence = ctx.measured("run-queue wait share", wait, Comparison::Above, threshold);
            ctx.push(Recommendation::new(
                &C1,
                severity,
                vcpu_target(&vm.facts, index),
                evidence,
            ));
        },
    );
}

fn c2(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    let Some(cores) = inputs.host.physical_cores() else {
        if !inputs.vms.is_empty() {
            ctx.missing(C2.id, "host physical core count");
        }
        return;
    };
    let cores_f = f64::from(cores);
    let mut total = Some(0u64);
    for vm in &inputs.vms {
        let Some(vcpus) = vm.facts.vcpus else {
            total = None;
            ctx.missing(C2.id, "vCPU count of every VM");
            continue;
        };
        total = total.map(|n| n + u64::from(vcpus));
        if vcpus > cores {
            let evidence = Evidence::fact("vCPUs", f64::from(vcpus), Comparison::Above, cores_f);
            ctx.push(
                Recommendation::new(&C2, Severity::Warning, vm_target(&vm.facts), evidence)
                    .diagnosis("The VM has more vCPUs than the host has physical cores."),
            );
        }
    }
    let Some(total) = total.filter(|n| *n > 0) else {
        return;
    };
    let ratio = num(total) / cores_f;
    let name = "vCPUs per physical core, all VMs";
    if ratio > t.c2_vcpus_per_core_max {
        let evidence = Evidence::fact(name, ratio, Comparison::Above, t.c2_vcpus_per_core_max);
        ctx.push(Recommendation::new(
            &C2,
            Severity::Warning,
            Target::Host,
            evidence,
        ));
    } else if ratio > t.c2_vcpus_per_core_busy {
        match inputs.host_observations.cpu_busy_share {
            Some(busy) if busy > t.c2_busy_host_cpu => {
                let evidence =
                    Evidence::fact(name, ratio, Comparison::Above, t.c2_vcpus_per_core_busy);
                let busy = ctx.measured(
                    "host CPU busy share",
                    busy,
                    Comparison::Above,
                    t.c2_busy_host_cpu,
                );
                ctx.push(
                    Recommendation::new(&C2, Severity::Warning, Target::Host, evidence).with(busy),
                );
            }
            Some(_) => {}
            None => ctx.missing(C2.id, "host CPU busy share"),
        }
    }
}

fn c3(ctx: &mut Ctx<'_>) {
    let t = ctx.t;
    let any = |v: &crate::advice::inputs::VcpuObservations| {
        (v.migrations_per_s.is_some() || v.cross_node_migrations_per_min.is_some()).then_some(0.0)
    };
    per_vcpu(
        ctx,
        C3.id,
        "per-vCPU migrations",
        any,
        |ctx, vm, index, _| {
            let Some(v) = vm.observations.vcpu(index) else {
                return;
            };
            let mut evidence = Vec::new();
            if let Some(m) = v.migrations_per_s.filter(|m| *m > t.c3_migrations_per_s) {
                evidence.push(ctx.measured(
                    "migrations/s",
                    m,
                    Comparison::Above,
                    t.c3_migrations_per_s,
                ));
            }
            if let Some(m) = v
                .cross_node_migrations_per_min
                .filter(|m| *m > t.c3_cross_node_per_min)
            {
                evidence.push(ctx.measured(
                    "cross-node migrations/min",
                    m,
                    Comparison::Above,
                    t.c3_cross_node_per_min,
                ));
            }
            let mut evidence = evidence.into_iter();
            if let Some(first) = evidence.next() {
                let target = vcpu_target(&vm.facts, index);
                ctx.push(
                    Recommendation::new(&C3, Severity::Warning, target, first).with_all(evidence),
                );
            }
        },
    );
}

fn c4(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let host = &inputs.host;
    let Some(nodes) = host.nodes.as_ref() else {
        if !inputs.vms.is_empty() {
            ctx.missing(C4.id, "host NUMA topology");
        }
        return;
    };
    if nodes.len() < 2 {
        return;
    }
    for vm in &inputs.vms {
        let (Some(vcpus), Some(memory)) = (vm.facts.vcpus, vm.facts.memory_bytes) else {
            ctx.missing(C4.id, "VM vCPU count and memory size");
            continue;
        };
        // The node that could hold the whole VM: enough cores and enough memory.
        let fits = nodes.iter().find_map(|n| {
            let cores = host.cores_among(Some(n.cpus.as_deref()?))?;
            let mem = n.mem_total?;
            (cores >= vcpus && mem >= memory).then_some((n.id, cores, mem))
        });
        let Some((node, cores, mem)) = fits else {
            continue;
        };
        let mut span = Vec::new();
        match vm.facts.vcpu_cpus() {
            Some(cpus) => {
                let mut on: Vec<u32> = cpus.iter().filter_map(|c| host.node_of_cpu(*c)).collect();
                on.sort_unstable();
                on.dedup();
                if on.len() > 1 {
                    span.push(Evidence::fact(
                        "NUMA nodes the vCPU threads may run on",
                        f64::from(u32::try_from(on.len()).unwrap_or(u32::MAX)),
                        Comparison::Above,
                        1.0,
                    ));
                }
            }
            None => ctx.missing(C4.id, "vCPU thread affinity"),
        }
        if let Some(share) = vm.observations.off_node_rss_share()
            && share > ctx.t.c4_off_node_memory_share
        {
            span.push(ctx.measured(
                "resident memory off the main node (share)",
                share,
                Comparison::Above,
                ctx.t.c4_off_node_memory_share,
            ));
        }
        let mut span = span.into_iter();
        let Some(first) = span.next() else {
            continue;
        };
        let rec = Recommendation::new(&C4, Severity::Warning, vm_target(&vm.facts), first)
            .with_all(span)
            .with(Evidence::fact(
                format!("vCPUs (node {node} has {cores} cores)"),
                f64::from(vcpus),
                Comparison::AtMost,
                f64::from(cores),
            ))
            .with(Evidence::fact(
                format!("guest RAM bytes (node {node} has {mem})"),
                num(memory),
                Comparison::AtMost,
                num(mem),
            ));
        ctx.push(rec);
    }
}

fn c5(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    for vm in &inputs.vms {
        let Some(wait) = vm.observations.max_run_delay_share() else {
            ctx.missing(C5.id, "per-vCPU run-queue wait share");
            continue;
        };
        if wait <= t.c5_wait {
            continue;
        }
        let Some(vcpu_cpus) = vm.facts.vcpu_cpus() else {
            ctx.missing(C5.id, "vCPU thread affinity");
            continue;
        };
        let sharing: Vec<String> = vm
            .facts
            .helper_threads
            .iter()
            .filter(|h| {
                h.allowed_cpus
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|cpu| vcpu_cpus.contains(cpu)))
            })
            .map(|h| match &h.role {
                ThreadRole::Main => format!("main loop {}", h.tid),
                ThreadRole::IoThread(id) => format!("IOThread {id} ({})", h.tid),
                ThreadRole::KernelWorker(name) | ThreadRole::Other(name) => {
                    format!("{name} ({})", h.tid)
                }
                ThreadRole::Vcpu(_) => h.tid.to_string(),
            })
            .collect();
        if sharing.is_empty() {
            continue;
        }
        let evidence = ctx.measured(
            "highest vCPU run-queue wait share",
            wait,
            Comparison::Above,
            t.c5_wait,
        );
        let threads = Evidence::fact(
            format!(
                "helper threads allowed on vCPU CPUs: {}",
                sharing.join(", ")
            ),
            num(sharing.len() as u64),
            Comparison::Above,
            0.0,
        );
        ctx.push(
            Recommendation::new(&C5, Severity::Warning, vm_target(&vm.facts), evidence)
                .with(threads),
        );
    }
}
