//! Turning two samples of program statistics into the benchmark's table and JSON.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde::Serialize;

use super::{
    agent::Usage,
    progs::{Prog, same_name},
};

/// The probes both kvmtop and the bpftrace program attach, compared pairwise.
pub const COMPARED: [&str; 2] = ["kvm_exit", "kvm_userspace_exit"];

#[derive(Serialize)]
pub struct Report {
    pub window_seconds: f64,
    pub programs: Vec<Row>,
    pub agent: Agent,
}

#[derive(Serialize)]
pub struct Row {
    pub program: String,
    pub kvmtop: Cost,
    /// Absent for kvmtop programs the bpftrace program has no counterpart for.
    pub bpftrace: Option<Cost>,
    /// kvmtop's ns/event divided by bpftrace's; absent unless both saw events.
    pub ratio: Option<f64>,
}

#[derive(Serialize)]
pub struct Cost {
    pub events: u64,
    pub ns_per_event: Option<f64>,
    /// Set when the program never ran, e.g. `kvm_exit` on nested/PVM hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

const SILENT: &str = "no events (silent on this host)";

#[derive(Serialize)]
pub struct Agent {
    pub cpu_ms: f64,
    pub cpu_percent_of_one_cpu: f64,
    pub lifetime_seconds: f64,
    pub peak_rss_kib: u64,
}

/// A program's cost between two samples.
fn cost(id: u32, start: &BTreeMap<u32, Prog>, end: &BTreeMap<u32, Prog>) -> Cost {
    let (Some(a), Some(b)) = (start.get(&id), end.get(&id)) else {
        return Cost {
            events: 0,
            ns_per_event: None,
            note: Some(SILENT),
        };
    };
    let events = b.run_cnt.saturating_sub(a.run_cnt);
    let ns = b.run_time_ns.saturating_sub(a.run_time_ns);
    #[allow(clippy::cast_precision_loss)] // Counters far below 2^52 over a benchmark.
    let ns_per_event = (events > 0).then(|| ns as f64 / events as f64);
    Cost {
        events,
        ns_per_event,
        note: (events == 0).then_some(SILENT),
    }
}

pub struct Window<'a> {
    pub start: &'a BTreeMap<u32, Prog>,
    pub end: &'a BTreeMap<u32, Prog>,
    pub kvmtop: &'a BTreeSet<u32>,
    pub bpftrace: &'a BTreeSet<u32>,
    pub length: Duration,
}

pub fn build(window: &Window<'_>, usage: Usage, agent_lifetime: Duration) -> Report {
    let mut programs = Vec::new();
    // Compared probes first, then any other program kvmtop loaded, for its share of the cost.
    let mut kvmtop_ids: Vec<u32> = window.kvmtop.iter().copied().collect();
    kvmtop_ids.sort_by_key(|id| {
        let name = window.end.get(id).map_or("", |prog| prog.name.as_str());
        (
            !COMPARED.iter().any(|probe| same_name(probe, name)),
            name.to_owned(),
        )
    });
    for id in kvmtop_ids {
        let name = window
            .end
            .get(&id)
            .map_or_else(String::new, |prog| prog.name.clone());
        let compared = COMPARED.iter().find(|probe| same_name(probe, &name));
        let twin = compared.and_then(|probe| {
            window.bpftrace.iter().copied().find(|other| {
                window
                    .end
                    .get(other)
                    .is_some_and(|prog| same_name(probe, &prog.name))
            })
        });
        let kvmtop = cost(id, window.start, window.end);
        let bpftrace = twin.map(|twin| cost(twin, window.start, window.end));
        let ratio = match (
            &kvmtop.ns_per_event,
            bpftrace.as_ref().and_then(|b| b.ns_per_event),
        ) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => Some(ours / theirs),
            _ => None,
        };
        let program = compared.map_or(name, |probe| (*probe).to_owned());
        programs.push(Row {
            program,
            kvmtop,
            bpftrace,
            ratio,
        });
    }
    let lifetime_ms = agent_lifetime.as_secs_f64() * 1000.0;
    Report {
        window_seconds: window.length.as_secs_f64(),
        programs,
        agent: Agent {
            cpu_ms: usage.cpu_ms,
            cpu_percent_of_one_cpu: if lifetime_ms > 0.0 {
                usage.cpu_ms / lifetime_ms * 100.0
            } else {
                0.0
            },
            lifetime_seconds: agent_lifetime.as_secs_f64(),
            peak_rss_kib: usage.peak_rss_kib,
        },
    }
}

fn describe(cost: Option<&Cost>) -> (String, String) {
    match cost {
        None => ("-".to_owned(), "not attached".to_owned()),
        Some(Cost { events: 0, .. }) => ("0".to_owned(), SILENT.to_owned()),
        Some(Cost {
            events,
            ns_per_event,
            ..
        }) => (
            events.to_string(),
            ns_per_event.map_or_else(|| "-".to_owned(), |ns| format!("{ns:.1}")),
        ),
    }
}

pub fn print(report: &Report) {
    println!(
        "\nper-event cost over the same {:.1}s window (bpftool run_time_ns / run_cnt):",
        report.window_seconds
    );
    println!(
        "  {:<20} {:>10} {:>32} {:>10} {:>32} {:>8}",
        "program", "kvmtop ev", "kvmtop ns/event", "bpftr. ev", "bpftrace ns/event", "ratio"
    );
    for row in &report.programs {
        let (our_events, our_ns) = describe(Some(&row.kvmtop));
        let (their_events, their_ns) = describe(row.bpftrace.as_ref());
        let ratio = row
            .ratio
            .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}"));
        println!(
            "  {:<20} {our_events:>10} {our_ns:>32} {their_events:>10} {their_ns:>32} {ratio:>8}",
            row.program
        );
    }
    let agent = &report.agent;
    #[allow(clippy::cast_precision_loss)]
    let rss_mib = agent.peak_rss_kib as f64 / 1024.0;
    println!(
        "kvmtop agent: {:.0} ms CPU over {:.1}s ({:.2}% of one CPU), peak RSS {rss_mib:.1} MiB",
        agent.cpu_ms, agent.lifetime_seconds, agent.cpu_percent_of_one_cpu
    );
    println!("ratio = kvmtop ns/event ÷ bpftrace ns/event (below 1: kvmtop is cheaper)");
}
