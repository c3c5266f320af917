//! Where a replay stands and how it moves: a position among a recording's windows, paused or
//! playing at a speed. It knows only the windows' times, so it is tested without a terminal or
//! a recording; [`super::replay`] feeds the view from it.

use std::time::Duration;

use crate::recording::when::{self, Span};

/// Play speeds, slowest first: how many recorded seconds pass per second of replay.
pub const SPEEDS: [f64; 6] = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
const NORMAL_SPEED: usize = 1;

/// A gap between windows longer than this (the recorder was stopped, or the host slept) plays
/// as this long, so that playing through it does not look like a hang.
const LONGEST_STEP_NS: u64 = 5_000_000_000;
/// Windows recorded at the same instant still take a moment each, so playing always ends.
const SHORTEST_STEP_NS: u64 = 1_000_000;

#[derive(Debug)]
pub struct Player {
    /// End time (unix ns) of every window of the recording, in order.
    times: Vec<u64>,
    /// The windows the replay is bounded to, inclusive.
    first: usize,
    last: usize,
    position: usize,
    playing: bool,
    speed: usize,
    /// Recorded time played since the position last moved, ns.
    played_ns: u64,
}

impl Player {
    /// A player over the windows whose times lie in `from..=to` (unix ns), paused on the first
    /// of them; `None` when no window does.
    #[must_use]
    pub fn new(times: Vec<u64>, from: u64, to: u64) -> Option<Self> {
        let first = times.partition_point(|&t| t < from);
        let last = times.partition_point(|&t| t <= to).checked_sub(1)?;
        (first <= last).then_some(Self {
            times,
            first,
            last,
            position: first,
            playing: false,
            speed: NORMAL_SPEED,
            played_ns: 0,
        })
    }

    /// Index of the window shown, among all the recording's windows.
    #[must_use]
    pub fn position(&self) -> usize {
        self.position
    }

    /// The window shown as "i of n", counting from 1 within the bounds.
    #[must_use]
    pub fn counted(&self) -> (usize, usize) {
        (self.position - self.first + 1, self.last - self.first + 1)
    }

    /// End time (unix ns) of the window shown.
    #[must_use]
    pub fn time_ns(&self) -> u64 {
        self.times[self.position]
    }

    #[must_use]
    pub fn playing(&self) -> bool {
        self.playing
    }

