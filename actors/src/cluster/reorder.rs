//! One order per room across nodes. The database numbers a room's events
//! (a chat's `seq`); this node learns of them out of order: its own
//! commits, events published by other nodes, rows read back to fill a gap.
//! [`Reorder`] takes them all and lets out only consecutive positions, so
//! the room's members never see a gap, a duplicate or a reorder. Pure: the
//! room decides when to repair a gap ([`Reorder::gap`]) and what an item is.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// Most positions one repair reads (chat messages, document changes):
/// bounds the memory of a read and the burst of pushes it lets out at once
/// (a quarter of the default `max_outbound_queue`, so a member that reads
/// keeps up).
pub const REPAIR_CHUNK: i64 = 256;

/// Why an item was not kept.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<T> {
    /// Its position was let out already (a duplicate, or a late copy).
    Released(T),
    /// An item with its position is waiting already.
    Waiting(T),
}

#[derive(Debug)]
pub struct Reorder<T> {
    /// The last position let out: every position up to it was released, in
    /// order.
    released: i64,
    /// Positions above `released`, waiting for the ones before them.
    waiting: BTreeMap<i64, T>,
    /// The newest position known to be committed (from the database or
    /// from an item), so that a gap with nothing after it is seen too.
    known: i64,
}

impl<T> Reorder<T> {
    /// Starts after `released` (what the database held when the room
    /// subscribed and read it).
    pub fn new(released: i64) -> Self {
        Reorder { released, waiting: BTreeMap::new(), known: released }
    }

    pub fn released(&self) -> i64 {
        self.released
    }

    pub fn known(&self) -> i64 {
        self.known
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Takes the item at `pos`, or gives it back.
    pub fn offer(&mut self, pos: i64, item: T) -> Result<(), Refused<T>> {
        if pos <= self.released {
            return Err(Refused::Released(item));
        }
        if self.waiting.contains_key(&pos) {
            return Err(Refused::Waiting(item));
        }
        self.known = self.known.max(pos);
        self.waiting.insert(pos, item);
        Ok(())
    }

    /// The items waiting, by position.
    pub fn waiting(&self) -> impl Iterator<Item = &T> + '_ {
        self.waiting.values()
    }

    /// Everything waiting, ascending, with its position (to start again).
    pub fn into_waiting(self) -> impl Iterator<Item = (i64, T)> {
        self.waiting.into_iter()
    }

    /// The waiting item at `pos` (to merge a late copy into it).
    pub fn waiting_mut(&mut self, pos: i64) -> Option<&mut T> {
        self.waiting.get_mut(&pos)
    }

    /// The next position, if it is here: the caller lets it out.
    pub fn pop_next(&mut self) -> Option<(i64, T)> {
        let (&pos, _) = self.waiting.first_key_value()?;
        if pos != self.released + 1 {
            return None;
        }
        let item = self.waiting.remove(&pos)?;
        self.released = pos;
        Some((pos, item))
    }

    /// Notes that everything up to `pos` is committed (the database said so).
    pub fn note_known(&mut self, pos: i64) {
        self.known = self.known.max(pos);
    }

    /// The first run of missing positions: from the next one to release up
    /// to the one before the first waiting item (or up to `known` when
    /// nothing waits). `None` when nothing is missing.
    pub fn gap(&self) -> Option<RangeInclusive<i64>> {
        let next = self.released + 1;
        let end = match self.waiting.first_key_value() {
            Some((&first, _)) if first == next => return None,
            Some((&first, _)) => first - 1,
            None => self.known,
        };
        (end >= next).then_some(next..=end)
    }

    /// Gives up on positions up to `pos` that no one can provide (the
    /// database no longer has them): releases past them, keeping what waits
    /// above. Returns how many were skipped.
    pub fn skip_to(&mut self, pos: i64) -> i64 {
        let skipped = (pos - self.released).max(0) - self.waiting.range(..=pos).count() as i64;
        let stale: Vec<i64> = self.waiting.range(..=pos).map(|(&p, _)| p).collect();
        for p in stale {
            self.waiting.remove(&p);
        }
        self.released = self.released.max(pos);
        skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut Reorder<&'static str>) -> Vec<(i64, &'static str)> {
        std::iter::from_fn(|| r.pop_next()).collect()
    }

    #[test]
    fn releases_consecutive_positions_only() {
        let mut r = Reorder::new(10);
        assert_eq!(r.offer(12, "b"), Ok(()));
        assert_eq!(r.offer(13, "c"), Ok(()));
        assert!(drain(&mut r).is_empty(), "11 is missing");
        assert_eq!(r.gap(), Some(11..=11));
        assert_eq!(r.offer(11, "a"), Ok(()));
        assert_eq!(drain(&mut r), vec![(11, "a"), (12, "b"), (13, "c")]);
        assert_eq!(r.released(), 13);
        assert_eq!(r.gap(), None);
    }

    #[test]
    fn duplicates_are_given_back() {
        let mut r = Reorder::new(0);
        r.offer(1, "a").unwrap();
        r.offer(3, "c").unwrap();
        assert_eq!(r.offer(3, "c again"), Err(Refused::Waiting("c again")));
        *r.waiting_mut(3).unwrap() = "c merged";
        assert_eq!(drain(&mut r), vec![(1, "a")]);
        assert_eq!(r.offer(1, "a again"), Err(Refused::Released("a again")));
        assert_eq!(r.offer(0, "before the start"), Err(Refused::Released("before the start")));
        r.offer(2, "b").unwrap();
        assert_eq!(drain(&mut r), vec![(2, "b"), (3, "c merged")]);
    }

    #[test]
    fn a_gap_with_nothing_after_it_is_seen_through_known() {
        let mut r: Reorder<&str> = Reorder::new(5);
        assert_eq!(r.gap(), None);
        r.note_known(4); // older news changes nothing
        assert_eq!(r.gap(), None);
        r.note_known(8);
        assert_eq!(r.gap(), Some(6..=8));
        r.offer(6, "f").unwrap();
        assert_eq!(r.gap(), None, "the next position is here");
        assert_eq!(drain(&mut r), vec![(6, "f")]);
        assert_eq!(r.gap(), Some(7..=8));
        r.offer(8, "h").unwrap();
        assert_eq!(r.gap(), Some(7..=7));
    }

    #[test]
    fn skipping_releases_past_what_no_one_has() {
        let mut r = Reorder::new(0);
        r.offer(3, "c").unwrap();
        r.offer(5, "e").unwrap();
        assert_eq!(r.skip_to(3), 2, "1 and 2 skipped, 3 dropped with them");
        assert_eq!(r.released(), 3);
        assert_eq!(r.gap(), Some(4..=4));
        r.offer(4, "d").unwrap();
        assert_eq!(drain(&mut r), vec![(4, "d"), (5, "e")]);
        assert_eq!(r.skip_to(2), 0, "never backwards");
        assert_eq!(r.released(), 5);
    }

    /// Whatever order positions arrive in, with duplicates, what comes out
    /// is each position once, ascending.
    #[test]
    fn any_arrival_order_comes_out_in_order() {
        let mut r = Reorder::new(0);
        let mut out = Vec::new();
        // A fixed shuffle of 1..=50 with every position sent twice.
        let arrivals = (1..=50).map(|i| (i * 37) % 50 + 1).chain((1..=50).map(|i| (i * 13) % 50 + 1));
        for pos in arrivals {
            let _ = r.offer(pos, "x");
            out.extend(std::iter::from_fn(|| r.pop_next()).map(|(p, _)| p));
        }
        assert_eq!(out, (1..=50).collect::<Vec<_>>());
    }
}
