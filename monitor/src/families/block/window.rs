//! Two readings of the block totals → the block figures of a snapshot window.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    counters::{BlockCounterKey, BlockOp, BlockTotals, OpTotals},
    sources::RQ_ISSUE,
};
use crate::{
    bpf::hooks::Sources,
    discovery::Vmm,
    families::by_pid::ByPid,
    family::Pair,
    host::block::DevId,
    model::{
        LostEvents,
        Snapshot, SourceState, Untrusted,
        block::{BlockDevice, BlockOpStats, DriveInfo, HostBlock, VmBlock},
        rate,
        running::Running,
    },
};

/// Fills the block figures of `snapshot`: the host's sources, and each VM's devices and drives
/// (a VM new in the window counts from zero).
pub fn fill(pair: &Pair<'_, BlockTotals>, sources: &Sources, snapshot: &mut Snapshot) {
    let stats = ByPid::new(&pair.now.stats, |key, _| key.pid);
    for (span, vm) in pair.vms.iter().zip(&mut snapshot.vms) {
        let mine = stats.of(span.pid());
        vm.families.block = self::vm(span.vmm, mine, pair.now, pair.before_for(span), pair.seconds);
    }
    snapshot.families.block = host(pair.now, pair.before, sources);
}

/// A VM's figures, given its own counters of `now` (`mine`). `before` is `None` for a VM new in
/// this window (everything counts).
fn vm(
    vmm: &Vmm,
    mine: &[(&BlockCounterKey, &OpTotals)],
    now: &BlockTotals,
    before: Option<&BlockTotals>,
    seconds: f64,
) -> VmBlock {
    let pid = vmm.id.pid;
    // Device → operation → (window, running).
    let mut per_device: BTreeMap<DevId, BTreeMap<BlockOp, (OpTotals, OpTotals)>> = BTreeMap::new();
    for &(key, running) in mine {
        let window = match before.and_then(|b| b.stats.get(key)) {
            Some(earlier) => running.since(earlier),
            None => running.clone(),
        };
        per_device
            .entry(key.dev)
            .or_default()
            .insert(key.op, (window, running.clone()));
    }
    let no_drives = Vec::new();
    let drives = now.drives.get(&pid).unwrap_or(&no_drives);
    let name = |dev: &DevId| now.names.get(dev).cloned().unwrap_or(dev.to_string());
    let mut devices: BTreeSet<DevId> = per_device.keys().copied().collect();
    devices.extend(
        now.in_flight
            .keys()
            .chain(now.expired.keys())
            .filter(|(p, _)| *p == pid)
            .map(|(_, dev)| *dev),
    );
    for drive in drives {
        if let Ok(devs) = &drive.devices {
            devices.extend(devs);
        }
    }
    let mut devices: Vec<BlockDevice> = devices
        .into_iter()
        .map(|dev| {
            let ops = per_device.remove(&dev).unwrap_or_default();
            let on_device = drives
                .iter()
                .filter(|d| d.devices.as_ref().is_ok_and(|set| set.contains(&dev)))
                .filter_map(|d| d.id.clone().or_else(|| d.file.clone()).map(Untrusted::from))
                .collect();
            let expired = |totals: &BlockTotals| totals.expired.get(&(pid, dev)).copied();
            let requests = Requests {
                in_flight: now.in_flight.get(&(pid, dev)).copied().unwrap_or(0),
                expired: LostEvents::between(
                    before.and_then(expired).unwrap_or(0),
                    expired(now).unwrap_or(0),
                ),
            };
            device(name(&dev), dev, on_device, &ops, requests, seconds)
        })
        .collect();
    devices.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.device.cmp(&b.device)));
    VmBlock {
        devices,
        drives: drives
            .iter()
            .map(|d| DriveInfo {
                id: d.id.clone().map(Untrusted::from),
                interface: d.interface.clone().into(),
                file: d.file.clone().map(Untrusted::from),
                cache: d.cache,
                aio: d.aio.clone().into(),
                devices: d
                    .devices
                    .as_ref()
                    .map(|set| set.iter().map(name).collect())
                    .unwrap_or_default(),
                unmapped: d.devices.as_ref().err().cloned().map(Untrusted::from),
            })
            .collect(),
    }
}

/// A device's requests that have not completed: in flight at the end of the window, and
/// expired (in the window and in all).
#[derive(Clone, Copy)]
struct Requests {
    in_flight: u64,
    expired: LostEvents,
}