    #[must_use]
    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed]
    }

    /// The times of the first and last windows of the replay.
    #[must_use]
    pub fn span(&self) -> Span {
        Span {
            start_ns: self.times[self.first],
            end_ns: self.times[self.last],
        }
    }

    /// Space: play or pause. Playing from the last window starts again from the first.
    pub fn toggle_play(&mut self) {
        if !self.playing && self.position == self.last {
            self.position = self.first;
        }
        self.playing = !self.playing;
        self.played_ns = 0;
    }

    pub fn faster(&mut self) {
        self.speed = (self.speed + 1).min(SPEEDS.len() - 1);
    }

    pub fn slower(&mut self) {
        self.speed = self.speed.saturating_sub(1);
    }

    /// ←/→: a window back or forward; pauses, so the window stays to be looked at.
    pub fn step(&mut self, windows: isize) {
        self.jump(self.position.saturating_add_signed(windows));
    }

    /// Home.
    pub fn to_first(&mut self) {
        self.jump(self.first);
    }

    /// End.
    pub fn to_last(&mut self) {
        self.jump(self.last);
    }

    /// Shows window `index` (kept within the bounds), paused: every jump is to look at
    /// something.
    pub fn jump(&mut self, index: usize) {
        self.position = index.clamp(self.first, self.last);
        self.playing = false;
        self.played_ns = 0;
    }

    /// The window an instant falls in (the first ending at or after it), kept within the bounds.
    #[must_use]
    pub fn window_of(&self, time_ns: u64) -> usize {
        self.times
            .partition_point(|&t| t < time_ns)
            .clamp(self.first, self.last)
    }

    /// Whether an instant falls in one of the replay's windows (not before or after them).
    #[must_use]
    pub fn covers(&self, time_ns: u64) -> bool {
        let after_previous = self
            .first
            .checked_sub(1)
            .is_none_or(|before| time_ns > self.times[before]);
        after_previous && time_ns <= self.times[self.last]
    }

    /// `g`: jumps to the time `text` names. Relative forms count from the window shown (`-30s`
    /// goes back half a minute, `+2m` ahead two); the others are as for `--from`, within the
    /// replay's span.
    pub fn go_to(&mut self, text: &str) -> Result<(), String> {
        let text = text.trim();
        let span = if text.starts_with(['+', '-']) {
            // `when` takes `-` from the end and `+` from the start: both are here.
            Span {
                start_ns: self.time_ns(),
                end_ns: self.time_ns(),
            }
        } else {
            self.span()
        };
        let at = when::parse(text, span)?;
        self.jump(self.window_of(at));
        Ok(())
    }

    /// The next window after the shown one that holds one of `times` (sorted, unix ns).
    #[must_use]
    pub fn next_of(&self, times: &[u64]) -> Option<usize> {
        times
            .iter()
            .map(|&t| self.window_of(t))
            .find(|&w| w > self.position)
    }

    /// The last window before the shown one that holds one of `times` (sorted, unix ns).
    #[must_use]
    pub fn previous_of(&self, times: &[u64]) -> Option<usize> {
        times
            .iter()
            .rev()
            .map(|&t| self.window_of(t))
            .find(|&w| w < self.position)
    }

    /// Lets `elapsed` of wall time pass; when playing, moves on by the windows the recorded
    /// time covers at the speed chosen, and pauses on the last window. Returns whether the
    /// position moved.
    pub fn advance(&mut self, elapsed: Duration) -> bool {
        if !self.playing {
            return false;
        }
        let start = self.position;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a tick of wall time: well within range"
        )]
        let played = (elapsed.as_nanos() as f64 * self.speed()) as u64;
        self.played_ns = self.played_ns.saturating_add(played);
        loop {
            if self.position == self.last {
                self.playing = false;
                self.played_ns = 0;
                break;
            }
            let step = (self.times[self.position + 1].saturating_sub(self.times[self.position]))
                .clamp(SHORTEST_STEP_NS, LONGEST_STEP_NS);
            if self.played_ns < step {
                break;
            }
            self.played_ns -= step;
            self.position += 1;
        }
        self.position != start
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp, reason = "speeds come from a table, exactly")]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    /// 2026-12-04T10:00:00Z
    const T0: u64 = 1_796_378_400 * SECOND;

    /// Ten windows a second apart, ending at T0+1 s … T0+10 s.
    fn player() -> Player {
        let times = (1..=10).map(|i| T0 + i * SECOND).collect();
        Player::new(times, 0, u64::MAX).unwrap()
    }

    #[test]
    fn starts_paused_on_the_first_window() {
        let mut p = player();
        assert_eq!((p.position(), p.playing(), p.speed()), (0, false, 1.0));
        assert_eq!(p.counted(), (1, 10));
        assert!(!p.advance(Duration::from_secs(5)), "paused: no move");
    }

    #[test]
    fn plays_at_the_recorded_pace_times_the_speed_and_pauses_at_the_end() {
        let mut p = player();
        p.toggle_play();
        assert!(!p.advance(Duration::from_millis(900)));
        assert!(p.advance(Duration::from_millis(200)));
        assert_eq!(p.position(), 1);
        p.faster();
        p.faster();
        assert_eq!(p.speed(), 4.0);
        // 1.5 s at 4×: 6 recorded seconds (0.1 s carried over from before).
        p.advance(Duration::from_millis(1500));
        assert_eq!(p.position(), 7);
        p.advance(Duration::from_mins(1));
        assert_eq!(p.position(), 9);
        assert!(!p.playing(), "the end pauses, and does not quit");
        // Playing again starts over.
        p.toggle_play();
        assert_eq!((p.position(), p.playing()), (0, true));
    }

    #[test]
    fn speeds_stop_at_both_ends() {
        let mut p = player();
        for _ in 0..10 {
            p.faster();
        }
        assert_eq!(p.speed(), 16.0);
        for _ in 0..10 {
            p.slower();
        }
        assert_eq!(p.speed(), 0.5);
        p.toggle_play();
        p.advance(Duration::from_millis(1900));
        assert_eq!(p.position(), 0, "half speed: 0.95 recorded seconds");
        p.advance(Duration::from_millis(200));
        assert_eq!(p.position(), 1);
    }

    #[test]
    fn steps_and_jumps_pause_and_stay_within_the_bounds() {
        let times: Vec<u64> = (1..=10).map(|i| T0 + i * SECOND).collect();
        // Windows 3..=7 (ending T0+4 s … T0+8 s).
        let mut p = Player::new(times, T0 + 3 * SECOND + 1, T0 + 8 * SECOND).unwrap();
        assert_eq!((p.position(), p.counted()), (3, (1, 5)));
        p.toggle_play();
        p.step(1);
        assert_eq!((p.position(), p.playing()), (4, false));
        p.step(-10);
        assert_eq!(p.position(), 3);
        p.to_last();
        assert_eq!(p.position(), 7);
        p.step(1);
        assert_eq!(p.position(), 7);
        p.to_first();
        assert_eq!(p.position(), 3);
        assert!(
            !p.covers(T0 + 3 * SECOND),
            "in window 2, outside the bounds"
        );
        assert!(p.covers(T0 + 3 * SECOND + 1));
        assert!(!p.covers(T0 + 8 * SECOND + 1));
        assert!(Player::new(vec![T0], T0 + 1, u64::MAX).is_none());
    }

    #[test]
    fn a_long_gap_plays_as_a_short_one() {
        let times = vec![T0, T0 + SECOND, T0 + 3600 * SECOND, T0 + 3601 * SECOND];
        let mut p = Player::new(times, 0, u64::MAX).unwrap();
        p.toggle_play();
        p.advance(Duration::from_secs(1));
        assert_eq!(p.position(), 1);
        p.advance(Duration::from_secs(5));
        assert_eq!(p.position(), 2);
    }

    #[test]
    fn go_to_takes_times_of_day_and_moves_relative_to_the_window_shown() {
        let mut p = player();
        p.go_to("10:00:04").unwrap();
        assert_eq!(p.position(), 3, "the window ending at 10:00:04");
        p.go_to("10:00:04.5").unwrap();
        assert_eq!(p.position(), 4, "the window that holds the instant");
        p.go_to("+3s").unwrap();
        assert_eq!(p.position(), 7);
        p.go_to("-2s").unwrap();
        assert_eq!(p.position(), 5);
        p.go_to("2026-12-04T10:00:09Z").unwrap();
        assert_eq!(p.position(), 8);
        p.go_to("-1h").unwrap();
        assert_eq!(p.position(), 0, "kept within the recording");
        let err = p.go_to("soon").unwrap_err();
        assert!(err.contains("not a time"), "{err}");
        assert_eq!(p.position(), 0);
    }

    #[test]
    fn next_and_previous_find_the_windows_that_hold_events() {
        let mut p = player();
        // Inside window 2 (T0+2 s .. T0+3 s), at the end of window 5, inside window 8.
        let events = [
            T0 + 2 * SECOND + SECOND / 2,
            T0 + 6 * SECOND,
            T0 + 8 * SECOND + 1,
        ];
        assert_eq!(p.next_of(&events), Some(2));
        p.jump(2);
        assert_eq!(p.next_of(&events), Some(5));
        assert_eq!(p.previous_of(&events), None);
        p.jump(9);
        assert_eq!(p.previous_of(&events), Some(8));
        assert_eq!(p.next_of(&events), None);
    }
}
