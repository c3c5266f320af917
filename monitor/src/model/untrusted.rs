//! Text that somebody other than the operator chose: VM names, thread and process names, command
//! lines, image paths, device ids. Guest owners and any local user pick these, and the operator
//! reads them in a terminal, where an escape sequence could retitle or clear the screen, write
//! the clipboard (OSC 52) or forge whole lines of a report.
//!
//! [`Untrusted`] keeps the exact text for machine-readable output (JSON, Prometheus labels,
//! recordings) and shows a safe version whenever it is formatted with `{}`: every control
//! character (C0, DEL, C1), bidirectional override or isolate, zero-width or invisible format
//! character and line or paragraph separator becomes U+FFFD, and the text is cut to
//! [`DISPLAY_CHARS`] characters. Discovery wraps such strings the moment they are read, so no
//! presenter can print them raw by accident.

use std::{borrow::Cow, cmp::Ordering, fmt, hash, sync::Arc};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Characters shown of an untrusted text at most; longer ones end in `…`.
pub const DISPLAY_CHARS: usize = 256;

/// Shown instead of a character that could act on a terminal.
pub const REPLACEMENT: char = '\u{FFFD}';

/// A string from outside kvmtop's control; see the module documentation.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct Untrusted(Text);

/// The text of an [`Untrusted`]: compiled into kvmtop, or shared by every copy. Names are
/// copied into each window's model (a VM's, its threads', its contenders'), so a copy costs a
/// reference count rather than an allocation.
#[derive(Clone)]
enum Text {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            Self::Static(text) => text,
            Self::Shared(text) => text,
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Self::Static("")
    }
}

// Compared, ordered, hashed and printed by the text alone, however it is held.
impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl hash::Hash for Text {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::Shared(String::deserialize(deserializer)?.into()))
    }
}

impl JsonSchema for Text {
    fn schema_name() -> Cow<'static, str> {
        String::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        String::json_schema(generator)
    }

    fn inline_schema() -> bool {
        true
    }
}

impl Untrusted {
    #[must_use]
    pub fn new(text: impl Into<String>) -> Self {
        Self(Text::Shared(text.into().into()))
    }

    /// A text compiled into kvmtop (a rule's diagnosis, an evidence name): kept without a copy.
    #[must_use]
    pub const fn from_static(text: &'static str) -> Self {
        Self(Text::Static(text))
    }

    /// Bytes read from the kernel (`/proc/PID/comm`, `cmdline`): invalid UTF-8 is repaired
    /// (U+FFFD), so every consumer, Prometheus labels included, gets valid UTF-8.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self::new(String::from_utf8_lossy(bytes))
    }

    /// The exact text, for output that escapes it itself (JSON, Prometheus label values).
    /// Never write it to a terminal.
    #[must_use]
    pub fn exact(&self) -> &str {
        self.0.as_str()
    }

    /// The text as a terminal may show it.
    #[must_use]
    pub fn display(&self) -> Cow<'_, str> {
        sanitize(self.exact())
    }

    /// The texts shown one after the other, `separator` between them.
    #[must_use]
    pub fn join(texts: &[Self], separator: &str) -> String {
        texts
            .iter()
            .map(Self::display)
            .collect::<Vec<_>>()
            .join(separator)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.exact().is_empty()
    }
}

impl fmt::Display for Untrusted {
    /// The sanitized text; width, fill and alignment are honoured (`{:<20}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.display())
    }
}

impl From<String> for Untrusted {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<Cow<'static, str>> for Untrusted {
    fn from(text: Cow<'static, str>) -> Self {
        match text {
            Cow::Borrowed(text) => Self::from_static(text),
            Cow::Owned(text) => Self::new(text),
        }
    }
}

impl From<&str> for Untrusted {
    fn from(text: &str) -> Self {
        Self(Text::Shared(text.into()))
    }
}

impl PartialEq<str> for Untrusted {
    fn eq(&self, other: &str) -> bool {
        self.exact() == other
    }
}

impl PartialEq<&str> for Untrusted {
    fn eq(&self, other: &&str) -> bool {
        self.exact() == *other
    }
}

/// `text` with every character that could act on a terminal replaced by U+FFFD, cut to
/// [`DISPLAY_CHARS`] characters. Borrowed when nothing needed replacing.
#[must_use]
pub fn sanitize(text: &str) -> Cow<'_, str> {
    let too_long = text.chars().nth(DISPLAY_CHARS).is_some();
    if !too_long && !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut safe: String = text
        .chars()
        .take(if too_long {
            DISPLAY_CHARS - 1
        } else {
            DISPLAY_CHARS
        })
        .map(|c| if is_unsafe(c) { REPLACEMENT } else { c })
        .collect();
    if too_long {
        safe.push('…');
    }
    Cow::Owned(safe)
}

