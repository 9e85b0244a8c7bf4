//! When to try a failed delivery again, and whether to try at all.
//!
//! A notify worker sends, turns the result into an [`Outcome`] with [`classify_http`] or
//! [`classify_smtp`], and on `Retry` asks [`RetryPolicy::next_attempt`] how long to wait;
//! `None` there (or a `Permanent` outcome) dead-letters the notification. Everything here is
//! pure: time and randomness come in as arguments so the schedule can be tested exactly.

use chrono::{DateTime, NaiveDateTime, Utc};
use std::time::Duration;

/// The retry schedule of one channel type (or of the whole server).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// `schedule[n]` is the wait before attempt `n + 1` (so `schedule[0]` is the wait before
    /// the first attempt, normally zero). Past its end, the last entry repeats: with the
    /// default that is "then hourly".
    pub schedule: Vec<Duration>,
    /// Attempts in total, including the first; after the last one the notification is
    /// dead-lettered.
    pub max_attempts: u32,
    /// Each wait is spread uniformly over `±jitter` of itself (0.1 = ±10 %) so that the
    /// deliveries that failed together during an outage do not all come back at once.
    pub jitter: f64,
    /// A receiver's `Retry-After` is honoured up to this long, so a receiver cannot park a
    /// notification for a day with one header.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// Now, 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, then hourly for 30 attempts in all: the
    /// last attempt is about a day (24 h 42 min) after the first. An alert older than that
    /// is history rather than news, and the delivery record shows the dead letter.
    fn default() -> Self {
        RetryPolicy {
            schedule: [0, 5, 30, 120, 600, 1800, 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            max_attempts: 30,
            jitter: 0.1,
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// Checks a policy read from configuration.
    pub fn validate(&self) -> Result<(), String> {
        if self.schedule.is_empty() {
            return Err("retry schedule must have at least one entry".into());
        }
        if self.max_attempts == 0 {
            return Err("retry max_attempts must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "retry jitter must be between 0 and 1, not {}",
                self.jitter
            ));
        }
        Ok(())
    }

    /// Parses a schedule written as `"0s, 5s, 30s, 2m, 10m, 30m, 1h"` (humantime durations).
    pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
        let schedule = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                humantime::parse_duration(part)
                    .map_err(|err| format!("retry schedule entry '{part}': {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if schedule.is_empty() {
            return Err("retry schedule must have at least one entry".into());
        }
        Ok(schedule)
    }

    /// How long to wait before the next attempt, given how many attempts have been made
    /// (`attempt`, at least 1 after a failure) and the receiver's `Retry-After` if any;
    /// `None` means give up (dead letter). `rng_fraction` is a uniform random number in
    /// `[0, 1)` supplied by the caller.
    ///
    /// `Retry-After` is a floor, not a replacement: the receiver says "not before", and our
    /// own backoff still applies if it is longer. It is capped at `max_retry_after`.
    pub fn next_attempt(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng_fraction: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let index = usize::try_from(attempt).unwrap_or(usize::MAX);
        let base = self
            .schedule
            .get(index)
            .or(self.schedule.last())
            .copied()
            .unwrap_or_default();
        let fraction = if rng_fraction.is_finite() {
            rng_fraction.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Spread over [base·(1−jitter), base·(1+jitter)).
        let factor = 1.0 - jitter + 2.0 * jitter * fraction;
        let jittered = Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base);
        let floor = retry_after.map_or(Duration::ZERO, |d| d.min(self.max_retry_after));
        Some(jittered.max(floor))
    }
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth trying again later (timeouts, 5xx, 429, SMTP 4xx, network errors).
    Retry {
        reason: String,
        /// HTTP status or SMTP reply code, when the receiver answered at all.
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// Trying again would get the same answer: dead-letter now.
    Permanent {
        reason: String,
        status: Option<u16>,
    },
}

impl Outcome {
    /// A failure before any answer (DNS, connect, TLS, timeout): always worth a retry.
    pub fn transport_error(reason: impl Into<String>) -> Outcome {
        Outcome::Retry {
            reason: reason.into(),
            status: None,
            retry_after: None,
        }
    }

    /// Appends what the receiver said (a response body, an SMTP message) to the reason,
    /// shortened to 500 characters so a large error page does not bloat the delivery record.
    pub fn with_detail(self, detail: &str) -> Outcome {
        let detail: String = detail.trim().chars().take(500).collect();
        if detail.is_empty() {
            return self;
        }
        match self {
            Outcome::Delivered => Outcome::Delivered,
            Outcome::Retry {
                reason,
                status,
                retry_after,
            } => Outcome::Retry {
                reason: format!("{reason}: {detail}"),
                status,
                retry_after,
            },
            Outcome::Permanent { reason, status } => Outcome::Permanent {
                reason: format!("{reason}: {detail}"),
                status,
            },
        }
    }
}

/// Classifies an HTTP response (webhook, Slack, Twilio).
///
/// * 2xx: delivered.
/// * 408, 429 and 5xx: retry (honouring `retry_after`).
/// * other 4xx: permanent; the request itself is wrong (bad URL, token, payload) and will
///   be wrong next time too. 410 Gone is the receiver asking never to be called again.
/// * 3xx: permanent. We do not follow redirects: a redirect would re-send the signed body
///   to a URL the channel's owner never configured (and maybe to an internal address), so
///   the fix is to update the channel's URL, as Standard Webhooks also recommends.
/// * anything else (1xx, nonsense): retry, since it says nothing about the request.
pub fn classify_http(status: u16, retry_after: Option<Duration>) -> Outcome {
    let reason = format!("HTTP {status}{}", http_reason_phrase(status));
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry {
            reason,
            status: Some(status),
            retry_after,
        },
        410 => Outcome::Permanent {
            reason: format!("{reason}: the receiver no longer accepts deliveries"),
            status: Some(status),
        },
        300..=399 => Outcome::Permanent {
            reason: format!("{reason}: redirects are not followed; update the channel's URL"),
            status: Some(status),
        },
        400..=499 => Outcome::Permanent {
            reason,
            status: Some(status),
        },
        _ => Outcome::Retry {
            reason,
            status: Some(status),
            retry_after,
        },
    }
}

/// Classifies an SMTP reply code (RFC 5321): 2xx delivered, 4xx transient (greylisting, a
/// full queue), 5xx permanent (no such mailbox, rejected by policy). Other codes are not
/// final replies and are treated as transient.
pub fn classify_smtp(code: u16) -> Outcome {
    match code {
        200..=299 => Outcome::Delivered,
        500..=599 => Outcome::Permanent {
            reason: format!("SMTP {code} (permanent)"),
            status: Some(code),
        },
        _ => Outcome::Retry {
            reason: format!("SMTP {code} (transient)"),
            status: Some(code),
            retry_after: None,
        },
    }
}

/// Parses a `Retry-After` header: delta-seconds (`120`) or an HTTP-date in any of the three
/// formats RFC 9110 requires recipients to accept. A date in the past means "now".
pub fn parse_retry_after(header_value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = header_value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long numbers saturate; the policy caps them anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    // IMF-fixdate, the one senders must use: "Sun, 06 Nov 1994 08:49:37 GMT".
    if let Ok(at) = DateTime::parse_from_rfc2822(value) {
        return Some(at.with_timezone(&Utc));
    }
    // The obsolete RFC 850 and asctime forms.
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

fn http_reason_phrase(status: u16) -> &'static str {
    match status {
        301 => " Moved Permanently",
        302 => " Found",
        307 => " Temporary Redirect",
        308 => " Permanent Redirect",
        400 => " Bad Request",
        401 => " Unauthorized",
        403 => " Forbidden",
        404 => " Not Found",
        408 => " Request Timeout",
        410 => " Gone",
        413 => " Content Too Large",
        422 => " Unprocessable Content",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn default_schedule_without_jitter_then_hourly_then_dead_letter() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        policy.validate().unwrap();
        // (attempts made so far, expected wait before the next one)
        let table: &[(u32, Option<u64>)] = &[
            (0, Some(0)),
            (1, Some(5)),
            (2, Some(30)),
            (3, Some(120)),
            (4, Some(600)),
            (5, Some(1800)),
            (6, Some(3600)),
            (7, Some(3600)),
            (29, Some(3600)),
            (30, None),
            (31, None),
            (u32::MAX, None),
        ];
        for &(attempt, expected) in table {
            assert_eq!(
                policy.next_attempt(attempt, None, 0.5),
                expected.map(secs),
                "attempt {attempt}"
            );
        }
        let total: u64 = (1..30)
            .map(|a| policy.next_attempt(a, None, 0.5).unwrap().as_secs())
            .sum();
        assert_eq!(total, 5 + 30 + 120 + 600 + 1800 + 3600 * 24);
    }

    #[test]
    fn jitter_spreads_symmetrically_and_tolerates_bad_randomness() {
        let policy = RetryPolicy::default();
        let table: &[(f64, f64)] = &[
            (0.0, 27.0),
            (0.5, 30.0),
            (0.999_999, 33.0),
            (1.0, 33.0),
            (-5.0, 27.0),
            (f64::NAN, 30.0),
            (f64::INFINITY, 30.0),
        ];
        for &(fraction, expected) in table {
            let wait = policy
                .next_attempt(2, None, fraction)
                .unwrap()
                .as_secs_f64();
            assert!((wait - expected).abs() < 0.001, "{fraction}: {wait}");
        }
        assert_eq!(policy.next_attempt(0, None, 0.9), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_is_a_capped_floor() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let table: &[(u32, Option<u64>, Option<u64>)] = &[
            (1, Some(60), Some(60)), // longer than 5 s: wait as asked
            (1, Some(2), Some(5)),   // shorter than our backoff: backoff wins
            (3, Some(0), Some(120)),
            (1, Some(86_400), Some(3600)), // capped at max_retry_after
            (30, Some(10), None),          // no attempts left, whatever the receiver says
        ];
        for &(attempt, retry_after, expected) in table {
            assert_eq!(
                policy.next_attempt(attempt, retry_after.map(secs), 0.5),
                expected.map(secs),
                "attempt {attempt}, retry-after {retry_after:?}"
            );
        }
    }

    #[test]
    fn policies_from_configuration_are_checked() {
        assert_eq!(
            RetryPolicy::parse_schedule("0s, 5s,30s, 2m ,10m,30m,1h").unwrap(),
            RetryPolicy::default().schedule
        );
        assert!(
            RetryPolicy::parse_schedule("")
                .unwrap_err()
                .contains("at least one")
        );
        assert!(
            RetryPolicy::parse_schedule("5s, soon")
                .unwrap_err()
                .contains("'soon'")
        );
        let bad = [
            RetryPolicy {
                schedule: vec![],
                ..RetryPolicy::default()
            },
            RetryPolicy {
                max_attempts: 0,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                jitter: 1.5,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                jitter: f64::NAN,
                ..RetryPolicy::default()
            },
        ];
        for policy in bad {
            assert!(policy.validate().is_err(), "{policy:?}");
        }
        // An empty schedule that slipped past validation still does not panic.
        let empty = RetryPolicy {
            schedule: vec![],
            ..RetryPolicy::default()
        };
        assert_eq!(empty.next_attempt(1, None, 0.5), Some(Duration::ZERO));
    }

    #[test]
    fn http_statuses_are_classified() {
        let table: &[(u16, &str)] = &[
            (200, "delivered"),
            (201, "delivered"),
            (204, "delivered"),
            (299, "delivered"),
            (100, "retry"),
            (301, "permanent"),
            (302, "permanent"),
            (307, "permanent"),
            (400, "permanent"),
            (401, "permanent"),
            (403, "permanent"),
            (404, "permanent"),
            (408, "retry"),
            (410, "permanent"),
            (413, "permanent"),
            (422, "permanent"),
            (429, "retry"),
            (500, "retry"),
            (502, "retry"),
            (503, "retry"),
            (504, "retry"),
            (599, "retry"),
            (999, "retry"),
        ];
        for &(status, expected) in table {
            let got = match classify_http(status, None) {
                Outcome::Delivered => "delivered",
                Outcome::Retry { status: s, .. } => {
                    assert_eq!(s, Some(status));
                    "retry"
                }
                Outcome::Permanent { status: s, .. } => {
                    assert_eq!(s, Some(status));
                    "permanent"
                }
            };
            assert_eq!(got, expected, "HTTP {status}");
        }
        assert_eq!(
            classify_http(429, Some(secs(7))),
            Outcome::Retry {
                reason: "HTTP 429 Too Many Requests".into(),
                status: Some(429),
                retry_after: Some(secs(7)),
            }
        );
        let Outcome::Permanent { reason, .. } = classify_http(308, None) else {
            panic!("308 must be permanent");
        };
        assert!(reason.contains("update the channel's URL"), "{reason}");
    }

    #[test]
    fn smtp_codes_are_classified() {
        let table: &[(u16, &str)] = &[
            (250, "delivered"),
            (421, "retry"),
            (450, "retry"),
            (451, "retry"),
            (452, "retry"),
            (354, "retry"),
            (550, "permanent"),
            (552, "permanent"),
            (554, "permanent"),
        ];
        for &(code, expected) in table {
            let got = match classify_smtp(code) {
                Outcome::Delivered => "delivered",
                Outcome::Retry { .. } => "retry",
                Outcome::Permanent { .. } => "permanent",
            };
            assert_eq!(got, expected, "SMTP {code}");
        }
    }

    #[test]
    fn details_are_appended_and_bounded() {
        let outcome = classify_http(503, None).with_detail(&"x".repeat(2000));
        let Outcome::Retry { reason, .. } = outcome else {
            panic!("503 must retry")
        };
        assert!(reason.starts_with("HTTP 503 Service Unavailable: xxx"));
        assert_eq!(reason.len(), "HTTP 503 Service Unavailable: ".len() + 500);
        assert_eq!(classify_smtp(550).with_detail("  "), classify_smtp(550));
        assert_eq!(Outcome::Delivered.with_detail("ok"), Outcome::Delivered);
        assert_eq!(
            Outcome::transport_error("connect timeout"),
            Outcome::Retry {
                reason: "connect timeout".into(),
                status: None,
                retry_after: None
            }
        );
    }

    #[test]
    fn retry_after_headers_are_parsed() {
        let now = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 0).unwrap();
        let table: &[(&str, Option<u64>)] = &[
            ("120", Some(120)),
            (" 0 ", Some(0)),
            ("99999999999999999999999", Some(u64::MAX)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(37)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(37)),
            ("Sun Nov  6 08:49:37 1994", Some(37)),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(0)), // in the past: now
            ("-5", None),
            ("1.5", None),
            ("", None),
            ("soon", None),
            ("Sun, 06 Nov 1994 25:49:37 GMT", None),
        ];
        for &(header, expected) in table {
            assert_eq!(
                parse_retry_after(header, now),
                expected.map(secs),
                "{header:?}"
            );
        }
    }
}
