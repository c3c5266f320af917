//! The kernel sources of block figures: which tracepoint attributes requests on this kernel,
//! their record layouts read from tracefs, and attaching them one by one so a missing tracepoint
//! costs only what needs it.

use std::collections::BTreeMap;

use monitor_common::{
    FIELD_ABSENT,
    block::{
        BlockRqLayout, GLOBAL_BLOCK_COMPLETE_LAYOUT, GLOBAL_BLOCK_INSERT_LAYOUT,
        GLOBAL_BLOCK_ISSUE_LAYOUT, GLOBAL_BLOCK_START_LAYOUT, GLOBAL_BLOCK_SUBMIT_MODE,
        PROG_BLOCK_IO_START, PROG_BLOCK_RQ_COMPLETE, PROG_BLOCK_RQ_INSERT, PROG_BLOCK_RQ_ISSUE,
        SubmitMode,
    },
};
use serde::Serialize;

use crate::{
    bpf::Kernel,
    host::tracefs::{Field, TraceFs},
    model::Attachment,
    signals::tlb::sized,
};

/// One kernel source of block figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockProbe {
    /// `block:block_io_start`: a request created, in the submitter's context (Linux 6.5+).
    IoStart,
    /// `block:block_rq_insert`: stands in for `block_io_start` on older kernels.
    RqInsert,
    /// `block:block_rq_issue`: a request handed to the driver.
    RqIssue,
    /// `block:block_rq_complete`: a request completed.
    RqComplete,
}

impl BlockProbe {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::IoStart => "block_io_start",
            Self::RqInsert => "block_rq_insert",
            Self::RqIssue => "block_rq_issue",
            Self::RqComplete => "block_rq_complete",
        }
    }

    /// `system:event`.
    #[must_use]
    pub fn tracepoint(self) -> &'static str {
        match self {
            Self::IoStart => "block:block_io_start",
            Self::RqInsert => "block:block_rq_insert",
            Self::RqIssue => "block:block_rq_issue",
            Self::RqComplete => "block:block_rq_complete",
        }
    }

    /// The kernel program, as `bpftool prog show` names it.
    #[must_use]
    pub fn program(self) -> &'static str {
        match self {
            Self::IoStart => PROG_BLOCK_IO_START,
            Self::RqInsert => PROG_BLOCK_RQ_INSERT,
            Self::RqIssue => PROG_BLOCK_RQ_ISSUE,
            Self::RqComplete => PROG_BLOCK_RQ_COMPLETE,
        }
    }

    fn global(self) -> &'static str {
        match self {
            Self::IoStart => GLOBAL_BLOCK_START_LAYOUT,
            Self::RqInsert => GLOBAL_BLOCK_INSERT_LAYOUT,
            Self::RqIssue => GLOBAL_BLOCK_ISSUE_LAYOUT,
            Self::RqComplete => GLOBAL_BLOCK_COMPLETE_LAYOUT,
        }
    }
}

/// Where requests are attributed to their VM on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submission {
    /// At `block_io_start`, for every request.
    IoStart,
    /// At `block_rq_insert` or `block_rq_issue` when one runs in a VMM thread (kernels before
    /// 6.5): requests the block layer dispatches from a kworker are missed.
    InsertOrIssue,
}

impl Submission {
    /// The tracepoint(s), as shown in snapshots.
    #[must_use]
    pub fn tracepoints(self) -> &'static str {
        match self {
            Self::IoStart => "block:block_io_start",
            Self::InsertOrIssue => "block:block_rq_insert, block:block_rq_issue",
        }
    }
}

/// What the block programs need from this kernel, decided before loading.
pub struct BlockPlan {
    submission: Submission,
    /// The sources to attach, with their layouts (or why not).
    layouts: Vec<(BlockProbe, Result<BlockRqLayout, String>)>,
    mode: u32,
}

impl BlockPlan {
    #[must_use]
    pub fn read(tracefs: &TraceFs) -> Self {
        let start = rq_layout(tracefs, BlockProbe::IoStart, true);
        let (submission, mut layouts) = match start {
            Ok(layout) => (Submission::IoStart, vec![(BlockProbe::IoStart, Ok(layout))]),
            Err(why) => {
                log::info!("block requests are attributed at insert/issue: {why}");
                let insert = rq_layout(tracefs, BlockProbe::RqInsert, true);
                (
                    Submission::InsertOrIssue,
                    vec![(BlockProbe::RqInsert, insert)],
                )
            }
        };
        layouts.push((
            BlockProbe::RqIssue,
            rq_layout(tracefs, BlockProbe::RqIssue, false),
        ));
        layouts.push((
            BlockProbe::RqComplete,
            rq_layout(tracefs, BlockProbe::RqComplete, false).map(|l| BlockRqLayout {
                bytes_offset: FIELD_ABSENT,
                rwbs_offset: FIELD_ABSENT,
                ..l
            }),
        ));
        let mode = match submission {
            Submission::IoStart => SubmitMode::IoStart,
            Submission::InsertOrIssue => SubmitMode::InsertOrIssue,
        } as u32;
        Self {
            submission,
            layouts,
            mode,
        }
    }

