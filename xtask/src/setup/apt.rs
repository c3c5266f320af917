//! Debian/Ubuntu packages: what is installed, what the archive offers, and installing.

use std::collections::HashSet;

use anyhow::{Result, bail};

use crate::util::{self, cmd, find_program, try_output};

/// Remembers whether the package lists were refreshed, so `apt-get update` runs at most once.
#[derive(Default)]
pub struct Apt {
    updated: bool,
}

impl Apt {
    /// The subset of `packages` that dpkg reports as installed.
    pub fn installed(packages: &[String]) -> HashSet<String> {
        // dpkg-query exits non-zero when any name is unknown but still reports the known ones.
        let out = cmd("dpkg-query")
            .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
            .args(packages)
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        out.lines()
            .filter_map(|line| {
                let (name, status) = line.split_once(' ')?;
                // "ii " = wanted and installed. Strip an ":amd64" arch qualifier.
                let name = name.split(':').next()?;
                status.starts_with("ii").then(|| name.to_owned())
            })
            .collect()
    }

    /// Whether the archive has an installable version of `package`.
    fn has_candidate(package: &str) -> bool {
        try_output(cmd("apt-cache").args(["policy", package])).is_some_and(|policy| {
            policy.lines().any(|line| {
                line.trim()
                    .strip_prefix("Candidate:")
                    .is_some_and(|candidate| candidate.trim() != "(none)")
            })
        })
    }

    /// The packages among `packages` the archive cannot provide, refreshing the package lists
    /// once if needed (a fresh container usually has none).
    pub fn unavailable(&mut self, packages: &[String]) -> Result<Vec<String>> {
        Self::require_apt(packages)?;
        let missing: Vec<String> = packages
            .iter()
            .filter(|pkg| !Self::has_candidate(pkg))
            .cloned()
            .collect();
        if missing.is_empty() || self.updated {
            return Ok(missing);
        }
        self.update()?;
        Ok(missing
            .into_iter()
            .filter(|pkg| !Self::has_candidate(pkg))
            .collect())
    }

    fn update(&mut self) -> Result<()> {
        println!("refreshing the apt package lists (some packages are not in the local cache)…");
        util::run(util::privileged("apt-get", &[])?.args(["update", "-q"]))?;
        self.updated = true;
        Ok(())
    }

    /// Installs `packages` in one apt-get call.
    pub fn install(&mut self, packages: &[String]) -> Result<()> {
        let unavailable = self.unavailable(packages)?;
        if !unavailable.is_empty() {
            bail!(
                "apt cannot find {}; check the apt sources (/etc/apt/sources.list*) and install \
                 them by hand",
                unavailable.join(", ")
            );
        }
        let mut install = util::privileged("apt-get", &[("DEBIAN_FRONTEND", "noninteractive")])?;
        install.args(["install", "-y", "-q"]).args(packages);
        if let Err(err) = util::run(&mut install) {
            bail!(
                "{err:#}\ninstalling {} with apt-get failed; see apt's output above",
                packages.join(" ")
            );
        }
        Ok(())
    }

    fn require_apt(packages: &[String]) -> Result<()> {
        if find_program("apt-get").is_none() || find_program("apt-cache").is_none() {
            bail!(
                "this set-up installs system packages with apt (Debian/Ubuntu) and apt-get is not \
                 available here; install the equivalents of these Debian packages by hand, then \
                 rerun: {}",
                packages.join(" ")
            );
        }
        Ok(())
    }
}
