//! Compact numbers for people: rates, durations, shares. Shared by the TUI and the text report.

/// Compact rate: 950, 1.2k, 12k, 4.5M.
#[must_use]
pub fn rate(rate: f64) -> String {
    if rate >= 999_500.0 {
        format!("{:.1}M", rate / 1e6)
    } else if rate >= 9_995.0 {
        format!("{:.0}k", rate / 1e3)
    } else if rate >= 999.5 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

/// Compact duration from nanoseconds: 950ns, 2.5µs, 60µs, 1.2ms, 3.4s.
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "display only")]
pub fn duration_ns(ns: u64) -> String {
    let ns = ns as f64;
    let (value, unit) = if ns < 1e3 {
        return format!("{ns:.0}ns");
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if value < 9.95 {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.0}{unit}")
    }
}

/// Bytes in binary units: 512B, 1.5KiB, 768MiB, 24GiB.
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "display only")]
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 9.95 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// A byte rate: "9.4MiB" (the caller adds "/s").
#[must_use]
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a non-negative display value; NaN and negatives show as 0"
)]
pub fn byte_rate(per_second: f64) -> String {
    bytes(per_second.max(0.0).round() as u64)
}

/// An overcommit ratio: "1.5×", "12×", and "<0.1×" for one that would round to nothing.
#[must_use]
pub fn ratio(ratio: f64) -> String {
    if ratio > 0.0 && ratio < 0.05 {
        "<0.1×".to_owned()
    } else if ratio < 9.95 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.0}×")
    }
}

/// A share (0–1) as a percentage: "42%", "0.3%", "-" when unknown.
#[must_use]
pub fn share(share: Option<f64>) -> String {
    match share {
        None => "-".to_owned(),
        Some(s) if s > 0.0 && s < 0.01 => format!("{:.1}%", s * 100.0),
        Some(s) => format!("{:.0}%", s * 100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_keep_a_small_one_visible() {
        assert_eq!(ratio(0.004), "<0.1×");
        assert_eq!(ratio(0.0), "0.0×");
        assert_eq!(ratio(1.5), "1.5×");
        assert_eq!(ratio(12.34), "12×");
    }

    #[test]
    fn rates_are_compact() {
        assert_eq!(rate(0.4), "0");
        assert_eq!(rate(950.0), "950");
        assert_eq!(rate(1_234.0), "1.2k");
        assert_eq!(rate(99_000.0), "99k");
        assert_eq!(rate(4_500_000.0), "4.5M");
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(duration_ns(950), "950ns");
        assert_eq!(duration_ns(2_524), "2.5µs");
        assert_eq!(duration_ns(60_000), "60µs");
        assert_eq!(duration_ns(1_200_000), "1.2ms");
        assert_eq!(duration_ns(3_400_000_000), "3.4s");
    }

    #[test]
    fn bytes_are_binary() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(768 << 20), "768MiB");
        assert_eq!(bytes(24 << 30), "24GiB");
    }

    #[test]
    fn shares() {
        assert_eq!(share(None), "-");
        assert_eq!(share(Some(0.0)), "0%");
        assert_eq!(share(Some(0.003)), "0.3%");
        assert_eq!(share(Some(0.42)), "42%");
    }
}
