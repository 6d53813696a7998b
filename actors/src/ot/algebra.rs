//! `apply`, `compose` and `transform`: each walks its inputs once, left to
//! right, with a [`Cursor`] per operation (see the module documentation of
//! [`super`] for the bounds).

use std::cmp::min;

use super::{advance_chars, Builder, Component, OpError, Operation, Side};

/// The text after `op`, with no limit on its size.
pub fn apply(text: &str, op: &Operation) -> Result<String, OpError> {
    apply_within(text, op, usize::MAX)
}

/// The text after `op`, refused with [`OpError::TooLarge`] as soon as it
/// would pass `max_bytes` UTF-8 bytes (so a hostile operation never makes us
/// build more than `max_bytes`), or with [`OpError::BaseTooShort`] when the
/// operation keeps and deletes more characters than `text` has.
pub fn apply_within(text: &str, op: &Operation, max_bytes: usize) -> Result<String, OpError> {
    let too_short = || OpError::BaseTooShort { needed: op.base_len(), actual: text.chars().count() };
    let mut out = String::with_capacity(min(text.len(), max_bytes));
    let push = |out: &mut String, s: &str| {
        if out.len() + s.len() > max_bytes {
            return Err(OpError::TooLarge { max: max_bytes });
        }
        out.push_str(s);
        Ok(())
    };
    let mut at = 0;
    for component in op.components() {
        match component {
            Component::Keep(n) => {
                let end = advance_chars(text, at, *n).ok_or_else(too_short)?;
                push(&mut out, &text[at..end])?;
                at = end;
            }
            Component::Delete(n) => at = advance_chars(text, at, *n).ok_or_else(too_short)?,
            Component::Insert(insert) => push(&mut out, insert.as_str())?,
        }
    }
    // The dropped trailing keep still claims its characters.
    advance_chars(text, at, op.trailing).ok_or_else(too_short)?;
    push(&mut out, &text[at..])?;
    Ok(out)
}

/// One operation with the effect of `a` then `b` (`b` made on the result
/// of `a`): `apply(apply(t, a), b) == apply(t, compose(a, b))` for every
/// text `t` both applications accept.
pub fn compose(a: &Operation, b: &Operation) -> Operation {
    let mut out = Builder::new();
    let (mut ca, mut cb) = (Cursor::new(a), Cursor::new(b));
    loop {
        match (ca.kind(), cb.kind()) {
            // b's inserts land in a's result as they are.
            (_, Kind::Insert) => push(&mut out, cb.take(usize::MAX)),
            // a's deletes remove characters b never saw.
            (Kind::Delete, _) => push(&mut out, ca.take(usize::MAX)),
            (Kind::End, Kind::End) => break,
            (ka, kb) => {
                let n = min(ca.remaining(), cb.remaining());
                let piece = ca.take(n);
                cb.take(n);
                match (ka, kb) {
                    // b deletes what a inserted: neither happens.
                    (Kind::Insert, Kind::Delete) => {}
                    (Kind::Insert, _) => push(&mut out, piece),
                    (_, Kind::Delete) => {
                        out.delete(n);
                    }
                    _ => {
                        out.keep(n);
                    }
                }
            }
        }
    }
    out.finish()
}

/// `a`, made on the same text as `b`, rewritten to apply after `b`, so that
/// `apply(apply(t, b), transform(a, b, Left))` equals
/// `apply(apply(t, a), transform(b, a, Right))`. `side` decides whose insert
/// goes first at one position (see the module documentation).
pub fn transform(a: &Operation, b: &Operation, side: Side) -> Operation {
    let mut out = Builder::new();
    let (mut ca, mut cb) = (Cursor::new(a), Cursor::new(b));
    loop {
        match (ca.kind(), cb.kind()) {
            (Kind::Insert, kb) if side == Side::Left || kb != Kind::Insert => push(&mut out, ca.take(usize::MAX)),
            (_, Kind::Insert) => {
                if let Piece::Insert(_, chars) = cb.take(usize::MAX) {
                    out.keep(chars);
                }
            }
            (Kind::End, Kind::End) => break,
            (ka, kb) => {
                let n = min(ca.remaining(), cb.remaining());
                ca.take(n);
                cb.take(n);
                match (ka, kb) {
                    // b deleted it already.
                    (_, Kind::Delete) => {}
                    (Kind::Delete, _) => {
                        out.delete(n);
                    }
                    _ => {
                        out.keep(n);
                    }
                }
            }
        }
    }
    out.finish()
}

