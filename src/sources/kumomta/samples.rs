//! The series Lookout stores for each KumoMTA poll, so that rules and queries can use them.
//!
//! | metric | labels | kind | from |
//! |---|---|---|---|
//! | `kumomta_delivered_total` | | counter | `total_messages_delivered`, aggregate |
//! | `kumomta_bounced_total` | | counter | `total_messages_fail`, aggregate |
//! | `kumomta_deferred_total` | | counter | `total_messages_transfail`, aggregate |
//! | `kumomta_received_total` | | counter | `total_messages_received`, aggregate |
//! | `kumomta_queue_size` | `queue`, `kind` (`scheduled`/`ready`) | gauge | every queue |
//! | `kumomta_scheduled_count` | `queue` | gauge | scheduled queues |
//! | `kumomta_ready_count` | `queue` | gauge | ready queues |
//! | `kumomta_connection_count` | `queue` | gauge | ready queues that report it |
//! | `kumomta_queue_delivered_total` | `queue` | counter | ready queues that report it |
//! | `kumomta_queue_transfail_total` | `queue` | counter | ready queues that report it |
//! | `kumomta_queue_fail_total` | `queue` | counter | ready queues that report it |
//!
//! Counters are stored raw; rates and increases are computed at query time, which must treat
//! a decrease as a restart. kumod drops the series of an idle queue and starts them again from
//! zero, so every series written at the previous poll and missing now is written once more as
//! 0: a vanished queue then reads empty, and its counters' return from zero reads as a restart
//! instead of a drop hidden by the gap. This assumes the poll succeeded: a failed or partial
//! scrape must not be passed here, or its missing series would be zeroed.
//!
//! No source or node label is added here; the caller adds whatever tells its KumoMTA sources
//! apart.

use super::snapshot::{KumoSnapshot, QueueKind};
use crate::series::Labels;
use std::collections::HashSet;

/// The samples to store for `snapshot`, followed by a 0 for each series that `previous` had
/// and `snapshot` lacks. Order: totals, then queues in snapshot order, then the zeros.
pub fn series_samples(
    snapshot: &KumoSnapshot,
    previous: Option<&KumoSnapshot>,
) -> Vec<(String, Labels, f64)> {
    let mut samples = present_samples(snapshot);
    if let Some(previous) = previous {
        let present: HashSet<(&str, &Labels)> = samples
            .iter()
            .map(|(name, labels, _)| (name.as_str(), labels))
            .collect();
        let vanished: Vec<(String, Labels, f64)> = present_samples(previous)
            .into_iter()
            .filter(|(name, labels, _)| !present.contains(&(name.as_str(), labels)))
            .map(|(name, labels, _)| (name, labels, 0.0))
            .collect();
        samples.extend(vanished);
    }
    samples
}

