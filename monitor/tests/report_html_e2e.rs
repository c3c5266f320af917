//! The HTML report in a real browser.
//!
//! A recording of an incident is written through the library from the fixture host (the golden
//! JSON of the output tests): 20 one-second windows where the first VM's vCPUs wait 2 % of the
//! time for a host CPU, a mark, then 20 windows at 45 %. That VM is named to attack both a page
//! and a terminal. `kvmtop report --format html` turns the recording into one page, and headless
//! Chromium opens it:
//!
//! - its DOM (`--dump-dom`, the page as Chromium parsed it) must hold the ranked table with the
//!   steal rise first, a chart for it with the incident shaded and the mark drawn, the mark on
//!   the timeline, and the hostile name as text: no element it tried to inject, no script run;
//! - its screenshot must show what the charts draw: the incident's shading, the figure's line
//!   and the mark's red line, each as pixels of their colours.
//!
//! The screenshot is kept as `target/report-screenshot.png` to look at. Skipped, with the
//! reason, where no Chromium is installed (`cargo xtask setup` installs Debian's).

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

const TEST: &str = "report_html_e2e";
const HOSTILE_NAME: &str =
    "</td><script>document.title='owned'</script><img src=x onerror=alert(1)>\u{1b}]0;x\u{7}";
const MARK: &str = "deploy v2.3 started";
const WINDOW_SIZE: (u32, u32) = (1280, 2400);

/// The colours the report's charts draw with (`report/render.rs`).
const INCIDENT_SHADE: [u8; 3] = [0xff, 0xee, 0xee];
const FIGURE_LINE: [u8; 3] = [0x00, 0x33, 0x66];
const MARK_LINE: [u8; 3] = [0xcc, 0x00, 0x00];

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
}

/// Headless Chromium as root on a machine without network or GPU: no sandbox (root), no
/// background connections (they would be refused), a fresh profile per run.
fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command
}

fn run(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// 20 windows at 2 % steal, a mark, 20 windows at 45 %, ending now.
fn record_incident(dir: &Path) {
    let steal = |i| if i < 20 { 0.02 } else { 0.45 };
    support::fixture::record_steal(dir, 40, 21.0, steal, (20, MARK), Some(HOSTILE_NAME));
}

/// Counts the pixels of an RGBA image within `tolerance` of `colour` on every channel.
fn pixels_like(rgba: &[u8], colour: [u8; 3], tolerance: u8) -> usize {
    rgba.chunks_exact(4)
        .filter(|px| (0..3).all(|c| px[c].abs_diff(colour[c]) <= tolerance))
        .count()
}

#[test]
fn chromium_shows_the_ranked_rise_its_chart_and_the_mark_and_runs_nothing_injected() {
    let Some(chromium) = chromium() else {
        support::skip(
            TEST,
            "no Chromium on PATH (cargo xtask setup installs Debian's chromium)",
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let recording = work.path().join("recording");
    record_incident(&recording);

    // The incident is the second half; the baseline defaults to the 20 s before it.
    let page = work.path().join("report.html");
    run(Command::new(env!("CARGO_BIN_EXE_kvmtop"))
        .arg("report")
        .arg(&recording)
        .args(["--from", "+20s", "--format", "html", "-o"])
        .arg(&page));

    let url = format!("file://{}", page.display());
    let dom = String::from_utf8(run(headless(&chromium, &work.path().join("profile-dom"))
        .arg("--dump-dom")
        .arg(&url)))
    .expect("the DOM as UTF-8");

    // Nothing the VM's name carries became an element or ran.
    assert!(
        !dom.contains("<script") && !dom.contains("<img"),
        "the hostile name made an element: {dom}"
    );
    assert!(
        dom.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"),
        "the hostile name is shown as text: {dom}"
    );
    assert!(!dom.contains("<title>owned"), "a script ran: {dom}");
    assert!(
        !dom.contains('\u{1b}') && !dom.contains('\u{7}'),
        "control characters reached the page"
    );

    // The ranked table: the first row is the steal rise.
    let table = dom
        .split("<table>")
        .nth(1)
        .expect("the report has a table of deviations");
    let first_row = table
        .split("<tr>")
        .nth(2)
        .expect("the table has a first deviation");
    assert!(
        first_row.contains("steal"),
        "the steal rise ranks first: {first_row}"
    );

    // A chart with the incident shaded, the figure's line and the mark on it.
    let svg = dom
        .split("<svg")
        .nth(1)
        .expect("the report has at least one chart");
    for (what, needle) in [
        ("the incident's shading", "fill=\"#fee\""),
        ("the figure's line", "<polyline"),
        ("the mark", "stroke=\"#c00\""),
    ] {
        assert!(svg.contains(needle), "the first chart lacks {what}: {svg}");
    }
    assert!(dom.contains(MARK), "the timeline lists the mark");

    // What Chromium drew.
    let screenshot = work.path().join("report.png");
    run(headless(&chromium, &work.path().join("profile-shot"))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("--window-size={},{}", WINDOW_SIZE.0, WINDOW_SIZE.1))
        .arg(&url));
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&screenshot).expect("Chromium wrote the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(
        (info.width, info.height),
        WINDOW_SIZE,
        "the screenshot has the window's size"
    );
    let rgba: Vec<u8> = match info.color_type {
        png::ColorType::Rgba => buffer[..info.buffer_size()].to_vec(),
        png::ColorType::Rgb => buffer[..info.buffer_size()]
            .chunks_exact(3)
            .flat_map(|px| [px[0], px[1], px[2], 0xff])
            .collect(),
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    // A chart is 720×160 with about half shaded; the line is 1.5 px wide over 720 px, the mark
    // 1 px over 160 px (anti-aliased, hence the tolerances).
    let shade = pixels_like(&rgba, INCIDENT_SHADE, 2);
    let line = pixels_like(&rgba, FIGURE_LINE, 40);
    let mark = pixels_like(&rgba, MARK_LINE, 60);
    eprintln!("screenshot pixels: shading {shade}, figure line {line}, mark {mark}");
    assert!(
        shade >= 20_000,
        "the incident's shading is drawn: {shade} px"
    );
    assert!(line >= 300, "the figure's line is drawn: {line} px");
    assert!(mark >= 80, "the mark is drawn: {mark} px");

    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../report-screenshot.png");
    std::fs::copy(&screenshot, &kept).expect("keeping the screenshot");
    eprintln!("screenshot kept as {}", kept.display());
}
