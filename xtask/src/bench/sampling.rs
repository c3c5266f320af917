//! One measurement window: `kvmtop snapshot` runs for the given seconds while every program's
//! statistics (and kvmtop's count of watched scheduling events) are polled; the window runs from
//! the first to the last poll that sees all of kvmtop's programs loaded.

use std::{
    collections::BTreeMap,
    fs::File,
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{Killed, POLL, agent, progs, watched};
use crate::{
    interrupt,
    util::{self, cmd},
};

/// The two polls bounding the window, and what kvmtop held.
pub struct Sampled {
    pub start: BTreeMap<u32, progs::Prog>,
    pub end: BTreeMap<u32, progs::Prog>,
    pub kvmtop: progs::Held,
    /// `SCHED_WATCHED_EVENTS` at the two polls, when it could be read at both.
    pub watched: Option<[watched::Counts; 2]>,
    pub length: Duration,
    pub usage: agent::Usage,
    /// From kvmtop's start to the last read of its usage.
    pub lifetime: Duration,
}

/// Runs `kvmtop snapshot` for `seconds` (its JSON goes to `<stem>.json`) and samples it.
pub fn snapshot(binary: &Path, out_dir: &Path, seconds: u64, stem: &str) -> Result<Sampled> {
    let mut snapshot = cmd(binary);
    snapshot
        .args([
            "snapshot",
            "--duration",
            &seconds.to_string(),
            "--format",
            "json",
        ])
        .stdout(File::create(out_dir.join(format!("{stem}.json")))?);
    util::echo(&snapshot);
    let started = Instant::now();
    let mut kvmtop = Killed(snapshot.spawn().context("starting kvmtop")?);
    let mut samples = sample_until_exit(&mut kvmtop.0)?;
    let status = kvmtop.0.wait()?;
    if !status.success() {
        bail!("kvmtop snapshot exited with {status}");
    }
    let (first, last) = window(&samples.polls).context(
        "kvmtop's programs were never seen loaded; did it attach anything? (see its output above)",
    )?;
    if first == last {
        bail!("kvmtop's programs were all loaded for a single poll only: use a longer window");
    }
    // `last` first: removing it leaves the earlier index `first` in place.
    let end = samples.polls.swap_remove(last);
    let start = samples.polls.swap_remove(first);
    Ok(Sampled {
        length: end.at - start.at,
        watched: start.watched.zip(end.watched).map(|(a, b)| [a, b]),
        start: start.progs,
        end: end.progs,
        kvmtop: end.kvmtop,
        usage: samples.usage,
        lifetime: samples.last_usage_at.saturating_duration_since(started),
    })
}

struct Poll {
    at: Instant,
    progs: BTreeMap<u32, progs::Prog>,
    kvmtop: progs::Held,
    watched: Option<watched::Counts>,
}

struct Samples {
    polls: Vec<Poll>,
    usage: agent::Usage,
    last_usage_at: Instant,
}

/// Polls program statistics and the agent's usage until it exits. The agent's programs vanish
/// when it does, so the last poll that still sees them ends the window.
fn sample_until_exit(kvmtop: &mut Child) -> Result<Samples> {
    let pid = kvmtop.id();
    let mut samples = Samples {
        polls: Vec::new(),
        usage: agent::Usage::default(),
        last_usage_at: Instant::now(),
    };
    let mut watched_map = None;
    while kvmtop.try_wait()?.is_none() {
        if interrupt::interrupted() {
            let _ = kvmtop.kill();
            bail!("interrupted");
        }
        let progs = progs::sample()?;
        let at = Instant::now();
        let held = progs::held_by(pid, &progs);
        if !held.ids.is_empty() && watched_map.is_none() {
            watched_map = watched::map_id(pid);
        }
        let watched = watched_map.and_then(|id| watched::read(id).ok());
        if let Some(usage) = agent::read(pid) {
            samples.usage = usage;
            samples.last_usage_at = Instant::now();
        }
        if !held.ids.is_empty() {
            samples.polls.push(Poll {
                at,
                progs,
                kvmtop: held,
                watched,
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(samples)
}

/// The first and last polls that see kvmtop's full set of programs. It attaches them one by one
/// at start-up and releases them one by one at exit, so polls at either end may see only some.
fn window(polls: &[Poll]) -> Option<(usize, usize)> {
    let full = &polls
        .iter()
        .max_by_key(|poll| poll.kvmtop.ids.len())?
        .kvmtop
        .ids;
    let first = polls.iter().position(|poll| &poll.kvmtop.ids == full)?;
    let last = polls.iter().rposition(|poll| &poll.kvmtop.ids == full)?;
    Some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(ids: &[u32]) -> Poll {
        Poll {
            at: Instant::now(),
            progs: BTreeMap::new(),
            kvmtop: progs::Held {
                ids: ids.iter().copied().collect(),
                tracepoints: BTreeMap::new(),
            },
            watched: None,
        }
    }

    #[test]
    fn window_ignores_partial_sets_at_both_ends() {
        let polls = [
            poll(&[1]),
            poll(&[1, 2]),
            poll(&[1, 2]),
            poll(&[1, 2]),
            poll(&[2]),
        ];
        assert_eq!(window(&polls), Some((1, 3)));
        assert_eq!(window(&[]), None);
    }
}