fn present_samples(snapshot: &KumoSnapshot) -> Vec<(String, Labels, f64)> {
    let mut samples = Vec::new();
    let mut push = |name: &str, labels: &Labels, value: Option<f64>| {
        if let Some(value) = value {
            samples.push((name.to_string(), labels.clone(), value));
        }
    };

    let none = Labels::new();
    let totals = &snapshot.totals;
    push("kumomta_delivered_total", &none, totals.delivered);
    push("kumomta_bounced_total", &none, totals.bounced);
    push("kumomta_deferred_total", &none, totals.deferred);
    push("kumomta_received_total", &none, totals.received);

    for queue in &snapshot.queues {
        let by_queue = Labels::from([("queue".to_string(), queue.name.clone())]);
        let mut with_kind = by_queue.clone();
        with_kind.insert("kind".to_string(), queue.kind.as_str().to_string());
        push("kumomta_queue_size", &with_kind, Some(queue.size));
        match queue.kind {
            QueueKind::Scheduled => push("kumomta_scheduled_count", &by_queue, queue.scheduled),
            QueueKind::Ready => push("kumomta_ready_count", &by_queue, queue.ready),
        }
        push(
            "kumomta_connection_count",
            &by_queue,
            queue.connection_count,
        );
        push("kumomta_queue_delivered_total", &by_queue, queue.delivered);
        push("kumomta_queue_transfail_total", &by_queue, queue.transfail);
        push("kumomta_queue_fail_total", &by_queue, queue.fail);
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::super::admin::{AdminBounce, ReadyQueueStates, ReadySuspension};
    use super::super::fixtures;
    use super::super::snapshot::build_snapshot;
    use super::*;
    use crate::series::{validate_labels, validate_metric_name};
    use crate::sources::prometheus_text::{ParseOptions, parse};

    fn snapshot_with(metrics: &str, ready_states: &str) -> KumoSnapshot {
        let states: ReadyQueueStates = serde_json::from_str(ready_states).expect("states");
        let ready_susp: Vec<ReadySuspension> =
            serde_json::from_str(fixtures::SUSPEND_READY_Q).expect("ready susp");
        let bounces: Vec<AdminBounce> = serde_json::from_str(fixtures::BOUNCE).expect("bounces");
        build_snapshot(
            &parse(metrics, ParseOptions::KUMOD),
            &states,
            &[],
            &ready_susp,
            &bounces,
        )
    }

    fn snapshot_of(metrics: &str) -> KumoSnapshot {
        snapshot_with(metrics, fixtures::READY_Q_STATES)
    }

    fn find(samples: &[(String, Labels, f64)], name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        let labels: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        samples
            .iter()
            .find(|(n, l, _)| n == name && *l == labels)
            .map(|(_, _, v)| *v)
    }

    #[test]
    fn busy_fixture_samples() {
        const GMAIL: &str = fixtures::GMAIL_READY_QUEUE;
        let samples = series_samples(&snapshot_of(fixtures::METRICS_BUSY), None);
        /// metric, labels, value
        type Case = (&'static str, &'static [(&'static str, &'static str)], f64);
        let cases: &[Case] = &[
            ("kumomta_delivered_total", &[], 1520.0),
            ("kumomta_bounced_total", &[], 7.0),
            ("kumomta_deferred_total", &[], 41.0),
            ("kumomta_received_total", &[], 1600.0),
            (
                "kumomta_queue_size",
                &[("queue", "gmail.com"), ("kind", "scheduled")],
                230.0,
            ),
            ("kumomta_scheduled_count", &[("queue", "gmail.com")], 230.0),
            (
                "kumomta_scheduled_count",
                &[("queue", "campaign_name:tenant_name@example.com")],
                12.0,
            ),
            (
                "kumomta_queue_size",
                &[("queue", GMAIL), ("kind", "ready")],
                46.0,
            ),
            ("kumomta_ready_count", &[("queue", GMAIL)], 46.0),
            ("kumomta_connection_count", &[("queue", GMAIL)], 5.0),
            ("kumomta_queue_delivered_total", &[("queue", GMAIL)], 1200.0),
            ("kumomta_queue_transfail_total", &[("queue", GMAIL)], 41.0),
        ];
        for (name, labels, value) in cases {
            assert_eq!(
                find(&samples, name, labels),
                Some(*value),
                "{name} {labels:?}"
            );
        }
        // Not reported by kumod, so not stored.
        assert_eq!(
            find(&samples, "kumomta_queue_fail_total", &[("queue", GMAIL)]),
            None
        );
        assert_eq!(
            find(&samples, "kumomta_ready_count", &[("queue", "gmail.com")]),
            None
        );
        // 4 totals; 2 scheduled × 2; gmail ready × 5; mx ready × 3.
        assert_eq!(samples.len(), 4 + 4 + 5 + 3);
        for (name, labels, _) in &samples {
            validate_metric_name(name).expect("valid metric name");
            validate_labels(labels).expect("valid labels");
        }
        let unique: HashSet<_> = samples.iter().map(|(n, l, _)| (n, l)).collect();
        assert_eq!(unique.len(), samples.len());
    }

    #[test]
    fn vanished_series_are_written_as_zero_once() {
        let busy = snapshot_of(fixtures::METRICS_BUSY);
        // The gmail ready queue went idle and kumod dropped its series; gmail.com shrank.
        let idle_text: String = fixtures::METRICS_BUSY
            .lines()
            .filter(|line| {
                !line.contains("gmail-smtp-in") || line.starts_with("total_messages_delivered_by")
            })
            .map(|line| {
                line.replace(
                    "scheduled_count{queue=\"gmail.com\"} 230",
                    "scheduled_count{queue=\"gmail.com\"} 200",
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let idle = snapshot_of(&idle_text);
        let gmail = fixtures::GMAIL_READY_QUEUE;

        let samples = series_samples(&idle, Some(&busy));
        // The gmail ready queue is still listed in ready-q-states, so it stays as an empty
        // queue: its size is a real 0 and only its vanished series are zeroed.
        assert_eq!(
            find(
                &samples,
                "kumomta_queue_size",
                &[("queue", gmail), ("kind", "ready")]
            ),
            Some(0.0)
        );
        assert_eq!(
            find(
                &samples,
                "kumomta_scheduled_count",
                &[("queue", "gmail.com")]
            ),
            Some(200.0)
        );
        for name in [
            "kumomta_connection_count",
            "kumomta_queue_delivered_total",
            "kumomta_queue_transfail_total",
        ] {
            assert_eq!(
                find(&samples, name, &[("queue", gmail)]),
                Some(0.0),
                "{name}"
            );
        }

        // Gone from everything: every series reads 0 once, then is no longer written.
        let gone = snapshot_with("", "{}");
        let samples = series_samples(&gone, Some(&busy));
        assert_eq!(samples.len(), 16);
        assert!(samples.iter().all(|(_, _, v)| *v == 0.0), "{samples:?}");
        assert_eq!(find(&samples, "kumomta_delivered_total", &[]), Some(0.0));
        assert_eq!(
            find(
                &samples,
                "kumomta_queue_size",
                &[("queue", "gmail.com"), ("kind", "scheduled")]
            ),
            Some(0.0)
        );
        assert!(series_samples(&gone, Some(&gone)).is_empty());
    }
}
