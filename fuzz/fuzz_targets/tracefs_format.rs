//! Tracepoint `format` files, through the parser that gives kvmtop the record layout of every
//! event it hooks on this kernel. Nothing may panic, and a field it returns must lie where the
//! file says: its size and offset as written, the two within the record's 16-bit bounds.
#![no_main]

use kvmtop::host::tracefs::EventFormat;
use libfuzzer_sys::fuzz_target;

/// The fields kvmtop looks up, across all families.
const FIELDS: &[&str] = &[
    "exit_reason",
    "isa",
    "vcpu_id",
    "prev_pid",
    "prev_state",
    "next_pid",
    "pid",
    "dev",
    "sector",
    "nr_sector",
    "rwbs",
    "bytes",
    "reason",
    "pages",
    "port",
    "rw",
    "len",
    "type",
    "gpa",
    "index",
    "write",
    "nr",
    "vcpu",
    "grow",
    "failed",
    "id",
    "args",
    "__data_loc",
    "tgid",
    "src_tgid",
    "src_nid",
    "dst_nid",
    "dst_tgid",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let format = EventFormat::parse(&text);
    for name in FIELDS {
        if let Some(field) = format.field(name) {
            assert_eq!(field.name, *name);
            let _ = kvmtop::host::tracefs::sized(Some(field.clone()), "fuzz", name, 4);
        }
    }
});
