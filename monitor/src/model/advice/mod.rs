//! Tuning advice as presenters see it: the rules' descriptions, and what a rule produces — a
//! recommendation that always carries the evidence behind it.

pub mod recorded;

use std::{borrow::Cow, fmt};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Untrusted, interned::StaticText};

/// A reference: the document and the section within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    #[serde(deserialize_with = "super::interned::text")]
    pub title: StaticText,
    #[serde(deserialize_with = "super::interned::text")]
    pub section: StaticText,
}

/// The change a rule recommends, in each form that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StaticChange {
    pub libvirt: Option<&'static str>,
    pub qemu: Option<&'static str>,
    pub host: Option<&'static str>,
}

/// The rule families of the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleFamily {
    Cpu,
    Exits,
    Memory,
    Io,
    Host,
}

impl RuleFamily {
    /// The family as the reference names it.
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Self::Cpu => "CPU and scheduling",
            Self::Exits => "VM exits",
            Self::Memory => "memory and NUMA",
            Self::Io => "I/O",
            Self::Host => "host facts",
        }
    }
}

/// One rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RuleInfo {
    pub id: &'static str,
    pub family: RuleFamily,
    pub title: &'static str,
    /// What the rule looks at.
    pub checks: &'static str,
    /// Why it matters when the condition holds.
    pub diagnosis: &'static str,
    pub change: StaticChange,
    pub effect: &'static str,
    pub sources: &'static [Source],
}

/// An input a rule needed but did not have, so the rule stayed quiet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct Unavailable {
    #[serde(deserialize_with = "super::interned::text")]
    pub rule: StaticText,
    pub input: String,
}

/// How urgent a recommendation is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// What a recommendation is about.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Target {
    Host,
    Vm {
        pid: u32,
        name: Untrusted,
    },
    Vcpu {
        pid: u32,
        index: u32,
        tid: Option<u32>,
    },
    Drive {
        pid: u32,
        drive: Untrusted,
    },
    Nic {
        pid: u32,
        nic: Untrusted,
    },
}

impl Target {
    /// The process the target belongs to; `None` for the host.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Host => None,
            Self::Vm { pid, .. }
            | Self::Vcpu { pid, .. }
            | Self::Drive { pid, .. }
            | Self::Nic { pid, .. } => Some(*pid),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::Vm { pid, name } => write!(f, "VM {name} (pid {pid})"),
            Self::Vcpu { pid, index, tid } => match tid {
                Some(tid) => write!(f, "vCPU {index} of pid {pid} (tid {tid})"),
                None => write!(f, "vCPU {index} of pid {pid}"),
            },
            Self::Drive { pid, drive } => write!(f, "drive {drive} of pid {pid}"),
            Self::Nic { pid, nic } => write!(f, "NIC {nic} of pid {pid}"),
        }
    }
}

/// A measured or configured value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Value {
    Number(f64),
    /// Often from a command line or procfs: shown sanitized.
    Text(Untrusted),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{n:.0}"),
            Self::Number(n) if n.abs() >= 100.0 => write!(f, "{n:.1}"),
            Self::Number(n) => write!(f, "{}", (n * 10_000.0).round() / 10_000.0),
            Self::Text(s) => write!(f, "{s}"),
        }
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Self::Number(n)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Text(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Text(s.into())
    }
}

impl From<Untrusted> for Value {
    fn from(s: Untrusted) -> Self {
        Self::Text(s)
    }
}

/// How the value relates to the threshold for the condition to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Above,
    AtLeast,
    Below,
    AtMost,
    Equals,
    NotEquals,
    /// The value is one of the threshold's comma-separated list.
    OneOf,
}

impl Comparison {
    /// The comparison as an operator (`>`, `<=`, `in`, …).
    #[must_use]
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Above => ">",
            Self::AtLeast => ">=",
            Self::Below => "<",
            Self::AtMost => "<=",
            Self::Equals => "=",
            Self::NotEquals => "!=",
            Self::OneOf => "in",
        }
    }
}

/// One observation or fact backing a recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    pub name: Untrusted,
    pub value: Value,
    pub threshold: Value,
    pub comparison: Comparison,
    /// The observation window; `None` for configuration facts.
    pub window_seconds: Option<f64>,
}

impl Evidence {
    /// A configuration fact (no window). A name written in a rule is kept without a copy.
    pub fn fact(
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Value>,
        comparison: Comparison,
        threshold: impl Into<Value>,
    ) -> Self {
        Self {
            name: Untrusted::from(name.into()),
            value: value.into(),
            threshold: threshold.into(),
            comparison,
            window_seconds: None,
        }
    }

