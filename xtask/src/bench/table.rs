//! The benchmark's report as a text table.

use super::{
    harness::TestRun,
    report::{Measured, Report, Side},
};

/// Events and ns/event as table cells, plus what to say about them.
fn cells(side: Option<&Side>, who: &str) -> (String, String, Option<String>) {
    let dash = || "-".to_owned();
    match side.map(|side| &side.measured) {
        None => (dash(), dash(), Some("no bpftrace counterpart".to_owned())),
        Some(Measured::Unavailable { unavailable }) => (
            dash(),
            dash(),
            Some(format!("{who} unavailable: {unavailable}")),
        ),
        Some(Measured::Cost {
            events,
            ns_per_event,
            missed,
            note,
        }) => (
            events.to_string(),
            ns_per_event.map_or_else(dash, |ns| format!("{ns:.1}")),
            note.map(str::to_owned)
                .or_else(|| (*missed > 0).then(|| format!("{who} missed {missed} events"))),
        ),
    }
}

pub fn print(report: &Report) {
    match &report.hooks {
        Ok(hooks) => {
            let list: Vec<String> = hooks
                .iter()
                .map(|hook| format!("{} ({})", hook.event, hook.kind))
                .collect();
            print_wrapped("\nkvmtop's hooks, from its snapshot:", &list.join(", "));
        }
        Err(why) => print_wrapped("\nkvmtop's hooks unknown, so no floors:", why),
    }
    println!(
        "\nper-event cost, kvmtop and bpftrace attached together over the same {:.1} s window \
         (bpftool run_time_ns / run_cnt):",
        report.window_seconds
    );
    println!(
        "  {:<18} {:<10} {:<18} {:>9} {:>8}   {:>8} {:>6}   {:>9} {:>8}   {:>6}",
        "tracepoint",
        "kind",
        "kvmtop program",
        "events",
        "ns/event",
        "floor ns",
        "×floor",
        "bpftrace",
        "ns/event",
        "ratio"
    );
    for row in &report.programs {
        let (our_events, our_ns, our_note) = cells(Some(&row.kvmtop), "kvmtop");
        let (their_events, their_ns, their_note) = cells(row.bpftrace.as_ref(), "bpftrace");
        let (floor_ns, floor_note) = floor_cells(row.floor.as_ref());
        let mut notes: Vec<String> = our_note.into_iter().collect();
        notes.extend(their_note.filter(|note| !notes.contains(note)));
        notes.extend(floor_note);
        let line = format!(
            "  {:<18} {:<10} {:<18} {our_events:>9} {our_ns:>8}   {floor_ns:>8} {:>6}   \
             {their_events:>9} {their_ns:>8}   {:>6}  {}",
            row.tracepoint,
            row.kind.as_deref().unwrap_or("-"),
            row.kvmtop.program,
            times(row.floor_ratio),
            times(row.ratio),
            notes.join("; ")
        );
        println!("{}", line.trim_end());
    }
    println!(
        "kind = the hook kind kvmtop's program ran as; floor = an empty program of that kind on \
         that hook; ×floor = kvmtop ns/event ÷ floor ns/event"
    );
    println!("ratio = kvmtop ns/event ÷ bpftrace ns/event (below 1: kvmtop is cheaper)");
    println!("bpftrace programs (one bpftrace process running all of them):");
    for side in report
        .programs
        .iter()
        .filter_map(|row| row.bpftrace.as_ref())
    {
        println!("  {}", side.program);
    }
    for caveat in &report.caveats {
        print_wrapped("note:", caveat);
    }
    print_test_run(&report.test_run);
    let agent = &report.agent;
    #[allow(clippy::cast_precision_loss)]
    let rss_mib = agent.peak_rss_kib as f64 / 1024.0;
    println!(
        "kvmtop agent: {:.0} ms CPU over {:.1} s ({:.2}% of one CPU), peak RSS {rss_mib:.1} MiB",
        agent.cpu_ms, agent.lifetime_seconds, agent.cpu_percent_of_one_cpu
    );
    println!(
        "host: {} CPUs, load average {} before and {} after (other work on the host adds noise)",
        report.cpus, report.load_average[0], report.load_average[1]
    );
}

/// A ratio as a cell, `-` when absent.
pub fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

/// The floor's ns/event as a cell, and why it is missing.
pub fn floor_cells(floor: Option<&Side>) -> (String, Option<String>) {
    match floor.map(|side| &side.measured) {
        None => ("-".to_owned(), None),
        Some(Measured::Unavailable { unavailable }) => (
            "-".to_owned(),
            Some(format!("floor unavailable: {unavailable}")),
        ),
        Some(Measured::Cost { ns_per_event, .. }) => (
            ns_per_event.map_or_else(|| "-".to_owned(), |ns| format!("{ns:.1}")),
            None,
        ),
    }
}

fn print_test_run(test_run: &TestRun) {
    println!("\nkvmtop's kernel logic through BPF_PROG_TEST_RUN (no bpftrace counterpart):");
    if let Some(why) = &test_run.unavailable {
        println!("  unavailable: {why}");
    }
    for op in &test_run.operations {
        let ns = op
            .ns_per_run
            .map_or_else(|| "-".to_owned(), |ns| format!("{ns:.1}"));
        println!("  {:<18} {ns:>8} ns/run  ({} runs)", op.operation, op.runs);
    }
    print_wrapped(" ", test_run.method);
}

/// `text` after `lead`, wrapped at 100 columns with continuation lines indented by two.
pub fn print_wrapped(lead: &str, text: &str) {
    let mut line = lead.to_owned();
    for word in text.split_whitespace() {
        if line.len() + word.len() >= 100 {
            println!("{line}");
            line.clear();
            line.push(' ');
        }
        line.push(' ');
        line.push_str(word);
    }
    println!("{line}");
}
