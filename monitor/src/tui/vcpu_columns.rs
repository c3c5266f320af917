//! The vCPU table's columns (a VM's vCPU view): what each shows, how it sorts and which stay on a
//! narrow terminal. One catalogue, as [`super::columns`] is for the VM list, so the sort keys,
//! the header and the cells cannot disagree.

use std::cmp::Ordering;

use super::columns::{SortValue, compare};
use crate::{
    format,
    model::{ExitSource, Vcpu},
};

/// A column of the vCPU table, in the order they are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VcpuColumn {
    Index,
    Tid,
    Exits,
    User,
    Halts,
    InExit,
    InVmm,
    Halted,
    Steal,
    Migrations,
    Cpu,
    TopReason,
}

/// Every column, left to right.
pub const ALL: [VcpuColumn; 12] = [
    VcpuColumn::Index,
    VcpuColumn::Tid,
    VcpuColumn::Exits,
    VcpuColumn::User,
    VcpuColumn::Halts,
    VcpuColumn::InExit,
    VcpuColumn::InVmm,
    VcpuColumn::Halted,
    VcpuColumn::Steal,
    VcpuColumn::Migrations,
    VcpuColumn::Cpu,
    VcpuColumn::TopReason,
];

/// The order of the vCPU table: a column and which way. By vCPU index unless the operator
/// chose otherwise (`<`/`>`, `r` in the vCPU view); kept from VM to VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuSort {
    pub column: VcpuColumn,
    /// The other way round from the column's natural order.
    pub reversed: bool,
}

impl Default for VcpuSort {
    fn default() -> Self {
        Self {
            column: VcpuColumn::Index,
            reversed: false,
        }
    }
}

impl VcpuSort {
    /// `<`/`>`: the previous or next column, wrapping around.
    pub fn step(&mut self, step: isize) {
        let at = ALL.iter().position(|&c| c == self.column).unwrap_or(0);
        let next = at
            .checked_add_signed(step)
            .map_or(ALL.len() - 1, |n| n % ALL.len());
        self.column = ALL[next];
    }

    /// `vcpus` in this order; ties (and vCPUs without the value) by vCPU index.
    #[must_use]
    pub fn sorted<'a>(&self, vcpus: &'a [Vcpu]) -> Vec<&'a Vcpu> {
        let mut keyed: Vec<(SortValue, &Vcpu)> = vcpus
            .iter()
            .map(|v| (self.column.sort_value(v), v))
            .collect();
        keyed.sort_by(|(a, va), (b, vb)| {
            let natural = if self.column.ascending() {
                compare(a, b)
            } else {
                compare(b, a)
            };
            let by_column = if self.reversed {
                natural.reverse()
            } else {
                natural
            };
            by_column.then_with(|| by_index(va, vb))
        });
        keyed.into_iter().map(|(_, v)| v).collect()
    }
}

fn by_index(a: &Vcpu, b: &Vcpu) -> Ordering {
    // vCPUs of unknown index last.
    (a.index.is_none(), a.index).cmp(&(b.index.is_none(), b.index))
}

