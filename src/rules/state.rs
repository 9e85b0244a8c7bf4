//! The life of one alert instance (one rule × one group-by label set), as a pure
//! state machine with time as an input.
//!
//! ```text
//!             violating                 for elapsed
//!  inactive ────────────▶ pending ─────────────────▶ firing
//!  resolved ◀─┐              │ not violating            │ not violating for
//!     ▲       └──────────────┘ (pending cleared)        │ keep_firing_for
//!     └─────────────────────────────────────────────────┘ (resolved)
//! ```
//!
//! With `for = 0` a violation fires at once. `resolved` behaves like `inactive`; it
//! only remembers how the last episode ended (the engine closes the alert and opens a
//! new one at the next `pending`/`firing`).
//!
//! No data is handled by the rule's policy: `ok` is "not violating", `alerting` is
//! "violating", `keep_last` repeats the last verdict that had data (not violating if
//! there never was any), and `no_data` holds the instance unchanged for `no_data_for`
//! and then enters the `no_data` phase (from any phase). When data returns, a violating
//! value starts a new episode (pending, or firing with `for = 0`) and a healthy one
//! resolves the instance. A firing instance that enters `no_data` and later fires
//! again therefore emits `firing` twice with `no_data` between: each is news.
//!
//! The whole state is serializable: the engine stores it in the alert row and a new
//! leaseholder continues from it with the same [`InstanceState::step`], so a failover
//! neither restarts `for` (the pending timer is `active_since_ms`) nor fires twice (a
//! firing instance never emits `firing` again). Stepping twice at the same instant with
//! the same observation emits no second transition.

use super::evaluator::is_violating;
use super::model::{Condition, NoDataPolicy, RuleSpec, millis};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Where an alert instance is in its life.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not violating (or never evaluated).
    #[default]
    Inactive,
    /// Violating, waiting for `for` to elapse.
    Pending,
    /// Violating for at least `for` (or held by `keep_firing_for` / hysteresis).
    Firing,
    /// No data for `no_data_for`, with the `no_data` policy.
    NoData,
    /// The last episode resolved; behaves like `inactive`.
    Resolved,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::NoData => "no_data",
            Phase::Resolved => "resolved",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the machine remembers about one instance. Times are Unix milliseconds.
/// Unknown or missing fields default, so states stored by older versions still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceState {
    pub phase: Phase,
    /// When the current episode started violating: the pending timer, kept across
    /// failovers. `None` outside pending and firing.
    pub active_since_ms: Option<i64>,
    /// The last time the instance was violating; `keep_firing_for` counts from here.
    pub last_violation_ms: Option<i64>,
    /// The last value seen (not changed by ticks without data).
    pub last_value: Option<f64>,
    /// The verdict of the last tick with data; what `keep_last` repeats.
    pub last_violating: bool,
    /// The last tick with data.
    pub last_data_ms: Option<i64>,
    /// The first tick of the current run without data; `no_data_for` counts from here.
    pub no_data_since_ms: Option<i64>,
    /// When the current episode fired; kept through `no_data`, cleared on resolution.
    pub fired_at_ms: Option<i64>,
    /// When the last episode resolved.
    pub resolved_at_ms: Option<i64>,
    /// The last tick this state was stepped at.
    pub last_eval_ms: Option<i64>,
}

/// The timing part of a rule, as the machine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub no_data: NoDataPolicy,
    pub no_data_for: Duration,
}

impl From<&RuleSpec> for Timing {
    fn from(rule: &RuleSpec) -> Self {
        Timing {
            for_: rule.for_,
            keep_firing_for: rule.keep_firing_for,
            no_data: rule.no_data,
            no_data_for: rule.no_data_for,
        }
    }
}

/// What one tick saw for an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// A value and whether it violates the condition (with hysteresis: see
    /// [`InstanceState::observe`]). A non-finite value counts as no data.
    Value { value: f64, violating: bool },
    /// The evaluator had no value for the instance, or the instance is missing from
    /// the evaluated data altogether.
    NoData,
}

