//! A typed, lossless-enough model of a QEMU command line.
//!
//! Parsing never fails: the arguments come from `/proc/PID/cmdline` of a QEMU that already
//! accepted them, or from something pretending to be one. What is not understood is kept in
//! [`QemuCommandLine::unknown`], what is broken is described in [`QemuCommandLine::warnings`],
//! and everything else is still modelled.

mod block;
mod devices;
mod disks;
mod machine;
mod opts;
#[cfg(test)]
pub(crate) mod tests;

use serde::Serialize;

pub use block::{AioMode, BlockChild, BlockDev, CacheMode, Drive};
pub use devices::{Device, IoThread, MemoryBackend, NetDev, Nic};
pub use disks::Disk;
use machine::parse_cpu;
pub use machine::{Cpu, CpuFeature, Machine, Memory, Overcommit, Smp};
pub use opts::{Props, parse_bool, parse_size};
use opts::{parse_keyval, parse_props};

/// An option the model does not interpret, as it appeared. Positional arguments (QEMU reads
/// them as the first disk image) have an empty name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawOption {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QemuCommandLine {
    /// `argv[0]`.
    pub binary: Option<String>,
    /// `-name guest=X` or `-name X`: the libvirt domain name when libvirt started it.
    pub name: Option<String>,
    /// `-name …,debug-threads=on`: vCPU threads are named `CPU n/KVM`.
    pub debug_threads: bool,
    /// Lowercase canonical form; `None` when absent or malformed.
    pub uuid: Option<String>,
    pub smp: Option<Smp>,
    pub memory: Option<Memory>,
    pub machine: Option<Machine>,
    /// Accelerators in QEMU's order of preference: from `-accel`/`-enable-kvm` if given,
    /// else `-machine accel=`. Empty means QEMU's built-in default.
    pub accel: Vec<String>,
    pub cpu: Option<Cpu>,
    pub drives: Vec<Drive>,
    pub blockdevs: Vec<BlockDev>,
    pub devices: Vec<Device>,
    pub netdevs: Vec<NetDev>,
    pub memory_backends: Vec<MemoryBackend>,
    pub iothreads: Vec<IoThread>,
    pub overcommit: Option<Overcommit>,
    pub mem_prealloc: bool,
    pub mem_path: Option<String>,
    pub unknown: Vec<RawOption>,
    pub warnings: Vec<String>,
}

/// Options this model interprets; all take an argument.
const MODELLED: &[&str] = &[
    "name",
    "uuid",
    "smp",
    "m",
    "machine",
    "M",
    "accel",
    "cpu",
    "drive",
    "blockdev",
    "device",
    "netdev",
    "object",
    "overcommit",
    "realtime",
    "mem-path",
];

/// QEMU options without an argument, so an unknown option's value is not mistaken for one of
/// these (and the other way round).
const FLAGS: &[&str] = &[
    "S",
    "s",
    "snapshot",
    "no-user-config",
    "nodefaults",
    "nodefconfig",
    "no-shutdown",
    "no-reboot",
    "no-acpi",
    "no-hpet",
    "no-fd-bootchk",
    "enable-kvm",
    "mem-prealloc",
    "usb",
    "nographic",
    "daemonize",
    "full-screen",
    "no-frame",
    "alt-grab",
    "ctrl-grab",
    "no-quit",
    "sdl",
    "curses",
    "portrait",
    "enable-fips",
    "win2k-hack",
    "rtc-td-hack",
    "no-kvm",
    "no-kvm-irqchip",
    "no-kvm-pit",
    "no-kvm-pit-reinjection",
    "enable-nesting",
    "only-migratable",
    "preconfig",
    "semihosting",
    "old-param",
    "singlestep",
    "one-insn-per-tb",
    "xen-attach",
    "h",
    "help",
    "version",
    "no-user-config",
];

/// Whether `arg` is an option rather than a value. `-1` is a number, not an option.
fn looks_like_option(arg: &str) -> bool {
    let mut chars = arg.chars();
    chars.next() == Some('-')
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '-')
}

fn option_name(arg: &str) -> Option<&str> {
    if !looks_like_option(arg) || arg == "--" {
        return None;
    }
    let name = arg.strip_prefix("--").unwrap_or(&arg[1..]);
    (!name.is_empty()).then_some(name)
}

fn canonical_uuid(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let ok = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    ok.then(|| s.to_ascii_lowercase())
}

