//! The VM list's columns: what each shows, how it sorts, how wide it is and which go first when
//! the terminal is narrow. One catalogue, so the sort keys, the header and the cells cannot
//! disagree.

use std::cmp::Ordering;

use ratatui::text::Span;

use crate::{
    format,
    model::{ExitSource, Exits, Snapshot, Vm, advice::Target},
};

/// A column of the VM list, in the order they are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmColumn {
    Name,
    Pid,
    Vcpus,
    Exits,
    User,
    Iops,
    IoBytes,
    Tlb,
    Steal,
    OnCpu,
    Memory,
    Advice,
    History,
    TopReasons,
    Vmm,
    Uuid,
}

/// Every column, left to right.
pub const ALL: [VmColumn; 16] = [
    VmColumn::Name,
    VmColumn::Pid,
    VmColumn::Vcpus,
    VmColumn::Exits,
    VmColumn::User,
    VmColumn::Iops,
    VmColumn::IoBytes,
    VmColumn::Tlb,
    VmColumn::Steal,
    VmColumn::OnCpu,
    VmColumn::Memory,
    VmColumn::Advice,
    VmColumn::History,
    VmColumn::TopReasons,
    VmColumn::Vmm,
    VmColumn::Uuid,
];

/// The columns the list can be sorted by (`<`/`>` step through them), left to right: all but
/// the sparkline and the reasons, which have no single value.
#[must_use]
pub fn sortable() -> Vec<VmColumn> {
    ALL.into_iter()
        .filter(|c| !matches!(c, VmColumn::History | VmColumn::TopReasons))
        .collect()
}

/// What a column sorts by.
#[derive(Clone, Debug, PartialEq)]
pub enum SortValue {
    Text(String),
    Number(f64),
}

