//! Presence changes of a large room, batched into `presence:diff`s. Pure
//! state; the room's [`crate::members::Members`] decides when a change is
//! batched, rings the timer and sends the frames.
//!
//! The rules (docs/protocol.md, "Large rooms"):
//! - Every presence change (a user's first connection joining, its last
//!   leaving) moves the room's presence clock on by one. A member's view of
//!   the room (its join ack) is taken at a clock value and reflects every
//!   change before it.
//! - A change is *instant* (`user:joined` / `user:left` at once) when no
//!   batch is open and the room has at most `presence_max_instant` users
//!   after it. Otherwise it goes into the open batch, or opens one: the
//!   join that takes a room above the threshold is the first of a batch.
//!   While a batch is open every change waits in it, whichever side of the
//!   threshold the room is on, so changes are never reordered; once it is
//!   sent, a room at or below the threshold is back to instant events.
//! - A batch ([`Window`]) is sent `presence_interval_ms` after it opened:
//!   members that were in the room before it opened get one shared diff,
//!   the net change of each user (who joined and left within the batch is
//!   in neither list). A member that joined while it was open got a view of
//!   the room then; its diff is the net change *after* that point
//!   ([`Window::since`]): never itself, never users its ack already showed,
//!   unless they changed again.
//! - A diff that would be long is *truncated*: it names nobody and says
//!   so, and `member_count` stays exact. Long means naming more than
//!   `cap` users (`presence_max_listed`), or, for a newcomer's diff, more
//!   than [`SCAN_FACTOR`] × `cap` changes after its view. Without it a room
//!   filled by a crowd costs O(members²): each of n newcomers would be told
//!   of the joins after its own, up to n of them, and in a room of 10,000
//!   that was gigabytes of frames (BENCHMARKS.md, "Large rooms").
//! - `presence:list` answers the room as it is now. A page taken in the
//!   middle of a batch may show a user whose change the batch later
//!   cancels (joined before the page, left after it): such a user is
//!   reported anyway, with its final state ([`DiffLog::looked_at`]), so a
//!   client that applies diffs as set operations never keeps a ghost.
//!
//! Memory: a batch holds each change once (the user id, shared) and one
//! entry per user that changed, until it is sent; at most one interval's
//! worth of joins and leaves, which the per-connection request rate bounds.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde::Serialize;

use crate::ids::UserId;

/// Where a change went.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Announce it now, to everyone.
    Instant,
    /// It waits in a batch; `opened`: the batch is new (ring its timer).
    Batched { opened: bool },
}

/// The room's presence clock and its open batch.
#[derive(Default)]
pub struct DiffLog {
    clock: u64,
    window: Option<Window>,
}

/// The changes of one batch.
pub struct Window {
    opened_at: u64,
    /// `changes[i]` happened at clock `opened_at + i`.
    changes: Vec<Change>,
    users: BTreeMap<UserId, Pending>,
}

struct Change {
    user_id: UserId,
    joined: bool,
}

/// A user that changed within the batch.
struct Pending {
    /// Present when the batch opened.
    was_present: bool,
    present: bool,
    /// As of its latest join.
    name: Option<Arc<str>>,
    /// A page of `presence:list` showed the user since its latest change.
    looked: bool,
    /// A page showed a state of the user that a later change replaced:
    /// report its final state even if the batch cancels out.
    sticky: bool,
}

impl DiffLog {
    /// The presence clock: changes so far.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    pub fn is_open(&self) -> bool {
        self.window.is_some()
    }

    /// Records a change of `user` (`joined`, with its name, or left).
    /// `above`: the room has more than `presence_max_instant` users after
    /// the change.
    pub fn record(&mut self, user: &UserId, name: Option<&Arc<str>>, joined: bool, above: bool) -> Recorded {
        let at = self.clock;
        self.clock += 1;
        let opened = self.window.is_none();
        if opened && !above {
            return Recorded::Instant;
        }
        let window = self
            .window
            .get_or_insert_with(|| Window { opened_at: at, changes: Vec::new(), users: BTreeMap::new() });
        window.changes.push(Change { user_id: user.clone(), joined });
        let pending = window.users.entry(user.clone()).or_insert(Pending {
            was_present: !joined,
            present: !joined,
            name: None,
            looked: false,
            sticky: false,
        });
        pending.present = joined;
        if joined {
            pending.name = name.cloned();
        }
        if pending.looked {
            pending.sticky = true;
            pending.looked = false;
        }
        Recorded::Batched { opened }
    }

    /// A page of `presence:list` showed the users after `after` up to and
    /// including `through` (to the end when `None`): users of the open
    /// batch in that range were seen as they are now.
    pub fn looked_at(&mut self, after: Option<&UserId>, through: Option<&UserId>) {
        let Some(window) = &mut self.window else { return };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let to = through.map_or(Bound::Unbounded, Bound::Included);
        if let (Bound::Excluded(a), Bound::Included(t)) = (from, to) {
            if a >= t {
                return;
            }
        }
        for pending in window.users.range_mut::<UserId, _>((from, to)).map(|(_, p)| p) {
            pending.looked = true;
        }
    }

    /// Closes the open batch, to be sent.
    pub fn take(&mut self) -> Option<Window> {
        self.window.take()
    }
}

