//! Exit details (ports, MSRs, guest-physical regions, hypercalls, IPI targets), decoded from the
//! kernel's per-process counters and reduced to each VM's top values plus "other".

use std::{borrow::Cow, collections::HashMap};

use monitor_common::exits::details::{DETAIL_OTHER, DetailKey};

use super::sources::raw_kind;
use crate::model::DetailKind;

/// A detail kind from the kernel's number; unknown numbers are dropped at the boundary.
fn kind_from_raw(raw: u32) -> Option<DetailKind> {
    DetailKind::ALL
        .into_iter()
        .find(|k| raw_kind(*k) as u32 == raw)
}

/// One detail counter, decoded. `value` is `None` for the "other" counter of a VM whose distinct
/// values no longer fit the kernel map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DetailCounterKey {
    pub pid: u32,
    pub kind: DetailKind,
    pub sub: u32,
    pub value: Option<u64>,
}

impl DetailCounterKey {
    /// Raw map key → domain key; unknown kinds are dropped at the boundary.
    #[must_use]
    pub fn decode(raw: &DetailKey) -> Option<Self> {
        Some(Self {
            pid: raw.tgid,
            kind: kind_from_raw(raw.kind)?,
            sub: raw.sub,
            value: (raw.value != DETAIL_OTHER).then_some(raw.value),
        })
    }

    /// How users read the sub-kind: direction, access type, fault kind, delivery mode.
    #[must_use]
    pub fn sub_label(&self) -> Cow<'static, str> {
        let s = self.sub;
        if self.value.is_none() {
            return Cow::Borrowed("");
        }
        Cow::Borrowed(match (self.kind, s) {
            (DetailKind::Pio, 0) => "in",
            (DetailKind::Pio, _) => "out",
            (DetailKind::Mmio, 0) => "unsatisfied read",
            (DetailKind::Mmio, 1) => "read",
            (DetailKind::Mmio, 2) => "write",
            (DetailKind::Msr, 0) => "rdmsr",
            (DetailKind::Msr, _) => "wrmsr",
            (DetailKind::PageFault, _) => return Cow::Owned(fault_label(s)),
            (DetailKind::ApicIpi, 0) => "fixed",
            (DetailKind::ApicIpi, 1) => "lowest priority",
            (DetailKind::ApicIpi, 2) => "SMI",
            (DetailKind::ApicIpi, 4) => "NMI",
            (DetailKind::ApicIpi, 5) => "INIT",
            (DetailKind::ApicIpi, 6) => "SIPI",
            (DetailKind::HaltPoll, 0) => "shrank",
            (DetailKind::HaltPoll, _) => "grew",
            (DetailKind::Emulation, 0) => "emulated",
            (DetailKind::Emulation, _) => "failed",
            _ => return Cow::Owned(s.to_string()),
        })
    }

    /// The value as a number, for kinds that have one (not halt polls and emulation outcomes).
    #[must_use]
    pub fn number(&self) -> Option<u64> {
        match self.kind {
            DetailKind::HaltPoll | DetailKind::Emulation => None,
            _ => self.value,
        }
    }

    /// The value as users look it up: hex for ports, MSRs and addresses.
    #[must_use]
    pub fn value_label(&self) -> String {
        match (self.kind, self.value) {
            (_, None) => "other".to_owned(),
            (DetailKind::Msr, Some(v)) => match msr_name(v) {
                Some(name) => format!("{v:#x} {name}"),
                None => format!("{v:#x}"),
            },
            (DetailKind::Pio | DetailKind::Mmio | DetailKind::PageFault, Some(v)) => {
                format!("{v:#x}")
            }
            (DetailKind::HaltPoll | DetailKind::Emulation, Some(_)) => String::new(),
            (DetailKind::Hypercall | DetailKind::ApicIpi, Some(v)) => v.to_string(),
        }
    }
}

/// The page-fault error-code bits kept by the kernel program.
fn fault_label(bits: u32) -> String {
    let mut parts = vec![if bits & 1 != 0 {
        "present"
    } else {
        "not-present"
    }];
    if bits & 2 != 0 {
        parts.push("write");
    }
    if bits & 4 != 0 {
        parts.push("user");
    }
    if bits & 8 != 0 {
        parts.push("reserved");
    }
    if bits & 16 != 0 {
        parts.push("fetch");
    }
    parts.join(" ")
}

