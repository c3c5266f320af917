//! Step 1: rustup, the nightly toolchain and its components.
//!
//! Userspace crates build with the default (stable) toolchain. The kernel programs need nightly:
//! aya-build runs `rustup run nightly cargo build --target bpfel-unknown-none -Z build-std=core`,
//! which compiles `core` for BPF from the `rust-src` component, so no target is installed.

use anyhow::{Context as _, Result, bail};

use crate::util::{self, checking, cmd, find_program, installing, ok, output};

pub fn ensure(for_tests: bool) -> Result<()> {
    checking("rustup");
    if find_program("rustup").is_none() {
        bail!(
            "rustup not found. The kernel programs need a nightly toolchain, which rustup manages. \
             Install it from https://rustup.rs:\n  curl --proto '=https' --tlsv1.2 -sSf \
             https://sh.rustup.rs | sh\nthen start a new shell and rerun."
        );
    }
    ok(output(cmd("rustup").arg("--version"))?
        .split_whitespace()
        .nth(1)
        .unwrap_or(""));

    ensure_nightly()?;
    ensure_component(
        "nightly",
        "rust-src",
        "the kernel programs build `core` from source",
    )?;
    if for_tests {
        ensure_component("nightly", "clippy", "lints the kernel programs")?;
        // The workspace has no rust-toolchain file, so this is the default toolchain.
        let default = default_toolchain()?;
        ensure_component(&default, "rustfmt", "`cargo fmt --check`")?;
        ensure_component(&default, "clippy", "`cargo clippy`")?;
    }
    Ok(())
}

/// The host rustup installs toolchains for (asked from rustup, which works before any
/// toolchain is installed).
fn host_triple() -> Result<String> {
    let show = output(cmd("rustup").arg("show"))?;
    field(&show, "Default host").context("`rustup show` did not report the default host")
}

fn default_toolchain() -> Result<String> {
    let active = output(
        cmd("rustup")
            .args(["show", "active-toolchain"])
            .current_dir(util::workspace_root()),
    )?;
    active
        .split_whitespace()
        .next()
        .map(str::to_owned)
        .context("`rustup show active-toolchain` said nothing")
}

fn ensure_nightly() -> Result<()> {
    checking("nightly toolchain");
    let wanted = format!("nightly-{}", host_triple()?);
    let list = output(cmd("rustup").args(["toolchain", "list"]))?;
    if list
        .lines()
        .any(|line| line.split_whitespace().next() == Some(wanted.as_str()))
    {
        ok(&nightly_version()?);
        return Ok(());
    }
    util::missing("missing");
    installing(
        "the nightly toolchain",
        "aya-build compiles the kernel programs with it",
    );
    let installed = util::run(cmd("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
        "--component",
        "rust-src",
        // Installing a toolchain should not also replace rustup itself.
        "--no-self-update",
    ]));
    if let Err(err) = installed {
        bail!(
            "{err:#}\nthe nightly toolchain could not be installed. Machines whose image ships a \
             preinstalled nightly cannot download another one; there, check that it is still \
             listed by `rustup toolchain list`. Elsewhere, run `rustup toolchain install nightly \
             --profile minimal --component rust-src` and fix what it reports."
        );
    }
    Ok(())
}

fn nightly_version() -> Result<String> {
    let version = output(cmd("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    field(&version, "release").context("`rustc +nightly -vV` did not report its release")
}

/// The LLVM major version nightly's rustc was built with ("LLVM version: 22.1.4" → 22).
/// bpf-linker must use an LLVM at least this new to read the bitcode rustc emits.
pub fn nightly_llvm_major() -> Result<u32> {
    checking("nightly's LLVM version");
    let version = output(cmd("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    let llvm = field(&version, "LLVM version")
        .context("`rustc +nightly -vV` did not report an LLVM version")?;
    let major = llvm
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .with_context(|| format!("unexpected LLVM version `{llvm}` from `rustc +nightly -vV`"))?;
    ok(&llvm);
    Ok(major)
}

fn ensure_component(toolchain: &str, component: &str, why: &str) -> Result<()> {
    let short = toolchain.split('-').next().unwrap_or(toolchain);
    checking(&format!("{component} for {short}"));
    let installed =
        output(cmd("rustup").args(["component", "list", "--installed", "--toolchain", toolchain]))?;
    // Installed components are listed as `rust-src` or `clippy-x86_64-unknown-linux-gnu`.
    let present = installed.lines().any(|line| {
        line == component
            || line
                .strip_prefix(component)
                .is_some_and(|rest| rest.starts_with('-'))
    });
    if present {
        ok("");
        return Ok(());
    }
    util::missing("missing");
    installing(&format!("{component} for {short}"), why);
    util::run(cmd("rustup").args(["component", "add", component, "--toolchain", toolchain]))
}

/// A `key: value` line of `rustc -vV` output.
fn field(version: &str, key: &str) -> Option<String> {
    version.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn reads_llvm_version() {
        let vv = "rustc 1.97.0-nightly\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(field(vv, "LLVM version").as_deref(), Some("22.1.4"));
        assert_eq!(
            field(vv, "host").as_deref(),
            Some("x86_64-unknown-linux-gnu")
        );
    }
}