/// A newcomer's diff is truncated without being computed when more than
/// this many times `cap` changes followed its view: computing each
/// newcomer's diff must cost O(cap), not O(batch).
pub const SCAN_FACTOR: usize = 4;

/// A `presence:diff`'s lists.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff<'a> {
    pub joined: Vec<JoinedUser<'a>>,
    pub left: Vec<&'a UserId>,
    /// Too long to send: names nobody (`joined` and `left` are empty).
    pub truncated: bool,
}

impl Diff<'_> {
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty() && !self.truncated
    }

    fn truncated() -> Self {
        Diff { truncated: true, ..Diff::default() }
    }

    /// Truncated if it names more than `cap` users.
    fn capped(self, cap: usize) -> Self {
        if self.joined.len() + self.left.len() > cap {
            Diff::truncated()
        } else {
            self
        }
    }
}

/// A user in a diff's `joined`.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct JoinedUser<'a> {
    pub user_id: &'a UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

impl Window {
    /// The clock value of its first change. Members whose view was taken
    /// at or before it get [`Window::shared`]; later ones [`Window::since`]
    /// their view.
    pub fn opened_at(&self) -> u64 {
        self.opened_at
    }

    /// The diff of members that were in the room before the batch opened:
    /// each user's net change, in user id order; truncated past `cap` users.
    pub fn shared(&self, cap: usize) -> Diff<'_> {
        let mut diff = Diff::default();
        for (user_id, p) in &self.users {
            if p.present != p.was_present || p.sticky {
                diff.add(user_id, p);
                if diff.joined.len() + diff.left.len() > cap {
                    return Diff::truncated();
                }
            }
        }
        diff
    }

    /// The diff of a member whose view was taken at clock `at` (after the
    /// batch opened): the net change of each user after that point, in
    /// user id order; truncated past `cap` users, or without a look when
    /// more than [`SCAN_FACTOR`] × `cap` changes followed the view. Costs
    /// O(cap).
    pub fn since(&self, at: u64, cap: usize) -> Diff<'_> {
        let skip = at.saturating_sub(self.opened_at).min(self.changes.len() as u64) as usize;
        if self.changes.len() - skip > SCAN_FACTOR.saturating_mul(cap) {
            return Diff::truncated();
        }
        // Each user's first change after `at` says what the member saw:
        // a join means it saw the user absent.
        let mut first: BTreeMap<&UserId, bool> = BTreeMap::new();
        for change in &self.changes[skip..] {
            first.entry(&change.user_id).or_insert(change.joined);
        }
        let mut diff = Diff::default();
        for (user_id, first_joined) in first {
            let Some(p) = self.users.get(user_id) else { continue };
            let saw_present = !first_joined;
            if p.present != saw_present || p.sticky {
                diff.add(user_id, p);
            }
        }
        diff.capped(cap)
    }
}

