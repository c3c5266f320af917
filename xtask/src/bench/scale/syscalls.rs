//! The agent's system calls per second, by call, to show where its cost goes: `perf trace -s`
//! (kernel tracepoints, little overhead) or else `strace -c -f` (ptrace: the agent runs slower
//! while counted). Counted after the CPU window, so neither tracer's overhead is in the agent's
//! CPU figure.

use std::{
    collections::BTreeMap,
    fs::File,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::{
    interrupt,
    util::{self, cmd},
};

/// The calls counted, per second, by call name.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Syscalls {
    /// `perf trace -s` or `strace -c -f`, with its arguments.
    pub tool: String,
    pub seconds: f64,
    pub per_second: BTreeMap<String, f64>,
    pub total_per_second: f64,
}

/// Counts the calls of every thread of `pid` for `seconds`, calling `meanwhile` about once a
/// second (the scrapes go on, as they are part of the agent's work). `Err` says why neither
/// tool could count.
pub fn count(pid: u32, seconds: u64, log: &Path, meanwhile: &mut dyn FnMut()) -> Result<Syscalls> {
    let perf = with_perf(pid, seconds, log, meanwhile);
    match perf {
        Ok(counted) if !counted.per_second.is_empty() => Ok(counted),
        perf => {
            interrupt::bail_if_interrupted()?;
            let why = perf.map_or_else(|err| format!("{err:#}"), |_| "no calls listed".into());
            println!("  perf trace counted nothing ({why}); trying strace");
            with_strace(pid, seconds, log, meanwhile)
                .with_context(|| format!("perf trace: {why}; strace"))
        }
    }
}

fn with_perf(pid: u32, seconds: u64, log: &Path, meanwhile: &mut dyn FnMut()) -> Result<Syscalls> {
    let mut command = cmd(util::find_program("perf").context("perf is not installed")?);
    // perf traces the pid's threads while its own command, the sleep, runs.
    command.args([
        "trace",
        "-s",
        "-p",
        &pid.to_string(),
        "--",
        "sleep",
        &seconds.to_string(),
    ]);
    let tool = util::display(&command);
    collect(&mut command, log, None, seconds, meanwhile)?;
    #[allow(clippy::cast_precision_loss)]
    finish(tool, &parse_perf(&read(log)), seconds as f64)
}

fn with_strace(
    pid: u32,
    seconds: u64,
    log: &Path,
    meanwhile: &mut dyn FnMut(),
) -> Result<Syscalls> {
    let mut command = cmd(util::find_program("strace").context("strace is not installed")?);
    command.args(["-c", "-f", "-p", &pid.to_string()]);
    let tool = util::display(&command);
    let traced = collect(
        &mut command,
        log,
        Some(Duration::from_secs(seconds)),
        seconds,
        meanwhile,
    )?;
    finish(tool, &parse_strace(&read(log)), traced)
}

