//! Command-line interface. `main.rs` calls [`main`]; each subcommand lives in `crate::app`.

pub mod package_files;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    advice::Thresholds,
    app,
    bpf::hooks::HookKind,
    family::CollectLevel,
    host::{btf::SYSTEM_BTF, tracefs::TraceFs},
    output::{
        Format,
        metrics::{Exporter, Level},
        series::details::MAX_TOP_N,
    },
    session::Config,
};

/// The default address of `kvmtop serve`: loopback only, so metrics are not exposed to the
/// network unless asked for.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9941";

/// The advice thresholds read when neither --config nor `KVMTOP_CONFIG` names a file, if it
/// exists: the package installs it with every key commented out.
pub const DEFAULT_CONFIG: &str = "/etc/kvmtop/advice.toml";

/// Live per-VM and per-vCPU performance of a KVM host, from eBPF.
///
/// Without a subcommand, kvmtop shows a live table of the VMs on this host. It needs root, or the
/// capabilities `CAP_BPF`, `CAP_PERFMON` and `CAP_DAC_READ_SEARCH` (plus `CAP_SYS_PTRACE` to see
/// every VM), and drops all but the last two once its programs are attached.
#[derive(Debug, Parser)]
// The version names the commit built from (monitor/build.rs).
#[command(
    name = "kvmtop",
    version = env!("KVMTOP_VERSION"),
    propagate_version = true,
    about,
    long_about
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub host: HostArgs,

    /// The live view's flight recorder.
    #[command(flatten)]
    pub flight: FlightArgs,
}

/// The flight recorder of `serve` and the live view: the last minutes of windows, kept in a
/// bounded ring on disk and dumped to a standalone recording on SIGUSR1, on the live view's D
/// key, or by `kvmtop dump-flight`.
#[derive(Debug, clap::Args)]
pub struct FlightArgs {
    /// The ring directory [default: /var/lib/kvmtop/flight for `serve`,
    /// /var/lib/kvmtop-live/flight for the live view]. Dumps go to `dumps/` beside it. If it
    /// cannot be had (another kvmtop records into it, no right to write), kvmtop says so once
    /// and runs without a flight recorder.
    #[arg(long, value_name = "DIR", conflicts_with = "no_flight_recorder")]
    pub flight_recorder: Option<PathBuf>,
    /// Keep no flight recorder.
    #[arg(long)]
    pub no_flight_recorder: bool,
    /// How far back the ring reaches, and what a dump covers ("15m", "1h"; seconds when a bare
    /// number). Segments of a twentieth of it are deleted as they age out.
    #[arg(long, default_value = "15m", value_parser = parse_duration, value_name = "AGE")]
    pub flight_window: Duration,
    /// Bound on the ring directory; the oldest segments go first when it is reached, even
    /// within the window.
    #[arg(long, default_value = "256M", value_parser = parse_flight_size, value_name = "SIZE")]
    pub flight_max_size: u64,
    /// Where to listen for `kvmtop mark` and `kvmtop dump-flight` (a directory only its owner may enter: root's, or the service user's under systemd).
    #[arg(long = "flight-control-dir", default_value = crate::control::DEFAULT_DIR, value_name = "DIR")]
    pub control_dir: PathBuf,
}

