//! The per-connection request budget: a token bucket of `rate_burst` tokens
//! refilled at `rate_per_second`, plus the rule for "sustained abuse".

use std::time::{Duration, Instant};

/// Refusals within one [`ABUSE_WINDOW`] above which a connection is closed
/// with 4029, as a multiple of the burst: a client that keeps sending after
/// being told to wait for a whole window is not going to listen.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(10);

pub struct RateLimiter {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
    window_start: Instant,
    refused_in_window: u32,
    abuse_threshold: u32,
}

/// The outcome of asking for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; retry after this many milliseconds.
    Refused { retry_after_ms: u64 },
    /// Refused so often that the connection should be closed.
    Abusive { retry_after_ms: u64 },
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            tokens: burst,
            burst,
            per_second: f64::from(per_second.max(1)),
            last: now,
            window_start: now,
            refused_in_window: 0,
            abuse_threshold: (burst as u32).max(1),
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allowed;
        }
        if now.saturating_duration_since(self.window_start) > ABUSE_WINDOW {
            self.window_start = now;
            self.refused_in_window = 0;
        }
        self.refused_in_window += 1;
        let missing = 1.0 - self.tokens;
        let retry_after_ms = ((missing / self.per_second) * 1000.0).ceil().max(1.0) as u64;
        if self.refused_in_window > self.abuse_threshold {
            return Verdict::Abusive { retry_after_ms };
        }
        Verdict::Refused { retry_after_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, 3, t0);
        for _ in 0..3 {
            assert_eq!(r.check(t0), Verdict::Allowed);
        }
        assert_eq!(r.check(t0), Verdict::Refused { retry_after_ms: 100 });
        assert_eq!(r.check(t0 + Duration::from_millis(100)), Verdict::Allowed);
    }

    #[test]
    fn sustained_refusals_are_abuse() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1, 2, t0);
        r.check(t0);
        r.check(t0);
        assert!(matches!(r.check(t0), Verdict::Refused { .. }));
        assert!(matches!(r.check(t0), Verdict::Refused { .. }));
        assert_eq!(r.check(t0), Verdict::Abusive { retry_after_ms: 1000 });
    }
}
