//! The block family's hook table: which tracepoint attributes requests to VMs on this kernel,
//! the programs on the block tracepoints, and the record layouts they need.

use monitor_common::{
    FIELD_ABSENT,
    block::{
        BlockRqLayout, GLOBAL_BLOCK_IO_START_LAYOUT, GLOBAL_BLOCK_REQUEST_FIELDS,
        GLOBAL_BLOCK_RQ_COMPLETE_LAYOUT, GLOBAL_BLOCK_RQ_INSERT_LAYOUT,
        GLOBAL_BLOCK_RQ_ISSUE_LAYOUT, GLOBAL_BLOCK_SUBMIT_MODE, PROG_BLOCK_IO_START,
        PROG_BLOCK_IO_START_BTF, PROG_BLOCK_IO_START_RAW, PROG_BLOCK_RQ_COMPLETE,
        PROG_BLOCK_RQ_COMPLETE_BTF, PROG_BLOCK_RQ_COMPLETE_RAW, PROG_BLOCK_RQ_INSERT,
        PROG_BLOCK_RQ_INSERT_BTF, PROG_BLOCK_RQ_INSERT_RAW, PROG_BLOCK_RQ_ISSUE,
        PROG_BLOCK_RQ_ISSUE_BTF, PROG_BLOCK_RQ_ISSUE_RAW, RequestFields, SubmitMode,
    },
};

use crate::{
    bpf::hooks::{Attempt, Global, SourceSpec, every_kind, raw_needs},
    family::HostView,
    host::{
        btf::KernelBtf,
        tracefs::{Field, TraceFs, sized},
    },
};

/// `block:block_io_start`: a request created, in the submitter's context (Linux 6.5+).
pub const IO_START: &str = "block_io_start";
/// `block:block_rq_insert`: stands in for `block_io_start` on older kernels.
pub const RQ_INSERT: &str = "block_rq_insert";
/// `block:block_rq_issue`: a request handed to the driver.
pub const RQ_ISSUE: &str = "block_rq_issue";
/// `block:block_rq_complete`: a request completed.
pub const RQ_COMPLETE: &str = "block_rq_complete";

/// Where requests are attributed to their VM on this kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Submission {
    /// At `block_io_start`, for every request.
    #[default]
    IoStart,
    /// At `block_rq_insert` or `block_rq_issue` when one runs in a VMM thread (kernels before
    /// 6.5): requests the block layer dispatches from a kworker are missed.
    InsertOrIssue,
}

impl Submission {
    /// Where this kernel lets requests be attributed: at `block_io_start` when it exists.
    #[must_use]
    pub fn on(tracefs: &TraceFs) -> Self {
        match rq_layout(tracefs, IO_START, true) {
            Ok(_) => Self::IoStart,
            Err(why) => {
                log::info!("block requests are attributed at insert/issue: {why}");
                Self::InsertOrIssue
            }
        }
    }

    /// The tracepoint(s), as shown in snapshots.
    #[must_use]
    pub fn tracepoints(self) -> &'static str {
        match self {
            Self::IoStart => "block:block_io_start",
            Self::InsertOrIssue => "block:block_rq_insert, block:block_rq_issue",
        }
    }

    /// The submission mode handed to the programs.
    #[must_use]
    pub fn global(self) -> Global {
        let mode = match self {
            Self::IoStart => SubmitMode::IoStart,
            Self::InsertOrIssue => SubmitMode::InsertOrIssue,
        } as u32;
        Global::new(GLOBAL_BLOCK_SUBMIT_MODE, &mode)
    }
}

