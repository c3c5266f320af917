//! The local control socket of a recording kvmtop: `kvmtop mark "text"` from another shell (a
//! deploy script, a colleague) puts a note on the timeline of every kvmtop recording on this
//! host.
//!
//! Each recording kvmtop listens on `DIR/control-<pid>.sock`. `DIR` (default `/run/kvmtop`) is
//! created mode 0700 and the socket mode 0600, and a connection is served only when the peer's
//! uid is root's or kvmtop's own (`SO_PEERCRED`): marks become part of a recording others will
//! read, so only who could read kvmtop's own files may write them.
//!
//! The protocol is one line each way: `mark <text>\n`, answered `ok\n` once the mark is queued
//! for the recording, or `dump\n` (a kvmtop with a flight recorder: `kvmtop dump-flight`),
//! answered `ok <path>\n` once the dump is written; either may be answered `error <why>\n`. A
//! request is at most [`MAX_REQUEST`] bytes and must arrive within [`REQUEST_TIMEOUT`];
//! anything else is refused.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::{
        fs::{DirBuilderExt as _, PermissionsExt as _},
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::Context as _;

use crate::model::Untrusted;

/// Where recording kvmtops listen unless told otherwise.
pub const DEFAULT_DIR: &str = "/run/kvmtop";

/// The longest request line served.
pub const MAX_REQUEST: usize = 4096;

/// A client that has not sent its request by then is dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What a client asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Mark(Untrusted),
    Dump,
}

/// Answers a request: `Ok` with what to say after `ok` (may be empty), or `Err` with why not.
pub type Handler = dyn FnMut(Request) -> Result<String, String> + Send;

/// A listening control socket; the socket file is removed when it is dropped.
pub struct ControlSocket {
    path: PathBuf,
}

impl ControlSocket {
    /// Listens in `dir`, handing every mark received to `marks`; dumps are refused.
    pub fn listen(dir: &Path, marks: mpsc::Sender<Untrusted>) -> anyhow::Result<Self> {
        Self::serve_with(
            dir,
            Box::new(move |request| match request {
                Request::Mark(text) => marks
                    .send(text)
                    .map(|()| String::new())
                    .map_err(|_| "the recording has ended".to_owned()),
                Request::Dump => Err("no flight recorder in this kvmtop".to_owned()),
            }),
        )
    }

    /// Listens in `dir`, answering every request with `handler`, one at a time.
    pub fn serve_with(dir: &Path, mut handler: Box<Handler>) -> anyhow::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the control directory {}", dir.display()))?;
        let path = dir.join(format!("control-{}.sock", std::process::id()));
        // A socket of a process that had this pid before: it cannot be listening any more.
        let _ = fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    // One client at a time: marks are rare, and a slow client is cut off by the
                    // timeout.
                    let _ = serve(&stream, &mut *handler);
                }
            })
            .context("starting the control thread")?;
        Ok(Self { path })
    }

    /// The socket's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn serve(stream: &UnixStream, handler: &mut Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let answer = match peer_allowed(stream) {
        Err(why) => format!("error {why}"),
        Ok(()) => match read_request(stream) {
            Err(why) => format!("error {why}"),
            Ok(request) => match handler(request) {
                Ok(said) if said.is_empty() => "ok".to_owned(),
                Ok(said) => format!("ok {said}"),
                Err(why) => format!("error {why}"),
            },
        },
    };
    writeln!(writer, "{answer}")
}

/// Root, or kvmtop's own user.
fn peer_allowed(stream: &UnixStream) -> Result<(), String> {
    use std::os::fd::AsRawFd as _;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len =
        libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).expect("ucred is small");
    // SAFETY: `cred` and `len` are valid for writes and sized for SO_PEERCRED.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err("cannot tell who is asking".into());
    }
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
    if cred.uid == 0 || cred.uid == own {
        Ok(())
    } else {
        Err(format!("uid {} may not mark this recording", cred.uid))
    }
}

fn read_request(stream: &UnixStream) -> Result<Request, String> {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_REQUEST + 1).expect("small");
    BufReader::new(stream.take(limit))
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the request: {e}"))?;
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    let Some(line) = line.strip_suffix(b"\n") else {
        return Err("request not ended by a newline".into());
    };
    if line == b"dump" {
        return Ok(Request::Dump);
    }
    let Some(text) = line.strip_prefix(b"mark ") else {
        return Err("unknown request (`mark TEXT` and `dump` are served)".into());
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err("empty mark".into());
    }
    Ok(Request::Mark(Untrusted::from_bytes(text)))
}

/// What `kvmtop mark` achieved.
#[derive(Debug, Default)]
pub struct Sent {
    /// Sockets that took the request, with what they said after `ok` (a dump's path).
    pub accepted: Vec<(PathBuf, String)>,
    /// Sockets that answered with an error, or could not be reached, and why.
    pub refused: Vec<(PathBuf, String)>,
}

/// Sends `text` as a mark to every kvmtop listening in `dir`.
pub fn send_mark(dir: &Path, text: &str) -> anyhow::Result<Sent> {
    if text.contains('\n') {
        anyhow::bail!("a mark is one line: it may not contain a newline");
    }
    if text.trim().is_empty() {
        anyhow::bail!("a mark needs some text");
    }
    let request = format!("mark {text}\n");
    if request.len() > MAX_REQUEST {
        anyhow::bail!("a mark is at most {} bytes", MAX_REQUEST - "mark \n".len());
    }
    Ok(send(&sockets(dir)?, &request, REQUEST_TIMEOUT * 2))
}

