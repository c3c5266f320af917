//! The host programs the guests need, and the checks behind [`crate::preflight`].

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use crate::{Error, GuestKind};

pub(crate) const QEMU: &str = "qemu-system-x86_64";

/// The Debian package that provides a tool, for error messages.
fn package_of(tool: &str) -> &'static str {
    match tool {
        QEMU => "qemu-system-x86",
        "as" | "ld" => "binutils",
        _ => "(unknown)",
    }
}

/// Looks `name` up on PATH the way a shell would.
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub(crate) fn require(tool: &'static str) -> Result<PathBuf, Error> {
    find(tool).ok_or(Error::MissingTool {
        tool,
        package: package_of(tool),
    })
}

/// `/dev/kvm` opens read-write and speaks the stable KVM API.
fn check_kvm() -> Result<(), String> {
    // KVM_GET_API_VERSION = _IO(KVMIO, 0x00); the stable API has been version 12 since 2007.
    const KVM_GET_API_VERSION: libc::c_ulong = 0xae00;

    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm is not usable: {e}"))?;
    // SAFETY: an argument-less ioctl on a file descriptor we own.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != 12 {
        return Err(format!(
            "/dev/kvm answers KVM_GET_API_VERSION with {version}, expected 12"
        ));
    }
    Ok(())
}

/// GNU ld must be able to emit 32-bit x86 objects (`-m elf_i386`).
fn check_linker() -> Result<(), String> {
    let ld = require("ld").map_err(|e| e.to_string())?;
    let out = Command::new(&ld)
        .arg("-V")
        .output()
        .map_err(|e| format!("running \"{}\": {e}", ld.display()))?;
    if String::from_utf8_lossy(&out.stdout).contains("elf_i386") {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" cannot link 32-bit x86 (no elf_i386 emulation): install the Debian package \"binutils\"",
            ld.display()
        ))
    }
}

pub(crate) fn preflight(kinds: &[GuestKind]) -> Result<(), String> {
    check_kvm()?;
    if kinds.iter().any(|k| k.uses_qemu()) {
        for tool in [QEMU, "as"] {
            require(tool).map_err(|e| e.to_string())?;
        }
        check_linker()?;
    }
    Ok(())
}
