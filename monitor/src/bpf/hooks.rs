//! The declarative hook tables of the signal families, and the one routine that attaches them.
//!
//! A family lists its kernel sources as data: each [`SourceSpec`] names a source (as snapshots
//! and metrics show it) and the ways to run it, best first, each an [`Attempt`]: a program, the
//! hook it runs on, and the load-time constants it needs from this kernel (its record layout) or
//! why this kernel cannot give them. [`Kernel::attach_all`] tries the attempts in order and
//! reports every source as attached (and where) or unavailable (and why): a missing tracepoint
//! costs only the figures that need it.

use std::{collections::BTreeMap, fmt, path::Path};

use aya::Pod;

use super::Kernel;
use crate::{
    host::btf::{KernelBtf, SYSTEM_BTF},
    model::Attachment,
};

/// Where a program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A BTF tracepoint (`tp_btf`): the raw arguments of a vmlinux tracepoint, typed by the
    /// kernel's BTF. Skipped only when the same program is already running on the CPU.
    BtfTracepoint(&'static str),
    /// A raw tracepoint (`raw_tp`): the same arguments, untyped; also attaches to tracepoints of
    /// modules (kvm). Skipped only when the same program is already running on the CPU.
    RawTracepoint(&'static str),
    /// A classic tracepoint, `system:event`: its record is filled for the program, and the
    /// kernel skips the program whenever any classic tracepoint, kprobe or perf program (or a
    /// BPF map syscall) is already running on the CPU.
    Tracepoint {
        system: &'static str,
        event: &'static str,
    },
    /// fentry on a kernel function (BPF trampoline).
    Fentry(&'static str),
    /// A kprobe on a kernel function.
    Kprobe(&'static str),
}

impl Hook {
    #[must_use]
    pub const fn tracepoint(system: &'static str, event: &'static str) -> Self {
        Self::Tracepoint { system, event }
    }

    /// The kind of tracepoint program, for the kinds the operator allows; `None` for function
    /// hooks, which have no alternative kinds.
    #[must_use]
    pub const fn kind(self) -> Option<HookKind> {
        match self {
            Self::BtfTracepoint(_) => Some(HookKind::TpBtf),
            Self::RawTracepoint(_) => Some(HookKind::RawTp),
            Self::Tracepoint { .. } => Some(HookKind::Tracepoint),
            Self::Fentry(_) | Self::Kprobe(_) => None,
        }
    }
}

/// The kinds of tracepoint program a source can run as, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum HookKind {
    /// BTF tracepoint: raw arguments, typed; per-program recursion guard.
    #[value(name = "tp_btf")]
    TpBtf,
    /// Raw tracepoint: raw arguments; per-program recursion guard.
    #[value(name = "raw_tp")]
    RawTp,
    /// Classic tracepoint: a filled record; one recursion guard shared by all tracing programs.
    #[value(name = "tracepoint")]
    Tracepoint,
}

impl HookKind {
    /// Every kind, best first: the default.
    pub const ALL: [Self; 3] = [Self::TpBtf, Self::RawTp, Self::Tracepoint];
}

impl fmt::Display for HookKind {
    /// As `--hook-kinds` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TpBtf => "tp_btf",
            Self::RawTp => "raw_tp",
            Self::Tracepoint => "tracepoint",
        })
    }
}

impl fmt::Display for Hook {
    /// As snapshots show it: `tracepoint:sched:sched_switch`, `fentry:task_numa_fault`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BtfTracepoint(event) => write!(f, "tp_btf:{event}"),
            Self::RawTracepoint(event) => write!(f, "raw_tp:{event}"),
            Self::Tracepoint { system, event } => write!(f, "tracepoint:{system}:{event}"),
            Self::Fentry(function) => write!(f, "fentry:{function}"),
            Self::Kprobe(function) => write!(f, "kprobe:{function}"),
        }
    }
}

/// A read-only global of the object, overwritten before the kernel sees the programs: the
/// verifier then treats it as a constant and prunes the branches it rules out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    pub name: &'static str,
    bytes: Vec<u8>,
}

