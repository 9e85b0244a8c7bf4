//! One scrape of a Prometheus text target: the allowed samples, with the target's labels,
//! go to ingest.

use super::fetch;
use super::{PollContext, PollReport, PollTarget};
use crate::ingest::SampleIn;
use crate::sources::prometheus_text::{ParseOptions, parse};
use chrono::{DateTime, Utc};

pub async fn poll(context: &PollContext, target: &PollTarget, now: DateTime<Utc>) -> PollReport {
    let failed = |error: String| PollReport {
        error: Some(error),
        state: None,
        back_off: true,
    };
    let config = &context.state.config.sources;
    let url = &target.settings.url;
    let fetched = match fetch::get(&context.client, target, url, config.max_response_bytes).await {
        Ok(fetched) => fetched,
        Err(e) => return failed(e.to_string()),
    };
    if !(200..300).contains(&fetched.status) {
        return failed(format!("GET {url}: HTTP {}", fetched.status));
    }
    let mut exposition = parse(&fetched.body, ParseOptions::PROMETHEUS);
    if let Some(filter) = &target.name_filter {
        filter.retain(&mut exposition.samples);
    }
    if exposition.samples.len() > config.max_samples_per_scrape {
        return failed(format!(
            "the target serves {} allowed samples, more than the {} kept per scrape; narrow `allow`",
            exposition.samples.len(),
            config.max_samples_per_scrape
        ));
    }
    let now_ms = now.timestamp_millis();
    let samples: Vec<SampleIn> = exposition
        .samples
        .into_iter()
        .map(|sample| {
            let mut labels = sample.labels;
            // The target's labels win over the page's own.
            labels.extend(target.settings.labels.clone());
            SampleIn {
                name: sample.name,
                labels,
                value: sample.value,
                timestamp_ms: Some(sample.timestamp_ms.unwrap_or(now_ms)),
            }
        })
        .filter(|sample| sample.value.is_finite())
        .collect();
    if samples.is_empty() && exposition.error_count > 0 {
        let first = exposition
            .errors
            .first()
            .map(|e| format!("line {}: {}", e.line, e.message))
            .unwrap_or_default();
        return failed(format!("nothing readable in the page ({first})"));
    }
    let stored = context.store_samples(target, samples, now).await;
    PollReport {
        error: stored.err(),
        state: None,
        back_off: true,
    }
}
