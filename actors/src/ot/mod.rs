//! Operational transformation of plain text: the `ops` of `documents:op`
//! (docs/protocol.md, "Operations") as a value type with pure functions over it.
//! No actor, no database, no JSON outside [`wire`].
//!
//! # The operation
//!
//! An [`Operation`] is a list of [`Component`]s applied left to right from
//! position 0, positions counted in Unicode scalar values (`char`s):
//! `Keep(n)` keeps the next `n` characters, `Insert(s)` inserts `s`,
//! `Delete(n)` deletes the next `n` characters. Whatever the components do
//! not reach is kept: every operation ends in an implicit keep of the rest.
//! So an operation has no fixed base length, only a minimum
//! ([`Operation::base_len`], the characters it keeps or deletes); it applies
//! to any text at least that long, and [`Operation::target_len`] gives the
//! length of the result for a given base.
//!
//! Operations are always normalised, so that two operations with the same
//! effect on every text compare equal: no zero or empty component, adjacent
//! components of one kind merged, no trailing keep, and an insert never
//! directly after a delete (`[{"d":1},"J"]` is stored as `["J",{"d":1}]`,
//! which does the same thing). The only way to build one is [`Builder`],
//! which normalises as it goes, or the wire decoder, which uses it.
//!
//! # The functions
//!
//! - [`apply`] / [`apply_within`]: the text after an operation.
//! - [`compose`]`(a, b)`: one operation doing `a` then `b`.
//! - [`transform`]`(a, b, side)`: `a`, made on the same text as `b`,
//!   rewritten to apply after `b`; [`transform_over`] does it over a
//!   sequence (the changes committed since a client's base version).
//!
//! # Ties: who goes first
//!
//! When `a` and `b` both insert at the same position, `side` decides whose
//! text comes first: [`Side::Left`] puts `a`'s insert before `b`'s,
//! [`Side::Right`] after. The convention, shared with the JavaScript client
//! (`clients/js/src/ot.ts`): **what was committed first wins ties**. The
//! server rewrites an incoming operation over the operations committed
//! before it with `transform(incoming, committed, Side::Right)`; a client
//! rewrites its pending edits over an incoming server operation with
//! `Side::Right` and the server operation over its pending edits with
//! `Side::Left`. An insert next to a delete needs no tie-break: the insert
//! always survives, before the deleted range.
//!
//! # Cost
//!
//! Hostile input is bounded by the frame (4 MiB, so about a million
//! components) and the document (1 MiB). Every function here is linear:
//! [`apply`] is O(bytes of the text + bytes of the operation); [`compose`]
//! and [`transform`] are O(components + inserted bytes of both operations),
//! and their result has no more components than both inputs together, plus
//! two. Character positions are found by walking each string once with a
//! cursor, never by counting a string from its start again, and inserted
//! text is copied once into the result. [`transform_over`] of an operation
//! `a` over `b_1..b_k` costs the sum of its steps, each O(|a_i| + |b_i|)
//! where `a_i` grows by at most |b_i| + 2 components, so a room should bound
//! k (`max_recovery`). Counts are bounded at decoding ([`MAX_COUNT`]), so no
//! sum overflows.

mod algebra;
mod error;
mod rope;
pub mod wire;

#[cfg(test)]
mod tests;

pub use algebra::{apply, apply_within, compose, transform, transform_over};
pub use error::{ComponentProblem, OpError};
pub use rope::{apply_in_turn, apply_to_rope};

/// Largest total of kept and deleted characters one decoded operation may
/// carry: 2^53 - 1, the largest integer every JSON client reads exactly.
/// Far above any document (`max_document_bytes` is 1 MiB by default), and
/// small enough that sums of a few such totals cannot overflow a `usize`.
pub const MAX_COUNT: u64 = (1 << 53) - 1;

/// Which operation's insert goes first when both insert at one position.
/// See the module documentation for the convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The operation being transformed inserts before the other one.
    Left,
    /// The operation being transformed inserts after the other one (it
    /// arrived later: the server transforms incoming operations this way).
    Right,
}

/// Inserted text with its length in characters, counted once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insert {
    text: String,
    chars: usize,
}

impl Insert {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Length in Unicode scalar values.
    pub fn chars(&self) -> usize {
        self.chars
    }
}

/// One step of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Component {
    /// Keep the next `n` characters (n > 0).
    Keep(usize),
    /// Insert this text (never empty).
    Insert(Insert),
    /// Delete the next `n` characters (n > 0).
    Delete(usize),
}

/// A normalised text operation (see the module documentation).
///
/// A trailing keep is dropped from the components but remembered: `[6]`
/// has no components, yet still claims a text of at least 6 characters
/// and is refused on `"hello"` (docs/protocol.md: kept and deleted characters
/// must add up to the base length; only an omitted trailing keep may make
/// them fall short). [`compose`] and [`transform`] carry that claim over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Operation {
    components: Vec<Component>,
    /// Characters the components keep or delete.
    consumed: usize,
    /// The dropped trailing keep.
    trailing: usize,
    deleted: usize,
    inserted: usize,
}

impl Operation {
    /// The operation that changes nothing.
    pub fn noop() -> Self {
        Operation::default()
    }

    /// The operation a whole-content `documents:update` is recorded as:
    /// insert `new`, delete all of `old` (docs/protocol.md, "Operations"). The
    /// JavaScript binding builds the same one for a `documents:updated`
    /// push, so both transform pending edits over it alike. O(bytes of both).
    pub fn replace_all(old: &str, new: &str) -> Self {
        Self::replace_chars(old.chars().count(), new)
    }

