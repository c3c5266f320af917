//! M1–M7: memory and NUMA.

use super::catalog::{M1, M2, M3, M4, M5, M6, M7};
use super::{Comparison, Ctx, Evidence, Recommendation, Severity, Target, num, vm_target};

pub(super) fn evaluate(ctx: &mut Ctx<'_>) {
    m1(ctx);
    m2(ctx);
    m3(ctx);
    m4(ctx);
    m5(ctx);
    m6(ctx);
    m7(ctx);
}

/// A recommendation from a list of evidence, if the list is not empty.
fn from_evidence(
    rule: &'static super::RuleInfo,
    severity: Severity,
    target: Target,
    evidence: Vec<Evidence>,
) -> Option<Recommendation> {
    let mut evidence = evidence.into_iter();
    let first = evidence.next()?;
    Some(Recommendation::new(rule, severity, target, first).with_all(evidence))
}

/// Total guest RAM of all VMs; `None` when any VM's size is unknown.
fn total_guest_ram(ctx: &Ctx<'_>) -> Option<u64> {
    ctx.inputs
        .vms
        .iter()
        .try_fold(0u64, |acc, vm| acc.checked_add(vm.facts.memory_bytes?))
}

/// What M1's evidence calls the remote share and the fault rate: counted at the fault hook.
const M1_COUNTED: [&str; 2] = [
    "remote share of NUMA hinting faults",
    "NUMA hinting faults/min",
];
/// The same from the procfs fallback: the VM's recent share, the host's rate.
const M1_RECENT: [&str; 2] = [
    "recent remote share of the VM's NUMA hinting faults (procfs)",
    "host NUMA hinting faults/min",
];

