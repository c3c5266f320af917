//! A recording someone handed over, as `kvmtop replay` and `kvmtop report` read it: arbitrary
//! window and event payloads are put into frames of a standalone recording (uncompressed, so the
//! fuzzer mutates the JSON itself, not zstd's bytes), then every window is decoded and written as
//! JSON Lines and as text, and a report is built over all of it and rendered as Markdown and
//! JSON. Nothing may panic, and nothing printed to a terminal (output, skipped-frame messages,
//! the report) may carry a character a terminal acts on: a hostile recording must not be able to
//! take over the terminal of whoever replays it.
//!
//! Input: pieces separated by NUL bytes; a piece's first byte picks its kind (even: a window,
//! odd: an event) and the rest is its payload. Frames are one second apart.
#![no_main]

use kvmtop::{
    output,
    recording::{
        frames,
        playback::Recording,
        store::{self, format},
    },
    report::{Range, Report, render},
};
use libfuzzer_sys::fuzz_target;

const SECOND: u64 = 1_000_000_000;
const START: u64 = 1_800_000_000 * SECOND;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = store::Reader::from_bytes("input", recording(data)) else {
        return;
    };
    let recording = Recording::from_store(reader);
    for problem in recording.problems() {
        kvmtop_fuzz::assert_terminal_safe("a damage message", problem);
    }
    for index in 0..recording.window_count() {
        match recording.window(index) {
            Ok(snapshot) => {
                let mut line = Vec::new();
                output::json::write_line(&mut line, &snapshot).unwrap();
                kvmtop_fuzz::assert_terminal_safe("a replayed window", without_newlines(&line));
                let mut text = Vec::new();
                output::text::write(&mut text, &snapshot).unwrap();
                // Text is several lines: only the line breaks kvmtop writes itself are allowed.
                for line in without_newlines(&text).lines() {
                    kvmtop_fuzz::assert_terminal_safe("a window as text", line);
                }
            }
            Err(error) => {
                kvmtop_fuzz::assert_terminal_safe("a skipped window", &error.to_string());
            }
        }
    }
    let everything = Range {
        from_ns: 0,
        to_ns: u64::MAX,
    };
    let report = Report::build(&recording, everything, everything, |_, _| {});
    let markdown = render::markdown(&report);
    kvmtop_fuzz::assert_terminal_safe("a Markdown report", &markdown.replace('\n', ""));
    let json = render::json(&report).unwrap();
    kvmtop_fuzz::assert_terminal_safe("a JSON report", &json.replace('\n', ""));
});

/// A standalone recording holding `data`'s pieces as uncompressed frames.
fn recording(data: &[u8]) -> Vec<u8> {
    let mut bytes = format::encode_segment_header(START).to_vec();
    for (i, piece) in data.split(|&b| b == 0).enumerate() {
        let Some((&selector, payload)) = piece.split_first() else {
            continue;
        };
        let kind = if selector % 2 == 0 {
            frames::WINDOW
        } else {
            frames::EVENT
        };
        let len = u32::try_from(payload.len()).unwrap();
        let header = format::FrameHeader {
            time_ns: START + SECOND * i as u64,
            kind,
            flags: 0,
            stored_len: len,
            raw_len: len,
            payload_crc: crc32fast::hash(payload),
        };
        bytes.extend_from_slice(&header.encode());
        bytes.extend_from_slice(payload);
    }
    bytes
}

fn without_newlines(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap().trim_end_matches('\n')
}
