//! Times as operators type them to pick a moment in a recording: `10:42` or `10:42:30` (that
//! time of day, UTC, on the recording's last day that has it), `-5m` (before the recording's
//! end), `+90s` (after its start), or a full RFC 3339 time (`2026-12-04T10:42:00Z`).

use jiff::{SignedDuration, Timestamp, civil::Time, tz::TimeZone};

/// The span of a recording, unix ns, against which relative times are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The moment `text` names, unix ns; the error says which forms are understood.
pub fn parse(text: &str, span: Span) -> Result<u64, String> {
    let text = text.trim();
    let bad = |why: &str| {
        format!(
            "'{text}' is not a time: {why} (use 10:42, 10:42:30 UTC, -5m from the end, +90s \
             from the start, or 2026-12-04T10:42:00Z)"
        )
    };
    if let Some(rest) = text.strip_prefix('-') {
        let back = duration_ns(rest).map_err(|e| bad(&e))?;
        return Ok(span.end_ns.saturating_sub(back));
    }
    if let Some(rest) = text.strip_prefix('+') {
        let on = duration_ns(rest).map_err(|e| bad(&e))?;
        return Ok(span.start_ns.saturating_add(on));
    }
    if let Ok(time) = text.parse::<Time>() {
        return time_of_day(time, span).ok_or_else(|| bad("outside the recording"));
    }
    let at: Timestamp = text.parse().map_err(|_| bad("no form matches"))?;
    u64::try_from(at.as_nanosecond()).map_err(|_| bad("before 1970"))
}

/// The range `from..=to` names, unix ns; a bound not given is the span's own.
pub fn range(from: Option<&str>, to: Option<&str>, span: Span) -> Result<(u64, u64), String> {
    let pick = |text: Option<&str>, default| text.map_or(Ok(default), |t| parse(t, span));
    Ok((pick(from, span.start_ns)?, pick(to, span.end_ns)?))
}

/// A duration such as `5m`, `90s`, `1h30m` or `2.5s`, in ns.
pub fn duration_ns(text: &str) -> Result<u64, String> {
    let d: SignedDuration = text
        .parse()
        .map_err(|e| format!("'{text}' is not a duration: {e}"))?;
    if d.is_negative() {
        return Err(format!("'{text}' is negative"));
    }
    u64::try_from(d.as_nanos()).map_err(|_| format!("'{text}' is too long"))
}

/// `time` on the last day of the recording where it falls within it, else on the day the
/// recording ends (a time before the start then reads as the start).
fn time_of_day(time: Time, span: Span) -> Option<u64> {
    let end = Timestamp::from_nanosecond(i128::from(span.end_ns)).ok()?;
    let mut day = end.to_zoned(TimeZone::UTC).date();
    for _ in 0..=366 {
        let at = day
            .to_datetime(time)
            .to_zoned(TimeZone::UTC)
            .ok()?
            .timestamp();
        let ns = u64::try_from(at.as_nanosecond()).ok()?;
        if ns <= span.end_ns {
            return (ns >= span.start_ns).then_some(ns).or(Some(span.start_ns));
        }
        day = day.yesterday().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: Span = Span {
        // 2026-12-04T10:00:00Z .. 11:00:00Z
        start_ns: 1_796_378_400_000_000_000,
        end_ns: 1_796_382_000_000_000_000,
    };
    const MINUTE: u64 = 60_000_000_000;

    #[test]
    fn relative_times_count_from_the_ends() {
        assert_eq!(parse("-5m", SPAN), Ok(SPAN.end_ns - 5 * MINUTE));
        assert_eq!(parse("+90s", SPAN), Ok(SPAN.start_ns + 90 * MINUTE / 60));
        assert_eq!(
            parse("-1h30m", SPAN),
            Ok(SPAN.start_ns.saturating_sub(30 * MINUTE))
        );
    }

    #[test]
    fn times_of_day_and_full_times() {
        assert_eq!(parse("10:42", SPAN), Ok(SPAN.start_ns + 42 * MINUTE));
        assert_eq!(
            parse("10:42:30", SPAN),
            Ok(SPAN.start_ns + 42 * MINUTE + 30_000_000_000)
        );
        assert_eq!(
            parse("2026-12-04T10:42:00Z", SPAN),
            Ok(SPAN.start_ns + 42 * MINUTE)
        );
    }

    #[test]
    fn a_range_defaults_to_the_span() {
        assert_eq!(range(None, None, SPAN), Ok((SPAN.start_ns, SPAN.end_ns)));
        assert_eq!(
            range(Some("+1m"), None, SPAN),
            Ok((SPAN.start_ns + MINUTE, SPAN.end_ns))
        );
        assert!(range(None, Some("later"), SPAN).is_err());
    }

    #[test]
    fn nonsense_says_what_is_understood() {
        let err = parse("yesterday", SPAN).unwrap_err();
        assert!(
            err.contains("'yesterday' is not a time") && err.contains("-5m"),
            "{err}"
        );
        assert!(parse("-5 parsecs", SPAN).is_err());
    }
}
