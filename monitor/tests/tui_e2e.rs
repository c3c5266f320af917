//! The live table in a real terminal (tmux): it shows a running guest, and every way out — `q`,
//! Ctrl-C, SIGTERM — leaves the terminal as it found it (main screen, canonical mode, line
//! endings), with exit status 0; `NO_COLOR` leaves no colour on the screen and keeps emphasis; a
//! VM of more vCPUs than the terminal has rows scrolls to its last and sorts.

mod support;

use std::{
    thread,
    time::{Duration, Instant},
};

use support::tmux::Tmux;

const VM_NAME: &str = "kvmtop-e2e-tui";

#[test]
fn live_table_shows_the_guest_and_every_exit_restores_the_terminal() {
    const TEST: &str = "live_table_shows_the_guest_and_every_exit_restores_the_terminal";
    if let Some(reason) = support::missing_prerequisite(true, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio(VM_NAME);
    let tmux = Tmux::start();
    let kvmtop = env!("CARGO_BIN_EXE_kvmtop");

    for (round, way_out) in ["q", "ctrl-c", "sigterm"].into_iter().enumerate() {
        tmux.type_line(&format!("{kvmtop} --interval 0.5"));
        let pid = guest.pid().to_string();
        wait_for_guest_row(&tmux, VM_NAME, &pid);
        match way_out {
            "q" => tmux.run(&["send-keys", "-t", "t", "q"]),
            "ctrl-c" => tmux.run(&["send-keys", "-t", "t", "C-c"]),
            _ => {
                let pid = tmux.kvmtop_pid();
                // SAFETY: plain kill(2).
                assert_eq!(unsafe { libc::kill(pid.cast_signed(), libc::SIGTERM) }, 0);
                String::new()
            }
        };
        tmux.wait_until("kvmtop to leave the alternate screen", |t| {
            !t.alternate_screen()
        });
        // A computed answer proves the shell got the line back in canonical mode with working
        // line endings (raw mode would leave Enter as a bare CR and nothing would run).
        tmux.type_line(&format!("echo status=$? restored-$(({round} * 7 + 35))"));
        let expected = format!("status=0 restored-{}", round * 7 + 35);
        tmux.wait_until(&format!("'{expected}' after {way_out}"), |t| {
            t.screen().lines().any(|l| l.trim() == expected)
        });
        tmux.type_line("clear");
    }
}

#[test]
fn closing_the_terminal_ends_kvmtop() {
    const TEST: &str = "closing_the_terminal_ends_kvmtop";
    if let Some(reason) = support::missing_prerequisite(false, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let tmux = Tmux::start();
    tmux.type_line(&format!("{} --interval 0.5", env!("CARGO_BIN_EXE_kvmtop")));
    tmux.wait_until("the live view", |t| {
        t.alternate_screen() && t.screen().contains("sources")
    });
    let pid = tmux.kvmtop_pid();
    // The terminal goes away under kvmtop, as when an SSH session drops.
    drop(tmux);
    let deadline = Instant::now() + support::EXIT_LIMIT;
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && support::process_state(pid) != Some('Z')
    {
        assert!(
            Instant::now() < deadline,
            "kvmtop (pid {pid}) still runs {:?} after its terminal closed",
            support::EXIT_LIMIT
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// `NO_COLOR` set takes every colour off the live view and keeps its emphasis (bold, reversed),
/// which carries the meaning; the same view without it has colours, so the check can tell. What
/// reaches the terminal is checked, whichever layer drops the colours: kvmtop draws without them,
/// and crossterm, which writes the frames, also leaves colour out when `NO_COLOR` is set.
#[test]
fn no_color_leaves_emphasis_and_no_colour() {
    const TEST: &str = "no_color_leaves_emphasis_and_no_colour";
    const NAME: &str = "kvmtop-e2e-nocolor";
    if let Some(reason) = support::missing_prerequisite(true, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let (guest, _) = support::start_portio(NAME);
    let pid = guest.pid().to_string();
    for no_color in [false, true] {
        let tmux = Tmux::start();
        let environment = if no_color { "NO_COLOR=1 " } else { "" };
        tmux.type_line(&format!(
            "{environment}{} --interval 0.5",
            env!("CARGO_BIN_EXE_kvmtop")
        ));
        wait_for_guest_row(&tmux, NAME, &pid);
        let styled = tmux.styled_screen();
        let style = Style::of(&styled);
        assert!(
            style.emphasis,
            "no bold or reversed cell (NO_COLOR {no_color}):\n{styled:?}"
        );
        if no_color {
            assert!(
                style.colours.is_empty(),
                "colours with NO_COLOR set: {:?}\n{styled:?}",
                style.colours
            );
        } else {
            assert!(
                !style.colours.is_empty(),
                "no colour without NO_COLOR, so the check above could not fail:\n{styled:?}"
            );
        }
        tmux.key("q");
        tmux.wait_until("kvmtop to leave the alternate screen", |t| {
            !t.alternate_screen()
        });
    }
}

/// Waits for the live view to show the guest `name`'s row, with its pid and I/O exits (a rate,
/// shown from the second frame).
fn wait_for_guest_row(tmux: &Tmux, name: &str, pid: &str) {
    tmux.wait_until("the guest's row with its I/O exits", |t| {
        let screen = t.screen();
        t.alternate_screen()
            && screen.contains("USER/s")
            && screen
                .lines()
                .any(|row| row.contains(name) && row.contains(pid) && row.contains("IO "))
    });
}

/// What the SGR sequences of a styled screen set.
struct Style {
    /// The sequences' colour parameters (foreground or background, of any palette).
    colours: Vec<String>,
    /// Whether any sets bold or reversed.
    emphasis: bool,
}

impl Style {
    fn of(styled: &str) -> Self {
        let mut style = Self {
            colours: Vec::new(),
            emphasis: false,
        };
        for sequence in styled.split("\x1b[").skip(1) {
            let Some((parameters, _)) = sequence.split_once('m') else {
                continue;
            };
            if !parameters.bytes().all(|b| b.is_ascii_digit() || b == b';') {
                continue;
            }
            let mut codes = parameters.split(';').map(|p| p.parse::<u16>().unwrap_or(0));
            while let Some(code) = codes.next() {
                match code {
                    1 | 7 => style.emphasis = true,
                    30..=37 | 40..=47 | 90..=97 | 100..=107 => {
                        style.colours.push(code.to_string());
                    }
                    // 38;5;N or 38;2;R;G;B (and 48 for the background).
                    38 | 48 => {
                        let rest: Vec<u16> = match codes.next() {
                            Some(5) => codes.by_ref().take(1).collect(),
                            Some(2) => codes.by_ref().take(3).collect(),
                            _ => Vec::new(),
                        };
                        style.colours.push(format!("{code};{rest:?}"));
                    }
                    _ => {}
                }
            }
        }
        style
    }
}

const BUSY: &str = "kvmtop-e2e-busy";
const IDLE: &str = "kvmtop-e2e-idle";

/// The keys at work on two of the demo guests (a busy port-I/O one and an idle one) at 80×24 and
/// 200×50: the sort changes the order, the filter leaves only the matching VM, pause freezes the
/// figures, `?` lists the keys, Esc never quits, and no view cuts a word or a number.
#[test]
fn keys_sort_filter_pause_and_help_at_80x24_and_200x50() {
    const TEST: &str = "keys_sort_filter_pause_and_help_at_80x24_and_200x50";
    if let Some(reason) = support::missing_prerequisite(true, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let (busy, _) = support::start_portio(BUSY);
    // Kept running until the end of the test.
    let _idle = guests::Guest::start(&guests::GuestSpec::new(guests::GuestKind::Idle).name(IDLE))
        .expect("starting an idle guest");
    for (width, height) in [(80, 24), (200, 50)] {
        drive_the_keys(width, height, busy.pid());
    }
}

fn drive_the_keys(width: u16, height: u16, busy_pid: u32) {
    let size = format!("{width}×{height}");
    let tmux = Tmux::start_sized(width, height);
    tmux.type_line(&format!("{} --interval 0.5", env!("CARGO_BIN_EXE_kvmtop")));
    let row_of = |screen: &str, name: &str| screen.lines().position(|l| l.contains(name));
    // Both guests listed, the busy one above (busiest first) once its exits are counted.
    tmux.wait_until(&format!("both guests, the busy one first ({size})"), |t| {
        let screen = t.screen();
        matches!((row_of(&screen, BUSY), row_of(&screen, IDLE)), (Some(b), Some(i)) if b < i)
            && busy_row(&screen).is_some_and(|row| row.contains('k'))
    });
    assert_no_cut_words(&tmux.screen(), &size);
    assert_host_lines(&tmux.screen(), width, &size);

    // r reverses the order.
    tmux.key("r");
    tmux.wait_until(&format!("the idle guest first after r ({size})"), |t| {
        let screen = t.screen();
        matches!((row_of(&screen, BUSY), row_of(&screen, IDLE)), (Some(b), Some(i)) if i < b)
            && screen.contains('▲')
    });
    // > moves the sort to the next column: USER/s, busiest first again.
    tmux.key("r");
    tmux.key(">");
    tmux.wait_until(&format!("sorted by USER/s ({size})"), |t| {
        let screen = t.screen();
        screen.contains("USER/s▼")
            && matches!((row_of(&screen, BUSY), row_of(&screen, IDLE)), (Some(b), Some(i)) if b < i)
    });

    // The filter: by name, then by pid; Esc clears it and kvmtop goes on.
    tmux.key("/");
    tmux.run(&["send-keys", "-t", "t", "-l", "IDLE"]);
    tmux.key("Enter");
    tmux.wait_until(&format!("only the idle guest ({size})"), |t| {
        let screen = t.screen();
        screen.contains(IDLE) && !screen.contains(BUSY) && screen.contains("filter: IDLE")
    });
    tmux.key("/");
    for _ in 0..4 {
        tmux.key("BSpace");
    }
    tmux.run(&["send-keys", "-t", "t", "-l", &busy_pid.to_string()]);
    tmux.key("Enter");
    tmux.wait_until(&format!("only the busy guest, by pid ({size})"), |t| {
        let screen = t.screen();
        screen.contains(BUSY) && !screen.contains(IDLE)
    });
    tmux.key("Escape");
    tmux.wait_until(&format!("both guests after Esc ({size})"), |t| {
        let screen = t.screen();
        screen.contains(BUSY) && screen.contains(IDLE) && !screen.contains("filter:")
    });
    assert!(tmux.alternate_screen(), "Esc must not quit ({size})");

    // Pause: the window's time and the figures stay for three sampling intervals.
    tmux.key("Space");
    tmux.wait_until(&format!("PAUSED ({size})"), |t| {
        t.screen().contains("PAUSED")
    });
    let frozen = frozen_part(&tmux.screen());
    thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        frozen_part(&tmux.screen()),
        frozen,
        "paused figures changed ({size})"
    );
    tmux.key("Space");
    tmux.wait_until(&format!("figures moving again ({size})"), |t| {
        let screen = t.screen();
        !screen.contains("PAUSED") && frozen_part(&screen) != frozen
    });

    // ? lists the keys, the flight recorder's and the replay's included; Esc closes it.
    tmux.key("?");
    tmux.wait_until(&format!("the help ({size})"), |t| {
        let screen = t.screen();
        [
            "sort: previous/next column",
            "filter: name, pid, uuid",
            "dump the recent minutes",
            "mark this moment",
            "go to a time",
            "pause live figures",
        ]
        .iter()
        .all(|text| screen.contains(text))
    });
    assert_no_cut_words(&tmux.screen(), &size);
    tmux.key("Escape");

    every_view_whole(&tmux, &size, busy_pid);
    tmux.key("q");
    tmux.wait_until("kvmtop to quit", |t| !t.alternate_screen());
}

/// Every view of the busy guest, the advice and the sources pane: each shows, none cut.
fn every_view_whole(tmux: &Tmux, size: &str, busy_pid: u32) {
    tmux.wait_until("the list again", |t| !t.screen().contains("this help"));
    let pid = busy_pid.to_string();
    for (key, shows) in [
        // The exits view opens with its charts: a line per reason, the busy guest's port I/O.
        ("Enter", "exits/s ━ IO"),
        ("Tab", "— vCPUs"),
        ("Tab", "— block I/O"),
        // The list's own title (" 3 VMs "), not the header's "3 VMs ·" that every view shows.
        ("Escape", " VMs ─"),
        ("a", "tuning advice"),
        ("a", " VMs ─"),
        ("s", "kernel sources"),
        ("Escape", " VMs ─"),
    ] {
        tmux.key(key);
        tmux.wait_until(&format!("{shows} after {key} ({size})"), |t| {
            t.screen().contains(shows)
        });
        let screen = tmux.screen();
        assert_no_cut_words(&screen, &format!("{size} after {key}"));
        if shows.starts_with('—') || shows.starts_with("exits/s") {
            assert!(screen.contains(&format!("(pid {pid})")), "{screen}");
        }
    }
    // The sources pane lies over the list, whose title shows around it: wait for the pane to go,
    // so the next key is not sent straight after Esc (the two bytes read together are Alt+key).
    tmux.wait_until(&format!("the sources pane closed ({size})"), |t| {
        !t.screen().contains("kernel sources")
    });
    // c takes the charts off the VM's views, their rows going to the table; c brings them back.
    let charted = |screen: &str| screen.contains("exits/s ━ IO");
    let table_top = |screen: &str| screen.lines().position(|l| l.contains("│REASON"));
    // Each position is read from the very screen that met its wait.
    tmux.key("Enter");
    let with = tmux.wait_for_screen(&format!("the exits view with its charts ({size})"), |s| {
        charted(s) && table_top(s).is_some()
    });
    tmux.key("c");
    let without = tmux.wait_for_screen(&format!("the exits table without charts ({size})"), |s| {
        !charted(s) && table_top(s).is_some()
    });
    assert!(
        table_top(&without) < table_top(&with),
        "the table did not move up ({size}):\nwith charts:\n{with}\nwithout:\n{without}"
    );
    assert_no_cut_words(&without, &format!("{size} after c"));
    tmux.key("c");
    tmux.wait_until(&format!("the charts back ({size})"), |t| {
        charted(&t.screen())
    });
    tmux.key("Escape");
}

/// The header's host lines agree with the kernel's own view: the online CPUs (`sysconf`), and on
/// a wide terminal the THP setting as sysfs shows it.
fn assert_host_lines(screen: &str, width: u16, size: &str) {
    // SAFETY: sysconf reads a value and has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    assert!(
        screen.contains(&format!(" vCPUs on {cpus} CPUs (")),
        "{cpus} online CPUs in the header ({size}):\n{screen}"
    );
    assert!(
        screen.contains("\nmemory: "),
        "memory line ({size}):\n{screen}"
    );
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|text| Some(text.split('[').nth(1)?.split(']').next()?.to_owned()));
    if let (Some(thp), true) = (thp, width >= 200) {
        assert!(
            screen.contains(&format!(" · THP {thp}")),
            "THP {thp} in the header ({size}):\n{screen}"
        );
    }
}

/// The busy guest's row.
fn busy_row(screen: &str) -> Option<String> {
    screen.lines().find(|l| l.contains(BUSY)).map(str::to_owned)
}

/// What pause must freeze: the title (with the window's time) and the busy guest's row.
fn frozen_part(screen: &str) -> String {
    format!(
        "{}\n{}",
        screen.lines().next().unwrap_or_default(),
        busy_row(screen).unwrap_or_default()
    )
}

/// Every token on the screen that starts with a digit is a whole number, rate, share, size or
/// duration ("101k", "12%", "2.5µs", "9.4MiB", "4242", "2(0)", "10:42:07", either end of a
/// range of rows "1–9"), and nothing runs over a pane's right border: no word or number was
/// cut.
fn assert_no_cut_words(screen: &str, when: &str) {
    const UNITS: [&str; 13] = [
        "", "k", "M", "%", "ns", "µs", "ms", "s", "B", "KiB", "MiB", "GiB", "TiB",
    ];
    for line in screen.lines() {
        for token in line.split(|c: char| c.is_whitespace() || "│┌┐└┘─,;()/×=:–".contains(c))
        {
            let token = token.trim_matches(|c: char| "▼▲…+-".contains(c));
            if !token.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            let digits_end = token
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(token.len());
            let (number, unit) = token.split_at(digits_end);
            let whole = number.parse::<f64>().is_ok() && UNITS.contains(&unit);
            assert!(
                whole || hexadecimal_or_name(token),
                "cut number '{token}' {when}:\n{screen}"
            );
        }
        // Free text is shortened between words (" …"), never inside one.
        assert!(
            !line.contains("…│") || line.contains(" …│"),
            "text cut at the border {when}: {line}"
        );
    }
}

/// Tokens that start with a digit yet are names: "0x80", a uuid, a version "6.18.0".
fn hexadecimal_or_name(token: &str) -> bool {
    token.starts_with("0x") || token.contains('-') || token.matches('.').count() > 1
}

/// At 80×24, a VM of 24 vCPUs (an idle guest: its vCPUs halt): the vCPU view shows the first
/// few and says so, the page keys reach the last vCPU and stop there, and `r` reverses the
/// vCPUs' order, from the top. The sources pane, with more sources than rows on this host,
/// scrolls down to its last family.
#[test]
fn wide_tables_scroll_and_sort_at_80x24() {
    const TEST: &str = "wide_tables_scroll_and_sort_at_80x24";
    const NAME: &str = "kvmtop-e2e-wide";
    const VCPUS: u32 = 24;
    if let Some(reason) = support::missing_prerequisite(true, &["tmux"]) {
        return support::skip(TEST, &reason);
    }
    let _guest = guests::Guest::start(
        &guests::GuestSpec::new(guests::GuestKind::Idle)
            .name(NAME)
            .vcpus(VCPUS),
    )
    .expect("starting an idle guest of 24 vCPUs");
    let tmux = Tmux::start_sized(80, 24);
    tmux.type_line(&format!("{} --interval 0.5", env!("CARGO_BIN_EXE_kvmtop")));
    // Only this guest in the list (other tests' guests may run beside it), then its vCPUs.
    tmux.wait_until("the wide guest's row", |t| t.screen().contains(NAME));
    tmux.key("/");
    tmux.run(&["send-keys", "-t", "t", "-l", NAME]);
    tmux.key("Enter");
    tmux.wait_until("only the wide guest", |t| {
        t.screen().contains(&format!("filter: {NAME}  1 of 1 VMs"))
    });
    tmux.key("Tab");
    // The history charts may open above the table as the windows come in (when the view has
    // the room), so the table's height is read from each screen, never assumed.
    tmux.wait_until(
        "the vCPU view of all 24 vCPUs, saying which it shows",
        |t| {
            let screen = t.screen();
            screen.contains("— vCPUs") && shown_range(&screen).is_some_and(|(first, _)| first == 1)
        },
    );
    let screen = tmux.screen();
    let rows = vcpu_rows(&screen);
    assert_eq!(rows.first().map(String::as_str), Some("0"), "{screen}");
    assert!(!rows.contains(&"23".to_owned()), "{screen}");
    assert_eq!(shown_range(&screen), Some((1, rows.len())), "{screen}");

    // Page down to the end, then one row further: the last vCPU stays at the bottom, so one row
    // up shows the one before it there (had the offset gone past the end, it would not).
    let at_end = |screen: &str| {
        vcpu_rows(screen).last().map(String::as_str) == Some("23")
            && shown_range(screen).is_some_and(|(_, last)| last == VCPUS as usize)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !at_end(&tmux.screen()) {
        assert!(
            Instant::now() < deadline,
            "the page keys never reached the last vCPU:\n{}",
            tmux.screen()
        );
        tmux.key("PageDown");
        thread::sleep(Duration::from_millis(300));
    }
    tmux.key("Down");
    thread::sleep(Duration::from_millis(300));
    tmux.wait_until("the last vCPU still at the bottom", |t| at_end(&t.screen()));
    tmux.key("Up");
    tmux.wait_until("one row up from the end", |t| {
        let screen = t.screen();
        vcpu_rows(&screen).last().map(String::as_str) == Some("22")
            && shown_range(&screen).is_some_and(|(_, last)| last == VCPUS as usize - 1)
    });

    // r: the vCPUs the other way round, from the top.
    tmux.key("r");
    tmux.wait_until("vCPU 23 first, marked ▲", |t| {
        let screen = t.screen();
        screen.contains("vCPU▲")
            && vcpu_rows(&screen).first().map(String::as_str) == Some("23")
            && shown_range(&screen).is_some_and(|(first, _)| first == 1)
    });

    // The sources pane: the first family at the top, the last (block) reached by the page keys.
    tmux.key("s");
    tmux.wait_until("the sources pane, saying which rows it shows", |t| {
        let screen = t.screen();
        screen.contains("kernel sources") && screen.contains(" 1–") && screen.contains(" ↑↓ ")
    });
    assert!(!pane_rows(&tmux.screen()).iter().any(|f| f == "block"));
    for _ in 0..4 {
        tmux.key("PageDown");
    }
    tmux.wait_until("the block sources at the bottom of the pane", |t| {
        let rows = pane_rows(&t.screen());
        rows.last().map(String::as_str) == Some("block")
            && rows.first().map(String::as_str) != Some("exits")
    });
    tmux.key("Escape");
    tmux.key("q");
    tmux.wait_until("kvmtop to quit", |t| !t.alternate_screen());
}

/// The vCPU indices in the vCPU table's rows, top to bottom.
fn vcpu_rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip_while(|l| !l.starts_with("│vCPU"))
        .skip(1)
        .take_while(|l| !l.starts_with('└'))
        .filter_map(|l| {
            let first = l.trim_start_matches('│').split_whitespace().next()?;
            first
                .chars()
                .all(|c| c.is_ascii_digit())
                .then(|| first.to_owned())
        })
        .collect()
}

/// The family of each row of the sources pane, top to bottom. The pane sits inside the view's
/// border: each row starts with that border's character (`│`, or a corner where the view's
/// own panes meet), then the pane's.
fn pane_rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip_while(|l| !l.contains("FAMILY"))
        .skip(1)
        .map(|l| l.chars().skip(1).collect::<String>())
        .take_while(|inner| !inner.starts_with('└'))
        .filter_map(|inner| {
            let family = inner.chars().skip(1).collect::<String>();
            let family = family.split_whitespace().next()?.to_owned();
            ["exits", "sched", "numa", "tlb", "block"]
                .contains(&family.as_str())
                .then_some(family)
        })
        .collect()
}

/// The rows the vCPU table says it shows, " 3–11 of 24 ↑↓ " in its top border: (3, 11).
fn shown_range(screen: &str) -> Option<(usize, usize)> {
    let line = screen.lines().find(|l| l.contains("— vCPUs"))?;
    let range = line.split(" of ").next()?.rsplit(' ').next()?;
    let (first, last) = range.split_once('–')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}
