//! Loading the kernel programs and attaching them, one source at a time.
//!
//! Loading is all-or-nothing (it fails only for reasons that stop every signal: no privileges,
//! no BPF support); attaching is per program, through the families' hook tables ([`hooks`]), so
//! a tracepoint missing on this kernel turns into an "unavailable: why" for the figures that need
//! it while the others keep working.

pub mod batch;
pub mod hooks;
pub mod mapped;
mod prog_info;

mod diagnostics;
pub mod sizing;

use std::{collections::BTreeMap, os::fd::AsFd as _};

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    maps::Map,
    programs::{BtfTracePoint, FEntry, KProbe, RawTracePoint, TracePoint},
};

use crate::privileges;

/// The object built from `monitor-ebpf` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// The object's bytes, for tools that load some of its programs themselves: `cargo xtask bench`
/// loads the floor programs from it (`monitor_common::BENCH_NAMES`), which the agent never does.
#[must_use]
pub fn object() -> &'static [u8] {
    OBJECT
}

/// The loaded kernel programs and their maps.
pub struct Kernel {
    ebpf: Ebpf,
    /// The kinds of tracepoint program the operator allows (`--hook-kinds`).
    kinds: Vec<hooks::HookKind>,
    /// The kernel's own BTF as aya reads it, for typing BTF tracepoints, until released.
    btf: Option<Result<aya::Btf, String>>,
    /// What the programs logged (rare conditions, see `monitor_common::diagnostics`); `None` when
    /// the log could not be opened (the programs still run).
    diagnostics: Option<diagnostics::KernelLog>,
}

impl Drop for Kernel {
    /// Detaching a program attached through a perf event (a classic tracepoint, a kprobe) waits
    /// for the kernel's RCU grace periods, 80–90 ms each on the test machine: one after another,
    /// every kvmtop exit waited a third of a second after its output. They are detached side by
    /// side, so the waits overlap; the other programs detach at once, as aya drops them.
    fn drop(&mut self) {
        let slow: Vec<&mut aya::programs::Program> = self
            .ebpf
            .programs_mut()
            .map(|(_, program)| program)
            .filter(|program| {
                matches!(
                    program,
                    aya::programs::Program::TracePoint(_) | aya::programs::Program::KProbe(_)
                )
            })
            .collect();
        std::thread::scope(|scope| {
            for program in slow {
                // Unloading one that was never attached, or twice, is a no-op.
                scope.spawn(move || match program {
                    aya::programs::Program::TracePoint(p) => p.unload(),
                    aya::programs::Program::KProbe(p) => p.unload(),
                    _ => Ok(()),
                });
            }
        });
    }
}

impl Kernel {
    /// Loads the object with `globals` (the record layouts and settings of the families' hook
    /// tables) set before the kernel sees the programs; sources will run only as the tracepoint
    /// program `kinds` allow.
    pub fn load(globals: &[hooks::Global], kinds: &[hooks::HookKind]) -> anyhow::Result<Self> {
        // Parsed once for kvmtop: the loader relocates the object against it, and BTF
        // tracepoints are typed from it at attach time (each parse takes ~20 MiB while it
        // lives). aya's loader parses the same file again when it is created, a parse kvmtop
        // cannot ask it to skip (and then replaces); the two run side by side, which takes
        // ~60 ms off every start on a 2-CPU host without raising the peak memory (both parses
        // were alive together before too).
        let (btf, mut loader) = std::thread::scope(|scope| {
            let parse = scope.spawn(aya::Btf::from_sys_fs);
            let loader = EbpfLoader::new();
            (parse.join(), loader)
        });
        let btf = match btf {
            Ok(parsed) => parsed.map_err(|e| {
                format!("the kernel's BTF (/sys/kernel/btf/vmlinux) is unreadable: {e}")
            }),
            Err(_) => Err("parsing the kernel's BTF (/sys/kernel/btf/vmlinux) panicked".into()),
        };
        loader.btf(btf.as_ref().ok());
        for global in globals {
            loader.override_global(global.name, global.bytes(), true);
        }
        // The maps read whole every window are sized for this host, not the reference one.
        let cpus = sizing::host_cpus();
        for map in sizing::MAPS.iter().filter(|m| m.scales()) {
            loader.map_max_entries(map.name, map.loaded_capacity(cpus));
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| {
            let hint = privileges::hint_for_load_error(&e.to_string());
            anyhow::anyhow!("cannot load kvmtop's eBPF programs: {e}{hint}")
        })?;
        let diagnostics = diagnostics::KernelLog::open(&mut ebpf)
            .inspect_err(|e| log::warn!("the kernel programs' diagnostics are unavailable: {e}"))
            .ok();
        Ok(Self {
            ebpf,
            kinds: kinds.to_vec(),
            btf: Some(btf),
            diagnostics,
        })
    }

