//! When the client retries a transient failure: exponential backoff with full jitter, at least
//! Meta's requested wait, capped.

use std::time::Duration;

/// Retry schedule for transient errors: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included (0 is treated as 1).
    pub max_attempts: u32,
    /// Ceiling of the first retry's delay; doubles on every retry.
    pub base_delay: Duration,
    /// Cap of any delay, including Meta's `estimated_time_to_regain_access`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Upper bound of the delay before retry number `retry` (1 = the first retry).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let ceiling = self.base_delay.saturating_mul(1u32 << exp);
        ceiling.min(self.max_delay)
    }

    /// The delay before retry number `retry`: uniform in `[0, ceiling]` (full jitter), at least
    /// Meta's requested wait when given, never more than `max_delay`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.backoff_ceiling(retry).as_micros() as u64;
        let jittered = Duration::from_micros(if ceiling == 0 {
            0
        } else {
            rand::random_range(0..=ceiling)
        });
        match retry_after {
            Some(wait) => jittered.max(wait).min(self.max_delay),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ceiling(1), Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(3), Duration::from_secs(4));
        assert_eq!(p.backoff_ceiling(10), Duration::from_secs(60));
        assert_eq!(p.backoff_ceiling(1000), Duration::from_secs(60));
        for retry in 1..8 {
            assert!(p.delay(retry, None) <= p.backoff_ceiling(retry));
        }
        let waited = p.delay(1, Some(Duration::from_secs(300)));
        assert_eq!(waited, Duration::from_secs(60));
        let waited = p.delay(1, Some(Duration::from_secs(30)));
        assert!(waited >= Duration::from_secs(30) && waited <= Duration::from_secs(60));
    }
}