impl VcpuColumn {
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Self::Index => "vCPU",
            Self::Tid => "TID",
            Self::Exits => "EXITS/s",
            Self::User => "USER/s",
            Self::Halts => "HALT/s",
            Self::InExit => "IN EXIT",
            Self::InVmm => "IN VMM",
            Self::Halted => "HALTED",
            Self::Steal => "STEAL",
            Self::Migrations => "MIGR/s",
            Self::Cpu => "CPU(NODE)",
            Self::TopReason => "TOP REASON",
        }
    }

    /// Which columns stay on a narrow terminal, lower first: where the time went and the steal.
    #[must_use]
    pub fn priority(self) -> u8 {
        match self {
            Self::Index => 0,
            Self::Exits => 1,
            Self::Steal => 2,
            Self::InExit => 3,
            Self::InVmm => 4,
            Self::User => 5,
            Self::Halted => 6,
            Self::TopReason => 7,
            Self::Halts => 8,
            Self::Tid => 9,
            Self::Migrations => 10,
            Self::Cpu => 11,
        }
    }

    /// Ids and text sort smallest (A) first; figures biggest first, where trouble is.
    #[must_use]
    pub fn ascending(self) -> bool {
        matches!(self, Self::Index | Self::Tid | Self::Cpu | Self::TopReason)
    }

    /// The value the table is sorted by; an unknown figure or id sorts after every known one.
    #[must_use]
    pub fn sort_value(self, vcpu: &Vcpu) -> SortValue {
        let number = SortValue::Number;
        let known = |value: Option<f64>| number(value.unwrap_or(-1.0));
        let id = |value: Option<u32>| number(value.map_or(f64::MAX, f64::from));
        let sched = vcpu.sched.as_ref();
        match self {
            Self::Index => id(vcpu.index),
            Self::Tid => id(vcpu.tid),
            Self::Exits => number(vcpu.exits.rate_of(ExitSource::KvmExit)),
            Self::User => number(vcpu.exits.rate_of(ExitSource::Userspace)),
            Self::Halts => number(vcpu.exits.rate_of(ExitSource::Halt)),
            Self::InExit => known(vcpu.time.handling_exits),
            Self::InVmm => known(vcpu.time.in_vmm),
            Self::Halted => known(vcpu.time.halted),
            Self::Steal => known(sched.and_then(|s| s.figures.steal)),
            Self::Migrations => known(
                sched
                    .and_then(|s| s.figures.migrations.as_ref())
                    .map(|m| m.rate),
            ),
            Self::Cpu | Self::TopReason => SortValue::Text(self.text(vcpu)),
        }
    }

    /// The cell's text.
    #[must_use]
    pub fn text(self, vcpu: &Vcpu) -> String {
        let unknown = || "?".to_owned();
        let sched = vcpu.sched.as_ref();
        match self {
            Self::Index => vcpu.index.map_or_else(unknown, |i| i.to_string()),
            Self::Tid => vcpu.tid.map_or_else(unknown, |t| t.to_string()),
            Self::Exits => format::rate(vcpu.exits.rate_of(ExitSource::KvmExit)),
            Self::User => format::rate(vcpu.exits.rate_of(ExitSource::Userspace)),
            Self::Halts => format::rate(vcpu.exits.rate_of(ExitSource::Halt)),
            Self::InExit => format::share(vcpu.time.handling_exits),
            Self::InVmm => format::share(vcpu.time.in_vmm),
            Self::Halted => format::share(vcpu.time.halted),
            Self::Steal => format::share(sched.and_then(|s| s.figures.steal)),
            Self::Migrations => sched
                .and_then(|s| s.figures.migrations.as_ref())
                .map_or_else(|| "-".to_owned(), |m| format::rate(m.rate)),
            Self::Cpu => {
                let place = sched.map(|s| &s.placement);
                match (
                    place.and_then(|p| p.dominant_cpu.or(p.cpu)),
                    place.and_then(|p| p.dominant_node.or(p.node)),
                ) {
                    (Some(cpu), Some(node)) => format!("{cpu}({node})"),
                    (Some(cpu), None) => cpu.to_string(),
                    _ => "-".to_owned(),
                }
            }
            Self::TopReason => vcpu
                .exits
                .seen()
                .next()
                .map(|r| format!("{} {}", r.reason, format::rate(r.rate)))
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    fn indices(vcpus: &[&Vcpu]) -> Vec<Option<u32>> {
        vcpus.iter().map(|v| v.index).collect()
    }

    /// vCPUs whose steal is `steals[i]` (`None`: not measured), index `i`.
    fn vcpus(steals: &[Option<f64>]) -> Vec<Vcpu> {
        let template = fixture::snapshot().vms[0].vcpus[0].clone();
        steals
            .iter()
            .zip(0..)
            .map(|(&steal, index)| {
                let mut vcpu = template.clone();
                vcpu.index = Some(index);
                vcpu.tid = Some(1000 - index);
                if let Some(sched) = vcpu.sched.as_mut() {
                    sched.figures.steal = steal;
                }
                vcpu
            })
            .collect()
    }

    #[test]
    fn by_index_unless_told_and_figures_biggest_first() {
        let vcpus = vcpus(&[Some(0.1), None, Some(0.3), Some(0.1)]);
        let mut sort = VcpuSort::default();
        assert_eq!(
            indices(&sort.sorted(&vcpus)),
            [Some(0), Some(1), Some(2), Some(3)]
        );
        sort.column = VcpuColumn::Steal;
        assert_eq!(
            indices(&sort.sorted(&vcpus)),
            [Some(2), Some(0), Some(3), Some(1)],
            "biggest first, ties by index, unknown last"
        );
        sort.reversed = true;
        assert_eq!(
            indices(&sort.sorted(&vcpus)),
            [Some(1), Some(0), Some(3), Some(2)],
            "reversed: ties still by index"
        );
        sort = VcpuSort {
            column: VcpuColumn::Tid,
            reversed: false,
        };
        assert_eq!(
            indices(&sort.sorted(&vcpus)),
            [Some(3), Some(2), Some(1), Some(0)],
            "ids smallest first"
        );
    }

    #[test]
    fn a_vcpu_of_unknown_index_goes_last() {
        let mut vcpus = vcpus(&[Some(0.0), Some(0.0)]);
        vcpus[0].index = None;
        assert_eq!(
            indices(&VcpuSort::default().sorted(&vcpus)),
            [Some(1), None]
        );
    }

    #[test]
    fn stepping_wraps_around_every_column() {
        let mut sort = VcpuSort::default();
        sort.step(-1);
        assert_eq!(sort.column, VcpuColumn::TopReason);
        for _ in 0..ALL.len() {
            sort.step(1);
        }
        assert_eq!(sort.column, VcpuColumn::TopReason);
        sort.step(1);
        assert_eq!(sort.column, VcpuColumn::Index);
    }
}