/// Names of the MSRs whose exits matter for diagnosis (timer and IPI storms, see rule E4).
fn msr_name(index: u64) -> Option<&'static str> {
    Some(match index {
        0x10 => "TSC",
        0x1b => "APIC_BASE",
        0x3b => "TSC_ADJUST",
        0x48 => "SPEC_CTRL",
        0x49 => "PRED_CMD",
        0xe7 => "MPERF",
        0xe8 => "APERF",
        0x6e0 => "TSC_DEADLINE",
        0x830 => "X2APIC_ICR",
        0x838 => "X2APIC_TMICT",
        0x80b => "X2APIC_EOI",
        0x4b56_4d00..=0x4b56_4d08 => "KVM_PV",
        0x4000_0000..=0x4000_00ff => "HYPERV",
        _ => return None,
    })
}

/// One VM's detail counts of one kind over a window: the largest values, and the rest summed.
#[derive(Clone, Debug, PartialEq)]
pub struct DetailGroup {
    pub kind: DetailKind,
    pub total: u64,
    /// (key, count), largest first, at most `top` of them.
    pub top: Vec<(DetailCounterKey, u64)>,
    /// Everything not in `top`, including the kernel's own overflow counter.
    pub other: u64,
}

/// Groups a VM's window counts by kind and keeps the `top` largest values of each.
#[must_use]
pub fn top_details<S: std::hash::BuildHasher>(
    counts: &HashMap<DetailCounterKey, u64, S>,
    top: usize,
) -> Vec<DetailGroup> {
    let mut groups = Vec::new();
    for kind in DetailKind::ALL {
        let mut entries: Vec<(DetailCounterKey, u64)> = counts
            .iter()
            .filter(|&(k, &n)| k.kind == kind && n > 0)
            .map(|(k, &n)| (*k, n))
            .collect();
        if entries.is_empty() {
            continue;
        }
        let total = entries.iter().map(|(_, n)| n).sum();
        // Largest first; ties in a stable order. The overflow counter never counts as a value.
        entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let (named, rest): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|(k, _)| k.value.is_some());
        let other = rest.iter().map(|(_, n)| n).sum::<u64>()
            + named.iter().skip(top).map(|(_, n)| n).sum::<u64>();
        groups.push(DetailGroup {
            kind,
            total,
            top: named.into_iter().take(top).collect(),
            other,
        });
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: DetailKind, sub: u32, value: Option<u64>) -> DetailCounterKey {
        DetailCounterKey {
            pid: 1,
            kind,
            sub,
            value,
        }
    }

    #[test]
    fn top_values_and_the_rest() {
        let counts: HashMap<_, _> = [
            (key(DetailKind::Pio, 1, Some(0x80)), 1_000),
            (key(DetailKind::Pio, 0, Some(0x71)), 10),
            (key(DetailKind::Pio, 1, Some(0x70)), 5),
            (key(DetailKind::Pio, 0, None), 7),
            (key(DetailKind::Msr, 1, Some(0x6e0)), 3),
        ]
        .into();
        let groups = top_details(&counts, 2);
        assert_eq!(groups.len(), 2);
        let pio = &groups[0];
        assert_eq!(pio.kind, DetailKind::Pio);
        assert_eq!(pio.total, 1_022);
        assert_eq!(pio.top[0], (key(DetailKind::Pio, 1, Some(0x80)), 1_000));
        assert_eq!(pio.top.len(), 2);
        assert_eq!(pio.other, 12);
        assert_eq!(pio.top[0].0.value_label(), "0x80");
        assert_eq!(pio.top[0].0.sub_label(), "out");
        assert_eq!(groups[1].top[0].0.value_label(), "0x6e0 TSC_DEADLINE");
    }

    #[test]
    fn labels() {
        assert_eq!(
            key(DetailKind::PageFault, 0b10011, Some(0)).sub_label(),
            "present write fetch"
        );
        assert_eq!(key(DetailKind::ApicIpi, 4, Some(3)).sub_label(), "NMI");
        assert_eq!(key(DetailKind::Pio, 0, None).value_label(), "other");
    }

    #[test]
    fn decodes_raw_keys() {
        let raw = DetailKey {
            tgid: 9,
            kind: monitor_common::exits::details::DetailKind::Mmio as u32,
            sub: 2,
            pad: 0,
            value: 0xfee0_0000,
        };
        let k = DetailCounterKey::decode(&raw).unwrap();
        assert_eq!(k.kind, DetailKind::Mmio);
        assert_eq!(k.value, Some(0xfee0_0000));
        assert!(DetailCounterKey::decode(&DetailKey { kind: 99, ..raw }).is_none());
        assert_eq!(
            DetailCounterKey::decode(&DetailKey {
                value: DETAIL_OTHER,
                ..raw
            })
            .unwrap()
            .value,
            None
        );
    }
}
