//! `kvmtop snapshot --format json`.

use std::io::Write;

use crate::model::Snapshot;

pub fn write(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, snapshot)?;
    writeln!(out)?;
    Ok(())
}
