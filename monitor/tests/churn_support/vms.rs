//! The churn: slots that each run one mini VMM after another, for a few seconds each, and a
//! ledger of every VM's life (its pid, threads, and when it started, ran, was killed and
//! reaped) that the checks hold kvmtop's output against.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use guests::{Guest, GuestKind, GuestSpec, VcpuThread};

/// VMs running at once.
pub const SLOTS: usize = 8;
/// vCPUs of each VM.
pub const VCPUS: u32 = 2;
/// Every this many starts, a slot asks for the pid of its previous VM.
const REUSE_EVERY: u32 = 3;
/// How long each VM lives once its VMM has created it and its vCPUs, drawn uniformly. Counted
/// from there rather than from its vCPUs running guest code, which on a loaded host takes a
/// good part of a second more: the churn keeps its pace under stress.
const LIFETIME_MS: std::ops::RangeInclusive<u64> = 1_000..=4_000;
/// The VMs' nice value. At nice 0 the 16 vCPU threads, each spinning on port I/O, take their
/// share of this 2-CPU machine from kvmtop (and from the scrapes), which then falls seconds
/// behind: the test would measure starvation, not kvmtop. At 19 they still keep both CPUs busy.
pub const NICE: i32 = 19;

/// One VM's life, as far as it has got.
#[derive(Debug, Clone)]
pub struct Lifetime {
    /// The VM is `churn<n>`, so kvmtop names it `churn<n>-<pid>`.
    pub n: usize,
    /// Just before its VMM was forked.
    pub requested: Instant,
    /// The pid asked for (the slot's previous VM's).
    pub asked_pid: Option<u32>,
    pub pid: Option<u32>,
    /// When the VMM had created its VM and vCPUs.
    pub created: Option<Instant>,
    pub vcpus: Vec<VcpuThread>,
    /// Every thread of the process once its vCPUs ran.
    pub tids: Vec<u32>,
    /// When every vCPU was seen running guest code.
    pub running: Option<Instant>,
    /// Just before SIGKILL, and once the process was reaped.
    pub killed: Option<Instant>,
    pub reaped: Option<Instant>,
}

impl Lifetime {
    /// kvmtop's name for it, once its pid is known.
    #[must_use]
    pub fn name(&self) -> Option<String> {
        self.pid.map(|pid| format!("churn{}-{pid}", self.n))
    }

    /// Whether the pid asked for was the one given.
    #[must_use]
    pub fn reused(&self) -> bool {
        self.asked_pid.is_some() && self.asked_pid == self.pid
    }

    /// Its pid and thread ids.
    pub fn task_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.pid.into_iter().chain(self.tids.iter().copied())
    }
}

/// Every VM started so far, indexed by `n`.
#[derive(Debug, Default)]
pub struct Ledger {
    pub lifetimes: Vec<Lifetime>,
}

impl Ledger {
    fn begin(&mut self, asked_pid: Option<u32>) -> usize {
        let n = self.lifetimes.len();
        self.lifetimes.push(Lifetime {
            n,
            requested: Instant::now(),
            asked_pid,
            pid: None,
            created: None,
            vcpus: Vec::new(),
            tids: Vec::new(),
            running: None,
            killed: None,
            reaped: None,
        });
        n
    }

    /// VMs whose vCPUs ran.
    pub fn ran(&self) -> usize {
        self.lifetimes
            .iter()
            .filter(|l| l.running.is_some())
            .count()
    }

    /// Median and slowest time from fork to VM and vCPUs created, from there to every vCPU
    /// running guest code, and from SIGKILL to reaped.
    pub fn phase_times(&self) -> [(Duration, Duration); 3] {
        let stats = |mut times: Vec<Duration>| {
            times.sort_unstable();
            (
                times.get(times.len() / 2).copied().unwrap_or_default(),
                times.last().copied().unwrap_or_default(),
            )
        };
        let created = self
            .lifetimes
            .iter()
            .filter_map(|l| Some(l.created?.duration_since(l.requested)))
            .collect();
        let running = self
            .lifetimes
            .iter()
            .filter_map(|l| Some(l.running?.duration_since(l.created?)))
            .collect();
        let reaped = self
            .lifetimes
            .iter()
            .filter_map(|l| Some(l.reaped?.duration_since(l.killed?)))
            .collect();
        [stats(created), stats(running), stats(reaped)]
    }