    #[must_use]
    pub fn submission(&self) -> Submission {
        self.submission
    }

    /// Hands the record layouts and the submission mode to the programs.
    pub fn configure<'a>(&'a self, loader: &mut aya::EbpfLoader<'a>) {
        for (probe, layout) in &self.layouts {
            if let Ok(layout) = layout {
                loader.override_global(probe.global(), layout, true);
            }
        }
        loader.override_global(GLOBAL_BLOCK_SUBMIT_MODE, &self.mode, true);
    }

    /// Attaches every program whose layout is known, and says for each source whether it runs.
    pub(super) fn attach(&self, kernel: &mut Kernel) -> BTreeMap<BlockProbe, Attachment> {
        self.layouts
            .iter()
            .map(|(probe, layout)| {
                let (system, event) = probe.tracepoint().split_once(':').expect("system:event");
                let attached = layout
                    .as_ref()
                    .map(drop)
                    .map_err(Clone::clone)
                    .and_then(|()| kernel.attach_tracepoint(probe.program(), system, event));
                let state = match attached {
                    Ok(()) => Attachment::Attached,
                    Err(why) => {
                        log::warn!("block source {}: unavailable: {why}", probe.name());
                        Attachment::Unavailable(why)
                    }
                };
                (*probe, state)
            })
            .collect()
    }
}

/// A `block_rq`-class record: `dev` and `sector` required; `rwbs` required where the program
/// classifies the request (`needs_op`); `bytes` optional.
fn rq_layout(
    tracefs: &TraceFs,
    probe: BlockProbe,
    needs_op: bool,
) -> Result<BlockRqLayout, String> {
    let event = probe.tracepoint();
    let [dev, sector, bytes, rwbs] = tracefs
        .fields("block", probe.name(), ["dev", "sector", "bytes", "rwbs"])
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
        let plan = BlockPlan::read(&TraceFs::new(dir.path()));
        assert_eq!(plan.submission(), Submission::IoStart);
        let probes: Vec<BlockProbe> = plan.layouts.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            probes,
            [
                BlockProbe::IoStart,
                BlockProbe::RqIssue,
                BlockProbe::RqComplete
            ]
        );
        assert_eq!(plan.layouts[0].1, Ok(BlockRqLayout::DEFAULT));
        assert_eq!(plan.layouts[2].1, Ok(BlockRqLayout::COMPLETE_DEFAULT));
    }

    #[test]
    fn older_kernels_attribute_at_insert_and_issue() {
        let dir = fixture(&[
            ("block_rq_insert", BLOCK_RQ),
            ("block_rq_issue", BLOCK_RQ),
            ("block_rq_complete", COMPLETE),
        ]);
        let plan = BlockPlan::read(&TraceFs::new(dir.path()));
        assert_eq!(plan.submission(), Submission::InsertOrIssue);
        assert_eq!(plan.mode, SubmitMode::InsertOrIssue as u32);
        assert_eq!(plan.layouts[0].0, BlockProbe::RqInsert);
    }

    #[test]
    fn a_missing_completion_names_itself() {
        let dir = fixture(&[("block_io_start", BLOCK_RQ), ("block_rq_issue", BLOCK_RQ)]);
        let plan = BlockPlan::read(&TraceFs::new(dir.path()));
        let err = plan.layouts[2].1.as_ref().unwrap_err();
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
                "signals::block::probes::tests::this_kernel_matches_the_built_in_layouts",
                "no block_io_start in tracefs",
            );
            return;
        }
        let plan = BlockPlan::read(&tracefs);
        assert_eq!(plan.layouts[0].1, Ok(BlockRqLayout::DEFAULT));
        assert_eq!(plan.layouts[1].1, Ok(BlockRqLayout::DEFAULT));
        assert_eq!(plan.layouts[2].1, Ok(BlockRqLayout::COMPLETE_DEFAULT));
    }
}
