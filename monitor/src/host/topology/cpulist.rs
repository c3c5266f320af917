//! The kernel's CPU-list format, as sysfs prints cpumasks (`%*pbl`): `0-3,8,10-11`.

use std::{collections::BTreeSet, fmt::Write as _};

/// A set of CPU ids, in ascending order; serialises as a JSON array of numbers.
pub type CpuSet = BTreeSet<u32>;

/// The largest CPU id [`parse_cpu_list`] accepts.
///
/// The kernel's `NR_CPUS` tops out at 8192; the bound sits well above that and exists so a
/// corrupt range such as `0-4294967295` cannot make the parser allocate gigabytes.
pub const MAX_CPU_ID: u32 = 65_535;

/// Why a CPU list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    /// Two commas in a row, or a leading or trailing comma.
    #[error("empty entry in CPU list")]
    EmptyEntry,
    /// An entry that is neither `N` nor `N-M`.
    #[error("'{0}' is not a CPU number or range")]
    NotANumber(String),
    /// A range whose end is below its start.
    #[error("CPU range '{0}' ends before it starts")]
    Reversed(String),
    /// A CPU id above [`MAX_CPU_ID`].
    #[error("CPU {0} is above the supported maximum {MAX_CPU_ID}")]
    TooLarge(u64),
}

/// Parses a kernel CPU list (`0-3,8,10-11`). Surrounding whitespace, including the trailing
/// newline sysfs writes, is ignored; an empty list is the empty set.
///
/// Only the form the kernel prints is accepted: the stride syntax (`0-15:2/4`) that boot
/// parameters allow never appears in sysfs output, so seeing it means the file is not a CPU list.
pub fn parse_cpu_list(text: &str) -> Result<CpuSet, CpuListError> {
    let text = text.trim();
    let mut set = CpuSet::new();
    if text.is_empty() {
        return Ok(set);
    }
    for entry in text.split(',') {
        if entry.is_empty() {
            return Err(CpuListError::EmptyEntry);
        }
        // A single CPU is the range from itself to itself.
        let (a, b) = entry.split_once('-').unwrap_or((entry, entry));
        let (first, last) = (cpu_id(a, entry)?, cpu_id(b, entry)?);
        if last < first {
            return Err(CpuListError::Reversed(entry.to_owned()));
        }
        set.extend(first..=last);
    }
    Ok(set)
}

fn cpu_id(digits: &str, entry: &str) -> Result<u32, CpuListError> {
    // `u32::from_str` would also take a leading '+'; the kernel never writes one.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CpuListError::NotANumber(entry.to_owned()));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| CpuListError::TooLarge(u64::MAX))?;
    match u32::try_from(value) {
        Ok(id) if id <= MAX_CPU_ID => Ok(id),
        _ => Err(CpuListError::TooLarge(value)),
    }
}

/// Formats a set in the kernel's compact form, so messages and tables show CPUs the way
/// `lscpu` and sysfs do.
#[must_use]
pub fn format_cpu_list(set: &CpuSet) -> String {
    let mut out = String::new();
    let mut ids = set.iter().copied().peekable();
    while let Some(first) = ids.next() {
        let mut last = first;
        while ids.peek() == Some(&(last + 1)) {
            last += 1;
            ids.next();
        }
        if !out.is_empty() {
            out.push(',');
        }
        if first == last {
            let _ = write!(out, "{first}");
        } else {
            let _ = write!(out, "{first}-{last}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u32]) -> CpuSet {
        ids.iter().copied().collect()
    }

    #[test]
    fn parses_the_kernel_forms() {
        assert_eq!(parse_cpu_list("0").unwrap(), set(&[0]));
        assert_eq!(parse_cpu_list("0-3").unwrap(), set(&[0, 1, 2, 3]));
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n").unwrap(),
            set(&[0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5-5").unwrap(), set(&[5]));
        assert_eq!(parse_cpu_list("4,2").unwrap(), set(&[2, 4]));
    }

    #[test]
    fn empty_text_is_the_empty_set() {
        assert!(parse_cpu_list("").unwrap().is_empty());
        assert!(parse_cpu_list("\n").unwrap().is_empty());
        assert!(parse_cpu_list("  ").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_lists() {
        assert_eq!(parse_cpu_list("0,,2"), Err(CpuListError::EmptyEntry));
        assert_eq!(parse_cpu_list(",1"), Err(CpuListError::EmptyEntry));
        assert_eq!(parse_cpu_list("1,"), Err(CpuListError::EmptyEntry));
        assert_eq!(
            parse_cpu_list("0-3,x"),
            Err(CpuListError::NotANumber("x".into()))
        );
        assert_eq!(
            parse_cpu_list("3-"),
            Err(CpuListError::NotANumber("3-".into()))
        );
        assert_eq!(
            parse_cpu_list("-3"),
            Err(CpuListError::NotANumber("-3".into()))
        );
        assert_eq!(
            parse_cpu_list("1-2-3"),
            Err(CpuListError::NotANumber("1-2-3".into()))
        );
        assert_eq!(
            parse_cpu_list("+1"),
            Err(CpuListError::NotANumber("+1".into()))
        );
        assert_eq!(
            parse_cpu_list("0, 1"),
            Err(CpuListError::NotANumber(" 1".into()))
        );
        assert_eq!(
            parse_cpu_list("0-15:2/4"),
            Err(CpuListError::NotANumber("0-15:2/4".into()))
        );
        assert_eq!(
            parse_cpu_list("7-3"),
            Err(CpuListError::Reversed("7-3".into()))
        );
        assert_eq!(
            parse_cpu_list("0-4294967295"),
            Err(CpuListError::TooLarge(4_294_967_295))
        );
        assert_eq!(
            parse_cpu_list("99999999999999999999999"),
            Err(CpuListError::TooLarge(u64::MAX))
        );
        assert_eq!(parse_cpu_list("65536"), Err(CpuListError::TooLarge(65_536)));
        assert_eq!(parse_cpu_list("65535").unwrap(), set(&[65_535]));
    }

    #[test]
    fn formats_back_to_the_kernel_form() {
        for text in ["", "0", "0-1", "0-3,8,10-11", "4-7,12-14", "1,3,5"] {
            assert_eq!(format_cpu_list(&parse_cpu_list(text).unwrap()), text);
        }
    }
}
