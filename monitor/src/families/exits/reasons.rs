//! Exit reason numbers → names, for VMX (Intel), SVM (AMD) and KVM's userspace exits.
//!
//! The VMX and SVM tables are the kernel's own (`VMX_EXIT_REASONS`, `SVM_EXIT_REASONS`), kept as
//! data in `vmx.tsv` / `svm.tsv` beside this file. A code missing from the tables is never dropped:
//! it is counted and shown as its number.

use std::{borrow::Cow, collections::HashMap, fmt, sync::LazyLock};

use monitor_common::exits::{
    USERSPACE_ERRNO_FLAG,
    latency::{HALT_BLOCKED, HALT_SPURIOUS},
};

use crate::model::{ExitSource, Isa};

static VMX_NAMES: LazyLock<HashMap<u64, &'static str>> =
    LazyLock::new(|| parse_table(include_str!("vmx.tsv"), 10));
static SVM_NAMES: LazyLock<HashMap<u64, &'static str>> =
    LazyLock::new(|| parse_table(include_str!("svm.tsv"), 16));

/// `KVM_EXIT_*` from the uapi `linux/kvm.h`, indexed by value.
const USERSPACE_NAMES: [&str; 40] = [
    "UNKNOWN",
    "EXCEPTION",
    "IO",
    "HYPERCALL",
    "DEBUG",
    "HLT",
    "MMIO",
    "IRQ_WINDOW_OPEN",
    "SHUTDOWN",
    "FAIL_ENTRY",
    "INTR",
    "SET_TPR",
    "TPR_ACCESS",
    "S390_SIEIC",
    "S390_RESET",
    "DCR",
    "NMI",
    "INTERNAL_ERROR",
    "OSI",
    "PAPR_HCALL",
    "S390_UCONTROL",
    "WATCHDOG",
    "S390_TSCH",
    "EPR",
    "SYSTEM_EVENT",
    "S390_STSI",
    "IOAPIC_EOI",
    "HYPERV",
    "ARM_NISV",
    "X86_RDMSR",
    "X86_WRMSR",
    "DIRTY_RING_FULL",
    "AP_RESET_HOLD",
    "X86_BUS_LOCK",
    "XEN",
    "RISCV_SBI",
    "RISCV_CSR",
    "NOTIFY",
    "LOONGARCH_IOCSR",
    "MEMORY_FAULT",
];

const VMX_FAILED_VMENTRY: u64 = 0x8000_0000;
const VMX_ENCLAVE_MODE: u64 = 1 << 27;
const EINTR: u64 = 4;

/// A decoded exit reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitReason {
    /// Intel: basic reason (low 16 bits) and the flags that matter for diagnosis.
    Vmx {
        basic: u16,
        failed_vmentry: bool,
        enclave: bool,
    },
    /// AMD: the exit code as is.
    Svm { code: u64 },
    /// A hardware exit whose ISA the kernel did not say (neither VMX nor SVM).
    OtherIsa { isa: u32, code: u64 },
    /// `KVM_RUN` returned to the VMM with `KVM_EXIT_<n>`.
    Userspace { exit: u32 },
    /// `KVM_RUN` returned `-errno` (e.g. EINTR when a signal was pending).
    UserspaceError { errno: u32 },
    /// The vCPU halted and was woken, after KVM polled (`blocked` false) or after it gave up
    /// polling and blocked; `spurious` when KVM found nothing to do on waking.
    Halt { blocked: bool, spurious: bool },
}

