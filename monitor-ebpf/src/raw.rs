//! Reading raw tracepoint arguments and the kernel structs they point to.
//!
//! A raw (or BTF) tracepoint program gets the tracepoint's C arguments as an array of u64, with
//! no record filled for it: pointers come as they are, and the fields the classic record would
//! hold are read from the structs at offsets the agent resolved from this kernel's BTF.

// The argument array is passed by value into force-inlined helpers, so that each program is one
// flat function for the verifier.
#![expect(clippy::inline_always)]

use aya_ebpf::helpers::bpf_probe_read_kernel;

/// A raw tracepoint's arguments.
#[derive(Clone, Copy)]
pub struct Args(*const u64);

impl Args {
    #[inline(always)]
    pub fn new(ctx: *mut core::ffi::c_void) -> Self {
        Self(ctx.cast_const().cast())
    }

    /// Argument `N` (a constant: the verifier checks it against the tracepoint's argument count
    /// when the program is attached).
    #[inline(always)]
    pub fn get<const N: usize>(self) -> u64 {
        // SAFETY: the context of a raw tracepoint program is its argument array; N is checked by
        // the kernel as above.
        unsafe { self.0.add(N).read() }
    }
}

/// Reads a `T` at `offset` bytes into the kernel struct at `base`; `None` for a null pointer or
/// when the read faults (`bpf_probe_read_kernel` fails cleanly instead).
#[inline(always)]
pub fn read_kernel<T: Copy>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: the helper validates the address; a bad one returns an error, never faults.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.ok()
}
