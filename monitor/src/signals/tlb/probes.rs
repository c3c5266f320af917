//! The kernel sources of TLB figures: their record layouts on this kernel, read from tracefs, and
//! attaching them one by one so a missing tracepoint costs only its own figures.

use std::collections::BTreeMap;

use monitor_common::tlb::{
    GLOBAL_PV_TLB_FLUSH_LAYOUT, GLOBAL_TLB_FLUSH_LAYOUT, PROG_PV_TLB_FLUSH, PROG_TLB_FLUSH,
    PvTlbFlushLayout, TlbFlushLayout,
};
use serde::Serialize;

use crate::{
    bpf::Kernel,
    host::tracefs::{Field, TraceFs},
    model::Attachment,
};

/// One kernel source of TLB figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlbProbe {
    /// `tlb:tlb_flush`: every TLB flush on the host, with its reason and size.
    Flush,
    /// `kvm:kvm_pv_tlb_flush`: paravirtual flushes KVM performs for guests.
    PvFlush,
}

impl TlbProbe {
    pub const ALL: [Self; 2] = [Self::Flush, Self::PvFlush];

    /// Short name, as in snapshots.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Flush => "tlb_flush",
            Self::PvFlush => "pv_tlb_flush",
        }
    }

    /// `system:event`.
    #[must_use]
    pub fn tracepoint(self) -> &'static str {
        match self {
            Self::Flush => "tlb:tlb_flush",
            Self::PvFlush => "kvm:kvm_pv_tlb_flush",
        }
    }

    /// The kernel program, as `bpftool prog show` names it.
    #[must_use]
    pub fn program(self) -> &'static str {
        match self {
            Self::Flush => PROG_TLB_FLUSH,
            Self::PvFlush => PROG_PV_TLB_FLUSH,
        }
    }
}

/// What the TLB programs need from this kernel, decided before loading.
pub struct TlbPlan {
    flush: Result<TlbFlushLayout, String>,
    pv_flush: Result<PvTlbFlushLayout, String>,
}

impl TlbPlan {
    #[must_use]
    pub fn read(tracefs: &TraceFs) -> Self {
        Self {
            flush: flush_layout(tracefs),
            pv_flush: pv_flush_layout(tracefs),
        }
    }

    /// Hands the record layouts to the programs.
    pub fn configure<'a>(&'a self, loader: &mut aya::EbpfLoader<'a>) {
        if let Ok(layout) = &self.flush {
            loader.override_global(GLOBAL_TLB_FLUSH_LAYOUT, layout, true);
        }
        if let Ok(layout) = &self.pv_flush {
            loader.override_global(GLOBAL_PV_TLB_FLUSH_LAYOUT, layout, true);
        }
    }

    /// Attaches every program whose layout is known, and says for each source whether it runs.
    pub(super) fn attach(&self, kernel: &mut Kernel) -> BTreeMap<TlbProbe, Attachment> {
        let ready = [
            (TlbProbe::Flush, self.flush.as_ref().map(drop)),
            (TlbProbe::PvFlush, self.pv_flush.as_ref().map(drop)),
        ];
        ready
            .into_iter()
            .map(|(probe, ready)| {
                let (system, event) = probe.tracepoint().split_once(':').expect("system:event");
                let attached = ready
                    .map_err(Clone::clone)
                    .and_then(|()| kernel.attach_tracepoint(probe.program(), system, event));
                let state = match attached {
                    Ok(()) => Attachment::Attached,
                    Err(why) => {
                        log::warn!("TLB source {}: unavailable: {why}", probe.name());
                        Attachment::Unavailable(why)
                    }
                };
                (probe, state)
            })
            .collect()
    }
}

/// `tlb:tlb_flush`: `reason` (int) and `pages` (unsigned long), both required.
fn flush_layout(tracefs: &TraceFs) -> Result<TlbFlushLayout, String> {
    let [reason, pages] = tracefs
        .fields("tlb", "tlb_flush", ["reason", "pages"])
        .map_err(|e| e.to_string())?;
    let reason = sized(reason, "tlb:tlb_flush", "reason", 4)?;
    let pages = sized(pages, "tlb:tlb_flush", "pages", 8)?;
    Ok(TlbFlushLayout {
        reason_offset: reason.offset,
        pages_offset: pages.offset,
    })
}

/// `kvm:kvm_pv_tlb_flush`: `need_flush_tlb` (bool).
fn pv_flush_layout(tracefs: &TraceFs) -> Result<PvTlbFlushLayout, String> {
    let [need_flush] = tracefs
        .fields("kvm", "kvm_pv_tlb_flush", ["need_flush_tlb"])
        .map_err(|e| e.to_string())?;
    let need_flush = sized(need_flush, "kvm:kvm_pv_tlb_flush", "need_flush_tlb", 1)?;
    Ok(PvTlbFlushLayout {
        need_flush_offset: need_flush.offset,
    })
}

/// A required field of the expected size, or why not.
pub(crate) fn sized(
    field: Option<Field>,
    event: &str,
    name: &str,
    size: u32,
) -> Result<Field, String> {
    let field = field.ok_or_else(|| format!("{event} has no {name} field on this kernel"))?;
    if field.size == size {
        Ok(field)
    } else {
        Err(format!(
            "{event} field {name} has size {}, expected {size}",
            field.size
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(system: &str, event: &str, format: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events").join(system).join(event);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("format"), format).unwrap();
        dir
    }

    #[test]
    fn reads_a_moved_layout_and_names_what_is_missing() {
        let dir = fixture(
            "tlb",
            "tlb_flush",
            "\tfield:unsigned long pages;\toffset:8;\tsize:8;\tsigned:0;\n\
             \tfield:int reason;\toffset:16;\tsize:4;\tsigned:1;\n",
        );
        let plan = TlbPlan::read(&TraceFs::new(dir.path()));
        assert_eq!(
            plan.flush,
            Ok(TlbFlushLayout {
                reason_offset: 16,
                pages_offset: 8
            })
        );
        let err = plan.pv_flush.unwrap_err();
        assert!(err.contains("kvm:kvm_pv_tlb_flush does not exist"), "{err}");
    }

    #[test]
    fn a_field_of_another_size_is_refused() {
        let dir = fixture(
            "tlb",
            "tlb_flush",
            "\tfield:int reason;\toffset:8;\tsize:4;\tsigned:1;\n\
             \tfield:unsigned int pages;\toffset:12;\tsize:4;\tsigned:0;\n",
        );
        let err = flush_layout(&TraceFs::new(dir.path())).unwrap_err();
        assert!(err.contains("pages has size 4, expected 8"), "{err}");
    }

    #[test]
    fn this_kernel_matches_the_built_in_layouts() {
        // The programs read at compile-time offsets only when these match; elsewhere they take
        // the slower path, correctly.
        let tracefs = TraceFs::default();
        if !tracefs.root().join("events/tlb/tlb_flush").exists() {
            crate::testing::skip(
                "signals::tlb::probes::tests::this_kernel_matches_the_built_in_layouts",
                "no tlb events in tracefs",
            );
            return;
        }
        assert_eq!(flush_layout(&tracefs), Ok(TlbFlushLayout::DEFAULT));
        if tracefs.root().join("events/kvm/kvm_pv_tlb_flush").exists() {
            assert_eq!(pv_flush_layout(&tracefs), Ok(PvTlbFlushLayout::DEFAULT));
        }
    }
}
