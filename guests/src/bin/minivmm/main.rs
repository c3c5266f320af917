//! A minimal VMM on `/dev/kvm`: a second kind of VMM besides QEMU, like the Firecracker, Cloud
//! Hypervisor or crosvm processes a real host runs.
//!
//! It creates one VM with N vCPUs, each on its own thread named `vcpuN` (deliberately not QEMU's
//! `CPU n/KVM`), all running a real-mode loop of `out 0x80, al`. Every iteration is a
//! `KVM_EXIT_IO` handled here, in userspace. It runs until it is killed.
//!
//! Usage: `minivmm [--vcpus N] [--memory-mib M] [--name NAME] [--ready-file PATH]
//! [--front-merged-reads DEVICE] [--anonymous-vcpus] [--sleep-after-exit MS]`
//!
//! `--ready-file` is created once every vCPU has handled its first exit, so a harness knows the
//! guest code is really running; it reads `ready` and then a line `vcpu INDEX TID` per vCPU, so
//! the harness knows the threads whatever their names. `--anonymous-vcpus` names every vCPU
//! thread `worker`, so no name tells a vCPU or its index; `--sleep-after-exit` makes each vCPU
//! thread sleep that long after every exit, outside `KVM_RUN`, as a VMM that handles halts itself
//! sleeps in its own code: together they leave a monitor only what the kernel sees of `KVM_RUN`
//! to match vCPUs with threads. `--name` becomes the process name (its `comm`, cut to 15 bytes
//! by the kernel) before the VM is created, and stays in the command line, where tools look for a
//! VM's name (like QEMU's `-name` or Firecracker's `--id`). `--front-merged-reads` adds a thread
//! `iothread0` reading a block device in batches the block layer merges at the front (see
//! `disk.rs`).

mod disk;

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

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
    anonymous_vcpus: bool,
    sleep_after_exit: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        vcpus: 1,
        memory_mib: 1,
        name: None,
        ready_file: None,
        front_merged_reads: None,
        anonymous_vcpus: false,
        sleep_after_exit: None,
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
            "--anonymous-vcpus" => args.anonymous_vcpus = true,
            "--sleep-after-exit" => {
                let v = value()?;
                let ms = v.parse::<u64>().ok().filter(|&ms| ms > 0).ok_or_else(|| {
                    format!("--sleep-after-exit: \"{v}\" is not a positive number of ms")
                })?;
                args.sleep_after_exit = Some(Duration::from_millis(ms));
            }
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

/// Runs one vCPU forever, sleeping `sleep` after each exit when given; returns only on an error
/// the guest cannot recover from. Its first exit is announced with the thread's id.
fn run_vcpu(
    index: u32,
    mut vcpu: VcpuFd,
    sleep: Option<Duration>,
    first_exit: &mpsc::Sender<(u32, i32)>,
) -> String {
    let mut announced = false;
    loop {
        let exit = vcpu.run();
        if let Some(sleep) = sleep {
            thread::sleep(sleep);
        }
        match exit {
            Ok(VcpuExit::IoOut(..)) => {
                if !announced {
                    announced = true;
                    // SAFETY: gettid has no preconditions.
                    let tid = unsafe { libc::gettid() };
                    // The receiver only disappears when the process is exiting anyway.
                    let _ = first_exit.send((index, tid));
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
        let sleep = args.sleep_after_exit;
        let name = if args.anonymous_vcpus {
            "worker".to_owned()
        } else {
            format!("vcpu{index}")
        };
        thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _ = failed.send(run_vcpu(index, vcpu, sleep, &first_exit));
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

    let mut ready = String::from("ready\n");
    for _ in 0..args.vcpus {
        let Ok((index, tid)) = first_exit_rx.recv() else {
            break;
        };
        let _ = writeln!(ready, "vcpu {index} {tid}");
    }
    if let Some(path) = &args.ready_file {
        // Written whole under another name and renamed, so a reader never sees part of it.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, ready)
            .and_then(|()| std::fs::rename(&partial, path))
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
                 [--front-merged-reads DEVICE] [--anonymous-vcpus] [--sleep-after-exit MS]"
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
