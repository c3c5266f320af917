//! The peers of the scheduling, block and TLB phases: a libbpf-tools binary, whose programs are
//! found by its pid (its raw tracepoint links name their tracepoint in fdinfo), or a bpftrace
//! program.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{Killed, POLL, peers, progs};
use crate::{interrupt, util};

pub enum PeerSpec {
    /// A libbpf-tools binary run without arguments until SIGINT, and the tracepoints it attaches.
    Tool {
        path: &'static str,
        attaches: &'static [&'static str],
    },
    Bpftrace(&'static peers::Peer),
}

impl PeerSpec {
    /// The exact command, for the report.
    pub fn command(&self) -> String {
        match self {
            Self::Tool { path, .. } => (*path).to_owned(),
            Self::Bpftrace(peer) => format!("bpftrace -e '{}'", peer.one_liner()),
        }
    }

    /// The label of its program `name` on a tracepoint.
    pub fn program(&self, name: Option<&str>) -> String {
        match (self, name) {
            (Self::Tool { path, .. }, Some(name)) => format!("{} {name}", tool_name(path)),
            (Self::Tool { path, .. }, None) => tool_name(path).to_owned(),
            (Self::Bpftrace(peer), _) => peer.one_liner(),
        }
    }
}

fn tool_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A running peer with all its programs attached.
pub struct Running {
    child: Killed,
    /// Program id → tracepoint event name.
    pub tracepoints: BTreeMap<u32, String>,
    out: PathBuf,
}

impl Running {
    /// Stops it (SIGINT, so it prints its maps) and returns what it printed.
    pub fn stop(self) -> String {
        drop(self.child);
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// Starts the peer and waits until it has attached everything; `Err` says why it is unavailable.
pub fn start(spec: &PeerSpec, out_dir: &Path, stem: &str) -> Result<Running, String> {
    let out = out_dir.join(format!("{stem}.out"));
    match spec {
        PeerSpec::Bpftrace(peer) => match peers::launch(&[peer], out_dir, stem) {
            Ok(Ok(attached)) => Ok(Running {
                child: attached.child,
                tracepoints: attached.tracepoints,
                out,
            }),
            Ok(Err(why)) => Err(why),
            Err(err) => Err(format!("{err:#}")),
        },
        PeerSpec::Tool { path, attaches } => {
            start_tool(path, attaches, out, &out_dir.join(format!("{stem}.err")))
        }
    }
}

fn start_tool(
    path: &str,
    attaches: &[&str],
    out: PathBuf,
    stderr: &Path,
) -> Result<Running, String> {
    if !Path::new(path).exists() {
        return Err(format!("{path} is not installed (libbpf-tools)"));
    }
    let file = |path: &Path| File::create(path).map_err(|err| err.to_string());
    let mut command = util::cmd(path);
    command.stdout(file(&out)?).stderr(file(stderr)?);
    util::echo(&command);
    let mut child = Killed(
        command
            .spawn()
            .map_err(|err| format!("starting {path}: {err}"))?,
    );
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if interrupt::interrupted() {
            return Err("interrupted".to_owned());
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            let text = std::fs::read_to_string(stderr).unwrap_or_default();
            return Err(peers::complaint(&text).unwrap_or_else(|| format!("exited with {status}")));
        }
        let progs = progs::sample().map_err(|err| format!("{err:#}"))?;
        let tracepoints = progs::held_by(pid, &progs).tracepoints;
        let seen: BTreeSet<&str> = tracepoints.values().map(String::as_str).collect();
        if attaches.iter().all(|tp| seen.contains(tp)) {
            return Ok(Running {
                child,
                tracepoints,
                out,
            });
        }
        if Instant::now() > deadline {
            return Err(format!(
                "attached {seen:?} of {attaches:?} within 30 s (it is found by its raw tracepoint \
                 links in /proc/{pid}/fdinfo)"
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// `enum tlb_flush_reason`, by value.
const TLB_REASONS: [&str; 6] = [
    "task_switch",
    "remote_shootdown",
    "local_shootdown",
    "local_mm_shootdown",
    "remote_send_ipi",
    "remote_wrong_cpu",
];

/// Counts by reason from bpftrace's `@[pid, reason]: count` lines: of every task, and of `pid`.
pub fn tlb_reasons(out: &str, pid: Option<u32>) -> [BTreeMap<i64, u64>; 2] {
    let mut counts = [BTreeMap::new(), BTreeMap::new()];
    for line in out.lines() {
        let Some((key, count)) = line
            .trim()
            .strip_prefix("@[")
            .and_then(|l| l.split_once("]:"))
        else {
            continue;
        };
        let (Some((who, reason)), Ok(count)) = (key.split_once(','), count.trim().parse::<u64>())
        else {
            continue;
        };
        let (Ok(who), Ok(reason)) = (who.trim().parse::<u32>(), reason.trim().parse::<i64>())
        else {
            continue;
        };
        *counts[0].entry(reason).or_default() += count;
        if Some(who) == pid {
            *counts[1].entry(reason).or_default() += count;
        }
    }
    counts
}

/// `task_switch 1200 (40.0%), remote_send_ipi …`.
pub fn describe_reasons(counts: &BTreeMap<i64, u64>) -> String {
    let total: u64 = counts.values().sum();
    let name = |reason: i64| {
        usize::try_from(reason)
            .ok()
            .and_then(|r| TLB_REASONS.get(r))
            .map_or_else(|| format!("reason {reason}"), |name| (*name).to_owned())
    };
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    let parts: Vec<String> = counts
        .iter()
        .map(|(reason, n)| {
            let share = *n as f64 * 100.0 / total.max(1) as f64;
            format!("{} {n} ({share:.1}%)", name(*reason))
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tlb_reasons_per_process() {
        let out = "Attaching 1 probe...\n\n\n@[17, 0]: 30\n@[4242, 4]: 50\n@[4242, 1]: 10\n\
                   @[4242, 0]: 10\n@[9, 1]: 5\nnoise\n";
        let [all, churn] = tlb_reasons(out, Some(4242));
        assert_eq!(all, BTreeMap::from([(0, 40), (1, 15), (4, 50)]));
        assert_eq!(churn, BTreeMap::from([(0, 10), (1, 10), (4, 50)]));
        assert_eq!(
            describe_reasons(&BTreeMap::from([(0, 1), (4, 3), (9, 0)])),
            "task_switch 1 (25.0%), remote_send_ipi 3 (75.0%), reason 9 0 (0.0%)"
        );
    }

    #[test]
    fn labels_peer_programs() {
        let tool = PeerSpec::Tool {
            path: "/usr/sbin/runqlat",
            attaches: &["sched_switch"],
        };
        assert_eq!(tool.command(), "/usr/sbin/runqlat");
        assert_eq!(
            tool.program(Some("handle_sched_switch")),
            "runqlat handle_sched_switch"
        );
        assert_eq!(tool.program(None), "runqlat");
    }
}
