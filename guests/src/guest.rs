//! A running guest: started from a [`GuestSpec`], always killed and reaped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::argv::{self, Boot};
use crate::qmp::Qmp;
use crate::workdir::create_guest_dir;
use crate::{Error, GuestKind, GuestSpec, image, minivmm, process, tools};

/// How long a VMM may take from exec to having created all its vCPUs.
const START_TIMEOUT: Duration = Duration::from_mins(2);
/// How long the threads of a VMM may take to stop after SIGSTOP.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Extra time after the guest loop is seen running, so a measurement that starts right after
/// [`Guest::wait_for_vcpus`] does not catch the tail of firmware start-up.
const SETTLE: Duration = Duration::from_millis(200);
/// How much of the VMM's stderr goes into error messages.
const STDERR_TAIL: usize = 4096;

/// One vCPU of a running guest and the host thread that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VcpuThread {
    /// The vCPU index (`N` of `anon_inode:kvm-vcpu:N`, QEMU's `cpu-index`).
    pub index: u32,
    pub tid: u32,
}

/// A running VMM process. Dropping it kills (SIGKILL) and reaps the process; if the whole test
/// process dies instead, the kernel kills the VMM (`PR_SET_PDEATHSIG`).
#[derive(Debug)]
pub struct Guest {
    kind: GuestKind,
    pid: u32,
    vcpus: u32,
    argv: Vec<String>,
    /// `None` once stopped. Locked around every signal so a signal never reaches a recycled pid.
    child: Mutex<Option<Child>>,
    stderr_log: PathBuf,
    qmp_socket: Option<PathBuf>,
    disk_image: Option<PathBuf>,
    ready_file: Option<PathBuf>,
    /// Holds the files above; removed after the process is gone (fields drop after `Drop::drop`).
    _dir: TempDir,
}

impl Guest {
    /// Starts the VMM and returns once it has created its VM and all its vCPUs (so command-line
    /// and configuration errors surface here, with the VMM's stderr in the error). The guest
    /// code may not be running yet: use [`Guest::wait_for_vcpus`] before measuring.
    pub fn start(spec: &GuestSpec) -> Result<Self, Error> {
        spec.validate()?;
        let qemu = if spec.kind.uses_qemu() {
            Some(tools::require(tools::QEMU)?)
        } else {
            None
        };
        let work_dir = spec.resolved_work_dir();
        let dir = create_guest_dir(&work_dir)?;
        let mut qmp_socket = None;
        let mut disk_image = None;
        let mut ready_file = None;
        let argv = if let Some(qemu) = qemu {
            let image = image::assemble(spec.kind, &work_dir.join("kvmtop-guests-cache"))?
                .expect("every QEMU guest kind has an image");
            let socket = dir.path().join("qmp.sock");
            let argv = if spec.kind.boots_from_disk() {
                let disk = dir.path().join("disk.img");
                image::write_disk(&disk, &image)?;
                let argv = argv::qemu(spec, &qemu, &Boot::Disk(&disk), &socket);
                disk_image = Some(disk);
                argv
            } else {
                argv::qemu(spec, &qemu, &Boot::Bios(&image), &socket)
            };
            qmp_socket = Some(socket);
            argv
        } else {
            let ready = dir.path().join("ready");
            let argv = argv::minivmm(spec, &minivmm::minivmm_path()?, &ready);
            ready_file = Some(ready);
            argv
        };

        let stderr_log = dir.path().join("stderr.log");
        let stderr = File::create(&stderr_log)
            .map_err(|e| Error::io(format!("creating \"{}\"", stderr_log.display()), e))?;
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file rather than a pipe: nobody has to drain it, and it survives for error reports.
            .stderr(stderr);
        let options = process::SpawnOptions {
            pid: spec.pid,
            nice: spec.nice,
        };
        let child =
            process::spawn_tied_to_process(command, options).map_err(|source| Error::Spawn {
                program: argv[0].clone(),
                source,
            })?;
        let guest = Self {
            kind: spec.kind,
            pid: child.id(),
            vcpus: spec.vcpus,
            argv,
            child: Mutex::new(Some(child)),
            stderr_log,
            qmp_socket,
            disk_image,
            ready_file,
            _dir: dir,
        };
        // On error `guest` is dropped here, which kills the process.
        guest.poll_until(START_TIMEOUT, "during start-up", Self::vcpus_created)?;
        Ok(guest)
    }

