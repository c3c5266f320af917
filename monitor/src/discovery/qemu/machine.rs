//! The machine-wide options: `-smp`, `-m`, `-machine`, `-cpu`, `-overcommit`.

use serde::Serialize;

use super::QemuCommandLine;
use super::opts::{Props, parse_bool, parse_keyval, parse_size, split_elements};

/// `-smp`. Fields are `None` when not given; QEMU then derives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Smp {
    pub cpus: Option<u32>,
    pub sockets: Option<u32>,
    pub dies: Option<u32>,
    pub clusters: Option<u32>,
    pub modules: Option<u32>,
    pub cores: Option<u32>,
    pub threads: Option<u32>,
    pub maxcpus: Option<u32>,
}

impl Smp {
    /// vCPUs present at start: `cpus`, else `maxcpus`, else the product of the topology.
    #[must_use]
    pub fn boot_cpus(&self) -> Option<u32> {
        let topology = [
            self.sockets,
            self.dies,
            self.clusters,
            self.modules,
            self.cores,
            self.threads,
        ];
        self.cpus.or(self.maxcpus).or_else(|| {
            topology.iter().any(Option::is_some).then(|| {
                topology
                    .iter()
                    .try_fold(1u32, |acc, n| acc.checked_mul(n.unwrap_or(1)))
            })?
        })
    }
}

/// `-m`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub size_bytes: Option<u64>,
    /// Hot-plug slots.
    pub slots: Option<u32>,
    pub maxmem_bytes: Option<u64>,
}

/// `-machine`/`-M`; repeated options are merged as QEMU does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Machine {
    #[serde(rename = "type")]
    pub machine_type: Option<String>,
    /// `accel=kvm:tcg`, in order of preference.
    pub accel: Vec<String>,
    pub props: Props,
}

/// A CPU feature switched on (`+x`, `x`, `x=on`) or off (`-x`, `x=off`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuFeature {
    pub name: String,
    pub enabled: bool,
}

/// `-cpu MODEL,…`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub model: String,
    /// Boolean properties. QEMU itself does not tell feature flags from other boolean CPU
    /// properties (`migratable=on`), so neither does this.
    pub features: Vec<CpuFeature>,
    /// Non-boolean properties (`hv_spinlocks=0x1000`, `phys-bits=43`).
    pub props: Props,
}

/// `-overcommit`, and the older `-realtime mlock=` it replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Overcommit {
    /// `on`, `off` or `on-fault`.
    pub mem_lock: Option<String>,
    pub cpu_pm: Option<bool>,
    pub props: Props,
}

impl QemuCommandLine {
    pub(super) fn apply_smp(&mut self, value: &str) {
        let props = parse_keyval(value, Some("cpus"));
        let mut smp = Smp::default();
        for (key, v) in props.iter() {
            let slot = match key {
                "cpus" => &mut smp.cpus,
                "sockets" => &mut smp.sockets,
                "dies" => &mut smp.dies,
                "clusters" => &mut smp.clusters,
                "modules" => &mut smp.modules,
                "cores" => &mut smp.cores,
                "threads" => &mut smp.threads,
                "maxcpus" => &mut smp.maxcpus,
                _ => {
                    self.warnings
                        .push(format!("-smp: unknown property \"{key}\""));
                    continue;
                }
            };
            match v.parse() {
                Ok(n) => *slot = Some(n),
                Err(_) => self
                    .warnings
                    .push(format!("-smp: {key}=\"{v}\" is not a number")),
            }
        }
        self.smp = Some(smp);
    }

    pub(super) fn apply_memory(&mut self, value: &str) {
        let props = parse_keyval(value, Some("size"));
        let mut memory = self.memory.take().unwrap_or_default();
        for (key, v) in props.iter() {
            match key {
                // A bare number is MiB for -m, bytes for maxmem.
                "size" => memory.size_bytes = parse_size(v, 1 << 20),
                "maxmem" => memory.maxmem_bytes = parse_size(v, 1),
                "slots" => memory.slots = v.parse().ok(),
                _ => {
                    self.warnings
                        .push(format!("-m: unknown property \"{key}\""));
                    continue;
                }
            }
            let parsed = match key {
                "size" => memory.size_bytes.is_some(),
                "maxmem" => memory.maxmem_bytes.is_some(),
                _ => memory.slots.is_some(),
            };
            if !parsed {
                self.warnings
                    .push(format!("-m: {key}=\"{v}\" is not valid"));
            }
        }
        self.memory = Some(memory);
    }

    pub(super) fn apply_overcommit(&mut self, name: &str, value: &str) {
        let mut props = parse_keyval(value, None);
        let overcommit = self.overcommit.get_or_insert_with(Overcommit::default);
        if name == "realtime" {
            // -realtime mlock=on was the spelling of -overcommit mem-lock=on before QEMU 6.0.
            if let Some(mlock) = props.take("mlock") {
                overcommit.mem_lock.get_or_insert(mlock);
            }
        } else {
            if let Some(v) = props.take("mem-lock") {
                overcommit.mem_lock = Some(v);
            }
            if let Some(v) = props.take("cpu-pm") {
                overcommit.cpu_pm = parse_bool(&v);
            }
        }
        for (k, v) in props.iter() {
            overcommit.props.push(k, v);
        }
    }
}

pub(super) fn parse_cpu(value: &str) -> Cpu {
    let mut elements = split_elements(value).into_iter();
    let mut cpu = Cpu {
        model: elements.next().unwrap_or_default(),
        ..Cpu::default()
    };
    for element in elements {
        let feature = |name: &str, enabled| CpuFeature {
            name: name.to_owned(),
            enabled,
        };
        if let Some(name) = element.strip_prefix('+') {
            cpu.features.push(feature(name, true));
        } else if let Some(name) = element.strip_prefix('-') {
            cpu.features.push(feature(name, false));
        } else if let Some((key, v)) = element.split_once('=') {
            match parse_bool(v) {
                Some(enabled) => cpu.features.push(feature(key, enabled)),
                None => cpu.props.push(key, v),
            }
        } else if !element.is_empty() {
            cpu.features.push(feature(&element, true));
        }
    }
    cpu
}
