//! The views rendered into ratatui's test backend from the fixture snapshot.

use std::time::Duration;

use ratatui::{Terminal, backend::TestBackend};

use super::*;
use crate::testing::fixture;
use crate::tui::state::{App, Overlay};

pub fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| {
            draw(frame, app);
        })
        .unwrap();
    terminal.backend().to_string()
}

fn app() -> App {
    let mut app = App::new(Duration::from_secs(1));
    app.update(fixture::snapshot());
    app
}

/// Every view and pane, at the smallest terminal the view is made for and at a big one.
#[test]
fn every_view_at_80x24_and_200x50() {
    let views: [(&str, Setup); 10] = [
        ("list", |_| {}),
        ("exits", App::open),
        ("vcpus", |app| {
            app.open();
            app.toggle_vm_view();
        }),
        ("io", App::open_io),
        ("advice", App::toggle_advice),
        ("help", |app| app.overlay = Some(Overlay::Help)),
        ("sources", |app| app.overlay = Some(Overlay::Sources)),
        ("filtering", |app| {
            app.start_filter();
            app.filter.editing = Some("web".into());
        }),
        ("filtered_paused_sorted_by_name", |app| {
            app.filter.applied = Some("web".into());
            app.sort.column = crate::tui::columns::VmColumn::Name;
            app.toggle_pause();
        }),
        ("reversed", App::reverse_sort),
    ];
    snapshot_at_both_sizes(&views, app);
}

/// How a snapshot test sets up the view it takes.
type Setup = fn(&mut App);

/// Each view, set up on a fresh `app()`, as an insta snapshot at 80×24 and 200×50.
fn snapshot_at_both_sizes(views: &[(&str, Setup)], app: fn() -> App) {
    for (name, setup) in views {
        for (width, height) in [(80, 24), (200, 50)] {
            let mut app = app();
            setup(&mut app);
            insta::assert_snapshot!(
                format!("{name}_{width}x{height}"),
                render(&app, width, height)
            );
        }
    }
}

#[test]
fn advice_pane_shows_evidence_and_change() {
    let mut app = app();
    app.toggle_advice();
    let screen = render(&app, 100, 16);
    assert!(screen.contains("C1"), "{screen}");
    assert!(
        screen.contains("run-queue wait share = 0.31 (> 0.2) over 2 s"),
        "{screen}"
    );
    assert!(screen.contains("vcpupin"), "{screen}");
    // The VM row carries a marker.
    let list = render(&app_on_list(), 100, 12);
    assert!(list.contains("C1"), "{list}");
}

fn app_on_list() -> App {
    app()
}

#[test]
fn narrow_terminal_keeps_names_and_rates() {
    let screen = render(&app(), 60, 10);
    assert!(
        screen.contains("web-1") && screen.contains("idle-db"),
        "{screen}"
    );
    assert!(screen.contains("101k"), "{screen}");
    let mut drill = app();
    drill.open();
    let screen = render(&drill, 60, 16);
    assert!(screen.contains("IO_INSTRUCTION"), "{screen}");
    assert!(screen.contains("0x80"), "{screen}");
}

#[test]
fn hostile_names_reach_no_cell_raw() {
    let hostile = crate::model::Untrusted::new(crate::model::untrusted::HOSTILE_NAME);
    let mut snapshot = fixture::snapshot();
    snapshot.vms[0].name = hostile.clone();
    for drive in &mut snapshot.vms[0].families.block.drives {
        drive.id = Some(hostile.clone());
    }
    let mut app = App::new(Duration::from_secs(1));
    app.update(snapshot);
    let mut screens = vec![render(&app, 200, 20)];
    app.open();
    screens.push(render(&app, 200, 20));
    app.open_io();
    screens.push(render(&app, 200, 20));
    for screen in screens {
        assert!(screen.contains("vm-ü-日本"), "{screen}");
        crate::testing::assert_terminal_safe(&screen);
    }
}

#[test]
fn the_health_line_counts_what_was_lost_and_the_sources_pane_says_where() {
    let mut snapshot = fixture::snapshot();
    snapshot.families.sched.dropped = crate::model::LostEvents { count: 3, total: 9 };
    let mut app = App::new(Duration::from_secs(1));
    app.update(snapshot);
    let screen = render(&app, 200, 12);
    // 30 skipped by block_rq_complete, 3 dropped, 2 expired.
    assert!(screen.contains("lost: 35 events"), "{screen}");
    assert!(screen.contains("advice: 1 critical"), "{screen}");
    app.overlay = Some(Overlay::Sources);
    let pane = render(&app, 200, 30);
    let row = |needle: &str| {
        pane.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("block_rq_complete").contains(" 30 "), "{pane}");
    assert!(row("(map full)").contains(" 3 "), "{pane}");
    assert!(row("(requests)").contains(" 2 "), "{pane}");
    // Losses of earlier windows only: nothing lost in this one.
    let mut quiet = fixture::snapshot();
    quiet.families.block.lost.clear();
    quiet.families.block.expired.count = 0;
    app.overlay = None;
    app.update(quiet);
    let screen = render(&app, 200, 6);
    assert!(!screen.contains("lost:"), "{screen}");
    assert!(screen.contains("nothing lost"), "{screen}");
}

