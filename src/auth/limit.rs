//! Per-caller rate limit of the API: each subject of each tenant may make
//! `rate_limit_per_sec` requests a second on average, `rate_limit_burst` at once, per
//! replica (GCRA, via the governor crate). Beyond that the answer is 429 with
//! `Retry-After`, so one misbehaving script cannot take a replica from everyone else.

use super::Identity;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::time::Duration;

/// Past this many tracked callers, idle ones are forgotten (memory bound).
const PRUNE_ABOVE: usize = 10_000;

pub struct CallerLimiter {
    limiter: Option<DefaultKeyedRateLimiter<(String, String)>>,
    clock: DefaultClock,
}

impl CallerLimiter {
    /// `per_sec == 0` disables the limit.
    pub fn new(per_sec: u32, burst: u32) -> CallerLimiter {
        let limiter = NonZeroU32::new(per_sec).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_sec)).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        CallerLimiter {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` when the caller must wait before its next request.
    pub fn check(&self, identity: &Identity) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        limiter
            .check_key(&(identity.tenant.clone(), identity.sub.clone()))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn identity(sub: &str) -> Identity {
        Identity {
            sub: sub.into(),
            role: Role::Viewer,
            tenant: "t".into(),
            jti: None,
            expires_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_burst_then_waiting() {
        let limiter = CallerLimiter::new(2, 3);
        let alice = identity("alice");
        for _ in 0..3 {
            assert!(limiter.check(&alice).is_ok());
        }
        let wait = limiter.check(&alice).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(
            limiter.check(&identity("bob")).is_ok(),
            "callers are limited separately"
        );
        let off = CallerLimiter::new(0, 0);
        for _ in 0..1000 {
            assert!(off.check(&alice).is_ok());
        }
    }
}
