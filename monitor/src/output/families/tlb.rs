//! TLB shootdowns: sent and received per VM, and received per host CPU, as counters; in the text
//! report, the VM's shootdown rates.

use std::io::Write;


use super::Presenter;
use crate::{
    model::{Snapshot, Vm},
    output::series::{
        Context, histograms,
        plain::{Gathered, Series},
    },
};

pub struct Tlb;

impl Presenter for Tlb {
    fn metrics(
        gathered: &mut Gathered,
        snapshot: &Snapshot,
        _context: Context<'_>,
    ) -> anyhow::Result<Vec<histograms::Family>> {
        let mut shootdowns = Series::counter(
            "kvmtop_vm_tlb_shootdowns_total",
            "TLB shootdowns of each VMM process: sent (its threads asked other CPUs to flush, \
             TLB_REMOTE_SEND_IPI) and received (its threads flushed for another CPU, \
             TLB_REMOTE_SHOOTDOWN).",
            &["vm", "pid", "direction"],
        );
        let mut cpu_received = Series::counter(
            "kvmtop_cpu_tlb_shootdowns_received_total",
            "TLB shootdowns received by each host CPU, whatever task ran there.",
            &["cpu"],
        );
        for vm in &snapshot.vms {
            let pid = vm.pid.to_string();
            for (direction, count) in [
                ("sent", &vm.families.tlb.sent),
                ("received", &vm.families.tlb.received),
            ] {
                shootdowns
                    .with_label_values(&[vm.name.exact(), pid.as_str(), direction])
                    .inc_by(count.cumulative);
            }
        }
        for cpu in &snapshot.families.tlb.cpus {
            cpu_received
                .with_label_values(&[&cpu.cpu.to_string()])
                .inc_by(cpu.received.cumulative);
        }
        gathered.add(shootdowns);
        gathered.add(cpu_received);
        Ok(Vec::new())
    }

    fn text_vm(out: &mut dyn Write, vm: &Vm) -> std::io::Result<()> {
        let tlb = &vm.families.tlb;
        if tlb.sent.count + tlb.received.count == 0 {
            return Ok(());
        }
        writeln!(
            out,
            "  TLB shootdowns: sent {:.0}/s ({} pages), received {:.0}/s",
            tlb.sent.rate, tlb.sent.pages, tlb.received.rate
        )
    }
}
