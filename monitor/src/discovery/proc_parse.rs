//! Parsers for the contents of procfs files. They get bytes from a process that may be
//! exiting or hostile, so every one returns `None`/`Err` on anything unexpected.

use crate::model::Untrusted;

/// Task flags from `include/linux/sched.h` (field 9 of `stat`).
const PF_IO_WORKER: u32 = 0x0000_0010;
/// Kernel-created threads inside a user process (vhost workers, KVM's NX huge-page recovery
/// thread). They inherit the creating thread's registers, so their `syscall` file can show the
/// creator's `KVM_RUN` even though they never run a vCPU.
const PF_USER_WORKER: u32 = 0x0000_4000;
const PF_KTHREAD: u32 = 0x0020_0000;

/// The fields of `/proc/PID/stat` discovery needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: Untrusted,
    pub state: char,
    pub ppid: u32,
    pub flags: u32,
    /// Field 22: clock ticks since boot when the process started. With the pid it identifies a
    /// process for its whole life, even when the pid is later reused.
    pub start_time: u64,
}

impl ProcStat {
    /// Kernel threads hold no files, so they cannot be VMMs.
    #[must_use]
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// A kernel worker living inside a user process (vhost, KVM NX recovery, `io_uring`).
    #[must_use]
    pub fn is_kernel_worker(&self) -> bool {
        self.flags & (PF_USER_WORKER | PF_IO_WORKER | PF_KTHREAD) != 0
    }
}

/// Parses `/proc/PID/stat`. The comm field is wrapped in parentheses and may itself contain
/// spaces and `)`, so the fields after it are found from the *last* `)`.
pub fn parse_stat(bytes: &[u8]) -> Result<ProcStat, String> {
    let open = bytes
        .iter()
        .position(|&b| b == b'(')
        .ok_or("no '(' before comm")?;
    let close = bytes
        .iter()
        .rposition(|&b| b == b')')
        .ok_or("no ')' after comm")?;
    if close < open {
        return Err("')' before '('".into());
    }
    let pid = std::str::from_utf8(&bytes[..open])
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .ok_or("pid is not a number")?;
    let comm = Untrusted::from_bytes(&bytes[open + 1..close]);
    let rest =
        std::str::from_utf8(&bytes[close + 1..]).map_err(|_| "fields after comm are not UTF-8")?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // fields[0] is field 3 of proc_pid_stat(5).
    let field = |n: usize| {
        fields
            .get(n - 3)
            .copied()
            .ok_or(format!("field {n} is missing"))
    };
    let state = field(3)?.chars().next().ok_or("empty state")?;
    let parent = field(4)?
        .parse()
        .map_err(|_| "field 4 (ppid) is not a number")?;
    let flags = field(9)?
        .parse()
        .map_err(|_| "field 9 (flags) is not a number")?;
    let start_time = field(22)?
        .parse()
        .map_err(|_| "field 22 (starttime) is not a number")?;
    Ok(ProcStat {
        pid,
        comm,
        state,
        ppid: parent,
        flags,
        start_time,
    })
}

/// What `/proc/PID/task/TID/syscall` says a thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallState {
    /// The thread was on a CPU when read; the kernel cannot report its registers.
    Running,
    /// Blocked, but not inside a system call (e.g. a page fault).
    NotInSyscall,
    InSyscall {
        nr: i64,
        args: [u64; 6],
    },
}

/// Parses `running`, `-1 SP PC` or `NR ARG0..ARG5 SP PC` (arguments in hex).
#[must_use]
pub fn parse_syscall(bytes: &[u8]) -> Option<SyscallState> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if text == "running" {
        return Some(SyscallState::Running);
    }
    let mut words = text.split_ascii_whitespace();
    let nr: i64 = words.next()?.parse().ok()?;
    if nr < 0 {
        return Some(SyscallState::NotInSyscall);
    }
    let mut args = [0u64; 6];
    for arg in &mut args {
        let word = words.next()?;
        *arg = u64::from_str_radix(word.strip_prefix("0x")?, 16).ok()?;
    }
    Some(SyscallState::InSyscall { nr, args })
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KvmFd {
    Vm,
    Vcpu(u32),
}

pub(crate) fn parse_fd_target(target: &[u8]) -> Option<KvmFd> {
    if target == b"anon_inode:kvm-vm" {
        return Some(KvmFd::Vm);
    }
    let id = target.strip_prefix(b"anon_inode:kvm-vcpu:")?;
    std::str::from_utf8(id).ok()?.parse().ok().map(KvmFd::Vcpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_STAT: &[u8] = b"13422 (qemu-system-x86) S 1 13419 11408 0 -1 138412416 4652 0 0 0 0 141 0 0 20 0 5 0 49332 365096960 10099 18446744073709551615 94879651012608 94879656873045 140733339300864 0 0 0 268444224 4100 16963 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_of_a_real_qemu() {
        let stat = parse_stat(QEMU_STAT).unwrap();
        assert_eq!(stat.pid, 13422);
        assert_eq!(stat.comm, "qemu-system-x86");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.start_time, 49332);
        assert!(!stat.is_kernel_thread());
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let line = b"77 (evil) S 1 (x) ) R 1 2 3 4 5 4194560 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.comm, "evil) S 1 (x) ");
        assert_eq!(stat.state, 'R');
        assert_eq!(stat.start_time, 99);
    }

    #[test]
    fn stat_garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"garbage",
            b"12 (x",
            b"12 x) S",
            b") 12 (",
            b"12 (x) S 1",
            b"abc (x) S 1 2 3 4 5 6 0 0 0 0 0 0 0 0 0 0 0 0 1",
            b"12 (x) S 1 2 3 4 5 6 0 0 0 0 0 0 0 0 0 0 0 0 notanumber",
            b"12 (\xff\xfe) S 1 2 3 4 5 6 0 0 0 0 0 0 0 0 0 0 0 0 18446744073709551616",
        ] {
            assert!(parse_stat(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn syscall_lines_from_a_real_qemu() {
        let vcpu = b"16 0x9 0xae80 0x0 0x0 0x564ae44e8290 0xff 0x7f4a8eb7b530 0x7f4a900eed6b\n";
        assert_eq!(
            parse_syscall(vcpu),
            Some(SyscallState::InSyscall {
                nr: 16,
                args: [0x9, 0xae80, 0, 0, 0x564a_e44e_8290, 0xff],
            })
        );
        assert_eq!(parse_syscall(b"running\n"), Some(SyscallState::Running));
        assert_eq!(
            parse_syscall(b"-1 0x7ffc 0x7f00\n"),
            Some(SyscallState::NotInSyscall)
        );
        for bad in [
            &b""[..],
            b"16",
            b"16 9 0xae80",
            b"x 0x1",
            b"16 0x1 0x2 0x3",
            b"\xff",
        ] {
            assert_eq!(parse_syscall(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fd_targets() {
        assert_eq!(parse_fd_target(b"anon_inode:kvm-vm"), Some(KvmFd::Vm));
        assert_eq!(
            parse_fd_target(b"anon_inode:kvm-vcpu:12"),
            Some(KvmFd::Vcpu(12))
        );
        assert_eq!(parse_fd_target(b"anon_inode:kvm-vcpu:"), None);
        assert_eq!(parse_fd_target(b"anon_inode:kvm-vcpu:-1"), None);
        assert_eq!(parse_fd_target(b"/dev/kvm"), None);
        assert_eq!(parse_fd_target(b"anon_inode:kvm-vm2"), None);
    }
}