/// A change worth recording (and, except `PendingCleared`, usually notifying).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub kind: TransitionKind,
    /// Human-readable why, for the alert's timeline.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// Started violating; firing after `for`.
    Pending,
    /// Fired.
    Firing,
    /// A firing or no-data instance is healthy again.
    Resolved,
    /// Entered the `no_data` phase.
    NoData,
    /// A pending instance stopped violating before it fired; nothing to notify.
    PendingCleared,
}

impl InstanceState {
    /// The observation for an evaluated value, applying the condition's hysteresis
    /// according to whether this instance is firing now. `None` is no data.
    pub fn observe(&self, condition: &Condition, value: Option<f64>) -> Observation {
        match value {
            Some(value) if value.is_finite() => Observation::Value {
                value,
                violating: is_violating(condition, value, self.phase == Phase::Firing),
            },
            _ => Observation::NoData,
        }
    }

    /// Advances the instance to `now_ms` given what this tick saw. Returns the new state
    /// and the transition, if the phase changed in a way worth recording.
    pub fn step(
        &self,
        timing: &Timing,
        now_ms: i64,
        observation: Observation,
    ) -> (InstanceState, Option<Transition>) {
        let mut next = self.clone();
        next.last_eval_ms = Some(now_ms);

        let (violating, why) = match observation {
            Observation::Value { value, violating } if value.is_finite() => {
                next.last_value = Some(value);
                next.last_violating = violating;
                next.last_data_ms = Some(now_ms);
                next.no_data_since_ms = None;
                (violating, Why::Data)
            }
            _ => {
                let since = *next.no_data_since_ms.get_or_insert(now_ms);
                match timing.no_data {
                    NoDataPolicy::Ok => (false, Why::NoDataOk),
                    NoDataPolicy::Alerting => (true, Why::NoDataAlerting),
                    NoDataPolicy::KeepLast => (self.last_violating, Why::NoDataKeepLast),
                    NoDataPolicy::NoData => {
                        let waited = now_ms.saturating_sub(since);
                        if next.phase != Phase::NoData && waited >= millis(timing.no_data_for) {
                            next.phase = Phase::NoData;
                            next.active_since_ms = None;
                            let reason = format!("no data for {}", human(waited));
                            return (
                                next,
                                Some(Transition {
                                    kind: TransitionKind::NoData,
                                    reason,
                                }),
                            );
                        }
                        // Within the grace period nothing is known: hold everything.
                        return (next, None);
                    }
                }
            }
        };

        let transition = if violating {
            next.on_violating(timing, now_ms, why)
        } else {
            next.on_healthy(timing, now_ms, why)
        };
        (next, transition)
    }

    fn on_violating(&mut self, timing: &Timing, now_ms: i64, why: Why) -> Option<Transition> {
        self.last_violation_ms = Some(self.last_violation_ms.map_or(now_ms, |t| t.max(now_ms)));
        match self.phase {
            Phase::Inactive | Phase::Resolved | Phase::NoData => {
                self.active_since_ms = Some(now_ms);
                self.fired_at_ms = None;
                if timing.for_.is_zero() {
                    self.fire(now_ms, why.violating().to_string())
                } else {
                    self.phase = Phase::Pending;
                    let reason = format!(
                        "{}; firing after {}",
                        why.violating(),
                        human(millis(timing.for_))
                    );
                    Some(Transition {
                        kind: TransitionKind::Pending,
                        reason,
                    })
                }
            }
            Phase::Pending => {
                // A state without its timer (should not happen) restarts it rather than firing early.
                let since = *self.active_since_ms.get_or_insert(now_ms);
                let held = now_ms.saturating_sub(since);
                if held >= millis(timing.for_) {
                    let reason = format!("{} for {}", why.violating(), human(held));
                    self.fire(now_ms, reason)
                } else {
                    None
                }
            }
            Phase::Firing => None,
        }
    }

    fn fire(&mut self, now_ms: i64, reason: String) -> Option<Transition> {
        self.phase = Phase::Firing;
        self.fired_at_ms = Some(now_ms);
        Some(Transition {
            kind: TransitionKind::Firing,
            reason,
        })
    }