fn read(log: &Path) -> String {
    std::fs::read(log)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn finish(tool: String, calls: &BTreeMap<String, u64>, seconds: f64) -> Result<Syscalls> {
    if seconds <= 0.0 {
        bail!("no time counted");
    }
    #[allow(clippy::cast_precision_loss)] // Call counts stay far below 2^52.
    let per_second: BTreeMap<String, f64> = calls
        .iter()
        .map(|(name, count)| (name.clone(), *count as f64 / seconds))
        .collect();
    Ok(Syscalls {
        tool,
        seconds,
        total_per_second: per_second.values().sum(),
        per_second,
    })
}

/// Runs the tracer with its stdout and stderr in `log`; `stop_after` sends it SIGINT then
/// (strace runs until told), otherwise it ends by itself. Returns the seconds it traced.
fn collect(
    command: &mut std::process::Command,
    log: &Path,
    stop_after: Option<Duration>,
    seconds: u64,
    meanwhile: &mut dyn FnMut(),
) -> Result<f64> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    command
        .stdout(file.try_clone()?)
        .stderr(file)
        .stdin(Stdio::null());
    util::echo(command);
    let mut child = super::super::Killed(command.spawn().context("starting the tracer")?);
    let started = Instant::now();
    let give_up = started + Duration::from_secs(seconds + 30);
    let mut interrupted_at = None;
    let mut next_tick = started + Duration::from_secs(1);
    loop {
        if let Some(_status) = child.0.try_wait()? {
            break;
        }
        let now = Instant::now();
        if interrupt::interrupted() || now > give_up {
            bail!("the tracer did not finish");
        }
        if interrupted_at.is_none() && stop_after.is_some_and(|after| now >= started + after) {
            signal(&child.0, libc::SIGINT);
            interrupted_at = Some(now);
        }
        if now >= next_tick {
            meanwhile();
            next_tick += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let traced = interrupted_at.map_or_else(|| started.elapsed(), |at| at - started);
    Ok(traced.as_secs_f64())
}

fn signal(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our un-reaped child.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Sums `perf trace -s`'s per-thread tables: rows of `name calls errors total min avg max
/// stddev%` (older perf has no errors column).
fn parse_perf(text: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 7 || !fields[fields.len() - 1].ends_with('%') {
            continue;
        }
        if let (true, Ok(count)) = (is_call_name(fields[0]), fields[1].parse::<u64>()) {
            *calls.entry(fields[0].to_owned()).or_default() += count;
        }
    }
    calls
}

/// Reads `strace -c`'s table: `% time, seconds, usecs/call, calls, [errors,] syscall`.
fn parse_strace(text: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !(5..=6).contains(&fields.len()) || fields[0].parse::<f64>().is_err() {
            continue;
        }
        let name = fields[fields.len() - 1];
        if name == "total" || !is_call_name(name) {
            continue;
        }
        if let Ok(count) = fields[3].parse::<u64>() {
            *calls.entry(name.to_owned()).or_default() += count;
        }
    }
    calls
}

fn is_call_name(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_lowercase())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `n` most frequent calls, most frequent first.
pub fn top(syscalls: &Syscalls, n: usize) -> Vec<(&str, f64)> {
    let mut calls: Vec<(&str, f64)> = syscalls
        .per_second
        .iter()
        .map(|(name, rate)| (name.as_str(), *rate))
        .collect();
    calls.sort_by(|a, b| b.1.total_cmp(&a.1));
    calls.truncate(n);
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_perf_threads() {
        let text = "
 Summary of events:

 sampler (9580), 36767 events, 100.0%

   syscall            calls  errors  total       min       avg       max       stddev
                                     (msec)    (msec)    (msec)    (msec)        (%)
   --------------- --------  ------ -------- --------- --------- ---------     ------
   read               11406      0   153.361     0.010     0.013     0.146      0.34%
   bpf                   42     26     5.918     0.013     0.141     2.041     47.15%

 tokio-runtime-w (9581), 10 events, 0.0%

   syscall            calls  errors  total       min       avg       max       stddev
   --------------- --------  ------ -------- --------- --------- ---------     ------
   read                   4      0     0.100     0.010     0.013     0.146      0.34%
   epoll_wait             1      0     0.100     0.010     0.013     0.146      0.34%
";
        let calls = parse_perf(text);
        assert_eq!(calls["read"], 11_410);
        assert_eq!(calls["bpf"], 42);
        assert_eq!(calls["epoll_wait"], 1);
        assert_eq!(calls.len(), 3);
    }

    #[test]
    fn reads_strace_table() {
        let text = "strace: Process 12 attached with 4 threads
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 45.00    0.000045           4        10           read
 30.00    0.000030           3      1000        26 bpf
------ ----------- ----------- --------- --------- ----------------
100.00    0.000100                  1010        26 total
";
        let calls = parse_strace(text);
        assert_eq!(calls["read"], 10);
        assert_eq!(calls["bpf"], 1000);
        assert_eq!(calls.len(), 2);
        let counted = finish("strace".into(), &calls, 10.0).unwrap();
        assert!((counted.total_per_second - 101.0).abs() < 1e-9);
        assert_eq!(top(&counted, 1), [("bpf", 100.0)]);
    }
}
