//! Secrets are taken out of everything a recording stores. Recordings are handed to colleagues
//! and attached to tickets, while texts taken from QEMU command lines (drive files, options
//! quoted as evidence) can carry passwords: `-object secret,data=…`, `password=` of network
//! disks, an RBD `key=`, a `user:password@` in a URL, `"password": "…"` in a `json:` filename.
//! Every string of a frame, keys included, that has a byte a secret needs goes through
//! [`secrets`] once it is written ([`to_json`]); what looks like a secret becomes [`REDACTED`].

use std::{borrow::Cow, io};

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

/// What a secret value is replaced with.
pub const REDACTED: &str = "(redacted)";

/// `item` as compact JSON with every string, keys included, redacted, and every float but
/// absolute times to [`SIGNIFICANT_DIGITS`].
pub fn to_json(item: &impl Serialize) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 << 10);
    to_json_into(item, &mut out)?;
    Ok(out)
}

/// [`to_json`] into `out`, after what it holds. A writer that keeps its buffer from one window
/// to the next writes a window of a hundred VMs (over a megabyte) without growing it again.
///
/// The JSON is written as `serde_json` writes it, then the strings that can hold a secret are
/// found in it and redacted where they stand. A secret needs an `=`, an `@` or a quote, and in
/// compact JSON those bytes (a quote escaped) occur only inside strings, so one vectorized
/// search finds the few strings to look at. At a hundred VMs a window has some sixty thousand
/// strings, almost all of them keys and names without those bytes: holding each back to look at
/// it as it was written added three quarters of the time writing the document takes.
pub fn to_json_into(item: &impl Serialize, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let from = out.len();
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, Rounding::default());
    item.serialize(&mut serializer)?;
    redact_written(out, from).map_err(serde_json::Error::io)
}

/// Redacts in place every string of the compact JSON in `out[from..]` in which [`secrets`]
/// finds a secret; the others are left byte for byte.
fn redact_written(out: &mut Vec<u8>, from: usize) -> io::Result<()> {
    let mut at = from;
    // `=` and `@` occur in JSON only inside strings, and so does a backslash: the escape of a
    // quote (and of other characters, which only costs a look at their string). The search
    // starts outside any string, and goes on after the closing quote of each string it looked
    // at, so the byte it finds is the first of its string to be one of these: no escaped quote
    // comes before it, and the nearest quote before it opens the string.
    while let Some(hit) = memchr::memchr3(b'=', b'@', b'\\', &out[at..]).map(|i| at + i) {
        let open = memchr::memrchr(b'"', &out[at..hit])
            .map(|q| at + q)
            .ok_or_else(|| io::Error::other("a secret's marker outside any JSON string"))?;
        let close = closing_quote(out, hit)?;
        let text: Cow<'_, str> = serde_json::from_slice(&out[open..=close])?;
        let Cow::Owned(clean) = secrets(&text) else {
            at = close + 1;
            continue;
        };
        let written = serde_json::to_vec(&clean)?;
        at = open + written.len();
        out.splice(open..=close, written);
    }
    Ok(())
}

/// The quote closing the JSON string that holds the byte at `inside`, which is not the second
/// byte of an escape.
fn closing_quote(json: &[u8], inside: usize) -> io::Result<usize> {
    let mut i = inside;
    while i < json.len() {
        match json[i] {
            // An escape: the byte after it is part of it (`\"`, `\\`, `\u…`).
            b'\\' => i += 2,
            b'"' => return Ok(i),
            _ => i += 1,
        }
    }
    Err(io::Error::other("a JSON string without its closing quote"))
}

/// Significant digits a recording keeps of a float. The model's floats are ratios of counts
/// (rates, shares, steal); their seventeen printed digits are mostly noise that changes every
/// window and compresses badly (a quarter of a recording's bytes). Seven digits, a relative
/// error below 5·10⁻⁷, are more than any view, report or export shows. Absolute times (the
/// model names them `*_unix_seconds`) need all their digits and are written exactly.
pub const SIGNIFICANT_DIGITS: i32 = 7;

/// How the model names a float that is an absolute time.
const ABSOLUTE_TIME_SUFFIX: &str = "_unix_seconds";

