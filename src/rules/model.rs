//! The alert rule model: what a rule says, how it is written in JSON, and how it is
//! checked before it is stored.
//!
//! A rule watches one [`Condition`]: an [`Expr`] over stored series (one aggregated
//! [`Term`], or a ratio of two sums of terms), compared with a threshold by an
//! [`Operator`], once per `group_by` label set. Timing fields (`for`,
//! `keep_firing_for`, the no-data policy) drive the per-instance state machine in
//! [`super::state`]; annotations are templates rendered by [`super::template`].
//!
//! Three JSON shapes are accepted by the API ([`RuleInput`]) and all become one
//! [`RuleSpec`]:
//!
//! * the native shape, which is also what the API returns and what is stored:
//!   ```json
//!   {"name": "Critical queue depth", "severity": "critical",
//!    "condition": {"expr": {"single": {"selector": {"name": "kumomta_queue_size"},
//!                                      "function": "last", "window": "5m"}},
//!                  "operator": ">", "threshold": 10000, "group_by": ["queue"]},
//!    "for": "1m"}
//!   ```
//! * the seeds' typed shape
//!   `{"condition": {"type": "queue_depth", "operator": ">", "threshold": 5000},
//!   "throttle": {"period": 300000, "maxAlerts": 3}, "channels": [...]}`, where `type`
//!   is one of `queue_depth`, `bounce_rate`, `delivery_rate`, `system_health` and the
//!   throttle `period` is in **milliseconds**;
//! * the seeds' metric shape `{"condition": {"metric": "system.memory.usedPercent",
//!   "operator": "greaterThan", "value": 85, "duration": 300}}`, where `duration` is the
//!   `for` in seconds and the metric name is sanitized (`system_memory_usedPercent`).
//!
//! Ratios carry a `scale`. The seeds' `bounce_rate` and `system_health` thresholds are
//! **percentages** (`5` means 5 %), so those ratios are mapped with `scale: 100` and the
//! threshold is kept as written; the default rules follow the same convention, and so
//! annotations show `value` in percent.
//!
//! Durations are written as humantime strings (`"30s"`, `"5m"`, `"1h 30m"`) or as a
//! number of seconds, and are always returned as strings.

use crate::series::{self, Labels, Selector};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// At most this many characters in a rule's name.
pub const MAX_NAME_CHARS: usize = 200;
/// At most this many characters in a rule's description.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// At most this many terms in one condition (both sides of a ratio together): each term
/// is a scan over its window at every tick.
pub const MAX_TERMS: usize = 20;
/// At most this many matchers per selector.
pub const MAX_MATCHERS: usize = 32;
/// At most this many annotations per rule.
pub const MAX_ANNOTATIONS: usize = 32;
/// At most this many channels per rule.
pub const MAX_CHANNELS: usize = 20;
/// The longest window a term may read: bounds the data fetched at every tick.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest `for`, `keep_firing_for`, `no_data_for` and throttle period.
pub const MAX_HOLD: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest evaluation interval.
pub const MIN_EVALUATION_INTERVAL: Duration = Duration::from_secs(1);
/// The longest evaluation interval.
pub const MAX_EVALUATION_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Evaluation interval when none is given.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(10);
/// Window of a term when none is given (Prometheus' lookback for instant values).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// A stored rule: its id plus its specification. `created_at`/`updated_at` belong to
/// the storage layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rule {
    pub id: uuid::Uuid,
    #[serde(flatten)]
    pub spec: RuleSpec,
}

/// Everything a rule says, in the native (canonical) shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleSpec {
    /// Human-readable name, 1 to 200 characters.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Disabled rules are kept but not evaluated.
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub severity: Severity,
    /// Added to every alert of this rule (next to the group-by labels).
    #[serde(default)]
    pub labels: Labels,
    /// Templates rendered per alert, e.g.
    /// `{"summary": "Queue {{ labels.queue }} holds {{ value }} messages"}`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub condition: Condition,
    /// How often the rule is evaluated; at least 1 s.
    #[serde(default = "default_interval", with = "duration_format")]
    #[schema(value_type = String, example = "10s")]
    pub evaluation_interval: Duration,
    /// How long the condition must hold before the alert fires (pending until then).
    #[serde(rename = "for", default, with = "duration_format")]
    #[schema(value_type = String, example = "5m")]
    pub for_: Duration,
    /// How long a firing alert keeps firing after the condition stops holding.
    #[serde(default, with = "duration_format")]
    #[schema(value_type = String, example = "0s")]
    pub keep_firing_for: Duration,
    /// What an instance without data means.
    #[serde(default)]
    pub no_data: NoDataPolicy,
    /// With `no_data: no_data`, how long data must be missing before the instance
    /// enters the `no_data` state.
    #[serde(default, with = "duration_format")]
    #[schema(value_type = String, example = "5m")]
    pub no_data_for: Duration,
    /// Ids (or names) of the notification channels to notify.
    #[serde(default)]
    pub channels: Vec<String>,
    /// At most `max_alerts` notifications per `period`; applied by the notifier.
    #[serde(default)]
    pub throttle: Option<Throttle>,
    /// Resolved messages, grouping, repeats, escalation.
    #[serde(default)]
    pub notify: crate::notify::policy::NotifyPolicy,
}

fn default_true() -> bool {
    true
}

fn default_interval() -> Duration {
    DEFAULT_EVALUATION_INTERVAL
}

fn default_window() -> Duration {
    DEFAULT_WINDOW
}

fn default_scale() -> f64 {
    1.0
}

/// How bad an alert is.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an alert instance is compared on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Condition {
    pub expr: Expr,
    pub operator: Operator,
    /// The alert's instance violates when `value <operator> threshold`.
    pub threshold: f64,
    /// Hysteresis: once firing, the instance keeps violating until the value crosses
    /// this threshold instead (below `threshold` for `>`/`>=`, above it for `<`/`<=`).
    #[serde(default)]
    pub resolve_threshold: Option<f64>,
    /// One alert instance per distinct value set of these labels; empty means one
    /// instance for the whole rule.
    #[serde(default)]
    pub group_by: Vec<String>,
}

/// The value a condition compares, computed per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    /// One aggregated selection, e.g. `last(kumomta_queue_size)`.
    Single(Term),
    /// `scale × sum(numerator) / sum(denominator)`, e.g. a bounce rate.
    Ratio(Ratio),
}

/// `scale × (n₁ + n₂ + …) / (d₁ + d₂ + …)`. A zero denominator means no data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ratio {
    pub numerator: Vec<Term>,
    pub denominator: Vec<Term>,
    /// Multiplies the ratio; `100` expresses it in percent.
    #[serde(default = "default_scale")]
    pub scale: f64,
}

