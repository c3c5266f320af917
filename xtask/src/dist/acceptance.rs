//! The package's acceptance test, a phase of `cargo xtask test`: the `.deb` installs with apt,
//! kvmtop then names its commit, its man pages open with `man`, bash completes its
//! subcommands, systemd accepts the unit, the service's user exists, the thresholds file is a
//! conffile read from its default path, the service is neither enabled nor started; and
//! `apt-get remove --purge` leaves none of the package's files. The package is removed at the
//! end whatever happened, and the kvmtop user too when the test created it, so the machine is
//! left as it was. It needs root and a machine without kvmtop installed; otherwise it skips,
//! saying why.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    setup::apt::Apt,
    util::{self, Phase, PhaseResult, cmd, find_program, is_root, seconds},
};

const PACKAGE: &str = "kvmtop";
const UNIT: &str = "/usr/lib/systemd/system/kvmtop.service";
const COMPLETION: &str = "/usr/share/bash-completion/completions/kvmtop";
const CONFFILE: &str = "/etc/kvmtop/advice.toml";

/// `cargo xtask dist --check`: both phases alone, with their times.
pub fn run() -> Result<bool> {
    crate::setup::ensure(crate::setup::Purpose::Run)?;
    let phases = phases();
    println!("\n==> summary");
    for phase in &phases {
        let verdict = if phase.ok { "ok" } else { "FAILED" };
        println!(
            "  {:<60} {verdict:<6} {:>8}",
            phase.name,
            seconds(phase.elapsed)
        );
    }
    Ok(phases.iter().all(|phase| phase.ok))
}

/// Two phases: building the package (the release build is most of `cargo xtask test`'s added
/// time) and the install-to-purge round trip.
pub fn phases() -> Vec<PhaseResult> {
    let phase = Phase::start("package: build (cargo xtask dist)");
    let built = super::build().inspect_err(|err| eprintln!("error: {err:#}"));
    let mut phases = vec![phase.finish(built.is_ok())];
    let Ok(deb) = built else {
        return phases;
    };
    let mut phase = Phase::start("package: install, check, purge (apt-get)");
    let verdict = match skip_reason(&deb) {
        Ok(Some(reason)) => {
            println!("skipped: {reason}");
            phase.rename(format!(
                "package: install, check, purge (skipped: {reason})"
            ));
            true
        }
        Ok(None) => round_trip(&deb)
            .inspect_err(|err| eprintln!("error: {err:#}"))
            .is_ok(),
        Err(err) => {
            eprintln!("error: {err:#}");
            false
        }
    };
    phases.push(phase.finish(verdict));
    phases
}

/// Why the test cannot run here without changing what is installed, if it cannot.
fn skip_reason(deb: &Path) -> Result<Option<String>> {
    if !is_root() {
        return Ok(Some("installing a package needs root".to_owned()));
    }
    for tool in ["apt-get", "dpkg", "dpkg-deb"] {
        if find_program(tool).is_none() {
            return Ok(Some(format!(
                "{tool} is not here (not a Debian-like system)"
            )));
        }
    }
    if installed_version().is_some() {
        return Ok(Some(format!(
            "a {PACKAGE} package is installed already; the test would replace and then remove it"
        )));
    }
    if let Some(path) = package_files(deb)?.into_iter().find(|p| p.exists()) {
        return Ok(Some(format!(
            "{} exists already; installing the package would take it over and purging would \
             delete it",
            path.display()
        )));
    }
    Ok(None)
}

/// Installs, checks, purges; the guard purges on every way out.
fn round_trip(deb: &Path) -> Result<()> {
    ensure_man()?;
    let files = package_files(deb)?;
    let guard = Installed {
        user_existed: user_entry().is_some(),
    };
    let start = Instant::now();
    let mut install = apt_get();
    install
        .args(["install", "--no-install-recommends", "-y", "-q"])
        // Slim images tell dpkg to leave man pages out (path-exclude); the test reads them.
        .arg("-o")
        .arg("DPkg::Options::=--path-include=/usr/share/man/man1/kvmtop*")
        .arg(deb);
    util::run(&mut install).context("installing the package")?;
    println!("installed in {}", seconds(start.elapsed()));

    let mut failures = Vec::new();
    for (what, check) in [
        (
            "kvmtop --version names the commit",
            check_version as fn() -> Result<()>,
        ),
        ("man pages", check_man_pages),
        ("bash completion", check_bash_completion),
        ("systemd-analyze verify", check_unit),
        ("the service's user", check_user),
        ("the thresholds conffile", check_conffile),
        ("the service is not enabled nor started", check_not_enabled),
    ] {
        match check() {
            Ok(()) => println!("  ok      {what}"),
            Err(err) => {
                println!("  FAILED  {what}: {err:#}");
                failures.push(what);
            }
        }
    }

    let start = Instant::now();
    let purge = guard.purge();
    println!("purged in {}", seconds(start.elapsed()));
    purge?;
    let left: Vec<String> = files
        .iter()
        .filter(|path| path.symlink_metadata().is_ok())
        .map(|path| path.display().to_string())
        .chain(
            [
                "/etc/kvmtop",
                "/usr/share/kvmtop",
                "/usr/share/doc/kvmtop",
                "/var/lib/kvmtop",
            ]
            .into_iter()
            .filter(|dir| Path::new(dir).exists())
            .map(str::to_owned),
        )
        .collect();
    if !left.is_empty() {
        println!("  FAILED  purge left {}", left.join(", "));
        failures.push("purge removes every file");
    } else if installed_version().is_some() {
        failures.push("purge removes the package");
    } else {
        println!("  ok      purge leaves none of the package's files");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} check(s) failed: {}",
            failures.len(),
            failures.join("; ")
        )
    }
}

