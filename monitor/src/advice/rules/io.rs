//! I1–I4: I/O.

use super::catalog::{I1, I2, I3, I4};
use super::{Change, Comparison, Ctx, Evidence, Recommendation, Severity, Target};
use crate::discovery::qemu::{AioMode, CacheMode};

/// SCSI controllers QEMU emulates register by register.
const EMULATED_SCSI: &[&str] = &[
    "lsi53c895a",
    "lsi53c810",
    "lsi",
    "megasas",
    "megasas-gen2",
    "mptsas1068",
    "am53c974",
    "dc390",
];

pub(super) fn evaluate(ctx: &mut Ctx<'_>) {
    if ctx.inputs.vms.iter().any(|v| !v.facts.qemu) {
        // Disks and NICs come from QEMU's command line; other VMMs' are not modelled.
        for rule in [I1.id, I2.id, I4.id] {
            ctx.missing(rule, "QEMU command line (a VMM other than QEMU)");
        }
    }
    i1(ctx);
    i2(ctx);
    i3(ctx);
    i4(ctx);
}

fn drive_target(pid: u32, drive: String) -> Target {
    Target::Drive {
        pid,
        drive: drive.into(),
    }
}

fn i1(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    for vm in inputs.vms.iter().filter(|v| v.facts.qemu) {
        for (i, d) in vm.facts.disks.iter().enumerate() {
            if d.disk.cdrom {
                continue;
            }
            let bus = if d.disk.interface == "ide" {
                d.controller.clone().unwrap_or_else(|| "ide".to_owned())
            } else if let Some(c) = d
                .controller
                .as_deref()
                .filter(|c| EMULATED_SCSI.contains(c))
            {
                c.to_owned()
            } else {
                continue;
            };
            let evidence = Evidence::fact(
                "disk controller",
                bus,
                Comparison::OneOf,
                "ide, ahci, lsi53c895a, megasas, mptsas1068",
            );
            let target = drive_target(vm.facts.pid, d.label(i));
            ctx.push(Recommendation::new(
                &I1,
                Severity::Warning,
                target,
                evidence,
            ));
        }
    }
}

/// A raw image or a host block device (LVM, partition, disk) through the file protocols.
fn raw_local(d: &crate::discovery::qemu::Disk) -> bool {
    let local = d
        .protocol
        .as_deref()
        .is_none_or(|p| p == "file" || p == "host_device");
    let device = d.file.as_deref().is_some_and(|f| f.starts_with("/dev/"))
        || d.protocol.as_deref() == Some("host_device");
    local && (d.format.as_deref() == Some("raw") || device)
}

fn i2(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    for vm in inputs.vms.iter().filter(|v| v.facts.qemu) {
        for (i, d) in vm.facts.disks.iter().enumerate() {
            let disk = &d.disk;
            if disk.cdrom || disk.read_only || disk.unresolved || !raw_local(disk) {
                continue;
            }
            let mut evidence = Vec::new();
            let cached = matches!(
                disk.cache,
                CacheMode::Writeback | CacheMode::Writethrough | CacheMode::Unsafe
            );
            if cached {
                evidence.push(Evidence::fact(
                    "cache mode",
                    disk.cache.as_str(),
                    Comparison::OneOf,
                    "writeback, writethrough, unsafe",
                ));
            }
            if disk.aio == AioMode::Threads {
                evidence.push(Evidence::fact(
                    "aio",
                    "threads",
                    Comparison::Equals,
                    "threads",
                ));
            }
            let mut evidence = evidence.into_iter();
            let Some(first) = evidence.next() else {
                continue;
            };
            let unsafe_cache = disk.cache == CacheMode::Unsafe;
            let severity = if unsafe_cache {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let mut rec =
                Recommendation::new(&I2, severity, drive_target(vm.facts.pid, d.label(i)), first)
                    .with_all(evidence);
            if unsafe_cache {
                rec = rec.diagnosis(
                    "cache=unsafe ignores the guest's flushes: a host crash or power loss loses \
                     data the guest believes written.",
                );
            }
            if !cached {
                // Only the AIO mode is off: cache is already direct.
                rec = rec.change(
                    Change::libvirt("<driver … io='native'/> (or io='io_uring')")
                        .with_qemu("aio=native (cache.direct=on is already set)"),
                );
            }
            ctx.push(rec);
        }
    }
}

fn i3(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    let t = ctx.t;
    for vm in &inputs.vms {
        let Some(block) = &vm.observations.block else {
            ctx.missing(I3.id, "block latency per drive");
            continue;
        };
        for (drive, obs) in block {
            let mut evidence = Vec::new();
            if let Some(p99) = obs.p99_ns {
                // Unknown kind: only the HDD threshold, which holds for any device.
                let (threshold, label) = match obs.rotational {
                    Some(false) => (t.i3_p99_ssd_ns, "block p99 ns (solid-state)"),
                    Some(true) => (t.i3_p99_hdd_ns, "block p99 ns (rotational)"),
                    None => (t.i3_p99_hdd_ns, "block p99 ns (device kind unknown)"),
                };
                if p99 > threshold {
                    evidence.push(ctx.measured(label, p99, Comparison::Above, threshold));
                }
            }
            if let Some(share) = obs
                .device_time_share
                .filter(|s| *s > t.i3_device_time_share)
            {
                evidence.push(ctx.measured(
                    "share of device busy time",
                    share,
                    Comparison::Above,
                    t.i3_device_time_share,
                ));
            }
            let mut evidence = evidence.into_iter();
            if let Some(first) = evidence.next() {
                let target = drive_target(vm.facts.pid, drive.clone());
                ctx.push(
                    Recommendation::new(&I3, Severity::Warning, target, first).with_all(evidence),
                );
            }
        }
    }
}

fn i4(ctx: &mut Ctx<'_>) {
    let inputs = ctx.inputs;
    for vm in inputs.vms.iter().filter(|v| v.facts.qemu) {
        for (i, nic) in vm.facts.nics.iter().enumerate() {
            let emulated = ["e1000", "rtl8139"]
                .iter()
                .any(|m| nic.model.starts_with(m));
            let userspace_virtio = nic.model.starts_with("virtio-net")
                && nic.backend.as_deref() == Some("tap")
                && nic.vhost != Some(true);
            let evidence = if emulated {
                Evidence::fact(
                    "NIC model",
                    nic.model.as_str(),
                    Comparison::OneOf,
                    "e1000, e1000e, rtl8139",
                )
            } else if userspace_virtio {
                Evidence::fact("vhost on the tap backend", "off", Comparison::Equals, "off")
            } else {
                continue;
            };
            let name = nic
                .id
                .clone()
                .or_else(|| nic.netdev.clone())
                .unwrap_or_else(|| format!("nic{i}"));
            let target = Target::Nic {
                pid: vm.facts.pid,
                nic: name.into(),
            };
            ctx.push(Recommendation::new(
                &I4,
                Severity::Warning,
                target,
                evidence,
            ));
        }
    }
}
