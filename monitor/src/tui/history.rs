//! The recent past of each VM, kept by the view so it can draw it: a sparkline per VM row and a
//! chart in each VM's views. Compact on purpose: one [`Point`] of a few figures per VM and
//! window, the last [`WINDOWS`] windows, keyed by (pid, start time) so a pid reused by another
//! VM starts afresh; a VM's history goes when it does.
//!
//! Besides the list's figures, a point keeps the lines of the drill-down charts as [`Detail`]s:
//! the VM's busiest exit reasons with their p99, every vCPU's steal, the busiest host devices
//! with their p99 — labels as indices into one table of names per view.
//!
//! Memory: a `Point` is 56 bytes plus 8 per detail. A VM with 4 vCPUs, 4 busy exit reasons and
//! one device keeps about 16 details, so 600 windows of 100 VMs are 100 × 600 × 184 B ≈ 11 MB
//! (plus a ring's few words per VM); the caps below bound it for any VM.
//!
//! The flight recorder keeps whole windows, compressed, on disk; decoding them for a sparkline
//! on every frame would cost far more than these few figures kept as they pass.

use std::collections::{HashMap, VecDeque};

use super::columns::{SortValue, VmColumn};
use crate::model::{Snapshot, Vm};

/// Windows kept per VM: ten minutes at the default one-second interval.
pub const WINDOWS: usize = 600;

/// Exit reasons kept per window (the busiest), vCPUs (the most stolen from) and devices (the
/// busiest): the charts draw the first few of these over their whole span.
const REASONS: usize = 6;
const VCPUS: usize = 16;
const DEVICES: usize = 4;

/// One VM's figures in one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Point {
    /// Exits per second as the VM list shows them ([`crate::model::Exits::headline_rate`]).
    pub exits: f32,
    pub user: f32,
    pub iops: f32,
    pub io_bytes: f32,
    pub tlb: f32,
    /// Shares of the window, 0–1; negative when unknown.
    pub steal: f32,
    pub on_cpu: f32,
    pub memory: f32,
    /// Rules in force for the VM.
    pub advice: u8,
    /// The drill-down charts' lines.
    pub details: Box<[Detail]>,
}

/// What a [`Detail`] measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Measure {
    /// An exit reason's events per second.
    ReasonRate,
    /// An exit reason's p99 handling latency, ns.
    ReasonP99,
    /// A vCPU's run-queue wait, share of its wall time (0–1).
    VcpuSteal,
    /// A host device's requests per second from the VM.
    DeviceIops,
    /// A host device's p99 latency (issue → completion) for the VM's requests, ns.
    DeviceP99,
}

/// One line's value in one window: an exit reason's rate, a vCPU's steal, a device's p99, …
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detail {
    pub measure: Measure,
    /// Index of the reason, vCPU or device name in [`History::label`].
    pub label: u16,
    pub value: f32,
}

/// Names of the detail lines (exit reasons, vCPUs, devices), each stored once. Reasons and
/// devices come from the kernel or, in replay, from a recording: the table stops growing at
/// `u16::MAX` names, after which new names go unrecorded.
#[derive(Debug, Default)]
struct Labels {
    names: Vec<String>,
    ids: HashMap<String, u16>,
}

impl Labels {
    fn id(&mut self, name: &str) -> Option<u16> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        let id = u16::try_from(self.names.len()).ok()?;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        Some(id)
    }
}

/// Per VM, its last windows, oldest first.
#[derive(Debug, Default)]
pub struct History {
    vms: HashMap<(u32, u64), VecDeque<Point>>,
    labels: Labels,
}

impl History {
    /// Adds `snapshot`'s window for each of its VMs and forgets the VMs it no longer holds.
    pub fn record(&mut self, snapshot: &Snapshot) {
        self.vms.retain(|key, _| {
            snapshot
                .vms
                .iter()
                .any(|vm| (vm.pid, vm.start_time) == *key)
        });
        for vm in &snapshot.vms {
            let ring = self.vms.entry((vm.pid, vm.start_time)).or_default();
            if ring.len() == WINDOWS {
                ring.pop_front();
            }
            ring.push_back(point(vm, snapshot, &mut self.labels));
        }
    }

