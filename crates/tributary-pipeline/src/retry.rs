//! Retrying a sink write that failed for a reason that may pass (a broker
//! restarting, a full disk being cleaned): exponential backoff with full
//! jitter, per sink, so many sinks do not hammer a recovering server in step.
//! Until the write succeeds nothing after it is confirmed, so the source
//! pauses (back-pressure) instead of losing anything.

use std::time::{Duration, Instant};

/// `retry_initial`, `retry_max` and `retry_max_elapsed` of a sink.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Give up after this long; `None`: retry until shutdown.
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            max_elapsed: None,
        }
    }
}

/// The waits of one failing write.
pub(crate) struct Backoff {
    policy: RetryPolicy,
    next: Duration,
    started: Instant,
}

impl Backoff {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            next: policy.initial,
            started: Instant::now(),
        }
    }

    /// How long to wait before the next attempt, or `None` to give up.
    /// Full jitter: a uniform wait between half the interval and all of it.
    pub(crate) fn delay(&mut self) -> Option<Duration> {
        if self
            .policy
            .max_elapsed
            .is_some_and(|max| self.started.elapsed() >= max)
        {
            return None;
        }
        let interval = self.next;
        self.next = (self.next * 2).min(self.policy.max);
        let half = interval / 2;
        Some(half + half.mul_f64(fastrand::f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_gives_up_when_told() {
        let mut b = Backoff::new(RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            max_elapsed: None,
        });
        let waits: Vec<Duration> = (0..5).map(|_| b.delay().unwrap()).collect();
        for (wait, interval) in waits.iter().zip([100, 200, 400, 400, 400]) {
            let interval = Duration::from_millis(interval);
            assert!(
                *wait >= interval / 2 && *wait <= interval,
                "{wait:?} for {interval:?}"
            );
        }
        let mut b = Backoff::new(RetryPolicy {
            max_elapsed: Some(Duration::ZERO),
            ..RetryPolicy::default()
        });
        assert_eq!(b.delay(), None);
    }
}