impl QemuCommandLine {
    /// Parses `argv` as QEMU would see it (`argv[0]` is the binary).
    #[must_use]
    pub fn parse<A: AsRef<[u8]>>(args: &[A]) -> Self {
        let mut cmd = Self::default();
        let mut decoded: Vec<String> = Vec::with_capacity(args.len());
        for (i, arg) in args.iter().map(AsRef::as_ref).enumerate() {
            let text = String::from_utf8_lossy(arg);
            if matches!(text, std::borrow::Cow::Owned(_)) {
                cmd.warnings
                    .push(format!("argument {i} is not valid UTF-8: \"{text}\""));
            }
            decoded.push(text.into_owned());
        }
        let Some((binary, rest)) = decoded.split_first() else {
            cmd.warnings.push("the command line is empty".into());
            return cmd;
        };
        cmd.binary = Some(binary.clone());
        let mut accel = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let arg = &rest[i];
            i += 1;
            let Some(name) = option_name(arg) else {
                cmd.unknown.push(RawOption {
                    name: String::new(),
                    value: Some(arg.clone()),
                });
                continue;
            };
            if MODELLED.contains(&name) {
                if let Some(value) = rest.get(i).filter(|v| !looks_like_option(v)) {
                    i += 1;
                    cmd.apply(name, value, &mut accel);
                } else {
                    cmd.warnings
                        .push(format!("option -{name} is missing its argument"));
                    cmd.unknown.push(RawOption {
                        name: name.to_owned(),
                        value: None,
                    });
                }
            } else if name == "enable-kvm" {
                accel.push("kvm".to_owned());
            } else if name == "mem-prealloc" {
                cmd.mem_prealloc = true;
            } else {
                let value = if FLAGS.contains(&name) {
                    None
                } else {
                    rest.get(i).filter(|v| !looks_like_option(v)).cloned()
                };
                i += usize::from(value.is_some());
                cmd.unknown.push(RawOption {
                    name: name.to_owned(),
                    value,
                });
            }
        }
        cmd.accel = if accel.is_empty() {
            cmd.machine
                .as_ref()
                .map(|m| m.accel.clone())
                .unwrap_or_default()
        } else {
            accel
        };
        cmd
    }

    fn unknown_with_warning(&mut self, name: &str, value: &str, warning: &str) {
        self.warnings.push(format!("-{name}: {warning}"));
        self.unknown.push(RawOption {
            name: name.to_owned(),
            value: Some(value.to_owned()),
        });
    }

    fn apply(&mut self, name: &str, value: &str, accel: &mut Vec<String>) {
        match name {
            "name" => {
                let props = parse_keyval(value, Some("guest"));
                self.name = props
                    .get("guest")
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned);
                self.debug_threads = props.get_bool("debug-threads").unwrap_or(false);
            }
            "uuid" => {
                self.uuid = canonical_uuid(value);
                if self.uuid.is_none() {
                    self.warnings
                        .push(format!("-uuid: \"{value}\" is not a UUID"));
                }
            }
            "smp" => self.apply_smp(value),
            "m" => self.apply_memory(value),
            "machine" | "M" => {
                let mut props = parse_keyval(value, Some("type"));
                let machine = self.machine.get_or_insert_with(Machine::default);
                if let Some(t) = props.take("type") {
                    machine.machine_type = Some(t);
                }
                if let Some(a) = props.take("accel") {
                    machine.accel = a.split(':').map(str::to_owned).collect();
                }
                for (k, v) in props.iter() {
                    machine.props.push(k, v);
                }
            }
            "accel" => {
                if let Some(a) = parse_keyval(value, Some("accel")).get("accel") {
                    accel.push(a.to_owned());
                }
            }
            "cpu" => self.cpu = Some(parse_cpu(value)),
            "mem-path" => self.mem_path = Some(value.to_owned()),
            "overcommit" | "realtime" => self.apply_overcommit(name, value),
            _ => self.apply_structured(name, value),
        }
    }

    /// Options that libvirt may write as JSON.
    fn apply_structured(&mut self, name: &str, value: &str) {
        let implied = match name {
            "device" => Some("driver"),
            "netdev" => Some("type"),
            "object" => Some("qom-type"),
            _ => None,
        };
        let mut props = match parse_props(value, implied) {
            Ok(props) => props,
            Err(e) => return self.unknown_with_warning(name, value, &e),
        };
        match name {
            "drive" => self.drives.push(Drive::from_props(props)),
            "blockdev" => self.blockdevs.push(BlockDev::from_props(props)),
            "device" => self.devices.push(Device::from_props(props)),
            "netdev" => self.netdevs.push(NetDev::from_props(props)),
            _ => match props.take("qom-type") {
                Some(t) if t.starts_with("memory-backend-") => {
                    let backend = MemoryBackend::from_props(t, props, &mut self.warnings);
                    self.memory_backends.push(backend);
                }
                Some(t) if t == "iothread" => self.iothreads.push(IoThread {
                    id: props.take("id"),
                    props,
                }),
                _ => self.unknown.push(RawOption {
                    name: name.to_owned(),
                    value: Some(value.to_owned()),
                }),
            },
        }
    }

    /// vCPUs present at start, from `-smp` (QEMU's default is 1).
    #[must_use]
    pub fn boot_cpus(&self) -> u32 {
        self.smp.as_ref().and_then(Smp::boot_cpus).unwrap_or(1)
    }

    /// Whether KVM is among the accelerators QEMU was asked to try.
    #[must_use]
    pub fn wants_kvm(&self) -> bool {
        self.accel.iter().any(|a| a == "kvm")
    }
}
