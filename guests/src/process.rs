//! Starting VMM processes that cannot outlive us, and reading their state from /proc.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;

/// The kernel's last allocated pid in this pid namespace: the next fork gets the first free pid
/// above it.
const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

struct SpawnRequest {
    command: Command,
    /// The pid to ask for, if any.
    pid: Option<u32>,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// All VMMs are forked from one thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process.
/// Forking from a test's own thread would kill the VMM as soon as that thread ends, even if the
/// `Guest` was handed to another thread; forking from this thread ties the VMM to the process.
fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("guests-spawner".into())
            .spawn(move || {
                for mut request in rx {
                    let child = match request.pid {
                        // Written here, right before the fork, so that only forks elsewhere
                        // on the host can come in between.
                        Some(pid) => ask_for_pid(pid).and_then(|()| request.command.spawn()),
                        None => request.command.spawn(),
                    };
                    let _ = request.reply.send(child);
                }
            })
            .expect("starting the guest spawner thread");
        tx
    })
}

/// Sets the last allocated pid to `pid - 1`, so that the next fork gets `pid` if it is free.
fn ask_for_pid(pid: u32) -> io::Result<()> {
    let last = pid
        .checked_sub(1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0 cannot be asked for"))?;
    fs::write(NS_LAST_PID, last.to_string()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {last} to {NS_LAST_PID} to ask for pid {pid} (needs root): {e}"),
        )
    })
}

/// How a VMM process is started besides its command line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpawnOptions {
    /// The pid to ask for (see [`crate::GuestSpec::pid`]).
    pub pid: Option<u32>,
    /// The nice value to set before exec.
    pub nice: Option<i32>,
}

/// Spawns `command` so that the kernel kills it with SIGKILL if this process dies for any
/// reason (panic with `panic=abort`, SIGKILL, `process::exit`), when no `Drop` can run.
///
/// It stays in our process group, so Ctrl-C at a terminal reaches it too.
pub(crate) fn spawn_tied_to_process(
    mut command: Command,
    options: SpawnOptions,
) -> io::Result<Child> {
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let parent = unsafe { libc::getpid() };
    let nice = options.nice;
    // SAFETY: the hook runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid, setpriority) and builds errors from raw errno values, which does not
    // allocate.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect; then nothing would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Threads inherit the nice value of the thread that starts them.
            if let Some(nice) = nice
                && libc::setpriority(libc::PRIO_PROCESS as _, 0, nice) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .send(SpawnRequest {
            command,
            pid: options.pid,
            reply: reply_tx,
        })
        .map_err(|_| io::Error::other("the guest spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the guest spawner thread is gone"))?
}

/// vCPU indices of the `anon_inode:kvm-vcpu:N` descriptors `pid` holds, sorted.
pub(crate) fn vcpu_fds(pid: u32) -> io::Result<Vec<u32>> {
    let mut vcpus = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor may be closed between listing and reading its link.
        let Ok(target) = fs::read_link(entry?.path()) else {
            continue;
        };
        if let Some(index) = parse_vcpu_fd(&target.to_string_lossy()) {
            vcpus.push(index);
        }
    }
    vcpus.sort_unstable();
    Ok(vcpus)
}

fn parse_vcpu_fd(link: &str) -> Option<u32> {
    link.strip_prefix("anon_inode:kvm-vcpu:")?.parse().ok()
}

/// `(tid, state)` of every thread of `pid` that is not stopped (state `T` or `t`).
pub(crate) fn running_threads(pid: u32) -> io::Result<Vec<(u32, char)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may exit between listing and reading.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The state follows the last ") ": the command name may itself contain ") ".
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .unwrap_or('?');
        if !matches!(state, 'T' | 't') {
            out.push((tid, state));
        }
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vcpu_fd_links() {
        assert_eq!(parse_vcpu_fd("anon_inode:kvm-vcpu:0"), Some(0));
        assert_eq!(parse_vcpu_fd("anon_inode:kvm-vcpu:17"), Some(17));
        assert_eq!(parse_vcpu_fd("anon_inode:kvm-vm"), None);
        assert_eq!(parse_vcpu_fd("/dev/kvm"), None);
    }

    #[test]
    fn own_threads_are_listed() {
        let me = std::process::id();
        assert!(vcpu_fds(me).unwrap().is_empty());
        // This thread is running while it asks.
        let running = running_threads(me).unwrap();
        assert!(running.iter().any(|(tid, _)| *tid == me), "{running:?}");
    }

    #[test]
    fn spawned_children_run() {
        let mut child =
            spawn_tied_to_process(Command::new("true"), SpawnOptions::default()).unwrap();
        assert!(child.wait().unwrap().success());
    }
}
