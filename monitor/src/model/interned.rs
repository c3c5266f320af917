//! Reading back the model's `&'static str` fields (rule ids, titles, operation names, …) from
//! a recording. Those fields name things from a small fixed set, so each distinct text is
//! allocated once for the life of the process and shared by every snapshot read afterwards.
//! A recording is input from disk: past [`MAX_TEXTS`] distinct texts, further ones read as
//! [`TOO_MANY`] instead of growing memory without bound. They are shown as they are (a rule id
//! in a report, an operation name in a table), so what a recording holds is kept
//! [sanitized](super::untrusted::sanitize): nothing read back can act on a terminal.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Mutex, OnceLock},
};

use serde::{Deserialize, Deserializer};

/// A model field naming something from a fixed set. Spelled `&'static str`, serde's derive
/// would borrow it from the input (impossible for a `'static` field); behind this alias the
/// field is read with [`text`].
pub type StaticText = &'static str;

/// Distinct texts kept at most.
pub const MAX_TEXTS: usize = 4096;

/// What a text reads as once [`MAX_TEXTS`] are kept.
pub const TOO_MANY: &str = "(too many distinct texts in the recording)";

fn texts() -> &'static Mutex<HashSet<&'static str>> {
    static TEXTS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    TEXTS.get_or_init(Mutex::default)
}

/// The one `'static` copy of `text`, sanitized.
#[must_use]
pub fn intern(text: &str) -> &'static str {
    let text = &*super::untrusted::sanitize(text);
    let mut texts = texts()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(kept) = texts.get(text) {
        return kept;
    }
    if texts.len() >= MAX_TEXTS {
        return TOO_MANY;
    }
    let kept: &'static str = Box::leak(text.to_owned().into_boxed_str());
    texts.insert(kept);
    kept
}

/// For `#[serde(deserialize_with)]` on a `&'static str` field.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    Ok(intern(&String::deserialize(d)?))
}

/// For `#[serde(deserialize_with)]` on an `Option<&'static str>` field.
pub fn optional_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|t| intern(&t)))
}

/// Whether another distinct value may be kept (for lists kept like the texts).
#[must_use]
pub fn room_for(kept: usize) -> bool {
    kept < MAX_TEXTS
}

/// For `#[serde(deserialize_with)]` on a map keyed by `&'static str`.
pub fn text_keys<'de, D, V>(d: D) -> Result<BTreeMap<&'static str, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    Ok(BTreeMap::<String, V>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| (intern(&k), v))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_read_back_cannot_act_on_a_terminal() {
        let read: &'static str = serde_json::from_str::<Wrapped>(r#"{"id":"\u001b[31mC1\u0007"}"#)
            .unwrap()
            .id;
        assert_eq!(read, "\u{FFFD}[31mC1\u{FFFD}");
        assert!(!read.chars().any(super::super::untrusted::is_unsafe));
    }

    #[derive(serde::Deserialize)]
    struct Wrapped {
        #[serde(deserialize_with = "text")]
        id: &'static str,
    }

    #[test]
    fn equal_texts_share_one_copy() {
        let a = intern(&String::from("a text read twice"));
        let b = intern(&String::from("a text read twice"));
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "a text read twice");
    }
}
