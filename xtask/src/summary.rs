//! Counting test outcomes from libtest's output and the skip log.
//!
//! A test that cannot run here (no /dev/kvm, not root, …) returns early and so counts as
//! "passed" for libtest; it also appends `<test name>\t<reason>` to `$KVMTOP_SKIP_LOG`. The
//! summary moves those from passed to skipped, together with `#[ignore]`d tests.

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    /// Sums every `test result: ok. N passed; M failed; K ignored; …` line (also `FAILED.`).
    pub fn from_output(output: &str) -> Self {
        let mut counts = Self::default();
        for line in output.lines().map(strip_ansi) {
            let Some((_, rest)) = line.split_once("test result: ") else {
                continue;
            };
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(number)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(number) = number.parse::<u64>() else {
                    continue;
                };
                match label {
                    "passed" => counts.passed += number,
                    "failed" => counts.failed += number,
                    "ignored" => counts.ignored += number,
                    _ => {}
                }
            }
        }
        counts
    }
}

/// Skipped tests as `(name, reason)`, from the skip log's lines.
pub fn parse_skips(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split_once('\t') {
            Some((name, reason)) => (name.trim().to_owned(), reason.trim().to_owned()),
            None => (line.trim().to_owned(), "no reason given".to_owned()),
        })
        .collect()
}

/// The final line: `N passed, M failed, K skipped`.
pub fn final_line(counts: &Counts, skips: usize) -> String {
    let skips = skips as u64;
    format!(
        "{} passed, {} failed, {} skipped",
        counts.passed.saturating_sub(skips),
        counts.failed,
        skips + counts.ignored
    )
}

/// Removes terminal colour sequences (`ESC [ … letter`), which libtest emits with `--color`.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_result_lines() {
        let output = "\
running 3 tests
test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
test result: \u{1b}[31mFAILED\u{1b}[0m. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
";
        assert_eq!(
            Counts::from_output(output),
            Counts {
                passed: 8,
                failed: 2,
                ignored: 1
            }
        );
    }

    #[test]
    fn skips_move_from_passed_to_skipped() {
        let skips = parse_skips("vm::starts\tno /dev/kvm\nbpf::loads\tnot root\n\n");
        assert_eq!(skips[1], ("bpf::loads".to_owned(), "not root".to_owned()));
        let counts = Counts {
            passed: 10,
            failed: 1,
            ignored: 2,
        };
        assert_eq!(
            final_line(&counts, skips.len()),
            "8 passed, 1 failed, 4 skipped"
        );
    }
}
