//! `kvmtop snapshot --format text`: a plain report for terminals and tickets.

use std::io::Write;

use crate::{
    format,
    model::{DetailGroup, Snapshot, Untrusted, Vm},
    model::{ExitSource, SourceState},
};

/// How many reasons to list per VM.
const TOP_REASONS: usize = 5;

pub fn write(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    writeln!(
        out,
        "kvmtop {} on {} (Linux {}), window {:.1} s",
        snapshot.kvmtop_version,
        snapshot.host.hostname,
        snapshot.host.kernel,
        snapshot.window.duration_seconds
    )?;
    // Every family's sources grouped by state; each unavailable one on its own line with the
    // reason, and any events lost to a full map.
    let families = snapshot.families.states();
    for wanted in [SourceState::Live, SourceState::Silent] {
        let names: Vec<&str> = families
            .iter()
            .flat_map(|f| f.sources.iter())
            .filter(|(_, state)| **state == wanted)
            .map(|(name, _)| name.as_str())
            .collect();
        if !names.is_empty() {
            writeln!(out, "sources {wanted}: {}", names.join(" "))?;
        }
    }
    for family in &families {
        for (name, state) in family.sources {
            if let SourceState::Unavailable(_) = state {
                writeln!(out, "source {name} ({}): {state}", family.family)?;
            }
        }
        if family.dropped > 0 {
            writeln!(
                out,
                "warning: {} {} events not counted since start (kernel map full)",
                family.dropped, family.family
            )?;
        }
    }
    for (program, skipped) in &snapshot.skipped_events {
        if skipped.count > 0 {
            writeln!(
                out,
                "warning: the kernel skipped {program} on {} events in the window ({} since start): \
                 another BPF program was running on that CPU",
                skipped.count, skipped.total
            )?;
        }
    }
    if snapshot.vms.is_empty() {
        writeln!(out, "\nno KVM virtual machines found on this host")?;
    }
    for vm in &snapshot.vms {
        writeln!(out)?;
        writeln!(
            out,
            "{}  pid {}  {}  vcpus {}  uuid {}",
            vm.name,
            vm.pid,
            vm.vmm,
            vm.vcpus.iter().filter(|v| v.index.is_some()).count(),
            vm.uuid.as_deref().unwrap_or("-")
        )?;
        write_vm(out, vm)?;
    }
    write_advice(out, snapshot)?;
    for problem in &snapshot.problems {
        writeln!(out, "note: {problem}")?;
    }
    Ok(())
}

fn write_vm(out: &mut impl Write, vm: &Vm) -> anyhow::Result<()> {
    writeln!(
        out,
        "  exits/s: {:.0} hardware, {:.0} to userspace, {:.0} halts",
        vm.families.exits.rate_of(ExitSource::KvmExit),
        vm.families.exits.rate_of(ExitSource::Userspace),
        vm.families.exits.rate_of(ExitSource::Halt)
    )?;
    writeln!(
        out,
        "  {:<10} {:<24} {:>10} {:>10} {:>6} {:>8} {:>8} {:>8}",
        "source", "reason", "count", "rate/s", "share", "p50", "p99", "max"
    )?;
    for reason in vm.families.exits.by_reason.iter().take(TOP_REASONS) {
        let latency = |pick: fn(&crate::model::LatencySummary) -> u64| {
            reason
                .latency
                .as_ref()
                .map_or_else(|| "-".to_owned(), |l| format::duration_ns(pick(l)))
        };
        writeln!(
            out,
            "  {:<10} {:<24} {:>10} {:>10.1} {:>6} {:>8} {:>8} {:>8}",
            reason.source.as_str(),
            reason.reason,
            reason.count,
            reason.rate,
            format::share(Some(reason.share)),
            latency(|l| l.p50_ns),
            latency(|l| l.p99_ns),
            latency(|l| l.max_ns),
        )?;
    }
    for group in &vm.families.exits.details {
        write_details(out, group)?;
    }
    for vcpu in &vm.vcpus {
        let index = vcpu.index.map_or_else(|| "?".to_owned(), |i| i.to_string());
        let tid = vcpu.tid.map_or_else(|| "?".to_owned(), |t| t.to_string());
        writeln!(
            out,
            "  vcpu {index:<3} tid {tid:<8} {:>10.1} exits/s ({:.1} to userspace); time: {} in exits, {} in the VMM, {} halted",
            vcpu.exits.rate_of(ExitSource::KvmExit),
            vcpu.exits.rate_of(ExitSource::Userspace),
            format::share(vcpu.time.handling_exits),
            format::share(vcpu.time.in_vmm),
            format::share(vcpu.time.halted),
        )?;
        if let Some(sched) = &vcpu.sched {
            let place = &sched.placement;
            let cpu = place.dominant_cpu.or(place.cpu);
            let node = place.dominant_node.or(place.node);
            writeln!(
                out,
                "           steal {}, on CPU {}, {} migrations/s, {} preempted; runs on cpu {} (node {})",
                format::share(sched.figures.steal),
                format::share(sched.figures.on_cpu),
                sched
                    .figures
                    .migrations
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |m| format!("{:.1}", m.rate)),
                sched.figures.involuntary_switches,
                cpu.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                node.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            )?;
        }
    }
    write_resources(out, vm)
}

