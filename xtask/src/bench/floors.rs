//! The floor under each of kvmtop's programs: an empty program of the same hook kind on the same
//! hook, attached for the same window. Its ns/event is what the kernel charges for running any
//! program there, so kvmtop's cost over it is the work kvmtop's program itself does.
//!
//! Which hooks kvmtop uses, and of which kind, is read from a short `kvmtop snapshot` at the start
//! (its sources' hooks: `tracepoint:sched:sched_switch`, `raw_tp:kvm_pio`, `tp_btf:sched_switch`),
//! since the floors must be attached before a window starts. The empty programs are in kvmtop's
//! own object (`monitor-ebpf/src/floor.rs`); a small runner built against the kvmtop library
//! (`floor_runner.rs`) loads and attaches them.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::Killed;
use crate::{
    interrupt,
    util::{self, cmd},
};

/// Where one of kvmtop's sources runs, as its snapshot shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hook {
    /// The source's name in the snapshot.
    pub source: String,
    /// `tracepoint` (classic), `raw_tp`, `tp_btf`, `fentry`, `kprobe`, …
    pub kind: String,
    /// The tracepoint's subsystem, when the hook string names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The tracepoint's event name (or the function, for fentry and kprobe).
    pub event: String,
}

impl Hook {
    /// Parses a snapshot hook string. Kinds are normalised to the names the floor runner takes.
    pub fn parse(source: &str, text: &str) -> Option<Self> {
        let parts: Vec<&str> = text.split(':').collect();
        let (kind, rest) = parts.split_first()?;
        let kind = match *kind {
            "tp" | "tracepoint" => "tracepoint",
            "raw_tp" | "raw_tracepoint" | "rawtracepoint" => "raw_tp",
            "tp_btf" | "btf_tracepoint" | "btf_tp" => "tp_btf",
            other => other,
        };
        let (event, system) = match rest {
            [event] => (*event, None),
            [system, event] => (*event, Some((*system).to_owned())),
            _ => return None,
        };
        (!event.is_empty()).then(|| Self {
            source: source.to_owned(),
            kind: kind.to_owned(),
            system,
            event: event.to_owned(),
        })
    }

    /// Whether an empty program of this kind can be attached here.
    fn has_floor(&self) -> bool {
        match self.kind.as_str() {
            "tracepoint" => self.system.is_some(),
            "raw_tp" | "tp_btf" => true,
            _ => false,
        }
    }

    /// The runner's argument: `tracepoint:system:event`, `raw_tp:event`, `tp_btf:event`.
    fn spec(&self) -> String {
        match &self.system {
            Some(system) if self.kind == "tracepoint" => {
                format!("{}:{system}:{}", self.kind, self.event)
            }
            _ => format!("{}:{}", self.kind, self.event),
        }
    }
}

/// Every attached source's hook in a `kvmtop snapshot --format json` output: each family's
/// `hooks` (source → hook string) for the sources its `sources` does not report unavailable
/// (`live` or `silent`).
pub fn hooks_of_snapshot(json: &str) -> Result<Vec<Hook>> {
    let value: serde_json::Value = serde_json::from_str(json).context("parsing the snapshot")?;
    let mut hooks = Vec::new();
    let mut visit = |family: &serde_json::Value| {
        let Some(map) = family.get("hooks").and_then(|h| h.as_object()) else {
            return;
        };
        for (source, hook) in map {
            let attached = match family.get("sources").and_then(|s| s.get(source)) {
                Some(serde_json::Value::String(state)) => !state.starts_with("unavailable"),
                Some(serde_json::Value::Object(state)) => !state.contains_key("unavailable"),
                _ => true,
            };
            if let (true, Some(hook)) =
                (attached, hook.as_str().and_then(|h| Hook::parse(source, h)))
            {
                hooks.push(hook);
            }
        }
    };
    if let Some(object) = value.as_object() {
        for family in object.values() {
            visit(family);
            if let Some(inner) = family.as_object() {
                inner.values().for_each(&mut visit);
            }
        }
    }
    hooks.sort_by(|a, b| (&a.event, &a.kind).cmp(&(&b.event, &b.kind)));
    hooks.dedup_by(|a, b| a.event == b.event && a.kind == b.kind);
    if hooks.is_empty() {
        bail!("the snapshot lists no attached source with a hook");
    }
    Ok(hooks)
}

/// Runs a one-second `kvmtop snapshot` and reads which hooks its sources run on.
pub fn probe(binary: &Path, out_dir: &Path) -> Result<Vec<Hook>> {
    let path = out_dir.join("snapshot-hooks.json");
    let mut command = cmd(binary);
    command
        .args(["snapshot", "--duration", "1", "--format", "json"])
        .stdout(std::fs::File::create(&path)?);
    util::echo(&command);
    let status = command.status().context("starting kvmtop")?;
    if !status.success() {
        bail!("kvmtop snapshot exited with {status}");
    }
    hooks_of_snapshot(&std::fs::read_to_string(&path)?)
}

/// The floor programs of a window, and the hook kinds kvmtop's sources run as.
#[derive(Clone, Debug, Default)]
pub struct FloorIds {
    /// Event name → the floor program's id and kind.
    pub ids: BTreeMap<String, (u32, String)>,
    /// Event name → why it has no floor.
    pub unavailable: BTreeMap<String, String>,
    /// Event name → the kind of hook kvmtop's source on it runs as.
    pub kinds: BTreeMap<String, String>,
}

