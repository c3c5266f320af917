//! Running totals and what a window makes of them.
//!
//! The kernel programs keep running totals; every figure of a window is the difference of two
//! readings of them ([`Running::since`]), and figures of a group (a VM's vCPUs, a device's
//! operations) are sums ([`Running::merge`]). Every totals type implements [`Running`]: a struct
//! whose fields all do gets it from [`running_totals!`](crate::running_totals).

/// Running totals: what was added between two readings, and the sum of two totals.
pub trait Running {
    /// What was added between `earlier` and `self`, two readings of the same running totals.
    /// Saturating: a counter that went backwards (a reset) adds nothing.
    #[must_use]
    fn since(&self, earlier: &Self) -> Self;

    /// Adds `other` (e.g. another thread of the same VM).
    fn merge(&mut self, other: &Self);
}

impl Running for u64 {
    fn since(&self, earlier: &Self) -> Self {
        self.saturating_sub(*earlier)
    }

    fn merge(&mut self, other: &Self) {
        *self = self.saturating_add(*other);
    }
}

impl<const N: usize> Running for [u64; N] {
    fn since(&self, earlier: &Self) -> Self {
        let mut out = *self;
        for (now, before) in out.iter_mut().zip(earlier) {
            *now = now.saturating_sub(*before);
        }
        out
    }

    fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.iter_mut().zip(other) {
            *mine = mine.saturating_add(*theirs);
        }
    }
}

/// Implements [`Running`] for a struct field by field: `running_totals!(Flushes { events, pages,
/// full })`. Every field named must implement [`Running`]; fields not named are copied from the
/// later reading by `since` and kept by `merge`.
#[macro_export]
macro_rules! running_totals {
    ($type:ty { $($field:ident),+ $(,)? }) => {
        impl $crate::model::running::Running for $type {
            #[allow(
                clippy::needless_update,
                reason = "the update copies the fields not named, when there are any"
            )]
            fn since(&self, earlier: &Self) -> Self {
                Self {
                    $($field: $crate::model::running::Running::since(
                        &self.$field,
                        &earlier.$field,
                    ),)+
                    ..self.clone()
                }
            }

            fn merge(&mut self, other: &Self) {
                $($crate::model::running::Running::merge(&mut self.$field, &other.$field);)+
            }
        }
    };
}

/// Events per second over a window; 0 for an empty window.
#[must_use]
#[expect(
    clippy::cast_precision_loss,
    reason = "counts and bytes in a window stay far below 2^52"
)]
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Default, PartialEq)]
    struct Totals {
        events: u64,
        buckets: [u64; 2],
        label: &'static str,
    }
    crate::running_totals!(Totals { events, buckets });

    #[test]
    fn a_window_is_the_difference_and_a_group_the_sum() {
        let earlier = Totals {
            events: 5,
            buckets: [1, 4],
            label: "a",
        };
        let later = Totals {
            events: 9,
            buckets: [3, 6],
            label: "b",
        };
        let window = later.since(&earlier);
        assert_eq!(window.events, 4);
        assert_eq!(window.buckets, [2, 2]);
        assert_eq!(
            window.label, "b",
            "fields not named come from the later reading"
        );
        let mut sum = window.clone();
        sum.merge(&window);
        assert_eq!((sum.events, sum.buckets), (8, [4, 4]));
        assert_eq!(
            earlier.since(&later).events,
            0,
            "a counter that went back adds nothing"
        );
    }
}