impl ExitReason {
    /// Decodes the raw `(source, isa, reason)` triple of an exit-map key.
    #[must_use]
    pub fn decode(source: ExitSource, isa: u32, raw: u64) -> Self {
        match source {
            ExitSource::Userspace if raw & USERSPACE_ERRNO_FLAG != 0 => Self::UserspaceError {
                errno: truncate_u32(raw & 0xffff_ffff),
            },
            ExitSource::Userspace => Self::Userspace {
                exit: truncate_u32(raw),
            },
            ExitSource::Halt => Self::Halt {
                blocked: raw & HALT_BLOCKED != 0,
                spurious: raw & HALT_SPURIOUS != 0,
            },
            ExitSource::KvmExit => match isa {
                1 => Self::Vmx {
                    basic: u16::try_from(raw & 0xffff).unwrap_or(u16::MAX),
                    failed_vmentry: raw & VMX_FAILED_VMENTRY != 0,
                    enclave: raw & VMX_ENCLAVE_MODE != 0,
                },
                // Older kernels record the u32 exit code; -1 (invalid guest state) arrives either
                // as 0xffffffff or as u64::MAX. Normalise to the u32 spelling of the table.
                2 if raw == u64::MAX => Self::Svm { code: 0xffff_ffff },
                2 => Self::Svm { code: raw },
                isa => Self::OtherIsa { isa, code: raw },
            },
        }
    }

    #[must_use]
    pub fn source(self) -> ExitSource {
        match self {
            Self::Vmx { .. } | Self::Svm { .. } | Self::OtherIsa { .. } => ExitSource::KvmExit,
            Self::Userspace { .. } | Self::UserspaceError { .. } => ExitSource::Userspace,
            Self::Halt { .. } => ExitSource::Halt,
        }
    }

    #[must_use]
    pub fn isa(self) -> Option<Isa> {
        match self {
            Self::Vmx { .. } => Some(Isa::Vmx),
            Self::Svm { .. } => Some(Isa::Svm),
            _ => None,
        }
    }

    /// The number users look up in the SDM/APM or `linux/kvm.h`: the VMX basic reason, the SVM
    /// exit code, the `KVM_EXIT_*` value, or the errno.
    #[must_use]
    pub fn code(self) -> u64 {
        match self {
            Self::Vmx { basic, .. } => u64::from(basic),
            Self::Svm { code } | Self::OtherIsa { code, .. } => code,
            Self::Userspace { exit } => u64::from(exit),
            Self::UserspaceError { errno } => u64::from(errno),
            Self::Halt { blocked, spurious } => u64::from(blocked) | u64::from(spurious) << 1,
        }
    }