/// While it lives, the package may be installed: dropping it purges the package, and removes
/// the kvmtop user and group the install created.
struct Installed {
    user_existed: bool,
}

impl Installed {
    fn purge(&self) -> Result<()> {
        if installed_version().is_some() {
            util::run(apt_get().args(["remove", "--purge", "-y", "-q", PACKAGE]))
                .context("purging the package")?;
        }
        // Debian leaves a package's system user on purge (see packaging/debian/postrm); the
        // test removes the one it made, to leave the machine as it found it.
        if !self.user_existed && user_entry().is_some() {
            util::run(cmd("userdel").arg(PACKAGE)).context("removing the kvmtop user")?;
            if group_exists() {
                util::run(cmd("groupdel").arg(PACKAGE)).context("removing the kvmtop group")?;
            }
        }
        Ok(())
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Err(err) = self.purge() {
            eprintln!("error: cleaning up after the package test: {err:#}");
        }
    }
}

fn apt_get() -> Command {
    let mut apt = cmd("apt-get");
    apt.env("DEBIAN_FRONTEND", "noninteractive");
    apt
}

/// man-db, which the check of the man pages needs, from apt when missing (as `cargo xtask
/// setup` installs its tools).
fn ensure_man() -> Result<()> {
    if find_program("man").is_some() {
        return Ok(());
    }
    util::installing(
        "man-db",
        "the package test opens kvmtop's man pages with `man`",
    );
    Apt::default().install(&["man-db".to_owned()])
}

/// The installed version of the package, if dpkg has it installed.
fn installed_version() -> Option<String> {
    let out = util::try_output(cmd("dpkg-query").args([
        "-W",
        "-f=${db:Status-Abbrev} ${Version}",
        PACKAGE,
    ]))?;
    // "ii 0.1.0-1"; "un"/"pn" once removed and purged.
    let (status, version) = out.split_once(' ')?;
    (status.starts_with('i') || status.starts_with("rc") || status.starts_with('h'))
        .then(|| version.trim().to_owned())
}

/// Every file and symlink the package holds, as installed paths.
fn package_files(deb: &Path) -> Result<Vec<PathBuf>> {
    let listing = util::output(cmd("dpkg-deb").arg("--contents").arg(deb))?;
    // "-rw-r--r-- root/root 1234 2026-12-05 10:00 ./usr/bin/kvmtop"
    Ok(listing
        .lines()
        .filter(|line| !line.starts_with('d'))
        .filter_map(|line| line.split_once(" ./"))
        .map(|(_, path)| path.split(" -> ").next().unwrap_or(path))
        .map(|path| Path::new("/").join(path))
        .collect())
}

fn user_entry() -> Option<String> {
    util::try_output(cmd("getent").args(["passwd", PACKAGE])).map(|line| line.trim().to_owned())
}

fn group_exists() -> bool {
    util::try_output(cmd("getent").args(["group", PACKAGE])).is_some()
}

/// `kvmtop --version` ends in this checkout's commit and date, `-dirty` when the tree was
/// modified, as the build of the package saw it.
fn check_version() -> Result<()> {
    let version = util::output(cmd("/usr/bin/kvmtop").arg("--version"))?;
    let root = util::workspace_root();
    let hash = util::output(
        cmd("git")
            .current_dir(root)
            .args(["rev-parse", "--short=7", "HEAD"]),
    )?;
    let date = util::output(
        cmd("git")
            .current_dir(root)
            .args(["log", "-1", "--format=%cs"]),
    )?;
    let expected = format!("kvmtop {} ({}", env!("CARGO_PKG_VERSION"), hash.trim());
    let version = version.trim();
    if !version.starts_with(&expected) || !version.ends_with(&format!(", {})", date.trim())) {
        bail!(
            "`kvmtop --version` says {version:?}; expected {expected}[-dirty], {})",
            date.trim()
        );
    }
    println!("          {version}");
    Ok(())
}

