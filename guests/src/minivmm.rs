//! Finding (or building) the `minivmm` binary from any crate's tests or tools.
//!
//! Cargo builds a package's binaries only for that package's own integration tests, so the
//! `monitor` crate's tests or `xtask` cannot rely on `CARGO_BIN_EXE_minivmm`. Instead the binary
//! is looked up next to the running executable and built with cargo when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::Error;

/// Overrides the lookup: the path of a `minivmm` binary to use as is.
pub const MINIVMM_ENV: &str = "KVMTOP_MINIVMM";

const BIN: &str = "minivmm";
const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
const SOURCES: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin/minivmm/main.rs"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin/minivmm/disk.rs"),
];

/// Path of the `minivmm` binary: `$KVMTOP_MINIVMM` if set; else `minivmm` in the cargo profile
/// directory of the running executable (`target/debug/deps/foo-hash` → `target/debug/minivmm`),
/// built there first with `cargo build -p guests --bin minivmm` when missing or older than its
/// source.
pub fn minivmm_path() -> Result<PathBuf, Error> {
    // One build per process, however many tests ask at once.
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);

    if let Some(path) = std::env::var_os(MINIVMM_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::io(
                format!("{MINIVMM_ENV}=\"{}\"", path.display()),
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a file"),
            ))
        };
    }
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let profile_dir = profile_dir();
    if let Some(candidate) = profile_dir.as_ref().map(|dir| dir.join(BIN))
        && candidate.is_file()
        && !is_stale(&candidate)
    {
        *built = Some(candidate.clone());
        return Ok(candidate);
    }
    let path = build(profile_dir.as_deref())?;
    *built = Some(path.clone());
    Ok(path)
}

/// The cargo profile directory holding the running executable, if it is in one.
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    // Test executables live in `<profile>/deps`, examples in `<profile>/examples`, binaries
    // directly in `<profile>`.
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir = dir.parent()?;
    }
    Some(dir.to_path_buf())
}

/// Whether the source checkout this library was built from has a newer source of `minivmm`.
fn is_stale(binary: &Path) -> bool {
    let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    SOURCES.iter().any(|source| {
        match (modified(binary), modified(Path::new(source))) {
            (Some(bin), Some(src)) => src > bin,
            // No source checkout (e.g. an installed tool): nothing to compare against.
            _ => false,
        }
    })
}

/// Cargo flags that put the build output into `profile_dir`, when it is a cargo target layout:
/// `<target-dir>/<profile>` or `<target-dir>/<triple>/<profile>` (`CACHEDIR.TAG` marks the
/// target dir).
fn placement_args(profile_dir: &Path) -> Vec<String> {
    let Some(profile) = profile_dir.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let Some(parent) = profile_dir.parent() else {
        return Vec::new();
    };
    let (target_dir, triple) = if parent.join("CACHEDIR.TAG").is_file() {
        (parent, None)
    } else if let Some(grand) = parent.parent().filter(|g| g.join("CACHEDIR.TAG").is_file()) {
        (grand, parent.file_name().and_then(|n| n.to_str()))
    } else {
        return Vec::new();
    };
    let mut args = vec!["--target-dir".to_owned(), target_dir.display().to_string()];
    match profile {
        "debug" => {}
        "release" => args.push("--release".into()),
        other => args.extend(["--profile".into(), other.into()]),
    }
    if let Some(triple) = triple {
        args.extend(["--target".into(), triple.into()]);
    }
    args
}

fn build(profile_dir: Option<&Path>) -> Result<PathBuf, Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "-p",
            "guests",
            "--bin",
            BIN,
            "--manifest-path",
            MANIFEST,
        ])
        // The JSON messages name the executable, wherever cargo put it.
        .arg("--message-format=json-render-diagnostics")
        .args(profile_dir.map(placement_args).unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let rendered = format!("{command:?}");
    eprintln!("guests: {BIN} not found or out of date; building it: {rendered}");
    let fail = |reason: String| Error::BuildMiniVmm {
        command: rendered.clone(),
        reason,
    };
    let output = command.output().map_err(|e| fail(e.to_string()))?;
    if !output.status.success() {
        return Err(fail(format!("cargo {}", output.status)));
    }
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == BIN)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| fail("cargo reported no minivmm executable".into()))?;
    eprintln!("guests: built {}", path.display());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_follows_the_target_layout() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::create_dir_all(target.join("x86_64-unknown-linux-gnu/release")).unwrap();
        std::fs::write(target.join("CACHEDIR.TAG"), "").unwrap();
        let t = target.display().to_string();

        assert_eq!(placement_args(&target.join("debug")), ["--target-dir", &t]);
        assert_eq!(
            placement_args(&target.join("ci")),
            ["--target-dir", t.as_str(), "--profile", "ci"]
        );
        assert_eq!(
            placement_args(&target.join("x86_64-unknown-linux-gnu/release")),
            [
                "--target-dir",
                t.as_str(),
                "--release",
                "--target",
                "x86_64-unknown-linux-gnu"
            ]
        );
        assert!(placement_args(&root.path().join("elsewhere/bin")).is_empty());
    }
}
