//! A real QEMU guest whose `-name` a hostile owner chose: a terminal title change, a bell, a
//! screen clear, a colour, a right-to-left override, a newline forging a line of its own,
//! quotes, a backslash and non-Latin letters. The name reaches no terminal raw — not the text
//! snapshot, not the live view in a real terminal (tmux, its raw byte stream recorded) — and
//! stays exact wherever machines read it: the JSON snapshot, and the `vm` label as a real
//! Prometheus server scraped and stored it.

mod support;

use std::{
    process::Stdio,
    sync::{Arc, Mutex, PoisonError, Weak},
    thread,
    time::{Duration, Instant},
};

use guests::Guest;
use support::{
    prometheus::{Prometheus, http_get},
    tmux::Tmux,
};

/// The name QEMU is given. No comma: QEMU's option parser would need it doubled.
const NAME: &str = "q\"uote back\\slash vm-ü-日本 title:\x1b]0;PWNED\x07 clear:\x1b[2J \
                    red:\x1b[31m rlo:\u{202E} nl\nFAKELINE end";

/// How a terminal may show [`NAME`]: each control character and the override as U+FFFD, every
/// printable character kept.
const SHOWN: &str = "q\"uote back\\slash vm-ü-日本 title:\u{FFFD}]0;PWNED\u{FFFD} \
                     clear:\u{FFFD}[2J red:\u{FFFD}[31m rlo:\u{FFFD} nl\u{FFFD}FAKELINE end";

/// What the name would do to a terminal if it were written as it is.
const INJECTED: [&str; 5] = [
    "\x1b]0;PWNED\x07",
    "\x1b[2J",
    "\x1b[31m",
    "\u{202E}",
    "\nFAKELINE",
];

/// The guest named [`NAME`], shared by the tests of this file that run at the same time: the
/// last of them to finish stops it.
fn hostile_guest() -> Arc<Guest> {
    static SHARED: Mutex<Weak<Guest>> = Mutex::new(Weak::new());
    // A test that failed to start the guest poisons the lock; the next one tries again.
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(guest) = shared.upgrade() {
        return guest;
    }
    let (guest, _) = support::start_portio(NAME);
    // QEMU got the name as one argument, byte for byte: no shell stood in between.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", guest.pid())).unwrap();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let name = args
        .iter()
        .position(|a| *a == b"-name")
        .and_then(|i| args.get(i + 1))
        .expect("-name in QEMU's command line");
    assert_eq!(
        String::from_utf8_lossy(name),
        format!("{NAME},debug-threads=on")
    );
    let guest = Arc::new(guest);
    *shared = Arc::downgrade(&guest);
    guest
}

/// Output meant for a terminal that holds no control character but line ends and tabs, no
/// bidirectional override, and none of the name's injections.
fn assert_plain_text(what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}"));
    for injected in INJECTED {
        assert!(
            !text.contains(injected),
            "{what} contains {injected:?}:\n{text}"
        );
    }
    assert!(
        !text.lines().any(|l| l.starts_with("FAKELINE")),
        "{what} has a forged line:\n{text}"
    );
    let unsafe_char = text
        .chars()
        .find(|c| (c.is_control() && !matches!(c, '\n' | '\t')) || *c == '\u{202E}');
    assert_eq!(unsafe_char, None, "{what}:\n{text}");
}

