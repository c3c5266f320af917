//! The NUMA family's hook table. No tracepoint reports hinting faults, so one program hooks
//! `task_numa_fault()` itself: fentry first (no kprobe support needed, cheaper per call), a
//! kprobe where BPF trampolines do not work. Where neither is allowed, the fault figures come
//! from procfs instead ([`super::balancing`]), which is not a hook and so not in this table.
//! The scheduler's placement decisions have tracepoints of their own, hooked as BTF, raw or
//! classic tracepoints like the scheduler's (the raw arguments are task pointers and CPU ids).

use monitor_common::{
    FIELD_ABSENT,
    numa::{
        GLOBAL_NUMA_TASK_FIELDS, GLOBAL_SCHED_MOVE_NUMA_LAYOUT, GLOBAL_SCHED_STICK_NUMA_LAYOUT,
        GLOBAL_SCHED_SWAP_NUMA_LAYOUT, NUMA_FAULT_FUNCTION, NumaMoveLayout, NumaTaskFields,
        PROG_SCHED_MOVE_NUMA, PROG_SCHED_MOVE_NUMA_BTF, PROG_SCHED_MOVE_NUMA_RAW,
        PROG_SCHED_STICK_NUMA, PROG_SCHED_STICK_NUMA_BTF, PROG_SCHED_STICK_NUMA_RAW,
        PROG_SCHED_SWAP_NUMA, PROG_SCHED_SWAP_NUMA_BTF, PROG_SCHED_SWAP_NUMA_RAW,
        PROG_TASK_NUMA_FAULT_FENTRY, PROG_TASK_NUMA_FAULT_KPROBE,
    },
};

use crate::{
    bpf::hooks::{Attempt, Global, Hook, SourceSpec, every_kind, raw_needs},
    family::HostView,
    host::{
        btf::KernelBtf,
        tracefs::{TraceFs, sized},
    },
};

/// Hinting faults per VM by CPU node and memory node.
pub const NUMA_FAULT: &str = "numa_fault";
/// The procfs fallback of [`NUMA_FAULT`]: not a hook, but reported as a source of the family
/// (snapshots, metrics) while it stands in for the hook.
pub const NUMA_FAULT_PROCFS: &str = "numa_fault_procfs";
/// Where the fallback reads, as snapshots show it next to the hooks.
pub const PROCFS_HOOK: &str = "procfs:/proc/PID/task/TID/sched";
/// `sched:sched_move_numa`: a VMM task moved to a CPU of another node.
pub const MOVE_NUMA: &str = "sched_move_numa";
/// `sched:sched_swap_numa`: a VMM task exchanged CPUs with another task.
pub const SWAP_NUMA: &str = "sched_swap_numa";
/// `sched:sched_stick_numa`: a move the scheduler wanted found no CPU.
pub const STICK_NUMA: &str = "sched_stick_numa";

/// The hook table.
#[must_use]
pub fn table(host: &HostView) -> Vec<SourceSpec> {
    let fields = task_fields(&host.btf);
    let placement = |name, event, args, (btf, raw, classic), global| {
        // What the raw programs need: the task fields, and the argument list they read.
        let raw_needs = raw_needs(&host.btf, event, args, GLOBAL_NUMA_TASK_FIELDS, &fields);
        SourceSpec::new(
            name,
            every_kind(
                &host.btf,
                event,
                (btf, raw),
                raw_needs,
                Attempt::tracepoint(
                    "sched",
                    event,
                    classic,
                    move_layout(&host.tracefs, event).map(|l| vec![Global::new(global, &l)]),
                ),
            ),
        )
    };
    vec![
        SourceSpec::new(
            NUMA_FAULT,
            vec![
                Attempt {
                    hook: Hook::Fentry(NUMA_FAULT_FUNCTION),
                    program: PROG_TASK_NUMA_FAULT_FENTRY,
                    needs: Ok(Vec::new()),
                },
                Attempt {
                    hook: Hook::Kprobe(NUMA_FAULT_FUNCTION),
                    program: PROG_TASK_NUMA_FAULT_KPROBE,
                    needs: Ok(Vec::new()),
                },
            ],
        ),
        // (task, src_cpu, dst_cpu)
        placement(
            MOVE_NUMA,
            "sched_move_numa",
            3,
            (
                PROG_SCHED_MOVE_NUMA_BTF,
                PROG_SCHED_MOVE_NUMA_RAW,
                PROG_SCHED_MOVE_NUMA,
            ),
            GLOBAL_SCHED_MOVE_NUMA_LAYOUT,
        ),
        // (src_task, src_cpu, dst_task, dst_cpu)
        placement(
            SWAP_NUMA,
            "sched_swap_numa",
            4,
            (
                PROG_SCHED_SWAP_NUMA_BTF,
                PROG_SCHED_SWAP_NUMA_RAW,
                PROG_SCHED_SWAP_NUMA,
            ),
            GLOBAL_SCHED_SWAP_NUMA_LAYOUT,
        ),
        // The same since Linux 5.7; before, (task, src_cpu, dst_cpu), which the raw programs do
        // not read: the argument count sends those kernels to the classic program.
        placement(
            STICK_NUMA,
            "sched_stick_numa",
            4,
            (
                PROG_SCHED_STICK_NUMA_BTF,
                PROG_SCHED_STICK_NUMA_RAW,
                PROG_SCHED_STICK_NUMA,
            ),
            GLOBAL_SCHED_STICK_NUMA_LAYOUT,
        ),
    ]
}

