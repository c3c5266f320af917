//! Small real guests for real QEMU/KVM, and a harness that always stops them.
//!
//! Each [`GuestKind`] produces one host-side signal on purpose, so tests and benchmarks of the
//! monitor can check its numbers against the kernel's own counters:
//!
//! | kind | what runs | signal |
//! |---|---|---|
//! | [`GuestKind::PortIo`] | QEMU, `-bios` looping on `out 0x80, al` | ~10^5 `kvm_userspace_exit` (IO) /s |
//! | [`GuestKind::Idle`] | QEMU + `SeaBIOS`, boot sector looping on `sti; hlt` | ~18 `kvm_vcpu_wakeup` /s |
//! | [`GuestKind::DiskReader`] | QEMU + `SeaBIOS`, boot sector looping on INT 13h reads | thousands of block requests /s |
//! | [`GuestKind::MiniVmm`] | this crate's `minivmm` (not QEMU), N vCPU threads | IO exits from every vCPU |
//!
//! The guest code is assembled from `asm/` at run time with GNU `as`/`ld` and cached by content.
//!
//! ```no_run
//! use std::time::Duration;
//! use guests::{Guest, GuestKind, GuestSpec};
//!
//! if let Err(reason) = guests::preflight() {
//!     eprintln!("SKIP: {reason}");
//!     return;
//! }
//! let guest = Guest::start(&GuestSpec::new(GuestKind::PortIo).name("vm1")).unwrap();
//! let vcpus = guest.wait_for_vcpus(Duration::from_secs(30)).unwrap();
//! println!("QEMU pid {} runs vCPU 0 on thread {}", guest.pid(), vcpus[0].tid);
//! // Dropping `guest` kills and reaps QEMU.
//! ```

mod argv;
mod error;
mod guest;
mod image;
mod minivmm;
mod process;
mod qmp;
mod spec;
mod tools;
mod workdir;

pub use error::Error;
pub use guest::{Guest, VcpuThread};
pub use image::assemble;
pub use minivmm::{MINIVMM_ENV, minivmm_path};
pub use spec::{DiskAio, DiskCache, DiskInterface, DiskOptions, GuestKind, GuestSpec};

/// Checks that every guest kind can run here: `/dev/kvm` is usable and `qemu-system-x86_64`,
/// `as` and `ld` (with 32-bit x86 support) are installed. `Err` is a human-readable reason,
/// meant to be printed by tests that skip.
pub fn preflight() -> Result<(), String> {
    tools::preflight(&GuestKind::ALL)
}

/// Like [`preflight`], for one kind only (the mini VMM needs `/dev/kvm` but not QEMU).
pub fn preflight_kind(kind: GuestKind) -> Result<(), String> {
    tools::preflight(&[kind])
}