/// `value` to [`SIGNIFICANT_DIGITS`], as the nearest double to that decimal, so that it prints
/// short. The scaled value is rounded to an integer, which with an exact power of ten (up to
/// 10²²) gives the decimal correctly rounded by one IEEE operation. Outside that range (below
/// 10⁻¹⁶, or from 10²⁹ on) the value is kept as it is; an exact half may round either way.
fn rounded(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    // The decimal exponent by comparison with the powers of ten rather than `log10`: exact at
    // the powers themselves, and a little cheaper for the thousands of floats of a window.
    let decades_up_to = DECADES.partition_point(|decade| *decade <= value.abs());
    let Some(exponent) = decades_up_to
        .checked_sub(1)
        .filter(|i| *i < DECADES.len() - 1)
    else {
        return value;
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        reason = "an index into a table of 46"
    )]
    let shift = SIGNIFICANT_DIGITS - 1 - (exponent as i32 + LOWEST_DECADE);
    let power = EXACT_POWERS[shift.unsigned_abs() as usize];
    if shift >= 0 {
        (value * power).round() / power
    } else {
        (value / power).round() * power
    }
}

/// The exponent of [`DECADES`]' first power of ten.
const LOWEST_DECADE: i32 = -16;

/// The powers of ten a value to round may lie between: from 10⁻¹⁶ (scaled by 10²² to seven
/// digits) to 10²⁹ (scaled by 10⁻²²).
const DECADES: [f64; 46] = [
    1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3,
    1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
    1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29,
];

/// The powers of ten a double holds exactly.
const EXACT_POWERS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Writes compact JSON as [`CompactFormatter`] does, but with floats rounded ([`rounded`]) unless
/// the key before them names an absolute time.
#[derive(Default)]
struct Rounding {
    /// Whether an object key is being written.
    in_key: bool,
    /// Whether the last object key written names an absolute time: the value being written is
    /// kept exact.
    absolute_time: bool,
}

impl Formatter for Rounding {
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.in_key = true;
        self.absolute_time = false;
        CompactFormatter.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.in_key = false;
        CompactFormatter.end_object_key(writer)
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if self.in_key {
            // A key with an escaped character has several fragments; the last one decides
            // (the suffix has no character to escape).
            self.absolute_time = fragment.ends_with(ABSOLUTE_TIME_SUFFIX);
        }
        writer.write_all(fragment.as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        if self.in_key {
            self.absolute_time = false;
        }
        CompactFormatter.write_char_escape(writer, char_escape)
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        let value = if self.absolute_time {
            value
        } else {
            rounded(value)
        };
        CompactFormatter.write_f64(writer, value)
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }
}

/// `text` with the values of secret-looking options and URL passwords replaced.
#[must_use]
pub fn secrets(text: &str) -> Cow<'_, str> {
    if !has_secret_marker(text) {
        return Cow::Borrowed(text);
    }
    // Built only once a word changes, from the words before it.
    let mut out: Option<String> = None;
    let mut at = 0;
    for word in text.split_inclusive(char::is_whitespace) {
        // Texts with a marker are mostly prose around it (libvirt XML quoted in advice, a
        // command line): a word without one has no value to redact.
        let clean = if has_secret_marker(word) {
            word_secrets(word)
        } else {
            Cow::Borrowed(word)
        };
        match (&mut out, clean) {
            (Some(out), clean) => out.push_str(&clean),
            (None, Cow::Owned(clean)) => {
                let mut changed = String::with_capacity(text.len() + REDACTED.len());
                changed.push_str(&text[..at]);
                changed.push_str(&clean);
                out = Some(changed);
            }
            (None, Cow::Borrowed(_)) => {}
        }
        at += word.len();
    }
    out.map_or(Cow::Borrowed(text), Cow::Owned)
}

/// Whether `text` has a byte that every secret [`secrets`] finds comes with: the `=` of an
/// option, the `@` of a URL's credentials, the `"` of a JSON key.
fn has_secret_marker(text: &str) -> bool {
    text.bytes().any(|b| matches!(b, b'=' | b'@' | b'"'))
}