/// Where this kernel keeps a task's tgid, from its BTF.
fn task_fields(btf: &Result<KernelBtf, String>) -> Result<NumaTaskFields, String> {
    let btf = btf.as_ref().map_err(Clone::clone)?;
    Ok(NumaTaskFields {
        tgid: btf.offset("task_struct", "tgid", 4)?,
    })
}

/// Where a placement record keeps the moved task's tgid and its two nodes, and for a swap the
/// other task's tgid. The move record (and the stick record before Linux 5.7) names its task
/// `tgid`; the swap record (and the stick record since) `src_tgid`. All are 4-byte ints.
fn move_layout(tracefs: &TraceFs, event: &str) -> Result<NumaMoveLayout, String> {
    let name = format!("sched:{event}");
    let [tgid, src_tgid, src_nid, dst_nid, dst_tgid] = tracefs
        .fields(
            "sched",
            event,
            ["tgid", "src_tgid", "src_nid", "dst_nid", "dst_tgid"],
        )
        .map_err(|e| e.to_string())?;
    let tgid = sized(src_tgid.or(tgid), &name, "tgid", 4)?;
    let src_nid = sized(src_nid, &name, "src_nid", 4)?;
    let dst_nid = sized(dst_nid, &name, "dst_nid", 4)?;
    // Only a swap moves a second task.
    let dst_tgid = if event == "sched_swap_numa" {
        sized(dst_tgid, &name, "dst_tgid", 4)?.offset
    } else {
        FIELD_ABSENT
    };
    Ok(NumaMoveLayout {
        tgid_offset: tgid.offset,
        src_nid_offset: src_nid.offset,
        dst_nid_offset: dst_nid.offset,
        dst_tgid_offset: dst_tgid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOVE_FORMAT: &str = "\tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;\n\
        \tfield:pid_t tgid;\toffset:12;\tsize:4;\tsigned:1;\n\
        \tfield:pid_t ngid;\toffset:16;\tsize:4;\tsigned:1;\n\
        \tfield:int src_cpu;\toffset:20;\tsize:4;\tsigned:1;\n\
        \tfield:int src_nid;\toffset:24;\tsize:4;\tsigned:1;\n\
        \tfield:int dst_cpu;\toffset:28;\tsize:4;\tsigned:1;\n\
        \tfield:int dst_nid;\toffset:32;\tsize:4;\tsigned:1;\n";

    fn fixture(events: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (event, format) in events {
            let path = dir.path().join("events/sched").join(event);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("format"), format).unwrap();
        }
        dir
    }

    #[test]
    fn an_old_stick_record_is_read_with_the_move_layout_and_never_a_second_task() {
        let dir = fixture(&[
            ("sched_move_numa", MOVE_FORMAT),
            ("sched_stick_numa", MOVE_FORMAT),
        ]);
        let tracefs = TraceFs::new(dir.path());
        assert_eq!(
            move_layout(&tracefs, "sched_move_numa"),
            Ok(NumaMoveLayout::MOVE)
        );
        assert_eq!(
            move_layout(&tracefs, "sched_stick_numa"),
            Ok(NumaMoveLayout::MOVE)
        );
        let err = move_layout(&tracefs, "sched_swap_numa").unwrap_err();
        assert!(err.contains("sched:sched_swap_numa does not exist"), "{err}");
    }

    #[test]
    fn a_swap_record_without_the_other_task_is_refused() {
        let dir = fixture(&[("sched_swap_numa", MOVE_FORMAT)]);
        let err = move_layout(&TraceFs::new(dir.path()), "sched_swap_numa").unwrap_err();
        assert!(err.contains("no dst_tgid field"), "{err}");
    }

    #[test]
    fn this_kernel_matches_the_built_in_layouts() {
        let tracefs = TraceFs::default();
        if !tracefs.root().join("events/sched/sched_swap_numa").exists() {
            crate::testing::skip(
                "families::numa::sources::tests::this_kernel_matches_the_built_in_layouts",
                "no sched_*_numa events in tracefs (a kernel without NUMA balancing)",
            );
            return;
        }
        assert_eq!(
            move_layout(&tracefs, "sched_move_numa"),
            Ok(NumaMoveLayout::MOVE)
        );
        assert_eq!(
            move_layout(&tracefs, "sched_swap_numa"),
            Ok(NumaMoveLayout::SWAP)
        );
        assert_eq!(
            move_layout(&tracefs, "sched_stick_numa"),
            Ok(NumaMoveLayout::STICK)
        );
    }
}