/// Every man page of the package opens with `man`, and there is one for kvmtop and for each
/// subcommand the installed binary lists.
fn check_man_pages() -> Result<()> {
    let help = util::output(cmd("/usr/bin/kvmtop").arg("--help"))?;
    let subcommands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .context("`kvmtop --help` lists no commands")?
        .lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        // A description wrapped onto the next line is indented further.
        .filter(|line| {
            line.strip_prefix("  ")
                .is_some_and(|rest| !rest.starts_with(' '))
        })
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    if !subcommands.contains(&"serve") || !subcommands.contains(&"snapshot") {
        bail!("`kvmtop --help` lists {subcommands:?}, not serve and snapshot");
    }
    let pages = std::iter::once("kvmtop".to_owned())
        .chain(subcommands.iter().map(|sub| format!("kvmtop-{sub}")));
    for page in pages {
        let text = util::output(cmd("man").args(["-P", "cat", &page]).env("MANWIDTH", "80"))
            .with_context(|| format!("`man {page}`"))?;
        if !text.contains("SYNOPSIS") || !text.contains(&page) {
            bail!("`man {page}` shows no synopsis of {page}:\n{text}");
        }
    }
    println!(
        "          kvmtop and {} subcommand pages",
        subcommands.len()
    );
    Ok(())
}

/// `kvmtop sn<TAB>` completes to `snapshot`, driven through the installed completion file as
/// bash's programmable completion calls it.
fn check_bash_completion() -> Result<()> {
    let script = format!(
        "source {COMPLETION}; COMP_WORDS=(kvmtop sn); COMP_CWORD=1; COMP_LINE='kvmtop sn'; \
         COMP_POINT=${{#COMP_LINE}}; _kvmtop kvmtop sn kvmtop; echo \"${{COMPREPLY[@]}}\""
    );
    let out = util::output(cmd("bash").args(["--norc", "--noprofile", "-c", &script]))?;
    if out.trim() != "snapshot" {
        bail!(
            "completing `kvmtop sn` gave {:?}, not \"snapshot\"",
            out.trim()
        );
    }
    Ok(())
}

/// systemd accepts the installed unit, with the installed binary at its `ExecStart=`.
fn check_unit() -> Result<()> {
    let out = cmd("systemd-analyze")
        .args(["verify", "--man=no", UNIT])
        .output()
        .context("could not start systemd-analyze")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        bail!("systemd-analyze verify {UNIT} ({}): {stderr}", out.status);
    }
    let unit = std::fs::read_to_string(UNIT)?;
    if !unit.contains("\nExecStart=/usr/bin/kvmtop serve") {
        bail!("{UNIT} does not start /usr/bin/kvmtop");
    }
    Ok(())
}

/// The install created the system user the unit runs as.
fn check_user() -> Result<()> {
    let entry = user_entry().context("no kvmtop user after the install")?;
    let fields: Vec<&str> = entry.split(':').collect();
    let uid: u32 = fields.get(2).and_then(|uid| uid.parse().ok()).unwrap_or(0);
    if !(1..1000).contains(&uid) || fields.get(6) != Some(&"/usr/sbin/nologin") {
        bail!("not a system user without login: {entry}");
    }
    Ok(())
}

/// dpkg keeps the thresholds file as a conffile, and kvmtop reads it without --config: a value
/// changed in it shows in `kvmtop explain`.
fn check_conffile() -> Result<()> {
    let conffiles = util::output(cmd("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]))?;
    if !conffiles.contains(CONFFILE) {
        bail!("{CONFFILE} is not a conffile: {conffiles:?}");
    }
    let explain = || util::output(cmd("/usr/bin/kvmtop").args(["explain", "C1"]));
    if !explain()?.contains("c1_wait_warn = 0.05 (default)") {
        bail!("the shipped file changes a default");
    }
    let mut text = std::fs::read_to_string(CONFFILE)?;
    text.push_str("c1_wait_warn = 0.07\n");
    std::fs::write(CONFFILE, text)?;
    let shown = explain()?;
    if !shown.contains("c1_wait_warn = 0.07") {
        bail!("`kvmtop explain C1` does not show the value set in {CONFFILE}:\n{shown}");
    }
    Ok(())
}

/// Installing neither enables nor starts the service (see monitor/Cargo.toml for why).
fn check_not_enabled() -> Result<()> {
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants/kvmtop.service");
    if wants.symlink_metadata().is_ok() {
        bail!(
            "{} exists: the install enabled the service",
            wants.display()
        );
    }
    let running: BTreeSet<String> = util::output(cmd("pgrep").args(["-x", "kvmtop"]))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let owned: Vec<&String> = running
        .iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
                status.lines().any(|line| {
                    line.starts_with("Uid:")
                        && user_entry().is_some_and(|entry| {
                            entry
                                .split(':')
                                .nth(2)
                                .is_some_and(|uid| line.split_whitespace().nth(1) == Some(uid))
                        })
                })
            })
        })
        .collect();
    if !owned.is_empty() {
        bail!("kvmtop runs as the kvmtop user after the install: pids {owned:?}");
    }
    Ok(())
}