    /// Waits until every vCPU exists and the guest's own code is running, then returns the vCPU
    /// threads sorted by index.
    ///
    /// "Running" is observed, not assumed: for QEMU, the machine is running per QMP and — for
    /// the boot-sector guests — the sector has written its magic and counted one loop; for the
    /// mini VMM, every vCPU has handled its first exit. Thread ids come from QMP
    /// `query-cpus-fast` for QEMU (so they are right with or without `debug-threads`), and
    /// from the `vcpuN` thread names for the mini VMM.
    pub fn wait_for_vcpus(&self, timeout: Duration) -> Result<Vec<VcpuThread>, Error> {
        let threads = self.poll_until(timeout, "while waiting for the guest to run", |g| {
            g.vcpus_created()?;
            match g.kind {
                GuestKind::MiniVmm => g.minivmm_running(),
                _ => g.qemu_running(),
            }
        })?;
        thread::sleep(SETTLE);
        Ok(threads)
    }

    /// Stops every thread of the VMM (SIGSTOP) and returns once each has stopped, so vCPUs
    /// run and exit no more. A thread handles the signal only when it next runs, and one
    /// waiting for a CPU on a busy host would otherwise go on for a while after this returns.
    pub fn freeze(&self) -> Result<(), Error> {
        self.signal(libc::SIGSTOP)?;
        self.poll_until(
            FREEZE_TIMEOUT,
            "while stopping",
            |guest| match process::running_threads(guest.pid) {
                Ok(running) if running.is_empty() => Ok(()),
                Ok(running) => Err(format!("threads (tid, state) not yet stopped: {running:?}")),
                Err(e) => Err(format!("reading /proc/{}/task: {e}", guest.pid)),
            },
        )
    }

    /// Resumes a frozen VMM (SIGCONT).
    pub fn thaw(&self) -> Result<(), Error> {
        self.signal(libc::SIGCONT)
    }