impl FlightArgs {
    /// The ring as asked for, `default_dir` unless --flight-recorder names one.
    #[must_use]
    pub fn to(&self, default_dir: &str) -> app::FlightTo {
        app::FlightTo {
            config: (!self.no_flight_recorder).then(|| crate::recording::flight::Config {
                dir: self
                    .flight_recorder
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(default_dir)),
                window: self.flight_window,
                max_size: self.flight_max_size,
            }),
            control_dir: self.control_dir.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Refresh interval of the live views, in seconds.
    #[arg(long, global = true, default_value = "1", value_parser = parse_seconds)]
    pub interval: Duration,

    /// Root of the procfs to read processes from.
    #[arg(long, global = true, default_value = "/proc", value_name = "DIR")]
    pub proc: PathBuf,

    /// Root of the sysfs to read host configuration from (THP, KSM, KVM parameters, topology).
    #[arg(long, global = true, default_value = "/sys", value_name = "DIR")]
    pub sys: PathBuf,

    /// Thresholds of the tuning advice, as TOML [default: /etc/kvmtop/advice.toml, when it
    /// exists]. Keys not in the file keep their defaults; `kvmtop explain --defaults` prints
    /// every key with its default and meaning.
    #[arg(long, global = true, env = "KVMTOP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where tracefs is mounted (tracepoint formats are read from DIR/events).
    #[arg(
        long,
        global = true,
        default_value = "/sys/kernel/tracing",
        value_name = "DIR"
    )]
    pub tracefs: PathBuf,

    /// The kernel's BTF, for the struct offsets of the raw-argument programs. For a kernel
    /// without `/sys/kernel/btf/vmlinux`, a BTF file for the same build (e.g. from `BTFHub`) lets the
    /// raw tracepoint programs run; BTF tracepoints need the kernel's own.
    #[arg(long, global = true, default_value = SYSTEM_BTF, value_name = "FILE")]
    pub btf: PathBuf,

    /// Which kinds of tracepoint program kvmtop may attach, tried in the order `tp_btf`, `raw_tp`,
    /// `tracepoint` for each source. `tp_btf` and `raw_tp` lose no events to other tracers; the
    /// classic tracepoint is the fallback. `kvmtop snapshot` shows which kind each source runs as.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_values_t = HookKind::ALL,
        value_name = "KINDS"
    )]
    pub hook_kinds: Vec<HookKind>,

    /// How deep to look into every VM exit: `counts` (exit reasons only: the fewest programs on
    /// each exit, the least a guest pays), `latency` (also how long each exit takes to handle, in
    /// KVM and in the VMM, and halt durations), `details` (also which port, MSR, address,
    /// hypercall or IPI each exit was for). Sources left out show as "not collected".
    #[arg(long, global = true, default_value_t = CollectLevel::default(), value_name = "LEVEL")]
    pub collect: CollectLevel,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live table of VMs (the default).
    Top {
        #[command(flatten)]
        flight: FlightArgs,
    },
    /// Sample for a while, then print one snapshot and exit.
    ///
    /// Ctrl-C (SIGINT) ends the window early and still prints the snapshot of the time sampled;
    /// a second Ctrl-C exits at once.
    Snapshot {
        /// Length of the sampling window, in seconds.
        #[arg(long, default_value = "5", value_parser = parse_seconds)]
        duration: Duration,
        /// Output format. The JSON is described by monitor/schema/snapshot.schema.json.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Explain a tuning rule: what it checks, why, what to change, its thresholds and sources.
    ///
    /// Without RULE, lists the rules. Needs no privileges.
    Explain {
        /// Rule id, e.g. C1 or E4 (case-insensitive).
        rule: Option<String>,
        /// Print the thresholds file with every key, its default and its meaning, instead.
        #[arg(long, conflicts_with = "rule")]
        defaults: bool,
    },
    /// Record every window, with the events of the timeline, into a recording directory.
    ///
    /// Runs until --duration has passed, or until Ctrl-C or SIGTERM (the recording is then
    /// flushed and closed). Each window's full snapshot is kept: every VM and vCPU, every
    /// family's figures, sources and losses, and the advice in force with its evidence. Secrets
    /// found in command-line texts are redacted before anything is written. Recording into a
    /// directory that holds segments already adds to them; damaged files are kept as they are
    /// and a new segment is started. Read it back with `kvmtop replay DIR`.
    Record {
        /// The recording directory (created if missing).
        #[arg(short = 'o', long, value_name = "DIR")]
        output: PathBuf,
        /// Stop after this long ("90s", "15m", "2h"; seconds when a bare number).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Bound on the whole directory; the oldest segments are deleted at each segment switch
        /// to keep within it. K, M, G, T are powers of 1024 ("512M", "2G").
        #[arg(long, default_value = "1G", value_parser = parse_size, value_name = "SIZE")]
        max_size: u64,
        /// Segments older than this are deleted at each segment switch ("24h", "7d").
        #[arg(long, value_parser = parse_duration, value_name = "AGE")]
        retain: Option<Duration>,
        /// Size of one segment file: the unit retention deletes.
        #[arg(long, default_value = "16M", value_parser = parse_size, value_name = "SIZE")]
        segment_size: u64,
        /// Written windows reach the disk at least this often (fdatasync); a power loss loses
        /// at most this much. A killed kvmtop loses at most the window it was writing.
        #[arg(long, default_value = "5", value_parser = parse_seconds, value_name = "SECONDS")]
        fsync_interval: Duration,
        /// Where to listen for `kvmtop mark` (a directory only its owner may enter; see `kvmtop mark --help`).
        #[arg(long, default_value = crate::control::DEFAULT_DIR, value_name = "DIR")]
        control_dir: PathBuf,
    },
    /// What changed in an incident, against a baseline, from a recording.
    ///
    /// Ranks every figure per VM, vCPU and block device by how far it moved from the baseline
    /// to the incident (largest first, with the window it started in), and lists the advice
    /// in force, the events and the marks. Without --from, the incident is the second half of
    /// the recording; without --baseline, the baseline is as long as the incident and ends
    /// where it starts. Needs no privileges.
    Report {
        /// A recording directory, or a standalone recording file.
        path: PathBuf,
        /// Start of the incident: 10:42 or 10:42:30 (UTC), -5m (before the end), +90s (after
        /// the start), or 2026-12-04T10:42:00Z.
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        from: Option<String>,
        /// End of the incident, in the forms --from takes (default: the end of the recording).
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        to: Option<String>,
        /// The baseline as FROM..TO, each in the forms --from takes.
        #[arg(long, value_name = "FROM..TO", allow_hyphen_values = true)]
        baseline: Option<String>,
        /// `json` (deviations largest first, for scripts), `md` (to paste into a ticket) or
        /// `html` (one self-contained page with charts).
        #[arg(long, value_enum, default_value_t = crate::report::Format::Md)]
        format: crate::report::Format,
        /// Write the report to FILE instead of standard output.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Put a note on the timeline of every kvmtop recording on this host.
    ///
    /// For deploy scripts and colleagues in another shell: `kvmtop mark "deploy v2.3 started"`.
    /// Reaches each recording kvmtop through its socket in the control directory, which only
    /// root and the user kvmtop runs as may use. Fails when no kvmtop took the mark.
    Mark {
        /// The note: one line, at most 4 KiB.
        text: String,
        /// The control directory of the recording kvmtops.
        #[arg(long, default_value = crate::control::DEFAULT_DIR, value_name = "DIR")]
        control_dir: PathBuf,
    },
    /// Read a recording back: the live view over it with time controls, or its windows exported
    /// (--format).
    ///
    /// The view starts paused on the first window, under a yellow REPLAY banner with the
    /// recorded time (UTC), host and window. Space plays or pauses (the last window pauses);
    /// ←/→ or h/l step a window back or forward; + and - change the speed (0.5× to 16×); g
    /// goes to a time: 10:42, 10:42:30, 2026-12-04T10:42:00Z, or -30s/+2m from the window shown;
    /// n and N go to the next and previous event or mark; e lists them (Enter goes there); Home
    /// and End go to the first and last window. The other keys of the live view (↑↓, Enter, Tab, i,
    /// a, Esc, q) work as there.
    ///
    /// Damaged frames and a torn tail (a recorder killed mid-write) are reported (on stderr
    /// when exporting) and stepped over; every intact window is read.
    Replay {
        /// A recording directory, or a standalone recording file.
        path: PathBuf,
        /// Export instead of viewing. `json`: one snapshot per line (JSON Lines), the documents
        /// `kvmtop snapshot --format json` prints. `openmetrics`: the series `/metrics` serves,
        /// each sample at its window's time, for `promtool tsdb create-blocks-from openmetrics`.
        #[arg(long, value_enum)]
        format: Option<crate::output::ExportFormat>,
        /// First moment to show or export: 10:42 or 10:42:30 (UTC), -5m (before the end), +90s
        /// (after the start), or 2026-12-04T10:42:00Z.
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        from: Option<String>,
        /// Last moment to show or export, in the forms --from takes.
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        to: Option<String>,
        /// With --format openmetrics: how many series each VM gets, as `kvmtop serve
        /// --metrics-detail` (`vm`, `vcpu` or `full`; default `vm`).
        #[arg(long, value_enum, value_name = "LEVEL", requires = "format")]
        metrics_detail: Option<Level>,
    },
    /// Serve Prometheus metrics at <http://ADDR/metrics>.
    ///
    /// Loopback only unless --listen says otherwise. To expose the metrics to the network, give
    /// a --web.config.file with TLS and authentication (see "Exposing /metrics" in the README).
    Serve {
        /// Address to listen on. Use 0.0.0.0:9941 to expose the metrics beyond this host.
        #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
        listen: SocketAddr,
        /// Web config in the Prometheus exporter-toolkit format: TLS and client certificates
        /// (`tls_server_config`), passwords as bcrypt hashes (`basic_auth_users`) and response
        /// headers (`http_server_config`). Read again for every connection, so renewed
        /// certificates apply without a restart.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
        /// How many series each VM gets: `vm` (per-VM series only: per-vCPU figures summed over
        /// the VM's vCPUs, latency histograms as sum and count, block latency with a few
        /// buckets, exit details per kind), `vcpu` (also per-vCPU series) or `full` (also every
        /// histogram bucket and each VM's top exit-detail values). The README gives the series
        /// per VM at each level.
        #[arg(long, value_enum, default_value_t = Level::default(), value_name = "LEVEL")]
        metrics_detail: Level,
        /// At `--metrics-detail full`: how many of each VM's exit-detail values of a kind (ports,
        /// MSRs, …) get their own series, the largest by rate in a window; the rest is
        /// value="other". A value keeps its series until the VM exits, at most twice this many
        /// per VM and kind, so counters never go down.
        #[arg(long, default_value_t = MAX_TOP_N, value_name = "N", value_parser = parse_top_n)]
        metrics_top_n: usize,
        #[command(flatten)]
        flight: FlightArgs,
    },
    /// Dump the flight recorder of a running `kvmtop serve` or live view.
    ///
    /// The kvmtop writes the last --flight-window of its ring as a standalone recording in the
    /// `dumps/` directory beside the ring (/var/lib/kvmtop/dumps for the service) and this prints
    /// its path; `kvmtop report` and `kvmtop replay` read it. Reaches every kvmtop with a flight
    /// recorder through the control directory, or only the one of --pid.
    DumpFlight {
        /// Move the dump to FILE (which must not exist) once written.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Only the kvmtop with this process id.
        #[arg(long)]
        pid: Option<u32>,
        /// The control directory of the kvmtops.
        #[arg(long, default_value = crate::control::DEFAULT_DIR, value_name = "DIR")]
        control_dir: PathBuf,
    },
}

/// A ring size: at least 16 KiB, so that its sixteen segments hold a window each.
fn parse_flight_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < 16 << 10 {
        return Err(format!("'{text}' is below the minimum of 16K"));
    }
    Ok(bytes)
}

