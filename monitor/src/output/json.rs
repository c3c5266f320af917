//! `kvmtop snapshot --format json`.

use std::io::Write;

use crate::model::Snapshot;

pub fn write(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, snapshot)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::model::fixture;

    #[test]
    fn the_fixture_snapshot_matches_the_published_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../schema/snapshot.schema.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        let mut out = Vec::new();
        super::write(&mut out, &fixture::snapshot()).unwrap();
        let snapshot: Value = serde_json::from_slice(&out).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&snapshot)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(
            snapshot["vms"][0]["exits"]["by_reason"][0]["latency"]["p99_ns"],
            60_000
        );
    }
}
