//! One configuration's measurement: a fresh `kvmtop serve --interval 1 --metrics-detail full`,
//! a warm-up until every VM of the bench is in `/metrics`, the window (CPU time, peak RSS, a
//! scrape every `--scale-scrape-every` seconds), the system calls, then `kvmtop snapshot --duration 5` once serve has
//! stopped, so neither agent's cost is in the other's figures.

use std::{
    fs::File,
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    exposition,
    fleet::Fleet,
    report::{Measured, Scrapes, SnapshotRun},
    scrape, syscalls,
    verify::{self, Expected},
};
use crate::{
    bench::{Killed, agent},
    interrupt,
    util::{self, cmd},
};

/// How long every VM may take to appear in `/metrics`.
const WARM_UP_LIMIT: Duration = Duration::from_mins(2);
/// Windows kept after every VM appeared, so the window starts in the steady state.
const SETTLE_SCRAPES: usize = 3;
const SYSCALL_SECONDS: u64 = 10;
const SNAPSHOT_SECONDS: u64 = 5;

/// Measures the fleet as it is now into `measured`; a step that fails says why there.
pub fn measure(
    binary: &Path,
    out_dir: &Path,
    fleet: &Fleet,
    options: &super::Options,
    measured: &mut Measured,
) {
    measured.load_average[0] = super::super::load_average();
    measured.host_processes = std::fs::read_dir("/proc").ok().map(|entries| {
        entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
            .count()
    });
    let expected: Expected = fleet
        .vmms
        .iter()
        .map(|vmm| (vmm.guest.pid(), vmm.vcpus.clone()))
        .collect();
    if let Err(err) = with_serve(binary, out_dir, &expected, options, measured) {
        measured.error = Some(format!("{err:#}"));
    }
    if measured.error.is_none() && !interrupt::interrupted() {
        measured.snapshot = snapshot(binary, out_dir, &expected);
    }
    measured.load_average[1] = super::super::load_average();
}

fn with_serve(
    binary: &Path,
    out_dir: &Path,
    expected: &Expected,
    options: &super::Options,
    measured: &mut Measured,
) -> Result<()> {
    let seconds = options.seconds;
    let log = out_dir.join("scale-serve.err");
    let mut serve = cmd(binary);
    serve
        // Every series: the heaviest exposition, and per vCPU, as the check of each VM's
        // vCPUs needs.
        .args(["serve", "--listen", "127.0.0.1:0", "--interval", "1"])
        .args(["--metrics-detail", "full"])
        .stdin(Stdio::null())
        .stdout(File::create(out_dir.join("scale-serve.out"))?)
        .stderr(File::create(&log)?);
    util::echo(&serve);
    let mut kvmtop = Killed(serve.spawn().context("starting kvmtop serve")?);
    let pid = kvmtop.0.id();
    let address = listening_address(&mut kvmtop, &log)?;
    println!("  serving at {address}; warming up until every VM is in /metrics…");

    let warm_up = Instant::now();
    warm_up_until_all_shown(&mut kvmtop, address, expected)?;
    measured.warm_up_seconds = Some(warm_up.elapsed().as_secs_f64());
    println!(
        "  warm-up done in {:.1} s; measuring for {seconds} s…",
        warm_up.elapsed().as_secs_f64()
    );

    let before = agent::read(pid).context("kvmtop serve exited")?;
    let threads_before = agent::cpu_ms_by_thread(pid);
    let started = Instant::now();
    let mut bodies = Vec::new();
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for tick in 1..=seconds {
        interrupt::bail_if_interrupted()?;
        if let Some(status) = kvmtop.0.try_wait()? {
            bail!(
                "kvmtop serve exited with {status} during the window (see {})",
                log.display()
            );
        }
        // The last second is always scraped: the VMs are checked on what it shows.
        if tick % options.scrape_every == 0 || tick == seconds {
            match scrape::get(address) {
                Ok((body, took)) => {
                    latencies.push(took.as_secs_f64() * 1000.0);
                    bodies.push(body);
                }
                Err(err) => failures.push(format!("{err:#}")),
            }
        }
        if tick % 10 == 0 {
            println!("  {tick} of {seconds} s");
        }
        sleep_until(started + Duration::from_secs(tick));
    }
    let after = agent::read(pid).context("kvmtop serve exited")?;
    let threads_after = agent::cpu_ms_by_thread(pid);
    let elapsed = started.elapsed().as_secs_f64();
    measured.window_seconds = Some(elapsed);
    measured.agent_cpu_percent = Some((after.cpu_ms - before.cpu_ms) / (elapsed * 10.0));
    measured.agent_cpu_percent_by_thread =
        agent::percent_by_thread(&threads_before, &threads_after, elapsed);
    #[allow(clippy::cast_precision_loss)]
    let rss = after.peak_rss_kib as f64 / 1024.0;
    measured.peak_rss_mib = Some(rss);
    measured.rss_mib = resident_mib(pid);

    // Parsed after the window, so the parsing's CPU does not compete with the agent's.
    let sizes: Vec<usize> = bodies.iter().map(String::len).collect();
    let mut scrapes = Scrapes::from_latencies(&latencies, &sizes);
    scrapes.count += failures.len();
    scrapes.failed = failures.len();
    scrapes.first_error = failures.into_iter().next();
    let mut last = None;
    for body in &bodies {
        match exposition::parse(body) {
            Ok(parsed) => last = Some(parsed),
            Err(err) => {
                scrapes.unparsed += 1;
                scrapes.first_error.get_or_insert(err);
            }
        }
    }
    measured.metrics = last.map(|last| verify::metrics(&last, expected, &verify::holds_vm));
    measured.scrapes = scrapes;
    println!(
        "  agent {:.2} % of one core, peak RSS {rss:.1} MiB; counting its system calls for \
         {SYSCALL_SECONDS} s…",
        measured.agent_cpu_percent.unwrap_or_default()
    );

    let mut keep_scraping = || {
        let _ = scrape::get(address);
    };
    match syscalls::count(
        pid,
        SYSCALL_SECONDS,
        &out_dir.join("scale-syscalls.txt"),
        &mut keep_scraping,
    ) {
        Ok(counted) => measured.syscalls = Some(counted),
        Err(err) => measured.syscalls_skipped = Some(format!("{err:#}")),
    }
    interrupt::bail_if_interrupted()?;
    drop(kvmtop);
    Ok(())
}