/// Whether a terminal could act on `c` or hide or reorder text with it.
#[must_use]
pub fn is_unsafe(c: char) -> bool {
    // C0, DEL and C1: escape sequences, bell, backspace, newline, carriage return.
    c.is_control()
        || matches!(
            c,
            // Arabic letter mark, left-to-right and right-to-left marks.
            '\u{061C}' | '\u{200E}' | '\u{200F}'
            // Embeddings and overrides (U+202E reverses the text after it) and isolates.
            | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            // Zero-width space, non-joiner, joiner, word joiner and invisible operators.
            | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}'
            // Line and paragraph separators: new lines to some terminals and viewers.
            | '\u{2028}' | '\u{2029}'
            // Byte order mark (zero-width no-break space), interlinear annotations.
            | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
            // Tag characters: invisible.
            | '\u{E0000}'..='\u{E007F}'
        )
}

#[must_use]
/// `json` with every character a terminal could act on written as a `\uXXXX` escape. The JSON
/// means exactly the same to a parser, so names stay exact, but read in a terminal (the output
/// itself, or a file of it shown with cat) nothing in it reorders text or starts a control
/// sequence. `serde_json` already escapes C0 controls; it writes C1 controls, bidirectional
/// overrides, zero-width characters and line separators as they are.
///
/// Outside strings pretty JSON holds only ASCII punctuation, digits, letters, spaces and line
/// feeds, and inside strings `serde_json` escapes every C0 control, so any unsafe character other
/// than a line feed is inside a string, where an escape is what it means.
pub fn json_terminal_safe(json: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c != '\n' && is_unsafe(c);
    if !json.contains(unsafe_char) {
        return Cow::Borrowed(json);
    }
    let mut safe = String::with_capacity(json.len() + 64);
    for c in json.chars() {
        if unsafe_char(c) {
            // Characters beyond U+FFFF (tag characters) take a surrogate pair, as JSON demands.
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = fmt::Write::write_fmt(&mut safe, format_args!("\\u{unit:04x}"));
            }
        } else {
            safe.push(c);
        }
    }
    Cow::Owned(safe)
}

#[cfg(test)]
/// A name a hostile guest owner could choose, for presenters' tests: an OSC title change, a bell,
/// a screen clear, a colour, a newline followed by a forged line, a right-to-left override, a
/// zero-width space, a C1 CSI, quotes, a backslash and non-Latin letters.
pub const HOSTILE_NAME: &str = "q\"uote back\\slash vm-ü-日本 title:\x1b]0;PWNED\x07 \
                                clear:\x1b[2J red:\x1b[31m nl\nFAKELINE \u{202E}desrever \
                                zw\u{200B}j csi\u{9B}31m end";

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "q\"uote back\\slash vm-ü-日本 title:\x1b]0;PWNED\x07 clear:\x1b[2J \
                           red:\x1b[31m nl\nFAKELINE \u{202E}desrever\u{202C} zw\u{200B}j \
                           csi\u{9B}31m end";

    #[test]
    fn no_character_a_terminal_acts_on_survives() {
        let safe = Untrusted::new(HOSTILE).to_string();
        assert!(!safe.chars().any(is_unsafe), "{safe:?}");
        for gone in ["\x1b", "\x07", "\n", "\u{202E}", "\u{200B}", "\u{9B}"] {
            assert!(!safe.contains(gone), "{gone:?} in {safe:?}");
        }
        // Everything printable is kept, so the operator still recognises the name.
        for kept in [
            "q\"uote",
            "back\\slash",
            "vm-ü-日本",
            "]0;PWNED",
            "[2J",
            "FAKELINE",
        ] {
            assert!(safe.contains(kept), "{kept:?} missing from {safe:?}");
        }
    }

    #[test]
    fn the_exact_text_is_kept_for_machine_readable_output() {
        let name = Untrusted::new(HOSTILE);
        assert_eq!(name.exact(), HOSTILE);
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), HOSTILE);
        assert!(
            !json.contains('\x1b'),
            "serde_json escapes control characters"
        );
        assert_eq!(serde_json::from_str::<Untrusted>(&json).unwrap(), name);
    }

    #[test]
    fn plain_names_are_shown_as_they_are_and_padding_works() {
        let name = Untrusted::new("web-1");
        assert!(matches!(name.display(), Cow::Borrowed("web-1")));
        assert_eq!(format!("[{name:<8}]"), "[web-1   ]");
        assert_eq!(format!("[{name:>8}]"), "[   web-1]");
    }

    #[test]
    fn long_text_is_cut() {
        let long = Untrusted::new("x".repeat(10_000));
        let shown = long.to_string();
        assert_eq!(shown.chars().count(), DISPLAY_CHARS);
        assert!(shown.ends_with('…'));
        let exact = Untrusted::new("y".repeat(DISPLAY_CHARS));
        assert_eq!(exact.to_string().chars().count(), DISPLAY_CHARS);
        assert!(!exact.to_string().ends_with('…'));
    }

    #[test]
    fn invalid_utf8_from_the_kernel_is_repaired() {
        // `comm` is cut at 15 bytes, which can split a multi-byte character.
        let comm = Untrusted::from_bytes(b"qemu-\xe6\xad");
        assert_eq!(comm.exact(), "qemu-\u{FFFD}");
    }
}
