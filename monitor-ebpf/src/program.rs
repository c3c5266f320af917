//! Declaring classic tracepoint programs.
//!
//! aya's `#[tracepoint]` entry point always returns 0, and for a tracepoint a BPF program's 0
//! means "drop the event": while kvmtop runs, `perf stat`, `perf record` and `perf kvm stat` would
//! then see none of the events kvmtop's programs are attached to. The entry points declared here
//! return 1, so other perf users of the same tracepoint keep seeing every event; when there are
//! none, the kernel skips the perf work anyway.

/// `tracepoint_program!("system", "event", handler => program)` declares the program `program`
/// (the name the loader looks up) attached to `system:event`, running `handler` on each event.
#[macro_export]
macro_rules! tracepoint_program {
    ($system:literal, $event:literal, $handler:path => $program:ident) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = concat!("tracepoint/", $system, "/", $event))]
        pub fn $program(ctx: *mut ::core::ffi::c_void) -> u32 {
            $handler(::aya_ebpf::programs::TracePointContext::new(ctx));
            1
        }
    };
}
