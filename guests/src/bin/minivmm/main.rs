//! A minimal VMM on `/dev/kvm`: a second kind of VMM besides QEMU, like the Firecracker, Cloud
//! Hypervisor or crosvm processes a real host runs.
//!
//! It creates one VM with N vCPUs, each on its own thread named `vcpuN` (deliberately not QEMU's
//! `CPU n/KVM`), all running a real-mode loop of `out 0x80, al`. Every iteration is a
//! `KVM_EXIT_IO` handled here, in userspace. It runs until it is killed.
//!
//! Usage: `minivmm [--vcpus N] [--memory-mib M] [--name NAME] [--ready-file PATH]
//! [--front-merged-reads DEVICE]`
//!
//! `--ready-file` is created once every vCPU has handled its first exit, so a harness knows the
//! guest code is really running. `--name` becomes the process name (its `comm`, cut to 15 bytes
//! by the kernel) before the VM is created, and stays in the command line, where tools look for a
//! VM's name (like QEMU's `-name` or Firecracker's `--id`). `--front-merged-reads` adds a thread
//! `iothread0` reading a block device in batches the block layer merges at the front (see
//! `disk.rs`).

mod disk;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

/// Guest-physical address of the code; any address below 1 MiB is reachable in real mode.
const CODE_ADDR: u64 = 0x1000;

/// `mov $0x55, %al; 1: out %al, $0x80; jmp 1b` — the same loop as `asm/portio.S`, kept as bytes
/// so this binary needs no assembler at run time.
const CODE: [u8; 6] = [0xb0, 0x55, 0xe6, 0x80, 0xeb, 0xfc];

/// Where KVM may put the real-mode TSS on hosts that need one (Intel without unrestricted guest);
/// QEMU uses the same address, just below the 4 GiB BIOS area.
const TSS_ADDR: usize = 0xfffb_d000;

struct Args {
    vcpus: u32,
    memory_mib: u32,
    name: Option<String>,
    ready_file: Option<PathBuf>,
    front_merged_reads: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        vcpus: 1,
        memory_mib: 1,
        name: None,
        ready_file: None,
        front_merged_reads: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--vcpus" => {
                let v = value()?;
                args.vcpus = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--vcpus: \"{v}\" is not a positive number"))?;
            }
            "--memory-mib" => {
                let v = value()?;
                args.memory_mib = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--memory-mib: \"{v}\" is not a positive number"))?;
            }
            "--name" => args.name = Some(value()?),
            "--ready-file" => args.ready_file = Some(PathBuf::from(value()?)),
            "--front-merged-reads" => args.front_merged_reads = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument \"{other}\"")),
        }
    }
    Ok(args)
}

/// Anonymous guest RAM; it lives as long as the process, so it is never unmapped.
fn map_guest_memory(vm: &VmFd, size: NonZeroUsize) -> Result<(), String> {
    // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
    let host = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size.get(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if host == libc::MAP_FAILED {
        return Err(format!(
            "mmap of {size} bytes of guest memory: {}",
            std::io::Error::last_os_error()
        ));
    }
    let code_offset = usize::try_from(CODE_ADDR).expect("code address fits in usize");
    // SAFETY: the mapping is `size` bytes (at least 1 MiB) and the code ends far below that.
    unsafe {
        std::ptr::copy_nonoverlapping(
            CODE.as_ptr(),
            host.cast::<u8>().add(code_offset),
            CODE.len(),
        );
    }
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: size.get() as u64,
        userspace_addr: host as u64,
    };
    // SAFETY: the region is a valid mapping of `memory_size` bytes that is never unmapped.
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))
}

/// Puts the vCPU in real mode at `CODE_ADDR` with flat segments at 0.
fn reset_to_code(vcpu: &VcpuFd) -> Result<(), String> {
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    regs.rip = CODE_ADDR;
    // Bit 1 of RFLAGS is reserved and must be set.
    regs.rflags = 0x2;
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))
}

/// Runs one vCPU forever; returns only on an error the guest cannot recover from.
fn run_vcpu(index: u32, mut vcpu: VcpuFd, first_exit: &mpsc::Sender<u32>) -> String {
    let mut announced = false;
    loop {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(..)) => {
                if !announced {
                    announced = true;
                    // The receiver only disappears when the process is exiting anyway.
                    let _ = first_exit.send(index);
                }
            }
            // Nothing is wired to any port: reads see a floating bus.
            Ok(VcpuExit::IoIn(_, data)) => data.fill(0xff),
            Ok(VcpuExit::Intr) => {}
            Ok(other) => return format!("vcpu{index}: unexpected exit {other:?}"),
            // A signal (SIGSTOP/SIGCONT from a harness freezing us) interrupts KVM_RUN.
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => return format!("vcpu{index}: KVM_RUN: {e}"),
        }
    }
}

/// Names the process (its main thread; the vCPU threads get names of their own).
fn set_process_name(name: &str) -> Result<(), String> {
    let name = std::ffi::CString::new(name)
        .map_err(|_| format!("--name: \"{name}\" contains a NUL byte"))?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (at most 16 bytes of it) that outlives
    // the call.
    if unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) } != 0 {
        return Err(format!(
            "naming the process: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    // Before the VM exists, so that whoever finds the VM finds it under its name.
    if let Some(name) = &args.name {
        set_process_name(name)?;
    }
    let kvm = Kvm::new().map_err(|e| format!("opening /dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    // Not every backend implements this ioctl, and those that do not also do not need it.
    let _ = vm.set_tss_address(TSS_ADDR);
    let memory = usize::try_from(u64::from(args.memory_mib) << 20)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or("guest memory size does not fit in this address space")?;
    map_guest_memory(&vm, memory)?;

    let (first_exit_tx, first_exit_rx) = mpsc::channel();
    let (failed_tx, failed_rx) = mpsc::channel::<String>();
    for index in 0..args.vcpus {
        let vcpu = vm
            .create_vcpu(u64::from(index))
            .map_err(|e| format!("KVM_CREATE_VCPU {index}: {e}"))?;
        reset_to_code(&vcpu)?;
        let first_exit = first_exit_tx.clone();
        let failed = failed_tx.clone();
        thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || {
                let _ = failed.send(run_vcpu(index, vcpu, &first_exit));
            })
            .map_err(|e| format!("starting the vcpu{index} thread: {e}"))?;
    }
    drop(first_exit_tx);
    if let Some(device) = args.front_merged_reads.clone() {
        let failed = failed_tx.clone();
        thread::Builder::new()
            .name("iothread0".to_owned())
            .spawn(move || {
                let _ = failed.send(disk::read_front_merged(&device));
            })
            .map_err(|e| format!("starting the iothread0 thread: {e}"))?;
    }
    drop(failed_tx);

    for _ in 0..args.vcpus {
        if first_exit_rx.recv().is_err() {
            break;
        }
    }
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"ready\n")
            .map_err(|e| format!("writing ready file \"{}\": {e}", path.display()))?;
    }
    // vCPU and I/O threads only ever return with an error; the VM and its fds stay alive until
    // then.
    match failed_rx.recv() {
        Ok(message) => Err(message),
        Err(_) => Err("all vCPU threads ended".to_owned()),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("minivmm: {message}");
            eprintln!(
                "usage: minivmm [--vcpus N] [--memory-mib M] [--name NAME] [--ready-file PATH] \
                 [--front-merged-reads DEVICE]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("minivmm: {message}");
            ExitCode::FAILURE
        }
    }
}
