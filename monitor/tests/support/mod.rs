//! Shared by the integration tests: skipping with a reason, running kvmtop and the independent
//! observers (bpftrace, Prometheus, a terminal), and waiting for their readiness lines.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod dashboards;
pub mod fixture;
pub mod harness;
pub mod prometheus;
pub mod tmux;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// How long a VMM may take to boot its guest: generous, because several guests boot at once on a
/// busy host, and the limit only costs time when the test is failing anyway.
pub const START_LIMIT: Duration = Duration::from_mins(2);

/// How long a process may take to exit once its work is done: detaching programs can be slow on a
/// busy host.
pub const EXIT_LIMIT: Duration = Duration::from_mins(1);

/// Records a skipped test: prints the reason and appends it to `$KVMTOP_SKIP_LOG`, which
/// `cargo xtask test` counts and lists, so a skip is never mistaken for a pass.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIP {test}: {reason}");
    if let Some(path) = std::env::var_os("KVMTOP_SKIP_LOG") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("opening the skip log");
        // One write per line: tests run in parallel and append to the same file.
        file.write_all(format!("{test}\t{reason}\n").as_bytes())
            .expect("writing the skip log");
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Why a test needing root, eBPF and (optionally) real KVM guests cannot run here, if it cannot.
pub fn missing_prerequisite(needs_guests: bool, tools: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("needs root (loads eBPF programs)".into());
    }
    if needs_guests && let Err(reason) = guests::preflight() {
        return Some(reason);
    }
    tools
        .iter()
        .find(|tool| which(tool).is_none())
        .map(|tool| format!("{tool} is not installed (cargo xtask setup installs it)"))
}

pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| std::path::Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

/// Starts a port-I/O guest named `name` (with named QEMU threads) and returns it once its vCPUs
/// run, with their threads.
pub fn start_portio(name: &str) -> (guests::Guest, Vec<guests::VcpuThread>) {
    let guest = guests::Guest::start(
        &guests::GuestSpec::new(guests::GuestKind::PortIo)
            .name(name)
            .debug_threads(true),
    )
    .expect("starting a port-I/O guest");
    let vcpus = guest.wait_for_vcpus(START_LIMIT).expect("port-I/O vCPUs");
    (guest, vcpus)
}

pub fn kvmtop() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kvmtop"));
    command.env("RUST_LOG", "warn");
    command
}

/// A child process whose stdout and stderr lines arrive on channels, so tests can wait for a
/// readiness line with a timeout. Killed on drop.
pub struct Observed {
    pub child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    pub stdout_lines: Vec<String>,
    pub stderr_lines: Vec<String>,
}