    /// A measurement over `window` seconds.
    pub fn measured(
        name: impl Into<Cow<'static, str>>,
        value: f64,
        comparison: Comparison,
        threshold: f64,
        window: Option<f64>,
    ) -> Self {
        Self {
            window_seconds: window,
            ..Self::fact(name, value, comparison, threshold)
        }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {} ({} {})",
            self.name,
            self.value,
            self.comparison.symbol(),
            self.threshold
        )?;
        if let Some(w) = self.window_seconds {
            write!(f, " over {w:.0} s")?;
        }
        Ok(())
    }
}

/// The change to make, in whichever forms apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// libvirt domain XML.
    pub libvirt: Option<Untrusted>,
    /// QEMU command-line options.
    pub qemu: Option<Untrusted>,
    /// Host settings (sysctl, module parameters, sysfs).
    pub host: Option<Untrusted>,
}

impl Change {
    /// A change to the libvirt domain XML.
    #[must_use]
    pub fn libvirt(text: impl Into<Untrusted>) -> Self {
        Self {
            libvirt: Some(text.into()),
            ..Self::default()
        }
    }

    /// A change to host settings.
    #[must_use]
    pub fn host(text: impl Into<Untrusted>) -> Self {
        Self {
            host: Some(text.into()),
            ..Self::default()
        }
    }

    /// Sets the QEMU command-line form.
    #[must_use]
    pub fn with_qemu(mut self, text: impl Into<Untrusted>) -> Self {
        self.qemu = Some(text.into());
        self
    }

    /// Sets the host-setting form.
    #[must_use]
    pub fn with_host(mut self, text: impl Into<Untrusted>) -> Self {
        self.host = Some(text.into());
        self
    }
}

/// One piece of advice. It cannot exist without evidence: the only constructor takes the
/// first item, and the list is private.
// Read back only from recordings, by `recorded::read`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Recommendation {
    /// The rule id (`C1`, `E4`, …).
    pub id: StaticText,
    pub title: StaticText,
    pub severity: Severity,
    pub target: Target,
    evidence: Vec<Evidence>,
    pub diagnosis: Untrusted,
    pub change: Change,
    pub expected_effect: Untrusted,
    /// The references behind the rule (one or more).
    pub source: &'static [Source],
    /// The condition is no longer past its firing threshold but not yet past its clearing
    /// one; the evidence then shows the clearing thresholds.
    pub holding: bool,
}

impl Recommendation {
    /// A recommendation of `rule` with the rule's own diagnosis, change and effect texts;
    /// specialise them with the builder methods.
    #[must_use]
    pub fn new(
        rule: &'static RuleInfo,
        severity: Severity,
        target: Target,
        first: Evidence,
    ) -> Self {
        Self {
            id: rule.id,
            title: rule.title,
            severity,
            target,
            evidence: vec![first],
            // The rule's own texts are borrowed: a busy host has hundreds of recommendations
            // in force, rebuilt every window.
            diagnosis: Untrusted::from_static(rule.diagnosis),
            change: Change {
                libvirt: rule.change.libvirt.map(Untrusted::from_static),
                qemu: rule.change.qemu.map(Untrusted::from_static),
                host: rule.change.host.map(Untrusted::from_static),
            },
            expected_effect: Untrusted::from_static(rule.effect),
            source: rule.sources,
            holding: false,
        }
    }

    /// Adds one more piece of evidence.
    #[must_use]
    pub fn with(mut self, evidence: Evidence) -> Self {
        self.evidence.push(evidence);
        self
    }

    /// Adds each of `evidence`.
    #[must_use]
    pub fn with_all(mut self, evidence: impl IntoIterator<Item = Evidence>) -> Self {
        self.evidence.extend(evidence);
        self
    }

    /// Replaces the rule's generic change with one specific to this finding.
    #[must_use]
    pub fn change(mut self, change: Change) -> Self {
        self.change = change;
        self
    }

    /// Replaces the rule's generic diagnosis with one specific to this finding.
    #[must_use]
    pub fn diagnosis(mut self, text: impl Into<Untrusted>) -> Self {
        self.diagnosis = text.into();
        self
    }

    /// Replaces the rule's generic expected effect.
    #[must_use]
    pub fn effect(mut self, text: impl Into<Untrusted>) -> Self {
        self.expected_effect = text.into();
        self
    }

    /// The evidence; never empty.
    #[must_use]
    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }

    pub(crate) fn set_holding(&mut self, holding: bool) {
        self.holding = holding;
    }
}
