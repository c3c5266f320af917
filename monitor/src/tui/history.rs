//! The recent past of each VM, kept by the view so it can draw it: a sparkline per VM row and a
//! chart in each VM's views. Compact on purpose: one [`Point`] of a few figures per VM and
//! window, the last [`WINDOWS`] windows, keyed by (pid, start time) so a pid reused by another
//! VM starts afresh; a VM's history goes when it does.
//!
//! Memory: a `Point` is 36 bytes, so 600 windows of 100 VMs are 100 × 600 × 36 B ≈ 2.1 MB (plus
//! a ring's few words per VM).
//!
//! The flight recorder keeps whole windows, compressed, on disk; decoding them for a sparkline
//! on every frame would cost far more than these few figures kept as they pass.

use std::collections::{HashMap, VecDeque};

use super::columns::{SortValue, VmColumn};
use crate::model::{Snapshot, Vm};

/// Windows kept per VM: ten minutes at the default one-second interval.
pub const WINDOWS: usize = 600;

/// One VM's figures in one window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    /// All exits per second (`kvm_exit` and userspace).
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
}

/// Per VM, its last windows, oldest first.
#[derive(Debug, Default)]
pub struct History {
    vms: HashMap<(u32, u64), VecDeque<Point>>,
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
            ring.push_back(point(vm, snapshot));
        }
    }

    /// Forgets everything (a replay that jumped).
    pub fn clear(&mut self) {
        self.vms.clear();
    }

    /// `vm`'s windows, oldest first.
    #[must_use]
    pub fn of(&self, vm: &Vm) -> Option<&VecDeque<Point>> {
        self.vms.get(&(vm.pid, vm.start_time))
    }
}

fn point(vm: &Vm, snapshot: &Snapshot) -> Point {
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
    }
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
        let web = history.of(&snapshot.vms[0]).unwrap()[0];
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
    fn sparklines_scale_to_their_maximum() {
        assert_eq!(sparkline([0.0, 1.0, 2.0, 4.0].into_iter(), 3), "▃▅█");
        assert_eq!(sparkline([0.0, 0.0].into_iter(), 5), "▁▁");
        assert_eq!(sparkline([-1.0, 2.0].into_iter(), 5), " █");
    }
}
