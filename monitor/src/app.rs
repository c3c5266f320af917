//! The ways to run kvmtop. The live ones open a [`Session`], give up the capabilities they no
//! longer need, sample the session, and hand snapshots to a presenter (the table, the metrics
//! endpoint, a recording); collection never waits on presentation. `replay` reads a recording
//! and needs no privileges.

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use anyhow::Context as _;

mod flight;
pub use flight::{FlightTo, dump_flight};

use crate::{
    advice::{Advisor, Roots, Thresholds},
    control,
    host::clock::thread_cpu_ns,
    model::Snapshot,
    output::{self, ExportFormat, Format},
    privileges,
    recording::{self, playback::Recording, recorder::Recorder},
    session::{Config, Sample, Session},
    tui,
};

/// How often `snapshot` rescans for VMs within its window.
const RESCAN_PERIOD: Duration = Duration::from_millis(250);

/// `kvmtop snapshot`: one window, printed once.
pub fn snapshot(
    config: &Config,
    thresholds: Thresholds,
    duration: Duration,
    format: Format,
) -> anyhow::Result<()> {
    let interrupted = ends_early_on_interrupt()?;
    let mut session = Session::open(config)?;
    drop_privileges(Announce::Log);
    // One window: advice reports what holds over it, without waiting for a second window.
    let mut advisor = Advisor::one_shot(thresholds, advice_roots(config));
    let first = session.sample();
    advisor.start_window(&first.vmms);
    // Tests and scripts wait for this line to know the window has started.
    eprintln!(
        "kvmtop: sampling for {:.1} s (Ctrl-C ends the window early)",
        duration.as_secs_f64()
    );
    // Keep discovery watching while the guests run, so vCPU threads are mapped even when the
    // guests are paused at both ends of the window.
    let deadline = first.at + duration;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        if interrupted.load(Ordering::Relaxed) {
            eprintln!(
                "kvmtop: interrupted, reporting the {:.1} s sampled",
                first.at.elapsed().as_secs_f64()
            );
            break;
        }
        thread::sleep(left.min(RESCAN_PERIOD));
        session.rescan();
    }
    let last = session.sample();
    let snapshot = advised(&session, &mut advisor, &first, &last);
    let mut stdout = std::io::stdout().lock();
    match format {
        Format::Json => output::json::write(&mut stdout, &snapshot)?,
        Format::Text => output::text::write(&mut stdout, &snapshot)?,
    }
    Ok(())
}

/// Makes the first SIGINT (Ctrl-C) set the returned flag instead of ending the process, so an
/// operator can close a window early and still get its report, as with bpftrace; a second one
/// ends kvmtop at once.
fn ends_early_on_interrupt() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::{consts::SIGINT, flag};
    let interrupted = Arc::new(AtomicBool::new(false));
    // Registered first, so it sees the flag as the previous interrupt left it.
    flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&interrupted))
        .context("installing the interrupt handler")?;
    flag::register(SIGINT, Arc::clone(&interrupted)).context("installing the interrupt handler")?;
    Ok(interrupted)
}

/// `kvmtop` / `kvmtop top`: the live table, with its flight recorder.
pub fn top(
    config: &Config,
    thresholds: Thresholds,
    interval: Duration,
    flight_to: &FlightTo,
) -> anyhow::Result<()> {
    let session = Session::open(&config.sampling_every(interval))?;
    drop_privileges(Announce::Log);
    let advisor = Advisor::new(thresholds, advice_roots(config));
    // What the flight recorder says goes to the view's bottom line, not over the table.
    let (notice_tx, notices) = mpsc::channel();
    let notify: flight::Notify = Arc::new(move |text| {
        let _ = notice_tx.send(text);
    });
    let deck = flight::start(flight_to, &notify);
    let ring = deck.flight.clone();
    let (tx, rx) = mpsc::sync_channel(2);
    spawn_sampler(session, advisor, interval, move |snapshot| {
        if let Some(ring) = &ring {
            ring.record(Arc::new(snapshot.clone()));
        }
        tx.send(snapshot).is_ok()
    });
    let keys = tui::flight_keys::FlightKeys::new(
        deck.flight.clone(),
        flight_to.control_dir.clone(),
        notices,
    );
    let shown = tui::run(&rx, interval, keys);
    // The view is gone: what the ring says now goes to stderr.
    let notify: flight::Notify = Arc::new(|text| eprintln!("kvmtop: {text}"));
    deck.finish(&notify);
    shown
}

