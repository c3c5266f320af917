//! Command-line interface. `main.rs` calls [`main`]; each subcommand lives in `crate::app`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    advice::Thresholds,
    app,
    bpf::hooks::HookKind,
    family::CollectLevel,
    host::{btf::SYSTEM_BTF, tracefs::TraceFs},
    output::Format,
    session::Config,
};

/// The default address of `kvmtop serve`: loopback only, so metrics are not exposed to the
/// network unless asked for.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9941";

/// Live per-VM and per-vCPU performance of a KVM host, from eBPF.
///
/// Without a subcommand, kvmtop shows a live table of the VMs on this host. It needs root, or the
/// capabilities `CAP_BPF`, `CAP_PERFMON` and `CAP_DAC_READ_SEARCH` (plus `CAP_SYS_PTRACE` to see
/// every VM), and drops all but the last two once its programs are attached.
#[derive(Debug, Parser)]
#[command(name = "kvmtop", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub host: HostArgs,
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

    /// Thresholds of the tuning advice, as TOML. Keys not in the file keep their defaults;
    /// `kvmtop explain --defaults` prints every key with its default and meaning.
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
    Top,
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
    },
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

/// The advice thresholds: defaults, overridden by the file when one is given.
fn thresholds(file: Option<&std::path::Path>) -> anyhow::Result<Thresholds> {
    match file {
        None => Ok(Thresholds::default()),
        Some(path) => Thresholds::load(path).map_err(anyhow::Error::from),
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

#[must_use]
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    let config = Config {
        proc_root: cli.host.proc.clone(),
        sys_root: cli.host.sys.clone(),
        tracefs: TraceFs::new(&cli.host.tracefs),
        btf: cli.host.btf.clone(),
        hook_kinds: cli.host.hook_kinds.clone(),
        collect: cli.host.collect,
    };
    let result = thresholds(cli.host.config.as_deref()).and_then(|thresholds| {
        match cli.command.unwrap_or(Command::Top) {
            Command::Top => app::top(&config, thresholds, cli.host.interval),
            Command::Snapshot { duration, format } => {
                app::snapshot(&config, thresholds, duration, format)
            }
            Command::Serve {
                listen,
                web_config_file,
            } => app::serve(
                &config,
                thresholds,
                listen,
                web_config_file,
                cli.host.interval,
            ),
            Command::Explain { rule, defaults } => explain(rule.as_deref(), defaults, &thresholds),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvmtop: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
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
    fn serve_defaults_to_loopback() {
        let cli = Cli::parse_from(["kvmtop", "serve"]);
        let Some(Command::Serve {
            listen,
            web_config_file,
        }) = cli.command
        else {
            panic!("not serve")
        };
        assert!(listen.ip().is_loopback());
        assert!(web_config_file.is_none());
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
