//! `cargo xtask dist`: the Debian package, built with cargo-deb from the release binary. The
//! binary writes the man pages, completions and commented thresholds file itself
//! (`kvmtop package-files`), so they describe the very binary packaged; what goes where is
//! `[package.metadata.deb]` in `monitor/Cargo.toml`.

pub mod acceptance;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::util::{self, Phase, cargo, cargo_bin_dir, checking, cmd, installing, ok};

/// The cargo-deb release the package is built with.
const CARGO_DEB: &str = "3.8.0";

/// Where `kvmtop package-files` writes, below the release directory: cargo-deb maps the
/// `target/release/` of the asset paths to the real target directory.
const PACKAGE_FILES: &str = "package-files";

/// `cargo xtask dist`: installs cargo-deb if needed, builds the package, says where it is.
pub fn run() -> Result<()> {
    crate::setup::ensure(crate::setup::Purpose::Run)?;
    let phase = Phase::start("package (cargo deb)");
    let built = build();
    phase.finish(built.is_ok());
    let deb = built?;
    println!("{}", deb.display());
    Ok(())
}

/// Installs cargo-deb when missing or of another version.
pub fn ensure_cargo_deb() -> Result<()> {
    checking(&format!("cargo-deb {CARGO_DEB}"));
    let binary = cargo_bin_dir().join("cargo-deb");
    let found = util::try_output(cmd(&binary).arg("--version"));
    if found
        .as_deref()
        .is_some_and(|v| v.split_whitespace().any(|w| w == CARGO_DEB))
    {
        ok(&binary.display().to_string());
        return Ok(());
    }
    util::missing(found.map_or("missing", |_| "another version; replacing it"));
    installing(
        &format!("cargo-deb {CARGO_DEB}"),
        "builds the Debian package; takes about 2 minutes",
    );
    util::run(cmd("cargo").args([
        "install",
        "cargo-deb",
        "--version",
        CARGO_DEB,
        "--locked",
        "--force",
    ]))
    .context("installing cargo-deb")
}

/// Builds the release binary, the files it writes for the package, and the package; returns
/// the package's path.
pub fn build() -> Result<PathBuf> {
    ensure_cargo_deb()?;
    let binary = util::build_kvmtop(true)?;
    let files = binary
        .parent()
        .context("the binary has a directory")?
        .join(PACKAGE_FILES);
    if files.exists() {
        std::fs::remove_dir_all(&files)
            .with_context(|| format!("removing the old {}", files.display()))?;
    }
    util::run(cmd(&binary).arg("package-files").arg(&files))?;
    compress_man_pages(&files.join("man"))?;

    let output = util::target_dir()?.join("debian");
    let mut deb = cargo();
    deb.args(["deb", "-p", "monitor", "--no-build", "--output"])
        .arg(&output);
    util::echo(&deb);
    let out = deb.output().context("could not start `cargo deb`")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("`cargo deb` failed ({}): {stdout}", out.status);
    }
    // cargo-deb prints the package's path as its last line.
    let path = stdout
        .lines()
        .rev()
        .map(str::trim)
        .map(PathBuf::from)
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .with_context(|| format!("`cargo deb` named no package: {stdout}"))?;
    let size = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    #[expect(clippy::cast_precision_loss, reason = "a size to print")]
    let mib = size as f64 / f64::from(1u32 << 20);
    println!("package: {} ({mib:.1} MiB)", path.display());
    Ok(path)
}

/// Debian wants man pages gzipped; cargo-deb compresses only files it does not take from the
/// target directory. `-n` leaves the name and time out, so equal pages give equal bytes.
fn compress_man_pages(dir: &Path) -> Result<()> {
    let pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    if pages.is_empty() {
        bail!(
            "`kvmtop package-files` wrote no man page into {}",
            dir.display()
        );
    }
    util::run(cmd("gzip").args(["-9", "-n", "-f"]).args(&pages))
}