    /// Kills the VMM with SIGKILL and reaps it. Stopping twice is fine. Dropping the guest does
    /// the same, ignoring errors.
    pub fn stop(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.lock_child().take() else {
            return Ok(());
        };
        let context = format!("stopping pid {}", self.pid);
        // SIGKILL also ends a frozen (SIGSTOPped) process; kill() is a no-op if it already exited.
        child.kill().map_err(|e| Error::io(context.clone(), e))?;
        child.wait().map_err(|e| Error::io(context, e))?;
        Ok(())
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    #[must_use]
    pub fn kind(&self) -> GuestKind {
        self.kind
    }

    /// The argv the VMM was started with, program first.
    #[must_use]
    pub fn cmdline(&self) -> &[String] {
        &self.argv
    }

    /// QEMU's QMP socket (`None` for the mini VMM). QEMU serves one client at a time; the
    /// harness only connects briefly inside its own calls.
    #[must_use]
    pub fn qmp_socket(&self) -> Option<&Path> {
        self.qmp_socket.as_deref()
    }

    /// The raw disk image of a boot-sector guest.
    #[must_use]
    pub fn disk_image(&self) -> Option<&Path> {
        self.disk_image.as_deref()
    }

    /// What the VMM has written to stderr so far (its last few KiB).
    #[must_use]
    pub fn stderr(&self) -> String {
        stderr_tail(&self.stderr_log)
    }

    /// Iterations of the guest's own loop so far, counted by the guest: timer wakeups for
    /// [`GuestKind::Idle`], completed INT 13h reads for [`GuestKind::DiskReader`]. `None` for
    /// kinds that keep no counter. Wraps at 2^32.
    pub fn loop_count(&self) -> Result<Option<u32>, Error> {
        if !self.kind.boots_from_disk() {
            return Ok(None);
        }
        self.check_alive("while reading the loop counter")?;
        self.qmp()?.read_phys_u32(argv::LOOP_COUNT_ADDR).map(Some)
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn signal(&self, signal: libc::c_int) -> Result<(), Error> {
        let mut child = self.lock_child();
        let Some(child) = child.as_mut() else {
            return Err(Error::Stopped);
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Err(self.exited(status.to_string(), "before it could be signalled"));
        }
        let pid = libc::pid_t::try_from(self.pid).expect("pids fit in pid_t");
        // SAFETY: kill has no memory-safety preconditions; the lock and the try_wait above make
        // sure the pid still belongs to our unreaped child.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(Error::io(
                format!("sending signal {signal} to pid {pid}"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn program(&self) -> String {
        Path::new(&self.argv[0]).file_name().map_or_else(
            || self.argv[0].clone(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    fn exited(&self, status: String, during: &'static str) -> Error {
        Error::Exited {
            program: self.program(),
            pid: self.pid,
            status,
            during,
            stderr: self.stderr(),
        }
    }

    fn check_alive(&self, during: &'static str) -> Result<(), Error> {
        let mut child = self.lock_child();
        let Some(child) = child.as_mut() else {
            return Err(Error::Stopped);
        };
        match child.try_wait() {
            Ok(Some(status)) => Err(self.exited(status.to_string(), during)),
            Ok(None) => Ok(()),
            Err(e) => Err(Error::io(format!("checking pid {}", self.pid), e)),
        }
    }

    /// Calls `check` until it succeeds, the process exits, or `timeout` passes. `check` returns
    /// `Err(reason)` for "not yet", and the last reason ends up in the timeout error.
    fn poll_until<T>(
        &self,
        timeout: Duration,
        during: &'static str,
        mut check: impl FnMut(&Self) -> Result<T, String>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive(during)?;
            let waiting_for = match check(self) {
                Ok(value) => return Ok(value),
                Err(reason) => reason,
            };
            if Instant::now() >= deadline {
                // The process may have died while we were checking; that is the better error.
                self.check_alive(during)?;
                return Err(Error::Timeout {
                    program: self.program(),
                    pid: self.pid,
                    timeout,
                    waiting_for,
                    stderr: self.stderr(),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn vcpus_created(&self) -> Result<(), String> {
        let fds = process::vcpu_fds(self.pid)
            .map_err(|e| format!("reading /proc/{}/fd: {e}", self.pid))?;
        let expected: Vec<u32> = (0..self.vcpus).collect();
        if fds == expected {
            Ok(())
        } else {
            Err(format!(
                "vCPU descriptors (anon_inode:kvm-vcpu:N): have {fds:?}, want {expected:?}"
            ))
        }
    }

    fn qmp(&self) -> Result<Qmp, Error> {
        Qmp::connect(
            self.qmp_socket
                .as_deref()
                .expect("QEMU guests have a QMP socket"),
        )
    }

    fn qemu_running(&self) -> Result<Vec<VcpuThread>, String> {
        let mut qmp = self.qmp().map_err(|e| e.to_string())?;
        if !qmp.is_running().map_err(|e| e.to_string())? {
            return Err("QMP query-status does not report the machine as running yet".into());
        }
        let mut threads: Vec<VcpuThread> = qmp
            .vcpu_threads()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(index, tid)| VcpuThread { index, tid })
            .collect();
        threads.sort_unstable();
        if threads.len() != self.vcpus as usize {
            return Err(format!("QMP lists {} vCPUs: {threads:?}", threads.len()));
        }
        if self.kind.boots_from_disk() {
            let magic = qmp
                .read_phys_u32(argv::MAGIC_ADDR)
                .map_err(|e| e.to_string())?;
            if magic != argv::MAGIC {
                return Err("the boot sector has not started yet (SeaBIOS still booting?)".into());
            }
            let count = qmp
                .read_phys_u32(argv::LOOP_COUNT_ADDR)
                .map_err(|e| e.to_string())?;
            if count == 0 {
                return Err("the boot sector started but has not finished one loop yet".into());
            }
        }
        Ok(threads)
    }

    fn minivmm_running(&self) -> Result<Vec<VcpuThread>, String> {
        let ready = self
            .ready_file
            .as_deref()
            .expect("mini VMM guests have a ready file");
        let Ok(text) = std::fs::read_to_string(ready) else {
            return Err("minivmm has not seen every vCPU's first exit yet".into());
        };
        // `vcpu INDEX TID` per vCPU, from the threads themselves: their names may say nothing
        // (`--anonymous-vcpus`).
        let mut vcpus: Vec<VcpuThread> = text
            .lines()
            .filter_map(|line| {
                let mut words = line.strip_prefix("vcpu ")?.split(' ');
                let index = words.next()?.parse().ok()?;
                let tid = words.next()?.parse().ok()?;
                Some(VcpuThread { index, tid })
            })
            .collect();
        vcpus.sort_unstable();
        if vcpus.len() == self.vcpus as usize {
            Ok(vcpus)
        } else {
            Err(format!("vCPU threads in the ready file: {vcpus:?}"))
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn stderr_tail(path: &Path) -> String {
    let Ok(text) = fs::read(path) else {
        return String::new();
    };
    let start = text.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&text[start..])
        .trim_end()
        .to_owned()
}