/// Every source this kernel calls for, with its layout (or why not), in attaching order.
fn layouts(tracefs: &TraceFs) -> Vec<(&'static str, Result<BlockRqLayout, String>)> {
    let submit = match Submission::on(tracefs) {
        Submission::IoStart => IO_START,
        Submission::InsertOrIssue => RQ_INSERT,
    };
    vec![
        (submit, rq_layout(tracefs, submit, true)),
        (RQ_ISSUE, rq_layout(tracefs, RQ_ISSUE, false)),
        (
            RQ_COMPLETE,
            rq_layout(tracefs, RQ_COMPLETE, false).map(|l| BlockRqLayout {
                bytes_offset: FIELD_ABSENT,
                rwbs_offset: FIELD_ABSENT,
                ..l
            }),
        ),
    ]
}

/// The hook table: each source on its raw arguments (BTF, then raw tracepoint) when this
/// kernel's BTF gives the request's fields, else on the classic tracepoint.
#[must_use]
pub fn table(host: &HostView) -> Vec<SourceSpec> {
    let fields = request_fields(&host.btf);
    layouts(&host.tracefs)
        .into_iter()
        .map(|(name, layout)| {
            let (classic, raw, global, args) = match name {
                IO_START => (
                    PROG_BLOCK_IO_START,
                    (PROG_BLOCK_IO_START_BTF, PROG_BLOCK_IO_START_RAW),
                    GLOBAL_BLOCK_IO_START_LAYOUT,
                    1,
                ),
                RQ_INSERT => (
                    PROG_BLOCK_RQ_INSERT,
                    (PROG_BLOCK_RQ_INSERT_BTF, PROG_BLOCK_RQ_INSERT_RAW),
                    GLOBAL_BLOCK_RQ_INSERT_LAYOUT,
                    1,
                ),
                RQ_ISSUE => (
                    PROG_BLOCK_RQ_ISSUE,
                    (PROG_BLOCK_RQ_ISSUE_BTF, PROG_BLOCK_RQ_ISSUE_RAW),
                    GLOBAL_BLOCK_RQ_ISSUE_LAYOUT,
                    1,
                ),
                _ => (
                    PROG_BLOCK_RQ_COMPLETE,
                    (PROG_BLOCK_RQ_COMPLETE_BTF, PROG_BLOCK_RQ_COMPLETE_RAW),
                    GLOBAL_BLOCK_RQ_COMPLETE_LAYOUT,
                    3,
                ),
            };
            let needs = layout.map(|l| vec![Global::new(global, &l)]);
            // The raw programs read the request first: the queue came first before Linux 5.11.
            let raw_needs =
                raw_needs(&host.btf, name, args, GLOBAL_BLOCK_REQUEST_FIELDS, &fields);
            let classic = Attempt::tracepoint("block", name, classic, needs);
            SourceSpec::new(name, every_kind(&host.btf, name, raw, raw_needs, classic))
        })
        .collect()
}

/// Where this kernel keeps a request's device, size and operation, from its BTF.
fn request_fields(btf: &Result<KernelBtf, String>) -> Result<RequestFields, String> {
    let btf = btf.as_ref().map_err(Clone::clone)?;
    Ok(RequestFields {
        q: btf.offset("request", "q", 8)?,
        data_len: btf.offset("request", "__data_len", 4)?,
        cmd_flags: btf.offset("request", "cmd_flags", 4)?,
        disk: btf.offset("request_queue", "disk", 8)?,
        major: btf.offset("gendisk", "major", 4)?,
        first_minor: btf.offset("gendisk", "first_minor", 4)?,
        op_read: btf.enum_value("REQ_OP_READ")?,
        op_write: btf.enum_value("REQ_OP_WRITE")?,
        op_flush: btf.enum_value("REQ_OP_FLUSH")?,
        op_discard: btf.enum_value("REQ_OP_DISCARD")?,
        op_secure_erase: btf.enum_value("REQ_OP_SECURE_ERASE")?,
    })
}