/// The address serve reports on stderr once it listens.
fn listening_address(kvmtop: &mut Killed, log: &Path) -> Result<SocketAddr> {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        interrupt::bail_if_interrupted()?;
        if let Some(status) = kvmtop.0.try_wait()? {
            bail!("kvmtop serve exited with {status} (see {})", log.display());
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(address) = text.lines().find_map(|line| {
            let rest = line.split("serving metrics at http://").nth(1)?;
            rest.strip_suffix("/metrics")?.parse().ok()
        }) {
            return Ok(address);
        }
        if Instant::now() > deadline {
            bail!(
                "kvmtop serve did not start listening within a minute (see {})",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Scrapes once a second until every VM started is shown with its vCPUs, then a few more times.
fn warm_up_until_all_shown(
    kvmtop: &mut Killed,
    address: SocketAddr,
    expected: &Expected,
) -> Result<()> {
    let started = Instant::now();
    let mut settled = 0;
    loop {
        interrupt::bail_if_interrupted()?;
        if let Some(status) = kvmtop.0.try_wait()? {
            bail!("kvmtop serve exited with {status} during the warm-up");
        }
        let tick = Instant::now();
        let state = match scrape::get(address)
            .map_err(|e| format!("{e:#}"))
            .and_then(|(body, _)| exposition::parse(&body))
        {
            Ok(parsed) => {
                let check = verify::metrics(&parsed, expected, &|_| Some(true));
                if check.right == check.expected {
                    settled += 1;
                }
                format!(
                    "{} of {} VMs shown with their vCPUs",
                    check.right, check.expected
                )
            }
            Err(err) => err,
        };
        if settled > SETTLE_SCRAPES {
            return Ok(());
        }
        if started.elapsed() > WARM_UP_LIMIT {
            // Measured anyway: the table shows which VMs are wrong.
            println!(
                "  warm-up: not every VM shown after {} s ({state}); measuring anyway",
                WARM_UP_LIMIT.as_secs()
            );
            return Ok(());
        }
        sleep_until(tick + Duration::from_secs(1));
    }
}

/// `VmRSS` of a process, in MiB.
fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u32 = status.lines().find_map(|line| {
        line.strip_prefix("VmRSS:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })?;
    Some(f64::from(kib) / 1024.0)
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

/// `kvmtop snapshot --duration 5 --format json`: its wall time and whether its VMs are right.
fn snapshot(binary: &Path, out_dir: &Path, expected: &Expected) -> SnapshotRun {
    let out = out_dir.join("scale-snapshot.json");
    let err = out_dir.join("scale-snapshot.err");
    let mut run = SnapshotRun::default();
    let result = (|| -> Result<()> {
        let mut command = cmd(binary);
        command
            .args([
                "snapshot",
                "--duration",
                &SNAPSHOT_SECONDS.to_string(),
                "--format",
                "json",
            ])
            .stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(File::create(&err)?);
        util::echo(&command);
        let started = Instant::now();
        let status = command.status().context("starting kvmtop snapshot")?;
        run.wall_seconds = Some(started.elapsed().as_secs_f64());
        if !status.success() {
            bail!("kvmtop snapshot failed ({status}; see {})", err.display());
        }
        let json = std::fs::read_to_string(&out)?;
        run.correctness = Some(
            verify::snapshot(&json, expected, &verify::holds_vm)
                .map_err(|why| anyhow::anyhow!(why))?,
        );
        Ok(())
    })();
    if let Err(err) = result {
        run.error = Some(format!("{err:#}"));
    }
    if let Some(wall) = run.wall_seconds {
        println!("  snapshot --duration {SNAPSHOT_SECONDS} took {wall:.2} s");
    }
    run
}