    /// The name of a detail line (exit reason, vCPU, device) as kept: shown sanitized.
    #[must_use]
    pub fn label(&self, id: u16) -> &str {
        self.labels
            .names
            .get(usize::from(id))
            .map_or("?", String::as_str)
    }

    /// Forgets everything (a replay that jumped); the names stay, they are few.
    pub fn clear(&mut self) {
        self.vms.clear();
    }

    /// `vm`'s windows, oldest first.
    #[must_use]
    pub fn of(&self, vm: &Vm) -> Option<&VecDeque<Point>> {
        self.vms.get(&(vm.pid, vm.start_time))
    }
}

fn point(vm: &Vm, snapshot: &Snapshot, labels: &mut Labels) -> Point {
    #[expect(clippy::cast_possible_truncation, reason = "figures for a chart")]
    let figure = |column: VmColumn| match column.sort_value(vm, snapshot) {
        SortValue::Number(n) => n as f32,
        SortValue::Text(_) => 0.0,
    };
    Point {
        exits: figure(VmColumn::Exits),
        user: figure(VmColumn::User),
        iops: figure(VmColumn::Iops),
        io_bytes: figure(VmColumn::IoBytes),
        tlb: figure(VmColumn::Tlb),
        steal: figure(VmColumn::Steal),
        on_cpu: figure(VmColumn::OnCpu),
        memory: figure(VmColumn::Memory),
        advice: u8::try_from(super::columns::advice_ids(snapshot, vm.pid).len()).unwrap_or(u8::MAX),
        details: details(vm, labels).into_boxed_slice(),
    }
}

/// The lines the drill-down charts draw, for one VM and window.
fn details(vm: &Vm, labels: &mut Labels) -> Vec<Detail> {
    #[expect(clippy::cast_possible_truncation, reason = "figures for a chart")]
    let mut push = |details: &mut Vec<Detail>, measure, name: &str, value: f64| {
        if let Some(label) = labels.id(name) {
            details.push(Detail {
                measure,
                label,
                value: value as f32,
            });
        }
    };
    let mut details = Vec::new();
    let mut reasons: Vec<_> = vm.families.exits.seen().collect();
    reasons.sort_by(|a, b| b.rate.total_cmp(&a.rate));
    for reason in reasons.into_iter().take(REASONS) {
        push(
            &mut details,
            Measure::ReasonRate,
            &reason.reason,
            reason.rate,
        );
        if let Some(latency) = &reason.latency {
            #[expect(clippy::cast_precision_loss, reason = "figures for a chart")]
            let p99 = latency.p99_ns as f64;
            push(&mut details, Measure::ReasonP99, &reason.reason, p99);
        }
    }
    let mut vcpus: Vec<(u32, f64)> = vm
        .vcpus
        .iter()
        .filter_map(|v| Some((v.index?, v.sched.as_ref()?.figures.steal?)))
        .collect();
    vcpus.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    for (index, steal) in vcpus.into_iter().take(VCPUS) {
        push(
            &mut details,
            Measure::VcpuSteal,
            &format!("vCPU {index}"),
            steal,
        );
    }
    let mut devices: Vec<_> = vm.families.block.devices.iter().collect();
    devices.sort_by(|a, b| b.iops.total_cmp(&a.iops));
    for device in devices.into_iter().take(DEVICES) {
        push(
            &mut details,
            Measure::DeviceIops,
            &device.device,
            device.iops,
        );
        if let Some(latency) = &device.latency {
            #[expect(clippy::cast_precision_loss, reason = "figures for a chart")]
            let p99 = latency.p99_ns as f64;
            push(&mut details, Measure::DeviceP99, &device.device, p99);
        }
    }
    details
}

impl Point {
    /// The figure a column of the VM list shows; the exit rate for columns without one.
    #[must_use]
    pub fn of(&self, column: VmColumn) -> f32 {
        match column {
            VmColumn::User => self.user,
            VmColumn::Iops => self.iops,
            VmColumn::IoBytes => self.io_bytes,
            VmColumn::Tlb => self.tlb,
            VmColumn::Steal => self.steal,
            VmColumn::OnCpu => self.on_cpu,
            VmColumn::Memory => self.memory,
            VmColumn::Advice => f32::from(self.advice),
            _ => self.exits,
        }
    }
}

