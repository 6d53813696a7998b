//! Whether the database takes writes: the one piece of state behind
//! `/ready` and behind the log lines about conditions of the machine (disk
//! full, database unreachable). A condition starts when an operation fails
//! with [`StoreError::Unavailable`] and ends when a write commits again (a
//! request's, or the readiness probe's). Each start and each end is logged
//! once, however many requests fail in between.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use huddle_actors::store::{StoreError, StoreResult};

/// Shared by every thread that uses the store's connections.
#[derive(Default)]
pub struct Health {
    /// Mirrors `condition.is_some()`, so that the hot path (a write that
    /// succeeded while all is well) reads one atomic instead of locking.
    troubled: AtomicBool,
    condition: Mutex<Option<Condition>>,
    /// When the last readiness probe ran (see [`Health::probe_due`]).
    probed: Mutex<Option<Instant>>,
}

struct Condition {
    reason: &'static str,
    since: Instant,
}

impl Health {
    /// The condition that lasts, if any (its `details.reason`).
    pub fn condition(&self) -> Option<&'static str> {
        if !self.troubled.load(Ordering::Acquire) {
            return None;
        }
        self.lock().as_ref().map(|c| c.reason)
    }

    /// Notes the outcome of an operation: an `Unavailable` error starts (or
    /// changes) the condition; a write that succeeded ends it.
    pub fn observe<T>(&self, outcome: StoreResult<T>, wrote: bool) -> StoreResult<T> {
        match &outcome {
            Err(StoreError::Unavailable { reason, cause }) => self.failed(reason, cause),
            Ok(_) if wrote && self.troubled.load(Ordering::Acquire) => self.recovered(),
            _ => {}
        }
        outcome
    }

    /// Whether a readiness probe should run now: none ran in the last
    /// `interval`. Claims the slot when it answers yes.
    pub fn probe_due(&self, interval: Duration) -> bool {
        let mut probed = self.probed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        match *probed {
            Some(at) if now.duration_since(at) < interval => false,
            _ => {
                *probed = Some(now);
                true
            }
        }
    }

    fn failed(&self, reason: &'static str, cause: &str) {
        // libpq's messages span lines; a log line should not.
        let cause = cause.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut condition = self.lock();
        match condition.as_ref() {
            Some(c) if c.reason == reason => {}
            Some(c) => {
                log::warn!("database condition changed from {} to {reason}: {cause}", c.reason);
                *condition = Some(Condition { reason, since: c.since });
            }
            None => {
                log::warn!(
                    "database condition started: {reason} ({cause}); answering SERVER_BUSY and /ready 503 until a write succeeds"
                );
                *condition = Some(Condition { reason, since: Instant::now() });
                self.troubled.store(true, Ordering::Release);
            }
        }
    }

    fn recovered(&self) {
        let mut condition = self.lock();
        if let Some(c) = condition.take() {
            self.troubled.store(false, Ordering::Release);
            let lasted = Duration::from_millis(c.since.elapsed().as_millis() as u64);
            log::info!("database condition ended: {} lasted {}; writes succeed again", c.reason, humantime::format_duration(lasted));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Condition>> {
        // The state stays meaningful even if a holder panicked.
        self.condition.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(reason: &'static str) -> StoreResult<()> {
        Err(StoreError::Unavailable { reason, cause: "test".into() })
    }

    #[test]
    fn a_condition_lasts_until_a_write_succeeds() {
        let h = Health::default();
        assert_eq!(h.condition(), None);
        let _ = h.observe(unavailable("disk_full"), true);
        let _ = h.observe(unavailable("disk_full"), true);
        assert_eq!(h.condition(), Some("disk_full"));
        // Reads that succeed, and refusals, say nothing about writes.
        let _ = h.observe(Ok(()), false);
        let _ = h.observe::<()>(Err(StoreError::NotFound("x".into())), true);
        assert_eq!(h.condition(), Some("disk_full"));
        let _ = h.observe(unavailable("database_unreachable"), false);
        assert_eq!(h.condition(), Some("database_unreachable"));
        let _ = h.observe(Ok(()), true);
        assert_eq!(h.condition(), None);
    }
}
