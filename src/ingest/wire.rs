//! The JSON shape of a batch, shared by `POST /api/v1/metrics` and agents' `metrics`
//! frames (protocol.md): `{batch_id?, metrics:[{name, value, labels, timestamp}]}`.
//!
//! Each sample is decoded on its own, so that one malformed sample (a value that is a
//! string, a missing name) is reported with its index like any invalid one and does not
//! sink the rest of the batch.

use super::{Rejection, SampleIn};
use crate::series::Labels;
use chrono::DateTime;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// A batch as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MetricBatch {
    /// Names the batch: a batch resent with the same id is acknowledged with the first
    /// answer and stored once. 1-128 characters.
    #[serde(default)]
    pub batch_id: Option<String>,
    /// At most 10 000 samples.
    #[schema(value_type = Vec<MetricIn>)]
    pub metrics: Vec<Box<RawValue>>,
}

/// One sample as sent.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
pub struct MetricIn {
    /// Prometheus metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub name: String,
    /// A finite number.
    pub value: f64,
    /// At most 32 labels; names `[a-zA-Z_][a-zA-Z0-9_]*`, values at most 1 KiB.
    #[serde(default)]
    pub labels: Labels,
    /// RFC 3339 time or milliseconds since the Unix epoch; absent means now. At most
    /// 10 minutes ahead, not older than the retention.
    #[serde(default, deserialize_with = "timestamp_ms")]
    #[schema(value_type = Option<String>, example = "2026-11-21T10:00:00Z")]
    pub timestamp: Option<i64>,
}

impl From<MetricIn> for SampleIn {
    fn from(m: MetricIn) -> SampleIn {
        SampleIn {
            name: m.name,
            labels: m.labels,
            value: m.value,
            timestamp_ms: m.timestamp,
        }
    }
}

/// [`MetricBatch`] borrowing each sample's text from the request body instead of
/// copying it: decoding a full batch is one allocation fewer per sample.
#[derive(Debug, Deserialize)]
pub struct MetricBatchRef<'a> {
    #[serde(default)]
    pub batch_id: Option<String>,
    #[serde(borrow)]
    pub metrics: Vec<&'a RawValue>,
}

/// Decodes each sample of a batch: the samples that could be read, in order, and a
/// rejection (with its index in the batch) for each one that could not.
pub fn decode_metrics<R: std::ops::Deref<Target = RawValue>>(
    raw: &[R],
) -> (Vec<SampleIn>, Vec<Rejection>) {
    let mut samples = Vec::with_capacity(raw.len());
    let mut rejected = Vec::new();
    for (index, item) in raw.iter().enumerate() {
        match serde_json::from_str::<MetricIn>(item.get()) {
            Ok(metric) => samples.push(metric.into()),
            Err(e) => {
                let message = e.to_string();
                // serde_json appends the position inside this sample; the index says more.
                let message = match message.rfind(" at line ") {
                    Some(pos) => &message[..pos],
                    None => &message[..],
                };
                rejected.push(Rejection {
                    index,
                    reason: format!("invalid sample: {message}"),
                });
            }
        }
    }
    (samples, rejected)
}

fn timestamp_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
    }
    match Option::<Raw>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Raw::Int(ms)) => Ok(Some(ms)),
        Some(Raw::Float(ms)) if ms.is_finite() && ms.abs() < 1e15 => Ok(Some(ms as i64)),
        Some(Raw::Float(_)) => Err(serde::de::Error::custom("timestamp is out of range")),
        Some(Raw::Text(text)) => DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "timestamp '{}' is not RFC 3339 ({e})",
                    text.chars().take(40).collect::<String>()
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sample_is_decoded_on_its_own() {
        let batch: MetricBatch = serde_json::from_str(
            r#"{"batch_id":"b","metrics":[
                {"name":"a","value":1,"labels":{"x":"y"},"timestamp":1700000000000},
                {"name":"b","value":"high"},
                {"name":"c","value":2.5,"timestamp":"2026-11-21T10:00:00Z"},
                {"value":1},
                {"name":"d","value":1,"timestamp":"yesterday"}
            ]}"#,
        )
        .unwrap();
        let (samples, rejected) = decode_metrics(&batch.metrics);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(samples[0].labels["x"], "y");
        assert_eq!(samples[1].timestamp_ms, Some(1_795_255_200_000));
        let indexes: Vec<usize> = rejected.iter().map(|r| r.index).collect();
        assert_eq!(indexes, vec![1, 3, 4]);
        assert!(
            rejected[1].reason.contains("missing field `name`"),
            "{rejected:?}"
        );
    }
}