/// A `block_rq`-class record: `dev` and `sector` required; `rwbs` required where the program
/// classifies the request (`needs_op`); `bytes` optional.
fn rq_layout(tracefs: &TraceFs, name: &str, needs_op: bool) -> Result<BlockRqLayout, String> {
    let event = format!("block:{name}");
    let event = event.as_str();
    let [dev, sector, bytes, rwbs] = tracefs
        .fields("block", name, ["dev", "sector", "bytes", "rwbs"])
        .map_err(|e| e.to_string())?;
    let dev = sized(dev, event, "dev", 4)?;
    let sector = sized(sector, event, "sector", 8)?;
    let bytes = bytes.filter(|f| f.size == 4);
    let rwbs = match rwbs {
        Some(f) if f.size >= 2 => Some(f),
        _ if needs_op => return Err(format!("{event} has no usable rwbs field on this kernel")),
        _ => None,
    };
    let offset = |f: Option<Field>| f.map_or(FIELD_ABSENT, |f| f.offset);
    Ok(BlockRqLayout {
        dev_offset: dev.offset,
        sector_offset: sector.offset,
        bytes_offset: offset(bytes),
        rwbs_offset: offset(rwbs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_RQ: &str = "\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:unsigned int bytes;\toffset:28;\tsize:4;\tsigned:0;
\tfield:unsigned short ioprio;\toffset:32;\tsize:2;\tsigned:0;
\tfield:char rwbs[10];\toffset:34;\tsize:10;\tsigned:0;
";
    const COMPLETE: &str = "\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int error;\toffset:28;\tsize:4;\tsigned:1;
\tfield:char rwbs[10];\toffset:34;\tsize:10;\tsigned:0;
";

    fn fixture(events: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (event, format) in events {
            let path = dir.path().join("events/block").join(event);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("format"), format).unwrap();
        }
        dir
    }

    #[test]
    fn block_io_start_is_preferred_and_matches_the_built_in_layout() {
        let dir = fixture(&[
            ("block_io_start", BLOCK_RQ),
            ("block_rq_insert", BLOCK_RQ),
            ("block_rq_issue", BLOCK_RQ),
            ("block_rq_complete", COMPLETE),
        ]);
        let tracefs = TraceFs::new(dir.path());
        assert_eq!(Submission::on(&tracefs), Submission::IoStart);
        let table = layouts(&tracefs);
        let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, [IO_START, RQ_ISSUE, RQ_COMPLETE]);
        assert_eq!(table[0].1, Ok(BlockRqLayout::DEFAULT));
        assert_eq!(table[2].1, Ok(BlockRqLayout::COMPLETE_DEFAULT));
    }

    #[test]
    fn older_kernels_attribute_at_insert_and_issue() {
        let dir = fixture(&[
            ("block_rq_insert", BLOCK_RQ),
            ("block_rq_issue", BLOCK_RQ),
            ("block_rq_complete", COMPLETE),
        ]);
        let tracefs = TraceFs::new(dir.path());
        assert_eq!(Submission::on(&tracefs), Submission::InsertOrIssue);
        assert_eq!(layouts(&tracefs)[0].0, RQ_INSERT);
    }

    #[test]
    fn a_missing_completion_names_itself() {
        let dir = fixture(&[("block_io_start", BLOCK_RQ), ("block_rq_issue", BLOCK_RQ)]);
        let table = layouts(&TraceFs::new(dir.path()));
        let err = table[2].1.as_ref().unwrap_err();
        assert!(
            err.contains("block:block_rq_complete does not exist"),
            "{err}"
        );
    }

    #[test]
    fn this_kernel_matches_the_built_in_layouts() {
        let tracefs = TraceFs::default();
        if !tracefs.root().join("events/block/block_io_start").exists() {
            crate::testing::skip(
                "families::block::sources::tests::this_kernel_matches_the_built_in_layouts",
                "no block_io_start in tracefs",
            );
            return;
        }
        let table = layouts(&tracefs);
        assert_eq!(table[0].1, Ok(BlockRqLayout::DEFAULT));
        assert_eq!(table[1].1, Ok(BlockRqLayout::DEFAULT));
        assert_eq!(table[2].1, Ok(BlockRqLayout::COMPLETE_DEFAULT));
    }
}
