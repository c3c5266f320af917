//! The bpftrace side: for each of kvmtop's hot programs, a bpftrace program on the same
//! tracepoint doing the same work, all in one bpftrace process attached for the same window.

use std::{
    collections::BTreeMap,
    fs::File,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{Killed, POLL, progs};
use crate::{
    interrupt,
    util::{self, cmd},
};

pub struct Peer {
    pub category: &'static str,
    pub event: &'static str,
    /// kvmtop's program on this tracepoint.
    pub kvmtop: &'static str,
    /// Predicate and action, after the probe.
    pub body: &'static str,
    /// The peer whose map this one reads: bpftrace rejects a script reading a map nothing writes.
    pub needs: Option<&'static str>,
}

/// kvmtop counts per (process, thread, reason) and opens a per-thread interval on each exit, closes
/// it into a log2 histogram on the next entry or `KVM_RUN`, counts detail events per process,
/// and files halt durations in a histogram.
pub const PEERS: [Peer; 8] = [
    Peer {
        category: "kvm",
        event: "kvm_exit",
        kvmtop: "kvm_exit",
        body: "{ @exits[pid, tid, args->exit_reason] = count(); @exit_start[tid] = nsecs; }",
        needs: None,
    },
    Peer {
        category: "kvm",
        event: "kvm_entry",
        kvmtop: "kvm_entry",
        body: "{ $start = @exit_start[tid]; if ($start) { \
               @exit_ns[pid, tid] = hist(nsecs - $start); delete(@exit_start[tid]); } }",
        needs: Some("kvm_exit"),
    },
    Peer {
        category: "kvm",
        event: "kvm_userspace_exit",
        kvmtop: "kvm_userspace_exit",
        body: "{ @uexits[pid, tid, args->reason] = count(); @uexit_start[tid] = nsecs; }",
        needs: None,
    },
    Peer {
        category: "kvm",
        event: "kvm_fpu",
        kvmtop: "kvm_run",
        body: "/args->load == 1/ { $start = @uexit_start[tid]; if ($start) { \
               @vmm_ns[pid, tid] = hist(nsecs - $start); delete(@uexit_start[tid]); } }",
        needs: Some("kvm_userspace_exit"),
    },
    Peer {
        category: "kvm",
        event: "kvm_pio",
        kvmtop: "kvm_pio",
        body: "{ @pio[pid, args->port, args->rw] = count(); }",
        needs: None,
    },
    Peer {
        category: "kvm",
        event: "kvm_mmio",
        kvmtop: "kvm_mmio",
        body: "{ @mmio[pid, args->type, args->gpa >> 12] = count(); }",
        needs: None,
    },
    Peer {
        category: "kvm",
        event: "kvm_emulate_insn",
        kvmtop: "kvm_emulate_insn",
        body: "{ @emulated[pid, args->failed] = count(); }",
        needs: None,
    },
    Peer {
        category: "kvm",
        event: "kvm_vcpu_wakeup",
        kvmtop: "kvm_vcpu_wakeup",
        body: "{ @halt_ns[pid, tid, args->waited] = hist(args->ns); }",
        needs: None,
    },
];

impl Peer {
    pub fn one_liner(&self) -> String {
        format!("tracepoint:{}:{} {}", self.category, self.event, self.body)
    }
}

/// The running bpftrace process, and why each peer left out of it is missing.
pub struct Bpftrace {
    _child: Killed,
    /// Program id → tracepoint event name, for the programs it attached.
    pub tracepoints: BTreeMap<u32, String>,
    /// Event name → why it is not measured.
    pub unavailable: BTreeMap<&'static str, String>,
}

/// Starts bpftrace with every peer whose tracepoint exists. If bpftrace rejects the script, each
/// probe is tried alone, and the ones that fail are reported unavailable instead of aborting.
pub fn start(out_dir: &Path) -> Result<Bpftrace> {
    let mut unavailable: BTreeMap<&'static str, String> = PEERS
        .iter()
        .filter(|peer| !tracepoint_exists(peer))
        .map(|peer| {
            let why = format!("tracepoint {}:{} missing", peer.category, peer.event);
            (peer.event, why)
        })
        .collect();
    let mut chosen = runnable(&mut unavailable);
    let failure = match launch(&chosen, out_dir, "bpftrace")? {
        Ok(attached) => return Ok(Bpftrace::new(attached, unavailable)),
        Err(failure) => failure,
    };
    util::warn(&format!(
        "bpftrace rejected the combined program ({failure}); trying each probe alone"
    ));
    // Prerequisites come first in PEERS, so they are judged before their readers.
    for &peer in &chosen {
        let needed = peer
            .needs
            .and_then(|needed| chosen.iter().find(|other| other.event == needed));
        if needed.is_some_and(|needed| unavailable.contains_key(needed.event)) {
            continue; // `runnable` rules it out with the reason.
        }
        let group: Vec<&Peer> = needed.copied().into_iter().chain([peer]).collect();
        if let Err(why) = launch(&group, out_dir, "bpftrace-single")? {
            unavailable.insert(peer.event, why);
        }
    }
    chosen = runnable(&mut unavailable);
    match launch(&chosen, out_dir, "bpftrace")? {
        Ok(attached) => Ok(Bpftrace::new(attached, unavailable)),
        Err(why) => anyhow::bail!("bpftrace failed even without the probes it rejected: {why}"),
    }
}

impl Bpftrace {
    fn new(attached: Attached, unavailable: BTreeMap<&'static str, String>) -> Self {
        Self {
            _child: attached.child,
            tracepoints: attached.tracepoints,
            unavailable,
        }
    }
}

/// The peers not ruled out, after ruling out those whose prerequisite is.
fn runnable(unavailable: &mut BTreeMap<&'static str, String>) -> Vec<&'static Peer> {
    for peer in &PEERS {
        if let Some(needed) = peer.needs
            && unavailable.contains_key(needed)
            && !unavailable.contains_key(peer.event)
        {
            let why = format!("needs the start timestamps of {needed}, which is unavailable");
            unavailable.insert(peer.event, why);
        }
    }
    PEERS
        .iter()
        .filter(|peer| !unavailable.contains_key(peer.event))
        .collect()
}

pub fn tracepoint_exists(peer: &Peer) -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|root| {
            Path::new(root)
                .join("events")
                .join(peer.category)
                .join(peer.event)
                .join("format")
                .exists()
        })
}

