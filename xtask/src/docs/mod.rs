//! `cargo xtask docs`: the screenshots of the live view in `docs/screenshots/`, regenerated from
//! real captures. The demo guests run; kvmtop's live view runs in a tmux session of its own at a
//! fixed size; each shot in [`SHOTS`] goes back to the VM table, selects its VM, presses its keys,
//! checks the screen shows what it should, and saves `tmux capture-pane -e` converted to SVG.
//!
//! When the live view's keys or titles change, only [`SHOTS`] needs editing.

mod tmux;

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};
use guests::Guest;

use crate::{
    demo, interrupt,
    setup::{self, Purpose},
    util::{self, Phase, is_root, workspace_root},
};
use tmux::Session;

/// The terminal size of every screenshot, columns × rows.
const SIZE: (u16, u16) = (120, 32);

/// Windows the live view shows before the first shot, so rates, steal and advice have filled
/// in (advice fires after two windows in a row) and the history charts have a line to draw.
const WARM_UP: Duration = Duration::from_secs(20);

/// One screenshot.
struct Shot {
    /// The file under `docs/screenshots/`, without `.svg`.
    file: &'static str,
    /// The VM to select on the VM table first (a demo guest's name), if any.
    vm: Option<&'static str>,
    /// tmux key names pressed after selecting, from the VM table (`tmux send-keys` syntax).
    keys: &'static [&'static str],
    /// Text the screen must show once the keys are pressed: the view's title.
    expect: &'static str,
}

/// The screenshots, in order. Each starts from the VM table.
const SHOTS: &[Shot] = &[
    Shot {
        file: "vms",
        vm: None,
        keys: &[],
        expect: " VMs ",
    },
    Shot {
        file: "exits",
        vm: Some("demo-portio"),
        keys: &["Enter"],
        expect: "— exits",
    },
    Shot {
        file: "vcpus",
        vm: Some("demo-portio"),
        keys: &["Enter", "Tab"],
        expect: "— vCPUs",
    },
    Shot {
        file: "io",
        vm: Some("demo-disk"),
        keys: &["i"],
        expect: "— block I/O",
    },
    Shot {
        file: "advice",
        vm: None,
        keys: &["a"],
        expect: "advice",
    },
    Shot {
        file: "help",
        vm: None,
        keys: &["?"],
        expect: " keys — ",
    },
    Shot {
        file: "sources",
        vm: None,
        keys: &["s"],
        expect: " kernel sources — ",
    },
];

/// The key that goes back one level (never quits the live view).
const BACK: &str = "Escape";
/// The key that opens the VM table's filter.
const FILTER: &str = "/";
/// The demo guests' names.
const DEMO_VMS: [&str; 3] = ["demo-portio", "demo-disk", "demo-idle"];

pub fn run() -> Result<()> {
    println!(
        "cargo xtask docs: captures the live view over the demo guests at {}×{} in tmux and \
         writes one SVG per view to docs/screenshots/",
        SIZE.0, SIZE.1
    );
    if !is_root() {
        bail!(
            "cargo xtask docs needs root: kvmtop loads eBPF programs and the demo guests need \
             /dev/kvm (run it with sudo -E)"
        );
    }
    guests::preflight().map_err(|why| anyhow::anyhow!("cannot start the demo guests: {why}"))?;
    setup::ensure(Purpose::Test)?;
    let binary = util::build_kvmtop_phase(true)?;

    interrupt::install();
    // Both guards stop what they hold on every way out: the guests and the tmux server.
    let mut guests: Vec<Guest> = Vec::new();
    let phase = Phase::start("start the demo guests");
    let started = demo::start_guests(&mut guests);
    phase.finish(started.is_ok());
    started?;

    let command = format!("{} --no-flight-recorder", binary.display());
    let session = Session::start(SIZE, &command)?;
    let out = workspace_root().join("docs/screenshots");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let result = capture_all(&session, &out);
    drop(session);
    println!("stopping the guests…");
    drop(guests);
    result
}

fn capture_all(session: &Session, out: &Path) -> Result<()> {
    session.wait_for(
        "the VM table with the demo guests",
        Duration::from_mins(1),
        |s| DEMO_VMS.iter().all(|vm| s.contains(vm)),
    )?;
    println!("letting the live view fill in for {} s…", WARM_UP.as_secs());
    std::thread::sleep(WARM_UP);
    for shot in SHOTS {
        interrupt::bail_if_interrupted()?;
        println!(
            "shot {}: {}keys {:?}",
            shot.file,
            shot.vm
                .map_or_else(String::new, |vm| format!("select {vm}, ")),
            shot.keys
        );
        back_to_vm_table(session)?;
        if let Some(vm) = shot.vm {
            select(session, vm)?;
        }
        for key in shot.keys {
            session.key(key)?;
        }
        session
            .wait_for(shot.expect, Duration::from_secs(10), |s| {
                s.contains(shot.expect)
            })
            .with_context(|| {
                format!(
                    "shot {:?}: after {:?} the screen does not show {:?}; update SHOTS in \
                     xtask/src/docs/mod.rs if the live view's keys changed",
                    shot.file, shot.keys, shot.expect
                )
            })?;
        // A full window on the view, so its figures are not the first sample's.
        std::thread::sleep(Duration::from_millis(1500));
        let ansi = session.capture_ansi()?;
        let path = out.join(format!("{}.svg", shot.file));
        std::fs::write(&path, svg(&ansi)).with_context(|| format!("writing {}", path.display()))?;
        println!("  wrote {}", path.display());
    }
    Ok(())
}