/// The last `width` values as a line of block characters, scaled to their own maximum; unknown
/// (negative) values as spaces.
#[must_use]
pub fn sparkline(values: impl DoubleEndedIterator<Item = f32>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let mut last: Vec<f32> = values.rev().take(width).collect();
    last.reverse();
    let max = last.iter().copied().fold(0.0_f32, f32::max);
    last.iter()
        .map(|&v| {
            if v < 0.0 {
                ' '
            } else if max <= 0.0 {
                BARS[0]
            } else {
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "0..=7"
                )]
                let level = ((v / max) * 7.0).round() as usize;
                BARS[level.min(7)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn a_ring_per_vm_bounded_and_gone_with_its_vm() {
        let mut history = History::default();
        let mut snapshot = fixture::snapshot();
        for _ in 0..WINDOWS + 5 {
            history.record(&snapshot);
        }
        assert_eq!(history.of(&snapshot.vms[0]).unwrap().len(), WINDOWS);
        let web = history.of(&snapshot.vms[0]).unwrap()[0].clone();
        assert!(
            web.exits > 100_000.0 && (web.steal - 0.12).abs() < 0.005,
            "{web:?}"
        );
        assert_eq!(web.advice, 1);
        // The pid comes back as another VM: a history of its own.
        snapshot.vms[1].start_time += 1;
        history.record(&snapshot);
        assert_eq!(history.of(&snapshot.vms[1]).unwrap().len(), 1);
        assert_eq!(history.vms.len(), 2, "the old one is gone");
    }

    #[test]
    fn the_drill_down_lines_are_kept_per_window_and_capped() {
        let mut history = History::default();
        let mut snapshot = fixture::snapshot();
        let web = &mut snapshot.vms[0];
        // More reasons than kept: copies of the fixture's with their own names and rates.
        let template = web.families.exits.by_reason[0].clone();
        for k in 0..10_u32 {
            let mut reason = template.clone();
            reason.reason = format!("R{k}").into();
            reason.rate = f64::from(k);
            web.families.exits.by_reason.push(reason);
        }
        history.record(&snapshot);
        let point = &history.of(&snapshot.vms[0]).unwrap()[0];
        let names = |measure: Measure| -> Vec<String> {
            point
                .details
                .iter()
                .filter(|d| d.measure == measure)
                .map(|d| history.label(d.label).to_owned())
                .collect()
        };
        let reasons = names(Measure::ReasonRate);
        assert_eq!(reasons.len(), REASONS, "{reasons:?}");
        assert!(
            !reasons.contains(&"R0".to_owned()),
            "the quietest are left out"
        );
        assert_eq!(names(Measure::ReasonP99).len(), REASONS);
        assert_eq!(names(Measure::VcpuSteal), ["vCPU 0", "vCPU 1"]);
        assert_eq!(names(Measure::DeviceIops), ["nvme0n1"]);
        assert_eq!(names(Measure::DeviceP99), ["nvme0n1"]);
        let steal = point
            .details
            .iter()
            .find(|d| d.measure == Measure::VcpuSteal)
            .unwrap();
        assert!(steal.value > 0.0 && steal.value <= 1.0, "{steal:?}");
    }

    #[test]
    fn a_point_and_a_detail_are_the_sizes_the_memory_figures_assume() {
        assert_eq!(std::mem::size_of::<Point>(), 56);
        assert_eq!(std::mem::size_of::<Detail>(), 8);
    }

    #[test]
    fn sparklines_scale_to_their_maximum() {
        assert_eq!(sparkline([0.0, 1.0, 2.0, 4.0].into_iter(), 3), "▃▅█");
        assert_eq!(sparkline([0.0, 0.0].into_iter(), 5), "▁▁");
        assert_eq!(sparkline([-1.0, 2.0].into_iter(), 5), " █");
    }
}
