//! What the frames of a recording hold. The store keeps opaque, time-stamped frames; this is
//! the one place that knows their kinds and encodings, so the recorder and the readers cannot
//! disagree.
//!
//! | kind | payload | frame time |
//! |---|---|---|
//! | [`WINDOW`] | one [`Snapshot`] as JSON (the `kvmtop snapshot --format json` document) | end of the window |
//! | [`EVENT`] | one [`Event`] as JSON | end of the window it was found in, or when a mark was made |
//!
//! Every string is redacted ([`super::redact`]) before it is written, and every float but the
//! window's start time is written to seven significant digits. JSON keeps a recording
//! readable by any later kvmtop that knows the snapshot's `schema_version`, and by `jq` once
//! decompressed; the store compresses each frame.

use serde::{Serialize, de::DeserializeOwned};

use super::{events::Event, redact};
use crate::model::{SCHEMA_VERSION, Snapshot, Untrusted};

/// A window's snapshot.
pub const WINDOW: u16 = 1;
/// An event or a mark.
pub const EVENT: u16 = 2;

/// Why a frame's payload could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The parser's message quotes the payload (an unknown variant, a string of the wrong type),
    /// and a recording can come from anyone: it is kept as untrusted text and shown sanitized.
    #[error("not a kvmtop {what}: {reason}")]
    Json {
        what: &'static str,
        reason: Untrusted,
    },
    #[error("snapshot schema version {found}; this kvmtop reads version {SCHEMA_VERSION}")]
    Schema { found: u64 },
}

/// The payload of a [`WINDOW`] frame.
#[must_use]
pub fn encode_window(snapshot: &Snapshot) -> Vec<u8> {
    encode(snapshot)
}

/// The payload of a [`WINDOW`] frame, in `payload` (cleared first): a recorder keeps one buffer
/// for all its windows.
pub fn encode_window_into(snapshot: &Snapshot, payload: &mut Vec<u8>) {
    payload.clear();
    crate::model::recorded::with_running_totals(|| redact::to_json_into(snapshot, payload))
        .expect("the model serializes to JSON");
}

/// The payload of an [`EVENT`] frame.
#[must_use]
pub fn encode_event(event: &Event) -> Vec<u8> {
    encode(event)
}

fn encode(item: &impl Serialize) -> Vec<u8> {
    // The model serializes infallibly (no maps with non-string keys, no failing serializers).
    // Running totals go in too: a recorded window exports as the counters `/metrics` served.
    crate::model::recorded::with_running_totals(|| redact::to_json(item))
        .expect("the model serializes to JSON")
}

/// A [`WINDOW`] frame's snapshot.
pub fn decode_window(payload: &[u8]) -> Result<Snapshot, DecodeError> {
    // The version is checked first, so a newer recording says so instead of naming whichever
    // field changed.
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: u64,
    }
    let version: Version = decode(payload, "recorded window")?;
    if version.schema_version != u64::from(SCHEMA_VERSION) {
        return Err(DecodeError::Schema {
            found: version.schema_version,
        });
    }
    decode(payload, "recorded window")
}

/// An [`EVENT`] frame's event.
pub fn decode_event(payload: &[u8]) -> Result<Event, DecodeError> {
    decode(payload, "recorded event")
}

fn decode<T: DeserializeOwned>(payload: &[u8], what: &'static str) -> Result<T, DecodeError> {
    serde_json::from_slice(payload).map_err(|error| DecodeError::Json {
        what,
        reason: Untrusted::new(error.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::untrusted::is_unsafe;

    /// The parser quotes what it could not read; from a hostile recording that is an escape
    /// sequence (C1 controls start them too) or a bidirectional override, which must not reach the terminal `replay` and
    /// `report` print their skipped-frame messages to.
    #[test]
    fn what_a_payload_quotes_reaches_messages_sanitized() {
        // JSON refuses raw C0 controls in strings, but takes C1 controls and U+202E.
        let payload = "{\"event\":\"vm\u{85}[2J\u{202e}\"}".as_bytes();
        let message = decode_event(payload).unwrap_err().to_string();
        assert!(message.contains("unknown variant"), "{message}");
        assert!(!message.contains(is_unsafe), "{message:?}");
        let message = decode_window(b"{\"schema_version\":\"\xe2\x80\xae\"}")
            .unwrap_err()
            .to_string();
        assert!(!message.contains(is_unsafe), "{message:?}");
    }

    #[test]
    fn a_snapshot_reads_back_as_written() {
        // Written as the snapshot is, but for floats to seven digits (`redact`'s tests).
        let snapshot = crate::testing::fixture::snapshot();
        let payload = encode_window(&snapshot);
        let back = decode_window(&payload).unwrap();
        assert_eq!(
            crate::model::recorded::with_running_totals(|| serde_json::to_value(&back)).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&payload).unwrap()
        );
        let start = snapshot.window.start_unix_seconds;
        assert_eq!(back.window.start_unix_seconds.to_bits(), start.to_bits());
        assert_eq!(encode_window(&back), payload);
        // What the recording left for its reader to fill in (migration classes without a move,
        // what each exit latency measures, absent values, zero counts and empty lists) is back:
        // the window prints as `snapshot` prints it.
        let recorded = String::from_utf8_lossy(&payload);
        assert!(!recorded.contains("latency_meaning"));
        let printed = String::from_utf8(redact::to_json(&snapshot).unwrap()).unwrap();
        assert!(recorded.matches(":null").count() < printed.matches(":null").count());
        assert!(recorded.matches(":0,").count() < printed.matches(":0,").count());
        assert_eq!(
            String::from_utf8(redact::to_json(&back).unwrap()).unwrap(),
            printed
        );
    }

    #[test]
    fn secrets_never_reach_the_recording() {
        let mut snapshot = crate::testing::fixture::snapshot();
        snapshot.vms[0].name = Untrusted::new("db https://u:hunter2@h/x");
        let payload = String::from_utf8(encode_window(&snapshot)).unwrap();
        assert!(!payload.contains("hunter2"), "{payload}");
        let event = Event::Mark {
            text: Untrusted::new("rotated password=hunter2"),
        };
        let payload = String::from_utf8(encode_event(&event)).unwrap();
        assert!(!payload.contains("hunter2"), "{payload}");
    }

    #[test]
    fn other_versions_and_other_documents_are_refused_with_a_reason() {
        let err = decode_window(br#"{"schema_version": 999}"#).unwrap_err();
        assert!(err.to_string().contains("version 999"), "{err}");
        let err = decode_window(b"\x00garbage").unwrap_err();
        assert!(
            err.to_string().contains("not a kvmtop recorded window"),
            "{err}"
        );
        assert!(decode_event(br#"{"event": "unheard_of"}"#).is_err());
    }
}
