//! Aggregation of samples into time buckets, per group of series: the arithmetic of
//! `GET /api/v1/metrics/aggregated`, kept free of I/O so that it can be tested alone.
//!
//! Samples arrive ordered by series, then time (the order the store streams them in).
//! Buckets are `[from + k·step, from + (k+1)·step)`. `rate` and `increase` treat each
//! series as a counter: the increase between consecutive samples is their difference,
//! or, when the value dropped (the counter restarted), the new value itself, as
//! Prometheus does. The increase from the last sample before `from` (the baseline) to
//! the first one inside counts for the first bucket. Groups sum their series' increases.

use crate::series::Labels;
use std::collections::{BTreeMap, HashMap};

/// The aggregation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Func {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Rate,
    Increase,
    P95,
}

impl Func {
    pub fn parse(text: &str) -> Option<Func> {
        Some(match text {
            "avg" => Func::Avg,
            "min" => Func::Min,
            "max" => Func::Max,
            "sum" => Func::Sum,
            "count" => Func::Count,
            "rate" => Func::Rate,
            "increase" => Func::Increase,
            "p95" => Func::P95,
            _ => return None,
        })
    }

    /// Whether the function reads series as counters (and needs a baseline).
    pub fn is_counter(self) -> bool {
        matches!(self, Func::Rate | Func::Increase)
    }
}

#[derive(Debug, Default)]
struct Acc {
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
    /// Only for p95.
    values: Vec<f64>,
}

/// One group's points, oldest first: `(bucket start ms, value)`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPoints {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

pub struct Aggregator {
    func: Func,
    from_ms: i64,
    step_ms: i64,
    /// Group of each series, as an index into `groups`.
    series_group: HashMap<i64, usize>,
    groups: Vec<Labels>,
    /// The last sample of each series before `from` (counters only).
    baselines: HashMap<i64, (i64, f64)>,
    /// The previous sample seen: (series, value).
    prev: Option<(i64, f64)>,
    buckets: BTreeMap<(usize, i64), Acc>,
}

impl Aggregator {
    /// `series` gives each series id with its labels; `by` names the labels that form
    /// groups (none: one group of everything).
    pub fn new<'a>(
        func: Func,
        from_ms: i64,
        step_ms: i64,
        by: &[String],
        series: impl IntoIterator<Item = (i64, &'a Labels)>,
        baselines: HashMap<i64, (i64, f64)>,
    ) -> Aggregator {
        let mut groups: Vec<Labels> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut series_group = HashMap::new();
        for (id, labels) in series {
            let key: Labels = by
                .iter()
                .filter_map(|name| labels.get(name).map(|v| (name.clone(), v.clone())))
                .collect();
            let group = *index.entry(key.clone()).or_insert_with(|| {
                groups.push(key);
                groups.len() - 1
            });
            series_group.insert(id, group);
        }
        Aggregator {
            func,
            from_ms,
            step_ms: step_ms.max(1),
            series_group,
            groups,
            baselines,
            prev: None,
            buckets: BTreeMap::new(),
        }
    }

    /// Adds one sample; samples must come ordered by series, then time.
    pub fn push(&mut self, series_id: i64, ts_ms: i64, value: f64) {
        let Some(&group) = self.series_group.get(&series_id) else {
            return;
        };
        if ts_ms < self.from_ms {
            return;
        }
        let bucket = (ts_ms - self.from_ms) / self.step_ms;
        if self.func.is_counter() {
            let previous = match self.prev {
                Some((id, v)) if id == series_id => Some(v),
                _ => self.baselines.get(&series_id).map(|&(_, v)| v),
            };
            self.prev = Some((series_id, value));
            let Some(previous) = previous else {
                return;
            };
            let increase = if value >= previous {
                value - previous
            } else {
                value
            };
            let acc = self.buckets.entry((group, bucket)).or_default();
            acc.sum += increase;
            acc.count += 1;
            return;
        }
        let acc = self.buckets.entry((group, bucket)).or_insert_with(|| Acc {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Acc::default()
        });
        acc.sum += value;
        acc.count += 1;
        acc.min = acc.min.min(value);
        acc.max = acc.max.max(value);
        if self.func == Func::P95 {
            acc.values.push(value);
        }
    }