/// An aggregation of the selected series over a window ending now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Term {
    pub selector: Selector,
    pub function: Aggregation,
    /// Samples with `now - window < t <= now` are used; at most 7 days.
    #[serde(default = "default_window", with = "duration_format")]
    #[schema(value_type = String, example = "5m")]
    pub window: Duration,
    /// The value this term takes in a group where it has no data (like PromQL's
    /// `or vector(0)`); without it, a term without data makes the group's value "no data".
    #[serde(default)]
    pub if_missing: Option<f64>,
}

impl Term {
    /// A term over the whole selection with no `if_missing`.
    pub fn new(selector: Selector, function: Aggregation, window: Duration) -> Self {
        Term {
            selector,
            function,
            window,
            if_missing: None,
        }
    }

    /// The same term, taking `value` where it has no data.
    pub fn or(mut self, value: f64) -> Self {
        self.if_missing = Some(value);
        self
    }
}

/// How one term turns the samples in its window into a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Last,
    Avg,
    Min,
    Max,
    Sum,
    Count,
    /// Per-second increase of a counter; resets are handled.
    Rate,
    /// Increase of a counter over the window; resets are handled.
    Increase,
    /// 95th percentile (nearest rank).
    P95,
}

impl Aggregation {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Last => "last",
            Aggregation::Avg => "avg",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
            Aggregation::Sum => "sum",
            Aggregation::Count => "count",
            Aggregation::Rate => "rate",
            Aggregation::Increase => "increase",
            Aggregation::P95 => "p95",
        }
    }
}

/// Comparison of the value with the threshold. Serialized as a symbol; the seeds' word
/// forms (`greaterThan`, `lessThan`, `equals`, …) are accepted on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Operator {
    #[serde(rename = ">", alias = "greaterThan", alias = "gt")]
    Gt,
    #[serde(rename = "<", alias = "lessThan", alias = "lt")]
    Lt,
    #[serde(rename = ">=", alias = "greaterThanOrEqual", alias = "gte")]
    Ge,
    #[serde(rename = "<=", alias = "lessThanOrEqual", alias = "lte")]
    Le,
    #[serde(rename = "==", alias = "equals", alias = "eq")]
    Eq,
    #[serde(rename = "!=", alias = "notEquals", alias = "ne")]
    Ne,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Gt => ">",
            Operator::Lt => "<",
            Operator::Ge => ">=",
            Operator::Le => "<=",
            Operator::Eq => "==",
            Operator::Ne => "!=",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an instance without data means.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    /// No data is not a violation (Prometheus' behaviour). The default, because a ratio
    /// has no value whenever there is no traffic, and idle KumoMTA queues vanish.
    #[default]
    Ok,
    /// No data is a violation (pending, then firing after `for`).
    Alerting,
    /// No data repeats the last verdict that had data.
    KeepLast,
    /// After `no_data_for` without data the instance enters the `no_data` state, so a
    /// source that stops reporting is noticed.
    NoData,
}

/// Notification throttle, stored here and applied by the notifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Throttle {
    #[serde(with = "duration_format")]
    #[schema(value_type = String, example = "5m")]
    pub period: Duration,
    pub max_alerts: u32,
}

pub use crate::validation::FieldError;

impl Expr {
    /// Every term, numerator before denominator.
    pub fn terms(&self) -> impl Iterator<Item = &Term> {
        let (first, second): (&[Term], &[Term]) = match self {
            Expr::Single(term) => (std::slice::from_ref(term), &[]),
            Expr::Ratio(ratio) => (&ratio.numerator, &ratio.denominator),
        };
        first.iter().chain(second)
    }
}

impl Condition {
    /// The selectors this condition reads (a selector used by two terms appears twice),
    /// so the engine can fetch every rule's data in a few queries.
    pub fn selectors(&self) -> impl Iterator<Item = &Selector> {
        self.expr.terms().map(|term| &term.selector)
    }

    /// The longest window any term reads.
    pub fn max_window(&self) -> Duration {
        self.expr
            .terms()
            .map(|term| term.window)
            .max()
            .unwrap_or_default()
    }
}

impl RuleSpec {
    /// See [`Condition::selectors`].
    pub fn selectors(&self) -> impl Iterator<Item = &Selector> {
        self.condition.selectors()
    }

    /// See [`Condition::max_window`].
    pub fn max_window(&self) -> Duration {
        self.condition.max_window()
    }

    /// Checks everything the type system does not; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        self.validate_into(&mut errors);
        errors.into_result()
    }

    fn validate_into(&self, errors: &mut Errors) {
        if self.name.trim().is_empty() {
            errors.add("name", "must not be empty");
        } else if self.name.chars().count() > MAX_NAME_CHARS {
            errors.add(
                "name",
                format!("must be at most {MAX_NAME_CHARS} characters"),
            );
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            errors.add(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            );
        }
        if let Err(message) = series::validate_labels(&self.labels) {
            errors.add("labels", message);
        }
        if self.annotations.len() > MAX_ANNOTATIONS {
            errors.add(
                "annotations",
                format!("at most {MAX_ANNOTATIONS} annotations are allowed"),
            );
        }
        for (key, template) in &self.annotations {
            let field = format!("annotations.{key}");
            if let Err(message) = series::validate_label_name(key) {
                errors.add(&field, message.replace("label name", "annotation name"));
            } else if let Err(message) = super::template::check(template) {
                errors.add(&field, message);
            }
        }
        self.condition.validate_into("condition", errors);

        let interval = self.evaluation_interval;
        if interval < MIN_EVALUATION_INTERVAL {
            errors.add("evaluation_interval", "must be at least 1s");
        } else if interval > MAX_EVALUATION_INTERVAL {
            errors.add("evaluation_interval", "must be at most 1day");
        }
        for (field, value) in [
            ("for", self.for_),
            ("keep_firing_for", self.keep_firing_for),
            ("no_data_for", self.no_data_for),
        ] {
            check_hold(errors, field, value);
        }

        if self.channels.len() > MAX_CHANNELS {
            errors.add(
                "channels",
                format!("at most {MAX_CHANNELS} channels are allowed"),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, channel) in self.channels.iter().enumerate() {
            let field = format!("channels[{i}]");
            if channel.trim().is_empty() {
                errors.add(&field, "must not be empty");
            } else if channel.chars().count() > MAX_NAME_CHARS {
                errors.add(
                    &field,
                    format!("must be at most {MAX_NAME_CHARS} characters"),
                );
            } else if !seen.insert(channel.as_str()) {
                errors.add(&field, format!("channel '{channel}' is listed twice"));
            }
        }
        if let Some(throttle) = &self.throttle {
            if throttle.period.is_zero() {
                errors.add("throttle.period", "must be greater than 0");
            } else {
                check_hold(errors, "throttle.period", throttle.period);
            }
            if throttle.max_alerts == 0 {
                errors.add("throttle.max_alerts", "must be at least 1");
            }
        }
    }
}