/// `op` rewritten over `ops`, applied in order after the text `op` was
/// made on: the server's catch-up of an operation over the changes
/// committed since its base version (with [`Side::Right`]).
pub fn transform_over<'a>(op: &Operation, ops: impl IntoIterator<Item = &'a Operation>, side: Side) -> Operation {
    ops.into_iter().fold(op.clone(), |acc, b| transform(&acc, b, side))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Keep,
    Insert,
    Delete,
    /// Past the last component: the implicit keep of the rest.
    End,
}

/// Part of a component, borrowed from the operation.
enum Piece<'a> {
    Keep(usize),
    Insert(&'a str, usize),
    Delete(usize),
    End(usize),
}

fn push(out: &mut Builder, piece: Piece<'_>) {
    match piece {
        Piece::Keep(n) | Piece::End(n) => out.keep(n),
        Piece::Insert(text, chars) => out.insert_counted(text, chars),
        Piece::Delete(n) => out.delete(n),
    };
}

/// A position inside an operation: a component and how much of it has been
/// taken. Taking from an insert walks its text from where the last take
/// stopped, so splitting an insert into pieces costs its length once. After
/// the components comes the dropped trailing keep, then the end.
struct Cursor<'a> {
    components: &'a [Component],
    index: usize,
    /// Characters of the current component already taken.
    taken: usize,
    /// Byte offset of `taken` in the current insert's text.
    byte: usize,
    /// What is left of the dropped trailing keep.
    trailing: usize,
}

impl<'a> Cursor<'a> {
    fn new(op: &'a Operation) -> Self {
        Cursor { components: op.components(), index: 0, taken: 0, byte: 0, trailing: op.trailing }
    }

    fn kind(&self) -> Kind {
        match self.components.get(self.index) {
            None if self.trailing > 0 => Kind::Keep,
            None => Kind::End,
            Some(Component::Keep(_)) => Kind::Keep,
            Some(Component::Insert(_)) => Kind::Insert,
            Some(Component::Delete(_)) => Kind::Delete,
        }
    }

    /// Characters left in the current component (unbounded at the end).
    fn remaining(&self) -> usize {
        match self.components.get(self.index) {
            None if self.trailing > 0 => self.trailing,
            None => usize::MAX,
            Some(Component::Keep(n) | Component::Delete(n)) => n - self.taken,
            Some(Component::Insert(insert)) => insert.chars() - self.taken,
        }
    }

    /// Takes up to `n` characters of the current component.
    fn take(&mut self, n: usize) -> Piece<'a> {
        let Some(component) = self.components.get(self.index) else {
            let n = min(n, self.remaining());
            if self.trailing > 0 {
                self.trailing -= n;
                return Piece::Keep(n);
            }
            return Piece::End(n);
        };
        let n = min(n, self.remaining());
        let piece = match component {
            Component::Keep(_) => Piece::Keep(n),
            Component::Delete(_) => Piece::Delete(n),
            Component::Insert(insert) => {
                let text = insert.as_str();
                let end = if self.taken + n == insert.chars() {
                    text.len()
                } else {
                    // In range: the insert has more than taken + n characters.
                    advance_chars(text, self.byte, n).unwrap_or(text.len())
                };
                let piece = Piece::Insert(&text[self.byte..end], n);
                self.byte = end;
                piece
            }
        };
        self.taken += n;
        if self.remaining() == 0 {
            self.index += 1;
            self.taken = 0;
            self.byte = 0;
        }
        piece
    }
}
