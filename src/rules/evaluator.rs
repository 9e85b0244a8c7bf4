//! Pure evaluation of a rule's condition: windows of samples in, one value per alert
//! instance out. No I/O and no clock: `now_ms` is an input.
//!
//! Semantics, per term of the condition:
//!
//! 1. **Select**: every input series whose name and labels match the term's selector.
//! 2. **Window**: keep its samples with `now - window < t <= now`; non-finite values
//!    (NaN stale markers) are skipped.
//! 3. **Aggregate per series** ([`aggregate`]):
//!    * `last`, `avg`, `min`, `max`, `sum`, `count` as named;
//!    * `increase`: the sum of the rises between consecutive samples, where a drop means
//!      the counter restarted from zero (so the sample after a drop counts in full).
//!      Not extrapolated to the window's edges; needs two samples;
//!    * `rate`: `increase` divided by the seconds between the first and the last sample
//!      in the window; needs two samples at different times;
//!    * `p95`: nearest rank, the smallest sample that at least 95 % of the samples do
//!      not exceed (no interpolation, so the result is always an observed value).
//!
//!    A window without (enough) samples has no data; so has a result that is not finite.
//! 4. **Group**: series are grouped by the condition's `group_by` labels (a label the
//!    series lacks, or has empty, is left out of the group's labels) and combined:
//!    summed for `last`, `sum`, `count`, `rate` and `increase` (a queue's size is the sum
//!    of its `kind`s), the minimum for `min`, the maximum for `max`; `avg` and `p95` are
//!    computed over the pooled samples of the group's series.
//!
//! The groups of a condition are every group any term's selection produced, even a
//! series with no samples in the window: that group's value is then "no data", so a
//! queue that stops reporting is seen (the engine handles instances that fell out of
//! the fetched data entirely). Without `group_by` there is always exactly one group,
//! with no labels.
//!
//! A term without data in a group (no series of that group, or no samples in the
//! window) takes its `if_missing` value if it has one, and otherwise makes the group's
//! value "no data". A ratio is `scale × sum(numerator) / sum(denominator)`; a zero
//! denominator is "no data", never infinity.
//!
//! Comparisons ([`compare`]) treat values within a relative 1e-9 of the threshold as
//! equal, so `0.1 + 0.2 == 0.3` holds and `>` is exactly the negation of `<=`.

use super::model::{Aggregation, Condition, Expr, Operator, Term, millis};
use crate::series::Labels;
use std::collections::{BTreeMap, BTreeSet};

/// One stored series and its samples, as fetched by the engine.
#[derive(Debug, Clone, Copy)]
pub struct SeriesWindow<'a> {
    pub name: &'a str,
    pub labels: &'a Labels,
    /// `(timestamp in ms, value)`, sorted by time.
    pub samples: &'a [(i64, f64)],
}

/// The value of one alert instance (group) at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceValue {
    /// The `group_by` labels of the instance (empty without `group_by`).
    pub group_labels: Labels,
    /// `None` means no data.
    pub value: Option<f64>,
}

