//! Step 2: the LLVM development files bpf-linker is built against.
//!
//! bpf-linker links rustc's LLVM bitcode with the system's libLLVM, so that LLVM's major version
//! must match nightly's (older LLVM cannot read newer bitcode).

use anyhow::{Result, bail};

use super::apt::Apt;
use crate::util::{self, checking, cmd, installing, ok, try_output};

pub fn prefix(major: u32) -> String {
    format!("/usr/lib/llvm-{major}")
}

pub fn ensure(apt: &mut Apt, major: u32) -> Result<()> {
    checking(&format!("LLVM {major} development packages"));
    let mut wanted: Vec<String> = [
        format!("llvm-{major}-dev"),
        format!("libpolly-{major}-dev"),
        "libzstd-dev".to_owned(),
        "zlib1g-dev".to_owned(),
    ]
    .into();
    // bpf-linker links libstdc++; the C compiler finds it only when its -dev package is there.
    let libstdcxx = try_output(cmd("cc").arg("-print-file-name=libstdc++.so")).unwrap_or_default();
    if !libstdcxx.trim().starts_with('/') {
        wanted.push("g++".to_owned());
    }
    let installed = Apt::installed(&wanted);
    let missing: Vec<String> = wanted
        .into_iter()
        .filter(|pkg| !installed.contains(pkg))
        .collect();
    if missing.is_empty() {
        ok(&prefix(major));
        return Ok(());
    }
    util::missing(&format!("missing {}", missing.join(" ")));

    let llvm_dev = format!("llvm-{major}-dev");
    if apt.unavailable(&missing)?.contains(&llvm_dev) {
        bail!(
            "the apt sources offer no `{llvm_dev}`, but nightly's rustc uses LLVM {major} and \
             bpf-linker must be built against the same LLVM major. Add the LLVM project's \
             repository (https://apt.llvm.org; e.g. `wget https://apt.llvm.org/llvm.sh && sudo \
             bash llvm.sh {major}`), then rerun."
        );
    }
    installing(&missing.join(" "), "bpf-linker is built against them");
    apt.install(&missing)
}
