//! `cargo xtask <command>`: the project's tasks, each installing what it needs first.

mod bench;
mod demo;
mod fuzz;
mod interrupt;
mod lint;
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
    /// Measure kvmtop's per-event cost next to an equivalent bpftrace program.
    Bench {
        /// Length of the measurement window.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Run only the guest-throughput pairs (about 3 minutes), written to
        /// `target/bench/throughput.json`.
        #[arg(long, value_enum)]
        only: Option<bench::Only>,
    },
    /// Only the formatting and lint checks of `test`.
    Lint,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::ensure(setup::Purpose::Test).map(|_| true),
        Task::Run { debug, args, .. } => run::run(!debug, &args).map(|()| true),
        Task::Test => test::run(),
        Task::Demo { seconds } => demo::run(seconds).map(|()| true),
        Task::Bench { seconds, only } => bench::run(seconds, only).map(|()| true),
        Task::Lint => lint::run_all(),
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