/// Brings the live view back to its whole VM table: [`BACK`] closes a pane, goes back from a
/// VM's view and clears the filter, and never quits, so pressing it more than needed is safe.
fn back_to_vm_table(session: &Session) -> Result<()> {
    for _ in 0..4 {
        session.key(BACK)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    session
        .wait_for("the whole VM table", Duration::from_secs(5), |s| {
            on_vm_table(s) && DEMO_VMS.iter().all(|vm| s.contains(vm))
        })
        .with_context(|| format!("{BACK} did not bring the live view back to its VM table"))
}

fn on_vm_table(screen: &str) -> bool {
    screen.contains(" VMs ─") && !screen.contains("— exits") && !screen.contains("— vCPUs")
}

/// Selects `vm` by filtering the VM table down to it (the order of a live table changes
/// between key presses, so moving to its row could miss it).
fn select(session: &Session, vm: &str) -> Result<()> {
    session.key(FILTER)?;
    session.key(vm)?;
    session.key("Enter")?;
    session
        .wait_for(
            &format!("{vm} alone on the VM table"),
            Duration::from_secs(10),
            |s| s.contains(vm) && DEMO_VMS.iter().filter(|d| s.contains(*d)).count() == 1,
        )
        .map(drop)
}

/// The characters SVG escapes, and the private-use stand-ins they are converted as:
/// anstyle-svg 1.1.1 sizes a run of background by its escaped text (`&lt;` as four cells),
/// which shifts every background after a `<`, `>` or `&` to the right.
const STAND_INS: [(char, char, &str); 3] = [
    ('<', '\u{E000}', "&lt;"),
    ('>', '\u{E001}', "&gt;"),
    ('&', '\u{E002}', "&amp;"),
];

/// The width anstyle-svg gives a terminal cell, in pixels.
const CELL_PX: f64 = 8.4;

/// A tmux capture with its SGR colours as SVG (`anstyle-svg`, the converter cargo's own UI
/// tests use), on a dark terminal background.
fn svg(ansi: &str) -> String {
    let stood_in: String = ansi
        .chars()
        .map(|c| match STAND_INS.iter().find(|(from, ..)| *from == c) {
            Some((_, stand_in, _)) => *stand_in,
            None if STAND_INS.iter().any(|(_, stand_in, _)| *stand_in == c) => '\u{FFFD}',
            None => c,
        })
        .collect();
    let mut svg = anstyle_svg::Term::new()
        .fg_color(anstyle::Color::Rgb(anstyle::RgbColor(0xd0, 0xd0, 0xd0)))
        .bg_color(anstyle::Color::Rgb(anstyle::RgbColor(0x1e, 0x1e, 0x1e)))
        .render_svg(&stood_in);
    for (_, stand_in, escaped) in STAND_INS {
        svg = svg.replace(stand_in, escaped);
    }
    svg.lines().map(pinned_width).collect::<Vec<_>>().join("\n") + "\n"
}

/// A line of the image pinned to the cells it takes: glyphs the viewer's monospace font lacks
/// (the charts' braille) come from another font with other widths, and would otherwise push
/// the rest of the line, borders included, out of place.
fn pinned_width(line: &str) -> String {
    const LINE_START: &str = "<tspan x=\"";
    let Some(start) = line
        .find(LINE_START)
        .filter(|&at| line[..at].trim().is_empty())
    else {
        return line.to_owned();
    };
    let Some(open_end) = line[start..].find('>').map(|i| start + i) else {
        return line.to_owned();
    };
    let mut text = String::new();
    let mut in_tag = false;
    for c in line[open_end + 1..].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&");
    let cells = unicode_width::UnicodeWidthStr::width(text.as_str());
    if cells == 0 {
        return line.to_owned();
    }
    #[expect(clippy::cast_precision_loss, reason = "a few hundred cells")]
    let width = cells as f64 * CELL_PX;
    format!(
        "{} textLength=\"{width:.1}px\" lengthAdjust=\"spacingAndGlyphs\"{}",
        &line[..open_end],
        &line[open_end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_box_drawing_survive_the_conversion() {
        let capture = "\x1b[1mVM\x1b[0m  \x1b[31mred\x1b[0m\n┌ 3 VMs ─┐\n\x1b[7mdemo\x1b[0m\n";
        let svg = svg(capture);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("3 VMs"), "{svg}");
        assert!(svg.contains('┌'), "{svg}");
        assert!(svg.contains("font-weight") || svg.contains("bold"), "{svg}");
        // No escape byte left in the image.
        assert!(!svg.contains('\x1b'), "{svg}");
    }

    #[test]
    fn backgrounds_stay_under_their_text_after_characters_svg_escapes() {
        let svg = svg("\x1b[7m < > \x1b[0m sort \x1b[7m r \x1b[0m\n");
        assert!(svg.contains("&lt; &gt;"), "{svg}");
        // The background of " < > " is five cells, not the length of its escaped text.
        assert!(svg.contains(">█████</tspan>"), "{svg}");
        assert!(!svg.contains('\u{E000}'), "{svg}");
    }

    #[test]
    fn each_line_is_pinned_to_the_cells_it_takes() {
        let svg = svg("ab⠂⠂ c\n");
        let line = svg.lines().find(|l| l.contains("ab⠂⠂ c")).unwrap();
        assert!(line.contains("textLength=\"50.4px\""), "{line}");
    }

    #[test]
    fn the_vm_table_is_told_from_the_views() {
        assert!(on_vm_table("┌ 3 VMs ───┐"));
        assert!(!on_vm_table("┌ 3 VMs ───┐\n┌ demo (pid 1) — exits ─┐"));
    }

    #[test]
    fn every_shot_has_its_own_file() {
        let mut files: Vec<&str> = SHOTS.iter().map(|s| s.file).collect();
        files.sort_unstable();
        files.dedup();
        assert_eq!(files.len(), SHOTS.len());
    }
}
