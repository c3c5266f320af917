//! Step 3: bpf-linker, built against the system LLVM that matches nightly's.

use std::path::Path;

use anyhow::{Result, bail};

use super::llvm;
use crate::util::{self, cargo_bin_dir, checking, cmd, installing, ok, try_output};

/// The bpf-linker release that works with the pinned aya crates.
const VERSION: &str = "0.13.0";
/// LLVM majors bpf-linker 0.13 has a feature (`llvm-<major>`) for.
const SUPPORTED_LLVM: std::ops::RangeInclusive<u32> = 21..=23;

pub fn ensure(llvm_major: u32) -> Result<()> {
    checking(&format!("bpf-linker {VERSION} for LLVM {llvm_major}"));
    if !SUPPORTED_LLVM.contains(&llvm_major) {
        bail!(
            "nightly's rustc uses LLVM {llvm_major}, but bpf-linker {VERSION} supports LLVM {} to \
             {}; use a nightly whose `rustc +nightly -vV` reports one of those, or update the \
             bpf-linker version in xtask/src/setup/linker.rs together with the aya crates",
            SUPPORTED_LLVM.start(),
            SUPPORTED_LLVM.end()
        );
    }
    let binary = cargo_bin_dir().join("bpf-linker");
    let reason = match installed(&binary) {
        Some((version, Some(major))) if version == VERSION && major == llvm_major => {
            ok(&format!("{}, LLVM {major}", binary.display()));
            return Ok(());
        }
        Some((version, major)) => {
            let linked =
                major.map_or_else(|| "an unknown LLVM".to_owned(), |m| format!("LLVM {m}"));
            util::missing(&format!("found {version} linked to {linked}; replacing it"));
            "the installed one does not match nightly's LLVM"
        }
        None => {
            util::missing("missing");
            "links the kernel programs; takes about 2 minutes"
        }
    };
    installing(
        &format!("bpf-linker {VERSION} against LLVM {llvm_major}"),
        reason,
    );
    let prefix = llvm::prefix(llvm_major);
    // bpf-linker's build script finds libLLVM via LLVM_PREFIX (without it, via whichever
    // llvm-config is first on PATH, possibly another LLVM: "unable to find library -lLLVM").
    // llvm-sys reads LLVM_SYS_<its major>_PREFIX, and llvm-sys majors are the LLVM major
    // followed by a digit (221 for LLVM 22).
    util::run(
        cmd("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                VERSION,
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm_major}"),
            ])
            .env("LLVM_PREFIX", &prefix)
            .env(format!("LLVM_SYS_{llvm_major}1_PREFIX"), &prefix),
    )?;
    match installed(&binary) {
        Some((version, Some(major))) if version == VERSION && major == llvm_major => Ok(()),
        _ => bail!(
            "bpf-linker was installed but {} does not report version {VERSION} linked to LLVM \
             {llvm_major}; check `{0} --version` and `ldd {0}`",
            binary.display()
        ),
    }
}

/// The installed bpf-linker's version and the LLVM major it links, if it can be found.
fn installed(binary: &Path) -> Option<(String, Option<u32>)> {
    let version = try_output(cmd(binary).arg("--version"))?;
    let version = version.split_whitespace().nth(1)?.to_owned();
    Some((version, linked_llvm_major(binary)))
}

/// The major of the shared libLLVM the binary loads, e.g. `libLLVM.so.22.1 => …` → 22.
/// A statically linked binary shows none; it is then treated as unknown and rebuilt.
fn linked_llvm_major(binary: &Path) -> Option<u32> {
    let ldd = try_output(cmd("ldd").arg(binary))?;
    ldd.lines().find_map(|line| {
        let line = line.trim();
        if line.contains("not found") {
            return None;
        }
        let name = line.split_whitespace().next()?;
        llvm_major_of_soname(name)
    })
}

/// `libLLVM.so.22.1` (LLVM ≥ 18 packaging) or `libLLVM-15.so.1` (older) → the major.
fn llvm_major_of_soname(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("libLLVM")?;
    let version = match rest.strip_prefix('-') {
        Some(dashed) => dashed.split(".so").next()?,
        None => rest.strip_prefix(".so.")?,
    };
    version.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::llvm_major_of_soname;

    #[test]
    fn reads_llvm_major_from_soname() {
        assert_eq!(llvm_major_of_soname("libLLVM.so.22.1"), Some(22));
        assert_eq!(llvm_major_of_soname("libLLVM-15.so.1"), Some(15));
        assert_eq!(llvm_major_of_soname("libLLVM.so"), None);
        assert_eq!(llvm_major_of_soname("libc.so.6"), None);
    }
}
