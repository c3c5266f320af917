//! Block I/O: requests, bytes, requests in flight and requests expired (completion never seen)
//! per VM, host device and operation, and latency and queue-time histograms. In the text report: the VM's devices with their IOPS,
//! throughput and latency, and its drives with their cache and AIO modes.

use std::io::Write;


use super::Presenter;
use crate::{
    format,
    model::{Snapshot, Untrusted, Vm},
    output::series::{
        Context, histograms,
        plain::{Gathered, Series},
    },
};

pub struct Block;

impl Presenter for Block {
    fn metrics(
        gathered: &mut Gathered,
        snapshot: &Snapshot,
        context: Context<'_>,
    ) -> anyhow::Result<Vec<histograms::Family>> {
        let labels = ["vm", "pid", "device", "op"];
        let mut requests = Series::counter(
            "kvmtop_vm_block_requests_total",
            "Block requests of each VM completed, per host device and operation (read, write, \
             flush, discard, other), attributed to the VMM process that submitted them.",
            &labels,
        );
        let mut bytes = Series::counter(
            "kvmtop_vm_block_bytes_total",
            "Bytes of each VM's block requests, per host device and operation.",
            &labels,
        );
        let mut in_flight = Series::gauge(
            "kvmtop_vm_block_in_flight_requests",
            "Block requests of each VM issued and not yet completed at the end of the window.",
            &["vm", "pid", "device"],
        );
        let mut expired = Series::counter(
            "kvmtop_vm_block_expired_requests_total",
            "Block requests of each VM removed unfinished because no completion was seen within \
             the expiry bound (10 s): a completion the kernel programs missed, or a stalled \
             device. They are in no other block figure.",
            &["vm", "pid", "device"],
        );
        let mut latency = histograms::Family::new(
            "kvmtop_vm_block_latency_seconds",
            "Block request latency, issue to completion, per VM, host device and operation, from \
             in-kernel log2 histograms.",
            histograms::powers(
                context.level,
                histograms::WAIT_POWERS,
                histograms::BLOCK_LATENCY_COARSE,
            ),
        );
        let mut queue = histograms::Family::new(
            "kvmtop_vm_block_queue_seconds",
            "Time block requests of each VM spent before being issued to the device (submission \
             to issue), per host device and operation.",
            histograms::powers(
                context.level,
                histograms::WAIT_POWERS,
                histograms::SUM_AND_COUNT,
            ),
        );
        for vm in &snapshot.vms {
            let pid = vm.pid.to_string();
            for device in &vm.families.block.devices {
                in_flight
                    .with_label_values(&[vm.name.exact(), pid.as_str(), &device.device])
                    .set(i64::try_from(device.in_flight).unwrap_or(i64::MAX));
                expired
                    .with_label_values(&[vm.name.exact(), pid.as_str(), &device.device])
                    .inc_by(device.cumulative_expired);
                for op in &device.ops {
                    let values = [vm.name.exact(), pid.as_str(), device.device.as_str(), op.op];
                    requests
                        .with_label_values(&values)
                        .inc_by(op.cumulative_latency.count);
                    bytes.with_label_values(&values).inc_by(op.cumulative_bytes);
                    let labels = [
                        ("vm", vm.name.exact()),
                        ("pid", pid.as_str()),
                        ("device", device.device.as_str()),
                        ("op", op.op),
                    ];
                    for (family, histogram) in [
                        (&mut queue, &op.cumulative_queue),
                        (&mut latency, &op.cumulative_latency),
                    ] {
                        if histogram.count > 0 {
                            family.add(&labels, histogram);
                        }
                    }
                }
            }
        }
        gathered.add(requests);
        gathered.add(bytes);
        gathered.add(in_flight);
        gathered.add(expired);
        Ok([latency.into_nonempty(), queue.into_nonempty()]
            .into_iter()
            .flatten()
            .collect())
    }

    fn text_vm(out: &mut dyn Write, vm: &Vm) -> std::io::Result<()> {
        for device in &vm.families.block.devices {
            let latency = device.latency.as_ref().map_or_else(String::new, |l| {
                format!(
                    ", p50 {} p99 {}",
                    format::duration_ns(l.p50_ns),
                    format::duration_ns(l.p99_ns)
                )
            });
            let expired = if device.expired > 0 {
                format!(", {} expired (completion never seen)", device.expired)
            } else {
                String::new()
            };
            writeln!(
                out,
                "  block {} ({}): {:.0} IOPS, {}/s{latency}, {:.1} in flight{expired}",
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
        Ok(())
    }
}
