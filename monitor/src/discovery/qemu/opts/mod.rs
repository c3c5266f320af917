//! QEMU's two option syntaxes, normalised to one ordered key/value list.
//!
//! * key=value (`QemuOpts`/keyval): comma separated, `,,` is a literal comma, an optional
//!   implied first key (`-machine q35,accel=kvm` means `type=q35`), bare `flag` means
//!   `flag=on` and bare `noflag` means `flag=off`.
//! * JSON (`-device '{"driver":"virtio-blk-pci",...}'`), which libvirt uses for `-blockdev`,
//!   `-device`, `-netdev` and `-object` since 7.x. Nested objects and arrays are flattened into
//!   QEMU's dotted keyval form (`cache.direct`, `host-nodes.0`) and scalars become the text the
//!   key=value syntax would carry (`true` → `on`), so both syntaxes give the same model.

use serde::ser::{Serialize, SerializeMap, Serializer};

mod json;

use json::parse_json_object;

/// Ordered properties of one option. Keys may repeat (QEMU's list syntax); lookups take the
/// last value, as QEMU does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props(Vec<(String, String)>);

impl Props {
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[must_use]
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(parse_bool)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((key.into(), value.into()));
    }

    /// Removes every occurrence of `key` and returns the last value.
    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        let mut found = None;
        self.0.retain_mut(|(k, v)| {
            if k == key {
                found = Some(std::mem::take(v));
                false
            } else {
                true
            }
        });
        found
    }

    /// Removes every occurrence of `key` and returns all values in order.
    pub(crate) fn take_all(&mut self, key: &str) -> Vec<String> {
        let mut found = Vec::new();
        self.0.retain_mut(|(k, v)| {
            if k == key {
                found.push(std::mem::take(v));
                false
            } else {
                true
            }
        });
        found
    }

    /// Removes the keys below `prefix.` and returns them with the prefix stripped.
    pub(crate) fn take_prefixed(&mut self, prefix: &str) -> Props {
        let mut out = Props::default();
        self.0.retain_mut(|(k, v)| {
            match k
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
            {
                Some(rest) => {
                    out.push(rest, std::mem::take(v));
                    false
                }
                None => true,
            }
        });
        out
    }
}

impl Serialize for Props {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// QEMU accepts these spellings for booleans in both syntaxes.
#[must_use]
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// Reads one value up to an unescaped comma; `,,` stands for `,`. Returns the value and the
/// rest after the separating comma.
fn take_value(s: &str) -> (String, &str) {
    let mut value = String::new();
    let mut rest = s;
    loop {
        match rest.find(',') {
            None => {
                value.push_str(rest);
                return (value, "");
            }
            Some(i) => {
                value.push_str(&rest[..i]);
                if rest[i + 1..].starts_with(',') {
                    value.push(',');
                    rest = &rest[i + 2..];
                } else {
                    return (value, &rest[i + 1..]);
                }
            }
        }
    }
}

/// Splits on unescaped commas, turning `,,` into `,` (used where QEMU has its own element
/// grammar, like `-cpu`'s `+feature`).
#[must_use]
pub fn split_elements(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (value, next) = take_value(rest);
        out.push(value);
        rest = next;
    }
    out
}

/// Parses the key=value syntax. Never fails: QEMU would reject some inputs this accepts, but a
/// monitor only needs to read what a running QEMU already accepted.
#[must_use]
pub fn parse_keyval(s: &str, implied: Option<&str>) -> Props {
    let mut props = Props::default();
    let mut rest = s;
    let mut first = true;
    while !rest.is_empty() {
        let name_len = rest.find(['=', ',']).unwrap_or(rest.len());
        let has_value = rest[name_len..].starts_with('=');
        match (first, implied, has_value) {
            (true, Some(key), false) => {
                let (value, next) = take_value(rest);
                props.push(key, value);
                rest = next;
            }
            (_, _, true) => {
                let key = &rest[..name_len];
                let (value, next) = take_value(&rest[name_len + 1..]);
                props.push(key, value);
                rest = next;
            }
            (_, _, false) => {
                let name = &rest[..name_len];
                match name.strip_prefix("no").filter(|n| !n.is_empty()) {
                    Some(flag) => props.push(flag, "off"),
                    None if !name.is_empty() => props.push(name, "on"),
                    None => {}
                }
                rest = rest.get(name_len + 1..).unwrap_or("");
            }
        }
        first = false;
    }
    props
}

/// Parses an option argument that may be JSON (when it starts with `{`, or `[` for a
/// malformed one) or key=value.
pub fn parse_props(s: &str, implied: Option<&str>) -> Result<Props, String> {
    if s.trim_start().starts_with(['{', '[']) {
        parse_json_object(s)
    } else {
        Ok(parse_keyval(s, implied))
    }
}

