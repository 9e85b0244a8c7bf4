//! KumoMTA: what a poll of a kumod node and its log hook mean to Lookout.
//!
//! Everything here is pure (no I/O, no clock); the poller fetches, stores and publishes. Per
//! poll the poller fetches `GET /metrics` (parsed with
//! [`prometheus_text::parse`](crate::sources::prometheus_text::parse) and
//! [`ParseOptions::KUMOD`](crate::sources::prometheus_text::ParseOptions::KUMOD)) and the admin
//! endpoints ready-q-states, suspend, suspend-ready-q and bounce ([`admin`]), then:
//!
//! 1. [`build_snapshot`] combines them into every queue's state and the node totals
//!    ([`KumoSnapshot`], what `GET /api/v1/queues` returns);
//! 2. [`diff_queues`] against the previous snapshot gives the `queue:update` events, including
//!    queues that disappeared (pruned = empty);
//! 3. [`ThroughputTracker`] turns the totals into per-second rates, restarts included, for the
//!    `metrics:update` event ([`Totals::metrics_update_data`]);
//! 4. [`series_samples`] gives the series to store (listed in [`samples`]).
//!
//! A failed or partial poll must be skipped whole rather than passed in: a series missing from
//! a snapshot reads as "the queue went idle" and is stored as 0.
//!
//! The log hook's bodies go through [`parse_log_body`] ([`log_record`]).

pub mod admin;
pub mod counters;
pub mod log_record;
pub mod queue_name;
pub mod samples;
pub mod snapshot;

pub use admin::{AdminBounce, ReadyQueueFlag, ReadyQueueStates, ReadySuspension, SchedSuspension};
pub use counters::{CounterTracker, Rates, Throughput, ThroughputTracker};
pub use log_record::{LogRecord, LogRecordError, LogResponse, RecordKind, parse_log_body};
pub use queue_name::{QueueName, ReadyQueueName, ServiceLabel};
pub use samples::series_samples;
pub use snapshot::{
    BounceInfo, ChangeKind, KumoSnapshot, QueueChange, QueueKind, QueueState, SuspensionInfo,
    ThrottleFlag, Totals, build_snapshot, diff_queues,
};

/// The shared KumoMTA fixtures (tests/fixtures/kumomta, a copy of shared/fixtures/kumomta).
#[cfg(test)]
pub(crate) mod fixtures {
    pub const METRICS_BUSY: &str = include_str!("../../../tests/fixtures/kumomta/metrics-busy.txt");
    pub const METRICS_DOCS_SAMPLE: &str =
        include_str!("../../../tests/fixtures/kumomta/metrics-docs-sample.txt");
    pub const READY_Q_STATES: &str =
        include_str!("../../../tests/fixtures/kumomta/ready-q-states.json");
    pub const SUSPEND_READY_Q: &str =
        include_str!("../../../tests/fixtures/kumomta/suspend-ready-q.json");
    pub const BOUNCE: &str = include_str!("../../../tests/fixtures/kumomta/bounce.json");
    pub const LOG_RECORDS: &str = include_str!("../../../tests/fixtures/kumomta/log-records.jsonl");
    /// The ready queue most of the fixtures talk about.
    pub const GMAIL_READY_QUEUE: &str =
        "unspecified->(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com@smtp_client";
}
