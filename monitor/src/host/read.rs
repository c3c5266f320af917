//! Defensive readers for kernel pseudo-files. Their contents are not trusted: every reader is
//! bounded in size, tolerates garbage and returns `None` for anything it does not understand,
//! so that whatever depends on the value (a tuning rule, say) stays quiet instead of acting on
//! a guess.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// More than any sysfs attribute, `/proc/meminfo` or `/proc/vmstat` needs.
const MAX_FILE_BYTES: u64 = 256 * 1024;
/// CPU and node numbers above this are treated as garbage (Linux's `NR_CPUS` tops out at 8192).
pub(crate) const MAX_CPU: u32 = 65_535;
/// Directory entries looked at when enumerating `cpuN`/`nodeN`.
const MAX_ENTRIES: usize = 100_000;

/// Bytes room is made for before the first read of a pseudo-file: a `/proc` or sysfs file is
/// generated whole on its first read, so a buffer that holds it takes one read and one more to
/// see the end, where one grown from empty takes six to eight (measured at 100 VMs: 2,000 reads
/// a second down to 900).
pub(crate) const FIRST_READ: usize = 4096;

/// The file's first `limit` bytes as text (invalid UTF-8 replaced); `None` when unreadable.
#[must_use]
pub fn read_prefix(path: &Path, limit: u64) -> Option<String> {
    let room = usize::try_from(limit).map_or(FIRST_READ, |limit| limit.min(FIRST_READ));
    let mut bytes = Vec::with_capacity(room + 1);
    File::open(path)
        .ok()?
        .take(limit)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// A whole small pseudo-file.
#[must_use]
pub fn read_text(path: &Path) -> Option<String> {
    read_prefix(path, MAX_FILE_BYTES)
}

/// The first line, trimmed; `None` when unreadable or empty.
#[must_use]
pub fn read_line(path: &Path) -> Option<String> {
    let text = read_prefix(path, 4096)?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

#[must_use]
pub fn read_u64(path: &Path) -> Option<u64> {
    read_line(path)?.parse().ok()
}

/// A module parameter that is a boolean: `Y`/`N` for `bool` parameters, `1`/`0` for the
/// older `int` spelling (`kvm_amd`'s `avic` was one).
#[must_use]
pub fn read_bool_param(path: &Path) -> Option<bool> {
    parse_bool_param(&read_line(path)?)
}

#[must_use]
pub fn parse_bool_param(s: &str) -> Option<bool> {
    match s.trim() {
        "Y" | "y" | "1" => Some(true),
        "N" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// The selected word of a sysfs choice list such as `always [madvise] never`: exactly one
/// bracketed word, else `None`.
#[must_use]
pub fn bracketed_choice(text: &str) -> Option<String> {
    let mut chosen = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix('[')?.strip_suffix(']'));
    let choice = chosen.next()?;
    let valid = !choice.is_empty()
        && choice.len() <= 64
        && choice
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'_' || b == b'-');
    (valid && chosen.next().is_none()).then(|| choice.to_owned())
}

/// A kernel CPU or node list (`0-3,8,10-11`) as a sorted list; `None` for anything the
/// kernel would not print (see [`super::topology::parse_cpu_list`], the one parser of the
/// format).
#[must_use]
pub fn cpu_list(text: &str) -> Option<Vec<u32>> {
    super::topology::parse_cpu_list(text)
        .ok()
        .map(|set| set.into_iter().collect())
}

/// `Key:   1234 kB` lines as in `/proc/meminfo`, or `key 1234` as in `/proc/vmstat`: the
/// number for `key`, times 1024 when the line says `kB`.
#[must_use]
pub fn field_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        // `MemTotal` must not match `MemTotalX`.
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let mut words = rest.split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next() {
            None => Some(n),
            Some("kB") => n.checked_mul(1024),
            Some(_) => None,
        }
    })
}

/// The numbers `N` of the entries `<prefix>N` in `dir`, sorted; `None` when `dir` cannot be
/// listed.
#[must_use]
pub fn numbered_entries(dir: &Path, prefix: &str) -> Option<Vec<u32>> {
    let mut out: Vec<u32> = std::fs::read_dir(dir)
        .ok()?
        .take(MAX_ENTRIES)
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let digits = name.to_str()?.strip_prefix(prefix)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok().filter(|n| *n <= MAX_CPU)
        })
        .collect();
    out.sort_unstable();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_lists_and_fields() {
        assert_eq!(
            bracketed_choice("always [madvise] never\n").as_deref(),
            Some("madvise")
        );
        assert_eq!(
            bracketed_choice("always defer [defer+madvise] madvise never").as_deref(),
            Some("defer+madvise")
        );
        assert_eq!(bracketed_choice("[always] [never]"), None);
        assert_eq!(bracketed_choice("always never"), None);
        assert_eq!(bracketed_choice("[]"), None);
        assert_eq!(bracketed_choice("[a;rm -rf]"), None);

        assert_eq!(cpu_list("0-3,8,10-11\n"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        // The kernel never puts spaces in a list: one that has them is not a CPU list.
        assert_eq!(cpu_list("0, 1"), None);
        assert_eq!(cpu_list(""), Some(vec![]));
        assert_eq!(cpu_list("3-1"), None);
        assert_eq!(cpu_list("0-4294967295"), None);
        assert_eq!(cpu_list("x"), None);
        assert_eq!(cpu_list("1,,2"), None);

        let meminfo = "MemTotal:       16384 kB\nMemTotalX: 1 kB\nHugePages_Total:      8\n";
        assert_eq!(field_value(meminfo, "MemTotal"), Some(16384 * 1024));
        assert_eq!(field_value(meminfo, "HugePages_Total"), Some(8));
        assert_eq!(field_value("pswpin 42\n", "pswpin"), Some(42));
        assert_eq!(field_value("pswpin -1\n", "pswpin"), None);
        assert_eq!(
            field_value("MemTotal: 99999999999999999999 kB", "MemTotal"),
            None
        );
        assert_eq!(field_value("MemTotal: 1 MB", "MemTotal"), None);

        assert_eq!(parse_bool_param("Y"), Some(true));
        assert_eq!(parse_bool_param("0"), Some(false));
        assert_eq!(parse_bool_param("auto"), None);
    }
}
