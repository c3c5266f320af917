//! Builds the kernel programs (`monitor-ebpf`) for the BPF target with the nightly toolchain and
//! bpf-linker, so `cargo build` is the only build step. `cargo xtask setup` installs both.
//! Also names the commit built from, for `kvmtop --version`.
use std::{path::Path, process::Command};

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    version();
    // The fuzz targets (fuzz/) link the agent's parsers with sanitizer flags, which cannot build
    // BPF code; they never load programs, so an empty object stands in.
    println!("cargo:rerun-if-env-changed=CARGO_CFG_FUZZING");
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR unset")?);
        std::fs::write(out.join("monitor"), []).context("writing the empty object")?;
        return Ok(());
    }
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor-ebpf");
    // The kernel programs are always built with the release profile. Its link-time
    // optimization is for the agent: across the BPF target's `core` it changes the programs'
    // code, which is verified and measured (`cargo xtask bench`) as built without it.
    // SAFETY: a build script is single-threaded here; the variable is read by the cargo
    // aya_build spawns, not by this process.
    unsafe {
        std::env::set_var("CARGO_PROFILE_RELEASE_LTO", "false");
        std::env::set_var("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the kernel programs failed; `cargo xtask setup` installs the nightly rust-src \
         component and bpf-linker they need",
    )
}

/// `KVMTOP_VERSION`, what `kvmtop --version` prints after the name: `0.1.0 (abc1234, 2026-12-05)`
/// with the commit's short hash and date (the commit's, so that rebuilding a commit gives the
/// same text), `abc1234-dirty` when tracked files differ from it. Outside a git checkout (a
/// source tarball), `KVMTOP_BUILD_COMMIT` may say what it was made from; otherwise the version
/// says it was built outside git.
///
/// The script runs again only when the commit, the branch or the index changes, or a source of
/// the binary does (then the crate is rebuilt anyway): a commit rebuilds this crate, not its
/// dependencies.
fn version() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // --no-optional-locks: `status` must not rewrite the index it is watched through.
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("--no-optional-locks")
            .args(args)
            .current_dir(manifest_dir)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=7", "HEAD"])
        .zip(git(&["log", "-1", "--format=%cs", "HEAD"]))
        .map(|(hash, date)| {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|changes| !changes.is_empty());
            format!("{hash}{}, {date}", if dirty { "-dirty" } else { "" })
        })
        .or_else(|| std::env::var("KVMTOP_BUILD_COMMIT").ok())
        .unwrap_or_else(|| "built outside git".to_owned());
    println!(
        "cargo:rustc-env=KVMTOP_VERSION={} ({commit})",
        env!("CARGO_PKG_VERSION")
    );
    println!("cargo:rerun-if-env-changed=KVMTOP_BUILD_COMMIT");
    // Only files that exist: cargo reruns the script every time for a missing one. (A branch
    // packed by `git gc` loses its loose file: one more rerun, then packed-refs is watched.)
    let watch = |path: String| {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    };
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch(format!("{git_dir}/HEAD"));
        watch(format!("{git_dir}/index"));
    }
    // A worktree keeps its HEAD and index apart, and the branches in the common directory.
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
        watch(format!("{common}/packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(format!("{common}/{branch}"));
        }
    }
    for source in [
        "src",
        "../monitor-common/src",
        "../monitor-ebpf/src",
        "Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(source).display()
        );
    }
}