impl Global {
    /// `value` as the global `name` (the object's symbol must have `T`'s size).
    #[must_use]
    pub fn new<T: Pod>(name: &'static str, value: &T) -> Self {
        // SAFETY: `Pod` types are plain bytes without padding (see `monitor_common`).
        let bytes = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), size_of::<T>())
        };
        Self {
            name,
            bytes: bytes.to_vec(),
        }
    }

    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One way to run a source.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub hook: Hook,
    /// The program's name in the object.
    pub program: &'static str,
    /// The constants the program needs from this kernel, or why it cannot have them.
    pub needs: Result<Vec<Global>, String>,
}

impl Attempt {
    /// A program on a classic tracepoint, with the layout it needs (or why there is none).
    #[must_use]
    pub fn tracepoint(
        system: &'static str,
        event: &'static str,
        program: &'static str,
        needs: Result<Vec<Global>, String>,
    ) -> Self {
        Self {
            hook: Hook::tracepoint(system, event),
            program,
            needs,
        }
    }

    /// A program on a vmlinux tracepoint's raw arguments, typed by the kernel's BTF.
    #[must_use]
    pub fn btf(
        event: &'static str,
        program: &'static str,
        needs: Result<Vec<Global>, String>,
    ) -> Self {
        Self {
            hook: Hook::BtfTracepoint(event),
            program,
            needs,
        }
    }

    /// A program on a tracepoint's raw arguments, untyped.
    #[must_use]
    pub fn raw(
        event: &'static str,
        program: &'static str,
        needs: Result<Vec<Global>, String>,
    ) -> Self {
        Self {
            hook: Hook::RawTracepoint(event),
            program,
            needs,
        }
    }
}

/// What the raw-argument programs of `event` need from this kernel: the struct offsets they
/// read (`fields`, from its BTF, handed to them as the global `global`), and `event` passing
/// the `args` raw arguments they read (older kernels pass others, and keep the classic program).
pub fn raw_needs<T: Pod>(
    btf: &Result<KernelBtf, String>,
    event: &str,
    args: usize,
    global: &'static str,
    fields: &Result<T, String>,
) -> Result<Vec<Global>, String> {
    let fields = fields.as_ref().map_err(Clone::clone)?;
    btf.as_ref()
        .map_err(Clone::clone)?
        .expect_args(event, args)?;
    Ok(vec![Global::new(global, fields)])
}

/// The ways to run a tracepoint that has programs of every kind, best first: the BTF tracepoint
/// `programs.0` (it also needs the kernel's own BTF, which types its arguments), the raw
/// tracepoint `programs.1`, both with `raw_needs` (what they need from this kernel: offsets read
/// from its BTF, say), then `classic`.
#[must_use]
pub fn every_kind(
    btf: &Result<KernelBtf, String>,
    event: &'static str,
    programs: (&'static str, &'static str),
    raw_needs: Result<Vec<Global>, String>,
    classic: Attempt,
) -> Vec<Attempt> {
    let own_btf = match btf {
        Ok(btf) if btf.path() == Path::new(SYSTEM_BTF) => Ok(()),
        Ok(btf) => Err(format!(
            "tp_btf needs the kernel's own BTF ({SYSTEM_BTF}), not {}",
            btf.path().display()
        )),
        Err(why) => Err(why.clone()),
    };
    vec![
        Attempt::btf(event, programs.0, own_btf.and(raw_needs.clone())),
        Attempt::raw(event, programs.1, raw_needs),
        classic,
    ]
}

/// A kernel source of a family and the ways to run it, best first.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    /// The source's name in snapshots and metrics.
    pub name: &'static str,
    pub attempts: Vec<Attempt>,
    /// Why the operator left this source out (`--collect`): it is then not attached at all.
    pub left_out: Option<String>,
}

impl SourceSpec {
    /// A source with one way to run it.
    #[must_use]
    pub fn one(name: &'static str, attempt: Attempt) -> Self {
        Self::new(name, vec![attempt])
    }

    /// A source with several ways to run it, best first.
    #[must_use]
    pub fn new(name: &'static str, attempts: Vec<Attempt>) -> Self {
        Self {
            name,
            attempts,
            left_out: None,
        }
    }

    /// This source, not attached when `why` says the operator left it out.
    #[must_use]
    pub fn unless_left_out(self, why: Option<String>) -> Self {
        Self {
            left_out: why,
            ..self
        }
    }

