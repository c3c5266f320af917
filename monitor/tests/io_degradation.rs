//! The TLB and block families degrade per source: on a kernel without `block_io_start` (before
//! 6.5) requests are attributed at insert/issue instead, and a missing `kvm_pv_tlb_flush` makes
//! only that source unavailable. The kernel here has both, so kvmtop is shown a tracefs without
//! them; the programs it does attach are the real ones, loaded and verified by this kernel.

mod support;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

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

/// A thread that maps, touches and unmaps a few pages in a loop: each unmap flushes the TLB of
/// the CPU it runs on, so `tlb:tlb_flush` fires however idle the host is.
struct LocalFlushes {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<u64>,
}

impl LocalFlushes {
    fn start() -> Self {
        const LEN: usize = 16 * 4096;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut unmaps = 0;
            while !stopping.load(Ordering::Relaxed) {
                // SAFETY: an anonymous private mapping of LEN bytes, written within its bounds
                // and unmapped; nothing else refers to it.
                unsafe {
                    let page = libc::mmap(
                        std::ptr::null_mut(),
                        LEN,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    assert_ne!(page, libc::MAP_FAILED, "mmap failed");
                    page.cast::<u8>().write_volatile(1);
                    libc::munmap(page, LEN);
                }
                unmaps += 1;
                // Enough flushes to be seen, few enough to leave the CPU to kvmtop.
                thread::sleep(std::time::Duration::from_micros(200));
            }
            unmaps
        });
        Self { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the flushing thread panicked")
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

    // An idle host may flush no TLB for a whole window, so this test makes its own flushes.
    let flushing = LocalFlushes::start();
    // Classic tracepoints only: their record formats are what the fake tracefs hides (raw
    // programs do not read tracefs).
    let (snapshot, kvmtop) = support::run_snapshot(
        0.5,
        &[
            "--tracefs".as_ref(),
            tracefs.path().as_os_str(),
            "--hook-kinds".as_ref(),
            "tracepoint".as_ref(),
        ],
    );
    let flushes = flushing.stop();
    assert!(flushes > 0, "the flushing thread never ran");

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
    // Every unmap of touched pages flushes this CPU's TLB (TLB_LOCAL_MM_SHOOTDOWN).
    assert_eq!(tlb["tlb_flush"], "live", "after {flushes} unmaps");
    assert!(
        kvmtop
            .stderr_lines
            .iter()
            .any(|l| l.contains("pv_tlb_flush") && l.contains("unavailable")),
        "the unavailable source should be reported on stderr too: {:?}",
        kvmtop.stderr_lines
    );
}
