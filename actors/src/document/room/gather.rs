//! When the next group may go: at once, or after the connections whose
//! edits were just acked have sent their next ones.
//!
//! With one group in flight per room, editors who keep one edit in flight
//! each fall into two cohorts: the authors of the group in flight, and
//! those whose edits queued behind it. Each cohort then commits alone, and
//! every group costs its own round of pushes to every member (a write per
//! connection) and its own row update. Holding the next group until the
//! acked authors are back (each is a client that answers its ack with its
//! next edit at once, when it is busy) merges the cohorts: a room of four
//! busy editors commits groups of four instead of alternating groups of
//! about two.
//!
//! The hold is bounded by the duration of the commit that was just
//! answered, and never longer than `edit_gather` (the setting): under light
//! load commits take a fraction of a millisecond, and so does the longest
//! hold; a connection that stops editing costs the others at most one
//! such wait. A hold also ends when the group would be full.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::ids::SessionId;

pub(super) struct Gather {
    /// Connections acked by the last commit that have not sent an edit
    /// since.
    awaited: HashSet<SessionId>,
    until: Instant,
}

impl Gather {
    /// After a commit of `took`, which acked `acked`, with edits of
    /// `queued` waiting already (a connection that sent several without
    /// waiting for acks is back before its ack): `None` when nothing is
    /// worth waiting for.
    pub(super) fn after(
        acked: impl IntoIterator<Item = SessionId>,
        queued: impl IntoIterator<Item = SessionId>,
        took: Duration,
        limit: Duration,
    ) -> Option<(Gather, Duration)> {
        let wait = took.min(limit);
        if wait.is_zero() {
            return None;
        }
        let mut awaited: HashSet<SessionId> = acked.into_iter().collect();
        if !awaited.is_empty() {
            for session in queued {
                awaited.remove(&session);
            }
        }
        if awaited.is_empty() {
            return None;
        }
        Some((Gather { awaited, until: Instant::now() + wait }, wait))
    }

    /// `session` sent an edit.
    pub(super) fn arrived(&mut self, session: SessionId) {
        self.awaited.remove(&session);
    }

    /// Whether the next group may go now.
    pub(super) fn done(&self, now: Instant) -> bool {
        self.awaited.is_empty() || now >= self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_goes_once_every_acked_connection_is_back() {
        let (a, b, c) = (SessionId::new(), SessionId::new(), SessionId::new());
        let (mut g, wait) = Gather::after([a, b], [], Duration::from_millis(3), Duration::from_millis(5)).unwrap();
        assert_eq!(wait, Duration::from_millis(3));
        let now = Instant::now();
        assert!(!g.done(now));
        g.arrived(a);
        g.arrived(c);
        assert!(!g.done(now));
        g.arrived(b);
        assert!(g.done(now));
    }

    #[test]
    fn the_hold_ends_at_the_shorter_of_the_commit_and_the_limit() {
        let (g, wait) = Gather::after([SessionId::new()], [], Duration::from_millis(40), Duration::from_millis(5)).unwrap();
        assert_eq!(wait, Duration::from_millis(5));
        assert!(!g.done(Instant::now()));
        assert!(g.done(Instant::now() + wait));
    }

    #[test]
    fn nothing_to_wait_for_means_no_hold() {
        assert!(Gather::after([], [], Duration::from_millis(3), Duration::from_millis(5)).is_none());
        assert!(Gather::after([SessionId::new()], [], Duration::from_millis(3), Duration::ZERO).is_none());
    }

    #[test]
    fn a_connection_with_an_edit_queued_already_is_not_waited_for() {
        let (a, b) = (SessionId::new(), SessionId::new());
        assert!(Gather::after([a], [a], Duration::from_millis(3), Duration::from_millis(5)).is_none());
        let (mut g, _) = Gather::after([a, b], [a], Duration::from_millis(3), Duration::from_millis(5)).unwrap();
        assert!(!g.done(Instant::now()));
        g.arrived(b);
        assert!(g.done(Instant::now()));
    }
}