#[test]
fn the_health_line_names_no_source_and_counts_the_unavailable() {
    let all_live = || {
        let mut snapshot = fixture::snapshot();
        for family in [
            &mut snapshot.families.exits.sources,
            &mut snapshot.families.sched.sources,
            &mut snapshot.families.numa.sources,
            &mut snapshot.families.tlb.sources,
            &mut snapshot.families.block.sources,
        ] {
            for state in family.values_mut() {
                *state = crate::model::SourceState::Live;
            }
        }
        snapshot
    };
    let mut app = App::new(Duration::from_secs(1));
    app.update(all_live());
    let screen = render(&app, 120, 8);
    assert!(
        screen
            .lines()
            .nth(1)
            .unwrap()
            .contains("● all 14 sources attached"),
        "{screen}"
    );
    let mut snapshot = all_live();
    snapshot
        .families
        .exits
        .sources
        .insert("kvm_exit".into(), crate::model::SourceState::Silent);
    app.update(snapshot.clone());
    let screen = render(&app, 120, 8);
    // Silent is attached: an idle VM must not flip the line.
    assert!(screen.contains("● all 14 sources attached"), "{screen}");
    snapshot.families.exits.sources.insert(
        "kvm_exit".into(),
        crate::model::SourceState::Unavailable("tracepoint missing".into()),
    );
    app.update(snapshot);
    let screen = render(&app, 120, 8);
    let health = screen.lines().nth(1).unwrap();
    assert!(health.contains("▲ 1 of 14 sources unavailable"), "{screen}");
    assert!(
        !health.contains("kvm_exit"),
        "the names are in the sources pane: {screen}"
    );
}

/// Every VM row, at every width from 40 to 240 columns, in every sort order: each column's cell
/// is its full text, or the items of a list that fit whole, or a single word ended by "…" —
/// never a word or a number cut short.
#[test]
fn no_cell_is_cut_inside_a_word_or_a_number() {
    use crate::tui::columns::{self, VmColumn, width_of};
    let mut snapshot = fixture::snapshot();
    snapshot.vms[1].name =
        crate::model::Untrusted::new("a-long-vm-name-that-does-not-fit-anywhere-at-all");
    let mut app = App::new(Duration::from_secs(1));
    app.update(snapshot);
    let snapshot = app.snapshot.clone().unwrap();
    for width in 40..=240_u16 {
        let screen = render(&app, width, 12);
        let longest = snapshot
            .vms
            .iter()
            .map(|vm| width_of(&vm.name.to_string()))
            .max()
            .unwrap();
        let layout = columns::layout(width - 2, longest);
        for vm in &snapshot.vms {
            let name = VmColumn::Name.fitted(vm, &snapshot, layout[0].1);
            let line = screen
                .lines()
                .find(|l| l.contains(&format!("│{name} ")))
                .unwrap_or_default();
            for &(column, w) in &layout {
                let full = column.text(vm, &snapshot);
                let shown = column.fitted(vm, &snapshot, w);
                assert!(
                    width_of(&shown) <= usize::from(w),
                    "{column:?} at {width}: {shown}"
                );
                assert!(
                    line.contains(shown.as_str()),
                    "{column:?} at {width}: '{shown}' not in\n{line}"
                );
                let whole = shown == full
                    || (shown.ends_with('…') && !full.contains(' '))
                    || (column == VmColumn::Advice && shown.contains('+'))
                    || full
                        .strip_prefix(shown.as_str())
                        .is_some_and(|rest| rest.starts_with(' '))
                    || (shown.is_empty() && column == VmColumn::TopReasons);
                assert!(whole, "{column:?} at {width}: '{shown}' cuts '{full}'");
            }
        }
    }
}

#[test]
fn waiting_for_first_sample() {
    let app = App::new(Duration::from_secs(1));
    assert!(render(&app, 60, 5).contains("taking the first sample"));
}

#[test]
fn empty_host_says_so() {
    let mut app = App::new(Duration::from_secs(1));
    let mut snapshot = fixture::snapshot();
    snapshot.vms.clear();
    app.update(snapshot);
    assert!(render(&app, 80, 8).contains("no KVM virtual machines"));
}