/// QEMU's size syntax: a number with an optional fraction and an optional binary suffix
/// (`B`, `K`, `M`, `G`, `T`, `P`, `E`, any case). Without a suffix the value is in
/// `default_unit` bytes (MiB for `-m`, bytes elsewhere).
#[must_use]
pub fn parse_size(s: &str, default_unit: u64) -> Option<u64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok()?.checked_mul(default_unit);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let unit: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" => default_unit,
        "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        "e" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.len() > 18 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let mut bytes = whole.checked_mul(u128::from(unit))?;
    if !fraction.is_empty() {
        let scale = 10u128.pow(u32::try_from(fraction.len()).ok()?);
        bytes += fraction.parse::<u128>().ok()? * u128::from(unit) / scale;
    }
    u64::try_from(bytes).ok()
}

/// A comma-free list of numbers and ranges as QEMU's `host-nodes=0-3`, capped so garbage like
/// `0-4294967295` cannot allocate gigabytes.
pub fn parse_ranges(values: &[String], out: &mut Vec<u32>) -> Result<(), String> {
    const MAX_ITEMS: usize = 4096;
    for value in values {
        let (lo, hi) = value.split_once('-').unwrap_or((value, value));
        let lo: u32 = lo.trim().parse().map_err(|_| format!("\"{value}\""))?;
        let hi: u32 = hi.trim().parse().map_err(|_| format!("\"{value}\""))?;
        if hi < lo || (hi - lo) as usize >= MAX_ITEMS - out.len().min(MAX_ITEMS) {
            return Err(format!("\"{value}\""));
        }
        out.extend(lo..=hi);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &Props) -> Vec<(&str, &str)> {
        p.iter().collect()
    }

    #[test]
    fn keyval_with_implied_key_escapes_and_flags() {
        let p = parse_keyval("pc-q35-7.2,accel=kvm,usb=off", Some("type"));
        assert_eq!(
            pairs(&p),
            [("type", "pc-q35-7.2"), ("accel", "kvm"), ("usb", "off")]
        );

        let p = parse_keyval("file=/a,,b.img,format=raw", None);
        assert_eq!(p.get("file"), Some("/a,b.img"));

        let p = parse_keyval("my,,vm,debug-threads=on", Some("guest"));
        assert_eq!(p.get("guest"), Some("my,vm"));

        let p = parse_keyval("socket,id=x,server,nowait", Some("backend"));
        assert_eq!(p.get("server"), Some("on"));
        assert_eq!(p.get("wait"), Some("off"));

        // The implied key applies only to the first element.
        let p = parse_keyval("cpus=2,4", Some("cpus"));
        assert_eq!(pairs(&p), [("cpus", "2"), ("4", "on")]);
    }

    #[test]
    fn keyval_edge_cases_do_not_panic() {
        for s in [
            "", ",", ",,", "=", "==", "a=", "=b", ",a=1,", "no", "a,,", "é=ü,ß",
        ] {
            let _ = parse_keyval(s, Some("x"));
            let _ = parse_keyval(s, None);
        }
        assert_eq!(parse_keyval("a=1,", None).len(), 1);
        assert_eq!(parse_keyval("a=x,,", None).get("a"), Some("x,"));
    }

    #[test]
    fn json_is_flattened_in_order() {
        let p = parse_props(
            r#"{"node-name":"n","cache":{"direct":true,"no-flush":false},"host-nodes":[1,2],"backing":null,"size":224395264}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            pairs(&p),
            [
                ("node-name", "n"),
                ("cache.direct", "on"),
                ("cache.no-flush", "off"),
                ("host-nodes.0", "1"),
                ("host-nodes.1", "2"),
                ("backing", "null"),
                ("size", "224395264"),
            ]
        );
        assert!(parse_props("{\"driver\":", None).is_err());
        assert!(parse_props("{]", None).is_err());
        assert!(parse_props(" [1]", None).is_err());
        let deep = "[".repeat(10_000);
        assert!(parse_props(&format!("{{\"a\":{deep}"), None).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096", 1 << 20), Some(4 << 30));
        assert_eq!(parse_size("219136k", 1 << 20), Some(219_136 << 10));
        assert_eq!(parse_size("4G", 1 << 20), Some(4 << 30));
        assert_eq!(parse_size("1.5G", 1), Some(3 << 29));
        assert_eq!(parse_size("512", 1), Some(512));
        assert_eq!(parse_size("0x1000", 1), Some(4096));
        assert_eq!(parse_size("99999999999999T", 1), None);
        for bad in ["", "k", "1x", "-1", "1.2.3", "1..5", ".5G", "１"] {
            assert_eq!(parse_size(bad, 1), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let mut out = Vec::new();
        parse_ranges(&["0-2".into(), "5".into()], &mut out).unwrap();
        assert_eq!(out, [0, 1, 2, 5]);
        assert!(parse_ranges(&["0-4294967295".into()], &mut Vec::new()).is_err());
        assert!(parse_ranges(&["3-1".into()], &mut Vec::new()).is_err());
        assert!(parse_ranges(&["x".into()], &mut Vec::new()).is_err());
    }
}