    /// Every global this source's attempts need, for those whose needs are met.
    pub fn globals(&self) -> impl Iterator<Item = &Global> {
        self.attempts
            .iter()
            .filter_map(|attempt| attempt.needs.as_ref().ok())
            .flatten()
    }
}

/// What attaching made of one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub attachment: Attachment,
    /// Where it runs; for an unavailable source, where it would have run.
    pub hook: Hook,
    /// The program that runs it (the first one tried when unavailable).
    pub program: &'static str,
}

impl Source {
    #[must_use]
    pub fn is_attached(&self) -> bool {
        self.attachment == Attachment::Attached
    }
}

/// A family's sources by name.
pub type Sources = BTreeMap<&'static str, Source>;

/// Whether the source `name` of `sources` is attached.
#[must_use]
pub fn attached(sources: &Sources, name: &str) -> bool {
    sources.get(name).is_some_and(Source::is_attached)
}

impl Kernel {
    /// Attaches every source of `specs`, trying each one's attempts in order, and reports what
    /// became of each. `family` names them in the log.
    pub fn attach_all(&mut self, family: &str, specs: &[SourceSpec]) -> Sources {
        let outcomes = specs
            .iter()
            .map(|spec| match &spec.left_out {
                Some(why) => Outcome::left_out(why),
                None => first_attached(self, &spec.attempts, 0, Vec::new()),
            })
            .collect();
        report(family, specs, outcomes)
    }

    /// Attaches every source of `specs` as the same kind of hook: the best kind every source can
    /// run as, for families whose programs share state that each kind keys its own way (block
    /// requests: by address on raw arguments, by start sector on classic records). Where no kind
    /// suits every source, each runs as its last attempt or is unavailable.
    pub fn attach_alike(&mut self, family: &str, specs: &[SourceSpec]) -> Sources {
        let tried: Vec<SourceSpec> = specs
            .iter()
            .filter(|spec| spec.left_out.is_none())
            .cloned()
            .collect();
        let mut outcomes = attach_as_one_kind(self, &tried).into_iter();
        let outcomes = specs
            .iter()
            .map(|spec| match &spec.left_out {
                Some(why) => Outcome::left_out(why),
                None => outcomes.next().expect("one outcome per source tried"),
            })
            .collect();
        report(family, specs, outcomes)
    }

    /// Whether the operator allows `hook`'s kind (`--hook-kinds`).
    fn allowed(&self, hook: Hook) -> Result<(), String> {
        match hook.kind() {
            Some(kind) if !self.kinds.contains(&kind) => {
                Err(format!("{hook} turned off (--hook-kinds)"))
            }
            _ => Ok(()),
        }
    }

    /// Loads `program` and attaches it to `hook`.
    fn attach(&mut self, program: &str, hook: Hook) -> Result<(), String> {
        match hook {
            Hook::BtfTracepoint(event) => self.attach_btf_tracepoint(program, event),
            Hook::RawTracepoint(event) => self.attach_raw_tracepoint(program, event),
            Hook::Tracepoint { system, event } => self.attach_tracepoint(program, system, event),
            Hook::Fentry(function) => self.attach_fentry(program, function),
            Hook::Kprobe(function) => self.attach_kprobe(program, function),
        }
    }
}

/// What attaching needs of the kernel; a seam so tests can check the order of attempts.
trait Attacher {
    /// Attaches one attempt, if the operator allows its kind and this kernel meets its needs.
    fn try_attempt(&mut self, attempt: &Attempt) -> Result<(), String>;
    /// Detaches and unloads an attempt's program (attached as part of a kind that did not suit
    /// every source of its family).
    fn undo(&mut self, attempt: &Attempt);
}

impl Attacher for Kernel {
    fn try_attempt(&mut self, attempt: &Attempt) -> Result<(), String> {
        self.allowed(attempt.hook)
            .and_then(|()| attempt.needs.as_ref().map_err(Clone::clone))
            .and_then(|_| self.attach(attempt.program, attempt.hook))
    }

    fn undo(&mut self, attempt: &Attempt) {
        if let Err(e) = self.unload(attempt.program, attempt.hook) {
            log::warn!("detaching {} from {}: {e}", attempt.program, attempt.hook);
        }
    }
}

/// What became of one source: the attempt that attached (by index), and why the ones before it
/// did not.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    attached: Option<usize>,
    why: Vec<String>,
    /// Not attached by the operator's choice, not for a lack of the kernel.
    left_out: bool,
}

