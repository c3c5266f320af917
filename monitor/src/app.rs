//! The three ways to run kvmtop. Each opens a [`Session`], gives up the capabilities it no
//! longer needs, samples the session, and hands snapshots to a presenter; collection never
//! waits on presentation.

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

use crate::{
    advice::{Advisor, Roots, Thresholds},
    model::Snapshot,
    output::{self, Format},
    privileges,
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

/// `kvmtop` / `kvmtop top`: the live table.
pub fn top(config: &Config, thresholds: Thresholds, interval: Duration) -> anyhow::Result<()> {
    let session = Session::open(config)?;
    drop_privileges(Announce::Log);
    let advisor = Advisor::new(thresholds, advice_roots(config));
    let (tx, rx) = mpsc::sync_channel(2);
    spawn_sampler(session, advisor, interval, move |snapshot| {
        tx.send(snapshot).is_ok()
    });
    tui::run(&rx, interval)
}

/// `kvmtop serve`: Prometheus metrics over HTTP.
pub fn serve(
    config: &Config,
    thresholds: Thresholds,
    listen: SocketAddr,
    web_config: Option<PathBuf>,
    interval: Duration,
) -> anyhow::Result<()> {
    // A bad web config is reported before the kernel programs are loaded.
    if let Some(path) = &web_config {
        output::serve::Access::open(path.clone())?;
    }
    // Bound before the capabilities are dropped, so a port below
    // net.ipv4.ip_unprivileged_port_start needs CAP_NET_BIND_SERVICE only at start.
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let session = Session::open(config)?;
    drop_privileges(Announce::Print);
    let advisor = Advisor::new(thresholds, advice_roots(config));
    let (tx, rx) = tokio::sync::watch::channel(None::<Snapshot>);
    spawn_sampler(session, advisor, interval, move |snapshot| {
        tx.send(Some(snapshot)).is_ok()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(output::serve::run(listener, rx, web_config))
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
    snapshot
}
