//! Thresholds of the rules and of the engine's hysteresis, with documented defaults, read from
//! a TOML file. A file may set any subset of the keys; the rest keep their defaults. An
//! unknown key is an error naming it, so that a typo never silently leaves a default in force.
//!
//! Every key is declared once, in `config/keys.rs`: the declaration gives the struct field,
//! its default, its documentation, its unit, whether it comes from a source or is a
//! judgement, and the rules using it. [`Thresholds::default_toml`] and the rule catalogue are
//! generated from the same declarations, so they cannot drift apart.

mod keys;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use keys::{KEYS, Thresholds};

/// Where a default comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Taken from a cited source (`[S]` in the reference).
    Source,
    /// A judgement default (`[J]`): reasonable, not authoritative; tune it.
    Judgement,
    /// A setting of the engine, not of a rule.
    Engine,
}

impl Origin {
    /// The marker used in the configuration file and in `explain`.
    #[must_use]
    pub fn tag(self) -> &'static str {
        match self {
            Self::Source => "[S]",
            Self::Judgement => "[J]",
            Self::Engine => "[engine]",
        }
    }
}

/// Which way a threshold points, which decides how hysteresis relaxes it: a rule that fires
/// when a value is *above* its threshold clears only below threshold × (1 − margin); one
/// that fires *below* its threshold clears only above threshold × (1 + margin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Above,
    Below,
    /// Not relaxed (counts, warm-up times, engine settings).
    Fixed,
}

/// The declaration of one key.
#[derive(Debug, Clone, Copy)]
pub struct KeyInfo {
    pub key: &'static str,
    /// The documentation, one entry per line.
    pub doc: &'static [&'static str],
    pub unit: &'static str,
    pub origin: Origin,
    pub direction: Direction,
    /// Ids of the rules that use the key.
    pub rules: &'static [&'static str],
}