impl Outcome {
    fn left_out(why: &str) -> Self {
        Self {
            attached: None,
            why: vec![why.to_owned()],
            left_out: true,
        }
    }
}

/// Tries `attempts` from index `from` on until one attaches.
fn first_attached(
    kernel: &mut impl Attacher,
    attempts: &[Attempt],
    from: usize,
    mut why: Vec<String>,
) -> Outcome {
    for (index, attempt) in attempts.iter().enumerate().skip(from) {
        match kernel.try_attempt(attempt) {
            Ok(()) => {
                return Outcome {
                    attached: Some(index),
                    why,
                    left_out: false,
                };
            }
            Err(reason) => why.push(reason),
        }
    }
    Outcome {
        attached: None,
        why,
        left_out: false,
    }
}

/// Attaches `specs` round by round, round `r` being every source's attempt `r` (all of one kind):
/// the first round in which every source attaches is kept; a round in which one fails is undone.
/// The last round, or specs whose attempts do not line up by kind, attach source by source.
fn attach_as_one_kind(kernel: &mut impl Attacher, specs: &[SourceSpec]) -> Vec<Outcome> {
    let rounds = specs.iter().map(|s| s.attempts.len()).min().unwrap_or(0);
    let lined_up = specs.iter().all(|spec| {
        spec.attempts.len() == rounds
            && spec
                .attempts
                .iter()
                .zip(&specs[0].attempts)
                .all(|(a, b)| a.hook.kind() == b.hook.kind())
    });
    let mut why: Vec<Vec<String>> = vec![Vec::new(); specs.len()];
    let mut from = 0;
    if lined_up {
        for round in 0..rounds.saturating_sub(1) {
            let mut attached = Vec::new();
            let mut failure = None;
            for (index, spec) in specs.iter().enumerate() {
                match kernel.try_attempt(&spec.attempts[round]) {
                    Ok(()) => attached.push(index),
                    Err(reason) => {
                        failure = Some(format!("{}: {reason}", spec.name));
                        break;
                    }
                }
            }
            let Some(failure) = failure else {
                return why
                    .into_iter()
                    .map(|why| Outcome {
                        attached: Some(round),
                        why,
                        left_out: false,
                    })
                    .collect();
            };
            for &index in &attached {
                kernel.undo(&specs[index].attempts[round]);
            }
            let kind = specs[0].attempts[round].hook.kind();
            let kind = kind.map_or_else(|| "that hook".to_owned(), |k| k.to_string());
            for why in &mut why {
                why.push(format!("not every source can run as {kind} ({failure})"));
            }
        }
        from = rounds.saturating_sub(1);
    }
    specs
        .iter()
        .zip(why)
        .map(|(spec, why)| first_attached(kernel, &spec.attempts, from, why))
        .collect()
}