#[test]
fn a_vm_without_exits_says_so() {
    let mut app = app();
    app.select_next();
    app.open();
    let screen = render(&app, 80, 12);
    assert!(screen.contains("no exits in this window"), "{screen}");
}

#[test]
fn without_colour_the_emphasis_stays() {
    use ratatui::style::{Color, Modifier};
    let draw_with = |colour: bool| {
        let mut app = app();
        app.colour = colour;
        app.toggle_pause();
        let mut terminal = Terminal::new(TestBackend::new(120, 10)).unwrap();
        terminal
            .draw(|frame| {
                draw(frame, &app);
                finish(frame.buffer_mut(), app.colour);
            })
            .unwrap();
        terminal.backend().buffer().clone()
    };
    let coloured = draw_with(true);
    assert!(coloured.content.iter().any(|c| c.fg != Color::Reset));
    let plain = draw_with(false);
    assert!(
        plain
            .content
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset)
    );
    // PAUSED and the selected row stay marked.
    assert!(plain[(1, 0)].modifier.contains(Modifier::REVERSED));
    assert!(
        plain
            .content
            .iter()
            .any(|c| c.symbol() == "w" && c.modifier.contains(Modifier::REVERSED))
    );
}

/// The fixture over 40 windows of 2 s: web-1's exits and I/O rise and fall, its steal (and each
/// vCPU's) climbs, and its advice (C1) comes into force in the 25th window.
fn app_with_history() -> App {
    let mut app = App::new(Duration::from_secs(2));
    for i in 0..40_u32 {
        let mut snapshot = fixture::snapshot();
        let wave = f64::from((i * 7) % 20) / 10.0;
        snapshot.window.start_unix_seconds += f64::from(i) * 2.0;
        let web = &mut snapshot.vms[0];
        for reason in &mut web.families.exits.by_reason {
            reason.rate *= wave;
        }
        for device in &mut web.families.block.devices {
            device.iops *= 2.0 - wave;
        }
        web.families.sched.vcpus.steal = Some(f64::from(i) / 100.0);
        // Each vCPU's steal climbs at its own pace.
        for (k, vcpu) in web.vcpus.iter_mut().enumerate() {
            if let Some(sched) = &mut vcpu.sched {
                #[expect(clippy::cast_precision_loss, reason = "a handful of vCPUs")]
                let pace = (k + 1) as f64 / 2.0;
                sched.figures.steal = Some(f64::from(i) / 100.0 * pace);
            }
        }
        if i < 24 {
            snapshot.recommendations.clear();
        }
        app.update(snapshot);
    }
    app.selected_pid = Some(4242);
    app
}

#[test]
fn history_as_sparklines_and_charts_at_80x24_and_200x50() {
    let views: [(&str, Setup); 4] = [
        ("history_list", |_| {}),
        ("history_exits", App::open),
        ("history_vcpus", |app| {
            app.open();
            app.toggle_vm_view();
        }),
        ("history_io", App::open_io),
    ];
    snapshot_at_both_sizes(&views, app_with_history);
}

/// `c` takes the charts off a VM's views, in every view and for every VM until pressed again,
/// and gives their rows to the table; the list has no charts and ignores it.
#[test]
fn c_turns_the_charts_off_and_on() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let press = |app: &mut App, code| app.key(KeyEvent::new(code, KeyModifiers::NONE));
    // The exits chart's title, and the table's header row.
    let charted = |screen: &str| screen.contains("┌ exits/s");
    let table_top = |screen: &str| screen.lines().position(|l| l.contains("│REASON")).unwrap();
    let mut app = app_with_history();
    press(&mut app, KeyCode::Char('c'));
    assert!(app.charts, "the list has no charts to turn off");
    app.open();
    let with = render_keeping(&mut app, 80, 24);
    assert!(charted(&with), "{with}");
    assert!(
        render(&app, 200, 50).contains(" c  charts"),
        "named in a wide footer"
    );
    press(&mut app, KeyCode::Char('c'));
    let without = render_keeping(&mut app, 80, 24);
    assert!(!charted(&without), "{without}");
    assert!(table_top(&without) < table_top(&with), "{with}\n{without}");
    // Off in the other views and after going back to the list, until pressed again.
    press(&mut app, KeyCode::Tab);
    assert!(!render_keeping(&mut app, 80, 24).contains("steal % per vCPU"));
    press(&mut app, KeyCode::Esc);
    app.open();
    assert!(!charted(&render_keeping(&mut app, 80, 24)));
    press(&mut app, KeyCode::Char('c'));
    assert!(charted(&render_keeping(&mut app, 80, 24)));
    press(&mut app, KeyCode::Tab);
    assert!(render_keeping(&mut app, 80, 24).contains("steal % per vCPU"));
}

