//! What kvmtop reads of procfs besides discovery's process scan ([`crate::discovery`]): a
//! process's name and memory placement, a thread's state, affinity and scheduler accounting,
//! the host's CPU times, uptime and identity, the vhost kernel threads of old kernels, and what
//! kvmtop needs to know of itself and of the running kernel to drop its privileges.
//!
//! Processes vanish at any moment, so every reader returns `None` (or an empty result) for a
//! file it cannot read, and reads bounded prefixes of files whose size it does not control.

pub mod memory;
pub mod numa_sched;

use std::{fs, path::Path};

use super::read::{cpu_list, read_line, read_prefix};
use crate::model::Untrusted;

/// `/proc/PID/comm`, or `None` when the process has gone.
#[must_use]
pub fn comm(proc_root: &Path, pid: u32) -> Option<Untrusted> {
    let bytes = fs::read(proc_root.join(pid.to_string()).join("comm")).ok()?;
    Some(Untrusted::from_bytes(
        bytes.strip_suffix(b"\n").unwrap_or(&bytes),
    ))
}

/// The process (thread group) task `id` belongs to: `Tgid` of `/proc/ID/status`; `None` when
/// the task has gone or the file is not understood. Only processes are listed in `/proc`, but
/// `/proc/ID` also answers for the id of any thread, with that thread's view (its own `stat`,
/// its process's file descriptors): a pid read from a listing may have become a thread of
/// another process by the time it is read.
#[must_use]
pub fn tgid(proc_root: &Path, id: u32) -> Option<u32> {
    let text = read_prefix(&proc_root.join(id.to_string()).join("status"), 64 * 1024)?;
    text.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` names a live process: not a process that has gone, nor a thread of another
/// process that was given its number since.
#[must_use]
pub fn is_process(proc_root: &Path, pid: u32) -> bool {
    tgid(proc_root, pid) == Some(pid)
}

/// Whether thread `tid` of process `pid` is runnable right now (running or waiting for a CPU),
/// from its `stat`; false when it cannot be read.
#[must_use]
pub fn thread_runnable(proc_root: &Path, pid: u32, tid: u32) -> bool {
    let stat = task_dir(proc_root, pid, tid).join("stat");
    // The state follows the parenthesised comm, which may itself contain ") ".
    fs::read_to_string(stat).is_ok_and(|text| {
        text.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('R'))
    })
}

/// Whether thread `tid` of process `pid` has exited: the process is there and the thread is
/// not. A process missing altogether says nothing here, and neither does a procfs of another
/// pid namespace, where the kernel's ids mostly name no process.
#[must_use]
pub fn thread_exited(proc_root: &Path, pid: u32, tid: u32) -> bool {
    let process = proc_root.join(pid.to_string());
    process.is_dir() && !process.join("task").join(tid.to_string()).exists()
}

/// A CPU or node list of a `status` file (`Cpus_allowed_list`, `Mems_allowed_list`): of the
/// thread when `tid` is given, else of the process.
#[must_use]
pub fn status_list(proc_root: &Path, pid: u32, tid: Option<u32>, key: &str) -> Option<Vec<u32>> {
    let dir = match tid {
        Some(tid) => task_dir(proc_root, pid, tid),
        None => proc_root.join(pid.to_string()),
    };
    let text = read_prefix(&dir.join("status"), 64 * 1024)?;
    let line = text.lines().find_map(|l| l.strip_prefix(key))?;
    cpu_list(line.trim_start_matches(':').trim())
}

/// Mount points of hugetlbfs in the process's own mount namespace.
#[must_use]
pub fn hugetlbfs_mounts(proc_root: &Path, pid: u32) -> Option<Vec<String>> {
    let text = read_prefix(&proc_root.join(format!("{pid}/mounts")), 1024 * 1024)?;
    Some(
        text.lines()
            .filter_map(|l| {
                let mut fields = l.split_whitespace();
                let (_, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
                (kind == "hugetlbfs").then(|| mount.replace("\\040", " "))
            })
            .collect(),
    )
}

/// The kernel's own per-thread scheduler accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadAccounting {
    /// Field 2 of `/proc/PID/task/TID/schedstat`: time spent waiting on a run queue, ns.
    pub run_delay_ns: Option<u64>,
    /// `se.nr_migrations` of `/proc/PID/task/TID/sched`.
    pub migrations: Option<u64>,
}

impl ThreadAccounting {
    #[must_use]
    pub fn read(proc_root: &Path, pid: u32, tid: u32) -> Self {
        let dir = task_dir(proc_root, pid, tid);
        let read = |name: &str| read_prefix(&dir.join(name), 16 * 1024);
        Self {
            run_delay_ns: read("schedstat").and_then(|t| t.split_whitespace().nth(1)?.parse().ok()),
            migrations: read("sched").and_then(|t| {
                t.lines()
                    .find(|l| l.trim_start().starts_with("se.nr_migrations"))?
                    .split(':')
                    .nth(1)?
                    .trim()
                    .parse()
                    .ok()
            }),
        }
    }
}

/// (busy, total) clock ticks of all CPUs from `/proc/stat`; idle and iowait are not busy.
#[must_use]
pub fn cpu_times(proc_root: &Path) -> Option<(u64, u64)> {
    let text = read_prefix(&proc_root.join("stat"), 4096)?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total.saturating_sub(idle), total))
}

/// Seconds since boot, from `/proc/uptime`.
#[must_use]
pub fn uptime(proc_root: &Path) -> Option<f64> {
    read_prefix(&proc_root.join("uptime"), 256)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seconds since a process started, from its start time in `/proc/PID/stat` (clock ticks since
/// boot) and the host's [`uptime`]; 0 for a start time after it (another clock, bad input).
#[must_use]
pub fn seconds_since_start(uptime: f64, start_time_ticks: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "clock ticks since boot")]
    let started = start_time_ticks as f64 / clock_ticks_per_second();
    (uptime - started).max(0.0)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc` start times.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    #[expect(clippy::cast_precision_loss, reason = "a small positive number")]
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The host name and kernel release (`/proc/sys/kernel/{hostname,osrelease}`); empty when
/// unreadable.
#[must_use]
pub fn host_identity(proc_root: &Path) -> (String, String) {
    let read = |name: &str| {
        read_prefix(&proc_root.join("sys/kernel").join(name), 256)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    (read("hostname"), read("osrelease"))
}

/// A setting of the running kernel, `/proc/sys/<name>` (e.g. `kernel/osrelease`), trimmed.
/// Always the live kernel's, whatever procfs root kvmtop was pointed at: what it decides
/// concerns the kernel kvmtop's own system calls go to.
#[must_use]
pub fn live_sysctl(name: &str) -> Option<String> {
    read_line(&Path::new("/proc/sys").join(name))
}

/// How many threads this process has (`/proc/self/task`).
#[must_use]
pub fn own_thread_count() -> Option<usize> {
    Some(fs::read_dir("/proc/self/task").ok()?.count())
}

pub(crate) fn task_dir(proc_root: &Path, pid: u32, tid: u32) -> std::path::PathBuf {
    proc_root
        .join(pid.to_string())
        .join("task")
        .join(tid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_hosts_cpu_times_uptime_and_this_thread() {
        let proc = Path::new("/proc");
        let (busy, total) = cpu_times(proc).expect("/proc/stat");
        assert!(busy <= total && total > 0);
        assert!(uptime(proc).unwrap() > 0.0);
        let me = std::process::id();
        let reading = ThreadAccounting::read(proc, me, me);
        assert!(reading.run_delay_ns.is_some(), "{reading:?}");
        assert!(reading.migrations.is_some(), "{reading:?}");
        assert!(status_list(proc, me, Some(me), "Cpus_allowed_list").is_some());
        assert!(comm(proc, me).is_some());
    }

    #[test]
    fn a_thread_has_exited_only_when_its_process_is_there_without_it() {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(proc.path().join("100/task/100")).unwrap();
        std::fs::create_dir_all(proc.path().join("100/task/101")).unwrap();
        assert!(!thread_exited(proc.path(), 100, 101));
        assert!(
            thread_exited(proc.path(), 100, 102),
            "a worker thread that ended"
        );
        assert!(
            !thread_exited(proc.path(), 200, 201),
            "the process is gone or unseen"
        );
    }

    #[test]
    fn a_thread_id_is_not_a_process() {
        let proc = Path::new("/proc");
        let me = std::process::id();
        assert_eq!(tgid(proc, me), Some(me));
        assert!(is_process(proc, me));
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            tx.send(u32::try_from(tid).unwrap()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        // `/proc/TID` is there, and names this process as the thread's.
        assert!(proc.join(tid.to_string()).exists());
        assert_eq!(tgid(proc, tid), Some(me));
        assert!(!is_process(proc, tid));
        drop(done_tx);
        thread.join().unwrap();
        assert!(!is_process(Path::new("/nonexistent"), me));
    }
}