    fn on_healthy(&mut self, timing: &Timing, now_ms: i64, why: Why) -> Option<Transition> {
        match self.phase {
            Phase::Inactive | Phase::Resolved => None,
            Phase::Pending => {
                self.phase = Phase::Inactive;
                self.active_since_ms = None;
                let reason = format!(
                    "{} before {} elapsed",
                    why.healthy(),
                    human(millis(timing.for_))
                );
                Some(Transition {
                    kind: TransitionKind::PendingCleared,
                    reason,
                })
            }
            Phase::Firing => {
                let last = self
                    .last_violation_ms
                    .or(self.fired_at_ms)
                    .unwrap_or(now_ms);
                let quiet = now_ms.saturating_sub(last);
                if quiet >= millis(timing.keep_firing_for) {
                    let reason = if timing.keep_firing_for.is_zero() {
                        why.healthy().to_string()
                    } else {
                        format!("{} for {}", why.healthy(), human(quiet))
                    };
                    Some(self.resolve(now_ms, reason))
                } else {
                    None
                }
            }
            Phase::NoData => {
                let reason = format!("{} after a period without data", why.healthy());
                Some(self.resolve(now_ms, reason))
            }
        }
    }

    fn resolve(&mut self, now_ms: i64, reason: String) -> Transition {
        self.phase = Phase::Resolved;
        self.active_since_ms = None;
        self.fired_at_ms = None;
        self.resolved_at_ms = Some(now_ms);
        Transition {
            kind: TransitionKind::Resolved,
            reason,
        }
    }
}

/// Where a tick's verdict came from, for the transition's reason.
#[derive(Debug, Clone, Copy)]
enum Why {
    Data,
    NoDataOk,
    NoDataAlerting,
    NoDataKeepLast,
}

impl Why {
    fn violating(self) -> &'static str {
        match self {
            Why::Data | Why::NoDataOk => "condition met",
            Why::NoDataAlerting => "no data (treated as alerting)",
            Why::NoDataKeepLast => "no data (keeping the last verdict: condition met)",
        }
    }

    fn healthy(self) -> &'static str {
        match self {
            Why::Data | Why::NoDataAlerting => "condition not met",
            Why::NoDataOk => "no data (treated as ok)",
            Why::NoDataKeepLast => "no data (keeping the last verdict: condition not met)",
        }
    }
}

