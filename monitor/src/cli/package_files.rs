//! `kvmtop package-files DIR` (hidden): the files a package installs beside the binary that come
//! from kvmtop itself — a man page for kvmtop and for each subcommand, shell completions, and the
//! advice thresholds file with every key at its default, commented out. `cargo xtask dist` runs
//! it on the release binary it packages, so the pages and completions always describe the
//! binary they ship with.
//!
//! A hidden subcommand rather than a build script: the pages come from the same `clap`
//! definition the binary parses with, without making every build of the agent render them. It
//! is recognised before the command line is parsed, outside [`Cli`]: clap's bash completion
//! would offer a hidden subcommand of it.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};
use clap_complete::Shell;

use super::Cli;
use crate::advice::Thresholds;

/// The subcommand's name; hidden from `--help`, the man pages and the completions.
pub const NAME: &str = "package-files";

/// `kvmtop package-files DIR`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "kvmtop package-files",
    about = "Write the man pages, shell completions and commented thresholds file a package \
             installs into DIR (`cargo xtask dist` runs it)."
)]
struct Args {
    /// The directory to fill (created if missing).
    dir: PathBuf,
}

/// Runs `kvmtop package-files` when the command line asks for it; `None` otherwise.
pub fn run_if_asked(args: impl IntoIterator<Item = OsString>) -> Option<ExitCode> {
    let mut args = args.into_iter();
    let program = args.next()?;
    let mut rest = args.peekable();
    if rest.peek().is_none_or(|first| first != NAME) {
        return None;
    }
    let args = Args::parse_from(std::iter::once(program).chain(rest.skip(1)));
    Some(match write(&args.dir) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("kvmtop: {err:#}");
            ExitCode::FAILURE
        }
    })
}

/// The shells kvmtop ships completions for, with the file each one's package directory
/// expects (`/usr/share/bash-completion/completions/kvmtop`,
/// `/usr/share/zsh/vendor-completions/_kvmtop`, `/usr/share/fish/vendor_completions.d/kvmtop.fish`).
pub const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "kvmtop"),
    (Shell::Zsh, "_kvmtop"),
    (Shell::Fish, "kvmtop.fish"),
];

/// Writes `DIR/man/*.1`, `DIR/completions/<shell>/<file>` and `DIR/advice.toml`; returns the
/// files written.
pub fn write(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let man = dir.join("man");
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("writing the man pages into {}", man.display()))?;
    let mut written = listing(&man)?;

    for (shell, file) in COMPLETIONS {
        let shell_dir = dir.join("completions").join(shell.to_string());
        fs::create_dir_all(&shell_dir)
            .with_context(|| format!("creating {}", shell_dir.display()))?;
        let path = shell_dir.join(file);
        let mut out =
            fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        clap_complete::generate(shell, &mut Cli::command(), "kvmtop", &mut out);
        written.push(path);
    }

    let advice = dir.join("advice.toml");
    fs::write(&advice, commented_defaults())
        .with_context(|| format!("writing {}", advice.display()))?;
    written.push(advice);
    Ok(written)
}

/// The thresholds file of `kvmtop explain --defaults` with every key commented out, for
/// `/etc/kvmtop/advice.toml`: a key an operator uncomments overrides its default, and the keys
/// left alone follow the defaults of the kvmtop installed, also after an upgrade.
#[must_use]
pub fn commented_defaults() -> String {
    let mut out = format!(
        "# {path}: read by every kvmtop command that gives advice, unless --config or\n\
         # KVMTOP_CONFIG names another file. Every key below is commented out and so at its\n\
         # default; uncomment a key and change its value to override it.\n#\n",
        path = super::DEFAULT_CONFIG
    );
    for line in Thresholds::default_toml().lines() {
        if line.is_empty() || line.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str("# ");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn listing(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand a user can type, the way its man page is named.
    fn page_names() -> Vec<String> {
        let command = Cli::command();
        std::iter::once("kvmtop".to_owned())
            .chain(
                command
                    .get_subcommands()
                    .filter(|sub| !sub.is_hide_set())
                    .map(|sub| format!("kvmtop-{}", sub.get_name())),
            )
            .collect()
    }

    #[test]
    fn every_subcommand_gets_a_man_page_naming_its_options() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path()).unwrap();
        let command = Cli::command();
        let mut expected = page_names();
        expected.sort();
        let mut pages: Vec<String> = written
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "1"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        pages.sort();
        assert_eq!(pages, expected, "one page per visible subcommand");
        assert!(expected.len() > 8, "{expected:?}");
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            let page = fs::read_to_string(
                dir.path()
                    .join("man")
                    .join(format!("kvmtop-{}.1", sub.get_name())),
            )
            .unwrap();
            assert!(
                page.starts_with(".ie") || page.contains(".TH "),
                "not roff: {page}"
            );
            assert!(
                page.contains(&format!("kvmtop\\-{}", sub.get_name().replace('-', "\\-"))),
                "the page names its command: {page}"
            );
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    assert!(
                        page.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                        "kvmtop-{} lacks --{long}",
                        sub.get_name()
                    );
                }
            }
        }
        let top = fs::read_to_string(dir.path().join("man/kvmtop.1")).unwrap();
        assert!(top.contains("kvmtop\\-serve(1)"), "{top}");
        assert!(!top.contains(NAME), "the hidden subcommand stays out");
    }

    #[test]
    fn completions_offer_the_subcommands_but_not_the_hidden_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path()).unwrap();
        for (shell, file) in COMPLETIONS {
            let text = fs::read_to_string(
                dir.path()
                    .join("completions")
                    .join(shell.to_string())
                    .join(file),
            )
            .unwrap();
            for name in ["snapshot", "serve", "dump-flight", "replay"] {
                assert!(text.contains(name), "{shell} lacks {name}");
            }
            assert!(!text.contains(NAME), "{shell} offers {NAME}");
        }
    }

    #[test]
    fn the_commented_defaults_change_nothing_and_uncomment_to_the_defaults() {
        let text = commented_defaults();
        let parsed = Thresholds::from_toml_str(&text, "advice.toml").unwrap();
        assert_eq!(parsed, Thresholds::default());
        let is_key = |rest: &&str| {
            crate::advice::config::KEYS
                .iter()
                .any(|info| rest.starts_with(&format!("{} = ", info.key)))
        };
        let uncommented: String = text
            .lines()
            .map(|line| line.strip_prefix("# ").filter(is_key).unwrap_or(line))
            .fold(String::new(), |text, line| text + line + "\n");
        let keys = uncommented
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .count();
        assert_eq!(keys, crate::advice::config::KEYS.len());
        assert_eq!(
            Thresholds::from_toml_str(&uncommented, "uncommented").unwrap(),
            Thresholds::default()
        );
    }
}
