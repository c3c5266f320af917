//! `kvmtop snapshot --format text`: a plain report for terminals and tickets.

use std::{fmt::Write as _, io::Write};

use crate::{
    format,
    model::{Snapshot, SourceState, untrusted::sanitize},
    output::families,
};

/// The host, the state of every source, each VM with every family's lines, the advice in force
/// and the problems met.
pub fn write(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    writeln!(
        out,
        "kvmtop {} on {} (Linux {}), window {:.1} s",
        snapshot.kvmtop_version,
        // Written by whoever made a recording being exported: never raw to a terminal.
        sanitize(&snapshot.host.hostname),
        sanitize(&snapshot.host.kernel),
        snapshot.window.duration_seconds
    )?;
    write_host(out, snapshot)?;
    write_sources(out, snapshot)?;
    write_losses(out, snapshot)?;
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
        families::text(out, vm)?;
    }
    write_advice(out, snapshot)?;
    for problem in &snapshot.problems {
        writeln!(out, "note: {problem}")?;
    }
    Ok(())
}

/// What the host has and what the VMs ask of it (a line each), leaving out what is unknown:
/// "host: 16 CPUs busy 42% · memory 64GiB available 20GiB · swap 8.0GiB free 7.0GiB, in 0 out
/// 12 pages/s · THP madvise · KSM running · NUMA balancing on" ("no swap" without any) and "guests: 3 vCPUs on 16
/// CPUs (0.2×) · RAM 12GiB of 72GiB memory and swap (0.2×)".
fn write_host(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    let host = &snapshot.host.state;
    let mut parts = Vec::new();
    if let Some(cpus) = host.cpus {
        let busy = host
            .cpu_busy
            .map(|b| format!(" busy {}", format::share(Some(b))))
            .unwrap_or_default();
        parts.push(format!("{cpus} CPUs{busy}"));
    }
    if let Some(memory) = host.memory_bytes {
        let available = host
            .memory_available_bytes
            .map(|a| format!(" available {}", format::bytes(a)))
            .unwrap_or_default();
        parts.push(format!("memory {}{available}", format::bytes(memory)));
    }
    match host.swap_bytes {
        Some(0) => parts.push("no swap".to_owned()),
        Some(swap) => {
            let mut line = format!("swap {}", format::bytes(swap));
            if let Some(free) = host.swap_free_bytes {
                let _ = write!(line, " free {}", format::bytes(free));
            }
            if let (Some(swap_in), Some(swap_out)) = (
                host.swap_in_pages_per_second,
                host.swap_out_pages_per_second,
            ) {
                let _ = write!(
                    line,
                    ", in {} out {} pages/s",
                    format::rate(swap_in),
                    format::rate(swap_out)
                );
            }
            parts.push(line);
        }
        None => {}
    }
    parts.extend(host.settings());
    if !parts.is_empty() {
        writeln!(out, "host: {}", parts.join(" · "))?;
    }
    let demand = snapshot.demand();
    let mut parts = vec![format!("{} vCPUs", demand.vcpus)];
    if let (Some(cpus), Some(ratio)) = (host.cpus, demand.cpu_overcommit(host)) {
        let _ = write!(parts[0], " on {cpus} CPUs ({})", format::ratio(ratio));
    }
    if demand.memory_known > 0 {
        let at_least = if demand.memory_unknown > 0 {
            "at least "
        } else {
            ""
        };
        let mut line = format!("RAM {at_least}{}", format::bytes(demand.memory_bytes));
        if let (Some(committable), Some(ratio)) =
            (host.memory_and_swap_bytes(), demand.memory_overcommit(host))
        {
            let _ = write!(
                line,
                " of {} memory and swap ({})",
                format::bytes(committable),
                format::ratio(ratio)
            );
        }
        parts.push(line);
    }
    writeln!(out, "guests: {}", parts.join(" · "))?;
    Ok(())
}

/// Every family's sources grouped by state, a source that lost events in the window marked
/// `name(lost N)`; each unavailable one on its own line with the reason.
fn write_sources(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    let families = snapshot.families.states();
    for wanted in [SourceState::Live, SourceState::Silent] {
        let names: Vec<String> = families
            .iter()
            .flat_map(|f| f.sources.iter().map(move |source| (f, source)))
            .filter(|(_, (_, state))| **state == wanted)
            .map(|(family, (name, _))| match family.lost_in_window(name) {
                0 => name.clone(),
                lost => format!("{name}(lost {lost})"),
            })
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
    }
    Ok(())
}

/// A warning for each kind of loss in the window: events a family's full map dropped, events
/// the kernel skipped a program for, block requests whose completion was never seen.
fn write_losses(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    for family in snapshot.families.states() {
        if family.dropped.count > 0 {
            writeln!(
                out,
                "warning: {} {} events dropped in the window ({} since start): a kernel map was \
                 full",
                family.dropped.count, family.family, family.dropped.total
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
    let block = &snapshot.families.block;
    if block.expired.count > 0 {
        writeln!(
            out,
            "warning: {} block requests expired in the window ({} since start): no completion \
             seen within {} s",
            block.expired.count, block.expired.total, block.expire_after_seconds
        )?;
    }
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
        assert!(text.contains(" block_rq_complete(lost 30) "), "{text}");
        assert!(
            text.contains(
                "warning: 2 block requests expired in the window (5 since start): no completion \
                 seen within 10 s"
            ),
            "{text}"
        );
        assert!(
            text.contains("0.2 in flight, 2 expired (completion never seen)"),
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
        assert!(
            text.contains(
                "host: 16 CPUs busy 42% · memory 64GiB available 20GiB · swap 8.0GiB free 7.0GiB, \
                 in 0 out 12 pages/s · THP madvise · KSM running · NUMA balancing on"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "guests: 3 vCPUs on 16 CPUs (0.2×) · RAM at least 8.0GiB of 72GiB memory and \
                 swap (0.1×)"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_host_line_shows_only_what_is_known_and_nothing_raw() {
        let mut snapshot = fixture::snapshot();
        snapshot.host.hostname = "hv1\u{1b}]0;owned\u{7}".into();
        snapshot.host.state = crate::model::HostState {
            transparent_hugepages: Some("\u{1b}[2J".into()),
            swap_bytes: Some(0),
            swap_in_pages_per_second: Some(0.0),
            swap_out_pages_per_second: Some(0.0),
            ..Default::default()
        };
        let mut out = Vec::new();
        super::write(&mut out, &snapshot).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("host: no swap · THP \u{fffd}[2J\n"), "{text}");
        assert!(
            text.contains("guests: 3 vCPUs · RAM at least 8.0GiB\n"),
            "{text}"
        );
    }

    #[test]
    fn a_full_map_is_reported_for_the_window_it_happened_in() {
        let mut snapshot = fixture::snapshot();
        snapshot.families.tlb.dropped = crate::model::LostEvents {
            count: 4,
            total: 11,
        };
        let mut out = Vec::new();
        super::write(&mut out, &snapshot).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "warning: 4 tlb events dropped in the window (11 since start): a kernel map was full"
            ),
            "{text}"
        );
        // Drops of earlier windows only: no warning.
        snapshot.families.tlb.dropped.count = 0;
        let mut out = Vec::new();
        super::write(&mut out, &snapshot).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("dropped"), "{text}");
    }
}