fn check_hold(errors: &mut Errors, field: &str, value: Duration) {
    if value > MAX_HOLD {
        errors.add(
            field,
            format!("must be at most {}", humantime::format_duration(MAX_HOLD)),
        );
    }
}

impl Condition {
    /// Checks the condition; field paths start with `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        self.validate_into(prefix, &mut errors);
        errors.into_result()
    }

    fn validate_into(&self, prefix: &str, errors: &mut Errors) {
        let terms = self.expr.terms().count();
        if terms > MAX_TERMS {
            errors.add(
                format!("{prefix}.expr"),
                format!("has {terms} terms, at most {MAX_TERMS} are allowed"),
            );
        }
        match &self.expr {
            Expr::Single(term) => term.validate_into(&format!("{prefix}.expr.single"), errors),
            Expr::Ratio(ratio) => {
                for (side, list) in [
                    ("numerator", &ratio.numerator),
                    ("denominator", &ratio.denominator),
                ] {
                    let path = format!("{prefix}.expr.ratio.{side}");
                    if list.is_empty() {
                        errors.add(&path, "must have at least one term");
                    }
                    for (i, term) in list.iter().enumerate() {
                        term.validate_into(&format!("{path}[{i}]"), errors);
                    }
                }
                if !ratio.scale.is_finite() || ratio.scale == 0.0 {
                    errors.add(
                        format!("{prefix}.expr.ratio.scale"),
                        "must be a finite number other than 0",
                    );
                }
            }
        }

        if !self.threshold.is_finite() {
            errors.add(format!("{prefix}.threshold"), "must be a finite number");
        }
        if let Some(resolve) = self.resolve_threshold {
            let field = format!("{prefix}.resolve_threshold");
            let t = self.threshold;
            if !resolve.is_finite() {
                errors.add(&field, "must be a finite number");
            } else {
                match self.operator {
                    Operator::Gt | Operator::Ge if resolve > t => errors.add(
                        &field,
                        format!(
                            "must not be above the threshold ({t}) with operator {}: the alert resolves once the value falls to it",
                            self.operator
                        ),
                    ),
                    Operator::Lt | Operator::Le if resolve < t => errors.add(
                        &field,
                        format!(
                            "must not be below the threshold ({t}) with operator {}: the alert resolves once the value rises to it",
                            self.operator
                        ),
                    ),
                    Operator::Eq | Operator::Ne => {
                        errors.add(&field, "is only supported with the operators >, >=, < and <=")
                    }
                    _ => {}
                }
            }
        }

        if self.group_by.len() > series::MAX_LABELS {
            errors.add(
                format!("{prefix}.group_by"),
                format!("at most {} labels are allowed", series::MAX_LABELS),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, name) in self.group_by.iter().enumerate() {
            let field = format!("{prefix}.group_by[{i}]");
            if let Err(message) = series::validate_label_name(name) {
                errors.add(&field, message);
            } else if !seen.insert(name.as_str()) {
                errors.add(&field, format!("label '{name}' is listed twice"));
            }
        }
    }
}

impl Term {
    fn validate_into(&self, path: &str, errors: &mut Errors) {
        if let Err(message) = series::validate_metric_name(&self.selector.name) {
            errors.add(format!("{path}.selector.name"), message);
        }
        if self.selector.matchers.len() > MAX_MATCHERS {
            errors.add(
                format!("{path}.selector.matchers"),
                format!("at most {MAX_MATCHERS} matchers are allowed"),
            );
        }
        // Regexes were compiled (and refused if invalid) when the matchers were built.
        for (i, matcher) in self.selector.matchers.iter().enumerate() {
            if let Err(message) = series::validate_label_name(matcher.name()) {
                errors.add(format!("{path}.selector.matchers[{i}].name"), message);
            }
        }
        if self.window.is_zero() {
            errors.add(format!("{path}.window"), "must be greater than 0");
        } else if self.window > MAX_WINDOW {
            errors.add(
                format!("{path}.window"),
                format!("must be at most {}", humantime::format_duration(MAX_WINDOW)),
            );
        }
        if self.if_missing.is_some_and(|v| !v.is_finite()) {
            errors.add(format!("{path}.if_missing"), "must be a finite number");
        }
    }
}

/// Collects field errors so that a client sees every problem at once.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// A duration in milliseconds as used by timestamps, saturating instead of wrapping.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------
// Input shapes: native or seed, mapped onto RuleSpec.
// ---------------------------------------------------------------------------------

/// What `POST /api/v1/rules` and `PUT /api/v1/rules/{id}` accept: the native shape
/// ([`RuleSpec`]) or one of the seeds' legacy shapes (see the module documentation).
/// Every field is parsed by serde derive, so a type error names its exact path; the
/// shape is resolved and validated by [`RuleInput::into_spec`].
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct RuleInput {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    /// `info`, `warning` (default), `error` or `critical`.
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    condition: ConditionInput,
    #[serde(default, with = "duration_format::option")]
    #[schema(value_type = Option<String>, example = "10s")]
    evaluation_interval: Option<Duration>,
    #[serde(rename = "for", default, with = "duration_format::option")]
    #[schema(value_type = Option<String>, example = "5m")]
    for_: Option<Duration>,
    #[serde(default, with = "duration_format::option")]
    #[schema(value_type = Option<String>, example = "0s")]
    keep_firing_for: Option<Duration>,
    #[serde(default)]
    no_data: Option<NoDataPolicy>,
    #[serde(default, with = "duration_format::option")]
    #[schema(value_type = Option<String>, example = "5m")]
    no_data_for: Option<Duration>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    throttle: Option<ThrottleInput>,
    #[serde(default)]
    notify: Option<crate::notify::policy::NotifyPolicy>,
}

