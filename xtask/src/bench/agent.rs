//! The agent's own cost, from procfs: CPU time (in all and by thread) and peak resident memory.

use std::collections::BTreeMap;

/// What the last successful read of /proc/PID showed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// utime + stime, in milliseconds.
    pub cpu_ms: f64,
    /// `VmHWM`: the peak resident set, in KiB.
    pub peak_rss_kib: u64,
}

/// Reads the process's usage; `None` once it has exited.
pub fn read(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Usage {
        cpu_ms: cpu_ms(&stat)?,
        peak_rss_kib: peak_rss_kib(&status)?,
    })
}

/// CPU time so far of each of the process's threads, added up by thread name (`sampler`,
/// `flight`, `tokio-rt-worker`, …), in milliseconds. A thread that ended before the read is not
/// in it: its time shows only in [`read`]'s total.
pub fn cpu_ms_by_thread(pid: u32) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(stat), Ok(comm)) = (
            std::fs::read_to_string(path.join("stat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue;
        };
        if let Some(ms) = cpu_ms(&stat) {
            *by_name.entry(comm.trim_end().to_owned()).or_insert(0.0) += ms;
        }
    }
    by_name
}

/// Percent of one core each thread name took over `seconds`, from two [`cpu_ms_by_thread`]
/// readings; names under 0.005 % are left out.
pub fn percent_by_thread(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    seconds: f64,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, ms)| {
            let spent = ms - before.get(name).copied().unwrap_or(0.0);
            (name.clone(), spent / (seconds * 10.0))
        })
        .filter(|(_, percent)| *percent >= 0.005)
        .collect()
}

fn cpu_ms(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces and parentheses; fields after the last ')'
    // start at field 3, so utime and stime (fields 14 and 15) are at indices 11 and 12.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    #[allow(clippy::cast_precision_loss)] // Tick counts stay far below 2^52.
    Some(ticks as f64 * 1000.0 / clock_ticks_per_second())
}

fn peak_rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix("VmHWM:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    #[allow(clippy::cast_precision_loss)]
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_shares_are_the_differences_over_the_window() {
        let before = [("sampler".to_owned(), 1000.0), ("flight".to_owned(), 400.0)].into();
        let after = [
            ("sampler".to_owned(), 1600.0),
            ("flight".to_owned(), 400.001),
            ("control".to_owned(), 30.0),
        ]
        .into();
        let shares = percent_by_thread(&before, &after, 60.0);
        assert_eq!(shares.len(), 2, "{shares:?}");
        assert!((shares["sampler"] - 1.0).abs() < 1e-9);
        assert!((shares["control"] - 0.05).abs() < 1e-9);
        // The bench's own process: at least this thread, by its name.
        assert!(!cpu_ms_by_thread(std::process::id()).is_empty());
    }

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (kvm top) S 1 1234 1234 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 3 0";
        let ms = cpu_ms(stat).unwrap();
        assert!((ms - 200.0 * 1000.0 / clock_ticks_per_second()).abs() < 1e-9);
        assert_eq!(
            peak_rss_kib("Name:\tkvmtop\nVmHWM:\t   12345 kB\n"),
            Some(12345)
        );
    }
}