impl<'a> Diff<'a> {
    fn add(&mut self, user_id: &'a UserId, p: &'a Pending) {
        if p.present {
            self.joined.push(JoinedUser { user_id, name: p.name.as_deref() });
        } else {
            self.left.push(user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn ids(diff: &Diff<'_>) -> (Vec<String>, Vec<String>) {
        (
            diff.joined.iter().map(|j| j.user_id.to_string()).collect(),
            diff.left.iter().map(|u| u.to_string()).collect(),
        )
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn instant_below_the_threshold_batched_above_and_while_a_batch_is_open() {
        let mut log = DiffLog::default();
        assert_eq!(log.record(&user("a"), None, true, false), Recorded::Instant);
        assert_eq!(log.clock(), 1);
        // The change that takes the room above the threshold opens a batch.
        assert_eq!(log.record(&user("b"), None, true, true), Recorded::Batched { opened: true });
        assert_eq!(log.record(&user("c"), None, true, true), Recorded::Batched { opened: false });
        // Back at the threshold, but the batch is open: the leave waits.
        assert_eq!(log.record(&user("c"), None, false, false), Recorded::Batched { opened: false });
        let window = log.take().unwrap();
        assert_eq!(window.opened_at(), 1);
        assert_eq!(ids(&window.shared(usize::MAX)), (strs(&["b"]), vec![]));
        // Sent: at the threshold changes are instant again.
        assert_eq!(log.record(&user("d"), None, true, false), Recorded::Instant);
        assert_eq!(log.clock(), 5);
    }

    #[test]
    fn a_long_diff_is_truncated_and_costs_no_more_than_the_cap_to_decide() {
        let mut log = DiffLog::default();
        log.record(&user("opener"), None, true, true);
        let early_view = log.clock();
        for i in 0..50 {
            log.record(&user(&format!("u{i:02}")), None, true, true);
        }
        let late_view = log.clock() - 2;
        let window = log.take().unwrap();
        // 51 users for the members from before: over a cap of 10.
        assert_eq!(window.shared(10), Diff { truncated: true, ..Diff::default() });
        assert_eq!(window.shared(51).joined.len(), 51);
        // A newcomer with 50 changes after its view: more than 4 × 10, so
        // truncated without a look; with a cap of 20 (80 changes allowed)
        // it is computed, and names 50 users: truncated too.
        assert!(window.since(early_view, 10).truncated);
        assert!(window.since(early_view, 20).truncated);
        assert_eq!(window.since(early_view, 50).joined.len(), 50);
        // A late newcomer hears of the last two joins in full.
        assert_eq!(ids(&window.since(late_view, 10)), (strs(&["u48", "u49"]), vec![]));
        let empty = Diff::default();
        assert!(empty.is_empty() && !Diff { truncated: true, ..Diff::default() }.is_empty());
    }

    #[test]
    fn a_join_and_leave_within_one_batch_is_in_neither_list() {
        let mut log = DiffLog::default();
        log.record(&user("old"), None, false, true);
        log.record(&user("z"), Some(&"Zed".into()), true, true);
        log.record(&user("z"), None, false, true);
        log.record(&user("w"), Some(&"Wim".into()), true, true);
        // Left then came back: no change either.
        log.record(&user("old"), None, true, true);
        log.record(&user("gone"), None, false, true);
        let window = log.take().unwrap();
        let shared = window.shared(usize::MAX);
        assert_eq!(ids(&shared), (strs(&["w"]), strs(&["gone"])));
        assert_eq!(shared.joined[0].name, Some("Wim"));
    }

    #[test]
    fn a_member_that_joined_mid_batch_hears_only_what_changed_after_its_view() {
        let mut log = DiffLog::default();
        log.record(&user("a"), None, true, true); // clock 0: opens the batch
        log.record(&user("gone"), None, false, true); // 1
        log.record(&user("me"), None, true, true); // 2: the newcomer's own join
        let my_view = log.clock(); // 3: its ack shows a, me, not gone
        log.record(&user("b"), None, true, true); // 3: after its view
        log.record(&user("a"), None, false, true); // 4: it saw a, a left
        log.record(&user("c"), None, true, true); // 5
        log.record(&user("c"), None, false, true); // 6: came and went after its view
        let window = log.take().unwrap();
        let mine = window.since(my_view, usize::MAX);
        assert_eq!(ids(&mine), (strs(&["b"]), strs(&["a"])));
        // The others hear the whole batch; a joined and left within it.
        assert_eq!(ids(&window.shared(usize::MAX)), (strs(&["b", "me"]), strs(&["gone"])));
        // A view taken after the last change needs nothing.
        assert!(window.since(log.clock(), usize::MAX).is_empty());
        assert!(window.since(log.clock() + 5, usize::MAX).is_empty());
    }

    #[test]
    fn a_user_that_came_back_after_a_newcomers_view_is_reported_to_it() {
        let mut log = DiffLog::default();
        log.record(&user("x"), None, false, true); // 0: x (present before) leaves
        log.record(&user("me"), None, true, true); // 1
        let my_view = log.clock(); // sees x absent
        log.record(&user("x"), Some(&"X".into()), true, true); // x is back
        let window = log.take().unwrap();
        assert!(window.shared(usize::MAX).joined.iter().all(|j| j.user_id != &user("x")), "net nothing for the others");
        let mine = window.since(my_view, usize::MAX);
        assert_eq!(ids(&mine), (strs(&["x"]), vec![]));
        assert_eq!(mine.joined[0].name, Some("X"));
    }

    #[test]
    fn a_listed_user_whose_change_cancels_out_is_reported_with_its_final_state() {
        let mut log = DiffLog::default();
        log.record(&user("opener"), None, true, true);
        log.record(&user("y"), None, true, true);
        log.record(&user("q"), None, true, true);
        // A page shows users up to "x": opener and q, not y.
        log.looked_at(None, Some(&user("x")));
        log.record(&user("y"), None, false, true);
        log.record(&user("q"), None, false, true);
        let window = log.take().unwrap();
        // q was seen present and then left: reported; y was never seen.
        assert_eq!(ids(&window.shared(usize::MAX)), (strs(&["opener"]), strs(&["q"])));
    }

    #[test]
    fn a_look_after_the_last_change_makes_nothing_sticky() {
        let mut log = DiffLog::default();
        log.record(&user("a"), None, true, true);
        log.record(&user("a"), None, false, true);
        log.looked_at(Some(&user("0")), None);
        log.looked_at(Some(&user("b")), Some(&user("a")));
        let window = log.take().unwrap();
        assert!(window.shared(usize::MAX).is_empty());
    }
}
