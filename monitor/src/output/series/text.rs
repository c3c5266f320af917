//! The text exposition format (0.0.4), line by line, as the `prometheus` crate's `TextEncoder`
//! writes it: the families of [`super::plain`] and [`super::histograms`] write themselves with
//! these.

use std::fmt::Write as _;

/// `# HELP` and `# TYPE` of a family.
pub(super) fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    if !help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        push_escaped(out, help, false);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// One sample line: `name{labels,extra} value`. The labels come sorted by name; `extra` is the
/// histogram's `le`, written last as the encoder writes it.
pub(super) fn write_sample<'a>(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    extra: Option<(&'a str, &'a str)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut separator = '{';
    for (label, label_value) in labels.into_iter().chain(extra) {
        out.push(separator);
        out.push_str(label);
        out.push_str("=\"");
        push_escaped(out, label_value, true);
        out.push('"');
        separator = ',';
    }
    if separator == ',' {
        out.push('}');
    }
    out.push(' ');
    push_number(out, value);
    out.push('\n');
}

/// A sample value as the encoder writes it (`f64`'s `Display`), whole numbers without going
/// through the float formatter: nearly every value kvmtop exports is a count.
pub(super) fn push_number(out: &mut String, value: f64) {
    // Below 2^53 every whole f64 is an exact i64, and `Display` writes it as the integer; -0.0
    // is left to the formatter, which writes "-0".
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 && value.to_bits() != 1 << 63 {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "whole and below 2^53: exact as i64"
        )]
        let whole = value as i64;
        let _ = write!(out, "{whole}");
    } else {
        let _ = write!(out, "{value}");
    }
}

/// `text` with `\` and line feeds escaped, and `"` too in label values, as the format asks.
fn push_escaped(out: &mut String, text: &str, quote: bool) {
    // Searched as bytes: in UTF-8 these ASCII bytes never occur inside another character. A
    // full exposition writes tens of thousands of label values, almost none with one of them.
    let bytes = text.as_bytes();
    let found = if quote {
        memchr::memchr3(b'\\', b'\n', b'"', bytes)
    } else {
        memchr::memchr2(b'\\', b'\n', bytes)
    };
    if found.is_none() {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_the_encoder_writes_them() {
        for value in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            7.0,
            0.5,
            1e-9,
            2.5e-7,
            1e15,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            1e21,
            -3.25,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let mut out = String::new();
            push_number(&mut out, value);
            assert_eq!(out, value.to_string(), "{value:?}");
        }
    }

    #[test]
    fn escapes() {
        let mut out = String::new();
        push_escaped(&mut out, "a\\b\n\"c\"", true);
        assert_eq!(out, r#"a\\b\n\"c\""#);
        out.clear();
        push_escaped(&mut out, "a\\b\n\"c\"", false);
        assert_eq!(out, "a\\\\b\\n\"c\"");
    }
}