/// A duration such as "90s", "15m", "2h", "7d"; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return parse_seconds(text)
            .map_err(|_| format!("'{text}' is out of range ({seconds} s is not 0.05 to 86400)"));
    }
    let days = text
        .strip_suffix('d')
        .and_then(|d| d.trim().parse::<u64>().ok());
    let ns = match days {
        Some(days) => days.saturating_mul(86_400_000_000_000),
        None => crate::recording::when::duration_ns(text)?,
    };
    if ns == 0 {
        return Err(format!("'{text}' is zero"));
    }
    Ok(Duration::from_nanos(ns))
}

/// A size such as "512M" or "2G" (powers of 1024; "MiB", "GB" read the same); a bare number
/// is bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not a size (e.g. 4096, 512K, 64M, 2G, 1T)");
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.trim_end_matches('B').trim_end_matches('I');
    let scale: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(bad()),
    };
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let bytes = (number * scale as f64) as u64;
    if bytes == 0 {
        return Err(format!("'{text}' is zero"));
    }
    Ok(bytes)
}

fn parse_top_n(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number"))?;
    if n > MAX_TOP_N {
        return Err(format!(
            "at most {MAX_TOP_N}: each window keeps the {MAX_TOP_N} largest values of each kind"
        ));
    }
    Ok(n)
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.05..=86_400.0).contains(&seconds) {
        return Err(format!("'{text}' is out of range (0.05 to 86400 seconds)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The advice thresholds: defaults, overridden by the file given, or else by
/// [`DEFAULT_CONFIG`] when it exists.
fn thresholds(file: Option<&std::path::Path>) -> anyhow::Result<Thresholds> {
    let default = std::path::Path::new(DEFAULT_CONFIG);
    match file {
        Some(path) => Thresholds::load(path).map_err(anyhow::Error::from),
        None if default.exists() => Thresholds::load(default).map_err(anyhow::Error::from),
        None => Ok(Thresholds::default()),
    }
}

/// `kvmtop explain [RULE] [--defaults]`.
fn explain(rule: Option<&str>, defaults: bool, thresholds: &Thresholds) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if defaults {
        write!(out, "{}", Thresholds::default_toml())?;
        return Ok(());
    }
    let Some(rule) = rule else {
        writeln!(out, "Tuning rules (kvmtop explain RULE for details):")?;
        for info in crate::advice::catalog() {
            writeln!(out, "  {:<4} {}", info.id, info.title)?;
        }
        return Ok(());
    };
    let Some(text) = crate::advice::explain(rule, thresholds) else {
        let ids: Vec<&str> = crate::advice::catalog().iter().map(|r| r.id).collect();
        anyhow::bail!("no rule '{rule}'; the rules are {}", ids.join(", "));
    };
    write!(out, "{text}")?;
    Ok(())
}

/// The command line; the live view's flight options before a subcommand are refused: they would
/// be taken for the live view's and the subcommand would run without them.
fn parse_args(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory as _, FromArgMatches as _, parser::ValueSource};
    let matches = Cli::command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    if let Some((subcommand, _)) = matches.subcommand() {
        let command = Cli::command();
        let misplaced = command
            .get_arguments()
            .filter(|arg| !arg.is_global_set())
            .find(|arg| {
                matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
            });
        if let Some(arg) = misplaced {
            let long = arg.get_long().unwrap_or_default();
            let takes_it = command
                .find_subcommand(subcommand)
                .is_some_and(|sub| sub.get_arguments().any(|a| a.get_id() == arg.get_id()));
            let hint = if takes_it {
                format!("for `{subcommand}`, give it after: `kvmtop {subcommand} --{long} ...`")
            } else {
                format!("`{subcommand}` keeps no flight recorder")
            };
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--{long} before the subcommand is the live view's; {hint}"),
            ));
        }
    }
    Ok(cli)
}