#[test]
fn the_text_snapshot_shows_the_name_sanitized_wherever_it_appears() {
    const TEST: &str = "the_text_snapshot_shows_the_name_sanitized_wherever_it_appears";
    if let Some(reason) = support::missing_prerequisite(true, &[]) {
        return support::skip(TEST, &reason);
    }
    let guest = hostile_guest();
    let output = support::kvmtop()
        .args(["snapshot", "--format", "text", "--duration", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kvmtop failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_plain_text("kvmtop's standard error", &output.stderr);
    assert_plain_text("the text snapshot", &output.stdout);
    let text = String::from_utf8(output.stdout).unwrap();

    let header = format!("{SHOWN}  pid {}  qemu  ", guest.pid());
    assert!(
        text.lines().any(|l| l.starts_with(&header)),
        "no header {header:?} for the VM:\n{text}"
    );
    // Every other mention (advice, who waited behind whom) shows the whole name, sanitized the
    // same way.
    let mentions: Vec<&str> = text.lines().filter(|l| l.contains("vm-ü-日本")).collect();
    eprintln!("the name appears on {} lines", mentions.len());
    for line in mentions {
        assert!(
            line.contains(SHOWN),
            "a different rendering of the name: {line:?}"
        );
    }
    assert!(text.contains("PWNED"), "{text}");
}

#[test]
fn the_json_snapshot_keeps_the_exact_name() {
    const TEST: &str = "the_json_snapshot_keeps_the_exact_name";
    if let Some(reason) = support::missing_prerequisite(true, &[]) {
        return support::skip(TEST, &reason);
    }
    let guest = hostile_guest();
    let (snapshot, kvmtop) = support::run_snapshot(1.0, &[]);
    let vm = snapshot["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|vm| vm["pid"] == guest.pid())
        .unwrap_or_else(|| panic!("pid {} missing from {snapshot:#}", guest.pid()));
    assert_eq!(vm["name"].as_str(), Some(NAME));
    // Shown in a terminal (or a file of it with cat), the JSON cannot act on it: whatever could
    // is written as a `\uXXXX` escape, which means the same to a JSON parser.
    assert_plain_text("the JSON snapshot", kvmtop.stdout_text().as_bytes());
}

#[test]
fn the_live_view_never_writes_the_name_raw_to_the_terminal() {
    const TEST: &str = "the_live_view_never_writes_the_name_raw_to_the_terminal";
    if let Some(reason) = support::missing_prerequisite(true, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let guest = hostile_guest();
    let pid = guest.pid();
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("terminal.raw");
    // Wide enough for the whole name in the views' titles.
    let tmux = Tmux::start_sized(200, 40);
    let title_before = tmux.title();
    tmux.record_output(&recording);
    tmux.type_line(&format!("{} --interval 0.5", env!("CARGO_BIN_EXE_kvmtop")));

    // The list cuts names to its column: the row is known by its pid and the name's start.
    let row_start = "q\"uote back\\slash";
    tmux.wait_until("the guest's row", |t| {
        t.alternate_screen()
            && t.screen()
                .lines()
                .any(|row| row.contains(row_start) && row.contains(&format!(" {pid} ")))
    });
    assert_screen_clean(&tmux, &title_before);

    open_exits_of(&tmux, pid);
    let shown_in = |view: &str| format!(" {SHOWN} (pid {pid}) — {view} ");
    for (key, view) in [("", "exits"), ("Tab", "vCPUs"), ("i", "block I/O")] {
        if !key.is_empty() {
            tmux.key(key);
        }
        let title = shown_in(view);
        tmux.wait_until(&format!("the {view} view titled {title:?}"), |t| {
            t.screen().contains(&title)
        });
        assert_screen_clean(&tmux, &title_before);
    }
    // The advice names VMs too.
    tmux.key("a");
    tmux.wait_until("the advice", |t| t.screen().contains(" tuning advice ("));
    assert_screen_clean(&tmux, &title_before);
    tmux.key("q");
    tmux.wait_until("kvmtop to leave the alternate screen", |t| {
        !t.alternate_screen()
    });
    // A computed answer marks the end of the recording: everything kvmtop wrote is in the file
    // once the answer is.
    tmux.type_line("echo recorded-$((6 * 7))");
    let deadline = Instant::now() + Duration::from_secs(30);
    let raw = loop {
        let raw = std::fs::read(&recording).unwrap_or_default();
        if raw.windows(11).any(|w| w == b"recorded-42") {
            break raw;
        }
        assert!(
            Instant::now() < deadline,
            "the recording never got the end mark"
        );
        thread::sleep(Duration::from_millis(100));
    };
    eprintln!("recorded {} bytes written to the terminal", raw.len());

    let contains = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    // The recording holds kvmtop's output: its switch to the alternate screen and the name.
    assert!(contains("\x1b[?1049h"), "kvmtop's output was not recorded");
    assert!(contains("PWNED"), "the name was never drawn");
    // kvmtop clears the screen and colours text itself, so its own escapes are allowed; the
    // name's are recognised by what precedes them in the name.
    for injected in [
        "title:\x1b]0;PWNED",
        "\x1b]0;PWNED\x07",
        "PWNED\x07",
        "clear:\x1b[2J",
        "red:\x1b[31m",
        "\u{202E}",
        "nl\nFAKELINE",
        "nl\r\nFAKELINE",
    ] {
        assert!(
            !contains(injected),
            "{injected:?} reached the terminal:\n{}",
            String::from_utf8_lossy(&raw)
        );
    }
    // Neither kvmtop nor the bare shell sets a title: any operating system command is the name's.
    assert!(!contains("\x1b]"), "an OSC sequence reached the terminal");
    assert_eq!(tmux.title(), title_before, "the terminal's title changed");
}

/// Enter opens the selected VM's exits; other guests on the host may be listed first, so go
/// down the list until the view is this guest's.
fn open_exits_of(tmux: &Tmux, pid: u32) {
    let mine = format!("(pid {pid}) — exits");
    for _ in 0..64 {
        tmux.key("Enter");
        // A VM that ends before its view is drawn leaves the list on screen: then press Enter
        // again.
        let deadline = Instant::now() + Duration::from_secs(10);
        let screen = loop {
            let screen = tmux.screen();
            if screen.contains(") — exits ") || Instant::now() > deadline {
                break screen;
            }
            thread::sleep(Duration::from_millis(100));
        };
        if screen.contains(&mine) {
            return;
        }
        if screen.contains(") — exits ") {
            tmux.key("BSpace");
            tmux.wait_until("the list", |t| !t.screen().contains(") — exits "));
            tmux.key("j");
        }
    }
    panic!("pid {pid} never selected; screen:\n{}", tmux.screen());
}

/// What the terminal shows: no forged line, no override, the title untouched.
fn assert_screen_clean(tmux: &Tmux, title_before: &str) {
    let screen = tmux.screen();
    assert!(
        !screen
            .lines()
            .any(|l| l.trim_start().starts_with("FAKELINE")),
        "a forged line on screen:\n{screen}"
    );
    assert!(!screen.contains('\u{202E}'), "{screen}");
    assert_eq!(tmux.title(), title_before, "the terminal's title changed");
}

#[test]
fn prometheus_stores_the_exact_name_as_the_vm_label() {
    const TEST: &str = "prometheus_stores_the_exact_name_as_the_vm_label";
    if let Some(reason) = support::missing_prerequisite(true, &["promtool", "prometheus"]) {
        return support::skip(TEST, &reason);
    }
    let guest = hostile_guest();
    let pid = guest.pid();
    let (_kvmtop, address) = support::prometheus::serve("0.5");

    // The exposition escapes what its format demands (backslash, quote, newline) and nothing
    // else.
    let label = NAME
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let info = format!("kvmtop_vm_info{{pid=\"{pid}\",uuid=\"\",vm=\"{label}\",vmm=\"qemu\"}} 1");
    let deadline = Instant::now() + Duration::from_secs(30);
    let exposition = loop {
        let (status, body) = http_get(address, "/metrics");
        if status == 200 && body.contains(&format!("pid=\"{pid}\"")) {
            break body;
        }
        assert!(Instant::now() < deadline, "pid {pid} not exported: {body}");
        thread::sleep(Duration::from_millis(250));
    };
    assert!(
        exposition.lines().any(|l| l == info),
        "no line {info:?} in:\n{exposition}"
    );
    support::prometheus::assert_promtool_accepts(&exposition);

    // Selected by the exact name (PromQL's escapes) and by pid, in case another guest has the
    // same name.
    let prometheus = Prometheus::start(address);
    let query = format!(
        "kvmtop_vm_info{{vm=\"{}\",pid=\"{pid}\"}}",
        promql_escape(NAME)
    );
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let (status, body) = prometheus.query(&query);
        if status == 200 {
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(series) = answer["data"]["result"]
                .as_array()
                .filter(|r| !r.is_empty())
            {
                assert_eq!(series.len(), 1, "{body}");
                assert_eq!(series[0]["metric"]["vm"].as_str(), Some(NAME), "{body}");
                assert_eq!(series[0]["value"][1], "1", "{body}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned the series; last: {status} {body}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// `text` as the inside of a `PromQL` double-quoted string: Go's escapes for quote, backslash and
/// control characters, everything else as it is.
fn promql_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => format!("\\{c}"),
            c if c.is_control() => format!("\\x{:02x}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}