    /// The points of every group that has any, groups in label order.
    pub fn finish(self) -> Vec<GroupPoints> {
        let step_s = self.step_ms as f64 / 1000.0;
        let mut out: Vec<GroupPoints> = self
            .groups
            .iter()
            .map(|labels| GroupPoints {
                labels: labels.clone(),
                points: Vec::new(),
            })
            .collect();
        for ((group, bucket), mut acc) in self.buckets {
            let value = match self.func {
                Func::Avg => acc.sum / acc.count as f64,
                Func::Min => acc.min,
                Func::Max => acc.max,
                Func::Sum | Func::Increase => acc.sum,
                Func::Count => acc.count as f64,
                Func::Rate => acc.sum / step_s,
                Func::P95 => percentile(&mut acc.values, 0.95),
            };
            out[group]
                .points
                .push((self.from_ms + bucket * self.step_ms, value));
        }
        out.retain(|g| !g.points.is_empty());
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// Nearest-rank percentile.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = (p * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn increase_and_rate_survive_a_counter_reset() {
        let l = labels(&[("q", "a")]);
        let mut agg = Aggregator::new(
            Func::Increase,
            0,
            60_000,
            &[],
            [(1, &l)],
            HashMap::from([(1, (-10_000, 5.0))]),
        );
        // 5 (baseline) → 10 → 20 → reset to 3 → 8: 5 + 10 + 3 + 5 = 23.
        for (ts, v) in [(10_000, 10.0), (20_000, 20.0), (30_000, 3.0), (40_000, 8.0)] {
            agg.push(1, ts, v);
        }
        assert_eq!(agg.finish()[0].points, vec![(0, 23.0)]);

        let mut agg = Aggregator::new(Func::Rate, 0, 10_000, &[], [(1, &l)], HashMap::new());
        for (ts, v) in [(0, 100.0), (5_000, 150.0), (10_000, 10.0), (15_000, 30.0)] {
            agg.push(1, ts, v);
        }
        // Bucket 0: +50 over 10 s; bucket 1: reset (+10) then +20 = 30 over 10 s.
        assert_eq!(agg.finish()[0].points, vec![(0, 5.0), (10_000, 3.0)]);
    }

    #[test]
    fn groups_follow_the_chosen_labels() {
        let a = labels(&[("q", "a"), ("host", "1")]);
        let b = labels(&[("q", "a"), ("host", "2")]);
        let c = labels(&[("q", "b"), ("host", "1")]);
        let series = [(1, &a), (2, &b), (3, &c)];
        let by = vec!["q".to_string()];
        let run = |func| {
            let mut agg = Aggregator::new(func, 0, 1000, &by, series, HashMap::new());
            agg.push(1, 0, 1.0);
            agg.push(2, 0, 3.0);
            agg.push(3, 500, 10.0);
            agg.push(3, 1500, 20.0);
            agg.finish()
        };
        let avg = run(Func::Avg);
        assert_eq!(avg[0].labels, labels(&[("q", "a")]));
        assert_eq!(avg[0].points, vec![(0, 2.0)]);
        assert_eq!(avg[1].points, vec![(0, 10.0), (1000, 20.0)]);
        assert_eq!(run(Func::Sum)[0].points, vec![(0, 4.0)]);
        assert_eq!(run(Func::Count)[0].points, vec![(0, 2.0)]);
        assert_eq!(run(Func::Min)[0].points, vec![(0, 1.0)]);
        assert_eq!(run(Func::Max)[0].points, vec![(0, 3.0)]);
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let l = Labels::new();
        let mut agg = Aggregator::new(Func::P95, 0, 1000, &[], [(1, &l)], HashMap::new());
        for i in 1..=100 {
            agg.push(1, i, i as f64);
        }
        assert_eq!(agg.finish()[0].points, vec![(0, 95.0)]);
    }
}
