//! A window's recommendations as a recording keeps them.
//!
//! Each recommendation carries its rule's title, diagnosis, change, expected effect and
//! references. A host under strain has the same few rules firing for most of its VMs: a window
//! of 100 VMs held 373 recommendations of 5 rules, and their texts were 230 KB of its 1.3 MB,
//! the same five texts written, scanned for secrets and compressed again every second.
//!
//! In a recording, a recommendation whose texts are those of the first recommendation of its
//! rule in the same window is written without them, naming that one by its place in the list
//! (`texts_of`); reading copies them from there.
//! Each window stays whole on its own (a flight ring drops its oldest segments and a dump may
//! start anywhere), and what is read back is what was recorded, whatever the reader's own rule
//! catalogue says. Outside recordings every recommendation carries its texts.

use std::{
    collections::HashSet,
    sync::{Mutex, OnceLock},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::SerializeSeq};

use super::{Change, Evidence, Recommendation, Severity, Source, Target};
use crate::model::{
    Untrusted,
    interned::{self, StaticText},
    recorded,
};

/// For `#[serde(serialize_with)]` on a window's recommendations.
pub fn write<S: Serializer>(list: &[Recommendation], serializer: S) -> Result<S::Ok, S::Error> {
    if !recorded::recording() {
        return list.serialize(serializer);
    }
    // The first recommendation of each rule in the window, in order of appearance: at most one
    // per rule of the catalogue, so a short list.
    let mut firsts: Vec<(usize, &Recommendation)> = Vec::new();
    let mut seq = serializer.serialize_seq(Some(list.len()))?;
    for (at, recommendation) in list.iter().enumerate() {
        match firsts
            .iter()
            .find(|(_, first)| first.id == recommendation.id)
        {
            Some(&(first_at, first)) if first.same_texts(recommendation) => {
                seq.serialize_element(&Brief::of(recommendation, first_at))?;
            }
            Some(_) => seq.serialize_element(recommendation)?,
            None => {
                firsts.push((at, recommendation));
                seq.serialize_element(recommendation)?;
            }
        }
    }
    seq.end()
}

/// For `#[serde(deserialize_with)]` on a window's recommendations: reads them whole or brief.
pub fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Recommendation>, D::Error> {
    let stored = Vec::<Stored>::deserialize(deserializer)?;
    let mut list: Vec<Recommendation> = Vec::with_capacity(stored.len());
    for mut item in stored {
        let texts = match (item.take_texts(), item.texts_of) {
            (Ok(Some(texts)), None) => texts,
            (Ok(None), Some(at)) => list
                .get(at)
                .filter(|earlier| earlier.id == item.id)
                .map(Texts::of)
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "recommendation {} takes its texts from item {at}, not an earlier one \
                         of its rule",
                        item.id
                    ))
                })?,
            _ => {
                return Err(D::Error::custom(format!(
                    "recommendation {} carries neither all its texts alone nor only where to \
                     take them from",
                    item.id
                )));
            }
        };
        list.push(Recommendation {
            id: item.id,
            title: texts.title,
            severity: item.severity,
            target: item.target,
            evidence: item.evidence,
            diagnosis: texts.diagnosis,
            change: texts.change,
            expected_effect: texts.expected_effect,
            source: texts.source,
            holding: item.holding,
        });
    }
    Ok(list)
}

impl Recommendation {
    fn same_texts(&self, other: &Self) -> bool {
        self.title == other.title
            && self.diagnosis == other.diagnosis
            && self.change == other.change
            && self.expected_effect == other.expected_effect
            && self.source == other.source
    }
}

/// A recommendation without its texts, as written.
#[derive(Serialize)]
struct Brief<'a> {
    id: &'a str,
    severity: Severity,
    target: &'a Target,
    evidence: &'a [Evidence],
    holding: bool,
    /// The place in the list of the recommendation whose texts this one has.
    texts_of: usize,
}

impl<'a> Brief<'a> {
    fn of(recommendation: &'a Recommendation, texts_of: usize) -> Self {
        Self {
            id: recommendation.id,
            severity: recommendation.severity,
            target: &recommendation.target,
            evidence: &recommendation.evidence,
            holding: recommendation.holding,
            texts_of,
        }
    }
}

