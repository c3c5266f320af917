//! Running commands so the user always sees what is executed, plus small host queries.

use std::{
    env,
    ffi::OsString,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root: xtask lives one level below it.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
}

/// `~/.cargo/bin` (or `$CARGO_HOME/bin`), where rustup's proxies and bpf-linker live.
pub fn cargo_bin_dir() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// `PATH` with the cargo bin directory first: aya-build finds bpf-linker by name, and a fresh
/// rustup install only adds the directory to the PATH of new login shells.
fn child_path() -> &'static OsString {
    static PATH: OnceLock<OsString> = OnceLock::new();
    PATH.get_or_init(|| {
        let cargo_bin = cargo_bin_dir();
        let rest = env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(cargo_bin.clone())
            .chain(env::split_paths(&rest).filter(|dir| *dir != cargo_bin));
        env::join_paths(dirs).unwrap_or(rest)
    })
}

/// A command with the environment every child should see.
pub fn cmd(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env("PATH", child_path());
    // `cargo xtask` runs under the toolchain rustup picked for xtask itself and exports that
    // choice; children must pick their own (e.g. `cargo +nightly`, or a rust-toolchain file).
    command
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTUP_TOOLCHAIN_SOURCE");
    command
}

/// `cargo` (the rustup proxy, so `+nightly` works) run from the workspace root.
pub fn cargo() -> Command {
    let mut command = cmd("cargo");
    command.current_dir(workspace_root());
    command
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that needs root: run directly as root, otherwise through `sudo`.
/// `envs` are passed explicitly because sudo resets the environment.
pub fn privileged(program: &str, envs: &[(&str, &str)]) -> Result<Command> {
    if is_root() {
        let mut command = cmd(program);
        command.envs(envs.iter().copied());
        return Ok(command);
    }
    if find_program("sudo").is_none() {
        bail!(
            "`{program}` needs root and `sudo` is not installed: run this command as root, \
             or install sudo and allow this user to use it"
        );
    }
    let mut command = cmd("sudo");
    if !envs.is_empty() {
        command
            .arg("env")
            .args(envs.iter().map(|(key, value)| format!("{key}={value}")));
    }
    command.arg(program);
    Ok(command)
}

/// Looks a program up on the children's PATH and in the sbin directories, which are often
/// missing from a non-root user's PATH although tools like bpftool and runqlat live there.
pub fn find_program(name: &str) -> Option<PathBuf> {
    env::split_paths(child_path())
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The command as a shell line, including the variables set for it.
pub fn display(command: &Command) -> String {
    let mut words: Vec<String> = command
        .get_envs()
        .filter(|(key, value)| *key != "PATH" && value.is_some())
        .map(|(key, value)| {
            format!(
                "{}={}",
                key.to_string_lossy(),
                value.unwrap_or_default().to_string_lossy()
            )
        })
        .collect();
    words.push(command.get_program().to_string_lossy().into_owned());
    words.extend(command.get_args().map(|arg| quote(&arg.to_string_lossy())));
    words.join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

pub fn echo(command: &Command) {
    println!("  $ {}", display(command));
}

/// Echoes and runs a command with inherited stdio; returns its exit status.
pub fn status(command: &mut Command) -> Result<ExitStatus> {
    echo(command);
    command
        .status()
        .with_context(|| format!("could not start `{}`", display(command)))
}

/// Echoes and runs a command, failing when it does not succeed.
pub fn run(command: &mut Command) -> Result<()> {
    let status = status(command)?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(command));
    }
    Ok(())
}

/// Runs a query quietly and returns its stdout; checks are not echoed, only actions are.
pub fn output(command: &mut Command) -> Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", display(command)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            display(command),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`output`], but `None` when the command cannot start or fails.
pub fn try_output(command: &mut Command) -> Option<String> {
    output(command).ok()
}

/// Whether a "checking X… " line still waits for its verdict.
static LINE_OPEN: AtomicBool = AtomicBool::new(false);

/// Starts a "checking X… " line; the caller ends it with [`ok`] or [`missing`].
pub fn checking(what: &str) {
    print!("checking {what}… ");
    let _ = std::io::stdout().flush();
    LINE_OPEN.store(true, Ordering::Relaxed);
}

/// Ends a "checking X… " line left open by a check that failed with an error.
fn close_line() {
    if LINE_OPEN.swap(false, Ordering::Relaxed) {
        println!("failed");
    }
}

pub fn ok(detail: &str) {
    LINE_OPEN.store(false, Ordering::Relaxed);
    if detail.is_empty() {
        println!("ok");
    } else {
        println!("ok ({detail})");
    }
}

pub fn missing(detail: &str) {
    LINE_OPEN.store(false, Ordering::Relaxed);
    println!("{detail}");
}

pub fn installing(what: &str, why: &str) {
    println!("installing {what} ({why})…");
}

pub fn warn(message: &str) {
    println!("warning: {message}");
}

/// The cargo target directory (honours `CARGO_TARGET_DIR` and config).
pub fn target_dir() -> Result<PathBuf> {
    let metadata = output(cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).context("parsing `cargo metadata` output")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` did not report a target directory")
}

/// Builds kvmtop as a phase of its own ("build kvmtop"); `release` picks the profile. Returns
/// the binary's path.
pub fn build_kvmtop_phase(release: bool) -> Result<PathBuf> {
    let phase = Phase::start("build kvmtop");
    let built = build_kvmtop(release);
    phase.finish(built.is_ok());
    built
}

/// Builds kvmtop; `release` picks the profile. Returns the binary's path.
pub fn build_kvmtop(release: bool) -> Result<PathBuf> {
    let mut build = cargo();
    build.args(["build", "-p", "monitor", "--bin", "kvmtop"]);
    if release {
        build.arg("--release");
    }
    run(&mut build)?;
    Ok(target_dir()?
        .join(if release { "release" } else { "debug" })
        .join("kvmtop"))
}

/// A timed section of work with a header, so long runs show where the time went.
pub struct Phase {
    name: String,
    start: Instant,
}

impl Phase {
    pub fn start(name: &str) -> Self {
        println!("\n==> {name}");
        Self {
            name: name.to_owned(),
            start: Instant::now(),
        }
    }

    /// Names the phase otherwise in the summary (e.g. to say it skipped, and why).
    pub fn rename(&mut self, name: String) {
        self.name = name;
    }

    pub fn finish(self, ok: bool) -> PhaseResult {
        close_line();
        let elapsed = self.start.elapsed();
        let verdict = if ok { "ok" } else { "FAILED" };
        println!("<== {}: {verdict} in {}", self.name, seconds(elapsed));
        PhaseResult {
            name: self.name,
            ok,
            elapsed,
        }
    }
}

pub struct PhaseResult {
    pub name: String,
    pub ok: bool,
    pub elapsed: Duration,
}

pub fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}