/// Judges `faults` hinting faults of which `remote` were remote, over the window; `names`
/// label the share and the rate in the evidence.
fn m1_check(
    ctx: &Ctx<'_>,
    faults: f64,
    remote: f64,
    names: [&'static str; 2],
) -> Option<Vec<Evidence>> {
    let t = ctx.t;
    let window = ctx.window.filter(|w| *w > 0.0)?;
    let per_min = faults / window * 60.0;
    if per_min < t.m1_min_faults_per_min || faults <= 0.0 {
        return Some(Vec::new());
    }
    let share = remote / faults;
    if share <= t.m1_remote_fault_share {
        return Some(Vec::new());
    }
    Some(vec![
        ctx.measured(names[0], share, Comparison::Above, t.m1_remote_fault_share),
        ctx.measured(
            names[1],
            per_min,
            Comparison::AtLeast,
            t.m1_min_faults_per_min,
        ),
    ])
}

fn m1(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let mut per_vm = false;
    // VMs known only through the procfs fallback: their recent remote share.
    let mut recent = Vec::new();
    for vm in &inputs.vms {
        let obs = &vm.observations;
        let (Some(faults), Some(remote)) = (obs.numa_hint_faults, obs.numa_hint_faults_remote)
        else {
            if let Some(share) = obs.numa_recent_remote_fault_share {
                recent.push((vm, share));
            }
            continue;
        };
        per_vm = true;
        match m1_check(ctx, faults, remote, M1_COUNTED) {
            Some(evidence) => {
                if let Some(rec) =
                    from_evidence(&M1, Severity::Warning, vm_target(&vm.facts), evidence)
                {
                    ctx.push(rec);
                }
            }
            None => ctx.missing(M1.id, "observation window"),
        }
    }
    if per_vm {
        return;
    }
    let host = &inputs.host_observations;
    let (Some(faults), Some(local)) = (host.numa_hint_faults, host.numa_hint_faults_local) else {
        ctx.missing(M1.id, "NUMA hinting faults (per VM or host-wide)");
        return;
    };
    if !recent.is_empty() {
        // The fault hook is refused: per VM from NUMA balancing's own statistics, which give
        // a share but no count, so the host's fault rate decides whether there are enough
        // faults to judge.
        for (vm, share) in recent {
            match m1_check(ctx, faults, share * faults, M1_RECENT) {
                Some(evidence) => {
                    if let Some(rec) =
                        from_evidence(&M1, Severity::Warning, vm_target(&vm.facts), evidence)
                    {
                        ctx.push(rec);
                    }
                }
                None => ctx.missing(M1.id, "observation window"),
            }
        }
        return;
    }
    match m1_check(ctx, faults, (faults - local).max(0.0), M1_COUNTED) {
        Some(evidence) => {
            if let Some(rec) = from_evidence(&M1, Severity::Warning, Target::Host, evidence) {
                ctx.push(rec);
            }
        }
        None => ctx.missing(M1.id, "observation window"),
    }
}

fn m2(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let host = &inputs.host;
    match host.numa_balancing {
        Some(1) => {}
        Some(_) => return,
        None => return ctx.missing(M2.id, "kernel.numa_balancing"),
    }
    if inputs.vms.is_empty() {
        return;
    }
    let (Some(online), Some(nodes)) = (host.online_cpus.as_deref(), host.node_count()) else {
        return ctx.missing(M2.id, "online CPUs and NUMA nodes");
    };
    let mut bound = 0u64;
    for vm in &inputs.vms {
        let Some(pinned) = vm.facts.vcpus_pinned(online) else {
            return ctx.missing(M2.id, "vCPU thread affinity");
        };
        let strict = vm.facts.memory.bind
            || match vm.facts.mems_allowed.as_ref() {
                Some(mems) => mems.len() < nodes,
                None => return ctx.missing(M2.id, "memory node policy of every VM"),
            };
        if !(pinned && strict) {
            return;
        }
        bound += 1;
    }
    let rec = Recommendation::new(
        &M2,
        Severity::Warning,
        Target::Host,
        Evidence::fact("kernel.numa_balancing", 1.0, Comparison::Equals, 1.0),
    )
    .with(Evidence::fact(
        "VMs with pinned vCPUs and strictly bound memory",
        num(bound),
        Comparison::Equals,
        num(inputs.vms.len() as u64),
    ));
    ctx.push(rec);
}

fn m3(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    for vm in &inputs.vms {
        let Some(share) = vm.observations.off_node_rss_share() else {
            ctx.missing(M3.id, "resident memory per node");
            continue;
        };
        if share > t.m3_off_node_rss_share {
            let first = ctx.measured(
                "resident memory off the home node (share)",
                share,
                Comparison::Above,
                t.m3_off_node_rss_share,
            );
            ctx.push(Recommendation::new(
                &M3,
                Severity::Warning,
                vm_target(&vm.facts),
                first,
            ));
        }
    }
}

fn m4(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    let thp = &inputs.host.thp;
    if thp.enabled.is_none() && thp.defrag.is_none() {
        ctx.missing(M4.id, "transparent huge page settings");
    }
    let mut host = Vec::new();
    let never = thp.enabled.as_deref() == Some("never");
    if never {
        host.push(Evidence::fact(
            "transparent_hugepage/enabled",
            "never",
            Comparison::Equals,
            "never",
        ));
    }
    if thp.defrag.as_deref() == Some("always") {
        host.push(Evidence::fact(
            "transparent_hugepage/defrag",
            "always",
            Comparison::Equals,
            "always",
        ));
    }
    if let Some(rec) = from_evidence(&M4, Severity::Warning, Target::Host, host) {
        ctx.push(rec);
    }
    if never {
        // Every VM without hugetlbfs is covered by the host-wide finding.
        return;
    }
    for vm in &inputs.vms {
        if vm.facts.memory.hugetlb {
            continue;
        }
        let (Some(anon), Some(ram)) =
            (vm.observations.anon_huge_pages_bytes, vm.facts.memory_bytes)
        else {
            ctx.missing(M4.id, "AnonHugePages of the VMM and guest RAM size");
            continue;
        };
        if ram == 0 {
            continue;
        }
        let share = num(anon) / num(ram);
        if share < t.m4_anon_huge_share {
            let first = ctx.measured(
                "share of guest RAM in transparent huge pages",
                share,
                Comparison::Below,
                t.m4_anon_huge_share,
            );
            ctx.push(Recommendation::new(
                &M4,
                Severity::Info,
                vm_target(&vm.facts),
                first,
            ));
        }
    }
}

fn m5(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    let ksm = &inputs.host.ksm;
    match ksm.run {
        Some(1) => {}
        Some(_) => return,
        None => return ctx.missing(M5.id, "KSM run state"),
    }
    let mut evidence = Vec::new();
    match (total_guest_ram(ctx), inputs.host.meminfo.mem_total) {
        (Some(guests), Some(total)) if total > 0 => {
            let share = num(guests) / num(total);
            if share < t.m5_guest_ram_share {
                evidence.push(Evidence::fact(
                    "guest RAM as a share of host RAM",
                    share,
                    Comparison::Below,
                    t.m5_guest_ram_share,
                ));
            }
        }
        _ => ctx.missing(M5.id, "guest and host RAM sizes"),
    }
    if let (Some(sharing), Some(unshared)) = (ksm.pages_sharing, ksm.pages_unshared) {
        // With nothing shared yet, every unshared page is wasted scanning.
        let ratio = num(unshared) / num(sharing.max(1));
        if ratio > t.m5_unshared_per_sharing {
            evidence.push(Evidence::fact(
                "KSM pages_unshared per pages_sharing",
                ratio,
                Comparison::Above,
                t.m5_unshared_per_sharing,
            ));
        }
    } else {
        ctx.missing(M5.id, "KSM page counters");
    }
    match inputs.host_observations.ksmd_cpu_share {
        Some(cpu) if cpu > t.m5_ksmd_cpu_share => {
            evidence.push(ctx.measured(
                "ksmd CPU share",
                cpu,
                Comparison::Above,
                t.m5_ksmd_cpu_share,
            ));
        }
        Some(_) => {}
        None => ctx.missing(M5.id, "ksmd CPU share"),
    }
    if ksm.merge_across_nodes == Some(1) && inputs.host.node_count().is_some_and(|n| n > 1) {
        evidence.push(Evidence::fact(
            "KSM merge_across_nodes on a multi-node host",
            1.0,
            Comparison::Equals,
            1.0,
        ));
    }
    if let Some(rec) = from_evidence(&M5, Severity::Warning, Target::Host, evidence) {
        let rec = rec.with(Evidence::fact("KSM run", 1.0, Comparison::Equals, 1.0));
        ctx.push(rec);
    }
}

fn m6(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    let mem = &inputs.host.meminfo;
    let mut evidence = Vec::new();
    let mut severity = Severity::Warning;
    match (total_guest_ram(ctx), mem.mem_total, mem.swap_total) {
        (Some(guests), Some(total), Some(swap)) => {
            let need = num(guests) + t.m6_host_reserve_bytes;
            let deficit = need - num(total);
            if deficit > 0.0 && num(swap) < deficit {
                severity = Severity::Critical;
                evidence.push(Evidence::fact(
                    "guest RAM + host reserve, bytes",
                    need,
                    Comparison::Above,
                    num(total),
                ));
                evidence.push(Evidence::fact(
                    "swap bytes",
                    num(swap),
                    Comparison::Below,
                    deficit,
                ));
            }
        }
        _ => ctx.missing(M6.id, "guest RAM sizes, MemTotal and SwapTotal"),
    }
    let obs = &inputs.host_observations;
    match (obs.swap_in_pages_per_s, obs.swap_out_pages_per_s) {
        (Some(i), Some(o)) if i + o > t.m6_swap_pages_per_s => {
            evidence.push(ctx.measured(
                "pages swapped in + out per second",
                i + o,
                Comparison::Above,
                t.m6_swap_pages_per_s,
            ));
        }
        (Some(_), Some(_)) => {}
        _ => ctx.missing(M6.id, "swap-in and swap-out rates"),
    }
    if let Some(rec) = from_evidence(&M6, severity, Target::Host, evidence) {
        ctx.push(rec);
    }
}

fn m7(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    let host = &inputs.host;
    let pools: Vec<_> = host.hugepage_pools().map(|(_, p)| p).collect();
    let (pool_bytes, free_bytes) = if pools.is_empty() {
        let m = &host.meminfo;
        let (Some(nr), Some(free), Some(size)) =
            (m.hugepages_total, m.hugepages_free, m.hugepagesize)
        else {
            return ctx.missing(M7.id, "huge page pools");
        };
        (num(nr) * num(size), num(free) * num(size))
    } else {
        pools.iter().fold((0.0, 0.0), |(a, b), p| {
            let size = num(p.size_bytes);
            (
                a + num(p.nr.unwrap_or(0)) * size,
                b + num(p.free.unwrap_or(0)) * size,
            )
        })
    };
    let mut evidence = Vec::new();
    let huge_vms: Vec<_> = inputs
        .vms
        .iter()
        .filter(|v| v.facts.memory.hugetlb)
        .collect();
    if !huge_vms.is_empty() {
        match huge_vms
            .iter()
            .try_fold(0u64, |acc, v| acc.checked_add(v.facts.memory_bytes?))
        {
            Some(need) if num(need) > pool_bytes => evidence.push(Evidence::fact(
                "RAM of hugetlbfs-backed VMs, bytes",
                num(need),
                Comparison::Above,
                pool_bytes,
            )),
            Some(_) => {}
            None => ctx.missing(M7.id, "guest RAM size of hugetlbfs-backed VMs"),
        }
    }
    let mut severity = if evidence.is_empty() {
        Severity::Info
    } else {
        Severity::Warning
    };
    match host.meminfo.mem_total.filter(|m| *m > 0) {
        Some(total) => {
            let share = free_bytes / num(total);
            if share > t.m7_unused_hugepage_share {
                evidence.push(Evidence::fact(
                    "free huge pages as a share of host RAM",
                    share,
                    Comparison::Above,
                    t.m7_unused_hugepage_share,
                ));
            }
        }
        None => ctx.missing(M7.id, "MemTotal"),
    }
    if evidence.is_empty() {
        severity = Severity::Info;
    }
    if let Some(rec) = from_evidence(&M7, severity, Target::Host, evidence) {
        ctx.push(rec);
    }
}