fn device(
    name: String,
    dev: DevId,
    drives: Vec<Untrusted>,
    ops: &BTreeMap<BlockOp, (OpTotals, OpTotals)>,
    unfinished: Requests,
    seconds: f64,
) -> BlockDevice {
    let mut all = OpTotals::default();
    for (window, _) in ops.values() {
        all.merge(window);
    }
    let lifetimes = all.latency.sum_ns + all.queue.sum_ns;
    #[expect(
        clippy::cast_precision_loss,
        reason = "nanoseconds in a window, < 2^52"
    )]
    let avg_in_flight = if seconds > 0.0 {
        lifetimes as f64 / (seconds * 1e9)
    } else {
        0.0
    };
    BlockDevice {
        device: name,
        major: dev.major,
        minor: dev.minor,
        drives,
        requests: all.requests(),
        iops: rate(all.requests(), seconds),
        bytes: all.bytes,
        bytes_per_second: rate(all.bytes, seconds),
        in_flight: unfinished.in_flight,
        expired: unfinished.expired.count,
        cumulative_expired: unfinished.expired.total,
        avg_in_flight,
        latency: all.latency.summary(),
        ops: ops
            .iter()
            .map(|(op, (window, running))| BlockOpStats {
                op: op.as_str(),
                requests: window.requests(),
                iops: rate(window.requests(), seconds),
                bytes: window.bytes,
                bytes_per_second: rate(window.bytes, seconds),
                latency: window.latency.summary(),
                latency_buckets: window.latency.nonempty_buckets(),
                queue: window.queue.summary(),
                unissued: window.unissued,
                cumulative_bytes: running.bytes,
                cumulative_latency: running.latency.clone(),
                cumulative_queue: running.queue.clone(),
            })
            .collect(),
    }
}

/// The host's figures: each source's state over the window and where requests are attributed.
#[must_use]
pub fn host(now: &BlockTotals, before: &BlockTotals, sources: &Sources) -> HostBlock {
    let mut completed = 0;
    let mut unissued = 0;
    for (key, running) in &now.stats {
        let window = match before.stats.get(key) {
            Some(earlier) => running.since(earlier),
            None => running.clone(),
        };
        completed += window.requests();
        unissued += window.unissued;
    }
    // Every completed request was submitted, issued (unless the block layer served it without
    // issuing it) and completed in the window.
    let events = |name: &str| match name {
        RQ_ISSUE => completed - unissued.min(completed),
        _ => completed,
    };
    HostBlock {
        sources: sources
            .iter()
            .map(|(name, source)| {
                let state = SourceState::from_window(&source.attachment, events(name));
                ((*name).to_owned(), state)
            })
            .collect(),
        hooks: sources
            .iter()
            .map(|(name, source)| ((*name).to_owned(), source.hook.to_string()))
            .collect(),
        attributed_at: now.submission.tracepoints(),
        // Filled by the session, which reads what the kernel skipped.
        lost: BTreeMap::new(),
        dropped: LostEvents::between(before.dropped, now.dropped),
        expired: LostEvents::between(before.expired_total, now.expired_total),
        expire_after_seconds: super::expiry::EXPIRE_AFTER.as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{VmmId, VmmKind};

    const PID: u32 = 4_000;

    fn vmm() -> Vmm {
        Vmm {
            id: VmmId {
                pid: PID,
                start_time: 1,
            },
            kind: VmmKind::Qemu,
            name: "vm".into(),
            uuid: None,
            comm: "qemu".into(),
            qemu: None,
            vcpus: Vec::new(),
            threads: Vec::new(),
        }
    }

    fn expired(per_device: &[(DevId, u64)], total: u64) -> BlockTotals {
        BlockTotals {
            expired: per_device
                .iter()
                .map(|&(dev, n)| ((PID, dev), n))
                .collect(),
            expired_total: total,
            ..BlockTotals::default()
        }
    }

    #[test]
    fn expired_requests_count_per_window_and_show_their_device_without_other_requests() {
        let dev = DevId {
            major: 259,
            minor: 0,
        };
        let before = expired(&[(dev, 2)], 7);
        let now = expired(&[(dev, 5)], 12);
        // No request counted, only expired ones.
        let block = vm(&vmm(), &[], &now, Some(&before), 2.0);
        let device = &block.devices[0];
        assert_eq!(
            (device.expired, device.cumulative_expired, device.requests),
            (3, 5, 0)
        );
        // A VM new in the window counts everything.
        assert_eq!(vm(&vmm(), &[], &now, None, 2.0).devices[0].expired, 5);
        let host = host(&now, &before, &Sources::new());
        assert_eq!(host.expired, LostEvents { count: 5, total: 12 });
        assert_eq!(
            host.expire_after_seconds,
            super::super::expiry::EXPIRE_AFTER.as_secs()
        );
    }
}