/// A recommendation as read, whole or brief.
#[derive(Deserialize)]
struct Stored {
    #[serde(deserialize_with = "interned::text")]
    id: StaticText,
    severity: Severity,
    target: Target,
    #[serde(deserialize_with = "some_evidence")]
    evidence: Vec<Evidence>,
    holding: bool,
    texts_of: Option<usize>,
    #[serde(default, deserialize_with = "interned::optional_text")]
    title: Option<StaticText>,
    diagnosis: Option<Untrusted>,
    change: Option<Change>,
    expected_effect: Option<Untrusted>,
    #[serde(default, deserialize_with = "optional_sources")]
    source: Option<&'static [Source]>,
}

impl Stored {
    /// The texts when all are there, `None` when none is, an error otherwise.
    fn take_texts(&mut self) -> Result<Option<Texts>, ()> {
        match (
            self.title.take(),
            self.diagnosis.take(),
            self.change.take(),
            self.expected_effect.take(),
            self.source.take(),
        ) {
            (Some(title), Some(diagnosis), Some(change), Some(expected_effect), Some(source)) => {
                Ok(Some(Texts {
                    title,
                    diagnosis,
                    change,
                    expected_effect,
                    source,
                }))
            }
            (None, None, None, None, None) => Ok(None),
            _ => Err(()),
        }
    }
}

struct Texts {
    title: StaticText,
    diagnosis: Untrusted,
    change: Change,
    expected_effect: Untrusted,
    source: &'static [Source],
}

impl Texts {
    fn of(recommendation: &Recommendation) -> Self {
        Self {
            title: recommendation.title,
            diagnosis: recommendation.diagnosis.clone(),
            change: recommendation.change.clone(),
            expected_effect: recommendation.expected_effect.clone(),
            source: recommendation.source,
        }
    }
}

/// For `#[serde(deserialize_with)]` on a `&'static [Source]` field: each distinct list is
/// kept once, like the texts, and is bounded like them.
fn sources<'de, D: Deserializer<'de>>(d: D) -> Result<&'static [Source], D::Error> {
    static LISTS: OnceLock<Mutex<HashSet<&'static [Source]>>> = OnceLock::new();
    let list = Vec::<Source>::deserialize(d)?;
    let mut lists = LISTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(kept) = lists.get(list.as_slice()) {
        return Ok(kept);
    }
    if !interned::room_for(lists.len()) {
        return Ok(&[]);
    }
    let kept: &'static [Source] = Box::leak(list.into_boxed_slice());
    lists.insert(kept);
    Ok(kept)
}

/// A recording read back keeps the rule that a recommendation has evidence.
fn some_evidence<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Evidence>, D::Error> {
    let evidence = Vec::<Evidence>::deserialize(d)?;
    if evidence.is_empty() {
        return Err(D::Error::custom("a recommendation without evidence"));
    }
    Ok(evidence)
}

