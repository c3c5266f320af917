//! The kernel programs' clock, the thread CPU clock costs are measured with, and the wall clock
//! windows are stamped with.

use std::time::{Duration, Instant, SystemTime};

/// A wall-clock difference from the monotonic clock beyond which the wall clock is taken to have
/// been stepped (set by hand or by an NTP step, or the host resumed from suspend). Slewing moves
/// both clocks alike, so it never gets near this.
const STEP: Duration = Duration::from_secs(1);

/// Wall-clock times that advance exactly as the monotonic clock does, so that consecutive windows
/// tile: each ends where the next starts. Reading `SystemTime::now()` beside `Instant::now()` at
/// every sample would put the varying delay between the two reads (microseconds when the agent
/// is preempted between them) into the windows' edges. A step of the wall clock moves the anchor,
/// so times stay true; the window across the step then does not tile, as it should not.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    anchor: Instant,
    wall: SystemTime,
}

impl Default for WallClock {
    fn default() -> Self {
        Self {
            anchor: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

impl WallClock {
    /// The wall-clock time of the monotonic instant `at` (taken just before).
    pub fn at(&mut self, at: Instant) -> SystemTime {
        let derived = self.wall + at.saturating_duration_since(self.anchor);
        let now = SystemTime::now();
        let apart = now
            .duration_since(derived)
            .unwrap_or_else(|behind| behind.duration());
        if apart > STEP {
            self.anchor = at;
            self.wall = now;
            return now;
        }
        derived
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns()` reads, so kernel
/// timestamps and userspace readings can be compared.
#[must_use]
pub fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// CPU time the calling thread has used, in nanoseconds: what a piece of work costs, whatever
/// else the process does meanwhile.
#[must_use]
pub fn thread_cpu_ns() -> u64 {
    read(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else; both clocks used here
    // always exist.
    unsafe { libc::clock_gettime(clock, &raw mut now) };
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_advance_exactly_as_the_monotonic_clock() {
        let mut clock = WallClock::default();
        let first = Instant::now();
        let later = first + Duration::from_millis(250);
        let (a, b) = (clock.at(first), clock.at(later));
        assert_eq!(b.duration_since(a).unwrap(), Duration::from_millis(250));
        let real = SystemTime::now();
        let apart = real.duration_since(a).unwrap_or_else(|e| e.duration());
        assert!(
            apart < Duration::from_millis(100),
            "{apart:?} from the wall clock"
        );
    }

    #[test]
    fn a_stepped_wall_clock_moves_the_anchor() {
        let mut clock = WallClock::default();
        clock.wall -= Duration::from_secs(30);
        let stamped = clock.at(Instant::now());
        let apart = SystemTime::now()
            .duration_since(stamped)
            .unwrap_or_else(|e| e.duration());
        assert!(apart < Duration::from_millis(100), "{apart:?} after a step");
    }
}
