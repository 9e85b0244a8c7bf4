//! `GET /api/v1/metrics/export`: a range of samples as CSV or JSON, streamed.
//!
//! The rows are streamed from the database by a task that formats them into chunks of
//! about 64 KiB and hands them to the response body through a channel of a few chunks:
//! when the client reads slowly, the channel fills, the task waits, and the database
//! cursor waits with it. Memory stays a few chunks whatever the range.

use super::params::Pairs;
use super::select_series;
use crate::api::{ApiError, Problem};
use crate::app::AppState;
use crate::auth::Viewer;
use crate::store::samples::{self, SampleRow};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use std::collections::HashMap;
use std::time::Duration;

/// A chunk is sent once it holds this much.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks formatted ahead of the client.
const CHUNKS_AHEAD: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

/// Streams the samples of the selected series in a range.
///
/// CSV: a header `name,labels,timestamp,value`, then one row per sample (labels as a
/// JSON object, timestamp RFC 3339). JSON: an array of `{name, labels, timestamp,
/// value}`. Rows are ordered by series then time. A body that ends without its closing
/// `]` (JSON) or is cut mid-row means the export failed part-way.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/export",
    tag = "metrics",
    params(
        ("format" = Option<String>, Query, description = "csv or json (default json)"),
        ("name" = Option<String>, Query, description = "Metric name; none: every metric"),
        ("match" = Option<Vec<String>>, Query, description = "Label matcher, repeatable"),
        ("from" = Option<String>, Query, description = "Start, RFC 3339 or epoch ms; default `to` − 24h"),
        ("to" = Option<String>, Query, description = "End, RFC 3339 or epoch ms; default now"),
    ),
    responses(
        (status = 200, description = "The samples, streamed (text/csv for format=csv)", body = String, content_type = "application/json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn export(
    State(state): State<AppState>,
    caller: Viewer,
    pairs: Pairs,
) -> Result<Response, ApiError> {
    pairs.check(&["format", "name", "match", "from", "to"])?;
    let format = match pairs.get("format").unwrap_or("json") {
        "csv" => Format::Csv,
        "json" => Format::Json,
        _ => return Err(ApiError::field("format", "must be csv or json")),
    };
    let name = pairs.metric_name()?;
    let matchers = pairs.matchers()?;
    let range = pairs.range(Utc::now(), Duration::from_secs(24 * 3600))?;
    let series = select_series(&state, &caller.tenant, name.as_deref(), &matchers).await?;

    // What every row of a series starts with, formatted once per series.
    let prefixes: HashMap<i64, String> = series
        .iter()
        .map(|s| {
            let labels = serde_json::to_string(&s.labels).unwrap_or_else(|_| "{}".into());
            let prefix = match format {
                Format::Csv => format!("{},{},", s.name, csv_field(&labels)),
                Format::Json => format!(
                    "{{\"name\":{},\"labels\":{labels},\"timestamp\":",
                    serde_json::to_string(&s.name).unwrap_or_default()
                ),
            };
            (s.id, prefix)
        })
        .collect();
    let ids: Vec<i64> = series.iter().map(|s| s.id).collect();
    let max_rows = state.config.metrics.max_export_rows;

    let (sender, mut receiver) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_AHEAD);
    let store = state.store.clone();
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let mut chunk = String::with_capacity(CHUNK_BYTES + 1024);
        chunk.push_str(match format {
            Format::Csv => "name,labels,timestamp,value\n",
            Format::Json => "[",
        });
        let mut first = true;
        let streamed = samples::for_each_sample(&store, &ids, range, None, max_rows, |row| {
            write_row(&mut chunk, format, &prefixes, &row, &mut first);
            let full = (chunk.len() >= CHUNK_BYTES).then(|| {
                let full = std::mem::replace(&mut chunk, String::with_capacity(CHUNK_BYTES + 1024));
                (full, sender.clone(), shutdown.clone())
            });
            async move {
                match full {
                    // A closed channel: the client went away; stop reading rows.
                    Some((full, sender, shutdown)) => tokio::select! {
                        sent = sender.send(Ok(Bytes::from(full))) => sent.is_ok(),
                        _ = shutdown.cancelled() => false,
                    },
                    None => true,
                }
            }
        })
        .await;
        match streamed {
            Ok(()) => {
                if format == Format::Json {
                    chunk.push_str("]\n");
                }
                let _ = sender.send(Ok(Bytes::from(chunk))).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "export failed part-way");
                // An error item aborts the body: the client sees a truncated transfer,
                // never a body that looks complete.
                let _ = sender
                    .send(Err(std::io::Error::other("export failed")))
                    .await;
            }
        }
    });

    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        receiver.poll_recv(cx)
    }));
    let (content_type, file) = match format {
        Format::Csv => (
            "text/csv; charset=utf-8",
            "attachment; filename=\"metrics.csv\"",
        ),
        Format::Json => ("application/json", "attachment; filename=\"metrics.json\""),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(file));
    Ok(response)
}

fn write_row(
    out: &mut String,
    format: Format,
    prefixes: &HashMap<i64, String>,
    row: &SampleRow,
    first: &mut bool,
) {
    use std::fmt::Write;
    let Some(prefix) = prefixes.get(&row.series_id) else {
        return;
    };
    let timestamp = crate::store::DbTime::from_millis(row.ts_ms)
        .0
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    match format {
        Format::Csv => {
            let _ = writeln!(out, "{prefix}{timestamp},{}", row.value);
        }
        Format::Json => {
            if !*first {
                out.push(',');
            }
            *first = false;
            let _ = write!(out, "{prefix}\"{timestamp}\",\"value\":{}}}", row.value);
        }
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_valid_csv_and_json() {
        let prefixes = HashMap::from([
            (1, format!("m,{},", csv_field(r#"{"a":"x,y"}"#))),
            (
                2,
                "{\"name\":\"m\",\"labels\":{},\"timestamp\":".to_string(),
            ),
        ]);
        let mut out = String::new();
        let mut first = true;
        let row = SampleRow {
            series_id: 1,
            ts_ms: 0,
            value: 1.5,
        };
        write_row(&mut out, Format::Csv, &prefixes, &row, &mut first);
        assert_eq!(
            out,
            "m,\"{\"\"a\"\":\"\"x,y\"\"}\",1970-01-01T00:00:00.000Z,1.5\n"
        );

        let mut out = String::from("[");
        let mut first = true;
        for ts in [0, 1000] {
            let row = SampleRow {
                series_id: 2,
                ts_ms: ts,
                value: 2.0,
            };
            write_row(&mut out, Format::Json, &prefixes, &row, &mut first);
        }
        out.push(']');
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed[1]["timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!(parsed[1]["value"], 2.0);
    }
}