/// One whitespace-free word (with its trailing whitespace).
fn word_secrets(word: &str) -> Cow<'_, str> {
    // In a QEMU `secret` object, `data` (and its `iv`) is the secret itself.
    let secret_object = word.split(',').any(|part| {
        part == "secret" || part.trim_end() == "secret" || part.ends_with("qom-type=secret")
    }) || word.contains("\"qom-type\":\"secret\"");
    let bytes = word.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let value_at = match bytes[i] {
            b'=' => Some(i + 1),
            // "key": "value" (JSON in a `json:` filename).
            b'"' if i > 0 && key_before(word, i).is_some() => json_value_start(bytes, i + 1),
            b'@' => url_password(word, i).map(|(start, _)| start),
            _ => None,
        };
        let key = match bytes[i] {
            b'=' | b'"' => key_before(word, i),
            _ => None,
        };
        let secret = match (bytes[i], key) {
            (b'@', _) => value_at.is_some(),
            (_, Some(key)) => is_secret_key(key, secret_object),
            _ => false,
        };
        if let (true, Some(start)) = (secret, value_at) {
            let end = match bytes[i] {
                b'@' => i,
                b'"' => json_string_end(bytes, start),
                // A quoted option value: QEMU keeps the quotes as part of it, so the secret
                // runs through the closing quote and on to the next separator.
                _ if bytes.get(start) == Some(&b'"') => {
                    let close = json_string_end(bytes, start + 1);
                    value_end(bytes, (close + 1).min(bytes.len()))
                }
                _ => value_end(bytes, start),
            };
            if end > start {
                out.push_str(&word[copied..start]);
                out.push_str(REDACTED);
                copied = end;
                i = end.max(i + 1);
                continue;
            }
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(word);
    }
    out.push_str(&word[copied..]);
    Cow::Owned(out)
}

/// The option name ending just before `at` (an `=`, or the closing quote of a JSON key).
fn key_before(word: &str, at: usize) -> Option<&str> {
    let head = &word[..at];
    let start = head
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .map_or(0, |p| p + 1);
    let key = &head[start..];
    // A JSON key must be quoted: `"key"` then `:`.
    if word.as_bytes()[at] == b'"' {
        let opened = start > 0 && head.as_bytes()[start - 1] == b'"';
        let closes = word[at + 1..].trim_start().starts_with(':');
        if !(opened && closes && at > 0 && word.as_bytes()[at - 1] != b'"') {
            return None;
        }
        // `at` is the closing quote itself here.
        return (!key.is_empty()).then_some(key);
    }
    (!key.is_empty()).then_some(key)
}

/// After a JSON key's closing quote: where the string value starts (past `: "`).
fn json_value_start(bytes: &[u8], mut i: usize) -> Option<usize> {
    while i < bytes.len() && (bytes[i] == b':' || bytes[i].is_ascii_whitespace()) {
        i += 1;
    }
    (i < bytes.len() && bytes[i] == b'"').then_some(i + 1)
}

/// Where a JSON string starting at `start` ends: its closing quote (or the end of the word).
fn json_string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Where an option value ends: at the next separator of QEMU options, RBD filenames, JSON or
/// URL query strings.
fn value_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|b| {
            matches!(b, b',' | b':' | b'"' | b'}' | b'&' | b';' | b'\'') || b.is_ascii_whitespace()
        })
        .map_or(bytes.len(), |p| start + p)
}

/// For an `@` ending the user info of a URL (`scheme://user:password@host`): the span of the
/// password.
fn url_password(word: &str, at: usize) -> Option<(usize, usize)> {
    let scheme_end = word[..at].rfind("://")? + 3;
    let userinfo = &word[scheme_end..at];
    if userinfo.contains('/') {
        return None;
    }
    let colon = userinfo.find(':')?;
    Some((scheme_end + colon + 1, at))
}