    /// The kernel's name for the reason (`IO_INSTRUCTION`, `npf`, `IO`), or its number when the
    /// tables do not know it.
    pub fn name(self) -> Cow<'static, str> {
        match self {
            Self::Vmx {
                basic,
                failed_vmentry,
                enclave,
            } => {
                let base = VMX_NAMES
                    .get(&u64::from(basic))
                    .map_or_else(|| Cow::Owned(basic.to_string()), |n| Cow::Borrowed(*n));
                match (failed_vmentry, enclave) {
                    (false, false) => base,
                    (true, _) => Cow::Owned(format!("{base} FAILED_VMENTRY")),
                    (false, true) => Cow::Owned(format!("{base} ENCLAVE")),
                }
            }
            Self::Svm { code } => SVM_NAMES
                .get(&code)
                .map_or_else(|| Cow::Owned(format!("{code:#x}")), |n| Cow::Borrowed(*n)),
            Self::OtherIsa { isa, code } => Cow::Owned(format!("isa{isa}:{code:#x}")),
            Self::Userspace { exit } => USERSPACE_NAMES
                .get(exit as usize)
                .map_or_else(|| Cow::Owned(exit.to_string()), |n| Cow::Borrowed(*n)),
            Self::UserspaceError { errno: 4 } => Cow::Borrowed("RESTART_EINTR"),
            Self::UserspaceError { errno } => Cow::Owned(format!("ERROR_ERRNO_{errno}")),
            Self::Halt { blocked, spurious } => Cow::Borrowed(match (blocked, spurious) {
                (false, false) => "HALT_POLLED",
                (true, false) => "HALT_BLOCKED",
                (false, true) => "HALT_POLLED_SPURIOUS",
                (true, true) => "HALT_BLOCKED_SPURIOUS",
            }),
        }
    }

    /// True for a `KVM_RUN` that returned -EINTR: the VMM was interrupted by a signal (e.g. to
    /// pause or kick a vCPU), not a guest exit.
    #[must_use]
    pub fn is_restart(self) -> bool {
        matches!(self, Self::UserspaceError { errno } if u64::from(errno) == EINTR)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

fn truncate_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Parses `number<TAB>name` lines; `#` starts a comment line.
fn parse_table(text: &'static str, radix: u32) -> HashMap<u64, &'static str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (number, name) = line.split_once('\t')?;
            let digits = number.trim().trim_start_matches("0x");
            Some((u64::from_str_radix(digits, radix).ok()?, name.trim()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmx(raw: u64) -> ExitReason {
        ExitReason::decode(ExitSource::KvmExit, 1, raw)
    }
    fn svm(raw: u64) -> ExitReason {
        ExitReason::decode(ExitSource::KvmExit, 2, raw)
    }

    #[test]
    fn tables_are_complete() {
        // 62 rows in the 6.1 header plus 4 later additions; SVM 108 rows (the -1 row respelled)
        // plus 5 later additions.
        assert_eq!(VMX_NAMES.len(), 66);
        assert_eq!(SVM_NAMES.len(), 113);
    }

    #[test]
    fn decodes_vmx_by_basic_reason_and_flags() {
        assert_eq!(vmx(30).name(), "IO_INSTRUCTION");
        assert_eq!(vmx(48).name(), "EPT_VIOLATION");
        assert_eq!(vmx(85).name(), "MSR_WRITE_IMM");
        assert_eq!(vmx(0x8000_0021).name(), "INVALID_STATE FAILED_VMENTRY");
        assert_eq!(vmx(0x8000_0021).code(), 33);
        assert_eq!(vmx(0x0800_000c).name(), "HLT ENCLAVE");
        assert_eq!(vmx(30).isa(), Some(Isa::Vmx));
    }

    #[test]
    fn decodes_svm_codes() {
        assert_eq!(svm(0x7b).name(), "io");
        assert_eq!(svm(0x400).name(), "npf");
        assert_eq!(svm(0x4e).name(), "PF excp");
        assert_eq!(svm(0x8000_0011).name(), "vmgexit_guest_request");
        assert_eq!(svm(u64::MAX).name(), "invalid_guest_state");
        assert_eq!(svm(0xffff_ffff).name(), "invalid_guest_state");
    }

    #[test]
    fn unknown_codes_are_kept_as_numbers() {
        assert_eq!(vmx(99).name(), "99");
        assert_eq!(vmx(99).code(), 99);
        assert_eq!(svm(0x1234).name(), "0x1234");
        assert_eq!(
            ExitReason::decode(ExitSource::KvmExit, 7, 5).name(),
            "isa7:0x5"
        );
        assert_eq!(
            ExitReason::decode(ExitSource::Userspace, 0, 200).name(),
            "200"
        );
    }

    #[test]
    fn decodes_userspace_exits_and_errors() {
        let io = ExitReason::decode(ExitSource::Userspace, 0, 2);
        assert_eq!(io.name(), "IO");
        assert_eq!(io.isa(), None);
        assert_eq!(
            ExitReason::decode(ExitSource::Userspace, 0, 6).name(),
            "MMIO"
        );
        assert_eq!(
            ExitReason::decode(ExitSource::Userspace, 0, 10).name(),
            "INTR"
        );
        let restart = ExitReason::decode(ExitSource::Userspace, 0, USERSPACE_ERRNO_FLAG | 4);
        assert_eq!(restart.name(), "RESTART_EINTR");
        assert!(restart.is_restart());
        let fault = ExitReason::decode(ExitSource::Userspace, 0, USERSPACE_ERRNO_FLAG | 0xe);
        assert_eq!(fault.name(), "ERROR_ERRNO_14");
        assert_eq!(fault.code(), 14);
    }

    #[test]
    fn decodes_halt_outcomes() {
        let halt = |raw| ExitReason::decode(ExitSource::Halt, 0, raw);
        assert_eq!(halt(0).name(), "HALT_POLLED");
        assert_eq!(halt(HALT_BLOCKED).name(), "HALT_BLOCKED");
        assert_eq!(halt(HALT_SPURIOUS).name(), "HALT_POLLED_SPURIOUS");
        assert_eq!(halt(HALT_BLOCKED).source(), ExitSource::Halt);
        assert_eq!(halt(3).code(), 3);
    }
}