/// Evaluates `condition` at `now_ms` over `series` (which may hold series of any name:
/// each term picks its own). Returns one value per group, sorted by group labels.
pub fn evaluate(
    now_ms: i64,
    condition: &Condition,
    series: &[SeriesWindow<'_>],
) -> Vec<InstanceValue> {
    let per_term: Vec<(&Term, BTreeMap<Labels, Option<f64>>)> = condition
        .expr
        .terms()
        .map(|term| {
            (
                term,
                evaluate_term(now_ms, term, &condition.group_by, series),
            )
        })
        .collect();

    let mut groups: BTreeSet<&Labels> = per_term
        .iter()
        .flat_map(|(_, values)| values.keys())
        .collect();
    let no_labels = Labels::new();
    if condition.group_by.is_empty() {
        groups.insert(&no_labels);
    }

    groups
        .into_iter()
        .map(|group| {
            // In the order of `Expr::terms`: numerator terms, then denominator terms.
            let values: Vec<Option<f64>> = per_term
                .iter()
                .map(|(term, by_group)| by_group.get(group).copied().flatten().or(term.if_missing))
                .collect();
            let value = match &condition.expr {
                Expr::Single(_) => values.first().copied().flatten(),
                Expr::Ratio(ratio) => {
                    let (numerator, denominator) =
                        values.split_at(ratio.numerator.len().min(values.len()));
                    let sum = |side: &[Option<f64>]| side.iter().copied().sum::<Option<f64>>();
                    match (sum(numerator), sum(denominator)) {
                        (Some(n), Some(d)) if d != 0.0 => Some(ratio.scale * n / d),
                        _ => None,
                    }
                }
            };
            InstanceValue {
                group_labels: group.clone(),
                value: value.filter(|v| v.is_finite()),
            }
        })
        .collect()
}

/// One term's value per group; a group whose series have no data maps to `None`.
fn evaluate_term(
    now_ms: i64,
    term: &Term,
    group_by: &[String],
    series: &[SeriesWindow<'_>],
) -> BTreeMap<Labels, Option<f64>> {
    let window_ms = millis(term.window);
    let pooled = matches!(term.function, Aggregation::Avg | Aggregation::P95);
    let mut folded: BTreeMap<Labels, Option<f64>> = BTreeMap::new();
    let mut pools: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();

    for s in series
        .iter()
        .filter(|s| term.selector.matches(s.name, s.labels))
    {
        let group = group_labels(s.labels, group_by);
        let samples = in_window(s.samples, now_ms, window_ms);
        if pooled {
            pools
                .entry(group)
                .or_default()
                .extend(samples.iter().map(|(_, v)| *v).filter(|v| v.is_finite()));
            continue;
        }
        let value = aggregate(term.function, samples);
        let slot = folded.entry(group).or_insert(None);
        *slot = match (*slot, value) {
            (Some(a), Some(b)) => Some(combine(term.function, a, b)),
            (a, b) => a.or(b),
        };
    }

    for (group, values) in pools {
        let value = match term.function {
            Aggregation::P95 => percentile(values, 0.95),
            _ => mean(&values),
        };
        folded.insert(group, value.filter(|v| v.is_finite()));
    }
    folded
}

/// How two series' values of the same group combine.
fn combine(function: Aggregation, a: f64, b: f64) -> f64 {
    match function {
        Aggregation::Min => a.min(b),
        Aggregation::Max => a.max(b),
        // avg and p95 are pooled and never combined here; summing is the right
        // combination for everything else.
        _ => a + b,
    }
}

fn group_labels(labels: &Labels, group_by: &[String]) -> Labels {
    group_by
        .iter()
        .filter_map(|name| {
            labels
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| (name.clone(), v.clone()))
        })
        .collect()
}

/// The samples with `now - window < t <= now`. Never panics, even on unsorted input
/// (which yields a meaningless but safe slice).
fn in_window(samples: &[(i64, f64)], now_ms: i64, window_ms: i64) -> &[(i64, f64)] {
    let start = now_ms.saturating_sub(window_ms);
    let lo = samples.partition_point(|(t, _)| *t <= start);
    let hi = samples.partition_point(|(t, _)| *t <= now_ms);
    samples.get(lo..hi).unwrap_or(&[])
}

/// Aggregates one series' samples (already cut to the window, sorted by time) as
/// described in the module documentation. `None` means no data. Reusable by the
/// metrics query API for its per-step functions.
pub fn aggregate(function: Aggregation, samples: &[(i64, f64)]) -> Option<f64> {
    let finite = || samples.iter().copied().filter(|(_, v)| v.is_finite());
    let values = || finite().map(|(_, v)| v);
    let result = match function {
        Aggregation::Last => values().next_back(),
        Aggregation::Sum => values().reduce(|a, b| a + b),
        Aggregation::Count => Some(values().count()).filter(|n| *n > 0).map(|n| n as f64),
        Aggregation::Avg => mean(&values().collect::<Vec<_>>()),
        Aggregation::Min => values().reduce(f64::min),
        Aggregation::Max => values().reduce(f64::max),
        Aggregation::P95 => percentile(values().collect(), 0.95),
        Aggregation::Increase => counter_increase(finite()).map(|(increase, _)| increase),
        Aggregation::Rate => counter_increase(finite()).and_then(|(increase, span_ms)| {
            (span_ms > 0).then(|| increase / (span_ms as f64 / 1000.0))
        }),
    };
    result.filter(|v| v.is_finite())
}

/// The increase of a counter and the time span it covers (ms), or `None` with fewer
/// than two samples. A drop means the counter restarted from zero, so the new value is
/// all increase; a negative value is not a count and adds nothing.
fn counter_increase(mut samples: impl Iterator<Item = (i64, f64)>) -> Option<(f64, i64)> {
    let (first_t, mut previous) = samples.next()?;
    let mut last_t = first_t;
    let mut increase = 0.0;
    let mut pairs = 0usize;
    for (t, value) in samples {
        increase += if value >= previous {
            value - previous
        } else {
            value.max(0.0)
        };
        previous = value;
        last_t = t;
        pairs += 1;
    }
    (pairs > 0).then(|| (increase, last_t.saturating_sub(first_t)))
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Nearest-rank percentile: the value at rank `ceil(q × n)` (1-based) of the sorted values.
fn percentile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    values.get(rank.clamp(1, values.len()) - 1).copied()
}

/// Whether `value <op> threshold`. Values within a relative 1e-9 count as equal (see the
/// module documentation); NaN compares false with every operator.
pub fn compare(op: Operator, value: f64, threshold: f64) -> bool {
    if value.is_nan() || threshold.is_nan() {
        return false;
    }
    let equal = approx_eq(value, threshold);
    match op {
        Operator::Gt => value > threshold && !equal,
        Operator::Ge => value > threshold || equal,
        Operator::Lt => value < threshold && !equal,
        Operator::Le => value < threshold || equal,
        Operator::Eq => equal,
        Operator::Ne => !equal,
    }
}

fn approx_eq(a: f64, b: f64) -> bool {
    if a == b {
        return true;
    }
    if !a.is_finite() || !b.is_finite() {
        return false;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Whether `value` violates the condition, with hysteresis: an instance that is firing
/// keeps violating until the value crosses `resolve_threshold` (when set) rather than
/// `threshold`.
pub fn is_violating(condition: &Condition, value: f64, currently_firing: bool) -> bool {
    let threshold = match condition.resolve_threshold {
        Some(resolve) if currently_firing => resolve,
        _ => condition.threshold,
    };
    compare(condition.operator, value, threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::Ratio;
    use crate::series::{Matcher, Selector};
    use proptest::prelude::*;
    use std::time::Duration;

    const S: i64 = 1000;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn term(name: &str, function: Aggregation, window_secs: u64) -> Term {
        Term::new(
            Selector::new(name),
            function,
            Duration::from_secs(window_secs),
        )
    }

    fn condition(expr: Expr, operator: Operator, threshold: f64, group_by: &[&str]) -> Condition {
        Condition {
            expr,
            operator,
            threshold,
            resolve_threshold: None,
            group_by: group_by.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Owned series for tests; `windows()` borrows them as the evaluator's input.
    type Samples = Vec<(i64, f64)>;
    struct Data(Vec<(String, Labels, Samples)>);

    impl Data {
        fn new() -> Self {
            Data(Vec::new())
        }
        fn add(mut self, name: &str, l: &[(&str, &str)], samples: &[(i64, f64)]) -> Self {
            self.0.push((name.to_string(), labels(l), samples.to_vec()));
            self
        }
        fn windows(&self) -> Vec<SeriesWindow<'_>> {
            self.0
                .iter()
                .map(|(name, labels, samples)| SeriesWindow {
                    name,
                    labels,
                    samples,
                })
                .collect()
        }
    }

    fn single_value(now: i64, cond: &Condition, data: &Data) -> Option<f64> {
        let out = evaluate(now, cond, &data.windows());
        assert_eq!(out.len(), 1, "{out:?}");
        out[0].value
    }

    fn approx(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9 * a.abs().max(1.0),
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn every_aggregation_on_one_series() {
        let samples = [(S, 4.0), (2 * S, 1.0), (3 * S, 7.0), (4 * S, 2.0)];
        let counter = [(0, 10.0), (10 * S, 20.0), (20 * S, 5.0), (30 * S, 15.0)];
        type Case<'a> = (Aggregation, &'a [(i64, f64)], Option<f64>);
        let cases: &[Case] = &[
            (Aggregation::Last, &samples, Some(2.0)),
            (Aggregation::Avg, &samples, Some(3.5)),
            (Aggregation::Min, &samples, Some(1.0)),
            (Aggregation::Max, &samples, Some(7.0)),
            (Aggregation::Sum, &samples, Some(14.0)),
            (Aggregation::Count, &samples, Some(4.0)),
            (Aggregation::P95, &samples, Some(7.0)),
            // Counter: +10, reset to 5 (counts 5), +10 = 25 over 30 s.
            (Aggregation::Increase, &counter, Some(25.0)),
            (Aggregation::Rate, &counter, Some(25.0 / 30.0)),
            // Without reset.
            (Aggregation::Increase, &[(0, 1.0), (S, 3.0)], Some(2.0)),
            (Aggregation::Rate, &[(0, 1.0), (2 * S, 3.0)], Some(1.0)),
            // Reset to exactly zero.
            (
                Aggregation::Increase,
                &[(0, 8.0), (S, 0.0), (2 * S, 2.0)],
                Some(2.0),
            ),
            // Single sample.
            (Aggregation::Last, &[(S, 5.0)], Some(5.0)),
            (Aggregation::Avg, &[(S, 5.0)], Some(5.0)),
            (Aggregation::Min, &[(S, 5.0)], Some(5.0)),
            (Aggregation::Max, &[(S, 5.0)], Some(5.0)),
            (Aggregation::Sum, &[(S, 5.0)], Some(5.0)),
            (Aggregation::Count, &[(S, 5.0)], Some(1.0)),
            (Aggregation::P95, &[(S, 5.0)], Some(5.0)),
            (Aggregation::Increase, &[(S, 5.0)], None),
            (Aggregation::Rate, &[(S, 5.0)], None),
            // Two samples at the same instant: an increase, but no time to divide by.
            (Aggregation::Rate, &[(S, 1.0), (S, 2.0)], None),
            // Empty windows.
            (Aggregation::Last, &[], None),
            (Aggregation::Avg, &[], None),
            (Aggregation::Min, &[], None),
            (Aggregation::Max, &[], None),
            (Aggregation::Sum, &[], None),
            (Aggregation::Count, &[], None),
            (Aggregation::P95, &[], None),
            (Aggregation::Increase, &[], None),
            (Aggregation::Rate, &[], None),
            // NaN (stale marker) samples are skipped.
            (Aggregation::Last, &[(S, 3.0), (2 * S, f64::NAN)], Some(3.0)),
            (Aggregation::Count, &[(S, f64::NAN)], None),
        ];
        for (function, samples, expected) in cases {
            let got = aggregate(*function, samples);
            assert!(
                approx(got, *expected),
                "{function:?} {samples:?}: got {got:?}, want {expected:?}"
            );
        }
    }

    #[test]
    fn p95_is_nearest_rank() {
        let samples: Vec<(i64, f64)> = (1..=100).map(|i| (i, i as f64)).collect();
        assert_eq!(aggregate(Aggregation::P95, &samples), Some(95.0));
        let samples: Vec<(i64, f64)> = (1..=10).map(|i| (i, i as f64)).collect();
        // ceil(0.95 × 10) = 10th value.
        assert_eq!(aggregate(Aggregation::P95, &samples), Some(10.0));
        let samples: Vec<(i64, f64)> = (1..=20).rev().map(|i| (21 - i, i as f64)).collect();
        assert_eq!(aggregate(Aggregation::P95, &samples), Some(19.0));
    }

    #[test]
    fn window_is_open_at_the_start_and_closed_at_now() {
        let data = Data::new().add(
            "m",
            &[],
            &[(0, 1.0), (10 * S, 2.0), (20 * S, 3.0), (30 * S, 4.0)],
        );
        let cond = condition(
            Expr::Single(term("m", Aggregation::Sum, 20)),
            Operator::Gt,
            0.0,
            &[],
        );
        // Window (0 s, 20 s]: the sample at 0 is out, the one at 20 s is in.
        assert_eq!(single_value(20 * S, &cond, &data), Some(5.0));
        // Samples after now are ignored.
        assert_eq!(single_value(25 * S, &cond, &data), Some(5.0));
        // Nothing in (100 s, 120 s].
        assert_eq!(single_value(120 * S, &cond, &data), None);
    }

    #[test]
    fn group_by_combines_series_per_group() {
        let data = Data::new()
            .add(
                "q",
                &[("queue", "a"), ("kind", "ready")],
                &[(S, 10.0), (2 * S, 4.0)],
            )
            .add(
                "q",
                &[("queue", "a"), ("kind", "scheduled")],
                &[(S, 1.0), (2 * S, 6.0)],
            )
            .add("q", &[("queue", "b"), ("kind", "ready")], &[(S, 3.0)])
            .add("q", &[("kind", "ready")], &[(S, 100.0)])
            .add("other", &[("queue", "a")], &[(S, 1000.0)]);
        let cases: &[(Aggregation, [Option<f64>; 3])] = &[
            // Groups in order: {}, {queue=a}, {queue=b}.
            (Aggregation::Last, [Some(100.0), Some(10.0), Some(3.0)]),
            (Aggregation::Sum, [Some(100.0), Some(21.0), Some(3.0)]),
            (Aggregation::Count, [Some(1.0), Some(4.0), Some(1.0)]),
            (Aggregation::Min, [Some(100.0), Some(1.0), Some(3.0)]),
            (Aggregation::Max, [Some(100.0), Some(10.0), Some(3.0)]),
            // Pooled: (10 + 4 + 1 + 6) / 4.
            (Aggregation::Avg, [Some(100.0), Some(5.25), Some(3.0)]),
            (Aggregation::P95, [Some(100.0), Some(10.0), Some(3.0)]),
            // Per series then summed: a/ready fell 10 → 4 (a reset: +4), a/scheduled +5.
            (Aggregation::Increase, [None, Some(9.0), None]),
            (Aggregation::Rate, [None, Some(9.0), None]),
        ];
        for (function, expected) in cases {
            let cond = condition(
                Expr::Single(term("q", *function, 60)),
                Operator::Gt,
                0.0,
                &["queue"],
            );
            let out = evaluate(2 * S, &cond, &data.windows());
            let groups: Vec<Labels> = out.iter().map(|i| i.group_labels.clone()).collect();
            assert_eq!(
                groups,
                vec![
                    labels(&[]),
                    labels(&[("queue", "a")]),
                    labels(&[("queue", "b")])
                ]
            );
            for (instance, want) in out.iter().zip(expected) {
                assert!(
                    approx(instance.value, *want),
                    "{function:?} {instance:?} want {want:?}"
                );
            }
        }
    }

    #[test]
    fn selectors_filter_by_matchers() {
        let data = Data::new()
            .add("q", &[("queue", "gmail.com")], &[(S, 1.0)])
            .add("q", &[("queue", "yahoo.com")], &[(S, 2.0)]);
        let selector = Selector::new("q").with(Matcher::parse("queue=~gmail.*").unwrap());
        let t = Term::new(selector, Aggregation::Last, Duration::from_secs(60));
        let cond = condition(Expr::Single(t), Operator::Gt, 0.0, &[]);
        assert_eq!(single_value(S, &cond, &data), Some(1.0));
    }

    #[test]
    fn without_group_by_there_is_always_one_instance() {
        let cond = condition(
            Expr::Single(term("m", Aggregation::Last, 60)),
            Operator::Gt,
            0.0,
            &[],
        );
        let out = evaluate(S, &cond, &[]);
        assert_eq!(
            out,
            vec![InstanceValue {
                group_labels: Labels::new(),
                value: None
            }]
        );
        // With group_by and no data, there is no instance to report.
        let cond = condition(
            Expr::Single(term("m", Aggregation::Last, 60)),
            Operator::Gt,
            0.0,
            &["queue"],
        );
        assert!(evaluate(S, &cond, &[]).is_empty());
    }

    #[test]
    fn a_group_whose_series_went_quiet_has_no_data() {
        let data = Data::new().add("q", &[("queue", "a")], &[(0, 5.0)]).add(
            "q",
            &[("queue", "b")],
            &[(100 * S, 7.0)],
        );
        let cond = condition(
            Expr::Single(term("q", Aggregation::Last, 60)),
            Operator::Gt,
            0.0,
            &["queue"],
        );
        let out = evaluate(100 * S, &cond, &data.windows());
        assert_eq!(
            out,
            vec![
                InstanceValue {
                    group_labels: labels(&[("queue", "a")]),
                    value: None
                },
                InstanceValue {
                    group_labels: labels(&[("queue", "b")]),
                    value: Some(7.0)
                },
            ]
        );
    }

    fn ratio(numerator: Vec<Term>, denominator: Vec<Term>, scale: f64) -> Expr {
        Expr::Ratio(Ratio {
            numerator,
            denominator,
            scale,
        })
    }

    #[test]
    fn ratios() {
        let inc = |name: &str| term(name, Aggregation::Increase, 300);
        let bounce = ratio(
            vec![inc("bounced")],
            vec![inc("delivered"), inc("bounced")],
            100.0,
        );
        let cond = condition(bounce.clone(), Operator::Gt, 5.0, &[]);
        let now = 300 * S;

        // 10 bounced, 90 delivered: 10 %.
        let data = Data::new()
            .add("bounced", &[], &[(S, 0.0), (now, 10.0)])
            .add("delivered", &[], &[(S, 10.0), (now, 100.0)]);
        assert!(approx(single_value(now, &cond, &data), Some(10.0)));

        // Zero denominator: no traffic is no data, not infinity.
        let idle = Data::new()
            .add("bounced", &[], &[(S, 3.0), (now, 3.0)])
            .add("delivered", &[], &[(S, 7.0), (now, 7.0)]);
        assert_eq!(single_value(now, &cond, &idle), None);

        // A missing term makes the ratio no data...
        let no_bounces = Data::new().add("delivered", &[], &[(S, 10.0), (now, 100.0)]);
        assert_eq!(single_value(now, &cond, &no_bounces), None);
        // ...unless it says what it is worth when missing.
        let inc0 = |name: &str| inc(name).or(0.0);
        let bounce0 = ratio(
            vec![inc0("bounced")],
            vec![inc0("delivered"), inc0("bounced")],
            100.0,
        );
        let cond0 = condition(bounce0, Operator::Gt, 5.0, &[]);
        assert_eq!(single_value(now, &cond0, &no_bounces), Some(0.0));
        // Everything missing: 0 / 0 is still no data.
        assert_eq!(single_value(now, &cond0, &Data::new()), None);

        // Scale 1 is a plain fraction.
        let plain = condition(
            ratio(vec![inc("bounced")], vec![inc("delivered")], 1.0),
            Operator::Gt,
            0.0,
            &[],
        );
        assert!(approx(single_value(now, &plain, &data), Some(10.0 / 90.0)));
    }

    #[test]
    fn ratio_groups_need_every_term() {
        let last = |name: &str| term(name, Aggregation::Last, 60);
        let cond = condition(
            ratio(vec![last("n")], vec![last("d")], 1.0),
            Operator::Gt,
            0.0,
            &["queue"],
        );
        let data = Data::new()
            .add("n", &[("queue", "a")], &[(S, 1.0)])
            .add("d", &[("queue", "a")], &[(S, 4.0)])
            .add("d", &[("queue", "b")], &[(S, 4.0)])
            .add("n", &[("queue", "c")], &[(S, 4.0)]);
        let out = evaluate(S, &cond, &data.windows());
        let values: Vec<(String, Option<f64>)> = out
            .iter()
            .map(|i| {
                (
                    i.group_labels.get("queue").cloned().unwrap_or_default(),
                    i.value,
                )
            })
            .collect();
        assert_eq!(
            values,
            vec![
                ("a".into(), Some(0.25)),
                ("b".into(), None),
                ("c".into(), None)
            ]
        );
    }

    #[test]
    fn every_operator_and_alias() {
        let cases: &[(&str, f64, f64, bool)] = &[
            (">", 2.0, 1.0, true),
            (">", 1.0, 1.0, false),
            ("greaterThan", 2.0, 1.0, true),
            ("gt", 0.5, 1.0, false),
            ("<", 0.5, 1.0, true),
            ("<", 1.0, 1.0, false),
            ("lessThan", 0.5, 1.0, true),
            ("lt", 2.0, 1.0, false),
            (">=", 1.0, 1.0, true),
            (">=", 0.9, 1.0, false),
            ("greaterThanOrEqual", 2.0, 1.0, true),
            ("gte", 1.0, 1.0, true),
            ("<=", 1.0, 1.0, true),
            ("<=", 1.1, 1.0, false),
            ("lessThanOrEqual", 0.0, 1.0, true),
            ("lte", 1.0, 1.0, true),
            ("==", 1.0, 1.0, true),
            ("==", 1.0, 2.0, false),
            ("equals", 0.1 + 0.2, 0.3, true),
            ("eq", 3.0, 3.0, true),
            ("!=", 1.0, 2.0, true),
            ("!=", 1.0, 1.0, false),
            ("notEquals", 0.1 + 0.2, 0.3, false),
            ("ne", 0.0, 1e-12, true),
            // Near-equal values are equal, so > and <= stay complementary.
            (">", 0.1 + 0.2, 0.3, false),
            ("<=", 0.1 + 0.2, 0.3, true),
            (">", f64::INFINITY, 1e300, true),
            (">", f64::NAN, 1.0, false),
            ("<=", f64::NAN, 1.0, false),
            ("!=", f64::NAN, 1.0, false),
        ];
        for (text, value, threshold, expected) in cases {
            let op: Operator = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(
                compare(op, *value, *threshold),
                *expected,
                "{value} {text} {threshold}"
            );
        }
        assert!(serde_json::from_value::<Operator>(serde_json::json!("=>")).is_err());
    }

    #[test]
    fn hysteresis_holds_a_firing_instance_until_the_resolve_threshold() {
        let mut cond = condition(
            Expr::Single(term("m", Aggregation::Last, 60)),
            Operator::Gt,
            100.0,
            &[],
        );
        cond.resolve_threshold = Some(80.0);
        let cases = [
            (120.0, false, true),
            (90.0, false, false), // not firing: the trigger threshold applies
            (90.0, true, true),   // firing: held until it falls to 80
            (80.0, true, false),
            (79.0, true, false),
        ];
        for (value, firing, expected) in cases {
            assert_eq!(
                is_violating(&cond, value, firing),
                expected,
                "{value} firing={firing}"
            );
        }
        let mut low = condition(
            Expr::Single(term("m", Aggregation::Last, 60)),
            Operator::Lt,
            100.0,
            &[],
        );
        low.resolve_threshold = Some(150.0);
        assert!(is_violating(&low, 120.0, true));
        assert!(!is_violating(&low, 120.0, false));
        assert!(!is_violating(&low, 150.0, true));
        // Without a resolve threshold, firing changes nothing.
        low.resolve_threshold = None;
        assert!(!is_violating(&low, 120.0, true));
    }

    #[test]
    fn unsorted_input_does_not_panic() {
        let data = Data::new().add("m", &[], &[(30 * S, 1.0), (0, 2.0), (20 * S, 3.0)]);
        for function in [Aggregation::Last, Aggregation::Rate, Aggregation::P95] {
            let cond = condition(
                Expr::Single(term("m", function, 25)),
                Operator::Gt,
                0.0,
                &[],
            );
            let _ = evaluate(25 * S, &cond, &data.windows());
        }
    }

    /// A counter driven by `(events, reset)` steps. A reset restarts it from zero before
    /// the step's events are counted; it is only applied when it is visible (the new value
    /// is below the old one), since an invisible reset cannot be told from the samples.
    fn counter_from(steps: &[(u16, bool)]) -> (Vec<(i64, f64)>, f64) {
        let mut value = 0.0_f64;
        let mut samples = vec![(0, 0.0)];
        let mut events = 0.0;
        for (i, (n, reset)) in steps.iter().enumerate() {
            let n = f64::from(*n);
            value = if *reset && n < value { n } else { value + n };
            events += n;
            samples.push(((i as i64 + 1) * S, value));
        }
        (samples, events)
    }

    proptest! {
        #[test]
        fn increase_counts_every_event_across_resets(steps in prop::collection::vec((0u16..1000, prop::bool::weighted(0.2)), 0..60)) {
            let (samples, events) = counter_from(&steps);
            let increase = aggregate(Aggregation::Increase, &samples);
            if steps.is_empty() {
                prop_assert_eq!(increase, None);
            } else {
                prop_assert_eq!(increase, Some(events));
            }
        }

        #[test]
        fn rate_and_increase_are_never_negative(
            values in prop::collection::vec(-1e6f64..1e6, 0..50),
            gaps in prop::collection::vec(0i64..10_000, 50),
        ) {
            let mut t = 0;
            let samples: Vec<(i64, f64)> = values.iter().zip(&gaps).map(|(v, gap)| { t += gap; (t, *v) }).collect();
            for function in [Aggregation::Increase, Aggregation::Rate] {
                if let Some(v) = aggregate(function, &samples) {
                    prop_assert!(v >= 0.0, "{:?} = {}", function, v);
                }
            }
        }

        #[test]
        fn summaries_are_consistent(values in prop::collection::vec(-1e6f64..1e6, 1..100)) {
            let samples: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64, *v)).collect();
            let get = |f| aggregate(f, &samples).expect("non-empty window has a value");
            let (min, max, avg, p95) = (get(Aggregation::Min), get(Aggregation::Max), get(Aggregation::Avg), get(Aggregation::P95));
            prop_assert!(min <= avg + 1e-6 && avg <= max + 1e-6);
            prop_assert!(min <= p95 && p95 <= max);
            prop_assert!(values.contains(&p95), "p95 is an observed value");
            let at_or_below = values.iter().filter(|v| **v <= p95).count();
            prop_assert!(at_or_below as f64 >= 0.95 * values.len() as f64);
            prop_assert_eq!(get(Aggregation::Count), values.len() as f64);
            prop_assert_eq!(get(Aggregation::Last), *values.last().unwrap());
        }

        #[test]
        fn grouped_sum_equals_sum_of_series(values in prop::collection::vec((0usize..3, -1e3f64..1e3), 1..40)) {
            let mut data = Data::new();
            for (i, (group, v)) in values.iter().enumerate() {
                let q = ["a", "b", "c"][*group];
                data = data.add("m", &[("queue", q), ("i", &i.to_string())], &[(S, *v)]);
            }
            let cond = condition(Expr::Single(term("m", Aggregation::Sum, 60)), Operator::Gt, 0.0, &["queue"]);
            let total: f64 = evaluate(S, &cond, &data.windows()).iter().filter_map(|i| i.value).sum();
            let expected: f64 = values.iter().map(|(_, v)| v).sum();
            prop_assert!((total - expected).abs() < 1e-6);
        }
    }
}
