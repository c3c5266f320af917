//! A strict reader of the Prometheus text format (0.0.4) for the scale bench: whether a scrape
//! parses, and which VMs (by pid) it shows with which vCPUs.
//!
//! Beyond the line grammar it checks what a scraper relies on: a sample's family was declared by
//! `# TYPE` before it, a family's samples are not split by another family, and no series appears
//! twice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// What one VM's series say about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VmSeries {
    /// `kvmtop_vm_vcpus`.
    pub vcpus: Option<f64>,
    /// Every `vcpu` label value among its series (`"0"`, `"1"`; `"tid123"` for an unmatched one).
    pub vcpu_labels: BTreeSet<String>,
}

/// A parsed scrape.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: usize,
    /// VMs by pid: every series with a `pid` label counts.
    pub vms: BTreeMap<u32, VmSeries>,
}

/// Parses `text`; the error names the first line that is wrong and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    let mut parser = Parser::default();
    for (number, line) in text.lines().enumerate() {
        parser
            .line(line)
            .map_err(|err| format!("line {}: {err}: {}", number + 1, excerpt(line)))?;
    }
    Ok(parser.exposition)
}

/// The start of a line, escaped: VM names in labels are chosen by guest owners.
fn excerpt(line: &str) -> String {
    let cut: String = line.chars().take(120).collect();
    format!("{cut:?}")
}

#[derive(Default)]
struct Parser {
    exposition: Exposition,
    /// Family → its type.
    types: HashMap<String, String>,
    /// Families whose samples ended because another family's began.
    closed: HashSet<String>,
    current: Option<String>,
    series: HashSet<String>,
}

impl Parser {
    fn line(&mut self, line: &str) -> Result<(), String> {
        if line.is_empty() {
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix('#') {
            return self.comment(comment);
        }
        let (name, labels, rest) = sample(line)?;
        value(rest)?;
        let family = self.family_of(name)?;
        if self.current.as_deref() != Some(family.as_str()) {
            if self.closed.contains(&family) {
                return Err(format!("family {family} continues after other families"));
            }
            if let Some(previous) = self.current.replace(family) {
                self.closed.insert(previous);
            }
        }
        let mut key = name.to_owned();
        for (label, value) in &labels {
            for part in ["\u{0}", label.as_str(), "=", value.as_str()] {
                key.push_str(part);
            }
        }
        if !self.series.insert(key) {
            return Err("the series appears twice".into());
        }
        self.exposition.samples += 1;
        self.note_vm(name, &labels, rest);
        Ok(())
    }

    fn comment(&mut self, comment: &str) -> Result<(), String> {
        let mut words = comment.trim_start().splitn(3, ' ');
        match words.next() {
            Some("TYPE") => {
                let name = words.next().ok_or("TYPE without a name")?;
                check_name(name)?;
                let kind = words.next().unwrap_or_default().trim();
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("unknown type {kind:?}"));
                }
                if self
                    .types
                    .insert(name.to_owned(), kind.to_owned())
                    .is_some()
                {
                    return Err(format!("a second TYPE for {name}"));
                }
                Ok(())
            }
            Some("HELP") => check_name(words.next().ok_or("HELP without a name")?),
            _ => Ok(()),
        }
    }

    /// The declared family a sample belongs to (histograms' and summaries' suffixes removed).
    fn family_of(&self, name: &str) -> Result<String, String> {
        if self.types.contains_key(name) {
            return Ok(name.to_owned());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && matches!(
                    self.types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                )
            {
                return Ok(base.to_owned());
            }
        }
        Err(format!("no TYPE declared for {name} before its samples"))
    }

    fn note_vm(&mut self, name: &str, labels: &[(String, String)], value: &str) {
        let label = |wanted: &str| {
            labels
                .iter()
                .find(|(label, _)| label == wanted)
                .map(|(_, value)| value)
        };
        let Some(pid) = label("pid").and_then(|pid| pid.parse::<u32>().ok()) else {
            return;
        };
        let vm = self.exposition.vms.entry(pid).or_default();
        if let Some(vcpu) = label("vcpu") {
            vm.vcpu_labels.insert(vcpu.clone());
        }
        if name == "kvmtop_vm_vcpus" {
            vm.vcpus = self::value(value).ok();
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

/// A series' labels, unescaped, in order.
type Labels = Vec<(String, String)>;

/// A sample line's name, labels (unescaped) and the text after them.
fn sample(line: &str) -> Result<(&str, Labels, &str), String> {
    let end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..end];
    check_name(name)?;
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            inside = inside.trim_start_matches(',');
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inside.split_once("=\"").ok_or("a label without =\"")?;
            check_name(label)?;
            let (value, after) = label_value(after)?;
            labels.push((label.to_owned(), value));
            inside = after;
            if !(inside.starts_with(',') || inside.starts_with('}')) {
                return Err("labels not separated by commas".into());
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    Ok((name, labels, rest))
}

/// An escaped label value up to its closing quote, and what follows the quote.
fn label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[at + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => return Err(format!("bad escape {:?}", other.map(|(_, c)| c))),
            },
            c => value.push(c),
        }
    }
    Err("a label value without its closing quote".into())
}

