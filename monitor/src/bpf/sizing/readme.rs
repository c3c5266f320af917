//! The sizing table as the README shows it.

use std::fmt::Write as _;

use super::MAPS;

fn mib(bytes: u64) -> String {
    // Display only: rounding to a tenth of a MiB.
    #[expect(clippy::cast_precision_loss)]
    let mib = bytes as f64 / f64::from(1u32 << 20);
    format!("{mib:.1}")
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The README's table: one row per map, then the total.
#[must_use]
pub fn markdown() -> String {
    let mut out = String::from(
        "| map | kind | key → value (bytes) | an entry is | capacity | needed | MiB at reference |\n\
         |---|---|---|---|---:|---|---:|\n",
    );
    let mut total = 0;
    for m in MAPS {
        let memory = m.reference_memory();
        total += memory;
        let needed = if m.basis == "fixed" {
            "fixed".to_owned()
        } else {
            format!("{} ({})", thousands(m.needed), m.basis)
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} → {} | {} | {} | {} | {} |",
            m.name,
            m.kind.name(),
            m.key_size,
            m.value_size,
            m.key,
            thousands(u64::from(m.capacity)),
            needed,
            mib(memory),
        );
    }
    let _ = writeln!(out, "| total | | | | | | {} |", mib(total));
    out
}
