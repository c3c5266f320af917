//! Not part of xtask: the source of a small program that `cargo xtask bench` compiles with
//! `rustc` alone (the standard library only) for its TLB phase (see `workload.rs`).
//!
//! It holds a KVM VM file descriptor, so kvmtop's discovery takes it for a VMM as it takes QEMU,
//! and runs two threads: one spinning on one CPU with this process's memory map loaded, one on
//! another CPU mapping pages, touching them and unmapping them in a loop. Every unmap then has to
//! flush the spinning CPU's TLB by IPI: a `tlb:tlb_flush` with reason `remote_send_ipi` on the
//! unmapping CPU and one with `remote_shootdown` on the other.
//!
//! Usage: `churn SENDER_CPU RECEIVER_CPU`. Prints `churning <pid>` once both threads run, then
//! runs until it is killed.

use std::{ffi::c_void, fs::File, io::Write as _, os::fd::AsRawFd as _, sync::mpsc, thread};

/// `_IO(KVMIO, 0x01)`.
const KVM_CREATE_VM: u64 = 0xAE01;
/// Pages mapped, touched and unmapped per iteration.
const PAGES: usize = 16;
const PAGE: usize = 4096;
const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const MAP_PRIVATE: i32 = 2;
const MAP_ANONYMOUS: i32 = 0x20;
/// `cpu_set_t`: 1024 bits.
const CPU_SET_WORDS: usize = 16;

unsafe extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    fn mmap(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64)
    -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> i32;
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
}

fn pin_to(cpu: usize) {
    let mut set = [0u64; CPU_SET_WORDS];
    set[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: the mask is a valid cpu_set_t of the size given; pid 0 is the calling thread.
    let rc = unsafe { sched_setaffinity(0, size_of_val(&set), set.as_ptr()) };
    assert_eq!(
        rc,
        0,
        "pinning to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
}

fn main() {
    let cpus: Vec<usize> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse().expect("CPU numbers"))
        .collect();
    let [sender, receiver] = cpus[..] else {
        panic!("usage: churn SENDER_CPU RECEIVER_CPU");
    };
    let kvm = File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .expect("opening /dev/kvm");
    // SAFETY: KVM_CREATE_VM takes the machine type (0) and returns a new fd or -1.
    let vm = unsafe { ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0u64) };
    assert!(
        vm >= 0,
        "KVM_CREATE_VM: {}",
        std::io::Error::last_os_error()
    );
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        pin_to(receiver);
        tx.send(()).expect("reporting the receiver");
        loop {
            std::hint::spin_loop();
        }
    });
    rx.recv().expect("receiver started");
    pin_to(sender);
    println!("churning {}", std::process::id());
    std::io::stdout().flush().expect("flushing stdout");
    let len = PAGES * PAGE;
    loop {
        // SAFETY: an anonymous private mapping of `len` bytes, written within its bounds, then
        // unmapped; nothing else refers to it.
        unsafe {
            let p = mmap(
                std::ptr::null_mut(),
                len,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p as isize, -1, "mmap");
            for i in 0..PAGES {
                p.cast::<u8>().add(i * PAGE).write_volatile(1);
            }
            munmap(p, len);
        }
    }
}
