//! Reset-aware rates from counters read at successive polls.
//!
//! kumod's counters restart from zero when kumod restarts, and a queue's series vanish when the
//! queue goes idle and start again from zero when it comes back. So between two polls:
//! - a value at least the previous one increased by the difference;
//! - a smaller value means the counter restarted: it increased by the new value;
//! - a value whose key was absent at the previous poll (new, or vanished and back) increased
//!   by the whole value, since it started from zero;
//! - at the very first poll there is no baseline, hence no increase and no rate.
//!
//! Increases are never negative. Non-finite values are treated as absent.

use super::snapshot::Totals;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Remembers the counters of the previous poll.
#[derive(Debug, Clone, Default)]
pub struct CounterTracker {
    last_ms: Option<i64>,
    previous: HashMap<String, f64>,
}

/// What one poll added to each counter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// Milliseconds since the previous poll; `None` at the first poll.
    pub elapsed_ms: Option<i64>,
    /// Key → increase since the previous poll, for every key present now (empty at the first
    /// poll).
    pub increases: BTreeMap<String, f64>,
}

impl Rates {
    /// The increase of `key` since the previous poll.
    pub fn increase(&self, key: &str) -> Option<f64> {
        self.increases.get(key).copied()
    }

    /// The increase of `key` per second; `None` at the first poll, when the clock did not move
    /// forward, or when the key is absent now.
    pub fn per_second(&self, key: &str) -> Option<f64> {
        let elapsed_ms = self.elapsed_ms.filter(|ms| *ms > 0)?;
        // Milliseconds between two polls fit an f64 exactly.
        Some(self.increase(key)? * 1000.0 / elapsed_ms as f64)
    }
}

impl CounterTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the counters read at `now_ms` and returns their increases since the previous
    /// call. A key given twice keeps its last value.
    pub fn observe(&mut self, now_ms: i64, counters: &[(String, f64)]) -> Rates {
        let current: HashMap<String, f64> = counters
            .iter()
            .filter(|(_, value)| value.is_finite())
            .map(|(key, value)| (key.clone(), *value))
            .collect();

        let rates = match self.last_ms {
            None => Rates::default(),
            Some(last_ms) => Rates {
                elapsed_ms: Some(now_ms.saturating_sub(last_ms)),
                increases: current
                    .iter()
                    .map(|(key, value)| {
                        let increase = match self.previous.get(key) {
                            Some(previous) if value >= previous => value - previous,
                            // Restarted from zero, or (re)appeared from zero.
                            _ => *value,
                        };
                        (key.clone(), increase.max(0.0))
                    })
                    .collect(),
            },
        };

        self.last_ms = Some(now_ms);
        self.previous = current;
        rates
    }
}

/// Messages per second over the last poll interval, from the node totals. `None` where there
/// is no rate yet (first poll) or the total is not reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Throughput {
    pub delivered_per_s: Option<f64>,
    pub bounced_per_s: Option<f64>,
    pub deferred_per_s: Option<f64>,
    pub received_per_s: Option<f64>,
}

/// Turns successive [`Totals`] of one KumoMTA node into [`Throughput`].
#[derive(Debug, Clone, Default)]
pub struct ThroughputTracker {
    counters: CounterTracker,
}

