//! The edit rights the store has confirmed to a room: the authors of its
//! stored groups, and the count of the document's access list they were
//! confirmed under. A group whose authors were all confirmed is committed
//! with that count, and the store then only checks that the list has not
//! changed since, instead of reading each author's role in the commit.
//! A cache: when the list changes, the store reads the roles again.

use std::collections::HashSet;

use crate::ids::UserId;

#[derive(Default)]
pub(super) struct Confirmed {
    at: Option<i64>,
    authors: HashSet<UserId>,
}

impl Confirmed {
    /// The count to commit a group of `authors` with, if all of them were
    /// confirmed under it.
    pub(super) fn covering<'a>(&self, mut authors: impl Iterator<Item = &'a UserId>) -> Option<i64> {
        let at = self.at?;
        authors.all(|a| self.authors.contains(a)).then_some(at)
    }

    /// The store stored a group of `authors` with the list at `at`.
    pub(super) fn stored<'a>(&mut self, at: i64, authors: impl Iterator<Item = &'a UserId>) {
        if self.at != Some(at) {
            self.authors.clear();
            self.at = Some(at);
        }
        self.authors.extend(authors.cloned());
    }

    /// The store refused an author: whatever it confirmed may be stale.
    pub(super) fn forget(&mut self) {
        self.at = None;
        self.authors.clear();
    }

    /// Keeps the authors `keep` says; see the room's pruning of rights.
    pub(super) fn prune(&mut self, above: usize, keep: impl Fn(&UserId) -> bool) {
        if self.authors.len() > above {
            self.authors.retain(|a| keep(a));
            self.authors.shrink_to(self.authors.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(ids: &[&str]) -> Vec<UserId> {
        ids.iter().map(|id| UserId::parse(id).unwrap()).collect()
    }

    #[test]
    fn a_group_is_covered_only_by_authors_confirmed_under_one_count() {
        let mut c = Confirmed::default();
        let [a, b] = [users(&["a"]), users(&["b"])];
        assert_eq!(c.covering(a.iter()), None, "nothing confirmed yet");
        c.stored(3, a.iter());
        assert_eq!(c.covering(a.iter()), Some(3));
        assert_eq!(c.covering(a.iter().chain(&b)), None, "b was never confirmed");
        c.stored(3, b.iter());
        assert_eq!(c.covering(a.iter().chain(&b)), Some(3));
        // Confirmed under another count: those under the old one are stale.
        c.stored(4, b.iter());
        assert_eq!((c.covering(b.iter()), c.covering(a.iter())), (Some(4), None));
        c.forget();
        assert_eq!(c.covering(b.iter()), None);
        c.stored(5, a.iter().chain(&b));
        c.prune(1, |u| u.as_str() == "a");
        assert_eq!((c.covering(a.iter()), c.covering(b.iter())), (Some(5), None));
    }
}