/// Option names whose values are secrets; names that only refer to a secret object by id
/// (`password-secret=sec0`) are redacted too, which costs nothing.
fn is_secret_key(key: &str, secret_object: bool) -> bool {
    let key = key.to_ascii_lowercase();
    let last = key.rsplit(['.', '-', '_']).next().unwrap_or(&key);
    if secret_object && matches!(last, "data" | "iv") {
        return true;
    }
    [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
    ]
    .iter()
    .any(|word| key.contains(word))
        || matches!(last, "key" | "pass" | "pw" | "pwd" | "auth")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: &str) {
        assert_eq!(secrets(text), expected, "{text}");
    }

    #[test]
    fn secrets_of_qemu_options_are_redacted() {
        check(
            "-object secret,id=sec0,data=c2VjcmV0IQ==,format=base64",
            "-object secret,id=sec0,data=(redacted),format=base64",
        );
        check(
            "secret,id=sec0,data=letmein,iv=AAAA",
            "secret,id=sec0,data=(redacted),iv=(redacted)",
        );
        check(
            "rbd:pool/image:id=admin:key=AQBmZm9vYmFyCg==:auth_supported=cephx",
            "rbd:pool/image:id=admin:key=(redacted):auth_supported=cephx",
        );
        check(
            "driver=iscsi,user=me,password=hunter2,transport=tcp",
            "driver=iscsi,user=me,password=(redacted),transport=tcp",
        );
        check(
            "-vnc :0,password-secret=vnc0",
            "-vnc :0,password-secret=(redacted)",
        );
        check(
            "-spice port=5900,password=s3cr3t",
            "-spice port=5900,password=(redacted)",
        );
        check(
            "file.driver=ssh,file.user=me,file.password=pw1,file.host=h",
            "file.driver=ssh,file.user=me,file.password=(redacted),file.host=h",
        );
    }

    #[test]
    fn url_passwords_and_json_filenames_are_redacted() {
        check(
            "https://alice:topsecret@images.example/disk.qcow2",
            "https://alice:(redacted)@images.example/disk.qcow2",
        );
        check(
            r#"json:{"file.driver":"http","file.password":"pw2","file.url":"x"}"#,
            r#"json:{"file.driver":"http","file.password":"(redacted)","file.url":"x"}"#,
        );
        check(
            "https://images.example/a?token=abc&x=1",
            "https://images.example/a?token=(redacted)&x=1",
        );
    }

    #[test]
    fn ordinary_texts_are_kept_as_they_are() {
        for text in [
            "web-1",
            "cache=none,aio=native",
            "/var/lib/libvirt/images/db.qcow2",
            "user@host",
            "data=abc",
            "https://images.example/disk.qcow2",
            "keyboard=us",
            "",
        ] {
            assert!(matches!(secrets(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn every_string_of_a_document_is_redacted() {
        let document = serde_json::json!({
            "vms": [{"drives": [{"file": "rbd:p/i:key=abc"}], "n": 1}],
            "note": "password=x",
            "password=key": ["a\"b\\c\n\u{1}/\u{85}", "-object secret,id=s,data=\"q\"z"],
        });
        let v: serde_json::Value = serde_json::from_slice(&to_json(&document).unwrap()).unwrap();
        assert_eq!(v["vms"][0]["drives"][0]["file"], "rbd:p/i:key=(redacted)");
        assert_eq!(v["vms"][0]["n"], 1);
        assert_eq!(v["note"], "password=(redacted)");
        // Escaped characters come back as they were, and a key is a string like any other.
        assert_eq!(
            v["password=(redacted)"],
            serde_json::json!([
                "a\"b\\c\n\u{1}/\u{85}",
                "-object secret,id=s,data=(redacted)"
            ])
        );
    }

    /// The strings with a secret are found in the written JSON whatever comes before them:
    /// strings ending in an escaped backslash or quote, escaped quotes around a JSON key, and
    /// bytes already in the buffer, which are left as they are.
    #[test]
    fn secrets_are_found_after_escapes_and_after_what_the_buffer_held() {
        let document = (
            ["a\\", "\\\"", "password=x", "\\"],
            "{\"user\":\"me\",\"password\":\"p\\\"w\"}",
            ["\\\\=", "a@b", "http://me:pw@host/"],
        );
        let held = b"held=1 \"password=x";
        let mut out = held.to_vec();
        to_json_into(&document, &mut out).unwrap();
        let (before, written) = out.split_at(held.len());
        assert_eq!(before, held);
        let theirs = String::from_utf8(serde_json::to_vec(&document).unwrap()).unwrap();
        let expected = theirs
            .replace("password=x", "password=(redacted)")
            .replace(r#"\"p\\\"w\""#, r#"\"(redacted)\""#)
            .replace("me:pw@", "me:(redacted)@");
        assert_ne!(expected, theirs);
        assert_eq!(String::from_utf8(written.to_vec()).unwrap(), expected);
    }

    /// Written as `serde_json` writes compact JSON, but for the secrets and the floats' digits:
    /// the fixture snapshot, and maps keyed by numbers and bools (whose keys `serde_json` writes
    /// as strings).
    #[test]
    fn the_json_is_what_serde_json_writes() {
        let snapshot = crate::testing::fixture::snapshot();
        let ours: serde_json::Value = serde_json::from_slice(&to_json(&snapshot).unwrap()).unwrap();
        let mut theirs = serde_json::to_value(&snapshot).unwrap();
        round_floats(&mut theirs);
        assert_eq!(ours, theirs);
        let numbered: std::collections::BTreeMap<u32, &str> =
            [(7, "password=x"), (4_000_000_000, "b")].into();
        let signed: std::collections::BTreeMap<i64, u8> = [(-3, 1), (i64::MAX, 2)].into();
        let flags: std::collections::BTreeMap<bool, u128> = [(true, u128::MAX)].into();
        // Strings with and without characters to escape, written byte for byte as serde_json
        // writes them; a secret after an escape too.
        let texts = [
            "plain ünïcode",
            "tab\there \"quoted\" \\ \u{1}\u{7f}",
            "",
            "\"json\"\tpassword=x",
        ];
        let document = (numbered, signed, flags, [1.5_f64, -0.0], true, texts);
        let ours = String::from_utf8(to_json(&document).unwrap()).unwrap();
        let theirs = String::from_utf8(serde_json::to_vec(&document).unwrap()).unwrap();
        assert_eq!(ours, theirs.replace("password=x", "password=(redacted)"));
    }

    fn round_floats(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(n) if n.is_f64() => {
                *value = serde_json::json!(rounded(n.as_f64().unwrap()));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(round_floats),
            serde_json::Value::Object(map) => map.values_mut().for_each(round_floats),
            _ => {}
        }
    }

    /// Floats are written with at most seven significant digits, within half a unit of the
    /// seventh; those too small or too large to scale exactly are kept as they are.
    #[test]
    fn floats_are_written_to_seven_significant_digits() {
        let written = |value: f64| String::from_utf8(to_json(&value).unwrap()).unwrap();
        assert_eq!(written(106_021.761_816_731_81), "106021.8");
        assert_eq!(written(0.925_891_873_727_077_3), "0.9258919");
        assert_eq!(written(-0.001_476_262_240_264_302_3), "-0.001476262");
        assert_eq!(written(123_456_789_012.0), "123456800000.0");
        assert_eq!(written(0.0), "0.0");
        assert_eq!(written(3.0), "3.0");
        assert_eq!(written(1e-20), "1e-20");
        assert_eq!(written(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(written(f64::NAN), "null");
        // Absolute times keep every digit; the key before a value names it, not one before.
        let times = serde_json::json!({"start_unix_seconds": 1_796_426_285.155_146_1, "rate": 1_796_426_285.155_146_1});
        assert_eq!(
            String::from_utf8(to_json(&times).unwrap()).unwrap(),
            r#"{"rate":1796426000.0,"start_unix_seconds":1796426285.1551461}"#
        );
        let mut value = 0.000_012_345_678_901_234_5_f64;
        while value < 1e25 {
            for sign in [1.0, -1.0] {
                let text = written(sign * value);
                let back: f64 = text.parse().unwrap();
                assert!(
                    ((back - sign * value) / value).abs() <= 5e-7,
                    "{value} written as {text}"
                );
                let mantissa = text.trim_start_matches('-').split('e').next().unwrap();
                let digits = mantissa.trim_end_matches(".0").replace('.', "");
                let significant = digits.trim_start_matches('0').trim_end_matches('0');
                assert!(significant.len() <= 7, "{value} written as {text}");
            }
            value *= 7.389_056_098_930_65;
        }
    }
}