    /// What the kernel programs logged since the last call: rare conditions such as the first
    /// full map of a family, once each.
    pub fn diagnostics(&mut self) -> Vec<String> {
        self.diagnostics
            .as_mut()
            .map(diagnostics::KernelLog::drain)
            .unwrap_or_default()
    }

    /// A program of the object, as its type; the error says which and why, for the user.
    fn program<'p, T>(&'p mut self, program: &str) -> Result<&'p mut T, String>
    where
        &'p mut T: TryFrom<&'p mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        self.ebpf
            .program_mut(program)
            .ok_or_else(|| format!("program {program} missing from the object"))?
            .try_into()
            .map_err(|e| format!("program {program}: {e}"))
    }

    /// Loads and attaches a classic tracepoint program. The error says why, for the user.
    fn attach_tracepoint(
        &mut self,
        program: &str,
        system: &str,
        event: &str,
    ) -> Result<(), String> {
        let prog: &mut TracePoint = self.program(program)?;
        prog.load()
            .map_err(|e| format!("the kernel rejected program {program}: {e}"))?;
        prog.attach(system, event)
            .map(drop)
            .map_err(|e| format!("cannot attach to tracepoint {system}:{event}: {e}"))
    }

    /// Drops the kernel's BTF read for attaching BTF tracepoints: nothing is attached later.
    pub fn release_btf(&mut self) {
        self.btf = None;
    }

    /// Loads and attaches a BTF tracepoint program, typed from the kernel's own BTF.
    fn attach_btf_tracepoint(&mut self, program: &str, event: &str) -> Result<(), String> {
        self.with_btf(|kernel, btf| {
            let prog: &mut BtfTracePoint = kernel.program(program)?;
            prog.load(event, btf)
                .map_err(|e| format!("tp_btf on {event} rejected: {}", chain(&e)))?;
            prog.attach()
                .map(drop)
                .map_err(|e| format!("cannot attach tp_btf to {event}: {}", chain(&e)))
        })
    }

    /// Runs `load` with the kernel's BTF as aya reads it: the one parsed for loading, taken out
    /// while the programs are borrowed and put back (never copied), or parsed again after
    /// [`Self::release_btf`].
    fn with_btf(
        &mut self,
        load: impl FnOnce(&mut Self, &aya::Btf) -> Result<(), String>,
    ) -> Result<(), String> {
        let btf = self.btf.take().unwrap_or_else(|| {
            aya::Btf::from_sys_fs().map_err(|e| {
                format!("the kernel's BTF (/sys/kernel/btf/vmlinux) is unreadable: {e}")
            })
        });
        let result = match &btf {
            Ok(parsed) => load(self, parsed),
            Err(why) => Err(why.clone()),
        };
        self.btf = Some(btf);
        result
    }

    /// Loads and attaches a raw tracepoint program (vmlinux or module tracepoint).
    fn attach_raw_tracepoint(&mut self, program: &str, event: &str) -> Result<(), String> {
        let prog: &mut RawTracePoint = self.program(program)?;
        prog.load()
            .map_err(|e| format!("the kernel rejected program {program}: {}", chain(&e)))?;
        prog.attach(event)
            .map(drop)
            .map_err(|e| format!("cannot attach raw_tp to {event}: {}", chain(&e)))
    }

    /// Loads and attaches an fentry program to a kernel function, typed from the kernel's BTF.
    fn attach_fentry(&mut self, program: &str, function: &str) -> Result<(), String> {
        self.with_btf(|kernel, btf| {
            let prog: &mut FEntry = kernel.program(program)?;
            prog.load(function, btf)
                .map_err(|e| format!("fentry on {function} rejected: {}", chain(&e)))?;
            prog.attach()
                .map(drop)
                .map_err(|e| format!("cannot attach fentry to {function}: {}", chain(&e)))
        })
    }

    /// Loads and attaches a kprobe program to a kernel function.
    fn attach_kprobe(&mut self, program: &str, function: &str) -> Result<(), String> {
        let prog: &mut KProbe = self.program(program)?;
        prog.load()
            .map_err(|e| format!("the kernel rejected program {program}: {}", chain(&e)))?;
        prog.attach(function, 0)
            .map(drop)
            .map_err(|e| format!("cannot attach a kprobe to {function}: {}", chain(&e)))
    }

    /// Detaches and unloads a program attached to `hook`.
    fn unload(&mut self, program: &str, hook: hooks::Hook) -> Result<(), String> {
        use hooks::Hook;
        let unloaded = match hook {
            Hook::BtfTracepoint(_) => self.program::<BtfTracePoint>(program)?.unload(),
            Hook::RawTracepoint(_) => self.program::<RawTracePoint>(program)?.unload(),
            Hook::Tracepoint { .. } => self.program::<TracePoint>(program)?.unload(),
            Hook::Fentry(_) => self.program::<FEntry>(program)?.unload(),
            Hook::Kprobe(_) => self.program::<KProbe>(program)?.unload(),
        };
        unloaded.map_err(|e| chain(&e))
    }

    /// Loads (never attaches) a raw tracepoint harness program so tests can drive the kernel-side
    /// logic with `BPF_PROG_TEST_RUN`.
    pub fn load_harness(&mut self, program: &str) -> anyhow::Result<&RawTracePoint> {
        let prog: &mut RawTracePoint = self.program(program).map_err(anyhow::Error::msg)?;
        if prog.fd().is_err() {
            prog.load().with_context(|| format!("loading {program}"))?;
        }
        Ok(prog)
    }

    /// Per loaded program, the events the kernel did not run it for because another BPF program
    /// was already running on that CPU (`recursion_misses`: classic tracepoint programs do not
    /// nest, so an event in an interrupt that arrives while any such program runs is skipped).
    /// Running totals; programs whose count cannot be read are left out.
    #[must_use]
    pub fn skipped_events(&self) -> BTreeMap<String, u64> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                let fd = program.fd().ok()?;
                Some((name.to_owned(), prog_info::recursion_misses(fd.as_fd())?))
            })
            .collect()
    }

    /// Takes ownership of a map, typed.
    pub fn take_map<T>(&mut self, name: &str) -> anyhow::Result<T>
    where
        T: TryFrom<Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .take_map(name)
            .with_context(|| format!("map {name} missing from the object"))?;
        T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
    }
}

