//! The state of a kernel source (a program on a hook) as the presenters report it.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Events lost over a window, and since counting began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LostEvents {
    /// In the window.
    pub count: u64,
    /// Since counting began (the program was loaded, the map created).
    pub total: u64,
}

impl LostEvents {
    /// From two readings of a running total.
    #[must_use]
    pub fn between(before: u64, now: u64) -> Self {
        Self {
            count: now.saturating_sub(before),
            total: now,
        }
    }
}

/// Whether a kernel source (tracepoint) could be attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    Attached,
    Unavailable(String),
}

/// What a source did during a sampling window, as shown to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// Attached and produced events in the window.
    Live,
    /// Attached, but no event in the window (e.g. `kvm_exit` on nested/PVM hosts, or an idle VM).
    Silent,
    /// Could not be attached; the text says why.
    Unavailable(String),
}

impl SourceState {
    #[must_use]
    pub fn from_window(attachment: &Attachment, events: u64) -> Self {
        match attachment {
            Attachment::Unavailable(why) => Self::Unavailable(why.clone()),
            Attachment::Attached if events > 0 => Self::Live,
            Attachment::Attached => Self::Silent,
        }
    }
}

impl std::fmt::Display for SourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Live => f.write_str("live"),
            Self::Silent => f.write_str("silent"),
            Self::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// As JSON: `"live"`, `"silent"` or `"unavailable: <why>"`.
impl JsonSchema for SourceState {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SourceState".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(live|silent|unavailable: .*)$",
            "description": "live: attached and produced events in the window; silent: attached, \
                            no event in the window; unavailable: could not be attached (the text \
                            says why)."
        })
    }
}

impl Serialize for SourceState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Reads back what [`Serialize`] wrote (recordings); any other text is refused.
impl<'de> Deserialize<'de> for SourceState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "live" => Ok(Self::Live),
            "silent" => Ok(Self::Silent),
            _ => match text.strip_prefix("unavailable: ") {
                Some(why) => Ok(Self::Unavailable(why.to_owned())),
                None => Err(serde::de::Error::custom(format!(
                    "not a source state: {text:?}"
                ))),
            },
        }
    }
}
