//! Sources: what Lookout polls (KumoMTA, Prometheus targets, HTTP probes) and the
//! KumoMTA log-hook receiver. This holds the parsing and interpretation of what the
//! sources serve; it does no I/O.

pub mod kumomta;
pub mod prometheus_text;