fn human(ms: i64) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1000;

    fn timing(for_s: u64, keep_s: u64, no_data: NoDataPolicy, no_data_for_s: u64) -> Timing {
        Timing {
            for_: Duration::from_secs(for_s),
            keep_firing_for: Duration::from_secs(keep_s),
            no_data,
            no_data_for: Duration::from_secs(no_data_for_s),
        }
    }

    fn bad(value: f64) -> Observation {
        Observation::Value {
            value,
            violating: true,
        }
    }

    fn good(value: f64) -> Observation {
        Observation::Value {
            value,
            violating: false,
        }
    }

    use Observation::NoData as Missing;
    use TransitionKind as T;

    /// Drives a fresh instance through `(seconds, observation)` ticks and returns the
    /// phase and transition kind after each.
    fn run(t: &Timing, ticks: &[(i64, Observation)]) -> Vec<(Phase, Option<TransitionKind>)> {
        let mut state = InstanceState::default();
        ticks
            .iter()
            .map(|(secs, obs)| {
                let (next, transition) = state.step(t, secs * S, *obs);
                state = next;
                (state.phase, transition.map(|tr| tr.kind))
            })
            .collect()
    }

    #[test]
    fn table() {
        use NoDataPolicy as P;
        use Phase::*;
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            Timing,
            Vec<(i64, Observation)>,
            Vec<(Phase, Option<T>)>,
        )> = vec![
            (
                "for = 0 fires at once, resolves at once",
                timing(0, 0, P::Ok, 0),
                vec![
                    (0, bad(1.0)),
                    (10, bad(1.0)),
                    (20, good(0.0)),
                    (30, good(0.0)),
                ],
                vec![
                    (Firing, Some(T::Firing)),
                    (Firing, None),
                    (Resolved, Some(T::Resolved)),
                    (Resolved, None),
                ],
            ),
            (
                "for holds pending until it has elapsed",
                timing(30, 0, P::Ok, 0),
                vec![
                    (0, bad(1.0)),
                    (10, bad(1.0)),
                    (29, bad(1.0)),
                    (30, bad(1.0)),
                    (40, bad(1.0)),
                ],
                vec![
                    (Pending, Some(T::Pending)),
                    (Pending, None),
                    (Pending, None),
                    (Firing, Some(T::Firing)),
                    (Firing, None),
                ],
            ),
            (
                "pending that stops violating is cleared, and for restarts",
                timing(30, 0, P::Ok, 0),
                vec![
                    (0, bad(1.0)),
                    (20, good(0.0)),
                    (25, bad(1.0)),
                    (50, bad(1.0)),
                    (55, bad(1.0)),
                ],
                vec![
                    (Pending, Some(T::Pending)),
                    (Inactive, Some(T::PendingCleared)),
                    (Pending, Some(T::Pending)),
                    (Pending, None),
                    (Firing, Some(T::Firing)),
                ],
            ),
            (
                "keep_firing_for holds a firing instance after the last violation",
                timing(0, 60, P::Ok, 0),
                vec![
                    (0, bad(1.0)),
                    (10, good(0.0)),
                    (40, bad(1.0)),
                    (90, good(0.0)),
                    (100, good(0.0)),
                ],
                vec![
                    (Firing, Some(T::Firing)),
                    (Firing, None),
                    (Firing, None),
                    (Firing, None),
                    (Resolved, Some(T::Resolved)),
                ],
            ),
            (
                "resolved fires again on the next episode",
                timing(0, 0, P::Ok, 0),
                vec![(0, bad(1.0)), (10, good(0.0)), (20, bad(1.0))],
                vec![
                    (Firing, Some(T::Firing)),
                    (Resolved, Some(T::Resolved)),
                    (Firing, Some(T::Firing)),
                ],
            ),
            (
                "no data = ok resolves and clears",
                timing(0, 0, P::Ok, 0),
                vec![(0, bad(1.0)), (10, Missing), (20, Missing)],
                vec![
                    (Firing, Some(T::Firing)),
                    (Resolved, Some(T::Resolved)),
                    (Resolved, None),
                ],
            ),
            (
                "no data = ok clears a pending instance",
                timing(60, 0, P::Ok, 0),
                vec![(0, bad(1.0)), (10, Missing)],
                vec![
                    (Pending, Some(T::Pending)),
                    (Inactive, Some(T::PendingCleared)),
                ],
            ),
            (
                "no data = alerting goes pending then fires",
                timing(20, 0, P::Alerting, 0),
                vec![
                    (0, good(0.0)),
                    (10, Missing),
                    (20, Missing),
                    (30, Missing),
                    (40, good(0.0)),
                ],
                vec![
                    (Inactive, None),
                    (Pending, Some(T::Pending)),
                    (Pending, None),
                    (Firing, Some(T::Firing)),
                    (Resolved, Some(T::Resolved)),
                ],
            ),
            (
                "no data = keep_last repeats a violating verdict",
                timing(20, 0, P::KeepLast, 0),
                vec![(0, bad(1.0)), (10, Missing), (20, Missing), (30, good(0.0))],
                vec![
                    (Pending, Some(T::Pending)),
                    (Pending, None),
                    (Firing, Some(T::Firing)),
                    (Resolved, Some(T::Resolved)),
                ],
            ),
            (
                "no data = keep_last repeats a healthy verdict, and no verdict is healthy",
                timing(0, 0, P::KeepLast, 0),
                vec![(0, Missing), (10, good(0.0)), (20, Missing)],
                vec![(Inactive, None), (Inactive, None), (Inactive, None)],
            ),
            (
                "no data = no_data waits no_data_for, then enters no_data once",
                timing(0, 0, P::NoData, 30),
                vec![
                    (0, good(0.0)),
                    (10, Missing),
                    (30, Missing),
                    (40, Missing),
                    (50, Missing),
                ],
                vec![
                    (Inactive, None),
                    (Inactive, None),
                    (Inactive, None),
                    (NoData, Some(T::NoData)),
                    (NoData, None),
                ],
            ),
            (
                "no_data with no_data_for = 0 is immediate; healthy data resolves it",
                timing(0, 0, P::NoData, 0),
                vec![(0, Missing), (10, good(0.0)), (20, good(0.0))],
                vec![
                    (NoData, Some(T::NoData)),
                    (Resolved, Some(T::Resolved)),
                    (Resolved, None),
                ],
            ),
            (
                "no_data holds a firing instance during the grace, then takes over",
                timing(0, 0, P::NoData, 20),
                vec![
                    (0, bad(1.0)),
                    (10, Missing),
                    (20, Missing),
                    (30, Missing),
                    (40, bad(1.0)),
                ],
                vec![
                    (Firing, Some(T::Firing)),
                    (Firing, None),
                    (Firing, None),
                    (NoData, Some(T::NoData)),
                    (Firing, Some(T::Firing)),
                ],
            ),
            (
                "violating data after no_data starts a new pending",
                timing(30, 0, P::NoData, 0),
                vec![(0, Missing), (10, bad(1.0)), (40, bad(1.0))],
                vec![
                    (NoData, Some(T::NoData)),
                    (Pending, Some(T::Pending)),
                    (Firing, Some(T::Firing)),
                ],
            ),
            (
                "the no_data grace restarts when data comes back",
                timing(0, 0, P::NoData, 30),
                vec![
                    (0, Missing),
                    (20, good(0.0)),
                    (30, Missing),
                    (50, Missing),
                    (60, Missing),
                ],
                vec![
                    (Inactive, None),
                    (Inactive, None),
                    (Inactive, None),
                    (Inactive, None),
                    (NoData, Some(T::NoData)),
                ],
            ),
            (
                "a non-finite value is no data",
                timing(0, 0, P::NoData, 0),
                vec![(0, bad(f64::NAN))],
                vec![(NoData, Some(T::NoData))],
            ),
        ];
        for (name, t, ticks, expected) in cases {
            assert_eq!(run(&t, &ticks), expected, "{name}");
        }
    }

    #[test]
    fn hysteresis_through_observe() {
        use crate::rules::model::{Aggregation, Condition, Expr, Operator, Term};
        use crate::series::Selector;
        let condition = Condition {
            expr: Expr::Single(Term::new(
                Selector::new("m"),
                Aggregation::Last,
                Duration::from_secs(60),
            )),
            operator: Operator::Gt,
            threshold: 100.0,
            resolve_threshold: Some(80.0),
            group_by: Vec::new(),
        };
        let t = timing(0, 0, NoDataPolicy::Ok, 0);
        let mut state = InstanceState::default();
        let mut kinds = Vec::new();
        for (i, value) in [90.0, 120.0, 90.0, 85.0, 80.0, 90.0, 101.0]
            .into_iter()
            .enumerate()
        {
            let obs = state.observe(&condition, Some(value));
            let (next, transition) = state.step(&t, i as i64 * 10 * S, obs);
            state = next;
            kinds.push((state.phase, transition.map(|tr| tr.kind)));
        }
        assert_eq!(
            kinds,
            vec![
                (Phase::Inactive, None),
                (Phase::Firing, Some(T::Firing)),
                (Phase::Firing, None),
                (Phase::Firing, None),
                (Phase::Resolved, Some(T::Resolved)),
                (Phase::Resolved, None),
                (Phase::Firing, Some(T::Firing)),
            ]
        );
        assert_eq!(state.observe(&condition, None), Observation::NoData);
    }

    #[test]
    fn transitions_carry_reasons() {
        let t = timing(300, 0, NoDataPolicy::Ok, 0);
        let (state, tr) = InstanceState::default().step(&t, 0, bad(1.0));
        assert_eq!(tr.unwrap().reason, "condition met; firing after 5m");
        let (_, tr) = state.step(&t, 300 * S, bad(1.0));
        assert_eq!(tr.unwrap().reason, "condition met for 5m");
    }

    #[test]
    fn failover_restores_the_pending_timer_and_never_fires_twice() {
        let t = timing(60, 0, NoDataPolicy::Ok, 0);
        // Leader A sees the violation start at 0 and ticks until 40 s, then dies.
        let (mut a, tr) = InstanceState::default().step(&t, 0, bad(1.0));
        assert_eq!(tr.unwrap().kind, T::Pending);
        for secs in [10, 20, 30, 40] {
            let (next, tr) = a.step(&t, secs * S, bad(1.0));
            assert!(tr.is_none());
            a = next;
        }
        let stored = serde_json::to_string(&a).unwrap();

        // Leader B restores and continues: fires at 60 s, not 40 s after taking over.
        let mut b: InstanceState = serde_json::from_str(&stored).unwrap();
        assert_eq!(b, a);
        let mut fired = Vec::new();
        for secs in [50, 60, 70, 80] {
            let (next, tr) = b.step(&t, secs * S, bad(1.0));
            if let Some(tr) = tr {
                fired.push((secs, tr.kind));
            }
            b = next;
        }
        assert_eq!(fired, vec![(60, T::Firing)]);

        // B dies right after firing; C restores and replays the same tick and later ones.
        let mut c: InstanceState =
            serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        for secs in [80, 80, 90, 100] {
            let (next, tr) = c.step(&t, secs * S, bad(1.0));
            assert!(tr.is_none(), "fired again at {secs}");
            c = next;
        }
        assert_eq!(c.fired_at_ms, Some(60 * S));
    }

    #[test]
    fn old_or_partial_states_load() {
        let state: InstanceState =
            serde_json::from_str(r#"{"phase":"pending","active_since_ms":5,"extra":1}"#).unwrap();
        assert_eq!(state.phase, Phase::Pending);
        assert_eq!(state.active_since_ms, Some(5));
        // A pending state that lost its timer restarts it instead of firing early.
        let broken = InstanceState {
            phase: Phase::Pending,
            ..Default::default()
        };
        let (next, tr) = broken.step(&timing(60, 0, NoDataPolicy::Ok, 0), 1_000 * S, bad(1.0));
        assert!(tr.is_none());
        assert_eq!(next.active_since_ms, Some(1_000 * S));
    }

    fn arb_policy() -> impl Strategy<Value = NoDataPolicy> {
        prop_oneof![
            Just(NoDataPolicy::Ok),
            Just(NoDataPolicy::Alerting),
            Just(NoDataPolicy::KeepLast),
            Just(NoDataPolicy::NoData),
        ]
    }

    fn arb_timing() -> impl Strategy<Value = Timing> {
        (0u64..120, 0u64..60, arb_policy(), 0u64..60).prop_map(|(f, k, p, n)| timing(f, k, p, n))
    }

    fn arb_observation() -> impl Strategy<Value = Observation> {
        prop_oneof![
            Just(Observation::NoData),
            (-5i32..5).prop_map(|v| Observation::Value {
                value: f64::from(v),
                violating: v > 0
            }),
            Just(Observation::Value {
                value: f64::NAN,
                violating: true
            }),
        ]
    }

    proptest! {
        #[test]
        fn firing_is_never_repeated_nor_early(
            t in arb_timing(),
            ticks in prop::collection::vec((0i64..40_000, arb_observation()), 1..80),
        ) {
            let mut state = InstanceState::default();
            let mut now = 1_700_000_000_000;
            let mut fired = false;
            for (dt, obs) in ticks {
                now += dt;
                let before = state.clone();
                let (next, transition) = state.step(&t, now, obs);
                if let Some(tr) = &transition {
                    match tr.kind {
                        T::Firing => {
                            prop_assert!(!fired, "fired twice without resolved or no_data between");
                            fired = true;
                            let since = next.active_since_ms.expect("a firing instance has a start");
                            prop_assert!(now - since >= millis(t.for_), "fired {} ms after start, for is {:?}", now - since, t.for_);
                            prop_assert_eq!(next.phase, Phase::Firing);
                        }
                        T::Resolved | T::NoData => fired = false,
                        T::Pending | T::PendingCleared => prop_assert!(!fired),
                    }
                    prop_assert_ne!(before.phase, next.phase);
                } else {
                    prop_assert_eq!(before.phase, next.phase);
                }

                // Idempotent: the same tick again changes nothing worth recording.
                let (again, repeat) = next.step(&t, now, obs);
                prop_assert!(repeat.is_none(), "second transition {:?}", repeat);
                prop_assert_eq!(again.phase, next.phase);

                // Failover: a restored state behaves exactly like the original.
                let restored: InstanceState = serde_json::from_str(&serde_json::to_string(&next).unwrap()).unwrap();
                prop_assert_eq!(&restored, &next);
                state = restored;
            }
        }
    }
}
