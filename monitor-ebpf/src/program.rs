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

/// `raw_programs!("event", handler => btf_program, raw_program)` declares two programs running
/// `handler` on the raw arguments of the tracepoint `event`: one as a BTF tracepoint (`tp_btf`,
/// typed by the kernel's BTF), one as a raw tracepoint (`raw_tp`, for kernels or modules where
/// the BTF one cannot attach). The agent attaches at most one of them. Both see the same
/// argument array, so one handler serves both; their return value means nothing to the kernel.
#[macro_export]
macro_rules! raw_programs {
    ($event:literal, $handler:path => $btf:ident, $raw:ident) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = concat!("tp_btf/", $event))]
        pub fn $btf(ctx: *mut ::core::ffi::c_void) -> i32 {
            $handler($crate::raw::Args::typed(ctx));
            0
        }

        $crate::raw_programs!($event, $handler => $raw);
    };
    ($event:literal, $handler:path => $raw:ident) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = concat!("raw_tp/", $event))]
        pub fn $raw(ctx: *mut ::core::ffi::c_void) -> i32 {
            $handler($crate::raw::Args::new(ctx));
            0
        }
    };
}
