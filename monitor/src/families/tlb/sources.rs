//! The TLB family's hook table: its tracepoints, their programs, and the record layouts they need
//! on this kernel.

use monitor_common::tlb::{
    GLOBAL_KVM_PV_TLB_FLUSH_LAYOUT, GLOBAL_TLB_FLUSH_LAYOUT, PROG_KVM_PV_TLB_FLUSH,
    PROG_KVM_PV_TLB_FLUSH_RAW, PROG_TLB_FLUSH, PROG_TLB_FLUSH_BTF, PROG_TLB_FLUSH_RAW,
    PvTlbFlushLayout, TlbFlushLayout,
};

use crate::{
    bpf::hooks::{Attempt, Global, SourceSpec, every_kind},
    family::HostView,
    host::tracefs::{TraceFs, sized},
};

/// `tlb:tlb_flush`: every TLB flush on the host, with its reason and size.
pub const TLB_FLUSH: &str = "tlb_flush";
/// `kvm:kvm_pv_tlb_flush`: paravirtual flushes KVM performs for guests.
pub const PV_TLB_FLUSH: &str = "pv_tlb_flush";

/// The hook table.
#[must_use]
pub fn table(host: &HostView) -> Vec<SourceSpec> {
    // The raw arguments are plain values, `(int reason, unsigned long pages)` since tlb_flush
    // exists: nothing to read from the kernel's BTF, which checks them when it is there.
    let flush_args = match &host.btf {
        Ok(btf) => btf.expect_args("tlb_flush", 2).map(|()| Vec::new()),
        Err(_) => Ok(Vec::new()),
    };
    vec![
        SourceSpec::new(
            TLB_FLUSH,
            every_kind(
                &host.btf,
                "tlb_flush",
                (PROG_TLB_FLUSH_BTF, PROG_TLB_FLUSH_RAW),
                flush_args,
                Attempt::tracepoint(
                    "tlb",
                    "tlb_flush",
                    PROG_TLB_FLUSH,
                    flush_layout(&host.tracefs)
                        .map(|l| vec![Global::new(GLOBAL_TLB_FLUSH_LAYOUT, &l)]),
                ),
            ),
        ),
        // kvm is usually a module, whose tracepoints take raw programs only (BTF tracepoints in
        // modules need the module's BTF object at load, which aya cannot pass yet).
        SourceSpec::new(
            PV_TLB_FLUSH,
            vec![
                Attempt::raw("kvm_pv_tlb_flush", PROG_KVM_PV_TLB_FLUSH_RAW, Ok(Vec::new())),
                Attempt::tracepoint(
                    "kvm",
                    "kvm_pv_tlb_flush",
                    PROG_KVM_PV_TLB_FLUSH,
                    pv_flush_layout(&host.tracefs)
                        .map(|l| vec![Global::new(GLOBAL_KVM_PV_TLB_FLUSH_LAYOUT, &l)]),
                ),
            ],
        ),
    ]
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
        let tracefs = TraceFs::new(dir.path());
        assert_eq!(
            flush_layout(&tracefs),
            Ok(TlbFlushLayout {
                reason_offset: 16,
                pages_offset: 8
            })
        );
        let err = pv_flush_layout(&tracefs).unwrap_err();
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
                "families::tlb::sources::tests::this_kernel_matches_the_built_in_layouts",
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