/// Asks the kvmtops listening in `dir` (only the one of `pid` if given) for a dump of their
/// flight recorder; each that has one answers with the file it wrote.
pub fn send_dump(dir: &Path, pid: Option<u32>) -> anyhow::Result<Sent> {
    let sockets = match pid {
        None => sockets(dir)?,
        Some(pid) => {
            let socket = dir.join(format!("control-{pid}.sock"));
            anyhow::ensure!(
                socket.exists(),
                "no kvmtop with pid {pid} listens in {}",
                dir.display()
            );
            vec![socket]
        }
    };
    // Dumping reads the whole ring: give it the time the kvmtop gives itself.
    Ok(send(&sockets, "dump\n", DUMP_ANSWER_TIMEOUT))
}

/// How long `dump-flight` waits for its answer: the flight recorder waits at most a minute for
/// a dump (`recording::flight::DUMP_TIMEOUT`), then answers.
const DUMP_ANSWER_TIMEOUT: Duration = Duration::from_secs(60 + 15);

fn send(sockets: &[PathBuf], request: &str, timeout: Duration) -> Sent {
    let mut sent = Sent::default();
    for socket in sockets {
        match ask(socket, request, timeout) {
            Ok(said) => sent.accepted.push((socket.clone(), said)),
            Err(why) => sent.refused.push((socket.clone(), why)),
        }
    }
    sent
}

/// The control sockets in `dir`, in name order.
fn sockets(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "no kvmtop is recording on this host ({} does not exist)",
                dir.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut sockets: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "sock")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("control-"))
        })
        .collect();
    sockets.sort();
    Ok(sockets)
}

/// Sends `request` and returns what the answer says after `ok`.
fn ask(socket: &Path, request: &str, timeout: Duration) -> Result<String, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        // The socket file of a kvmtop that was killed.
        std::io::ErrorKind::ConnectionRefused => "no kvmtop listening (left over)".to_owned(),
        _ => e.to_string(),
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(stream.take(1024))
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    let answer = answer.trim_end();
    match answer.strip_prefix("error ") {
        Some(why) => Err(Untrusted::new(why).to_string()),
        None if answer == "ok" => Ok(String::new()),
        None if answer.starts_with("ok ") => Ok(answer["ok ".len()..].to_owned()),
        None => Err(format!(
            "unexpected answer {:?}",
            Untrusted::new(answer).to_string()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_reaches_the_listener_and_bad_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control");
        let (tx, rx) = mpsc::channel();
        let socket = ControlSocket::listen(&control, tx).unwrap();
        let mode = fs::metadata(&control).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let mode = fs::metadata(socket.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let sent = send_mark(&control, "deploy \u{1b}]52;c;x\u{7} v2").unwrap();
        assert_eq!(
            sent.accepted,
            [(socket.path().to_owned(), String::new())],
            "{sent:?}"
        );
        let mark = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(mark.exact(), "deploy \u{1b}]52;c;x\u{7} v2");

        for (request, why) in [
            ("hello\n", "unknown request"),
            ("mark \n", "empty mark"),
            ("mark no newline", "not ended by a newline"),
        ] {
            let mut stream = UnixStream::connect(socket.path()).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            assert!(
                answer.starts_with("error ") && answer.contains(why),
                "{answer}"
            );
        }
        let mut stream = UnixStream::connect(socket.path()).unwrap();
        let _ = stream.write_all(&vec![b'x'; MAX_REQUEST * 2]);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.contains("longer than"), "{answer}");
        assert!(rx.try_recv().is_err(), "nothing else was queued");

        let path = socket.path().to_owned();
        drop(socket);
        assert!(!path.exists(), "the socket goes with its listener");
        let sent = send_mark(&control, "late").unwrap();
        assert!(sent.accepted.is_empty());
    }

    #[test]
    fn a_dump_is_answered_with_its_path_and_refused_without_a_flight_recorder() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control");
        let flight = ControlSocket::serve_with(
            &control,
            Box::new(|request| match request {
                Request::Dump => Ok("/var/lib/kvmtop/dumps/flight-1.kvmrec".to_owned()),
                Request::Mark(_) => Ok(String::new()),
            }),
        )
        .unwrap();
        let sent = send_dump(&control, Some(std::process::id())).unwrap();
        assert_eq!(
            sent.accepted,
            [(
                flight.path().to_owned(),
                "/var/lib/kvmtop/dumps/flight-1.kvmrec".to_owned()
            )]
        );
        drop(flight);
        let (tx, _rx) = mpsc::channel();
        let recorder = ControlSocket::listen(&control, tx).unwrap();
        let sent = send_dump(&control, None).unwrap();
        assert!(sent.accepted.is_empty());
        assert_eq!(sent.refused.len(), 1);
        assert!(sent.refused[0].1.contains("no flight recorder"), "{sent:?}");
        drop(recorder);
        let err = send_dump(&control, Some(1)).unwrap_err();
        assert!(err.to_string().contains("no kvmtop with pid 1"), "{err}");
    }

    #[test]
    fn marks_say_why_they_cannot_be_sent() {
        let dir = tempfile::tempdir().unwrap();
        let err = send_mark(&dir.path().join("none"), "x").unwrap_err();
        assert!(err.to_string().contains("no kvmtop is recording"), "{err}");
        assert!(send_mark(dir.path(), "two\nlines").is_err());
        assert!(send_mark(dir.path(), " ").is_err());
    }
}