fn optional_sources<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<&'static [Source]>, D::Error> {
    sources(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::{
        super::{Comparison, RuleFamily, RuleInfo, StaticChange},
        *,
    };

    const STEAL: RuleInfo = RuleInfo {
        id: "T1",
        family: RuleFamily::Cpu,
        title: "vCPU threads wait",
        checks: "run-queue wait",
        diagnosis: "CPU contention.",
        change: StaticChange {
            libvirt: Some("<vcpupin vcpu='0' cpuset='N'/>"),
            qemu: None,
            host: Some("fewer VMs"),
        },
        effect: "Less steal.",
        sources: &[Source {
            title: "Linux kernel source",
            section: "arch/x86/kvm/x86.c",
        }],
    };

    const EXITS: RuleInfo = RuleInfo {
        id: "T2",
        family: RuleFamily::Exits,
        title: "Port I/O exits",
        checks: "exit rate",
        diagnosis: "Emulated devices.",
        change: StaticChange {
            libvirt: None,
            qemu: Some("-device virtio-blk-pci"),
            host: None,
        },
        effect: "Fewer exits.",
        sources: &[],
    };

    fn on(rule: &'static RuleInfo, pid: u32, value: f64) -> Recommendation {
        Recommendation::new(
            rule,
            Severity::Critical,
            Target::Vcpu {
                pid,
                index: 0,
                tid: Some(pid + 1),
            },
            Evidence::measured("wait share", value, Comparison::Above, 0.2, Some(1.0)),
        )
    }

    /// A window's recommendations with two rules, one of them specialised for one VM.
    fn window() -> Vec<Recommendation> {
        let mut held = on(&STEAL, 30, 0.3);
        held.set_holding(true);
        vec![
            on(&STEAL, 10, 0.9),
            on(&EXITS, 10, 5000.0),
            on(&STEAL, 20, 0.5).diagnosis("CPU contention from one noisy neighbour."),
            held,
            on(&EXITS, 20, 7000.0),
            on(&STEAL, 40, 0.4),
        ]
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Window {
        #[serde(serialize_with = "write", deserialize_with = "read")]
        recommendations: Vec<Recommendation>,
    }

    fn texts_written(json: &serde_json::Value) -> Vec<bool> {
        json["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item.get("title").is_some())
            .collect()
    }

    #[test]
    fn a_recording_writes_each_rules_texts_once_per_window_and_reads_them_back() {
        let window = Window {
            recommendations: window(),
        };
        let recorded = recorded::with_running_totals(|| serde_json::to_value(&window).unwrap());
        // The first of each rule, and the one whose diagnosis differs, carry their texts.
        assert_eq!(
            texts_written(&recorded),
            [true, true, true, false, false, false]
        );
        let brief = &recorded["recommendations"][3];
        for absent in ["diagnosis", "change", "expected_effect", "source"] {
            assert!(brief.get(absent).is_none(), "{absent} in {brief}");
        }
        assert_eq!(brief["holding"], true);
        assert_eq!(brief["texts_of"], 0);
        let back: Window = serde_json::from_value(recorded).unwrap();
        assert_eq!(back, window);
        assert_eq!(
            back.recommendations[5].diagnosis.exact(),
            "CPU contention.",
            "texts come from the first of the rule, not the latest"
        );

        // Outside a recording every recommendation is whole, and reads back as it was.
        let plain = serde_json::to_value(&window).unwrap();
        assert_eq!(texts_written(&plain), [true; 6]);
        assert_eq!(serde_json::from_value::<Window>(plain).unwrap(), window);
    }

    #[test]
    fn a_brief_recommendation_is_read_only_with_an_earlier_one_of_its_rule() {
        let window = Window {
            recommendations: window(),
        };
        let recorded = recorded::with_running_totals(|| serde_json::to_value(&window).unwrap());
        let refused = |edit: &dyn Fn(&mut Vec<serde_json::Value>)| {
            let mut json = recorded.clone();
            edit(json["recommendations"].as_array_mut().unwrap());
            serde_json::from_value::<Window>(json)
                .unwrap_err()
                .to_string()
        };
        // The first of its rule gone: the brief ones point at another rule's or past the end.
        let err = refused(&|list| {
            list.remove(0);
        });
        assert!(
            err.contains(
                "recommendation T1 takes its texts from item 0, not an earlier one of its rule"
            ),
            "{err}"
        );
        let err = refused(&|list| list[3]["texts_of"] = 9.into());
        assert!(err.contains("from item 9"), "{err}");
        let err = refused(&|list| list[3]["texts_of"] = 3.into());
        assert!(err.contains("from item 3"), "{err}");
        let err = refused(&|list| {
            list[0].as_object_mut().unwrap().remove("change");
        });
        assert!(
            err.contains(
                "recommendation T1 carries neither all its texts alone nor only where to take \
                 them from"
            ),
            "{err}"
        );
        let err = refused(&|list| list[0]["texts_of"] = 0.into());
        assert!(
            err.contains("recommendation T1 carries neither all its texts alone"),
            "{err}"
        );
    }
}
