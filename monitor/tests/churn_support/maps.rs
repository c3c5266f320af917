//! kvmtop's kernel maps as `bpftool` reads them: which of their entries name which tasks, and
//! which bits of the watched-task bitmaps are set.
//!
//! The maps are kvmtop's own (their ids come from its `/proc/PID/fdinfo`), read by an observer
//! that shares no code with it. Each hash map's layout says where its entries keep task ids;
//! a hash map this file does not know fails the test, so a new map cannot escape the check.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    mem::offset_of,
    process::Command,
};

use monitor_common::{
    block::{BLOCK_PENDING_MAP, BLOCK_STATS_MAP, BlockKey, PendingRequest},
    exits::{
        EXITS_COUNTS_MAP, ExitKey,
        details::{DetailKey, EXITS_DETAILS_MAP, EXITS_DETAILS_OVERFLOW_MAP},
        latency::{EXITS_LATENCY_MAP, EXITS_PENDING_MAP, EXITS_PENDING_USERSPACE_MAP, PendingExit},
        run_fds::{EXITS_FD_WANTED_MAP, EXITS_RUN_FDS_MAP, RunFd},
    },
    numa::{NUMA_FAULTS_MAP, NUMA_MOVES_MAP, NumaFaultKey, NumaMoveKey},
    sched::{
        CONTENDER_OTHER, ContenderKey, SCHED_CONTENDERS_MAP, SCHED_CPU_TIME_MAP, SCHED_THREADS_MAP,
        SCHED_WATCH_MAP, ThreadCpuKey,
    },
    tlb::{TLB_VMM_MAP, TlbKey},
    vmms::VMM_WATCH_MAP,
};

/// Where an entry keeps a task id.
#[derive(Clone, Copy, Debug)]
enum Field {
    /// A process id, at this offset of the key.
    KeyPid(usize),
    /// A thread id in the key.
    KeyTid(usize),
    /// The process that held a CPU (a contender), in the key.
    KeyContender(usize),
    /// A process id in the value.
    ValuePid(usize),
    /// A thread id in the value.
    ValueTid(usize),
}

/// The task-id fields of each hash map, the first naming the task the entry is kept for.
fn layout(name: &str) -> Option<Vec<Field>> {
    use Field::{KeyContender, KeyPid, KeyTid, ValuePid, ValueTid};
    let pending_exit = offset_of!(PendingExit, key);
    let table: [(&str, Vec<Field>); 16] = [
        (SCHED_THREADS_MAP, vec![KeyTid(0)]),
        (
            SCHED_CPU_TIME_MAP,
            vec![KeyTid(offset_of!(ThreadCpuKey, tid))],
        ),
        (
            SCHED_CONTENDERS_MAP,
            vec![
                KeyPid(offset_of!(ContenderKey, tgid)),
                KeyContender(offset_of!(ContenderKey, contender)),
            ],
        ),
        (
            EXITS_COUNTS_MAP,
            vec![
                KeyPid(offset_of!(ExitKey, tgid)),
                KeyTid(offset_of!(ExitKey, tid)),
            ],
        ),
        (
            EXITS_LATENCY_MAP,
            vec![
                KeyPid(offset_of!(ExitKey, tgid)),
                KeyTid(offset_of!(ExitKey, tid)),
            ],
        ),
        (
            EXITS_PENDING_MAP,
            vec![
                KeyTid(0),
                ValuePid(pending_exit + offset_of!(ExitKey, tgid)),
                ValueTid(pending_exit + offset_of!(ExitKey, tid)),
            ],
        ),
        (
            EXITS_PENDING_USERSPACE_MAP,
            vec![
                KeyTid(0),
                ValuePid(pending_exit + offset_of!(ExitKey, tgid)),
                ValueTid(pending_exit + offset_of!(ExitKey, tid)),
            ],
        ),
        (
            EXITS_RUN_FDS_MAP,
            vec![KeyTid(0), ValuePid(offset_of!(RunFd, tgid))],
        ),
        (EXITS_FD_WANTED_MAP, vec![KeyPid(0)]),
        (EXITS_DETAILS_MAP, vec![KeyPid(offset_of!(DetailKey, tgid))]),
        (
            EXITS_DETAILS_OVERFLOW_MAP,
            vec![KeyPid(offset_of!(DetailKey, tgid))],
        ),
        (
            BLOCK_PENDING_MAP,
            vec![ValuePid(offset_of!(PendingRequest, tgid))],
        ),
        (BLOCK_STATS_MAP, vec![KeyPid(offset_of!(BlockKey, tgid))]),
        (
            NUMA_FAULTS_MAP,
            vec![KeyPid(offset_of!(NumaFaultKey, tgid))],
        ),
        (NUMA_MOVES_MAP, vec![KeyPid(offset_of!(NumaMoveKey, tgid))]),
        (
            TLB_VMM_MAP,
            vec![
                KeyPid(offset_of!(TlbKey, tgid)),
                KeyTid(offset_of!(TlbKey, tid)),
            ],
        ),
    ];
    // The kernel keeps 15 bytes of a map's name: SCHED_CONTENDERS_OVERFLOW shows as
    // SCHED_CONTENDERS does, and has its layout (its contender is always CONTENDER_OTHER).
    let fields: Vec<Vec<Field>> = table
        .into_iter()
        .filter(|(full, _)| kernel_name(full) == name)
        .map(|(_, fields)| fields)
        .collect();
    fields.into_iter().next()
}

