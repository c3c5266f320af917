//! Running totals (counts since kvmtop began counting a VM, for Prometheus counters) stay out of
//! the snapshot JSON that `snapshot --format json` prints and its schema describes: one snapshot's
//! reader has no use for them. A recording keeps them, so a recorded window exports as exactly
//! the counters `/metrics` served at that moment.
//!
//! Such fields carry `#[serde(default, skip_serializing_if = "recorded::not_recording")]` and
//! `#[schemars(skip)]`; they are written only inside [`with_running_totals`], and read back when
//! present (a recording without them reads them as zero).
//!
//! A recording also leaves out what a window would otherwise repeat: a recommendation whose
//! texts are those of an earlier recommendation of its rule in the same window is written
//! without them (see `advice::recorded`); a field its reader derives from the others is left out
//! ([`derived`]); and the migration classes no thread moved through, most of them in most windows
//! (five per vCPU, class and VM, twice with the running totals: about a seventh of the JSON of a
//! window of 96 idle VMs), are left for the reader to fill in at 0. So are the absent values
//! ([`absent`]) and the zero counts and empty lists ([`unset`]) of the figures most windows
//! leave at that: a switch count of a thread that never blocked, the latency of a source this
//! host does not fire, a vCPU's NUMA preference on a host with one node.

use std::{cell::Cell, collections::BTreeMap};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sched::MIGRATION_CLASSES;

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `serialize` with running totals included in what it serializes on this thread.
pub fn with_running_totals<T>(serialize: impl FnOnce() -> T) -> T {
    /// Restores the flag however `serialize` ends, a panic included.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RECORDING.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(RECORDING.with(|flag| flag.replace(true)));
    serialize()
}

/// Whether a running total is left out: everywhere but inside [`with_running_totals`].
#[must_use]
pub fn not_recording<T>(_total: &T) -> bool {
    !recording()
}

/// Whether a field its reader derives from the others is left out: inside
/// [`with_running_totals`] only (what an exit's latency measures follows from its source).
#[must_use]
pub fn derived<T>(_field: &T) -> bool {
    recording()
}

/// Whether an absent value is left out: inside [`with_running_totals`] only. A missing
/// `Option` field reads back as `None`.
#[must_use]
pub fn absent<T>(value: &Option<T>) -> bool {
    value.is_none() && recording()
}

/// Whether a zero or empty value is left out: inside [`with_running_totals`] only. Such fields
/// carry `#[serde(default)]`, so a missing one reads back as its default; the schema, which
/// describes snapshots, keeps them required (`#[schemars(!default, !skip_serializing_if)]`).
#[must_use]
pub fn unset<T: Default + PartialEq>(value: &T) -> bool {
    recording() && *value == T::default()
}

/// Whether an empty list is left out: as [`unset`], for lists of what cannot be compared.
#[must_use]
pub fn empty<T>(list: &[T]) -> bool {
    list.is_empty() && recording()
}

/// Whether what is being serialized on this thread goes into a recording.
#[must_use]
pub fn recording() -> bool {
    RECORDING.with(Cell::get)
}

/// Writes migrations by class: every class, but in a recording only those with a move.
pub fn write_moved_classes<S, V>(
    by_class: &BTreeMap<&'static str, V>,
    serializer: S,
) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    V: Serialize + Default + PartialEq,
{
    if !recording() {
        return by_class.serialize(serializer);
    }
    let none = V::default();
    serializer.collect_map(by_class.iter().filter(|(_, moves)| **moves != none))
}

/// Reads migrations by class, each class left out (by a recording) at 0.
pub fn read_classes<'de, D, V>(deserializer: D) -> Result<BTreeMap<&'static str, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de> + Default,
{
    let mut by_class = super::interned::text_keys(deserializer)?;
    for class in MIGRATION_CLASSES {
        by_class.entry(class).or_default();
    }
    Ok(by_class)
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Figures {
        count: u64,
        #[serde(skip_serializing_if = "not_recording")]
        cumulative: u64,
    }

    #[test]
    fn totals_are_written_only_when_recording() {
        let figures = Figures {
            count: 3,
            cumulative: 40,
        };
        let plain = serde_json::to_string(&figures).unwrap();
        assert_eq!(plain, r#"{"count":3}"#);
        let recorded = with_running_totals(|| serde_json::to_string(&figures).unwrap());
        assert_eq!(recorded, r#"{"count":3,"cumulative":40}"#);
        assert_eq!(serde_json::to_string(&figures).unwrap(), plain);
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Sparse {
        #[serde(skip_serializing_if = "absent")]
        latency: Option<u64>,
        #[serde(default, skip_serializing_if = "unset")]
        count: u64,
        #[serde(default, skip_serializing_if = "unset")]
        rate: f64,
        #[serde(default, skip_serializing_if = "empty")]
        buckets: Vec<u64>,
    }

    #[test]
    fn absent_zero_and_empty_values_are_left_out_of_recordings_and_read_back_as_such() {
        let idle = Sparse {
            latency: None,
            count: 0,
            rate: 0.0,
            buckets: Vec::new(),
        };
        let plain = serde_json::to_string(&idle).unwrap();
        assert_eq!(
            plain,
            r#"{"latency":null,"count":0,"rate":0.0,"buckets":[]}"#
        );
        let recorded = with_running_totals(|| serde_json::to_string(&idle).unwrap());
        assert_eq!(recorded, "{}");
        assert_eq!(serde_json::from_str::<Sparse>(&recorded).unwrap(), idle);
        // What is set is written, a latency of 0 included (known, unlike an absent one).
        let busy = Sparse {
            latency: Some(0),
            count: 4,
            rate: 0.5,
            buckets: vec![1],
        };
        let recorded = with_running_totals(|| serde_json::to_string(&busy).unwrap());
        assert_eq!(
            recorded,
            r#"{"latency":0,"count":4,"rate":0.5,"buckets":[1]}"#
        );
        assert_eq!(serde_json::from_str::<Sparse>(&recorded).unwrap(), busy);
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Moves {
        #[serde(
            serialize_with = "write_moved_classes",
            deserialize_with = "read_classes"
        )]
        by_class: BTreeMap<&'static str, u64>,
    }

    #[test]
    fn classes_without_a_move_are_left_out_of_recordings_and_read_back_at_zero() {
        let mut by_class: BTreeMap<&'static str, u64> =
            MIGRATION_CLASSES.iter().map(|class| (*class, 0)).collect();
        by_class.insert("cross_llc", 3);
        let moves = Moves { by_class };
        let plain = serde_json::to_string(&moves).unwrap();
        assert_eq!(plain.matches(":0").count(), 4, "{plain}");
        let recorded = with_running_totals(|| serde_json::to_string(&moves).unwrap());
        assert_eq!(recorded, r#"{"by_class":{"cross_llc":3}}"#);
        assert_eq!(serde_json::from_str::<Moves>(&recorded).unwrap(), moves);
        assert_eq!(serde_json::from_str::<Moves>(&plain).unwrap(), moves);
        // A recording of a window without any move: every class at 0.
        let none = serde_json::from_str::<Moves>(r#"{"by_class":{}}"#).unwrap();
        assert_eq!(none.by_class.len(), MIGRATION_CLASSES.len());
        assert!(none.by_class.values().all(|moves| *moves == 0));
    }
}