/// The condition as accepted on input: exactly one of `expr` (native), `type` (seed
/// typed shape) or `metric` (seed metric shape).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ConditionInput {
    /// Native shape.
    #[serde(default)]
    expr: Option<Expr>,
    /// Seed shape: a KumoMTA condition; thresholds of ratios are in percent.
    #[serde(rename = "type", default)]
    seed_type: Option<SeedCondition>,
    /// Seed shape: a metric name, sanitized into a valid series name; compared by `last`.
    #[serde(default)]
    metric: Option<String>,
    operator: Operator,
    #[serde(default)]
    threshold: Option<f64>,
    /// Seed metric shape's name for `threshold`.
    #[serde(default)]
    value: Option<f64>,
    /// Seed metric shape's name for the rule's `for`; a number is seconds.
    #[serde(default, with = "duration_format::option")]
    #[schema(value_type = Option<String>, example = "5m")]
    duration: Option<Duration>,
    #[serde(default)]
    resolve_threshold: Option<f64>,
    /// Defaults to `["queue"]` for the seed type `queue_depth`, else to none.
    #[serde(default)]
    group_by: Option<Vec<String>>,
}

/// The KumoMTA conditions of the seeds' typed shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeedCondition {
    /// `last(kumomta_queue_size)` per queue, in messages.
    QueueDepth,
    /// `100 × increase(bounced) / increase(delivered + bounced)` over 5 minutes, in percent.
    BounceRate,
    /// `rate(kumomta_delivered_total)` over 5 minutes, in messages per second.
    DeliveryRate,
    /// `100 × increase(deferred) / increase(delivered + deferred)` over 5 minutes, in percent.
    SystemHealth,
}

/// The throttle as accepted on input. A numeric `period` is seconds in the native
/// shape and milliseconds in the seed shapes (as the seeds wrote it).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ThrottleInput {
    #[schema(value_type = String, example = "5m")]
    period: RawDuration,
    #[serde(alias = "maxAlerts")]
    max_alerts: u32,
}

/// A duration as written, before its unit is known.
#[derive(Debug, Clone, PartialEq)]
enum RawDuration {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"5m\", or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl RawDuration {
    fn resolve(&self, number_unit_seconds: f64) -> Result<Duration, String> {
        match self {
            RawDuration::Text(text) => parse_duration(text),
            RawDuration::Number(n) => seconds(n * number_unit_seconds),
        }
    }
}

impl RuleInput {
    /// Maps the input onto the native model and validates it; returns every problem.
    pub fn into_spec(self) -> Result<RuleSpec, Vec<FieldError>> {
        let mut errors = Errors::default();
        let cond = self.condition;

        // Which shape: exactly one of expr, type, metric.
        let given = [
            cond.expr.is_some(),
            cond.seed_type.is_some(),
            cond.metric.is_some(),
        ];
        let seed_shape = cond.expr.is_none();
        let (expr, default_group_by) = match (cond.expr, cond.seed_type, cond.metric) {
            (Some(expr), None, None) => (Some(expr), Vec::new()),
            (None, Some(kind), None) => (Some(seed_expr(kind)), seed_group_by(kind)),
            (None, None, Some(metric)) => {
                let name = series::sanitize_metric_name(metric.trim());
                let term = Term::new(Selector::new(name), Aggregation::Last, DEFAULT_WINDOW);
                (Some(Expr::Single(term)), Vec::new())
            }
            _ => {
                let message = if given.iter().any(|g| *g) {
                    "give only one of expr (native shape), type or metric (seed shapes)"
                } else {
                    "must have expr (native shape), or type or metric (seed shapes)"
                };
                errors.add("condition", message);
                (None, Vec::new())
            }
        };

        let threshold = match (cond.threshold, cond.value) {
            (Some(t), None) | (None, Some(t)) => Some(t),
            (None, None) => {
                errors.add("condition.threshold", "is required");
                None
            }
            (Some(_), Some(_)) => {
                errors.add("condition.value", "give threshold or value, not both");
                None
            }
        };

        let for_ = match (self.for_, cond.duration) {
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => Duration::ZERO,
            (Some(_), Some(_)) => {
                errors.add(
                    "condition.duration",
                    "give for or condition.duration, not both",
                );
                Duration::ZERO
            }
        };

        let throttle = self.throttle.and_then(|t| {
            // The seeds wrote the period in milliseconds.
            let unit = if seed_shape { 0.001 } else { 1.0 };
            match t.period.resolve(unit) {
                Ok(period) => Some(Throttle {
                    period,
                    max_alerts: t.max_alerts,
                }),
                Err(message) => {
                    errors.add("throttle.period", message);
                    None
                }
            }
        });

        let (Some(expr), Some(threshold)) = (expr, threshold) else {
            return Err(errors.0);
        };
        let spec = RuleSpec {
            name: self.name,
            description: self.description.unwrap_or_default(),
            enabled: self.enabled.unwrap_or(true),
            severity: self.severity.unwrap_or_default(),
            labels: self.labels,
            annotations: self.annotations,
            condition: Condition {
                expr,
                operator: cond.operator,
                threshold,
                resolve_threshold: cond.resolve_threshold,
                group_by: cond.group_by.unwrap_or(default_group_by),
            },
            evaluation_interval: self
                .evaluation_interval
                .unwrap_or(DEFAULT_EVALUATION_INTERVAL),
            for_,
            keep_firing_for: self.keep_firing_for.unwrap_or_default(),
            no_data: self.no_data.unwrap_or_default(),
            no_data_for: self.no_data_for.unwrap_or_default(),
            channels: self.channels,
            throttle,
            notify: self.notify.unwrap_or_default(),
        };
        spec.validate_into(&mut errors);
        errors.into_result().map(|()| spec)
    }
}

impl From<RuleSpec> for RuleInput {
    /// The native input that yields this spec, e.g. to replay a stored rule through
    /// the API's code path.
    fn from(spec: RuleSpec) -> Self {
        RuleInput {
            name: spec.name,
            description: Some(spec.description),
            enabled: Some(spec.enabled),
            severity: Some(spec.severity),
            labels: spec.labels,
            annotations: spec.annotations,
            condition: ConditionInput {
                expr: Some(spec.condition.expr),
                seed_type: None,
                metric: None,
                operator: spec.condition.operator,
                threshold: Some(spec.condition.threshold),
                value: None,
                duration: None,
                resolve_threshold: spec.condition.resolve_threshold,
                group_by: Some(spec.condition.group_by),
            },
            evaluation_interval: Some(spec.evaluation_interval),
            for_: Some(spec.for_),
            keep_firing_for: Some(spec.keep_firing_for),
            no_data: Some(spec.no_data),
            no_data_for: Some(spec.no_data_for),
            channels: spec.channels,
            throttle: spec.throttle.map(|t| ThrottleInput {
                period: RawDuration::Text(humantime::format_duration(t.period).to_string()),
                max_alerts: t.max_alerts,
            }),
            notify: Some(spec.notify),
        }
    }
}

// ---------------------------------------------------------------------------------
// KumoMTA expressions shared by the seed mapping and the default rules.
// ---------------------------------------------------------------------------------