/// An error and its causes, one after the other: aya's attach errors name a file in their own
/// message and keep the reason in their source.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    //! The agent finds programs, maps and globals by name; the names live once, in
    //! monitor-common. These tests hold the built object to those lists, both ways, so a program
    //! renamed on one side fails here instead of turning into "missing from the object" at run
    //! time.

    use std::collections::BTreeSet;

    use monitor_common::{BENCH_NAMES, FAMILY_NAMES, Names, SHARED_MAPS};
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

    use super::OBJECT;

    /// The object's symbols of one kind: programs (functions outside `.text`), maps (in the
    /// `maps` section) and globals (data in `.rodata`, `.data` or `.bss`).
    fn symbols(kind: &str) -> BTreeSet<String> {
        let file = object::File::parse(OBJECT).expect("the embedded object is ELF");
        file.symbols()
            .filter_map(|symbol| {
                let section = file.section_by_index(symbol.section_index()?).ok()?;
                let section = section.name().ok()?;
                let wanted = match kind {
                    "program" => symbol.kind() == SymbolKind::Text && section != ".text",
                    "map" => section == "maps" || section == ".maps",
                    "global" => {
                        symbol.kind() == SymbolKind::Data
                            && [".rodata", ".data", ".bss"]
                                .iter()
                                .any(|prefix| section.starts_with(prefix))
                    }
                    _ => unreachable!(),
                };
                (wanted && symbol.is_global()).then(|| symbol.name().ok().map(str::to_owned))?
            })
            .collect()
    }

    /// The names of one kind, over every family and the bench's programs, plus `more`.
    fn listed(kind: fn(&Names) -> &'static [&'static str], more: &[&str]) -> BTreeSet<String> {
        FAMILY_NAMES
            .iter()
            .chain(BENCH_NAMES)
            .flat_map(|names| kind(names).iter())
            .chain(more)
            .map(|name| (*name).to_owned())
            .collect()
    }

    #[test]
    fn every_program_of_the_object_is_listed_by_its_family_and_every_listed_one_exists() {
        let listed = listed(|n| n.programs, &[]);
        assert_eq!(symbols("program"), listed);
    }

    /// The agent attaches only what the families list; the bench's empty programs must never be
    /// among them.
    #[test]
    fn no_family_lists_a_bench_program() {
        let bench: BTreeSet<&str> = BENCH_NAMES
            .iter()
            .flat_map(|names| names.programs.iter().copied())
            .collect();
        for names in FAMILY_NAMES {
            for program in names.programs {
                assert!(!bench.contains(program), "{program} is a bench program");
            }
        }
        assert!(!bench.is_empty());
    }

    #[test]
    fn every_map_of_the_object_is_listed_by_its_family_and_every_listed_one_exists() {
        let listed = listed(|n| n.maps, SHARED_MAPS);
        assert_eq!(symbols("map"), listed);
    }

    #[test]
    fn every_global_the_agent_sets_exists_in_the_object() {
        let listed = listed(|n| n.globals, &[]);
        let globals = symbols("global");
        let missing: Vec<_> = listed.difference(&globals).collect();
        assert!(
            missing.is_empty(),
            "globals missing from the object: {missing:?}"
        );
    }
}