impl KeyInfo {
    /// The documentation as one paragraph.
    #[must_use]
    pub fn text(&self) -> String {
        self.doc
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax errors, unknown keys (the message names the key) and values of the wrong type.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {key} = {value}: {reason}")]
    Invalid {
        origin: String,
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// A value of a key: the field types the declarations use.
pub(crate) trait Setting: Copy {
    fn as_f64(self) -> f64;
    /// `self` scaled by `factor`; counts are not scaled.
    #[must_use]
    fn scaled(self, factor: f64) -> Self;
    fn render(self) -> String;
}

impl Setting for f64 {
    fn as_f64(self) -> f64 {
        self
    }
    fn scaled(self, factor: f64) -> Self {
        self * factor
    }
    fn render(self) -> String {
        // Display never uses exponents, and TOML reads integers into floats.
        format!("{self}")
    }
}

impl Setting for u32 {
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
    fn scaled(self, _factor: f64) -> Self {
        self
    }
    fn render(self) -> String {
        self.to_string()
    }
}

impl Thresholds {
    /// Reads a TOML file; keys it does not set keep their defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let thresholds: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        thresholds.validate(origin)?;
        Ok(thresholds)
    }

    /// Refuses values no rule can work with.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        for info in KEYS {
            let value = self.get(info.key).unwrap_or(f64::NAN);
            let reason = if !value.is_finite() || value < 0.0 {
                Some("must be a finite number, zero or more")
            } else if info.unit == "share" && value > 1.0 {
                Some("is a share and must be between 0 and 1")
            } else if info.key == "clear_margin" && value >= 1.0 {
                Some("must be below 1")
            } else if info.unit == "evaluations" && value < 1.0 {
                Some("must be at least 1")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ConfigError::Invalid {
                    origin: origin.to_owned(),
                    key: info.key,
                    value: self.render(info.key).unwrap_or_default(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// The thresholds a firing rule must fall past before it clears: each `Above` threshold
    /// times (1 − `margin`), each `Below` one times (1 + `margin`).
    #[must_use]
    pub fn relaxed(&self, margin: f64) -> Self {
        self.scaled_by(|direction| match direction {
            Direction::Above => 1.0 - margin,
            Direction::Below => 1.0 + margin,
            Direction::Fixed => 1.0,
        })
    }

    /// A complete configuration file with every key at its default, each documented.
    #[must_use]
    pub fn default_toml() -> String {
        let defaults = Self::default();
        let mut out = String::from(
            "# kvmtop tuning advice: thresholds of the rules and of the engine.\n\
             #\n\
             # Every key is optional; a key left out keeps the default shown here, and an\n\
             # unknown key is an error. [S] marks a threshold taken from a cited source,\n\
             # [J] a judgement default worth tuning to the workload. `kvmtop explain RULE`\n\
             # describes each rule. Shares are fractions (0.05 = 5 %).\n",
        );
        for info in KEYS {
            out.push('\n');
            for line in info.doc {
                let _ = writeln!(out, "#{line}");
            }
            let rules = if info.rules.is_empty() {
                String::new()
            } else {
                format!("; rules {}", info.rules.join(", "))
            };
            let _ = writeln!(out, "# {} unit: {}{rules}", info.origin.tag(), info.unit);
            let _ = writeln!(
                out,
                "{} = {}",
                info.key,
                defaults.render(info.key).unwrap_or_default()
            );
        }
        out
    }
}

/// Declares the keys: the `Thresholds` struct, its `Default`, `KEYS`, and lookups by name.
macro_rules! thresholds {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident: $ty:ty = $default:expr,
        $unit:literal, $origin:ident, $direction:ident, [$($rule:literal),*];
    )+) => {
        /// Thresholds of every rule and the engine's hysteresis settings. Deserialised from
        /// TOML with defaults for missing keys; unknown keys are refused.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Thresholds {
            $($(#[doc = $doc])+ pub $field: $ty,)+
        }

        impl Default for Thresholds {
            fn default() -> Self {
                Self { $($field: $default,)+ }
            }
        }

        /// Every key, in file order.
        pub const KEYS: &[KeyInfo] = &[$(KeyInfo {
            key: stringify!($field),
            doc: &[$($doc),+],
            unit: $unit,
            origin: Origin::$origin,
            direction: Direction::$direction,
            rules: &[$($rule),*],
        }),+];

        impl Thresholds {
            /// The value of `key` as a number.
            #[must_use]
            pub fn get(&self, key: &str) -> Option<f64> {
                use $crate::advice::config::Setting as _;
                match key {
                    $(stringify!($field) => Some(self.$field.as_f64()),)+
                    _ => None,
                }
            }

            /// The value of `key` as TOML.
            #[must_use]
            pub fn render(&self, key: &str) -> Option<String> {
                use $crate::advice::config::Setting as _;
                match key {
                    $(stringify!($field) => Some(self.$field.render()),)+
                    _ => None,
                }
            }

            pub(super) fn scaled_by(&self, factor: impl Fn(Direction) -> f64) -> Self {
                use $crate::advice::config::Setting as _;
                Self {
                    $($field: self.$field.scaled(factor(Direction::$direction)),)+
                }
            }
        }
    };
}
use thresholds;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_back_to_the_defaults() {
        let text = Thresholds::default_toml();
        let parsed = Thresholds::from_toml_str(&text, "default").unwrap();
        assert_eq!(parsed, Thresholds::default());
        for info in KEYS {
            assert!(text.contains(&format!("\n{} = ", info.key)), "{}", info.key);
            assert!(!info.doc.is_empty() && !info.text().is_empty());
        }
    }

    #[test]
    fn partial_files_keep_defaults_and_unknown_keys_are_named() {
        let t = Thresholds::from_toml_str("c1_wait_warn = 0.1\nfire_after = 3\n", "t").unwrap();
        assert!((t.c1_wait_warn - 0.1).abs() < 1e-12);
        assert_eq!(t.fire_after, 3);
        assert_eq!(
            t.c1_wait_critical.to_bits(),
            Thresholds::default().c1_wait_critical.to_bits()
        );

        let err = Thresholds::from_toml_str("c1_wait_wrn = 0.1\n", "my.toml").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("my.toml") && text.contains("c1_wait_wrn"),
            "{text}"
        );

        let err = Thresholds::from_toml_str("c1_wait_warn = \"high\"\n", "t").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        let err = Thresholds::from_toml_str("c1_wait_warn = 1.5\n", "t").unwrap_err();
        assert!(err.to_string().contains("c1_wait_warn"), "{err}");
        let err = Thresholds::from_toml_str("fire_after = 0\n", "t").unwrap_err();
        assert!(err.to_string().contains("fire_after"), "{err}");
        let err = Thresholds::from_toml_str("e1_io_exits_per_s = -1\n", "t").unwrap_err();
        assert!(err.to_string().contains("e1_io_exits_per_s"), "{err}");
        let err = Thresholds::load(Path::new("/nonexistent/kvmtop-advice.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn relaxing_moves_thresholds_towards_clearing() {
        let t = Thresholds::default();
        let r = t.relaxed(0.1);
        assert!((r.e1_io_exits_per_s - 4500.0).abs() < 1e-9);
        assert!((r.m4_anon_huge_share - 0.55).abs() < 1e-9);
        assert!((r.e3_warmup_seconds - t.e3_warmup_seconds).abs() < 1e-9);
        assert_eq!(r.fire_after, t.fire_after);
    }

    #[test]
    fn every_key_names_existing_rules() {
        for info in KEYS {
            for rule in info.rules {
                assert!(
                    crate::advice::rules::catalog()
                        .iter()
                        .any(|r| r.id == *rule),
                    "{} names {rule}",
                    info.key
                );
            }
        }
    }
}