    /// [`Operation::replace_all`] of a text of `old` characters.
    pub fn replace_chars(old: usize, new: &str) -> Self {
        let mut b = Builder::new();
        b.insert(new).delete(old);
        b.finish()
    }

    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// True when applying it changes no text.
    pub fn is_noop(&self) -> bool {
        self.components.is_empty()
    }

    /// The shortest text (in characters) it applies to: what it keeps and
    /// deletes, its dropped trailing keep included. Longer texts are fine;
    /// the rest is kept.
    pub fn base_len(&self) -> usize {
        self.consumed + self.trailing
    }

    /// Length in characters of the result on a text of `base_len`
    /// characters; `None` when that text is too short for it.
    pub fn target_len(&self, base_len: usize) -> Option<usize> {
        (base_len >= self.base_len()).then(|| base_len - self.deleted + self.inserted)
    }

    /// Length in characters of the text it was applied to, given the
    /// length of the result (the inverse of [`Operation::target_len`]):
    /// lets a room find the length at an older version from the current
    /// one and the operations since. `None` when no base fits.
    pub fn source_len(&self, target_len: usize) -> Option<usize> {
        let base = (target_len + self.deleted).checked_sub(self.inserted)?;
        (base >= self.base_len()).then_some(base)
    }

    /// Characters it deletes.
    pub fn deleted_chars(&self) -> usize {
        self.deleted
    }

    /// Characters it inserts.
    pub fn inserted_chars(&self) -> usize {
        self.inserted
    }

    /// UTF-8 bytes of the text it inserts (what it can add to a document
    /// at most). O(components).
    pub fn inserted_bytes(&self) -> usize {
        self.components
            .iter()
            .map(|c| match c {
                Component::Insert(text) => text.as_str().len(),
                Component::Keep(_) | Component::Delete(_) => 0,
            })
            .sum()
    }
}

/// Builds a normalised [`Operation`] one component at a time. Pushing is
/// amortised O(1) plus the bytes of inserted text; zero counts and empty
/// text are ignored, so callers need not check.
#[derive(Debug, Default)]
pub struct Builder {
    op: Operation,
}

impl Builder {
    pub fn new() -> Self {
        Builder::default()
    }

    pub fn keep(&mut self, n: usize) -> &mut Self {
        if n == 0 {
            return self;
        }
        self.op.consumed += n;
        match self.op.components.last_mut() {
            Some(Component::Keep(last)) => *last += n,
            _ => self.op.components.push(Component::Keep(n)),
        }
        self
    }

    pub fn delete(&mut self, n: usize) -> &mut Self {
        if n == 0 {
            return self;
        }
        self.op.consumed += n;
        self.op.deleted += n;
        match self.op.components.last_mut() {
            Some(Component::Delete(last)) => *last += n,
            _ => self.op.components.push(Component::Delete(n)),
        }
        self
    }

    /// Inserts `text`, which the caller knows to be `chars` characters long.
    fn insert_counted(&mut self, text: &str, chars: usize) -> &mut Self {
        if text.is_empty() {
            return self;
        }
        self.op.inserted += chars;
        let components = &mut self.op.components;
        // An insert right after a delete goes before it (same effect), so
        // that every effect has exactly one normal form.
        let at = match components.last() {
            Some(Component::Delete(_)) => components.len() - 1,
            _ => components.len(),
        };
        if let Some(Component::Insert(prev)) = at.checked_sub(1).and_then(|i| components.get_mut(i)) {
            prev.text.push_str(text);
            prev.chars += chars;
        } else {
            components.insert(at, Component::Insert(Insert { text: text.to_owned(), chars }));
        }
        self
    }

    pub fn insert(&mut self, text: &str) -> &mut Self {
        self.insert_counted(text, text.chars().count())
    }

    /// The operation; a trailing keep is dropped from its components and
    /// kept as its claim on the base length.
    pub fn finish(mut self) -> Operation {
        if let Some(Component::Keep(n)) = self.op.components.last() {
            self.op.consumed -= n;
            self.op.trailing = *n;
            self.op.components.pop();
        }
        self.op
    }
}

/// Counts the characters of UTF-8 text by its bytes: every byte that is
/// not a continuation byte (`10xxxxxx`) starts one.
fn is_char_start(byte: u8) -> bool {
    byte & 0xC0 != 0x80
}

/// Byte offset `n` characters after byte offset `from` (a character
/// boundary) in `text`, or `None` when the text ends first. O(bytes
/// walked), in runs the compiler vectorizes: every keep and delete of every
/// operation walks its span, and the trailing keep walks the rest of the
/// document, so a byte at a time made an operation on a long document cost
/// far more than copying it.
fn advance_chars(text: &str, from: usize, n: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = from;
    let mut left = n;
    while left > 0 {
        // `left` characters take at least `left` bytes: a run of that many
        // holds one character per character start in it, all of them
        // wanted (the last may continue past the run).
        let run = &bytes.get(at..)?[..left.min(bytes.len() - at)];
        if run.is_empty() {
            return None;
        }
        let starts = if run.is_ascii() { run.len() } else { run.iter().filter(|b| is_char_start(**b)).count() };
        left -= starts;
        at += run.len();
        while at < bytes.len() && !is_char_start(bytes[at]) {
            at += 1;
        }
    }
    Some(at)
}