impl VmColumn {
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Self::Name => "VM",
            Self::Pid => "PID",
            Self::Vcpus => "vCPU",
            Self::Exits => "EXITS/s",
            Self::User => "USER/s",
            Self::Iops => "IOPS",
            Self::IoBytes => "IO B/s",
            Self::Tlb => "TLB/s",
            Self::Steal => "STEAL",
            Self::OnCpu => "CPU",
            Self::Memory => "MEM",
            Self::Advice => "ADVICE",
            Self::History => "HISTORY",
            Self::TopReasons => "TOP REASONS/s",
            Self::Vmm => "VMM",
            Self::Uuid => "UUID",
        }
    }

    /// The narrowest the column may be: every value it shows fits (rates are at most six
    /// characters: "999.5k", shares four: "100%", pids seven), and so does the title with its
    /// sort mark; the reasons take at least one busy reason with its rate.
    #[must_use]
    pub fn min_width(self) -> u16 {
        match self {
            Self::Name | Self::Exits | Self::IoBytes | Self::Vmm => 8,
            Self::Pid | Self::User | Self::Tlb | Self::Memory | Self::Advice => 7,
            Self::Iops | Self::Steal => 6,
            Self::Vcpus | Self::OnCpu => 5,
            Self::History => 13,
            Self::TopReasons => 20,
            Self::Uuid => 36,
        }
    }

    /// Which columns stay on a narrow terminal: lower first. The name, the exit rate and the
    /// steal say whether a VM is in trouble; the advice says what to do about it.
    #[must_use]
    pub fn priority(self) -> u8 {
        match self {
            Self::Name => 0,
            Self::Exits => 1,
            Self::Steal => 2,
            Self::Advice => 3,
            Self::User => 4,
            Self::Iops => 5,
            Self::TopReasons => 6,
            Self::Pid => 7,
            Self::Vcpus => 8,
            Self::History => 9,
            Self::Tlb => 10,
            Self::OnCpu => 11,
            Self::IoBytes => 12,
            Self::Memory => 13,
            Self::Vmm => 14,
            Self::Uuid => 15,
        }
    }

    /// Numbers are right-aligned and sort biggest first; text sorts A to Z.
    #[must_use]
    pub fn numeric(self) -> bool {
        !matches!(
            self,
            Self::Name | Self::Vmm | Self::Uuid | Self::TopReasons | Self::History
        )
    }

    /// The value the list is sorted by, for `vm`.
    #[must_use]
    pub fn sort_value(self, vm: &Vm, snapshot: &Snapshot) -> SortValue {
        let number = SortValue::Number;
        match self {
            Self::Name | Self::History | Self::TopReasons => SortValue::Text(vm.name.to_string()),
            Self::Vmm => SortValue::Text(vm.vmm.to_string()),
            Self::Uuid => SortValue::Text(vm.uuid.clone().unwrap_or_default()),
            Self::Pid => number(f64::from(vm.pid)),
            #[expect(clippy::cast_precision_loss, reason = "a handful of vCPUs")]
            Self::Vcpus => number(vcpu_count(vm) as f64),
            Self::Exits => number(vm.families.exits.headline_rate()),
            Self::User => number(vm.families.exits.rate_of(ExitSource::Userspace)),
            Self::Iops => number(iops(vm)),
            Self::IoBytes => number(io_bytes(vm)),
            Self::Tlb => number(tlb(vm)),
            Self::Steal => number(vm.families.sched.vcpus.steal.unwrap_or(-1.0)),
            Self::OnCpu => number(vm.families.sched.vcpus.on_cpu.unwrap_or(-1.0)),
            #[expect(clippy::cast_precision_loss, reason = "a sort key")]
            Self::Memory => number(memory(vm).map_or(-1.0, |b| b as f64)),
            #[expect(clippy::cast_precision_loss, reason = "a sort key")]
            Self::Advice => number(advice_ids(snapshot, vm.pid).len() as f64),
        }
    }

    /// The cell's full text.
    #[must_use]
    pub fn text(self, vm: &Vm, snapshot: &Snapshot) -> String {
        match self {
            Self::Name => vm.name.to_string(),
            Self::Vmm => vm.vmm.to_string(),
            Self::Uuid => vm.uuid.as_deref().map_or_else(
                || "-".to_owned(),
                |u| crate::model::untrusted::sanitize(u).into(),
            ),
            Self::Pid => vm.pid.to_string(),
            Self::Vcpus => vcpu_count(vm).to_string(),
            Self::Exits => format::rate(vm.families.exits.headline_rate()),
            Self::User => format::rate(vm.families.exits.rate_of(ExitSource::Userspace)),
            Self::Iops => format::rate(iops(vm)),
            Self::IoBytes => format::byte_rate(io_bytes(vm)),
            Self::Tlb => format::rate(tlb(vm)),
            Self::Steal => format::share(vm.families.sched.vcpus.steal),
            Self::OnCpu => format::share(vm.families.sched.vcpus.on_cpu),
            Self::Memory => memory(vm).map_or_else(|| "-".to_owned(), format::bytes),
            Self::Advice => advice_ids(snapshot, vm.pid).join(" "),
            // Drawn from the history, not from one window.
            Self::History => String::new(),
            Self::TopReasons => top_reasons(&vm.families.exits).join("  "),
        }
    }

    /// The cell's text within `width` columns, never cut inside a word or a number: lists (the
    /// reasons, the advice ids) keep the items that fit whole; a single word that does not fit
    /// (a long name) ends in "…" so the cut shows.
    #[must_use]
    pub fn fitted(self, vm: &Vm, snapshot: &Snapshot, width: u16) -> String {
        let width = usize::from(width);
        match self {
            Self::TopReasons => whole_items(&top_reasons(&vm.families.exits), "  ", width),
            Self::Advice => {
                let ids = advice_ids(snapshot, vm.pid);
                let items: Vec<String> = ids.iter().map(|&id| id.to_owned()).collect();
                let shown = whole_items(&items, " ", width);
                let kept = shown.split(' ').filter(|s| !s.is_empty()).count();
                if kept < items.len() {
                    // "C1 +2": more in force than fit; the advice view has them all.
                    let more = format!("+{}", items.len() - kept);
                    let room = width.saturating_sub(more.len() + 1);
                    let head = whole_items(&items, " ", room);
                    if head.is_empty() {
                        more
                    } else {
                        format!("{head} {more}")
                    }
                } else {
                    shown
                }
            }
            _ => ellipsized(&self.text(vm, snapshot), width),
        }
    }
}

/// Compares two sort values: numbers numerically (NaN last), text case-insensitively.
#[must_use]
pub fn compare(a: &SortValue, b: &SortValue) -> Ordering {
    match (a, b) {
        (SortValue::Number(a), SortValue::Number(b)) => a.total_cmp(b),
        (SortValue::Text(a), SortValue::Text(b)) => a.to_lowercase().cmp(&b.to_lowercase()),
        (SortValue::Number(_), SortValue::Text(_)) => Ordering::Less,
        (SortValue::Text(_), SortValue::Number(_)) => Ordering::Greater,
    }
}

