//! The scheduling, block and TLB phases and the scheduling split as text.

use super::{
    phase_report::{Observed, PhaseReport, PhaseRow},
    report::{Measured, Side},
    split::{SchedSplit, Solved},
    table::{floor_cells, print_wrapped, times},
};

pub fn print(phases: &[PhaseReport], split: &SchedSplit) {
    let mut caveat = "";
    for phase in phases {
        print_phase(phase);
        // Phases sharing a peer share the caveat: once is enough.
        if phase.caveat != caveat {
            print_wrapped("  caveat:", phase.caveat);
            caveat = phase.caveat;
        }
    }
    print_split(split);
}

fn print_phase(phase: &PhaseReport) {
    println!("\nphase {}: {}", phase.name, phase.purpose);
    for what in &phase.workload {
        print_wrapped("  workload:", what);
    }
    println!("  peer: {}", phase.peer);
    println!(
        "  window {:.1} s; load average {} before, {} after; kvmtop agent {:.2}% of one CPU",
        phase.window_seconds,
        phase.load_average[0],
        phase.load_average[1],
        phase.agent_cpu_percent_of_one_cpu
    );
    if let Some(why) = &phase.unavailable {
        print_wrapped("  unavailable:", why);
        return;
    }
    let vmms: Vec<String> = phase
        .vmms
        .iter()
        .map(|vmm| {
            let whose = if vmm.bench { "" } else { ", not the bench's" };
            format!("{} (pid {}{whose})", vmm.name, vmm.pid)
        })
        .collect();
    print_wrapped("  VMMs kvmtop watched:", &vmms.join(", "));
    println!(
        "  {:<18} {:<10} {:<18} {:>9} {:>9} {:>8}   {:>8} {:>6}   {:<32} {:>9} {:>8}   {:>5}",
        "tracepoint",
        "kind",
        "kvmtop program",
        "events",
        "watched",
        "ns/event",
        "floor ns",
        "×floor",
        "peer program",
        "events",
        "ns/event",
        "ratio"
    );
    for row in &phase.rows {
        print_row(row);
    }
    for note in &phase.notes {
        print_wrapped("  note:", note);
    }
}

fn print_row(row: &PhaseRow) {
    let (ours, our_events, our_ns, our_note) =
        cells(row.kvmtop.as_ref(), "kvmtop", "not hooked by kvmtop");
    let (theirs, their_events, their_ns, their_note) =
        cells(row.peer.as_ref(), "peer", "no peer program");
    let watched = row
        .watched_events
        .map_or_else(|| "-".to_owned(), |n| n.to_string());
    let (floor_ns, floor_note) = floor_cells(row.floor.as_ref());
    let theirs = if theirs.starts_with("tracepoint:") {
        "bpftrace (as above)".to_owned()
    } else {
        theirs
    };
    let mut notes = vec![our_note];
    if their_note != notes[0] {
        notes.push(their_note);
    }
    notes.extend(floor_note);
    notes.retain(|note| !note.is_empty());
    let line = format!(
        "  {:<18} {:<10} {ours:<18} {our_events:>9} {watched:>9} {our_ns:>8}   {floor_ns:>8} \
         {:>6}   {theirs:<32} {their_events:>9} {their_ns:>8}   {:>5}  {}",
        row.tracepoint,
        row.kind.as_deref().unwrap_or("-"),
        times(row.floor_ratio),
        times(row.ratio),
        notes.join("; ")
    );
    println!("{}", line.trim_end());
}

/// Program, events, ns/event and a note for one side of a row.
fn cells(side: Option<&Side>, who: &str, absent: &str) -> (String, String, String, String) {
    let dash = || "-".to_owned();
    let Some(side) = side else {
        return (dash(), dash(), dash(), absent.to_owned());
    };
    match &side.measured {
        Measured::Unavailable { unavailable } => {
            (side.program.clone(), dash(), dash(), unavailable.clone())
        }
        Measured::Cost {
            events,
            ns_per_event,
            missed,
            note,
        } => (
            side.program.clone(),
            events.to_string(),
            ns_per_event.map_or_else(dash, |ns| format!("{ns:.1}")),
            match (note, missed) {
                (Some(note), _) => (*note).to_owned(),
                (None, 0) => String::new(),
                (None, missed) => format!("{who} missed {missed} events"),
            },
        ),
    }
}

fn print_split(split: &SchedSplit) {
    println!(
        "\nscheduling programs, unwatched against watched events (phase A {}, phase B {}):",
        split.phases[0], split.phases[1]
    );
    if split.programs.is_empty() {
        println!("  unavailable: a scheduling phase was not measured");
    }
    for program in &split.programs {
        for (phase, observed) in ["A", "B"].iter().zip(&program.observed) {
            println!("  {:<16} {phase}  {}", program.program, describe(observed));
        }
        match &program.solved {
            Solved::Costs {
                unwatched_ns_per_event,
                watched_ns_per_event,
                sensitivity,
                watched_range_10pct: [low, high],
                note,
            } => {
                println!(
                    "  {:<16} => unwatched {unwatched_ns_per_event:.1} ns/event, watched \
                     {watched_ns_per_event:.1} ns/event (sensitivity {sensitivity:.2} ns per ns; \
                     {low:.1}–{high:.1} at ±10% drift)",
                    program.program
                );
                if let Some(note) = note {
                    print_wrapped("    note:", note);
                }
            }
            Solved::Unavailable { unavailable } => {
                println!("  {:<16} => unavailable: {unavailable}", program.program);
            }
        }
    }
    for note in &split.notes {
        print_wrapped("  note:", note);
    }
    print_wrapped("  method:", split.method);
}

/// `1234567 events, 1234 watched (0.10%), 45.3 ns/event`.
fn describe(observed: &Observed) -> String {
    #[allow(clippy::cast_precision_loss)] // Counters far below 2^52.
    let per = |n: u64| n as f64 / observed.events.max(1) as f64;
    let watched = observed.watched.map_or_else(
        || "watched unknown".to_owned(),
        |w| format!("{w} watched ({:.2}%)", per(w) * 100.0),
    );
    format!(
        "{} events, {watched}, {:.1} ns/event overall",
        observed.events,
        per(observed.run_time_ns)
    )
}
