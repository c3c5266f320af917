//! `kvmtop snapshot --format json`, and its JSON Schema, generated from the model types.

use std::io::Write;

use crate::model::{SCHEMA_VERSION, Snapshot, untrusted::json_terminal_safe as terminal_safe};

/// Writes the snapshot as pretty JSON that is safe to show in a terminal: see
/// [`json_terminal_safe`](crate::model::untrusted::json_terminal_safe).
pub fn write(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(snapshot)?;
    writeln!(out, "{}", terminal_safe(&json))?;
    Ok(())
}

/// Writes `snapshot` as one line of JSON (JSON Lines: one document per line, for `jq` and
/// log pipelines), as safe for a terminal as [`write`].
pub fn write_line(out: &mut impl Write, snapshot: &Snapshot) -> anyhow::Result<()> {
    let json = serde_json::to_string(snapshot)?;
    writeln!(out, "{}", terminal_safe(&json))?;
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
    use std::borrow::Cow;

    use serde_json::Value;

    use super::terminal_safe;
    use crate::{
        model::{
            Untrusted,
            untrusted::{HOSTILE_NAME, is_unsafe},
        },
        testing::fixture,
    };

    const COMMITTED: &str = "schema/snapshot.schema.json";

    /// Set to regenerate the committed schema instead of comparing with it.
    const UPDATE: &str = "KVMTOP_UPDATE_SCHEMA";

    #[test]
    fn names_are_exact_yet_nothing_in_the_json_can_act_on_a_terminal() {
        let mut snapshot = fixture::snapshot();
        snapshot.vms[0].name = Untrusted::new(HOSTILE_NAME);
        let mut out = Vec::new();
        super::write(&mut out, &snapshot).unwrap();
        let json = String::from_utf8(out).unwrap();
        let acting: Vec<char> = json
            .chars()
            .filter(|c| *c != '\n' && is_unsafe(*c))
            .collect();
        assert!(acting.is_empty(), "{acting:?} in {json}");
        for escape in ["\\u001b", "\\u202e", "\\u200b", "\\u009b"] {
            assert!(json.contains(escape), "{escape} missing");
        }
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["vms"][0]["name"], HOSTILE_NAME);
    }

    #[test]
    fn characters_beyond_the_basic_plane_are_escaped_as_surrogate_pairs() {
        let json = serde_json::to_string("tag\u{E0041}end").unwrap();
        let safe = terminal_safe(&json);
        assert_eq!(safe, "\"tag\\udb40\\udc41end\"");
        assert_eq!(
            serde_json::from_str::<String>(&safe).unwrap(),
            "tag\u{E0041}end"
        );
        // Nothing to escape: the text is not copied.
        assert!(matches!(
            terminal_safe("{\n  \"a\": \"日本\"\n}"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn the_committed_schema_is_the_one_the_model_generates() {
        let generated = serde_json::to_string_pretty(&super::schema()).unwrap() + "\n";
        let regenerate = format!("{UPDATE}=1 cargo test -p monitor --lib output::json");
        crate::testing::assert_committed(COMMITTED, &generated, UPDATE, &regenerate);
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