/// How often `record` says how far it has got.
const RECORD_PROGRESS_EVERY: u64 = 60;

/// Where and how `record` records.
pub struct RecordTo {
    pub dir: PathBuf,
    pub store: recording::store::Config,
    /// Where to listen for marks.
    pub control_dir: PathBuf,
}

/// `kvmtop record`: every window into a recording, until `duration` has passed or SIGINT or
/// SIGTERM arrives; marks sent with `kvmtop mark` go on its timeline.
pub fn record(
    config: &Config,
    thresholds: Thresholds,
    to: &RecordTo,
    duration: Option<Duration>,
    interval: Duration,
) -> anyhow::Result<()> {
    use signal_hook::{consts::TERM_SIGNALS, flag};
    let dir = to.dir.as_path();
    let stop = Arc::new(AtomicBool::new(false));
    for &signal in TERM_SIGNALS {
        // A second signal ends kvmtop at once, as for `snapshot`.
        flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .context("installing the signal handlers")?;
        flag::register(signal, Arc::clone(&stop)).context("installing the signal handlers")?;
    }
    // A directory kvmtop cannot record into is reported before the programs are loaded.
    let mut recorder = Recorder::open(dir, to.store.clone())?;
    let mut session = Session::open(&config.sampling_every(interval))?;
    // Before the control thread starts: a thread keeps the capabilities it started with.
    drop_privileges(Announce::Print);
    let (mark_tx, marks) = mpsc::channel();
    // Without the socket the recording still goes on, without marks from other shells.
    let control = control::ControlSocket::listen(&to.control_dir, mark_tx)
        .inspect_err(|e| eprintln!("kvmtop: marks unavailable: {e:#}"))
        .ok();
    let mut advisor = Advisor::new(thresholds, advice_roots(config));
    eprintln!(
        "kvmtop: recording a window every {:.1} s into {}{} (Ctrl-C stops)",
        interval.as_secs_f64(),
        dir.display(),
        duration.map_or(String::new(), |d| format!(" for {:.0} s", d.as_secs_f64())),
    );
    let mut previous = session.sample();
    advisor.start_window(&previous.vmms);
    let deadline = duration.map(|d| previous.at + d);
    let mut failed_writes = 0_u64;
    let mut recording_cpu_ns = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        // Short naps, so a signal stops the recording within a fraction of a window.
        let next = previous.at + interval;
        while let Some(left) = next.checked_duration_since(std::time::Instant::now()) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            for text in marks.try_iter() {
                if let Err(e) = recorder.mark(text) {
                    eprintln!("kvmtop: mark not recorded: {e}");
                }
            }
            thread::sleep(left.min(Duration::from_millis(100)));
        }
        let current = session.sample();
        let snapshot = advised(&session, &mut advisor, &previous, &current);
        previous = current;
        let started = thread_cpu_ns();
        let appended = recorder.record(&snapshot);
        recording_cpu_ns += thread_cpu_ns().saturating_sub(started);
        match appended {
            Ok(_) => {}
            // A full disk or a failing one: the store starts a new segment at the next window,
            // so recording carries on once space is back.
            Err(e) => {
                failed_writes += 1;
                eprintln!("kvmtop: window not recorded: {e}");
            }
        }
        for warning in recorder.take_warnings() {
            eprintln!("kvmtop: recording: {warning}");
        }
        let last = deadline.is_some_and(|d| std::time::Instant::now() >= d);
        let windows = recorder.windows();
        // The last window has the closing line, which says the same and more.
        if !last && windows > 0 && windows.is_multiple_of(RECORD_PROGRESS_EVERY) {
            eprintln!(
                "kvmtop: {windows} windows recorded, {}",
                cost_line(&recorder, recording_cpu_ns)
            );
        }
        if last {
            break;
        }
    }
    drop(control);
    for text in marks.try_iter() {
        if let Err(e) = recorder.mark(text) {
            eprintln!("kvmtop: mark not recorded: {e}");
        }
    }
    let windows = recorder.windows();
    let cost = cost_line(&recorder, recording_cpu_ns);
    recorder.close()?;
    eprintln!(
        "kvmtop: recorded {windows} windows into {}: {cost}{}",
        dir.display(),
        if failed_writes > 0 {
            format!(" ({failed_writes} could not be written)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// What a recording has cost so far, for the progress and closing lines: disk, and the CPU
/// time `cpu_ns` spent recording (finding events, encoding, redacting, compressing, writing).
fn cost_line(recorder: &Recorder, cpu_ns: u64) -> String {
    let cost = recorder.cost();
    let stored = recorder.stored_bytes();
    let per_vm = cost
        .bytes_per_vm_second(stored)
        .map_or(String::new(), |b| format!(", {b:.0} bytes per VM-second"));
    let cpu = cost.core_share(cpu_ns).map_or(String::new(), |share| {
        format!(", recording used {:.2} % of a core", share * 100.0)
    });
    format!(
        "{:.1} MiB on disk ({:.1} MiB before compression){per_vm}{cpu}",
        mib(stored),
        mib(recorder.raw_bytes())
    )
}

/// The ranges of `kvmtop report` as typed.
pub struct ReportRanges {
    pub from: Option<String>,
    pub to: Option<String>,
    /// `FROM..TO`.
    pub baseline: Option<String>,
}

/// `kvmtop report PATH`: what changed in the incident range against the baseline.
pub fn report(
    path: &std::path::Path,
    ranges: &ReportRanges,
    format: crate::report::Format,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use crate::report::{Range, Report, render};
    let recording = Recording::open(path)?;
    let span = recording
        .span()
        .with_context(|| format!("{}: the recording holds no window", path.display()))?;
    let at = |text: &str| recording::when::parse(text, span).map_err(anyhow::Error::msg);
    let from = match &ranges.from {
        Some(t) => at(t)?,
        None => span.start_ns + (span.end_ns - span.start_ns) / 2,
    };
    let to = match &ranges.to {
        Some(t) => at(t)?,
        None => span.end_ns,
    };
    anyhow::ensure!(from <= to, "the incident ends before it starts");
    let baseline = match &ranges.baseline {
        Some(text) => {
            let (a, b) = text
                .split_once("..")
                .ok_or_else(|| anyhow::anyhow!("--baseline '{text}' is not FROM..TO"))?;
            Range {
                from_ns: at(a)?,
                to_ns: at(b)?,
            }
        }
        // As long as the incident, ending just before it.
        None => Range {
            from_ns: from.saturating_sub(to - from + 1),
            to_ns: from.saturating_sub(1),
        },
    };
    let incident = Range {
        from_ns: from,
        to_ns: to,
    };
    let mut said = 0;
    let report = Report::build(&recording, incident, baseline, |done, all| {
        // Long recordings take a while: a line every tenth.
        if all >= 600 && done * 10 / all > said {
            said = done * 10 / all;
            eprintln!("kvmtop: read {done} of {all} windows");
        }
    });
    for problem in &report.problems {
        eprintln!("kvmtop: skipped: {problem}");
    }
    if report.incident_windows == 0 {
        anyhow::bail!("no window of the recording falls in the incident range");
    }
    if report.baseline_windows == 0 {
        eprintln!("kvmtop: no window falls in the baseline range: nothing to compare with");
    }
    let text = match format {
        crate::report::Format::Json => render::json(&report)?,
        crate::report::Format::Md => render::markdown(&report),
        crate::report::Format::Html => render::html_page(&report),
    };
    if let Some(file) = output {
        std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    } else {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// `kvmtop mark TEXT`: a note on the timeline of every recording kvmtop on this host.
pub fn mark(control_dir: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let sent = control::send_mark(control_dir, text)?;
    for (socket, why) in &sent.refused {
        eprintln!("kvmtop: {}: {why}", socket.display());
    }
    match sent.accepted.len() {
        0 => anyhow::bail!("no kvmtop took the mark"),
        1 => eprintln!("kvmtop: marked 1 recording"),
        n => eprintln!("kvmtop: marked {n} recordings"),
    }
    Ok(())
}

/// Bytes as MiB, for messages.
#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// `kvmtop replay PATH --format …`: exports the windows of a recording between `from` and
/// `to`.
pub fn replay(
    path: &std::path::Path,
    format: ExportFormat,
    metrics_detail: output::metrics::Level,
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal as _, Write as _};
    // OpenMetrics escapes only what its own syntax needs: label values (VM names, from whoever
    // made the recording) keep every other character, as Prometheus must see them. That is
    // for files and pipes, never for a terminal.
    if format == ExportFormat::Openmetrics && std::io::stdout().is_terminal() {
        anyhow::bail!(
            "--format openmetrics writes label values as recorded, which a terminal could act \
             on: redirect it to a file (`> incident.om`) or a pipe"
        );
    }
    let recording = Recording::open(path)?;
    for problem in recording.problems() {
        eprintln!("kvmtop: skipped: {problem}");
    }
    let span = recording
        .span()
        .with_context(|| format!("{}: the recording holds no window", path.display()))?;
    let pick = |text: Option<&str>, default| {
        text.map_or(Ok(default), |t| recording::when::parse(t, span))
            .map_err(anyhow::Error::msg)
    };
    let (from, to) = (pick(from, span.start_ns)?, pick(to, span.end_ns)?);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // The OpenMetrics export groups the windows' samples by family and writes them at the end.
    let mut openmetrics = (format == ExportFormat::Openmetrics).then(|| {
        output::openmetrics::Writer::new(output::metrics::Exporter::new(
            metrics_detail,
            output::series::details::MAX_TOP_N,
        ))
    });
    let (mut unreadable, mut backwards) = (0, 0);
    for (index, time) in recording.window_times().enumerate() {
        if !(from..=to).contains(&time) {
            // The export's detail-value counters are sums over the windows, not recorded:
            // they go on from the windows before the range, as the whole export has them.
            if let (true, Some(writer)) = (time < from, &mut openmetrics)
                && let Ok(snapshot) = recording.window(index)
            {
                writer.skip(&snapshot);
            }
            continue;
        }
        match recording.window(index) {
            Ok(snapshot) => match &mut openmetrics {
                None => output::json::write_line(&mut out, &snapshot)?,
                Some(writer) => {
                    if !writer.window(&snapshot, time)? {
                        backwards += 1;
                    }
                }
            },
            Err(e) => {
                unreadable += 1;
                eprintln!("kvmtop: skipped: {e}");
            }
        }
    }
    if let Some(writer) = openmetrics {
        writer.finish(&mut out)?;
    }
    out.flush()?;
    if unreadable > 0 {
        eprintln!("kvmtop: {unreadable} windows could not be read");
    }
    if backwards > 0 {
        eprintln!(
            "kvmtop: {backwards} windows left out: they did not end after the window before \
             (the clock stepped back), and Prometheus takes no sample out of order"
        );
    }
    Ok(())
}

/// `kvmtop replay PATH`: the live view over the windows of a recording between `from` and `to`,
/// with time controls.
pub fn replay_view(
    path: &std::path::Path,
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<()> {
    let recording = Recording::open(path)?;
    let span = recording
        .span()
        .with_context(|| format!("{}: the recording holds no window", path.display()))?;
    let (from, to) = recording::when::range(from, to, span).map_err(anyhow::Error::msg)?;
    let Some(mut replay) = tui::replay::Replay::new(recording, from, to) else {
        anyhow::bail!("{}: no window between --from and --to", path.display());
    };
    let app = replay.app();
    tui::show(&mut replay, app)
}

/// `kvmtop serve`: Prometheus metrics over HTTP.
pub fn serve(
    config: &Config,
    thresholds: Thresholds,
    listen: SocketAddr,
    web_config: Option<PathBuf>,
    interval: Duration,
    mut exporter: output::metrics::Exporter,
    flight_to: &FlightTo,
) -> anyhow::Result<()> {
    // A bad web config is reported before the kernel programs are loaded.
    if let Some(path) = &web_config {
        output::serve::Access::open(path.clone())?;
    }
    // Bound before the capabilities are dropped, so a port below
    // net.ipv4.ip_unprivileged_port_start needs CAP_NET_BIND_SERVICE only at start.
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let session = Session::open(&config.sampling_every(interval))?;
    drop_privileges(Announce::Print);
    let advisor = Advisor::new(thresholds, advice_roots(config));
    // A service's journal is its stderr.
    let notify: flight::Notify = Arc::new(|text| eprintln!("kvmtop: {text}"));
    let deck = flight::start(flight_to, &notify);
    let ring = deck.flight.clone();
    let (tx, rx) = tokio::sync::watch::channel(None::<output::serve::Exposition>);
    // The exporter sees every window on the sampler's thread (its exit-detail counters add
    // each one); the first scrape of a window renders it, later ones copy the text. The flight
    // recorder only queues the window for its own thread.
    spawn_sampler(session, advisor, interval, move |snapshot| {
        let snapshot = Arc::new(snapshot);
        if let Some(ring) = &ring {
            ring.record(Arc::clone(&snapshot));
        }
        let exposition = output::serve::Exposition::pending(exporter.pending(snapshot));
        tx.send(Some(exposition)).is_ok()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let served = runtime.block_on(output::serve::run(listener, rx, web_config));
    deck.finish(&notify);
    served
}

/// Where [`drop_privileges`] says what it kept.
#[derive(Clone, Copy)]
enum Announce {
    /// On stderr: `serve` runs as a service, whose journal should show it.
    Print,
    /// At log level info: the other modes write to a terminal or a pipe.
    Log,
}

/// Gives up the capabilities kvmtop no longer needs, now that its programs are attached. Runs
/// before any other thread starts: capabilities belong to threads. Whatever fails is a warning,
/// and kvmtop carries on with more than it needs.
fn drop_privileges(announce: Announce) {
    let reduced = privileges::reduce::after_attach();
    for problem in &reduced.problems {
        log::warn!("dropping capabilities: {problem}");
    }
    let kept = format!(
        "capabilities kept after loading the eBPF programs: {}",
        reduced.kept_list()
    );
    match announce {
        Announce::Print => eprintln!("kvmtop: {kept}"),
        Announce::Log => log::info!("{kept}"),
    }
}

/// Samples every `interval` on its own thread and publishes a snapshot of each interval until
/// `publish` returns false (the presenter has gone).
fn spawn_sampler(
    mut session: Session,
    mut advisor: Advisor,
    interval: Duration,
    mut publish: impl FnMut(Snapshot) -> bool + Send + 'static,
) {
    thread::Builder::new()
        .name("sampler".into())
        .spawn(move || {
            let mut previous = session.sample();
            advisor.start_window(&previous.vmms);
            loop {
                thread::sleep(interval.saturating_sub(previous.at.elapsed()));
                let current = session.sample();
                let snapshot = advised(&session, &mut advisor, &previous, &current);
                if !publish(snapshot) {
                    break;
                }
                previous = current;
            }
        })
        .expect("spawning the sampler thread");
}

/// Where the advice reads configuration facts from: where the session reads the host.
fn advice_roots(config: &Config) -> Roots {
    Roots {
        proc: config.proc_root.clone(),
        sys: config.sys_root.clone(),
    }
}

/// The snapshot of a window with the advice in force after it.
fn advised(session: &Session, advisor: &mut Advisor, earlier: &Sample, later: &Sample) -> Snapshot {
    let mut snapshot = session.snapshot(earlier, later);
    let evaluation = advisor.advise(&snapshot, &later.vmms);
    snapshot.recommendations = evaluation.recommendations;
    snapshot.advice_inputs_missing = evaluation.unavailable;
    snapshot.host.state = evaluation.host;
    snapshot
}
