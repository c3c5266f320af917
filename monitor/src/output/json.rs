//! `kvmtop snapshot --format json`, and its JSON Schema, generated from the model types.

use std::io::Write;

use crate::model::{SCHEMA_VERSION, Snapshot};

pub fn write(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, snapshot)?;
    writeln!(out)?;
    Ok(())
}

/// The JSON Schema of the snapshot: the model types' own, with their doc comments as
/// descriptions. `monitor/schema/snapshot.schema.json` is this, and a test keeps it so.
#[must_use]
pub fn schema() -> serde_json::Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(Snapshot)).expect("a schema is plain JSON");
    if let Some(root) = schema.as_object_mut() {
        root.insert(
            "$id".into(),
            format!("https://kvmtop.invalid/schema/snapshot/{SCHEMA_VERSION}").into(),
        );
        root.insert("title".into(), "kvmtop snapshot".into());
    }
    schema
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::Value;

    use crate::testing::fixture;

    const COMMITTED: &str = "schema/snapshot.schema.json";

    /// Set to regenerate the committed schema instead of comparing with it.
    const UPDATE: &str = "KVMTOP_UPDATE_SCHEMA";

    #[test]
    fn the_committed_schema_is_the_one_the_model_generates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
        let generated = serde_json::to_string_pretty(&super::schema()).unwrap() + "\n";
        if std::env::var_os(UPDATE).is_some() {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{COMMITTED} differs from the model's schema: run \
             `{UPDATE}=1 cargo test -p monitor --lib output::json` and commit the result"
        );
    }

    #[test]
    fn the_fixture_snapshot_matches_the_schema() {
        let validator = jsonschema::validator_for(&super::schema()).expect("schema compiles");
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
