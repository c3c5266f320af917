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
pub struct Args {
    ctx: *const u64,
    /// In a BTF tracepoint program, where the verifier knows each pointer argument's type and a
    /// struct field is a plain load; a constant in each program, so the test folds away.
    typed: bool,
}

impl Args {
    /// The arguments of a raw tracepoint program.
    #[inline(always)]
    pub fn new(ctx: *mut core::ffi::c_void) -> Self {
        Self {
            ctx: ctx.cast_const().cast(),
            typed: false,
        }
    }

    /// The arguments of a BTF tracepoint program.
    #[inline(always)]
    pub fn typed(ctx: *mut core::ffi::c_void) -> Self {
        Self {
            ctx: ctx.cast_const().cast(),
            typed: true,
        }
    }

    /// Whether this is a BTF tracepoint program (see [`field_u32`](Self::field_u32)).
    #[inline(always)]
    pub fn is_typed(self) -> bool {
        self.typed
    }

    /// A u32 field at `offset` in the kernel struct the pointer argument `ptr` (from [`get`])
    /// points to. In a BTF program it is one load, which the verifier checks against the field
    /// the kernel's BTF has at that offset (the offset is a load-time constant) and which reads 0
    /// instead of faulting; in a raw program it is a `bpf_probe_read_kernel` call, several times
    /// the cost on the scheduler's hottest path.
    ///
    /// [`get`]: Self::get
    #[inline(always)]
    pub fn field_u32(self, ptr: u64, offset: u32) -> Option<u32> {
        if !self.typed {
            return read_kernel::<u32>(ptr, offset);
        }
        if ptr == 0 {
            return None;
        }
        // SAFETY: `ptr` is a typed pointer argument of a BTF tracepoint; the verifier rewrites
        // the load into one that cannot fault (see above).
        Some(unsafe { ((ptr + u64::from(offset)) as *const u32).read_volatile() })
    }

    /// Argument `N` (a constant: the verifier checks it against the tracepoint's argument count
    /// when the program is attached).
    #[inline(always)]
    pub fn get<const N: usize>(self) -> u64 {
        // SAFETY: the context of a raw tracepoint program is its argument array; N is checked by
        // the kernel as above.
        unsafe { self.ctx.add(N).read() }
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
    let read = unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) };
    if read.is_err() {
        crate::diagnostics::report(monitor_common::diagnostics::Condition::StructReadFailed);
    }
    read.ok()
}
