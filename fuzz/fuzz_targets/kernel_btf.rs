//! BTF files, through the reader that finds the struct fields and tracepoint arguments the raw
//! programs need (`--btf FILE` names any file). Nothing may panic or hang: a damaged file is an
//! error, and the sources that needed it fall back to classic tracepoints.
#![no_main]

use std::path::Path;

use kvmtop::host::btf::KernelBtf;
use libfuzzer_sys::fuzz_target;

/// What kvmtop asks of a kernel's BTF, across the families.
const FIELDS: &[(&str, &str, usize)] = &[
    ("task_struct", "pid", 4),
    ("request", "q", 8),
    ("request", "__data_len", 4),
    ("request_queue", "disk", 8),
    ("gendisk", "major", 4),
    ("task", "pid", 4),
    ("task", "a", 4),
];

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = KernelBtf::from_bytes(data.to_vec(), Path::new("fuzz")) else {
        return;
    };
    for (name, field, size) in FIELDS {
        let _ = btf.offset(name, field, *size);
    }
    for value in ["REQ_OP_READ", "OP_WRITE"] {
        let _ = btf.enum_value(value);
    }
    for event in ["sched_switch", "ev"] {
        let _ = btf.tracepoint_args(event);
    }
});