/// A map name as the kernel keeps it (`BPF_OBJ_NAME_LEN` - 1 bytes).
fn kernel_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// One of kvmtop's maps.
#[derive(Clone, Debug)]
pub struct Map {
    pub id: u64,
    pub kind: String,
    /// The kernel's name (cut to 15 bytes).
    pub name: String,
}

impl Map {
    /// The name and id: two maps can have the same cut name.
    #[must_use]
    pub fn label(&self) -> String {
        format!("{} (map {})", self.name, self.id)
    }
}

/// kvmtop's maps, from the map ids in its `/proc/PID/fdinfo`.
pub fn of_process(pid: u32) -> Vec<Map> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("kvmtop's fdinfo") {
        let Ok(info) = std::fs::read_to_string(entry.expect("an fdinfo entry").path()) else {
            continue;
        };
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|id| id.trim().parse::<u64>().ok())
        {
            ids.insert(id);
        }
    }
    let all = bpftool(&["map", "show"]);
    let maps: Vec<Map> = all
        .as_array()
        .expect("bpftool map show lists maps")
        .iter()
        .filter(|m| m["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .map(|m| Map {
            id: m["id"].as_u64().unwrap(),
            kind: m["type"].as_str().unwrap_or_default().to_owned(),
            name: m["name"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    assert_eq!(
        maps.len(),
        ids.len(),
        "bpftool does not show every map kvmtop holds"
    );
    maps
}

fn bpftool(args: &[&str]) -> serde_json::Value {
    let output = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("running bpftool");
    assert!(
        output.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("bpftool {args:?}: {e}"))
}

fn bytes(hex: &serde_json::Value) -> Vec<u8> {
    hex.as_array()
        .map(|list| {
            list.iter()
                .filter_map(|b| u8::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

/// The tasks that are VMMs now (processes holding a KVM VM) and their threads.
#[derive(Debug, Default)]
pub struct Vmms {
    pub pids: HashSet<u32>,
    pub tasks: HashSet<u32>,
}

impl Vmms {
    pub fn now() -> Self {
        let mut vmms = Self::default();
        for pid in numeric_entries("/proc") {
            let is_vmm = std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(Result::ok).any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| t.as_os_str() == "anon_inode:kvm-vm")
                })
            });
            if is_vmm {
                vmms.pids.insert(pid);
                vmms.tasks
                    .extend(numeric_entries(&format!("/proc/{pid}/task")));
            }
        }
        vmms
    }
}

fn numeric_entries(dir: &str) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What the maps hold at one moment.
#[derive(Debug, Default)]
pub struct Census {
    /// Per hash map, entries kept for a task that is not a VMM (or a thread of one) now.
    pub not_vmm: BTreeMap<String, usize>,
    /// Per hash map, all entries.
    pub entries: BTreeMap<String, usize>,
    /// Entries naming each task id: (map, field, id).
    pub named: Vec<(String, &'static str, u32)>,
    /// The watched-task bitmaps.
    pub watched: Vec<Watched>,
}

/// The set bits of a watched-task bitmap.
#[derive(Debug)]
pub struct Watched {
    pub map: String,
    /// Its bits are processes (the VMM bitmap), not threads (the scheduler's).
    pub processes: bool,
    pub ids: BTreeSet<u32>,
}

/// Reads every map of `maps`; `vmms` are the VMMs now.
pub fn census(maps: &[Map], vmms: &Vmms) -> Census {
    let mut census = Census::default();
    for map in maps {
        if map.name == kernel_name(SCHED_WATCH_MAP) || map.name == kernel_name(VMM_WATCH_MAP) {
            census.watched.push(Watched {
                map: map.label(),
                processes: map.name == kernel_name(VMM_WATCH_MAP),
                ids: bitmap(map.id),
            });
            continue;
        }
        if !map.kind.contains("hash") {
            continue;
        }
        let fields = layout(&map.name).unwrap_or_else(|| {
            panic!(
                "kvmtop holds a hash map this test does not know ({}, {}): add where its \
                 entries keep task ids",
                map.name, map.kind
            )
        });
        let dump = bpftool(&["map", "dump", "id", &map.id.to_string()]);
        let entries = dump.as_array().expect("a map dump is a list");
        census.entries.insert(map.label(), entries.len());
        let mut not_vmm = 0;
        for entry in entries {
            let key = bytes(&entry["key"]);
            let value = bytes(&entry["value"]);
            let ids: Vec<(&'static str, bool, u32)> = fields
                .iter()
                .filter_map(|field| {
                    let (what, is_pid, id) = match *field {
                        Field::KeyPid(at) => ("pid", true, u32_at(&key, at)),
                        Field::KeyTid(at) => ("tid", false, u32_at(&key, at)),
                        Field::KeyContender(at) => ("contender", true, u32_at(&key, at)),
                        Field::ValuePid(at) => ("value pid", true, u32_at(&value, at)),
                        Field::ValueTid(at) => ("value tid", false, u32_at(&value, at)),
                    };
                    Some((what, is_pid, id?))
                })
                .collect();
            if let Some(&(_, is_pid, owner)) = ids.first() {
                let live = if is_pid { &vmms.pids } else { &vmms.tasks };
                if !live.contains(&owner) {
                    not_vmm += 1;
                }
            }
            for (what, _, id) in ids {
                if id != 0 && id != CONTENDER_OTHER {
                    census.named.push((map.label(), what, id));
                }
            }
        }
        census.not_vmm.insert(map.label(), not_vmm);
    }
    census
}

/// The ids whose bits are set in a bitmap of u64 words (bit `id % 64` of word `id / 64`).
/// Read from bpftool's plain dump (`key: 01 00 00 00  value: 00 …`): 65,536 words as JSON take
/// seconds to parse in a debug build, and the readings must come every second.
fn bitmap(id: u64) -> BTreeSet<u32> {
    let output = Command::new("bpftool")
        .args(["map", "dump", "id", &id.to_string()])
        .output()
        .expect("running bpftool");
    assert!(
        output.status.success(),
        "bpftool map dump id {id}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hex = |text: &str| -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("a hex byte"))
            .collect()
    };
    let mut set = BTreeSet::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((key, value)) = line
            .strip_prefix("key: ")
            .and_then(|rest| rest.split_once("value: "))
        else {
            continue;
        };
        if value.split_whitespace().all(|b| b == "00") {
            continue;
        }
        let word = u64::from_le_bytes(hex(value).try_into().expect("a u64 word"));
        let index = u32_at(&hex(key), 0).expect("an array key");
        for bit in 0..64 {
            if word & (1 << bit) != 0 {
                set.insert(index * 64 + bit);
            }
        }
    }
    set
}

/// What is wrong with the maps once every test VM has gone, by a key that stays the same from
/// one reading to the next (so a problem can be confirmed by a later reading), with details.
/// `test_ids` are every pid and thread id the test's VMs had; ids that a live task has now are
/// left alone (another process may rightly have them by now).
pub fn leftovers(
    census: &Census,
    start: &Census,
    test_ids: &BTreeMap<u32, String>,
    vmms: &Vmms,
) -> BTreeMap<String, String> {
    let mut problems = BTreeMap::new();
    let task_exists = |id: u32| std::path::Path::new(&format!("/proc/{id}")).exists();
    for (map, what, id) in &census.named {
        if let Some(vm) = test_ids.get(id)
            && !task_exists(*id)
        {
            problems.insert(
                format!("{map} names {what} {id}"),
                format!("an entry of {map} names {what} {id} of {vm}, which has exited"),
            );
        }
    }
    for (map, &count) in &census.not_vmm {
        let before = start.not_vmm.get(map).copied().unwrap_or(0);
        if count > before {
            problems.insert(
                format!("{map} holds more entries for tasks that are not VMMs"),
                format!(
                    "{map} holds {count} entries for tasks that are not VMMs, {before} at start"
                ),
            );
        }
    }
    for watched in &census.watched {
        let live = if watched.processes {
            &vmms.pids
        } else {
            &vmms.tasks
        };
        for id in &watched.ids {
            if let Some(vm) = test_ids.get(id)
                && !live.contains(id)
            {
                problems.insert(
                    format!("{} watches {id}", watched.map),
                    format!("{} still watches {id} of {vm}", watched.map),
                );
            }
        }
    }
    problems
}
