//! Block I/O in the snapshot: per VM, per host device and per operation, and the VM's drives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use schemars::JsonSchema;

use super::{Bucket, Histogram, LatencySummary, LostEvents, SourceState, Untrusted, interned::StaticText};

/// Host-wide state of the block sources.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct HostBlock {
    /// State of each block source, by tracepoint name.
    pub sources: BTreeMap<String, SourceState>,
    /// Where each source runs (`tracepoint:block:block_rq_issue`, …).
    pub hooks: BTreeMap<String, String>,
    /// Where requests are attributed to the submitting VM on this kernel.
    #[serde(deserialize_with = "super::interned::text")]
    pub attributed_at: StaticText,
    /// Per source, events the kernel did not run its program for (another BPF program was
    /// running on that CPU): in the window and since start. Only sources that lost any.
    pub lost: BTreeMap<String, LostEvents>,
    /// Requests not tracked because a kernel map (`BLOCK_DROPS` counts them) was full.
    pub dropped: LostEvents,
    /// Requests removed unfinished after pending longer than `expire_after_seconds`: their
    /// completion was missed, or the device stalled. Per VM and device in `devices[].expired`.
    pub expired: LostEvents,
    /// How long a request may be pending before it counts as expired.
    pub expire_after_seconds: u64,
}

/// A VM's block I/O over the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct VmBlock {
    /// Host block devices the VM's requests went to, or its drives sit on; busiest first.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub devices: Vec<BlockDevice>,
    /// The VM's drives (QEMU only), in command-line order.
    #[serde(default, skip_serializing_if = "super::recorded::empty")]
    #[schemars(!default, !skip_serializing_if)]
    pub drives: Vec<DriveInfo>,
}

/// One host device, for one VM.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlockDevice {
    /// Kernel name (`vda`, `nvme0n1`), or `MAJ:MIN` when sysfs does not know it.
    pub device: String,
    pub major: u32,
    pub minor: u32,
    /// The VM's drives on this device (their ids, or files when they have none).
    pub drives: Vec<Untrusted>,
    /// Completed requests in the window, all operations.
    pub requests: u64,
    pub iops: f64,
    pub bytes: u64,
    pub bytes_per_second: f64,
    /// Requests submitted and not completed at the end of the window.
    pub in_flight: u64,
    /// Requests removed unfinished in the window because they were pending longer than the
    /// host's `block.expire_after_seconds`: a completion the kernel programs missed, or a
    /// stalled device. Not in `requests`, `latency` nor `in_flight`.
    pub expired: u64,
    /// Running total of `expired` (for Prometheus counters).
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative_expired: u64,
    /// Mean number of requests in flight over the window (queued or at the device).
    pub avg_in_flight: f64,
    /// Issue → completion over all operations.
    pub latency: Option<LatencySummary>,
    /// Per operation, in the order read, write, flush, discard, other; only those seen.
    pub ops: Vec<BlockOpStats>,
}

/// One operation on one device, for one VM, over the window.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlockOpStats {
    /// `read`, `write`, `flush`, `discard` or `other`.
    #[serde(deserialize_with = "super::interned::text")]
    pub op: StaticText,
    pub requests: u64,
    pub iops: f64,
    pub bytes: u64,
    pub bytes_per_second: f64,
    /// Issue → completion: time at the device.
    pub latency: Option<LatencySummary>,
    /// The latency histogram: non-empty log2 buckets.
    pub latency_buckets: Vec<Bucket>,
    /// Submission → issue: time queued in the host's block layer.
    pub queue: Option<LatencySummary>,
    /// Requests the block layer completed without issuing them itself (flushes it served with
    /// a flush of its own): their whole life counts as latency, and they have no queue time.
    pub unissued: u64,
    /// Running totals (for Prometheus counters and histograms).
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative_bytes: u64,
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative_latency: Histogram,
    #[serde(default, skip_serializing_if = "super::recorded::not_recording")]
    #[schemars(skip)]
    pub cumulative_queue: Histogram,
}

/// A guest drive and where its I/O goes on the host.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DriveInfo {
    /// Device or drive id (libvirt's alias, e.g. `virtio-disk0`).
    pub id: Option<Untrusted>,
    /// `virtio`, `scsi`, `ide`, `nvme`, …
    pub interface: Untrusted,
    /// Image file or device node, as QEMU was given it.
    pub file: Option<Untrusted>,
    /// Effective `cache=` mode.
    #[serde(deserialize_with = "super::interned::text")]
    pub cache: StaticText,
    /// Effective `aio=` mode.
    pub aio: Untrusted,
    /// The host devices (kernel names) whose requests carry the drive's I/O.
    pub devices: Vec<String>,
    /// Why `devices` is empty: a network protocol, a file that cannot be resolved, …
    pub unmapped: Option<Untrusted>,
}
