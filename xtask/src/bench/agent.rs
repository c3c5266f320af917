//! The agent's own cost, from procfs: CPU time and peak resident memory.

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
