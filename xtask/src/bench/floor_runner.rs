//! Not part of xtask: the source of a small program that `cargo xtask bench` builds beside the
//! harness runner, against the kvmtop library (see `floors.rs`).
//!
//! It attaches kvmtop's empty floor programs to the hooks it is given and keeps them attached
//! until its standard input closes. Each hook gets its own copy of the object, so each floor is a
//! program of its own with its own run-time statistics: a program attached to two hooks would add
//! their events together. The copies' maps are shrunk to one entry each, as no floor uses them.
//!
//! Usage: `floors KIND:HOOK...` with KIND `tracepoint` (HOOK `system:event`), `raw_tp` or
//! `tp_btf` (HOOK `event`). Prints one line per hook, `<KIND:HOOK> id <program id>` or
//! `<KIND:HOOK> error <why>`, then `ready`.

use std::io::Read as _;

use kvmtop::bpf::chain;

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{BtfTracePoint, RawTracePoint, TracePoint},
};
use monitor_common::{
    BENCH_NAMES, FAMILY_NAMES, SHARED_MAPS,
    floor::{PROG_FLOOR_RAW_TP, PROG_FLOOR_TP_BTF, PROG_FLOOR_TRACEPOINT},
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hooks: Vec<String> = std::env::args().skip(1).collect();
    let btf = Btf::from_sys_fs();
    // The copies must stay loaded (and their links attached) until the end.
    let mut kept = Vec::new();
    for hook in &hooks {
        match attach(hook, btf.as_ref().map_err(ToString::to_string)) {
            Ok((ebpf, id)) => {
                println!("{hook} id {id}");
                kept.push(ebpf);
            }
            Err(why) => println!("{hook} error {}", why.replace('\n', " ")),
        }
    }
    println!("ready");
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest)?;
    drop(kept);
    Ok(())
}

/// A fresh copy of the object with its floor of `KIND` attached to `HOOK`, and the program's id.
fn attach(spec: &str, btf: Result<&Btf, String>) -> Result<(Ebpf, u32), String> {
    let (kind, hook) = spec
        .split_once(':')
        .ok_or_else(|| format!("not KIND:HOOK: {spec}"))?;
    let mut loader = EbpfLoader::new();
    let maps = FAMILY_NAMES
        .iter()
        .chain(BENCH_NAMES)
        .flat_map(|names| names.maps.iter())
        .chain(SHARED_MAPS);
    for map in maps {
        loader.map_max_entries(map, 1);
    }
    let mut ebpf = loader
        .load(kvmtop::bpf::object())
        .map_err(|e| format!("loading the object: {}", chain(&e)))?;
    let program = |name: &str| format!("program {name} missing from the object");
    let info = match kind {
        "tracepoint" => {
            let (system, event) = hook
                .split_once(':')
                .ok_or_else(|| format!("not system:event: {hook}"))?;
            let prog: &mut TracePoint = ebpf
                .program_mut(PROG_FLOOR_TRACEPOINT)
                .ok_or_else(|| program(PROG_FLOOR_TRACEPOINT))?
                .try_into()
                .map_err(|e| chain(&e))?;
            prog.load().map_err(|e| format!("load: {}", chain(&e)))?;
            prog.attach(system, event)
                .map_err(|e| format!("attach: {}", chain(&e)))?;
            prog.info()
        }
        "raw_tp" => {
            let prog: &mut RawTracePoint = ebpf
                .program_mut(PROG_FLOOR_RAW_TP)
                .ok_or_else(|| program(PROG_FLOOR_RAW_TP))?
                .try_into()
                .map_err(|e| chain(&e))?;
            prog.load().map_err(|e| format!("load: {}", chain(&e)))?;
            prog.attach(hook)
                .map_err(|e| format!("attach: {}", chain(&e)))?;
            prog.info()
        }
        "tp_btf" => {
            let btf = btf.map_err(|e| format!("the kernel's BTF: {e}"))?;
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(PROG_FLOOR_TP_BTF)
                .ok_or_else(|| program(PROG_FLOOR_TP_BTF))?
                .try_into()
                .map_err(|e| chain(&e))?;
            prog.load(hook, btf)
                .map_err(|e| format!("load: {}", chain(&e)))?;
            prog.attach()
                .map_err(|e| format!("attach: {}", chain(&e)))?;
            prog.info()
        }
        _ => return Err(format!("unknown hook kind {kind}")),
    };
    let id = info.map_err(|e| chain(&e))?.id();
    Ok((ebpf, id))
}