    /// (pids asked for, pids given as asked).
    pub fn reuses(&self) -> (usize, usize) {
        let asked = self
            .lifetimes
            .iter()
            .filter(|l| l.asked_pid.is_some() && l.pid.is_some())
            .count();
        (asked, self.lifetimes.iter().filter(|l| l.reused()).count())
    }
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

pub fn lock(ledger: &SharedLedger) -> MutexGuard<'_, Ledger> {
    // A slot that panicked poisons the lock; its panic is reported when it is joined.
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running slots. Dropping it stops them (and so kills their VMs), also when a check
/// fails.
pub struct Churn {
    pub ledger: SharedLedger,
    stop: Arc<AtomicBool>,
    slots: Vec<JoinHandle<()>>,
}

impl Churn {
    #[must_use]
    pub fn start() -> Self {
        let ledger = SharedLedger::default();
        let stop = Arc::new(AtomicBool::new(false));
        let slots = (0..SLOTS)
            .map(|slot| {
                let (ledger, stop) = (Arc::clone(&ledger), Arc::clone(&stop));
                thread::Builder::new()
                    .name(format!("churn-slot-{slot}"))
                    .spawn(move || run_slot(&ledger, &stop))
                    .expect("starting a slot")
            })
            .collect();
        Self {
            ledger,
            stop,
            slots,
        }
    }

    /// Panics with a slot's panic, if one has ended before being told to stop.
    pub fn check_slots(&mut self) {
        if let Some(ended) = self.slots.iter().position(JoinHandle::is_finished) {
            self.stop.store(true, Ordering::Relaxed);
            match self.slots.swap_remove(ended).join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => panic!("a slot ended before it was told to stop"),
            }
        }
    }

    /// Stops the slots, each killing its VM, and returns when all are reaped.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for slot in self.slots.drain(..) {
            if let Err(panic) = slot.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for slot in self.slots.drain(..) {
            let _ = slot.join();
        }
    }
}

/// One VM after another until told to stop; every third start asks for the previous VM's pid.
fn run_slot(ledger: &SharedLedger, stop: &AtomicBool) {
    let mut previous_pid = None;
    for start in 1.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let asked = previous_pid.filter(|_| start % REUSE_EVERY == 0);
        let n = lock(ledger).begin(asked);
        let mut spec = GuestSpec::new(GuestKind::MiniVmm)
            .vcpus(VCPUS)
            .name(format!("churn{n}"))
            .nice(NICE);
        if let Some(pid) = asked {
            spec = spec.pid(pid);
        }
        let mut guest = Guest::start(&spec).unwrap_or_else(|e| panic!("starting churn{n}: {e}"));
        let pid = guest.pid();
        let until = Instant::now() + Duration::from_millis(fastrand::u64(LIFETIME_MS));
        {
            let mut ledger = lock(ledger);
            ledger.lifetimes[n].pid = Some(pid);
            ledger.lifetimes[n].created = Some(Instant::now());
        }
        let vcpus = guest
            .wait_for_vcpus(crate::support::START_LIMIT)
            .unwrap_or_else(|e| panic!("churn{n} (pid {pid}): {e}"));
        let tids = threads(pid);
        {
            let mut ledger = lock(ledger);
            let life = &mut ledger.lifetimes[n];
            life.running = Some(Instant::now());
            life.vcpus = vcpus;
            life.tids = tids;
        }
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
            );
        }
        // Marked killed under the lock first: the checks read the threads of VMs not killed,
        // with the lock held, so none reads those of a pid being handed to another process.
        // The kill itself is not under the lock: a VMM at nice 19 on a busy host can take a
        // second to exit, and the other slots and the scrapes would wait for it.
        lock(ledger).lifetimes[n].killed = Some(Instant::now());
        guest
            .stop()
            .unwrap_or_else(|e| panic!("stopping churn{n}: {e}"));
        lock(ledger).lifetimes[n].reaped = Some(Instant::now());
        previous_pid = Some(pid);
    }
}

/// The thread ids of `pid`.
fn threads(pid: u32) -> Vec<u32> {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}