/// The window of the KumoMTA rates and ratios.
const KUMOMTA_WINDOW: Duration = Duration::from_secs(5 * 60);

fn counter_increase(name: &str) -> Term {
    // A counter that has not appeared yet has counted nothing.
    Term::new(Selector::new(name), Aggregation::Increase, KUMOMTA_WINDOW).or(0.0)
}

/// `100 × increase(part) / increase(delivered + part)`: the share of `part` among
/// finished attempts, in percent.
fn kumomta_share(part: &str) -> Expr {
    Expr::Ratio(Ratio {
        numerator: vec![counter_increase(part)],
        denominator: vec![
            counter_increase("kumomta_delivered_total"),
            counter_increase(part),
        ],
        scale: 100.0,
    })
}

fn seed_expr(kind: SeedCondition) -> Expr {
    match kind {
        SeedCondition::QueueDepth => Expr::Single(Term::new(
            Selector::new("kumomta_queue_size"),
            Aggregation::Last,
            KUMOMTA_WINDOW,
        )),
        SeedCondition::BounceRate => kumomta_share("kumomta_bounced_total"),
        SeedCondition::DeliveryRate => Expr::Single(Term::new(
            Selector::new("kumomta_delivered_total"),
            Aggregation::Rate,
            KUMOMTA_WINDOW,
        )),
        SeedCondition::SystemHealth => kumomta_share("kumomta_deferred_total"),
    }
}

fn seed_group_by(kind: SeedCondition) -> Vec<String> {
    match kind {
        SeedCondition::QueueDepth => vec!["queue".to_string()],
        SeedCondition::BounceRate | SeedCondition::DeliveryRate | SeedCondition::SystemHealth => {
            Vec::new()
        }
    }
}

/// The rules every tenant gets on first start (each can be disabled):
///
/// | name | condition | severity | for |
/// |---|---|---|---|
/// | Critical queue depth | `last(kumomta_queue_size)` by queue `> 10000` | critical | 1m |
/// | High bounce rate | bounced share of finished attempts over 5m `> 5` % | error | 0s |
/// | Low delivery rate | `rate(kumomta_delivered_total)` over 5m `< 100`/s | warning | 5m |
/// | System health degraded | deferred share of attempts over 5m `> 10` % | warning | 5m |
///
/// All use the `ok` no-data policy: idle queues vanish from kumod's output and a
/// ratio has no value without traffic, neither of which is a problem.
pub fn default_rules() -> Vec<RuleSpec> {
    let rule =
        |name: &str, description: &str, severity, condition, for_secs, summary: &str| RuleSpec {
            name: name.to_string(),
            description: description.to_string(),
            enabled: true,
            severity,
            labels: Labels::new(),
            annotations: BTreeMap::from([("summary".to_string(), summary.to_string())]),
            condition,
            evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
            for_: Duration::from_secs(for_secs),
            keep_firing_for: Duration::ZERO,
            no_data: NoDataPolicy::Ok,
            no_data_for: Duration::ZERO,
            channels: Vec::new(),
            throttle: None,
            notify: Default::default(),
        };
    let condition = |kind, operator, threshold| Condition {
        expr: seed_expr(kind),
        operator,
        threshold,
        resolve_threshold: None,
        group_by: seed_group_by(kind),
    };
    vec![
        rule(
            "Critical queue depth",
            "A KumoMTA queue holds more than 10 000 messages.",
            Severity::Critical,
            condition(SeedCondition::QueueDepth, Operator::Gt, 10_000.0),
            60,
            "Queue {{ labels.queue }} holds {{ value | humanize }} messages (threshold {{ threshold | humanize }})",
        ),
        rule(
            "High bounce rate",
            "More than 5 % of finished delivery attempts bounced over the last 5 minutes.",
            Severity::Error,
            condition(SeedCondition::BounceRate, Operator::Gt, 5.0),
            0,
            "Bounce rate is {{ value | round(2) }} % over 5 minutes (threshold {{ threshold }} %)",
        ),
        rule(
            "Low delivery rate",
            "KumoMTA delivers fewer than 100 messages per second.",
            Severity::Warning,
            condition(SeedCondition::DeliveryRate, Operator::Lt, 100.0),
            300,
            "Delivering {{ value | round(1) }} messages/s (threshold {{ threshold }})",
        ),
        rule(
            "System health degraded",
            "More than 10 % of delivery attempts were deferred over the last 5 minutes.",
            Severity::Warning,
            condition(SeedCondition::SystemHealth, Operator::Gt, 10.0),
            300,
            "{{ value | round(1) }} % of delivery attempts were deferred over 5 minutes (threshold {{ threshold }} %)",
        ),
    ]
}

// ---------------------------------------------------------------------------------
// Durations on the wire.
// ---------------------------------------------------------------------------------

/// Parses a humantime duration (`"30s"`, `"5m"`, `"1h 30m"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        let shown: String = text.chars().take(64).collect();
        format!("invalid duration '{shown}': {e} (write e.g. \"30s\", \"5m\", \"1h 30m\" or a number of seconds)")
    })
}

/// A non-negative number of seconds as a duration.
fn seconds(value: f64) -> Result<Duration, String> {
    // from_secs_f64 panics on negative, NaN or overflowing input; 1e12 s is far beyond
    // any bound that validation accepts.
    if value.is_finite() && (0.0..=1e12).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!(
            "invalid duration {value}: must be a non-negative number of seconds"
        ))
    }
}

