//! Writes in flight for one room, released in the order they were made.
//! Writes complete in order in practice (one batcher, FIFO replies); this
//! keeps acks and pushes in order even if they did not.

use std::collections::VecDeque;

/// A ticket for one write in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

pub struct Pipeline<W, R> {
    waiting: VecDeque<(W, Option<R>)>,
    /// The ticket number of `waiting[0]`.
    front: u64,
}

impl<W, R> Default for Pipeline<W, R> {
    fn default() -> Self {
        Pipeline { waiting: VecDeque::new(), front: 0 }
    }
}

impl<W, R> Pipeline<W, R> {
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The writes not released yet.
    pub fn waiting(&self) -> impl Iterator<Item = &W> {
        self.waiting.iter().map(|(w, _)| w)
    }

    /// Registers a write; `what` is kept until it is released.
    pub fn start(&mut self, what: W) -> Ticket {
        self.waiting.push_back((what, None));
        Ticket(self.front + self.waiting.len() as u64 - 1)
    }

    /// Records a write's result and returns every write now releasable, in
    /// the order they were started.
    pub fn complete(&mut self, ticket: Ticket, result: R) -> Vec<(W, R)> {
        if let Some(slot) = ticket.0.checked_sub(self.front).and_then(|i| self.waiting.get_mut(i as usize)) {
            slot.1 = Some(result);
        }
        let mut released = Vec::new();
        while self.waiting.front().is_some_and(|(_, r)| r.is_some()) {
            if let Some((w, Some(r))) = self.waiting.pop_front() {
                released.push((w, r));
            }
            self.front += 1;
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_start_order() {
        let mut p: Pipeline<&str, u32> = Pipeline::default();
        let a = p.start("a");
        let b = p.start("b");
        let c = p.start("c");
        assert!(p.complete(b, 2).is_empty());
        assert!(p.complete(c, 3).is_empty());
        assert_eq!(p.complete(a, 1), vec![("a", 1), ("b", 2), ("c", 3)]);
        assert!(p.is_empty());
        let d = p.start("d");
        assert_eq!(p.complete(d, 4), vec![("d", 4)]);
        // A ticket completed twice (or unknown) changes nothing.
        assert!(p.complete(d, 5).is_empty());
    }
}