impl Observed {
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        let stdout = lines(child.stdout.take().expect("piped"));
        let stderr = lines(child.stderr.take().expect("piped"));
        Self {
            child,
            stdout,
            stderr,
            stdout_lines: Vec::new(),
            stderr_lines: Vec::new(),
        }
    }

    /// Sends `signal` to the process (a no-op once it has exited and been reaped).
    pub fn signal(&mut self, signal: libc::c_int) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: plain kill(2) on our own child's pid, which try_wait just found unreaped.
            unsafe { libc::kill(self.child.id().cast_signed(), signal) };
        }
    }

    /// Waits until a line of stdout or stderr contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(line) = self
                .stdout_lines
                .iter()
                .chain(&self.stderr_lines)
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain_to_end(Duration::from_secs(2));
                panic!(
                    "process exited ({status}) before printing {needle:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout_lines.join("\n"),
                    self.stderr_lines.join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "no line containing {needle:?} within {timeout:?}\nstderr so far:\n{}",
                self.stderr_lines.join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGINT and collects the rest of the output. The signal is repeated every few
    /// seconds: observers such as bpftrace print their maps once on the first one they act on,
    /// and a repeat costs nothing if the first was already taken. Not for kvmtop, which exits
    /// at once on a second interrupt: see [`end_window`].
    pub fn interrupt_and_wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.wait_signalling(timeout, Some(libc::SIGINT))
    }

    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.wait_signalling(timeout, None)
    }

    fn wait_signalling(
        &mut self,
        timeout: Duration,
        signal: Option<libc::c_int>,
    ) -> std::process::ExitStatus {
        const REPEAT: Duration = Duration::from_secs(3);
        let deadline = Instant::now() + timeout;
        let mut next_signal = Instant::now();
        loop {
            if let Some(signal) = signal
                && Instant::now() >= next_signal
            {
                self.signal(signal);
                next_signal = Instant::now() + REPEAT;
            }
            self.drain();
            if let Some(status) = self.child.try_wait().expect("waiting for child") {
                self.drain_to_end(Duration::from_secs(10));
                return status;
            }
            if Instant::now() >= deadline {
                let state = stuck_state(self.child.id());
                panic!(
                    "process {} did not exit within {timeout:?}\n{state}\nstdout:\n{}\nstderr:\n{}",
                    self.child.id(),
                    self.stdout_lines.join("\n"),
                    self.stderr_lines.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stdout_text(&self) -> String {
        self.stdout_lines.join("\n")
    }

    fn drain(&mut self) {
        self.stdout_lines.extend(self.stdout.try_iter());
        self.stderr_lines.extend(self.stderr.try_iter());
    }

    /// After the child has exited: collects its output until both streams reach their end, or
    /// until `limit` passes (a grandchild that inherited a stream may keep it open).
    fn drain_to_end(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let (mut stdout_open, mut stderr_open) = (true, true);
        while (stdout_open || stderr_open) && Instant::now() < deadline {
            stdout_open = receive_pending(&self.stdout, &mut self.stdout_lines);
            stderr_open = receive_pending(&self.stderr, &mut self.stderr_lines);
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Moves the lines waiting on `stream` into `lines`; false once the stream has ended.
fn receive_pending(stream: &mpsc::Receiver<String>, lines: &mut Vec<String>) -> bool {
    loop {
        match stream.try_recv() {
            Ok(line) => lines.push(line),
            Err(mpsc::TryRecvError::Empty) => return true,
            Err(mpsc::TryRecvError::Disconnected) => return false,
        }
    }
}

impl Drop for Observed {
    /// Asks the process to end (SIGTERM), so a tool with workers of its own (stress-ng) stops
    /// them too, and kills it if it has not ended within a few seconds.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// bpftrace counting `kvm:kvm_userspace_exit` per (pid, tid, reason, errno) for the given pids.
pub fn bpftrace_userspace_exits(pids: &[u32]) -> Observed {
    let filter = pids
        .iter()
        .map(|p| format!("pid == {p}"))
        .collect::<Vec<_>>()
        .join(" || ");
    bpftrace(&format!(
        "tracepoint:kvm:kvm_userspace_exit /{filter}/ {{ @exits[pid, tid, args->reason, args->errno] = count(); }}"
    ))
}

/// Where a process that does not exit is: its state and, when readable, its kernel stack.
fn stuck_state(pid: u32) -> String {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_else(|e| format!("({file}: {e})"))
    };
    let state = read("status")
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or("State: unknown")
        .to_owned();
    format!(
        "{state}\nwchan: {}\nkernel stack:\n{}",
        read("wchan"),
        read("stack")
    )
}

/// Runs a bpftrace program and waits until its probes are attached. Interrupt it to get the
/// maps printed.
pub fn bpftrace(program: &str) -> Observed {
    let mut command = Command::new("bpftrace");
    command.arg("-e").arg(program);
    let mut observed = Observed::spawn(command);
    observed.wait_for("Attaching", Duration::from_mins(1));
    // "Attaching N probes..." is printed before attachment completes.
    thread::sleep(Duration::from_millis(500));
    observed
}

/// Another tracer, as an operator starts one beside kvmtop in an incident: a bpftrace program
/// updating maps on the scheduler and block tracepoints kvmtop hooks, and on every system call
/// (which runs with interrupts enabled, so block completions arriving in an interrupt meet it
/// mid-run). As a classic tracepoint program it makes the kernel skip every other classic
/// tracepoint program on a CPU while it runs there; kvmtop's BTF and raw tracepoint programs
/// must lose nothing to it. Stopped on drop.
pub fn competing_tracer() -> Observed {
    bpftrace(
        "tracepoint:raw_syscalls:sys_enter { @syscalls[cpu] = count(); }
         tracepoint:sched:sched_switch { @switches[cpu] = count(); }
         tracepoint:sched:sched_wakeup { @wakeups[cpu] = count(); }
         tracepoint:block:block_rq_issue { @issued[cpu] = count(); }
         tracepoint:block:block_rq_complete { @completed[args->dev] = count(); }
         tracepoint:tlb:tlb_flush { @flushes[cpu] = count(); }
         END { clear(@syscalls); clear(@switches); clear(@wakeups); clear(@issued);
               clear(@completed); clear(@flushes); }",
    )
}

/// Parses bpftrace map output lines `@name[a, b, c]: N` into (keys, N).
pub fn parse_bpftrace_map(output: &str, name: &str) -> Vec<(Vec<i64>, u64)> {
    let prefix = format!("@{name}[");
    output
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix(&prefix)?;
            let (keys, value) = rest.split_once("]: ")?;
            let keys = keys
                .split(',')
                .map(|k| k.trim().parse().ok())
                .collect::<Option<Vec<i64>>>()?;
            Some((keys, value.trim().parse().ok()?))
        })
        .collect()
}

/// Reads a whole stream to a string (for stdout of short-lived commands).
pub fn read_all(mut stream: impl std::io::Read) -> String {
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The one-letter state of a process (`R`, `S`, `Z`, …), `None` once it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Asserts that kvmtop's figure is within `tolerance` (a share, e.g. 0.02) of an independent
/// observer's, the allowance rounded up to a whole event, and prints both for the log.
pub fn assert_within(what: &str, measured: u64, expected: u64, tolerance: f64) {
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "counts are far below 2^52 and the tolerance is positive"
    )]
    let allowed = (expected as f64 * tolerance).ceil() as u64;
    eprintln!("{what}: kvmtop {measured}, reference {expected}");
    assert!(
        measured.abs_diff(expected) <= allowed,
        "{what}: kvmtop counted {measured}, reference {expected} (tolerance {allowed})"
    );
}

/// Starts `kvmtop snapshot --format json` (with `extra` arguments) and returns once its window
/// has begun. The window is open-ended: [`end_window`] closes it. Tests freeze their workload at
/// both ends of the window, so it must outlast whatever runs in between on however slow a host,
/// which a fixed duration cannot promise.
pub fn start_window(extra: &[&std::ffi::OsStr]) -> Observed {
    start_window_logging(extra, "warn")
}

/// [`start_window`] with kvmtop's log filter (`RUST_LOG`) set to `filter`.
pub fn start_window_logging(extra: &[&std::ffi::OsStr], filter: &str) -> Observed {
    let mut command = kvmtop();
    command
        .env("RUST_LOG", filter)
        .args(["snapshot", "--format", "json", "--duration", "3600"])
        .args(extra);
    let mut kvmtop = Observed::spawn(command);
    kvmtop.wait_for("sampling for", Duration::from_mins(1));
    kvmtop
}

/// Ends a window started by [`start_window`] with one interrupt (Ctrl-C), asserts kvmtop
/// succeeded, and returns its snapshot.
pub fn end_window(kvmtop: &mut Observed) -> serde_json::Value {
    // Once only: a second interrupt would end kvmtop before it prints the snapshot.
    kvmtop.signal(libc::SIGINT);
    let status = kvmtop.wait(EXIT_LIMIT);
    assert!(
        status.success(),
        "kvmtop failed ({status}): {}",
        kvmtop.stderr_lines.join("\n")
    );
    serde_json::from_str(&kvmtop.stdout_text()).expect("the snapshot is JSON")
}

/// Runs `kvmtop snapshot --format json` over `seconds` with `extra` arguments to completion,
/// asserts it succeeded, and returns the parsed snapshot and the finished process (for its
/// stderr).
pub fn run_snapshot(seconds: f64, extra: &[&std::ffi::OsStr]) -> (serde_json::Value, Observed) {
    let mut command = kvmtop();
    command
        .args(["snapshot", "--format", "json", "--duration"])
        .arg(seconds.to_string())
        .args(extra);
    let mut kvmtop = Observed::spawn(command);
    let status = kvmtop.wait(Duration::from_mins(2));
    assert!(
        status.success(),
        "kvmtop failed: {}",
        kvmtop.stderr_lines.join("\n")
    );
    let snapshot = serde_json::from_str(&kvmtop.stdout_text()).expect("snapshot is JSON");
    (snapshot, kvmtop)
}