/// Serde format for durations: humantime strings or numbers of seconds on input,
/// humantime strings on output. Use with `#[serde(with = "duration_format")]`, or
/// `duration_format::option` for `Option<Duration>`.
pub mod duration_format {
    use serde::{Deserializer, Serializer, de};
    use std::fmt;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"30s\" or \"5m\", or a number of seconds")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse_duration(v).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("invalid duration {v}: must not be negative")))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            super::seconds(v).map_err(E::custom)
        }
    }

    /// The same format for `Option<Duration>`; `null` is `None`.
    pub mod option {
        use serde::{Deserializer, Serializer, de};
        use std::fmt;
        use std::time::Duration;

        pub fn serialize<S: Serializer>(
            value: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(d) => serializer.collect_str(&humantime::format_duration(*d)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            struct OptionVisitor;
            impl<'de> de::Visitor<'de> for OptionVisitor {
                type Value = Option<Duration>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(
                        "a duration such as \"30s\" or \"5m\", a number of seconds, or null",
                    )
                }
                fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                    super::deserialize(d).map(Some)
                }
            }
            deserializer.deserialize_option(OptionVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Matcher;
    use serde_json::json;

    fn input(value: serde_json::Value) -> Result<RuleSpec, Vec<FieldError>> {
        serde_json::from_value::<RuleInput>(value)
            .expect("well-formed input")
            .into_spec()
    }

    fn native() -> serde_json::Value {
        json!({
            "name": "Deep queue",
            "severity": "critical",
            "labels": {"team": "mail"},
            "annotations": {"summary": "Queue {{ labels.queue }} holds {{ value }} messages"},
            "condition": {
                "expr": {"single": {
                    "selector": {"name": "kumomta_queue_size", "matchers": [{"name": "queue", "op": "=~", "value": "gmail.*"}]},
                    "function": "last",
                    "window": "5m"
                }},
                "operator": ">",
                "threshold": 10000,
                "resolve_threshold": 8000,
                "group_by": ["queue"]
            },
            "for": "1m",
            "keep_firing_for": 30,
            "no_data": "no_data",
            "no_data_for": "10m",
            "channels": ["0190f0a4-0000-7000-8000-000000000001"],
            "throttle": {"period": "5m", "max_alerts": 3}
        })
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn native_shape_round_trips_with_durations_as_strings() {
        let spec = input(native()).unwrap();
        assert_eq!(spec.for_, Duration::from_secs(60));
        assert_eq!(spec.keep_firing_for, Duration::from_secs(30));
        assert_eq!(spec.evaluation_interval, DEFAULT_EVALUATION_INTERVAL);
        assert!(spec.enabled);
        assert_eq!(
            spec.throttle,
            Some(Throttle {
                period: Duration::from_secs(300),
                max_alerts: 3
            })
        );
        assert_eq!(
            spec.selectors().cloned().collect::<Vec<_>>(),
            vec![
                Selector::new("kumomta_queue_size").with(Matcher::parse("queue=~gmail.*").unwrap())
            ]
        );

        let rule = Rule {
            id: uuid::Uuid::nil(),
            spec: spec.clone(),
        };
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["id"], "00000000-0000-0000-0000-000000000000");
        assert_eq!(json["for"], "1m");
        assert_eq!(json["keep_firing_for"], "30s");
        assert_eq!(json["evaluation_interval"], "10s");
        assert_eq!(json["condition"]["expr"]["single"]["window"], "5m");
        assert_eq!(json["condition"]["operator"], ">");
        assert_eq!(json["throttle"]["period"], "5m");
        let back: Rule = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, rule);
        // What the API returns is accepted back by the API.
        let mut resubmitted = json;
        resubmitted.as_object_mut().unwrap().remove("id");
        assert_eq!(input(resubmitted).unwrap(), spec);
        assert_eq!(RuleInput::from(spec.clone()).into_spec().unwrap(), spec);
    }

    #[test]
    fn durations_accept_strings_and_seconds() {
        #[derive(Deserialize, Serialize)]
        struct D(#[serde(with = "duration_format")] Duration);
        let cases: [(serde_json::Value, Option<u64>); 12] = [
            (json!("30s"), Some(30_000)),
            (json!("5m"), Some(300_000)),
            (json!("1h 30m"), Some(5_400_000)),
            (json!(" 2m "), Some(120_000)),
            (json!(300), Some(300_000)),
            (json!(1.5), Some(1_500)),
            (json!(0), Some(0)),
            (json!(-5), None),
            (json!(-0.5), None),
            (json!("soon"), None),
            (json!("5"), None),
            (json!(true), None),
        ];
        for (value, expected) in cases {
            let got = serde_json::from_value::<D>(value.clone())
                .ok()
                .map(|d| d.0.as_millis());
            assert_eq!(got, expected.map(u128::from), "{value}");
        }
        let err = serde_json::from_value::<D>(json!("soon"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid duration 'soon'"), "{err}");
        assert_eq!(
            serde_json::to_value(D(Duration::from_millis(90_500))).unwrap(),
            json!("1m 30s 500ms")
        );
    }

    #[test]
    fn operators_serialize_as_symbols_and_accept_words() {
        for (op, symbol) in [
            (Operator::Gt, ">"),
            (Operator::Lt, "<"),
            (Operator::Ge, ">="),
            (Operator::Le, "<="),
            (Operator::Eq, "=="),
            (Operator::Ne, "!="),
        ] {
            assert_eq!(serde_json::to_value(op).unwrap(), json!(symbol));
            assert_eq!(op.to_string(), symbol);
        }
        for (word, op) in [
            ("greaterThan", Operator::Gt),
            ("lessThan", Operator::Lt),
            ("equals", Operator::Eq),
            ("greaterThanOrEqual", Operator::Ge),
            ("lessThanOrEqual", Operator::Le),
            ("notEquals", Operator::Ne),
        ] {
            assert_eq!(serde_json::from_value::<Operator>(json!(word)).unwrap(), op);
        }
    }

    fn seed(kind: &str, operator: &str, threshold: f64) -> serde_json::Value {
        json!({
            "name": format!("seed {kind}"),
            "condition": {"type": kind, "operator": operator, "threshold": threshold},
            "throttle": {"period": 300000, "maxAlerts": 3},
            "channels": ["email", "slack"]
        })
    }

    fn inc(name: &str) -> Term {
        Term::new(
            Selector::new(name),
            Aggregation::Increase,
            Duration::from_secs(300),
        )
        .or(0.0)
    }

    #[test]
    fn seed_typed_shapes_map_onto_the_model() {
        let cases = [
            (
                "queue_depth",
                Expr::Single(Term::new(
                    Selector::new("kumomta_queue_size"),
                    Aggregation::Last,
                    Duration::from_secs(300),
                )),
                vec!["queue".to_string()],
            ),
            (
                "bounce_rate",
                Expr::Ratio(Ratio {
                    numerator: vec![inc("kumomta_bounced_total")],
                    denominator: vec![inc("kumomta_delivered_total"), inc("kumomta_bounced_total")],
                    scale: 100.0,
                }),
                vec![],
            ),
            (
                "delivery_rate",
                Expr::Single(Term::new(
                    Selector::new("kumomta_delivered_total"),
                    Aggregation::Rate,
                    Duration::from_secs(300),
                )),
                vec![],
            ),
            (
                "system_health",
                Expr::Ratio(Ratio {
                    numerator: vec![inc("kumomta_deferred_total")],
                    denominator: vec![
                        inc("kumomta_delivered_total"),
                        inc("kumomta_deferred_total"),
                    ],
                    scale: 100.0,
                }),
                vec![],
            ),
        ];
        for (kind, expr, group_by) in cases {
            let spec = input(seed(kind, ">", 5000.0)).unwrap();
            assert_eq!(spec.condition.expr, expr, "{kind}");
            assert_eq!(spec.condition.group_by, group_by, "{kind}");
            assert_eq!(spec.condition.operator, Operator::Gt);
            assert_eq!(spec.condition.threshold, 5000.0);
            assert_eq!(spec.for_, Duration::ZERO);
            // The seeds' throttle period is in milliseconds.
            assert_eq!(
                spec.throttle,
                Some(Throttle {
                    period: Duration::from_secs(300),
                    max_alerts: 3
                })
            );
            assert_eq!(
                spec.channels,
                vec!["email".to_string(), "slack".to_string()]
            );
            assert_eq!(spec.severity, Severity::Warning);
        }
        // group_by given explicitly wins over the seed's default.
        let mut value = seed("queue_depth", "greaterThan", 10.0);
        value["condition"]["group_by"] = json!([]);
        assert!(input(value).unwrap().condition.group_by.is_empty());
        // Unknown seed types are refused by serde, naming the variants.
        let err = serde_json::from_value::<RuleInput>(seed("disk_full", ">", 1.0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("queue_depth"), "{err}");
    }

    #[test]
    fn seed_metric_shape_maps_onto_the_model() {
        let spec = input(json!({
            "name": "Memory",
            "severity": "error",
            "condition": {"metric": "system.memory.usedPercent", "operator": "greaterThan", "value": 85, "duration": 300}
        }))
        .unwrap();
        assert_eq!(
            spec.condition.expr,
            Expr::Single(Term::new(
                Selector::new("system_memory_usedPercent"),
                Aggregation::Last,
                DEFAULT_WINDOW
            ))
        );
        assert_eq!(spec.condition.operator, Operator::Gt);
        assert_eq!(spec.condition.threshold, 85.0);
        assert_eq!(spec.for_, Duration::from_secs(300));
        assert_eq!(spec.severity, Severity::Error);
        assert!(spec.condition.group_by.is_empty());
    }

    #[test]
    fn shape_errors_name_the_field() {
        let cases = [
            (
                json!({"name": "x", "condition": {"operator": ">", "threshold": 1}}),
                "condition",
            ),
            (
                json!({"name": "x", "condition": {"type": "queue_depth", "metric": "m", "operator": ">", "threshold": 1}}),
                "condition",
            ),
            (
                json!({"name": "x", "condition": {"type": "queue_depth", "operator": ">"}}),
                "condition.threshold",
            ),
            (
                json!({"name": "x", "condition": {"metric": "m", "operator": ">", "threshold": 1, "value": 2}}),
                "condition.value",
            ),
            (
                json!({"name": "x", "for": "1m", "condition": {"metric": "m", "operator": ">", "value": 2, "duration": 60}}),
                "condition.duration",
            ),
            (
                json!({"name": "x", "condition": {"metric": "m", "operator": ">", "value": 2}, "throttle": {"period": "often", "max_alerts": 1}}),
                "throttle.period",
            ),
        ];
        for (value, field) in cases {
            let errors = input(value.clone()).unwrap_err();
            assert_eq!(fields(&errors), vec![field], "{value}: {errors:?}");
        }
        // A native integer throttle period is seconds.
        let mut value = native();
        value["throttle"] = json!({"period": 60, "max_alerts": 1});
        assert_eq!(
            input(value).unwrap().throttle.unwrap().period,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn validation_reports_every_problem_with_its_path() {
        type Edit = fn(&mut serde_json::Value);
        let cases: &[(Edit, &str)] = &[
            (|v| v["name"] = json!("  "), "name"),
            (|v| v["name"] = json!("x".repeat(201)), "name"),
            (
                |v| v["description"] = json!("x".repeat(4001)),
                "description",
            ),
            (|v| v["labels"] = json!({"__bad": "x"}), "labels"),
            (
                |v| v["annotations"] = json!({"summary": "{{ value "}),
                "annotations.summary",
            ),
            (
                |v| v["annotations"] = json!({"summary": "{{ value | nope }}"}),
                "annotations.summary",
            ),
            (
                |v| v["annotations"] = json!({"bad-key": "x"}),
                "annotations.bad-key",
            ),
            (
                |v| v["condition"]["expr"]["single"]["selector"]["name"] = json!("a.b"),
                "condition.expr.single.selector.name",
            ),
            (
                |v| {
                    v["condition"]["expr"]["single"]["selector"]["matchers"][0]["name"] =
                        json!("1x")
                },
                "condition.expr.single.selector.matchers[0].name",
            ),
            (
                |v| v["condition"]["expr"]["single"]["window"] = json!(0),
                "condition.expr.single.window",
            ),
            (
                |v| v["condition"]["expr"]["single"]["window"] = json!("8d"),
                "condition.expr.single.window",
            ),
            (
                |v| v["condition"]["resolve_threshold"] = json!(12000),
                "condition.resolve_threshold",
            ),
            (
                |v| v["condition"]["operator"] = json!("<"),
                "condition.resolve_threshold",
            ),
            (
                |v| v["condition"]["operator"] = json!("=="),
                "condition.resolve_threshold",
            ),
            (
                |v| v["condition"]["group_by"] = json!(["queue", "queue"]),
                "condition.group_by[1]",
            ),
            (
                |v| v["condition"]["group_by"] = json!(["queue", "a-b"]),
                "condition.group_by[1]",
            ),
            (
                |v| v["evaluation_interval"] = json!("500ms"),
                "evaluation_interval",
            ),
            (
                |v| v["evaluation_interval"] = json!("2days"),
                "evaluation_interval",
            ),
            (|v| v["for"] = json!("31days"), "for"),
            (
                |v| v["keep_firing_for"] = json!("31days"),
                "keep_firing_for",
            ),
            (|v| v["no_data_for"] = json!("31days"), "no_data_for"),
            (|v| v["channels"] = json!(["a", "a"]), "channels[1]"),
            (|v| v["channels"] = json!([""]), "channels[0]"),
            (
                |v| v["throttle"] = json!({"period": 0, "max_alerts": 1}),
                "throttle.period",
            ),
            (
                |v| v["throttle"] = json!({"period": "1m", "max_alerts": 0}),
                "throttle.max_alerts",
            ),
            (
                |v| {
                    v["condition"]["expr"] =
                        json!({"ratio": {"numerator": [], "denominator": [], "scale": 0}});
                },
                "condition.expr.ratio.numerator",
            ),
        ];
        for (edit, field) in cases {
            let mut value = native();
            edit(&mut value);
            let errors = input(value.clone()).unwrap_err();
            assert!(
                fields(&errors).contains(field),
                "want {field}, got {errors:?}"
            );
        }

        // Several problems at once are all reported.
        let mut value = native();
        value["name"] = json!("");
        value["condition"]["expr"]["single"]["window"] = json!(0);
        value["evaluation_interval"] = json!(0);
        let errors = input(value).unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                "name",
                "condition.expr.single.window",
                "evaluation_interval"
            ]
        );

        // Ratio paths carry the side and index.
        let mut value = native();
        value["condition"]["resolve_threshold"] = json!(null);
        value["condition"]["expr"] = json!({"ratio": {
            "numerator": [{"selector": {"name": "ok"}, "function": "increase"}],
            "denominator": [{"selector": {"name": "ok"}, "function": "increase"}, {"selector": {"name": "9bad"}, "function": "increase"}],
            "scale": 0
        }});
        let errors = input(value).unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                "condition.expr.ratio.denominator[1].selector.name",
                "condition.expr.ratio.scale"
            ]
        );

        // Too many terms.
        let term = json!({"selector": {"name": "m"}, "function": "sum"});
        let mut value = native();
        value["condition"]["resolve_threshold"] = json!(null);
        value["condition"]["expr"] =
            json!({"ratio": {"numerator": vec![term.clone(); 15], "denominator": vec![term; 6]}});
        assert_eq!(fields(&input(value).unwrap_err()), vec!["condition.expr"]);

        // Regexes are checked while parsing, where serde names the path.
        let mut value = native();
        value["condition"]["expr"]["single"]["selector"]["matchers"][0]["value"] = json!("(");
        let err = serde_json::from_value::<RuleInput>(value)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid regular expression for label 'queue'"),
            "{err}"
        );
    }

    #[test]
    fn non_finite_numbers_built_in_code_are_refused() {
        let mut spec = default_rules().remove(1);
        spec.condition.threshold = f64::NAN;
        spec.condition.resolve_threshold = Some(f64::INFINITY);
        if let Expr::Ratio(ratio) = &mut spec.condition.expr {
            ratio.scale = f64::INFINITY;
            ratio.numerator[0].if_missing = Some(f64::NEG_INFINITY);
        }
        let errors = spec.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                "condition.expr.ratio.numerator[0].if_missing",
                "condition.expr.ratio.scale",
                "condition.threshold",
                "condition.resolve_threshold",
            ]
        );
    }

    #[test]
    fn hysteresis_side_depends_on_the_operator() {
        let cases = [
            (Operator::Gt, 80.0, true),
            (Operator::Ge, 100.0, true),
            (Operator::Gt, 120.0, false),
            (Operator::Lt, 120.0, true),
            (Operator::Le, 80.0, false),
            (Operator::Eq, 100.0, false),
            (Operator::Ne, 100.0, false),
        ];
        for (operator, resolve, ok) in cases {
            let condition = Condition {
                expr: seed_expr(SeedCondition::QueueDepth),
                operator,
                threshold: 100.0,
                resolve_threshold: Some(resolve),
                group_by: Vec::new(),
            };
            assert_eq!(
                condition.validate("condition").is_ok(),
                ok,
                "{operator} resolve {resolve}"
            );
        }
    }

    #[test]
    fn default_rules_are_the_four_kumomta_rules_and_valid() {
        let rules = default_rules();
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Critical queue depth",
                "High bounce rate",
                "Low delivery rate",
                "System health degraded"
            ]
        );
        for rule in &rules {
            assert_eq!(rule.validate(), Ok(()), "{}", rule.name);
            let json = serde_json::to_value(rule).unwrap();
            assert_eq!(
                &serde_json::from_value::<RuleSpec>(json.clone()).unwrap(),
                rule
            );
            assert_eq!(&input(json).unwrap(), rule);
        }
        let thresholds: Vec<(Operator, f64)> = rules
            .iter()
            .map(|r| (r.condition.operator, r.condition.threshold))
            .collect();
        assert_eq!(
            thresholds,
            [
                (Operator::Gt, 10_000.0),
                (Operator::Gt, 5.0),
                (Operator::Lt, 100.0),
                (Operator::Gt, 10.0)
            ]
        );
        assert_eq!(rules[0].condition.group_by, ["queue"]);
        assert_eq!(rules[1].max_window(), Duration::from_secs(300));
        let names: Vec<&str> = rules[1].selectors().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kumomta_bounced_total",
                "kumomta_delivered_total",
                "kumomta_bounced_total"
            ]
        );
    }

    #[test]
    fn default_rules_evaluate_on_kumomta_series() {
        use crate::rules::evaluator::{SeriesWindow, evaluate};
        let rules = default_rules();
        let none = Labels::new();
        let queue = Labels::from([
            ("queue".to_string(), "gmail.com".to_string()),
            ("kind".to_string(), "ready".to_string()),
        ]);
        // A scrape every 10 s: per scrape 90 delivered, 10 bounced, 30 deferred.
        let counter = |per_scrape: f64| -> Vec<(i64, f64)> {
            (0..=30)
                .map(|i| (i * 10_000, 5.0 + per_scrape * i as f64))
                .collect()
        };
        let (delivered, bounced, deferred) = (counter(90.0), counter(10.0), counter(30.0));
        let depth = [(300_000, 12_000.0)];
        let data = [
            SeriesWindow {
                name: "kumomta_delivered_total",
                labels: &none,
                samples: &delivered,
            },
            SeriesWindow {
                name: "kumomta_bounced_total",
                labels: &none,
                samples: &bounced,
            },
            SeriesWindow {
                name: "kumomta_deferred_total",
                labels: &none,
                samples: &deferred,
            },
            SeriesWindow {
                name: "kumomta_queue_size",
                labels: &queue,
                samples: &depth,
            },
        ];
        let values: Vec<Option<f64>> = rules
            .iter()
            .map(|r| evaluate(300_000, &r.condition, &data)[0].value)
            .collect();
        // 12000 deep; 10 / (90 + 10) = 10 %; 90 per 10 s = 9/s; 30 / (90 + 30) = 25 %.
        assert_eq!(values, [Some(12_000.0), Some(10.0), Some(9.0), Some(25.0)]);
    }

    #[test]
    fn schemas_build() {
        use utoipa::PartialSchema;
        for schema in [
            RuleSpec::schema(),
            RuleInput::schema(),
            Rule::schema(),
            FieldError::schema(),
        ] {
            let json = serde_json::to_string(&schema).unwrap();
            assert!(!json.is_empty());
        }
        let json = serde_json::to_string(&RuleSpec::schema()).unwrap();
        assert!(json.contains("\"for\""), "{json}");
        assert!(json.contains("evaluation_interval"), "{json}");
    }
}