/// The sources as attached, each outcome logged: an attempt other than the first at info, an
/// unavailable source as a warning.
fn report(family: &str, specs: &[SourceSpec], outcomes: Vec<Outcome>) -> Sources {
    specs
        .iter()
        .zip(outcomes)
        .filter_map(|(spec, outcome)| {
            let first = spec.attempts.first()?;
            let why = outcome.why.join("; ");
            let source = if let Some(index) = outcome.attached {
                let attempt = &spec.attempts[index];
                if !why.is_empty() {
                    log::info!(
                        "{family} source {} runs as {}: {why}",
                        spec.name,
                        attempt.hook
                    );
                }
                Source {
                    attachment: Attachment::Attached,
                    hook: attempt.hook,
                    program: attempt.program,
                }
            } else {
                if outcome.left_out {
                    log::info!("{family} source {}: {why}", spec.name);
                } else {
                    log::warn!("{family} source {}: unavailable: {why}", spec.name);
                }
                Source {
                    attachment: Attachment::Unavailable(why),
                    hook: first.hook,
                    program: first.program,
                }
            };
            Some((spec.name, source))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_read_as_their_kind_and_place() {
        assert_eq!(
            Hook::tracepoint("sched", "sched_switch").to_string(),
            "tracepoint:sched:sched_switch"
        );
        assert_eq!(
            Hook::Fentry("task_numa_fault").to_string(),
            "fentry:task_numa_fault"
        );
        assert_eq!(
            Hook::BtfTracepoint("sched_switch").to_string(),
            "tp_btf:sched_switch"
        );
        assert_eq!(Hook::RawTracepoint("kvm_pio").to_string(), "raw_tp:kvm_pio");
    }

    #[test]
    fn a_global_is_its_value_s_bytes() {
        let global = Global::new("X", &0x0102_0304_u32);
        assert_eq!(global.bytes(), &[4, 3, 2, 1]);
    }

    #[test]
    fn only_the_globals_of_attempts_whose_needs_are_met_are_set() {
        let spec = SourceSpec::new(
            "s",
            vec![
                Attempt::tracepoint("a", "b", "p", Err("no layout".into())),
                Attempt::tracepoint("a", "c", "q", Ok(vec![Global::new("Q", &1u32)])),
            ],
        );
        let names: Vec<&str> = spec.globals().map(|g| g.name).collect();
        assert_eq!(names, ["Q"]);
    }

    /// Attaches what `refuse` does not name, and keeps a log of what happened.
    struct Fake {
        refuse: Vec<&'static str>,
        log: Vec<String>,
    }

    impl Attacher for Fake {
        fn try_attempt(&mut self, attempt: &Attempt) -> Result<(), String> {
            if self.refuse.contains(&attempt.program) {
                self.log.push(format!("refused {}", attempt.program));
                Err(format!("{} refused", attempt.program))
            } else {
                self.log.push(format!("attached {}", attempt.program));
                Ok(())
            }
        }

        fn undo(&mut self, attempt: &Attempt) {
            self.log.push(format!("undone {}", attempt.program));
        }
    }

    fn three_kinds(name: &'static str, programs: [&'static str; 3]) -> SourceSpec {
        SourceSpec::new(
            name,
            vec![
                Attempt::btf(name, programs[0], Ok(Vec::new())),
                Attempt::raw(name, programs[1], Ok(Vec::new())),
                Attempt::tracepoint("sys", name, programs[2], Ok(Vec::new())),
            ],
        )
    }

    fn specs() -> Vec<SourceSpec> {
        vec![
            three_kinds("start", ["start_btf", "start_raw", "start_tp"]),
            three_kinds("done", ["done_btf", "done_raw", "done_tp"]),
        ]
    }

    #[test]
    fn a_family_runs_as_the_best_kind_every_source_can_run_as() {
        let mut fake = Fake {
            refuse: vec!["done_btf"],
            log: Vec::new(),
        };
        let outcomes = attach_as_one_kind(&mut fake, &specs());
        assert_eq!(
            fake.log,
            [
                "attached start_btf",
                "refused done_btf",
                "undone start_btf",
                "attached start_raw",
                "attached done_raw"
            ]
        );
        assert_eq!(
            outcomes.iter().map(|o| o.attached).collect::<Vec<_>>(),
            [Some(1), Some(1)]
        );
        assert_eq!(
            outcomes[0].why,
            ["not every source can run as tp_btf (done: done_btf refused)"]
        );
    }

    #[test]
    fn without_a_kind_for_all_each_source_takes_its_last_attempt() {
        let mut fake = Fake {
            refuse: vec!["start_btf", "done_raw", "done_tp"],
            log: Vec::new(),
        };
        let outcomes = attach_as_one_kind(&mut fake, &specs());
        let attached: Vec<_> = outcomes.iter().map(|o| o.attached).collect();
        assert_eq!(attached, [Some(2), None]);
        assert!(
            fake.log.contains(&"undone start_raw".to_owned()),
            "{:?}",
            fake.log
        );
        assert_eq!(outcomes[1].why.len(), 3, "{:?}", outcomes[1].why);
    }

    #[test]
    fn sources_each_take_their_own_best_kind_when_they_need_not_agree() {
        let mut fake = Fake {
            refuse: vec!["done_btf"],
            log: Vec::new(),
        };
        let outcomes: Vec<_> = specs()
            .iter()
            .map(|spec| first_attached(&mut fake, &spec.attempts, 0, Vec::new()))
            .collect();
        assert_eq!(
            outcomes.iter().map(|o| o.attached).collect::<Vec<_>>(),
            [Some(0), Some(1)]
        );
    }
}
