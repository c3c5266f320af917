//! Adds to counters that several CPUs share.

/// `*counter += n` as one atomic instruction (`lock xadd`, `BPF_ATOMIC_ADD`), the result unused.
///
/// # Safety
/// `counter` must be valid, aligned and only changed atomically by others.
#[expect(
    clippy::inline_always,
    reason = "per-event logic stays one flat function"
)]
#[inline(always)]
pub unsafe fn atomic_add(counter: *mut u64, n: u64) {
    // SAFETY: the caller's guarantee. Relaxed: these are independent totals read by userspace.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            counter, n,
        );
    }
}
