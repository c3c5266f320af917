//! The TLB and block families degrade per source: on a kernel without `block_io_start` (before
//! 6.5) requests are attributed at insert/issue instead, and a missing `kvm_pv_tlb_flush` makes
//! only that source unavailable. The kernel here has both, so kvmtop is shown a tracefs without
//! them; the programs it does attach are the real ones, loaded and verified by this kernel.

mod support;

use std::path::Path;

const TRACEFS: &str = "/sys/kernel/tracing/events";

/// Copies the format files of `events` (`system/event`) into a fake tracefs under `root`.
fn copy_formats(root: &Path, events: &[&str]) {
    for event in events {
        let dir = root.join("events").join(event);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            Path::new(TRACEFS).join(event).join("format"),
            dir.join("format"),
        )
        .unwrap();
    }
}

#[test]
fn older_block_tracepoints_and_a_missing_pv_flush_degrade_per_source() {
    const TEST: &str = "older_block_tracepoints_and_a_missing_pv_flush_degrade_per_source";
    if let Some(reason) = support::missing_prerequisite(false, &[]) {
        return support::skip(TEST, &reason);
    }
    let events = [
        "tlb/tlb_flush",
        "block/block_rq_insert",
        "block/block_rq_issue",
        "block/block_rq_complete",
    ];
    if let Some(missing) = events
        .iter()
        .find(|e| !Path::new(TRACEFS).join(e).join("format").exists())
    {
        return support::skip(TEST, &format!("this kernel has no {missing} tracepoint"));
    }
    let tracefs = tempfile::tempdir().unwrap();
    copy_formats(tracefs.path(), &events);

    let (snapshot, kvmtop) =
        support::run_snapshot(0.5, &["--tracefs".as_ref(), tracefs.path().as_os_str()]);

    let block = &snapshot["block"];
    assert_eq!(
        block["attributed_at"],
        "block:block_rq_insert, block:block_rq_issue"
    );
    let sources = block["sources"].as_object().unwrap();
    for source in ["block_rq_insert", "block_rq_issue", "block_rq_complete"] {
        let state = sources[source].as_str().unwrap();
        assert!(matches!(state, "live" | "silent"), "{source}: {state}");
    }
    assert!(!sources.contains_key("block_io_start"), "{block:#}");

    let tlb = &snapshot["tlb"]["sources"];
    let pv = tlb["pv_tlb_flush"].as_str().unwrap();
    assert!(
        pv.starts_with("unavailable: ") && pv.contains("kvm:kvm_pv_tlb_flush"),
        "{pv}"
    );
    // tlb_flush fires on every context switch, so within half a second it is live.
    assert_eq!(tlb["tlb_flush"], "live");
    assert!(
        kvmtop
            .stderr_lines
            .iter()
            .any(|l| l.contains("pv_tlb_flush") && l.contains("unavailable")),
        "the unavailable source should be reported on stderr too: {:?}",
        kvmtop.stderr_lines
    );
}