/// A sample's value (and optional timestamp).
fn value(text: &str) -> Result<f64, String> {
    let mut words = text.split(' ');
    let number = words.next().unwrap_or_default();
    let value = match number {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("bad value {other:?}"))?,
    };
    if let Some(timestamp) = words.next()
        && timestamp.parse::<i64>().is_err()
    {
        return Err(format!("bad timestamp {timestamp:?}"));
    }
    if words.next().is_some() {
        return Err("text after the value".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP kvmtop_vm_vcpus Number of vCPUs.\n\
        # TYPE kvmtop_vm_vcpus gauge\n\
        kvmtop_vm_vcpus{pid=\"10\",vm=\"a \\\"quoted\\\" name\"} 2\n\
        # TYPE kvmtop_vcpu_run_seconds_total counter\n\
        kvmtop_vcpu_run_seconds_total{pid=\"10\",vcpu=\"0\",vm=\"a\"} 0.5\n\
        kvmtop_vcpu_run_seconds_total{pid=\"10\",vcpu=\"1\",vm=\"a\"} 1e-3\n\
        kvmtop_vcpu_run_seconds_total{pid=\"11\",vcpu=\"tid77\",vm=\"b\"} 0\n\
        # TYPE lat histogram\n\
        lat_bucket{le=\"+Inf\"} 3\n\
        lat_sum 1.5\n\
        lat_count 3\n\
        up 1\n";

    #[test]
    fn reads_vms_and_their_vcpus() {
        // `up` has no TYPE: the good text is good only up to there.
        let error = parse(GOOD).unwrap_err();
        assert!(error.starts_with("line 12: no TYPE"), "{error}");
        let text = GOOD.replace("up 1\n", "");
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.samples, 7);
        assert_eq!(parsed.vms[&10].vcpus, Some(2.0));
        assert_eq!(
            parsed.vms[&10].vcpu_labels,
            ["0", "1"].map(String::from).into()
        );
        assert_eq!(parsed.vms[&11].vcpus, None);
        assert!(parsed.vms[&11].vcpu_labels.contains("tid77"));
    }

    #[test]
    fn rejects_what_a_scraper_would() {
        let with = |extra: &str| parse(&format!("# TYPE m gauge\n{extra}"));
        assert!(with("m 1\n").is_ok());
        assert!(with("m{a=\"1\"} 1 1700000000000\n").is_ok());
        assert!(with("m 1").is_err(), "no final newline");
        assert!(with("m{a=\"1} 1\n").is_err(), "unterminated label value");
        assert!(with("m{a=\"1\" b=\"2\"} 1\n").is_err(), "no comma");
        assert!(with("m{a=\"\\x\"} 1\n").is_err(), "bad escape");
        assert!(with("m one\n").is_err(), "bad value");
        assert!(with("m 1\nm 2\n").is_err(), "duplicate series");
        assert!(with("m{a=\"1\"} 1\n# TYPE n gauge\nn 1\nm{a=\"2\"} 1\n").is_err());
        assert!(with("9m 1\n").is_err(), "bad name");
        assert!(parse("# TYPE m gauge\n# TYPE m counter\n").is_err());
    }
}