/// A bpftrace process with every program it was given attached.
pub struct Attached {
    pub child: Killed,
    pub tracepoints: BTreeMap<u32, String>,
}

/// Runs bpftrace on `peers` and waits until each has a program attached. The inner error is
/// bpftrace's own complaint (it exited, or never attached everything).
pub fn launch(peers: &[&Peer], out_dir: &Path, stem: &str) -> Result<Result<Attached, String>> {
    if peers.is_empty() {
        return Ok(Err("no probe left to attach".to_owned()));
    }
    let script = out_dir.join(format!("{stem}.bt"));
    let program: Vec<String> = peers.iter().map(|peer| peer.one_liner()).collect();
    std::fs::write(&script, program.join("\n") + "\n")?;
    let stderr = out_dir.join(format!("{stem}.err"));
    let mut command = cmd("bpftrace");
    command
        .arg(&script)
        .stdout(File::create(out_dir.join(format!("{stem}.out")))?)
        .stderr(File::create(&stderr)?);
    util::echo(&command);
    let mut child = Killed(command.spawn().context("starting bpftrace")?);
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        interrupt::bail_if_interrupted()?;
        if let Some(status) = child.0.try_wait()? {
            let text = std::fs::read_to_string(&stderr).unwrap_or_default();
            return Ok(Err(
                complaint(&text).unwrap_or_else(|| format!("exited with {status}"))
            ));
        }
        let mut attached = progs::perf_tracepoints(pid)?;
        attached.extend(progs::held_by(pid, &progs::sample()?).tracepoints);
        if attached.len() >= peers.len() {
            return Ok(Ok(Attached {
                child,
                tracepoints: attached,
            }));
        }
        if Instant::now() > deadline {
            return Ok(Err(format!(
                "attached {} of {} probes within 60 s",
                attached.len(),
                peers.len()
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// bpftrace's error message, without its harmless `RLIMIT_MEMLOCK` notice (not needed since 5.11).
pub fn complaint(stderr: &str) -> Option<String> {
    let lines = || {
        stderr
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.contains("RLIMIT_MEMLOCK"))
    };
    lines()
        .find(|line| line.contains("ERROR"))
        .or_else(|| lines().next_back())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_liners_name_their_probe() {
        assert_eq!(
            PEERS[4].one_liner(),
            "tracepoint:kvm:kvm_pio { @pio[pid, args->port, args->rw] = count(); }"
        );
        assert!(
            PEERS[3].one_liner().starts_with(
                "tracepoint:kvm:kvm_fpu /args->load == 1/ { $start = @uexit_start[tid];"
            )
        );
    }

    #[test]
    fn a_missing_prerequisite_rules_out_its_reader() {
        let mut unavailable = BTreeMap::from([("kvm_userspace_exit", "missing".to_owned())]);
        let chosen: Vec<&str> = runnable(&mut unavailable)
            .iter()
            .map(|peer| peer.event)
            .collect();
        assert!(!chosen.contains(&"kvm_fpu"));
        assert!(chosen.contains(&"kvm_entry"));
        assert!(unavailable["kvm_fpu"].contains("kvm_userspace_exit"));
    }

    #[test]
    fn keeps_the_real_error_not_the_memlock_notice() {
        let stderr = "ERROR: Unknown error -1: couldn't set RLIMIT_MEMLOCK for bpftrace.\n\
                      stdin:1:1-24: ERROR: tracepoint not found: kvm:kvm_nope\n";
        assert_eq!(
            complaint(stderr).as_deref(),
            Some("stdin:1:1-24: ERROR: tracepoint not found: kvm:kvm_nope")
        );
        assert_eq!(complaint("ERROR: couldn't set RLIMIT_MEMLOCK\n"), None);
    }
}
