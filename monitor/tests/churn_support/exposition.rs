//! A strict reader of the Prometheus text exposition format (0.0.4): what `kvmtop serve` writes
//! must parse line by line, with no line it cannot account for.
//!
//! Beyond the grammar (names, label escapes, values), it checks what a scraper relies on: every
//! sample belongs to a family whose `# TYPE` came first, a family's samples are contiguous, no
//! series appears twice, counters are finite and not negative, and a histogram's buckets are
//! cumulative, in ascending `le` order, ending with `+Inf` equal to its `_count`.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    #[must_use]
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// A series' labels, in order.
type Labels = Vec<(String, String)>;

/// A parsed exposition: its samples in order.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
}

/// Parses `text`; the error names the line and what is wrong with it.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut parser = Parser::default();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    for (number, line) in text.split_terminator('\n').enumerate() {
        parser
            .line(line)
            .map_err(|e| format!("line {}: {e}: {line:?}", number + 1))?;
    }
    parser.finish()?;
    Ok(Exposition {
        samples: parser.samples,
    })
}

#[derive(Default)]
struct Parser {
    samples: Vec<Sample>,
    /// Family name → type, as declared.
    types: HashMap<String, String>,
    helps: HashSet<String>,
    /// Families whose samples have ended (another family's began).
    closed: HashSet<String>,
    current: Option<String>,
    series: HashSet<(String, Vec<(String, String)>)>,
}

impl Parser {
    fn line(&mut self, line: &str) -> Result<(), String> {
        if line.is_empty() {
            return Err("empty line".into());
        }
        if let Some(comment) = line.strip_prefix('#') {
            return self.comment(comment);
        }
        let sample = sample(line)?;
        let family = self.family_of(&sample.name)?;
        if self.current.as_deref() != Some(family.as_str()) {
            if self.closed.contains(&family) {
                return Err(format!(
                    "family {family} appears again after other families"
                ));
            }
            if let Some(previous) = self.current.replace(family.clone()) {
                self.closed.insert(previous);
            }
        }
        let key = (
            sample.name.clone(),
            sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        if !self.series.insert(key) {
            return Err("the same series twice".into());
        }
        let kind = self.types[&family].as_str();
        if matches!(kind, "counter" | "histogram")
            && (sample.value.is_nan() || sample.value < 0.0 || sample.value.is_infinite())
        {
            return Err(format!("a {kind} sample of {}", sample.value));
        }
        self.samples.push(sample);
        Ok(())
    }

    fn comment(&mut self, comment: &str) -> Result<(), String> {
        let comment = comment
            .strip_prefix(' ')
            .ok_or("a comment without a space after #")?;
        let (keyword, rest) = comment.split_once(' ').ok_or("a bare comment")?;
        let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        check_metric_name(name)?;
        match keyword {
            "HELP" => {
                unescape(rest, false)?;
                if !self.helps.insert(name.to_owned()) {
                    return Err(format!("a second HELP for {name}"));
                }
            }
            "TYPE" => {
                if !matches!(
                    rest,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(format!("unknown type {rest:?}"));
                }
                if self
                    .types
                    .insert(name.to_owned(), rest.to_owned())
                    .is_some()
                {
                    return Err(format!("a second TYPE for {name}"));
                }
                if self.samples.iter().any(|s| s.name == name) {
                    return Err(format!("TYPE of {name} after its samples"));
                }
            }
            other => return Err(format!("a comment that is neither HELP nor TYPE ({other})")),
        }
        Ok(())
    }

    /// The declared family a sample name belongs to.
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
        Err(format!("sample of {name} without a TYPE before it"))
    }

    /// Histogram checks, once every sample is in.
    fn finish(&self) -> Result<(), String> {
        let histograms = self
            .types
            .iter()
            .filter(|(_, kind)| *kind == "histogram")
            .map(|(name, _)| name.as_str());
        for family in histograms {
            check_histogram(family, &self.samples)?;
        }
        Ok(())
    }
}

/// Buckets cumulative in ascending `le`, the last `+Inf` and equal to `_count`, per series.
fn check_histogram(family: &str, samples: &[Sample]) -> Result<(), String> {
    let without_le = |s: &Sample| {
        let mut labels = s.labels.clone();
        labels.remove("le");
        labels
    };
    let bucket_name = format!("{family}_bucket");
    let count_name = format!("{family}_count");
    // Per series (labels but `le`), its (bound, count) buckets.
    let mut buckets: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == bucket_name) {
        let le = s
            .label("le")
            .ok_or_else(|| format!("{bucket_name} without le"))?;
        let bound = parse_value(le).map_err(|e| format!("{bucket_name} le {le:?}: {e}"))?;
        buckets
            .entry(without_le(s).into_iter().collect())
            .or_default()
            .push((bound, s.value));
    }
    for (labels, series) in &buckets {
        let ascending = series
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let last = series.last().expect("at least one bucket");
        let count = samples
            .iter()
            .find(|s| {
                s.name == count_name && without_le(s).into_iter().collect::<Vec<_>>() == *labels
            })
            .map(|s| s.value);
        if !ascending || last.0 != f64::INFINITY || count != Some(last.1) {
            return Err(format!(
                "histogram {family}{labels:?}: buckets {series:?}, count {count:?}"
            ));
        }
    }
    Ok(())
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with("__") {
        Ok(())
    } else {
        Err(format!("invalid label name {name:?}"))
    }
}

/// `name{labels} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let value = parse_value(fields.next().unwrap_or_default())?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("more than a value and a timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` into `labels`, returning what follows the brace.
fn parse_labels<'a>(
    mut text: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let (name, after) = text.split_once("=\"").ok_or("a label without =\"")?;
        check_label_name(name)?;
        let (value, after) = quoted(after)?;
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        text = match after.strip_prefix(',') {
            Some(next) if !next.starts_with('}') => next,
            Some(_) => return Err("a trailing comma".into()),
            None if after.starts_with('}') => after,
            None => return Err("labels not separated by commas".into()),
        };
    }
}

/// The value of a quoted label up to its closing quote, unescaped, and the text after it.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Ok((unescape(&text[..i], true)?, &text[i + 1..])),
            (false, '\n') => return Err("a raw newline in a label value".into()),
            _ => {}
        }
    }
    Err("an unterminated label value".into())
}

/// Resolves `\\` and `\n` (and `\"` in label values); any other escape is an error.
fn unescape(text: &str, label: bool) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if label => out.push('"'),
            other => return Err(format!("the escape \\{other:?}")),
        }
    }
    Ok(out)
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if text.is_empty() || text.contains(['i', 'I', 'n', 'N']) => {
            Err(format!("value {text:?}"))
        }
        _ => text.parse().map_err(|_| format!("value {text:?}")),
    }
}

#[test]
fn accepts_what_the_format_allows_and_nothing_else() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{vm=\"q\\\"x\\\\y\\nz\",pid=\"1\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    let parsed = parse(good).unwrap();
    assert_eq!(parsed.samples[0].label("vm"), Some("q\"x\\y\nz"));
    for bad in [
        "a 1\n",
        "# TYPE a counter\na{b=\"1\",} 1\n",
        "# TYPE a counter\na{b=\"1\"} 1\na{b=\"1\"} 2\n",
        "# TYPE a counter\na -1\n",
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 1\n",
        "# TYPE a gauge\na{b=\"\\t\"} 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE a gauge\na 1",
        "# TYPE a gauge\n\na 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
