//! Starting VMM processes that cannot outlive us, and reading their state from /proc.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

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
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("starting the guest spawner thread");
        tx
    })
}

/// Spawns `command` so that the kernel kills it with SIGKILL if this process dies for any
/// reason (panic with `panic=abort`, SIGKILL, `process::exit`), when no `Drop` can run.
///
/// It stays in our process group, so Ctrl-C at a terminal reaches it too.
pub(crate) fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the hook runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid) and builds errors from raw errno values, which does not allocate.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect; then nothing would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .send((command, reply_tx))
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

/// `(tid, comm)` of every thread of `pid`.
pub(crate) fn threads(pid: u32) -> io::Result<Vec<(u32, String)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may exit between listing and reading.
        if let Ok(comm) = fs::read_to_string(entry.path().join("comm")) {
            out.push((tid, comm.trim_end().to_owned()));
        }
    }
    out.sort_unstable();
    Ok(out)
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
        let threads = threads(me).unwrap();
        assert!(threads.iter().any(|(tid, _)| *tid == me), "{threads:?}");
        assert!(vcpu_fds(me).unwrap().is_empty());
        // This thread is running while it asks.
        let running = running_threads(me).unwrap();
        assert!(running.iter().any(|(tid, _)| *tid == me), "{running:?}");
    }

    #[test]
    fn spawned_children_run() {
        let mut child = spawn_tied_to_process(Command::new("true")).unwrap();
        assert!(child.wait().unwrap().success());
    }
}
