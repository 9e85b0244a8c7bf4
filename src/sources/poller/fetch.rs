//! One HTTP GET of a polled target: credentials applied, the source's timeout, and a cap on
//! how much of the body is read (a target must not make the poller hold gigabytes).
//!
//! Error texts name the URL (which holds no credentials: the registry refuses them there)
//! and never a header.

use super::PollTarget;
use crate::sources::model::Auth;
use std::time::Duration;

/// An answer read in full (up to the cap).
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub body: String,
}

/// Why no answer was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Connection refused, DNS, TLS, timeout, reset.
    Unreachable(String),
    /// The body exceeded the cap.
    TooLarge(usize),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(why) => f.write_str(why),
            Self::TooLarge(limit) => write!(f, "the answer is larger than {limit} bytes"),
        }
    }
}

/// GETs `url` for `target`.
pub async fn get(
    client: &reqwest::Client,
    target: &PollTarget,
    url: &str,
    max_bytes: usize,
) -> Result<Fetched, FetchError> {
    let timeout = Duration::from_millis(target.timeout_ms);
    let mut request = client.get(url).timeout(timeout);
    match &target.auth {
        Some(Auth::Bearer { token }) => request = request.bearer_auth(token),
        Some(Auth::Basic { username, password }) => {
            request = request.basic_auth(username, Some(password))
        }
        None => {}
    }
    let unreachable = |e: reqwest::Error| FetchError::Unreachable(describe(&e, url));
    let mut response = request.send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    if response
        .content_length()
        .is_some_and(|len| len > max_bytes as u64)
    {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A short reason: reqwest's outer message says little ("error sending request"), the
/// innermost cause says what happened ("Connection refused").
fn describe(error: &reqwest::Error, url: &str) -> String {
    if error.is_timeout() {
        return format!("GET {url}: timed out");
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    format!("GET {url}: {cause}")
}