/// The floor programs of one window, attached; dropping it detaches them.
pub struct Floors {
    _child: Option<Killed>,
    pub attached: FloorIds,
}

impl Floors {
    /// Nothing attached: every hook's floor is unavailable for `why`.
    pub fn none(hooks: &[Hook], why: &str) -> Self {
        Self {
            _child: None,
            attached: FloorIds {
                ids: BTreeMap::new(),
                unavailable: hooks
                    .iter()
                    .map(|hook| (hook.event.clone(), why.to_owned()))
                    .collect(),
                kinds: kinds(hooks),
            },
        }
    }
}

fn kinds(hooks: &[Hook]) -> BTreeMap<String, String> {
    hooks
        .iter()
        .map(|hook| (hook.event.clone(), hook.kind.clone()))
        .collect()
}

/// Floors for a window: attached with `runner` when it was built, else unavailable (and why).
pub fn for_window(runner: Result<&Path, &str>, hooks: &[Hook]) -> Floors {
    let attached = runner
        .map_err(|why| anyhow::anyhow!("{why}"))
        .and_then(|runner| attach(runner, hooks));
    attached.unwrap_or_else(|err| {
        let why = format!("floor runner: {err:#}");
        util::warn(&why);
        Floors::none(hooks, &why)
    })
}

/// Attaches a floor to every hook of `hooks` that can have one, with the runner at `runner`.
fn attach(runner: &Path, hooks: &[Hook]) -> Result<Floors> {
    let mut unavailable: BTreeMap<String, String> = hooks
        .iter()
        .filter(|hook| !hook.has_floor())
        .map(|hook| {
            let why = format!("no empty program of kind {} to attach", hook.kind);
            (hook.event.clone(), why)
        })
        .collect();
    let wanted: Vec<&Hook> = hooks.iter().filter(|hook| hook.has_floor()).collect();
    let mut command = cmd(runner);
    command
        .args(wanted.iter().map(|hook| hook.spec()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    util::echo(&command);
    let mut child = Killed(command.spawn().context("starting the floor runner")?);
    let stdout = child.0.stdout.take().context("the floor runner's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut ids = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        interrupt::bail_if_interrupted()?;
        if Instant::now() > deadline {
            bail!("the floor runner did not finish attaching within a minute");
        }
        let Some(line) = lines.next() else {
            bail!("the floor runner exited before it was ready");
        };
        let line = line?;
        if line == "ready" {
            break;
        }
        let Some((spec, result)) = line.split_once(' ') else {
            continue;
        };
        let Some(hook) = wanted.iter().find(|hook| hook.spec() == spec) else {
            continue;
        };
        match result.split_once(' ') {
            Some(("id", id)) => {
                ids.insert(hook.event.clone(), (id.parse()?, hook.kind.clone()));
            }
            Some(("error", why)) => {
                unavailable.insert(hook.event.clone(), why.to_owned());
            }
            _ => bail!("unexpected floor runner output: {line:?}"),
        }
    }
    Ok(Floors {
        _child: Some(child),
        attached: FloorIds {
            ids,
            unavailable,
            kinds: kinds(hooks),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hooks_of_every_kind() {
        let classic = Hook::parse("switch", "tracepoint:sched:sched_switch").unwrap();
        assert_eq!(classic.kind, "tracepoint");
        assert_eq!(classic.system.as_deref(), Some("sched"));
        assert_eq!(classic.spec(), "tracepoint:sched:sched_switch");
        let raw = Hook::parse("pio", "raw_tp:kvm_pio").unwrap();
        assert_eq!(
            (raw.kind.as_str(), raw.event.as_str()),
            ("raw_tp", "kvm_pio")
        );
        assert_eq!(raw.spec(), "raw_tp:kvm_pio");
        let btf = Hook::parse("switch", "tp_btf:sched_switch").unwrap();
        assert!(btf.has_floor());
        let fentry = Hook::parse("numa", "fentry:task_numa_fault").unwrap();
        assert!(!fentry.has_floor());
        assert_eq!(Hook::parse("x", "nonsense"), None);
    }

    #[test]
    fn reads_live_hooks_from_a_snapshot() {
        let json = r#"{"exits":{"sources":{"kvm_exit":"silent","kvm_pio":"live",
            "gone":"unavailable: no such tracepoint","old":{"unavailable":"no"}},
            "hooks":{"kvm_exit":"tracepoint:kvm:kvm_exit","kvm_pio":"raw_tp:kvm_pio",
            "gone":"tracepoint:kvm:kvm_gone","old":"tracepoint:kvm:kvm_old"}},
            "sched":{"sources":{"switch":"live"},"hooks":{"switch":"tp_btf:sched_switch"}},
            "vms":[]}"#;
        let hooks = hooks_of_snapshot(json).unwrap();
        let events: Vec<(&str, &str)> = hooks
            .iter()
            .map(|hook| (hook.event.as_str(), hook.kind.as_str()))
            .collect();
        assert_eq!(
            events,
            [
                ("kvm_exit", "tracepoint"),
                ("kvm_pio", "raw_tp"),
                ("sched_switch", "tp_btf")
            ]
        );
        assert!(hooks_of_snapshot(r#"{"vms":[]}"#).is_err());
    }
}
