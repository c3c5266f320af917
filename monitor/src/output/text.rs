//! `kvmtop snapshot --format text`: a plain report for terminals and tickets.

use std::io::Write;

use crate::{model::Snapshot, signals::exits::ExitSource};

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
    for (source, state) in &snapshot.exits.sources {
        writeln!(out, "exit source {source}: {state}")?;
    }
    if snapshot.exits.dropped > 0 {
        writeln!(
            out,
            "warning: {} exits not counted (kernel map full)",
            snapshot.exits.dropped
        )?;
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
        writeln!(
            out,
            "  exits/s: {:.0} hardware, {:.0} to userspace",
            vm.exits.rate_of(ExitSource::KvmExit),
            vm.exits.rate_of(ExitSource::Userspace)
        )?;
        for reason in vm.exits.by_reason.iter().take(TOP_REASONS) {
            writeln!(
                out,
                "  {:<10} {:<24} {:>12} {:>12.1}/s",
                reason.source.as_str(),
                reason.reason,
                reason.count,
                reason.rate
            )?;
        }
        for vcpu in &vm.vcpus {
            let index = vcpu.index.map_or_else(|| "?".to_owned(), |i| i.to_string());
            let tid = vcpu.tid.map_or_else(|| "?".to_owned(), |t| t.to_string());
            writeln!(
                out,
                "  vcpu {index:<3} tid {tid:<8} {:>10.1} exits/s ({:.1} to userspace)",
                vcpu.exits.rate_of(ExitSource::KvmExit),
                vcpu.exits.rate_of(ExitSource::Userspace)
            )?;
        }
    }
    for problem in &snapshot.problems {
        writeln!(out, "note: {problem}")?;
    }
    Ok(())
}