/// Who the VM waited behind, its block devices and drives, TLB shootdowns and memory placement.
fn write_resources(out: &mut impl Write, vm: &Vm) -> anyhow::Result<()> {
    if !vm.families.sched.contenders.is_empty() {
        let parts: Vec<String> = vm
            .families
            .sched
            .contenders
            .iter()
            .map(|c| format!("{} {}", c.name, format::share(Some(c.share))))
            .collect();
        writeln!(out, "  waited behind: {}", parts.join(", "))?;
    }
    for device in &vm.families.block.devices {
        let latency = device.latency.as_ref().map_or_else(String::new, |l| {
            format!(
                ", p50 {} p99 {}",
                format::duration_ns(l.p50_ns),
                format::duration_ns(l.p99_ns)
            )
        });
        writeln!(
            out,
            "  block {} ({}): {:.0} IOPS, {}/s{latency}, {:.1} in flight",
            device.device,
            Untrusted::join(&device.drives, ", "),
            device.iops,
            format::byte_rate(device.bytes_per_second),
            device.avg_in_flight,
        )?;
    }
    for drive in &vm.families.block.drives {
        let name = drive
            .id
            .clone()
            .or_else(|| drive.file.clone())
            .unwrap_or_default();
        writeln!(
            out,
            "  drive {name}: {} cache={} aio={}{}",
            drive.interface,
            drive.cache,
            drive.aio,
            drive
                .unmapped
                .as_ref()
                .map_or_else(String::new, |why| format!(" (not mapped: {why})"))
        )?;
    }
    if vm.families.tlb.sent.count + vm.families.tlb.received.count > 0 {
        writeln!(
            out,
            "  TLB shootdowns: sent {:.0}/s ({} pages), received {:.0}/s",
            vm.families.tlb.sent.rate, vm.families.tlb.sent.pages, vm.families.tlb.received.rate
        )?;
    }
    if let Some(memory) = &vm.families.numa.memory {
        let nodes: Vec<String> = memory
            .by_node
            .iter()
            .map(|n| format!("node {} {}", n.node, format::bytes(n.bytes)))
            .collect();
        writeln!(
            out,
            "  memory: {} ({}), huge pages {}",
            format::bytes(memory.resident_bytes),
            nodes.join(", "),
            format::share(memory.huge_page_coverage)
        )?;
    }
    Ok(())
}

/// `  pio (port, kvm:kvm_pio) 99.5k/s: out 0x80 99.5k/s, in 0x71 300/s, other ×400`
fn write_details(out: &mut impl Write, group: &DetailGroup) -> anyhow::Result<()> {
    let mut parts: Vec<String> = group
        .top
        .iter()
        .map(|d| {
            let label = if d.sub.is_empty() {
                d.value.clone()
            } else {
                format!("{} {}", d.sub, d.value)
            };
            format!("{} {}/s", label.trim(), format::rate(d.rate))
        })
        .collect();
    if group.other > 0 {
        parts.push(format!("other ×{}", group.other));
    }
    writeln!(
        out,
        "  {} ({}, {}) {}/s: {}",
        group.kind.as_str(),
        group.value_name,
        group.source,
        format::rate(group.rate),
        parts.join(", ")
    )?;
    Ok(())
}

/// Each recommendation with its evidence, the change, and where the rule comes from.
fn write_advice(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    if snapshot.recommendations.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nadvice (kvmtop explain RULE for details):")?;
    for r in &snapshot.recommendations {
        let severity = format!("{:?}", r.severity).to_lowercase();
        writeln!(out, "  [{severity}] {} {} — {}", r.id, r.title, r.target)?;
        for evidence in r.evidence() {
            writeln!(out, "      evidence: {evidence}")?;
        }
        for (form, text) in [
            ("libvirt", &r.change.libvirt),
            ("qemu", &r.change.qemu),
            ("host", &r.change.host),
        ] {
            if let Some(text) = text {
                writeln!(out, "      change ({form}): {text}")?;
            }
        }
        writeln!(out, "      effect: {}", r.expected_effect)?;
        let sources: Vec<String> = r
            .source
            .iter()
            .map(|s| format!("{}, {}", s.title, s.section))
            .collect();
        writeln!(out, "      source: {}", sources.join("; "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testing::fixture;

    #[test]
    fn report_carries_latency_details_and_time_shares() {
        let mut out = Vec::new();
        super::write(&mut out, &fixture::snapshot()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("IO_INSTRUCTION"), "{text}");
        assert!(text.contains("60µs"), "p99 of the fixture: {text}");
        assert!(text.contains("pio (port, kvm:kvm_pio)"), "{text}");
        assert!(text.contains("out 0x80 100k/s"), "{text}");
        assert!(
            text.contains("sources live: kvm_exit userspace sched_"),
            "{text}"
        );
        assert!(
            text.contains("source numa_fault (numa): unavailable"),
            "{text}"
        );
        assert!(
            text.contains("42% in exits, 20% in the VMM, 1% halted"),
            "{text}"
        );
        assert!(text.contains("[critical] C1"), "{text}");
        assert!(
            text.contains("evidence: run-queue wait share = 0.31 (> 0.2) over 2 s"),
            "{text}"
        );
        assert!(text.contains("steal 12%"), "{text}");
        assert!(
            text.contains("the kernel skipped block_rq_complete on 30 events in the window"),
            "{text}"
        );
        assert!(
            text.contains("block nvme0n1 (virtio-disk0): 2400 IOPS"),
            "{text}"
        );
        assert!(
            text.contains("drive virtio-disk0: virtio cache=none aio=native"),
            "{text}"
        );
        assert!(text.contains("TLB shootdowns: sent 600/s"), "{text}");
        assert!(text.contains("waited behind: idle-db 60%"), "{text}");
    }
}
