//! Starting the flight recorder of `serve` and the live view, and the ways to reach it: the
//! control socket (`kvmtop mark`, `kvmtop dump-flight`) and SIGUSR1. None of it may stop kvmtop:
//! a ring that cannot be had (another kvmtop holds it, no right to write, a read-only disk)
//! leaves kvmtop running without one, said once.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    thread,
};

use crate::{
    control::{self, ControlSocket, Request},
    model::{Untrusted, untrusted::is_unsafe},
    recording::flight::{self, Flight},
};

/// Where `serve` and the live view keep their ring, as the options say.
pub struct FlightTo {
    /// `None`: `--no-flight-recorder`.
    pub config: Option<flight::Config>,
    pub control_dir: PathBuf,
}

/// Where kvmtop says what happened to its flight recorder: stderr for `serve`, the bottom line
/// of the live view.
pub type Notify = Arc<dyn Fn(String) + Send + Sync>;

/// A running flight recorder and the control socket that reaches it.
pub struct Deck {
    pub flight: Option<Flight>,
    _control: Option<ControlSocket>,
}

/// Starts the ring, its control socket and the SIGUSR1 handler; says once why there is no ring
/// or no socket. Call once the capabilities are dropped: it starts threads.
pub fn start(to: &FlightTo, notify: &Notify) -> Deck {
    let flight = to.config.clone().and_then(|config| {
        Flight::start(config, Arc::clone(notify))
            .inspect_err(|e| notify(format!("flight recorder off: {e}")))
            .ok()
    });
    let control = flight.as_ref().and_then(|flight| {
        let flight = flight.clone();
        ControlSocket::serve_with(
            &to.control_dir,
            Box::new(move |request| match request {
                Request::Mark(text) => flight.mark(text).map(|()| String::new()),
                Request::Dump => flight
                    .dump_and_wait()
                    .map(|path| path.display().to_string()),
            }),
        )
        .inspect_err(|e| {
            notify(format!(
                "no control socket ({e:#}): `kvmtop mark` and `kvmtop dump-flight` cannot reach \
                 this kvmtop"
            ));
        })
        .ok()
    });
    on_sigusr1(flight.clone(), Arc::clone(notify));
    Deck {
        flight,
        _control: control,
    }
}

impl Deck {
    /// Puts the ring's last windows on disk before kvmtop exits; says so if it cannot (each
    /// message names the flight recorder).
    pub fn finish(self, notify: &Notify) {
        if let Some(flight) = &self.flight
            && let Err(e) = flight.finish()
        {
            notify(e);
        }
    }
}

/// SIGUSR1 dumps the ring. Without a ring it is said so, rather than the signal ending kvmtop.
fn on_sigusr1(flight: Option<Flight>, notify: Notify) {
    let mut signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1]) {
        Ok(signals) => signals,
        Err(e) => {
            notify(format!("SIGUSR1 will not dump the flight recorder: {e}"));
            return;
        }
    };
    let spawned = thread::Builder::new()
        .name("sigusr1".into())
        .spawn(move || {
            for _ in signals.forever() {
                match &flight {
                    Some(flight) => match flight.dump_and_wait() {
                        Ok(path) => {
                            notify(format!("flight recording dumped to {}", path.display()));
                        }
                        Err(why) => notify(format!("flight dump failed: {why}")),
                    },
                    None => notify("SIGUSR1: no flight recorder to dump".to_owned()),
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("SIGUSR1 will not dump the flight recorder: {e}");
    }
}

/// `kvmtop dump-flight`: asks the kvmtops with a flight recorder (or the one of `pid`) for a
/// dump, moves it to `out` if given, and prints the path of each file written.
///
/// The answer is a path named by another process, which may run as another user: it is taken
/// only for a regular file named like a dump and owned by whoever owns the socket that answered
/// (so a socket planted by one user can only hand over that user's files), opened without
/// following links, and printed sanitized.
pub fn dump_flight(control_dir: &Path, out: Option<&Path>, pid: Option<u32>) -> anyhow::Result<()> {
    let sent = control::send_dump(control_dir, pid)?;
    for (socket, why) in &sent.refused {
        eprintln!("kvmtop: {}: {why}", socket.display());
    }
    let mut written = Vec::new();
    for (socket, answer) in &sent.accepted {
        match checked_dump(socket, answer) {
            Ok(path) => written.push(path),
            Err(why) => eprintln!("kvmtop: {}: {why:#}", socket.display()),
        }
    }
    let show = |path: &Path| Untrusted::new(path.to_string_lossy()).to_string();
    match (written.as_slice(), out) {
        ([], _) => anyhow::bail!("no kvmtop with a flight recorder answered with a dump"),
        ([dumped], Some(out)) => {
            move_without_overwriting(dumped, out)?;
            println!("{}", show(out));
        }
        (_, Some(_)) => {
            for path in &written {
                println!("{}", show(path));
            }
            anyhow::bail!(
                "{} kvmtops dumped (above); name one with --pid to have its dump moved to -o",
                written.len()
            );
        }
        (_, None) => {
            for path in &written {
                println!("{}", show(path));
            }
        }
    }
    Ok(())
}

/// The dump a socket's answer names, if it is one: an absolute path to a regular file (not a
/// link) named `flight-….kvmrec`, owned by the socket's owner.
fn checked_dump(socket: &Path, answer: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let path = PathBuf::from(answer);
    let named_like_a_dump = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.starts_with("flight-") && n.ends_with(".kvmrec") && !n.contains(is_unsafe)
    });
    anyhow::ensure!(
        path.is_absolute() && named_like_a_dump,
        "answered with something other than a dump's path: {}",
        Untrusted::new(answer)
    );
    let socket_owner = fs::symlink_metadata(socket)?.uid();
    let dump = fs::symlink_metadata(&path)?;
    anyhow::ensure!(
        dump.file_type().is_file() && dump.uid() == socket_owner,
        "{} is not a dump of the kvmtop that owns the socket (a link, or another owner)",
        Untrusted::new(answer)
    );
    Ok(path)
}

/// Moves `from` to `to`, which must not exist: a link then a removal on the same file system,
/// a copy (of the file itself, never through a link, readable by its owner only) then a removal
/// across file systems.
fn move_without_overwriting(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;

    use anyhow::Context as _;
    match fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            anyhow::bail!(
                "{} exists already; the dump stays at {}",
                to.display(),
                from.display()
            )
        }
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let mut source = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(from)
                .with_context(|| format!("reading {}", from.display()))?;
            anyhow::ensure!(
                source.metadata()?.file_type().is_file(),
                "{} is not a regular file",
                from.display()
            );
            let mut target = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(to)
                .with_context(|| format!("creating {}", to.display()))?;
            if let Err(e) = io::copy(&mut source, &mut target).and_then(|_| target.sync_all()) {
                let _ = fs::remove_file(to);
                return Err(e).with_context(|| format!("writing {}", to.display()));
            }
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("linking {} to {}", from.display(), to.display()));
        }
    }
    fs::remove_file(from).with_context(|| format!("removing {}", from.display()))
}
