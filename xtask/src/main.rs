//! `cargo xtask <command>`: the project's tasks, each installing what it needs first.

mod bench;
mod demo;
mod dist;
mod docs;
mod fuzz;
mod interrupt;
mod lint;
mod rules;
mod run;
mod setup;
mod summary;
mod test;
mod util;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "kvmtop's project tasks",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Check and install everything `run`, `test`, `demo` and `bench` need.
    Setup,
    /// Build kvmtop and start it on this host (as root; through sudo otherwise).
    Run {
        /// Build with the release profile (the default).
        #[arg(long, conflicts_with = "debug")]
        release: bool,
        /// Build with the debug profile.
        #[arg(long)]
        debug: bool,
        /// Arguments for kvmtop, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run formatting, lint and the whole test suite, then print a summary.
    Test,
    /// Start a few small guests and run the kvmtop TUI against them.
    Demo {
        /// Stop kvmtop after this many seconds (default: run until you quit it).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Measure kvmtop's cost: per event next to an equivalent bpftrace program, or, with
    /// `--scale`, the agent's on a host with many VMs.
    Bench {
        /// Length of the measurement window.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Run only one part: `throughput`, the guest-throughput pairs (about 3 minutes),
        /// written to `target/bench/throughput.json`; or `recording`, `kvmtop record` beside the
        /// demo guests for the window (bytes per VM-second, the recorder's CPU), written to
        /// `target/bench/recording.json`; or `sched`, the scheduling programs' two phases and
        /// the split of their cost (about 3 minutes at `--seconds 5`), written to
        /// `target/bench/sched.json`.
        #[arg(long, value_enum, conflicts_with = "scale")]
        only: Option<bench::Only>,
        /// Instead of the per-event bench: `kvmtop serve --interval 1 --metrics-detail full`
        /// with many mini VMMs (2 vCPUs each, kept lightly busy), one configuration per
        /// `--scale-vmms` count and one more at the largest with `--scale-idle` idle processes.
        /// For each: the agent's CPU % (in all and by thread) and peak RSS over the window, every scrape's latency (one
        /// a second, or every `--scale-scrape-every` seconds) and whether it parses, its system calls per second (perf trace or strace,
        /// 10 s after the window), `kvmtop snapshot --duration 5`'s wall time (after serve
        /// stopped), and whether every VM and vCPU thread is right. About 2 minutes per configuration at the default window;
        /// writes `target/bench/scale.json`.
        #[arg(long)]
        scale: bool,
        /// Length of each scale configuration's measurement window, in seconds.
        #[arg(long, default_value_t = 60, requires = "scale")]
        scale_seconds: u64,
        /// VMM counts of the scale bench, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10,50,100",
            requires = "scale"
        )]
        scale_vmms: Vec<usize>,
        /// Idle processes (not VMs) for the last scale configuration; 0 leaves it out.
        #[arg(long, default_value_t = 2000, requires = "scale")]
        scale_idle: usize,
        /// Seconds between two scrapes of `/metrics` in the scale bench (the last second of the
        /// window is always scraped). 1 renders every window; Prometheus' usual 15 s or more
        /// leaves most windows unrendered.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..), requires = "scale")]
        scale_scrape_every: u64,
    },
    /// Regenerate the screenshots of the live view in docs/screenshots/ (root): starts the demo
    /// guests, runs the live view in tmux at 120×32, steps through its views and converts each
    /// capture to SVG. The guests and the tmux session are stopped on every way out.
    Docs,
    /// Build the Debian package (`target/debian/kvmtop_*.deb`) with cargo-deb, installing
    /// cargo-deb first if it is missing: the release binary, its man pages and shell
    /// completions, the systemd unit, the dashboards and Prometheus rules, and the advice
    /// thresholds file.
    Dist {
        /// Then install it with apt, check it and purge it, as `cargo xtask test` does (as
        /// root, on a machine without kvmtop installed).
        #[arg(long)]
        check: bool,
    },
    /// Only the formatting and lint checks of `test`.
    Lint,
    /// Only the Prometheus rule checks of `test`: `promtool check rules` and `promtool test
    /// rules` on `dashboards/rules/`, and the alert conventions.
    Rules,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::ensure(setup::Purpose::Test).map(|_| true),
        Task::Run { debug, args, .. } => run::run(!debug, &args).map(|()| true),
        Task::Test => test::run(),
        Task::Demo { seconds } => demo::run(seconds).map(|()| true),
        Task::Bench {
            scale: true,
            scale_seconds,
            scale_vmms,
            scale_idle,
            scale_scrape_every,
            ..
        } => bench::run_scale(&bench::ScaleOptions {
            seconds: scale_seconds,
            vmms: scale_vmms,
            idle: scale_idle,
            scrape_every: scale_scrape_every,
        })
        .map(|()| true),
        Task::Bench { seconds, only, .. } => bench::run(seconds, only).map(|()| true),
        Task::Docs => docs::run().map(|()| true),
        Task::Dist { check: false } => dist::run().map(|()| true),
        Task::Dist { check: true } => dist::acceptance::run(),
        Task::Lint => lint::run_all(),
        Task::Rules => rules::run(),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        // The task already reported what failed, and its summary must stay the last line.
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