/// Display width of `text` in terminal cells.
#[must_use]
pub fn width_of(text: &str) -> usize {
    Span::raw(text).width()
}

/// `text` if it fits in `width`, else as much as fits followed by "…".
#[must_use]
pub fn ellipsized(text: &str, width: usize) -> String {
    if width_of(text) <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    for c in text.chars() {
        let mut next = out.clone();
        next.push(c);
        if width_of(&next) + 1 > width {
            break;
        }
        out = next;
    }
    out.push('…');
    out
}

/// `text` if it fits in `width`, else the words that fit followed by "…" (a first word too
/// long for the width is itself ended by "…"): free text cut between words, never inside a
/// number.
#[must_use]
pub fn word_ellipsized(text: &str, width: usize) -> String {
    if width_of(text) <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    for word in text.split(' ') {
        let next = if out.is_empty() {
            word.to_owned()
        } else {
            format!("{out} {word}")
        };
        if width_of(&next) + 2 > width {
            break;
        }
        out = next;
    }
    if out.is_empty() {
        return ellipsized(text, width);
    }
    format!("{} …", out.trim_end())
}

/// As many of `items` as fit whole in `width`, joined by `separator`.
fn whole_items(items: &[String], separator: &str, width: usize) -> String {
    let mut out = String::new();
    for item in items {
        let candidate = if out.is_empty() {
            item.clone()
        } else {
            format!("{out}{separator}{item}")
        };
        if width_of(&candidate) > width {
            break;
        }
        out = candidate;
    }
    out
}

fn vcpu_count(vm: &Vm) -> usize {
    vm.vcpus.iter().filter(|v| v.index.is_some()).count()
}

fn iops(vm: &Vm) -> f64 {
    // Folded from +0.0: a float sum starts at -0.0, which would show as "-0".
    vm.families
        .block
        .devices
        .iter()
        .map(|d| d.iops)
        .fold(0.0, |a, b| a + b)
}

fn io_bytes(vm: &Vm) -> f64 {
    vm.families
        .block
        .devices
        .iter()
        .map(|d| d.bytes_per_second)
        .fold(0.0, |a, b| a + b)
}

fn tlb(vm: &Vm) -> f64 {
    vm.families.tlb.sent.rate + vm.families.tlb.received.rate
}

fn memory(vm: &Vm) -> Option<u64> {
    vm.families.numa.memory.as_ref().map(|m| m.resident_bytes)
}

/// The recommendations in force for a VM (or its vCPUs, drives, NICs).
pub fn advice_for(
    snapshot: &Snapshot,
    pid: u32,
) -> impl Iterator<Item = &crate::model::advice::Recommendation> {
    snapshot
        .recommendations
        .iter()
        .filter(move |r| match &r.target {
            Target::Host => false,
            Target::Vm { pid: p, .. }
            | Target::Vcpu { pid: p, .. }
            | Target::Drive { pid: p, .. }
            | Target::Nic { pid: p, .. } => *p == pid,
        })
}

/// The ids of the rules in force for a VM, sorted: "C1 E1".
#[must_use]
pub fn advice_ids(snapshot: &Snapshot, pid: u32) -> Vec<&'static str> {
    let mut ids: Vec<&str> = advice_for(snapshot, pid).map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// "IO 101k", "INTR 3", …: the busiest reasons over all sources.
fn top_reasons(exits: &Exits) -> Vec<String> {
    exits
        .seen()
        .take(3)
        .map(|r| format!("{} {}", r.reason, format::rate(r.rate)))
        .collect()
}

