//! Discovery against procfs trees built in a temporary directory. The stat, syscall and fd
//! contents are those of a real QEMU 7.2 on Linux 6.18 (two vCPUs, with and without
//! debug-threads), including KVM's NX recovery worker thread that copies a vCPU's registers.

mod changes;
mod lifecycle;
mod vcpus;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::threads::IOCTL_NR;
use super::*;

const PF_USER_WORKER_THREAD: u32 = 0x0840_40c0;
const PF_VCPU_THREAD: u32 = 0x0840_00c0;
const PF_MAIN: u32 = 0x0840_0180;

struct FakeProc {
    dir: tempfile::TempDir,
}

struct FakeProcess {
    dir: PathBuf,
    pid: u32,
}

fn write(path: &Path, contents: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

fn stat_line(pid: u32, comm: &str, flags: u32, start_time: u64) -> String {
    format!(
        "{pid} ({comm}) S 1 {pid} {pid} 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 {start_time} 0 0 0\n"
    )
}

/// The start of `/proc/ID/status`.
fn status(comm: &str, tgid: u32, pid: u32) -> String {
    format!(
        "Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{tgid}\nNgid:\t0\nPid:\t{pid}\n"
    )
}

impl FakeProc {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn discovery(&self) -> Discovery {
        Discovery::new(ProcRoot::new(self.dir.path()))
    }

    /// A process with a stat file and an empty fd directory.
    fn process(&self, pid: u32, comm: &str, start_time: u64) -> FakeProcess {
        let dir = self.dir.path().join(pid.to_string());
        write(&dir.join("stat"), stat_line(pid, comm, PF_MAIN, start_time));
        write(&dir.join("status"), status(comm, pid, pid));
        fs::create_dir_all(dir.join("fd")).unwrap();
        fs::create_dir_all(dir.join("task")).unwrap();
        FakeProcess { dir, pid }
    }

    /// `/proc/TID` for thread `tid` of `process`, as procfs answers for any thread id though
    /// it lists only processes: the thread's own `stat` and `status`, the process's fds, threads
    /// and command line.
    fn thread_entry(&self, process: &FakeProcess, tid: u32, comm: &str, start_time: u64) {
        let dir = self.dir.path().join(tid.to_string());
        write(
            &dir.join("stat"),
            stat_line(tid, comm, PF_VCPU_THREAD, start_time),
        );
        write(&dir.join("status"), status(comm, process.pid, tid));
        for shared in ["fd", "task", "cmdline"] {
            symlink(process.dir.join(shared), dir.join(shared)).unwrap();
        }
    }

    fn remove(&self, pid: u32) {
        fs::remove_dir_all(self.dir.path().join(pid.to_string())).unwrap();
    }
}

impl FakeProcess {
    fn cmdline(&self, args: &[&str]) -> &Self {
        let mut bytes = args.join("\0").into_bytes();
        bytes.push(0);
        write(&self.dir.join("cmdline"), bytes);
        self
    }

    fn exe(&self, target: &str) -> &Self {
        symlink(target, self.dir.join("exe")).unwrap();
        self
    }

    fn fd(&self, fd: u32, target: &str) -> &Self {
        symlink(target, self.dir.join("fd").join(fd.to_string())).unwrap();
        self
    }

    fn thread(&self, tid: u32, comm: &str, flags: u32, syscall: &str) -> &Self {
        let dir = self.dir.join("task").join(tid.to_string());
        write(&dir.join("stat"), stat_line(tid, comm, flags, 0));
        write(&dir.join("comm"), format!("{comm}\n"));
        write(&dir.join("syscall"), format!("{syscall}\n"));
        self
    }

    fn syscall(&self, tid: u32, syscall: &str) -> &Self {
        let path = self.dir.join("task").join(tid.to_string()).join("syscall");
        write(&path, format!("{syscall}\n"));
        self
    }

    fn id(&self) -> VmmId {
        let stat = fs::read(self.dir.join("stat")).unwrap();
        VmmId {
            pid: self.pid,
            start_time: proc_parse::parse_stat(&stat).unwrap().start_time,
        }
    }
}

fn kvm_run(fd: u32) -> String {
    format!("{IOCTL_NR} 0x{fd:x} 0xae80 0x0 0x0 0x55e80c909290 0xff 0x7f24aa33a530 0x7f24ab8e5d6b")
}

const PPOLL: &str =
    "271 0x564ae6749400 0x4 0x7fff08b271c0 0x0 0x8 0x0 0x7fff08b271a0 0x7f4a900ed366";
const FUTEX: &str = "202 0x564ae4c0a7a8 0x0 0xffffffff 0x0 0x0 0x0 0x7f4a8f3fe668 0x7f4a900f2829";

/// The fds of a QEMU with two vCPUs, as `ls -l /proc/PID/fd` showed them.
fn qemu_fds(p: &FakeProcess) {
    p.fd(0, "/dev/null")
        .fd(3, "/dev/kvm")
        .fd(4, "anon_inode:[eventfd]")
        .fd(8, "anon_inode:kvm-vm")
        .fd(9, "anon_inode:kvm-vcpu:0")
        .fd(11, "anon_inode:kvm-vcpu:1")
        .fd(251, "pipe:[19741]");
}

fn vcpu_tids(vmm: &Vmm) -> Vec<(u32, Option<u32>, Option<TidSource>)> {
    vmm.vcpus
        .iter()
        .map(|v| (v.index, v.tid, v.tid_source))
        .collect()
}
