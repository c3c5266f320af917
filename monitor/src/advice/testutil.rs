//! Builders shared by the advice tests.

use std::path::PathBuf;

use crate::discovery::qemu::QemuCommandLine;
use crate::discovery::{ThreadRole, Vcpu, Vmm, VmmId, VmmKind, VmmThread};

use super::facts::Roots;

/// A fixture tree under `monitor/tests/fixtures/advice`.
pub(crate) fn fixture(name: &str) -> Roots {
    Roots::under(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/advice")
            .join(name),
    )
}

/// A QEMU process `pid` with `args` (after the binary) and one vCPU thread per tid, numbered
/// from 0; the main thread is `pid` itself.
pub(crate) fn qemu(pid: u32, args: &[&str], vcpu_tids: &[u32]) -> Vmm {
    let command_line: Vec<&str> = std::iter::once("/usr/bin/qemu-system-x86_64")
        .chain(args.iter().copied())
        .collect();
    let cmd = QemuCommandLine::parse(&command_line);
    let mut threads = vec![VmmThread {
        tid: pid,
        comm: "qemu-system-x86".into(),
        role: ThreadRole::Main,
    }];
    let mut vcpus = Vec::new();
    for (index, tid) in (0u32..).zip(vcpu_tids) {
        vcpus.push(Vcpu {
            index,
            fd: 20 + index,
            tid: Some(*tid),
            tid_source: None,
        });
        threads.push(VmmThread {
            tid: *tid,
            comm: format!("CPU {index}/KVM").into(),
            role: ThreadRole::Vcpu(index),
        });
    }
    Vmm {
        id: VmmId { pid, start_time: 1 },
        kind: VmmKind::Qemu,
        name: cmd
            .name
            .clone()
            .unwrap_or_else(|| format!("qemu-{pid}"))
            .into(),
        uuid: None,
        comm: "qemu-system-x86".into(),
        qemu: Some(cmd.into()),
        vcpus,
        threads,
    }
}
