//! The scale bench's VMMs: mini VMMs with 2 vCPUs each, grown from one configuration to the
//! next, kept lightly busy so that 200 spinning vCPUs do not starve the host (and the agent
//! being measured) of CPU.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use guests::{Guest, GuestKind, GuestSpec, VcpuThread};
use serde::Serialize;

use crate::interrupt;

/// vCPUs of every VMM.
pub const VCPUS: u32 = 2;
/// The VMMs' nice value: their vCPU threads spin on port I/O and must yield to everything else.
const NICE: i32 = 19;
/// How long one VMM may take to run its guest code.
const RUN_TIMEOUT: Duration = Duration::from_mins(2);
/// The CPU cgroup holding the VMMs, under the cpu hierarchy's root.
const CGROUP: &str = "kvmtop-scale-bench";
/// What all the VMMs together may use: 10 % of one CPU (quota per 100 ms period). The cgroup
/// keeps the default weight: at the lowest, other busy work on the host would starve the VMMs so
/// far that their vCPUs take minutes to reach guest code (and to exit once killed).
const QUOTA_US: u32 = 10_000;
const PERIOD_US: u32 = 100_000;

/// One running VMM and its vCPU threads as `/proc/PID/task` names them (`vcpuN`).
pub struct Vmm {
    pub guest: Guest,
    pub vcpus: Vec<VcpuThread>,
}

/// How the VMMs' load is held down.
#[derive(Clone, Debug, Serialize)]
pub struct Load {
    /// A one-line description for the report.
    pub description: String,
    /// The cgroup the VMMs run in, when one could be made.
    pub cgroup: Option<PathBuf>,
}

/// The VMMs started so far; every one is killed when this is dropped (the cgroup last).
pub struct Fleet {
    pub vmms: Vec<Vmm>,
    cgroup: Option<Cgroup>,
    pub load: Load,
}

impl Fleet {
    /// No VMM yet; makes the CPU cgroup they will run in, or says why there is none.
    pub fn new() -> Self {
        let (cgroup, description) = match Cgroup::create() {
            Ok(cgroup) => {
                let description = format!(
                    "vCPUs spin on port I/O at nice {NICE} in CPU cgroup {} limited to {} % of one \
                     CPU for all VMMs together (lightly busy)",
                    cgroup.dir.display(),
                    QUOTA_US * 100 / PERIOD_US
                );
                (Some(cgroup), description)
            }
            Err(err) => (
                None,
                format!(
                    "vCPUs spin on port I/O at nice {NICE}, no CPU limit (no CPU cgroup: {err:#})"
                ),
            ),
        };
        Self {
            vmms: Vec::new(),
            load: Load {
                description,
                cgroup: cgroup.as_ref().map(|c| c.dir.clone()),
            },
            cgroup,
        }
    }

    /// Starts VMMs until there are `count`, then waits until every vCPU runs guest code.
    pub fn grow_to(&mut self, count: usize) -> Result<()> {
        let first_new = self.vmms.len();
        let mut started = Vec::new();
        for index in first_new..count {
            interrupt::bail_if_interrupted()?;
            let name = format!("scalebench-{index}");
            let spec = GuestSpec::new(GuestKind::MiniVmm)
                .name(&name)
                .vcpus(VCPUS)
                .nice(NICE);
            let guest = Guest::start(&spec).with_context(|| format!("starting VMM {name}"))?;
            if let Some(cgroup) = &self.cgroup {
                cgroup.adopt(guest.pid())?;
            }
            started.push(guest);
            let done = index + 1 - first_new;
            if done.is_multiple_of(10) || index + 1 == count {
                println!("  started {done} of {} VMMs", count - first_new);
            }
        }
        for guest in started {
            interrupt::bail_if_interrupted()?;
            let vcpus = guest
                .wait_for_vcpus(RUN_TIMEOUT)
                .with_context(|| format!("waiting for VMM pid {} to run", guest.pid()))?;
            self.vmms.push(Vmm { guest, vcpus });
        }
        println!(
            "  {} VMMs × {VCPUS} vCPUs running guest code",
            self.vmms.len()
        );
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // A killed process must still run to exit: the limit goes first.
        if let Some(cgroup) = &self.cgroup {
            cgroup.lift_limit();
        }
        // All killed at once, then reaped one by one as each guest is dropped: the kernel tears
        // the VMs down in parallel.
        for vmm in &self.vmms {
            if let Ok(pid) = libc::pid_t::try_from(vmm.guest.pid()) {
                // SAFETY: kill has no memory-safety preconditions; the pid is our child, not
                // reaped until its guest is dropped below.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        // Guests before the cgroup: a cgroup can only be removed once it holds no process.
        self.vmms.clear();
        drop(self.cgroup.take());
    }
}

/// A CPU cgroup (v1 `cpu` hierarchy or v2 with the cpu controller), removed when dropped.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    fn create() -> Result<Self> {
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        if v1.join("cpu.cfs_quota_us").is_file() {
            let dir = Self::make(&v1.join(CGROUP))?;
            dir.write("cpu.cfs_period_us", &PERIOD_US.to_string())?;
            dir.write("cpu.cfs_quota_us", &QUOTA_US.to_string())?;
            Ok(dir)
        } else if std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "cpu"))
        {
            let dir = Self::make(&v2.join(CGROUP))?;
            dir.write("cpu.max", &format!("{QUOTA_US} {PERIOD_US}"))?;
            Ok(dir)
        } else {
            Err(anyhow!(
                "neither /sys/fs/cgroup/cpu (v1) nor the cpu controller in /sys/fs/cgroup (v2)"
            ))
        }
    }

    fn make(dir: &Path) -> Result<Self> {
        // A leftover of an interrupted run that was killed outright: empty, so removable.
        let _ = std::fs::remove_dir(dir);
        std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        let path = self.dir.join(file);
        std::fs::write(&path, value)
            .with_context(|| format!("writing {value} to {}", path.display()))
    }

    /// Lets the processes in the cgroup use any CPU time.
    fn lift_limit(&self) {
        let _ = if self.dir.join("cpu.cfs_quota_us").is_file() {
            self.write("cpu.cfs_quota_us", "-1")
        } else {
            self.write("cpu.max", "max")
        };
    }

    /// Moves a process with all its threads into the cgroup.
    fn adopt(&self, pid: u32) -> Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The killed VMMs leave the cgroup once reaped; give the kernel a moment if needed.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("warning: could not remove cgroup {}", self.dir.display());
    }
}
