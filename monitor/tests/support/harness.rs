//! Driving a family's kernel logic through `BPF_PROG_TEST_RUN`: a session whose watched-VMM
//! bitmap holds one synthetic process, and a way to run a harness program with chosen arguments.

use std::{fs, path::Path};

use aya::programs::{RawTracePointRunOptions, TestRun as _};
use kvmtop::session::{Config, Session};

/// Pids near the top of the range the kernel can ever hand out (`PID_MAX_LIMIT`, 4 Mi), which
/// the watched bitmaps cover, and far above the usual `pid_max`: no real process collides with
/// them. Each test picks its own offset (the sched harness uses 4 100 000 – 4 190 100).
pub const SYNTHETIC_PID: u32 = 4_191_000;

/// Why the synthetic ids cannot stand for tasks that do not exist here: one of them is a live
/// task. An id at or above `kernel.pid_max` cannot be allocated while the test runs; one below
/// could, which no check can rule out.
pub fn synthetic_ids_in_use(ids: &[u32]) -> Option<String> {
    let pid_max = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    let pid_max_text = pid_max.map_or_else(|| "unknown".to_owned(), |max| max.to_string());
    ids.iter()
        .find(|id| Path::new("/proc").join(id.to_string()).exists())
        .map(|id| {
            format!(
                "synthetic task id {id} is a live task on this host (kernel.pid_max \
                 {pid_max_text}), so events for it would not be synthetic"
            )
        })
}

/// A session watching one synthetic VMM process.
pub struct VmmHarness {
    pub session: Session,
    pub pid: u32,
}

impl VmmHarness {
    /// A session watching `SYNTHETIC_PID + pid_offset`, or `None` (the skip recorded) when this
    /// test cannot run here.
    pub fn open(test: &str, pid_offset: u32) -> Option<Self> {
        if let Some(reason) = super::missing_prerequisite(false, &[]) {
            super::skip(test, &reason);
            return None;
        }
        let pid = SYNTHETIC_PID + pid_offset;
        if let Some(reason) = synthetic_ids_in_use(&[pid]) {
            super::skip(test, &reason);
            return None;
        }
        let mut session = Session::open(&Config::default()).expect("opening a session");
        let failed = session.families_mut().vmm_watch_mut().insert(pid);
        assert!(failed.is_empty(), "cannot watch {failed:?}");
        Some(Self { session, pid })
    }

    /// Runs the harness `program` once with `args`, on `cpu` when given.
    pub fn run(&mut self, program: &str, cpu: Option<u32>, args: &[u64]) {
        run(&mut self.session, program, cpu, args);
    }
}

/// Runs the harness `program` of `session`'s object once with `args`, on `cpu` when given.
pub fn run(session: &mut Session, program: &str, cpu: Option<u32>, args: &[u64]) {
    let harness = session
        .kernel_mut()
        .load_harness(program)
        .expect("loading harness");
    let mut options = RawTracePointRunOptions::new();
    options.args[..args.len()].copy_from_slice(args);
    options.cpu = cpu;
    harness.test_run(options).expect("BPF_PROG_TEST_RUN");
}
