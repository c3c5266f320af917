//! kvmtop's `SCHED_WATCHED_EVENTS`: a per-CPU array, one u64 per scheduling program, counting
//! the events that program handled for a watched thread (passed its bitmap test). Read with
//! `bpftool map dump` and summed over the CPUs, it splits each program's `run_cnt` into watched
//! and unwatched events.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use super::progs::same_name;
use crate::util::{cmd, output};

const MAP: &str = "SCHED_WATCHED_EVENTS";
/// Slots of the map (`monitor_common::sched::WatchedEvent`): switch, wakeup.
pub const SLOTS: usize = 2;
pub const SWITCH: usize = 0;
pub const WAKEUP: usize = 1;

/// Watched events per slot, summed over the CPUs.
pub type Counts = [u64; SLOTS];

#[derive(Deserialize)]
struct MapInfo {
    id: u32,
    #[serde(default)]
    name: String,
}

/// The id of the map held by `pid`, once it has loaded it.
pub fn map_id(pid: u32) -> Option<u32> {
    let held = held_maps(pid);
    if held.is_empty() {
        return None;
    }
    let json = output(cmd("bpftool").args(["map", "show", "--json"])).ok()?;
    let maps: Vec<MapInfo> = serde_json::from_str(&json).ok()?;
    maps.into_iter()
        .find(|map| held.contains(&map.id) && same_name(&map.name, MAP))
        .map(|map| map.id)
}

/// Map ids in /proc/PID/fdinfo (`map_id:` lines of map fds).
fn held_maps(pid: u32) -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("map_id:")?.trim().parse().ok())
        })
        .collect()
}

pub fn read(id: u32) -> Result<Counts> {
    let json = output(cmd("bpftool").args(["map", "dump", "id", &id.to_string(), "--json"]))?;
    parse_dump(&json)
}

/// `bpftool map dump --json` of a per-CPU array: without BTF, keys and values are arrays of
/// hex bytes (little-endian); with BTF, plain numbers.
fn parse_dump(json: &str) -> Result<Counts> {
    #[derive(Deserialize)]
    struct Entry {
        key: Value,
        values: Vec<PerCpu>,
    }
    #[derive(Deserialize)]
    struct PerCpu {
        value: Value,
    }
    let entries: Vec<Entry> = serde_json::from_str(json).context("parsing bpftool map dump")?;
    let mut counts: Counts = [0; SLOTS];
    for entry in entries {
        let slot = usize::try_from(number(&entry.key)?)?;
        let Some(count) = counts.get_mut(slot) else {
            continue;
        };
        for cpu in entry.values {
            *count = (*count).wrapping_add(number(&cpu.value)?);
        }
    }
    Ok(counts)
}

fn number(value: &Value) -> Result<u64> {
    match value {
        Value::Number(n) => n.as_u64().context("not a u64"),
        Value::Array(bytes) => {
            let mut n: u64 = 0;
            for (i, byte) in bytes.iter().enumerate().take(8) {
                let text = byte.as_str().context("not a hex byte")?;
                let byte = u8::from_str_radix(text.trim_start_matches("0x"), 16)?;
                n |= u64::from(byte) << (8 * i);
            }
            Ok(n)
        }
        _ => bail!("unexpected value {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_hex_per_cpu_values() {
        let json = r#"[{"key":["0x00","0x00","0x00","0x00"],"values":[
            {"cpu":0,"value":["0x10","0x27","0x00","0x00","0x00","0x00","0x00","0x00"]},
            {"cpu":1,"value":["0x01","0x00","0x00","0x00","0x00","0x00","0x00","0x01"]}]},
            {"key":["0x01","0x00","0x00","0x00"],"values":[
            {"cpu":0,"value":["0x05","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]}]}]"#;
        let counts = parse_dump(json).unwrap();
        assert_eq!(counts[SWITCH], 10_000 + 1 + (1 << 56));
        assert_eq!(counts[WAKEUP], 5);
    }

    #[test]
    fn reads_btf_formatted_numbers() {
        let json = r#"[{"key":1,"values":[{"cpu":0,"value":7},{"cpu":1,"value":8}]},
            {"key":9,"values":[{"cpu":0,"value":1}]}]"#;
        // A slot this build does not know is left out.
        assert_eq!(parse_dump(json).unwrap(), [0, 15]);
        assert!(parse_dump(r#"[{"key":"x","values":[]}]"#).is_err());
    }
}