#[must_use]
#[allow(clippy::too_many_lines, reason = "one arm per subcommand")]
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    if let Some(done) = package_files::run_if_asked(std::env::args_os()) {
        return done;
    }
    let cli = parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let config = Config {
        proc_root: cli.host.proc.clone(),
        sys_root: cli.host.sys.clone(),
        tracefs: TraceFs::new(&cli.host.tracefs),
        btf: cli.host.btf.clone(),
        hook_kinds: cli.host.hook_kinds.clone(),
        collect: cli.host.collect,
        contender_readings: 1,
    };
    let result = thresholds(cli.host.config.as_deref()).and_then(|thresholds| {
        match cli.command.unwrap_or(Command::Top { flight: cli.flight }) {
            Command::Top { flight } => app::top(
                &config,
                thresholds,
                cli.host.interval,
                &flight.to(crate::recording::flight::LIVE_DIR),
            ),
            Command::Snapshot { duration, format } => {
                app::snapshot(&config, thresholds, duration, format)
            }
            Command::Serve {
                listen,
                web_config_file,
                metrics_detail,
                metrics_top_n,
                flight,
            } => app::serve(
                &config,
                thresholds,
                listen,
                web_config_file,
                cli.host.interval,
                Exporter::new(metrics_detail, metrics_top_n),
                &flight.to(crate::recording::flight::SERVE_DIR),
            ),
            Command::DumpFlight {
                output,
                pid,
                control_dir,
            } => app::dump_flight(&control_dir, output.as_deref(), pid),
            Command::Explain { rule, defaults } => explain(rule.as_deref(), defaults, &thresholds),
            Command::Record {
                output,
                duration,
                max_size,
                retain,
                segment_size,
                fsync_interval,
                control_dir,
            } => {
                let store = crate::recording::store::Config {
                    max_segment_bytes: segment_size,
                    max_total_bytes: max_size,
                    max_age: retain,
                    fsync_interval,
                    ..crate::recording::store::Config::default()
                };
                app::record(
                    &config,
                    thresholds,
                    &app::RecordTo {
                        dir: output,
                        store,
                        control_dir,
                    },
                    duration,
                    cli.host.interval,
                )
            }
            Command::Mark { text, control_dir } => app::mark(&control_dir, &text),
            Command::Report {
                path,
                from,
                to,
                baseline,
                format,
                output,
            } => app::report(
                &path,
                &app::ReportRanges { from, to, baseline },
                format,
                output.as_deref(),
            ),
            Command::Replay {
                path,
                format,
                from,
                to,
                metrics_detail,
            } => match format {
                Some(crate::output::ExportFormat::Json) if metrics_detail.is_some() => {
                    anyhow::bail!(
                        "--metrics-detail chooses the series of --format openmetrics; \
                         --format json exports every figure of each window"
                    )
                }
                Some(f) => app::replay(
                    &path,
                    f,
                    metrics_detail.unwrap_or_default(),
                    from.as_deref(),
                    to.as_deref(),
                ),
                None => app::replay_view(&path, from.as_deref(), to.as_deref()),
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of a pipe went away (`kvmtop replay … | head`): nothing left to say.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvmtop: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;
    use std::path::Path;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_live_views_flight_options_before_a_subcommand_are_refused() {
        let err = parse_args(["kvmtop", "--no-flight-recorder", "serve"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let text = err.to_string();
        assert!(
            text.contains("`kvmtop serve --no-flight-recorder ...`"),
            "{text}"
        );
        let err = parse_args(["kvmtop", "--flight-window", "5m", "snapshot"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("`snapshot` keeps no flight recorder"),
            "{err}"
        );
        // Where they belong, and the global options anywhere, are taken.
        let cli = parse_args(["kvmtop", "serve", "--no-flight-recorder"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Serve { flight, .. }) if flight.no_flight_recorder)
        );
        assert!(parse_args(["kvmtop", "--interval", "2", "serve"]).is_ok());
        assert!(parse_args(["kvmtop", "--no-flight-recorder"]).is_ok());
    }

    #[test]
    fn rejects_bad_durations() {
        assert!(parse_seconds("abc").unwrap_err().contains("'abc'"));
        assert!(parse_seconds("0").is_err());
        assert_eq!(parse_seconds("1.5").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn explain_knows_every_rule_and_rejects_others() {
        let thresholds = Thresholds::default();
        assert!(explain(Some("c1"), false, &thresholds).is_ok());
        let err = explain(Some("Z9"), false, &thresholds)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no rule 'Z9'") && err.contains("C1"), "{err}");
    }

    #[test]
    fn a_bad_thresholds_file_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvmtop.toml");
        std::fs::write(&path, "c1_wait_warm = 0.1\n").unwrap();
        let err = format!("{:#}", thresholds(Some(&path)).unwrap_err());
        assert!(err.contains("c1_wait_warm"), "{err}");
    }

    #[test]
    fn sizes_and_durations_read_as_operators_write_them() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert!(
            parse_size("lots")
                .unwrap_err()
                .contains("'lots' is not a size")
        );
        assert!(parse_size("0M").is_err());
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_mins(15)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_hours(168)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn top_n_goes_as_far_as_the_values_each_window_keeps() {
        assert_eq!(MAX_TOP_N, crate::families::exits::TOP_DETAILS);
    }

    #[test]
    fn metrics_levels_and_top_n_are_checked() {
        let cli = Cli::parse_from([
            "kvmtop",
            "serve",
            "--metrics-detail",
            "full",
            "--metrics-top-n",
            "2",
        ]);
        let Some(Command::Serve {
            metrics_detail,
            metrics_top_n,
            ..
        }) = cli.command
        else {
            panic!("not serve")
        };
        assert_eq!((metrics_detail, metrics_top_n), (Level::Full, 2));
        for bad in [
            ["--metrics-detail", "everything"],
            ["--metrics-top-n", "6"],
            ["--metrics-top-n", "-1"],
        ] {
            let args = ["kvmtop", "serve", bad[0], bad[1]];
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_flight_recorder_is_on_by_default_where_each_mode_keeps_it_and_can_be_turned_off() {
        use crate::recording::flight::{DEFAULT_MAX_SIZE, DEFAULT_WINDOW, LIVE_DIR, SERVE_DIR};
        let flight_of = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
            Ok::<_, String>(match cli.command {
                Some(Command::Serve { flight, .. }) => flight.to(SERVE_DIR),
                Some(Command::Top { flight }) => flight.to(LIVE_DIR),
                None => cli.flight.to(LIVE_DIR),
                Some(other) => panic!("{other:?}"),
            })
        };
        let serve = flight_of(&["kvmtop", "serve"]).unwrap().config.unwrap();
        assert_eq!(serve.dir, Path::new(SERVE_DIR));
        assert_eq!(
            (serve.window, serve.max_size),
            (DEFAULT_WINDOW, DEFAULT_MAX_SIZE)
        );
        let live = flight_of(&["kvmtop"]).unwrap();
        assert_eq!(live.config.unwrap().dir, Path::new(LIVE_DIR));
        assert_eq!(live.control_dir, Path::new(crate::control::DEFAULT_DIR));
        let top = flight_of(&["kvmtop", "top", "--flight-recorder", "/x"]).unwrap();
        assert_eq!(top.config.unwrap().dir, Path::new("/x"));
        let short = flight_of(&[
            "kvmtop",
            "serve",
            "--flight-recorder",
            "/tmp/ring",
            "--flight-window",
            "20s",
            "--flight-max-size",
            "1M",
        ])
        .unwrap()
        .config
        .unwrap();
        assert_eq!(short.window, Duration::from_secs(20));
        assert_eq!(short.max_size, 1 << 20);
        assert!(
            flight_of(&["kvmtop", "serve", "--no-flight-recorder"])
                .unwrap()
                .config
                .is_none()
        );
        for bad in [
            &[
                "kvmtop",
                "serve",
                "--no-flight-recorder",
                "--flight-recorder",
                "/x",
            ][..],
            &["kvmtop", "serve", "--flight-window", "0"],
            &["kvmtop", "serve", "--flight-max-size", "4K"],
        ] {
            assert!(flight_of(bad).is_err(), "{bad:?} accepted");
        }
        let cli = Cli::parse_from(["kvmtop", "dump-flight", "-o", "x.kvmrec", "--pid", "7"]);
        let Some(Command::DumpFlight { output, pid, .. }) = cli.command else {
            panic!("not dump-flight")
        };
        assert_eq!((output, pid), (Some(PathBuf::from("x.kvmrec")), Some(7)));
    }

    #[test]
    fn replay_takes_a_detail_level_only_with_an_export_format() {
        assert!(
            Cli::try_parse_from(["kvmtop", "replay", "r", "--metrics-detail", "full"]).is_err(),
            "the view has no series to choose"
        );
        let cli = Cli::parse_from([
            "kvmtop",
            "replay",
            "r",
            "--format",
            "openmetrics",
            "--metrics-detail",
            "full",
        ]);
        let Some(Command::Replay { metrics_detail, .. }) = cli.command else {
            panic!("not replay")
        };
        assert_eq!(metrics_detail, Some(Level::Full));
    }

    #[test]
    fn serve_defaults_to_loopback() {
        let cli = Cli::parse_from(["kvmtop", "serve"]);
        let Some(Command::Serve {
            listen,
            web_config_file,
            metrics_detail,
            metrics_top_n,
            ..
        }) = cli.command
        else {
            panic!("not serve")
        };
        assert!(listen.ip().is_loopback());
        assert!(web_config_file.is_none());
        assert_eq!(metrics_detail, Level::Vm);
        assert_eq!(metrics_top_n, MAX_TOP_N);
        let cli = Cli::parse_from(["kvmtop", "serve", "--web.config.file", "web.yml"]);
        let Some(Command::Serve {
            web_config_file, ..
        }) = cli.command
        else {
            panic!("not serve")
        };
        assert_eq!(web_config_file, Some(PathBuf::from("web.yml")));
    }
}