#[test]
fn the_sparkline_follows_the_sort_column() {
    let mut app = app_with_history();
    let row = |app: &App| {
        render(app, 200, 10)
            .lines()
            .find(|l| l.contains("web-1"))
            .unwrap()
            .to_owned()
    };
    let by_exits = row(&app);
    app.sort.column = crate::tui::columns::VmColumn::Steal;
    let by_steal = row(&app);
    // Steal climbs window after window: the line ends at its top.
    assert!(by_steal.contains("▇▇███ "), "{by_steal}");
    assert_ne!(by_exits, by_steal);
}

/// Renders as the event loop does, keeping what the frame showed for the next keys.
fn render_keeping(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut drawn = app.drawn;
    terminal
        .draw(|frame| {
            drawn = draw(frame, app);
        })
        .unwrap();
    app.drawn = drawn;
    terminal.backend().to_string()
}

/// The screen line below the vCPU table's header.
fn first_vcpu_row(screen: &str) -> &str {
    let mut lines = screen.lines().skip_while(|l| !l.contains("│vCPU"));
    lines.next();
    lines.next().unwrap_or_default()
}

/// A VM of 64 vCPUs has more than a terminal's rows: the table says which it shows, scrolls to
/// its last and no further, sorts by a column (marked, from the top), and starts from the top
/// again in another view.
#[test]
fn a_big_vms_vcpus_scroll_and_sort() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let press = |app: &mut App, code| app.key(KeyEvent::new(code, KeyModifiers::NONE));
    let mut snapshot = fixture::snapshot();
    let template = snapshot.vms[0].vcpus[0].clone();
    snapshot.vms[0].vcpus = (0..64)
        .map(|i| {
            let mut vcpu = template.clone();
            vcpu.index = Some(i);
            vcpu.tid = Some(10_000 + i);
            if let Some(sched) = vcpu.sched.as_mut() {
                sched.figures.steal = Some(if i == 41 { 0.9 } else { 0.01 });
            }
            vcpu
        })
        .collect();
    let mut app = App::new(Duration::from_secs(1));
    app.update(snapshot);
    app.open();
    app.toggle_vm_view();
    let screen = render_keeping(&mut app, 80, 24);
    let shown = app.drawn.table.expect("a table drawn").shown;
    assert!((3..64).contains(&shown), "{shown} rows\n{screen}");
    assert!(
        screen.contains(&format!(" 1–{shown} of 64 ↑↓ ")),
        "{screen}"
    );
    assert!(first_vcpu_row(&screen).contains("10000"), "{screen}");
    assert!(!screen.contains("10063"), "{screen}");

    for _ in 0..=(64 / shown) {
        press(&mut app, KeyCode::PageDown);
    }
    press(&mut app, KeyCode::Down);
    let screen = render_keeping(&mut app, 80, 24);
    assert!(screen.contains("10063"), "the last vCPU\n{screen}");
    assert!(
        screen.contains(&format!(" {}–64 of 64 ", 65 - shown)),
        "{screen}"
    );
    press(&mut app, KeyCode::Up);
    let screen = render_keeping(&mut app, 80, 24);
    assert!(
        screen.contains(&format!(" {}–63 of 64 ", 64 - shown)),
        "one up from the end, however far down was pressed\n{screen}"
    );

    while app.drill.vcpu_sort.column != crate::tui::vcpu_columns::VcpuColumn::Steal {
        press(&mut app, KeyCode::Char('>'));
    }
    let screen = render_keeping(&mut app, 80, 24);
    assert!(screen.contains("STEAL▼"), "{screen}");
    let top = first_vcpu_row(&screen);
    assert!(top.contains("10041") && top.contains("90%"), "{screen}");
    assert!(screen.contains(&format!(" 1–{shown} of 64 ")), "{screen}");
    press(&mut app, KeyCode::Char('r'));
    let screen = render_keeping(&mut app, 80, 24);
    assert!(screen.contains("STEAL▲"), "{screen}");
    assert!(first_vcpu_row(&screen).contains("10000"), "{screen}");

    press(&mut app, KeyCode::PageDown);
    press(&mut app, KeyCode::Tab);
    render_keeping(&mut app, 80, 24);
    assert_eq!(app.drill.offset, 0, "another view starts at its top");
    assert_eq!(
        app.drill.vcpu_sort.column,
        crate::tui::vcpu_columns::VcpuColumn::Steal,
        "the vCPUs' order stays"
    );
}

