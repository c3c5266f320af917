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
}

impl SourceSpec {
    /// A source with one way to run it.
    #[must_use]
    pub fn one(name: &'static str, attempt: Attempt) -> Self {
        Self {
            name,
            attempts: vec![attempt],
        }
    }

    /// A source with several ways to run it, best first.
    #[must_use]
    pub fn new(name: &'static str, attempts: Vec<Attempt>) -> Self {
        Self { name, attempts }
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
        specs
            .iter()
            .filter_map(|spec| {
                let first = spec.attempts.first()?;
                let mut why = Vec::new();
                for attempt in &spec.attempts {
                    match self
                        .allowed(attempt.hook)
                        .and_then(|()| attempt.needs.as_ref().map_err(Clone::clone))
                        .and_then(|_| self.attach(attempt.program, attempt.hook))
                    {
                        Ok(()) => {
                            if !why.is_empty() {
                                log::info!(
                                    "{family} source {} runs as {}: {}",
                                    spec.name,
                                    attempt.hook,
                                    why.join("; ")
                                );
                            }
                            let source = Source {
                                attachment: Attachment::Attached,
                                hook: attempt.hook,
                                program: attempt.program,
                            };
                            return Some((spec.name, source));
                        }
                        Err(reason) => why.push(reason),
                    }
                }
                let why = why.join("; ");
                log::warn!("{family} source {}: unavailable: {why}", spec.name);
                let source = Source {
                    attachment: Attachment::Unavailable(why),
                    hook: first.hook,
                    program: first.program,
                };
                Some((spec.name, source))
            })
            .collect()
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
        let spec = SourceSpec {
            name: "s",
            attempts: vec![
                Attempt::tracepoint("a", "b", "p", Err("no layout".into())),
                Attempt::tracepoint("a", "c", "q", Ok(vec![Global::new("Q", &1u32)])),
            ],
        };
        let names: Vec<&str> = spec.globals().map(|g| g.name).collect();
        assert_eq!(names, ["Q"]);
    }
}