/// Which columns fit in `width` (the table's inner width), and how wide each is: columns are
/// taken in order of priority while they fit with a space between each (so a wide column that
/// does not fit leaves room for narrower ones after it); the name is as wide as its longest
/// value (8 to 32), and what is left goes to the reasons. Shown left to right as in [`ALL`].
#[must_use]
pub fn layout(width: u16, longest_name: usize) -> Vec<(VmColumn, u16)> {
    let wanted = |c: VmColumn| {
        if c == VmColumn::Name {
            #[expect(clippy::cast_possible_truncation, reason = "clamped to 32")]
            let name = longest_name.clamp(8, 32) as u16;
            name
        } else {
            c.min_width()
        }
    };
    let mut by_priority = ALL;
    by_priority.sort_by_key(|c| c.priority());
    let mut taken: Vec<VmColumn> = Vec::new();
    let mut used: u16 = 0;
    for column in by_priority {
        let gap = u16::from(!taken.is_empty());
        let needed = wanted(column) + gap;
        if used + needed <= width || taken.is_empty() {
            used += needed;
            taken.push(column);
        }
    }
    let spare = width.saturating_sub(used);
    ALL.into_iter()
        .filter(|c| taken.contains(c))
        .map(|c| {
            let w = wanted(c);
            if c == VmColumn::TopReasons {
                (c, w + spare)
            } else {
                (c, w)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_terminals_drop_the_least_important_columns_first() {
        let narrow: Vec<VmColumn> = layout(40, 7).into_iter().map(|(c, _)| c).collect();
        assert_eq!(
            narrow,
            [
                VmColumn::Name,
                VmColumn::Exits,
                VmColumn::User,
                VmColumn::Steal,
                VmColumn::Advice
            ],
            "by priority while they fit"
        );
        let wide = layout(198, 7);
        assert!(wide.len() > layout(78, 7).len());
        for width in [20_u16, 40, 78, 120, 198, 300] {
            let columns = layout(width, 7);
            let used: u16 = columns.iter().map(|(_, w)| w).sum::<u16>()
                + u16::try_from(columns.len() - 1).unwrap();
            assert!(used <= width.max(8), "{width}: {columns:?}");
            for (column, w) in columns {
                assert!(w >= column.min_width(), "{column:?} at {w}");
            }
        }
    }

    /// EXITS/s is `kvm_exit`'s figure where it counts, else the returns to the VMM (hosts whose
    /// `kvm_exit` is silent); the cell, the sort and the history agree on it.
    #[test]
    fn exits_are_hardware_exits_else_returns_to_the_vmm() {
        let mut snapshot = crate::testing::fixture::snapshot();
        let mut vm = snapshot.vms[0].clone();
        let exits = &vm.families.exits;
        let (hardware, user) = (
            exits.rate_of(ExitSource::KvmExit),
            exits.rate_of(ExitSource::Userspace),
        );
        assert!(exits.is_live(ExitSource::KvmExit) && hardware > 0.0 && user > 0.0);
        let shown = |vm: &Vm, snapshot: &Snapshot| {
            let SortValue::Number(sorted) = VmColumn::Exits.sort_value(vm, snapshot) else {
                panic!("EXITS/s sorts as a number");
            };
            (VmColumn::Exits.text(vm, snapshot), sorted)
        };
        assert_eq!(shown(&vm, &snapshot), (format::rate(hardware), hardware));
        // A PVM or nested host: kvm_exit attached but silent, the VMM still sees returns.
        vm.families
            .exits
            .by_reason
            .retain(|r| r.source != ExitSource::KvmExit);
        vm.families
            .exits
            .sources
            .insert("kvm_exit", crate::model::SourceState::Silent);
        assert_eq!(shown(&vm, &snapshot), (format::rate(user), user));
        snapshot.vms[0] = vm;
        let mut history = crate::tui::history::History::default();
        history.record(&snapshot);
        let point = history.of(&snapshot.vms[0]).unwrap().back().unwrap();
        #[expect(clippy::cast_possible_truncation, reason = "the history keeps f32")]
        let user = user as f32;
        assert!((point.exits - user).abs() < 1e-3, "{}", point.exits);
    }

    #[test]
    fn every_title_fits_with_its_sort_mark() {
        for column in ALL {
            assert!(
                width_of(column.title()) < usize::from(column.min_width()),
                "{column:?}"
            );
        }
    }

    #[test]
    fn cells_are_cut_between_words_never_inside_one() {
        let items = [
            "IO 101k".to_owned(),
            "HLT 20".to_owned(),
            "MSR 3".to_owned(),
        ];
        assert_eq!(whole_items(&items, "  ", 16), "IO 101k  HLT 20");
        assert_eq!(whole_items(&items, "  ", 6), "");
        assert_eq!(ellipsized("a-very-long-vm-name", 8), "a-very-…");
        assert_eq!(ellipsized("web-1", 8), "web-1");
        assert_eq!(ellipsized("日本日本日本", 5), "日本…");
        assert_eq!(
            word_ellipsized("IO_INSTRUCTION 100k", 18),
            "IO_INSTRUCTION …"
        );
        assert_eq!(
            word_ellipsized("IO_INSTRUCTION 100k", 19),
            "IO_INSTRUCTION 100k"
        );
        assert_eq!(word_ellipsized("IO_INSTRUCTION 100k", 8), "IO_INST…");
    }
}