/// In the list, ↑↓ still select VMs; `<` `>` sort the list, not the vCPUs.
#[test]
fn the_lists_keys_are_the_lists() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut app = app();
    render_keeping(&mut app, 80, 24);
    let first = app.selected_pid;
    app.key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
    assert_ne!(app.selected_pid, first);
    app.key(KeyEvent::new(KeyCode::Char('>'), KeyModifiers::NONE));
    assert_ne!(app.sort.column, crate::tui::columns::VmColumn::Exits);
    assert_eq!(
        app.drill.vcpu_sort,
        crate::tui::vcpu_columns::VcpuSort::default()
    );
}

/// A host's many recommendations: the advice view says which are in view and scrolls to the
/// last, wrapped lines and all.
#[test]
fn many_recommendations_scroll() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut snapshot = fixture::snapshot();
    let one = snapshot.recommendations[0].clone();
    snapshot.recommendations = (0..40)
        .map(|i| {
            let mut r = one.clone();
            r.target = crate::model::advice::Target::Vm {
                pid: 20_000 + i,
                name: crate::model::Untrusted::new(format!("vm{i}")),
            };
            r
        })
        .collect();
    let mut app = App::new(Duration::from_secs(1));
    app.update(snapshot);
    app.toggle_advice();
    let screen = render_keeping(&mut app, 80, 24);
    assert!(screen.contains(" of 40 ↑↓ "), "{screen}");
    assert!(screen.contains("20000"), "{screen}");
    let fit = app.drawn.table.expect("the advice drawn");
    assert!(fit.rows > 40 * 4 && fit.shown < fit.rows, "{fit:?}");
    for _ in 0..=(fit.rows / fit.shown) {
        app.key(KeyEvent::new(KeyCode::PageDown, KeyModifiers::NONE));
    }
    let screen = render_keeping(&mut app, 80, 24);
    assert!(screen.contains("–40 of 40 ↑↓ "), "{screen}");
    assert!(screen.contains("20039"), "the last one\n{screen}");
    assert!(!screen.contains("20000"), "{screen}");
}

/// A host's 28 sources do not fit the sources pane at 80×24: it says which rows it shows and
/// scrolls (keys and wheel) down to the last, the expired requests, and no further.
#[test]
fn the_sources_pane_scrolls() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
    let mut snapshot = fixture::snapshot();
    for i in 0..14 {
        snapshot
            .families
            .sched
            .sources
            .insert(format!("extra_{i:02}"), crate::model::SourceState::Live);
    }
    let mut app = App::new(Duration::from_secs(1));
    app.update(snapshot);
    app.key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE));
    let screen = render_keeping(&mut app, 80, 24);
    let fit = app.drawn.pane.expect("the pane drawn");
    assert_eq!(
        fit.rows, 29,
        "28 sources and the expired requests\n{screen}"
    );
    assert!(
        screen.contains(&format!(" 1–{} of 29 ↑↓ ", fit.shown)),
        "{screen}"
    );
    assert!(!screen.contains("(requests)"), "{screen}");
    for _ in 0..=(fit.rows / fit.shown) {
        app.key(KeyEvent::new(KeyCode::PageDown, KeyModifiers::NONE));
    }
    let screen = render_keeping(&mut app, 80, 24);
    assert!(screen.contains("(requests)"), "{screen}");
    assert!(
        screen.contains(&format!(" {}–29 of 29 ↑↓ ", 30 - fit.shown)),
        "{screen}"
    );
    app.mouse(MouseEvent {
        kind: MouseEventKind::ScrollUp,
        column: 10,
        row: 10,
        modifiers: KeyModifiers::NONE,
    });
    let screen = render_keeping(&mut app, 80, 24);
    assert!(
        screen.contains(&format!(" {}–28 of 29 ↑↓ ", 29 - fit.shown)),
        "{screen}"
    );
    // Closed and opened again: from the top.
    app.key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE));
    app.key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE));
    let screen = render_keeping(&mut app, 80, 24);
    assert!(
        screen.contains(&format!(" 1–{} of 29 ↑↓ ", fit.shown)),
        "{screen}"
    );
}

/// A terminal too small for a scrolled table's rows draws what it can, without a range to show.
#[test]
fn scrolled_tables_in_a_tiny_terminal() {
    let mut app = app();
    app.toggle_advice();
    for height in 1..8 {
        render_keeping(&mut app, 30, height);
    }
    app.toggle_advice();
    app.open();
    app.toggle_vm_view();
    for height in 1..8 {
        render_keeping(&mut app, 30, height);
    }
}
