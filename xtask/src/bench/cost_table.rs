//! The contention and throughput measurements as text.

use super::{
    contention::{Contention, ProgramSkips},
    report::Report,
    table::print_wrapped,
    throughput::{LevelThroughput, Throughput},
};

pub fn print(report: &Report) {
    if let Some(contention) = &report.contention {
        print_contention(contention);
    }
    if let Some(throughput) = &report.throughput {
        print_throughput(throughput);
    }
}

fn print_contention(report: &Contention) {
    println!(
        "\nskipped events with bpftrace, runqlat and biolatency attached beside kvmtop ({:.1} s \
         window; load average {} before, {} after):",
        report.window_seconds, report.load_average[0], report.load_average[1]
    );
    for what in &report.workload {
        print_wrapped("  workload:", what);
    }
    for peer in &report.peers {
        print_wrapped("  peer:", peer);
    }
    if let Some(why) = &report.unavailable {
        print_wrapped("  unavailable:", why);
        return;
    }
    println!(
        "  {:<10} {:<22} {:<10} {:>10} {:>9} {:>8}",
        "owner", "program", "kind", "events", "skipped", "share"
    );
    let kvmtop_total: u64 = report.programs.iter().map(|row| row.skipped).sum();
    for row in report.programs.iter().chain(&report.peer_programs) {
        print_skipped(row);
    }
    println!("  kvmtop's programs skipped {kvmtop_total} events in all");
    print_wrapped("  method:", report.method);
}

fn print_skipped(row: &ProgramSkips) {
    let share = row
        .skipped_percent
        .map_or_else(|| "-".to_owned(), |p| format!("{p:.3}%"));
    println!(
        "  {:<10} {:<22} {:<10} {:>10} {:>9} {share:>8}",
        row.owner, row.program, row.kind, row.events, row.skipped
    );
}

pub fn print_throughput(report: &Throughput) {
    println!("\nguest throughput without and with kvmtop serve:");
    print_wrapped("  guest:", &report.guest);
    if let Some(why) = &report.unavailable {
        print_wrapped("  unavailable:", why);
        return;
    }
    for level in &report.levels {
        print_level(level);
    }
    for run in &report.runs {
        let agent = match (run.agent_cpu_percent, run.agent_peak_rss_kib) {
            (Some(cpu), Some(rss)) => format!("  (kvmtop serve {cpu:.2}% CPU, peak RSS {rss} KiB)"),
            _ => String::new(),
        };
        let cpu = run
            .exits_per_cpu_second
            .map_or_else(String::new, |rate| format!(", {rate:>9.0} per CPU-second"));
        println!(
            "  {:<8} {:<15} {:>9} exits in {:.2} s = {:>9.0} exits/s{cpu}{agent}",
            run.level,
            if run.with_kvmtop {
                "with kvmtop"
            } else {
                "without kvmtop"
            },
            run.exits,
            run.seconds,
            run.exits_per_second
        );
    }
    if let (Some([without, with]), Some(slowdown), Some(added)) = (
        report.exits_per_second,
        report.slowdown_percent,
        report.added_ns_per_exit,
    ) {
        println!(
            "  mean {without:.0} exits/s without, {with:.0} with: {slowdown:.2}% slower, \
             {added:.0} ns more per exit"
        );
    }
    println!(
        "  kvmtop's programs on the exit path (runs with kvmtop):\n  {:<26} {:<18} {:>11} {:>9} \
         {:>8}",
        "tracepoint", "program", "guest/exit", "ns/event", "ns/exit"
    );
    let cell = |n: Option<f64>| n.map_or_else(|| "-".to_owned(), |n| format!("{n:.1}"));
    // Hooks this guest's exits never fired are in the JSON only.
    for cost in report
        .exit_path
        .iter()
        .filter(|c| c.guest_events_per_exit > 0.0)
    {
        println!(
            "  {:<26} {:<18} {:>11.3} {:>9} {:>8}",
            cost.tracepoint,
            cost.program,
            cost.guest_events_per_exit,
            cell(cost.ns_per_event),
            cell(cost.ns_per_exit)
        );
    }
    if let Some(sum) = report.exit_path_ns_per_exit {
        println!("  kvmtop's programs add {sum:.1} ns to each exit (the sum of ns/exit)");
    }
    if let Some(percent) = report.programs_cpu_percent_of_one_cpu {
        println!(
            "  all of kvmtop's programs, host-wide, ran {percent:.2}% of one CPU during the runs"
        );
    }
    if let Some(agent) = &report.agent {
        #[allow(clippy::cast_precision_loss)]
        let rss_mib = agent.peak_rss_kib as f64 / 1024.0;
        println!(
            "  kvmtop serve: {:.2}% of one CPU, peak RSS {rss_mib:.1} MiB",
            agent.cpu_percent_of_one_cpu
        );
    }
    print_wrapped("  method:", report.method);
}

/// One collection level's rates, their spread and what its programs cost.
fn print_level(level: &LevelThroughput) {
    let cpu = match (level.exits_per_cpu_second, level.cpu_percent_of_without) {
        (Some([without, with]), Some(percent)) => format!(
            "; per second of the guest's CPU {with:.0} with, {without:.0} without: \
             {percent:.1}%"
        ),
        _ => String::new(),
    };
    let spread = level
        .pair_percents
        .iter()
        .copied()
        .fold(None, |range: Option<(f64, f64)>, p| {
            Some(range.map_or((p, p), |(lo, hi)| (lo.min(p), hi.max(p))))
        })
        .map_or_else(String::new, |(lo, hi)| {
            format!(
                " (median of {} pairs, {lo:.1}–{hi:.1}%)",
                level.pair_percents.len()
            )
        });
    let programs = level
        .programs_ns_per_exit
        .map_or_else(String::new, |ns| format!("; programs {ns:.0} ns per exit"));
    println!(
        "  --collect {:<8} {:>9.0} exits/s with kvmtop, {:>9.0} without: \
         {:.1}%{spread}{cpu}{programs}",
        level.level, level.exits_per_second[1], level.exits_per_second[0], level.percent_of_without
    );
}