impl ThroughputTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe(&mut self, now_ms: i64, totals: &Totals) -> Throughput {
        let counters: Vec<(String, f64)> = [
            ("delivered", totals.delivered),
            ("bounced", totals.bounced),
            ("deferred", totals.deferred),
            ("received", totals.received),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_string(), value?)))
        .collect();
        let rates = self.counters.observe(now_ms, &counters);
        Throughput {
            delivered_per_s: rates.per_second("delivered"),
            bounced_per_s: rates.per_second("bounced"),
            deferred_per_s: rates.per_second("deferred"),
            received_per_s: rates.per_second("received"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn poll(tracker: &mut CounterTracker, now_ms: i64, values: &[(&str, f64)]) -> Rates {
        let counters: Vec<(String, f64)> =
            values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        tracker.observe(now_ms, &counters)
    }

    #[test]
    fn increases_across_growth_resets_and_gaps() {
        let mut tracker = CounterTracker::new();
        let first = poll(&mut tracker, 0, &[("a", 100.0), ("b", 5.0)]);
        assert_eq!(first, Rates::default());
        assert_eq!(first.per_second("a"), None);

        /// poll time, counters read, expected increases
        type Case = (
            i64,
            &'static [(&'static str, f64)],
            &'static [(&'static str, f64)],
        );
        let cases: &[Case] = &[
            // grows
            (
                10_000,
                &[("a", 150.0), ("b", 5.0)],
                &[("a", 50.0), ("b", 0.0)],
            ),
            // a restarts (kumod restart); c is new after the first poll: from zero
            (
                20_000,
                &[("a", 20.0), ("b", 6.0), ("c", 3.0)],
                &[("a", 20.0), ("b", 1.0), ("c", 3.0)],
            ),
            // b vanishes (queue idle)
            (
                30_000,
                &[("a", 20.0), ("c", 4.0)],
                &[("a", 0.0), ("c", 1.0)],
            ),
            // b comes back from zero, even though its value exceeds the one before it vanished
            (
                40_000,
                &[("a", 21.0), ("b", 9.0), ("c", 4.0)],
                &[("a", 1.0), ("b", 9.0), ("c", 0.0)],
            ),
            // non-finite values count as absent
            (
                50_000,
                &[("a", f64::NAN), ("b", 10.0), ("c", f64::INFINITY)],
                &[("b", 1.0)],
            ),
            // a back after a NaN poll: from zero
            (
                60_000,
                &[("a", 25.0), ("b", 10.0)],
                &[("a", 25.0), ("b", 0.0)],
            ),
        ];
        for (now, values, expected) in cases {
            let rates = poll(&mut tracker, *now, values);
            let expected: BTreeMap<String, f64> =
                expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            assert_eq!(rates.increases, expected, "at {now}");
            assert_eq!(rates.elapsed_ms, Some(10_000));
        }
    }

    #[test]
    fn per_second_needs_time_to_pass() {
        let mut tracker = CounterTracker::new();
        poll(&mut tracker, 1_000, &[("a", 0.0)]);
        let rates = poll(&mut tracker, 3_000, &[("a", 10.0)]);
        assert_eq!(rates.per_second("a"), Some(5.0));
        assert_eq!(rates.per_second("missing"), None);
        // The clock stood still or went back: increases still count, rates do not.
        let rates = poll(&mut tracker, 3_000, &[("a", 12.0)]);
        assert_eq!(
            (rates.increase("a"), rates.per_second("a")),
            (Some(2.0), None)
        );
        let rates = poll(&mut tracker, 2_000, &[("a", 13.0)]);
        assert_eq!(
            (rates.increase("a"), rates.per_second("a")),
            (Some(1.0), None)
        );
    }

    #[test]
    fn throughput_from_totals() {
        let mut tracker = ThroughputTracker::new();
        let totals = |delivered: f64, bounced: Option<f64>| Totals {
            delivered: Some(delivered),
            bounced,
            deferred: Some(41.0),
            received: Some(1600.0),
            ..Totals::default()
        };
        assert_eq!(
            tracker.observe(0, &totals(1520.0, Some(7.0))),
            Throughput::default()
        );
        assert_eq!(
            tracker.observe(10_000, &totals(1570.0, None)),
            Throughput {
                delivered_per_s: Some(5.0),
                bounced_per_s: None,
                deferred_per_s: Some(0.0),
                received_per_s: Some(0.0),
            }
        );
        // kumod restarted: counters start over instead of going negative.
        let after_restart = tracker.observe(20_000, &totals(30.0, Some(2.0)));
        assert_eq!(after_restart.delivered_per_s, Some(3.0));
        assert_eq!(after_restart.bounced_per_s, Some(0.2));
    }

    /// One poll of one counter in the model: `vanish` makes it absent at this poll (and thus
    /// restart from zero), `reset` restarts it, `events` happen after the reset.
    #[derive(Debug, Clone)]
    struct Step {
        vanish: bool,
        reset: bool,
        events: u32,
        advance_ms: i64,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.15),
            0u32..1000,
            -5i64..20_000,
        )
            .prop_map(|(vanish, reset, events, advance_ms)| Step {
                vanish,
                reset,
                events,
                advance_ms,
            })
    }

    proptest! {
        #[test]
        fn increases_and_rates_are_never_negative(
            polls in prop::collection::vec(
                (prop::collection::vec(("[a-c]", prop::num::f64::ANY), 0..4), -1000i64..100_000),
                1..30,
            ),
        ) {
            let mut tracker = CounterTracker::new();
            let mut now = 0i64;
            for (values, advance) in polls {
                now += advance;
                let rates = tracker.observe(now, &values);
                for (key, increase) in &rates.increases {
                    prop_assert!(*increase >= 0.0, "{key}: {increase}");
                    if let Some(rate) = rates.per_second(key) {
                        prop_assert!(rate >= 0.0, "{key}: {rate}");
                    }
                }
            }
        }

        #[test]
        fn increases_add_up_to_the_true_number_of_events(
            steps in prop::collection::vec(step(), 1..60),
        ) {
            let mut tracker = CounterTracker::new();
            let mut counter: u64 = 0;
            let mut was_present = false;
            let mut now = 0i64;
            let mut true_events: u64 = 0;
            let mut counted = 0.0f64;
            for (index, step) in steps.iter().enumerate() {
                now += step.advance_ms;
                let mut events = u64::from(step.events);
                // A restart is only visible if the counter comes back lower than it was read,
                // or if the series was absent in between; keep generated restarts visible.
                let restarted = step.reset || !was_present;
                if step.reset && was_present && counter > 0 && events >= counter {
                    events %= counter;
                }
                if restarted {
                    counter = 0;
                }
                counter += events;
                // Events before the first poll are the baseline, not counted.
                if index > 0 {
                    true_events += events;
                }
                let values = if step.vanish {
                    // kumod dropped the series: its events are lost with it, and it restarts.
                    if index > 0 {
                        true_events -= events;
                    }
                    counter = 0;
                    vec![]
                } else {
                    vec![("k".to_string(), counter as f64)]
                };
                was_present = !step.vanish;
                let rates = tracker.observe(now, &values);
                counted += rates.increase("k").unwrap_or(0.0);
            }
            prop_assert_eq!(counted, true_events as f64);
        }
    }
}
