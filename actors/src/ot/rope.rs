//! [`apply`](super::apply) on a [`Rope`]: the text of a document room,
//! where an operation costs O(components × log(text) + inserted bytes)
//! instead of a copy of the whole text. A room applies every operation
//! to its document; on a string, a keystroke in a 1 MiB document copied
//! 1 MiB. Same results and refusals as [`apply_within`](super::apply_within).

use ropey::Rope;

use super::{Component, OpError, Operation};

/// Applies `op` to `text`, or leaves it untouched and refuses as
/// [`apply_within`](super::apply_within) would: [`OpError::BaseTooShort`]
/// when `op` keeps and deletes more characters than `text` has,
/// [`OpError::TooLarge`] when the result would pass `max_bytes`.
///
/// An edit of the rope costs O(log n) per component, so an operation of
/// very many components (a 4 MiB frame holds about a million) would cost
/// far more than a copy of the text: past [`in_place_limit`] components
/// the text is rebuilt in one linear pass instead.
pub fn apply_to_rope(text: &mut Rope, op: &Operation, max_bytes: usize) -> Result<(), OpError> {
    if op.components().len() > in_place_limit(text) {
        rebuild(text, op, max_bytes)
    } else {
        edit(text, op, max_bytes)
    }
}

/// `text` with `ops` applied in turn, on a rope. Composing them first
/// and applying once walks the composition so far at every step, so its
/// cost grows with the square of their number when one of them has many
/// components; here each costs what applying it costs. On the first that
/// does not apply: its index, and why.
pub fn apply_in_turn<'a>(text: &str, ops: impl IntoIterator<Item = &'a Operation>) -> Result<String, (usize, OpError)> {
    let mut rope = Rope::from_str(text);
    for (i, op) in ops.into_iter().enumerate() {
        apply_to_rope(&mut rope, op, usize::MAX).map_err(|e| (i, e))?;
    }
    Ok(rope.to_string())
}

/// Components an operation may have to be applied in place: where one
/// rope edit per component still costs less than copying the text (a
/// component's edit costs about as much as copying a few KB).
fn in_place_limit(text: &Rope) -> usize {
    64 + text.len_bytes() / 4096
}

/// [`apply_to_rope`] by a pass over the whole text.
pub(super) fn rebuild(text: &mut Rope, op: &Operation, max_bytes: usize) -> Result<(), OpError> {
    let out = super::apply_within(&text.to_string(), op, max_bytes)?;
    *text = Rope::from_str(&out);
    Ok(())
}

/// [`apply_to_rope`] by an edit of the rope per component.
pub(super) fn edit(text: &mut Rope, op: &Operation, max_bytes: usize) -> Result<(), OpError> {
    let actual = text.len_chars();
    if op.base_len() > actual {
        return Err(OpError::BaseTooShort { needed: op.base_len(), actual });
    }
    // The size of the result first, so that a refusal changes nothing.
    let (mut at, mut deleted, mut inserted) = (0usize, 0usize, 0usize);
    for component in op.components() {
        match component {
            Component::Keep(n) => at += n,
            Component::Delete(n) => {
                deleted += text.char_to_byte(at + n) - text.char_to_byte(at);
                at += n;
            }
            Component::Insert(s) => inserted += s.as_str().len(),
        }
    }
    if text.len_bytes() - deleted + inserted > max_bytes {
        return Err(OpError::TooLarge { max: max_bytes });
    }
    // `at` is now a position in the text being built.
    let mut at = 0;
    for component in op.components() {
        match component {
            Component::Keep(n) => at += n,
            Component::Delete(n) => text.remove(at..at + n),
            Component::Insert(s) => {
                text.insert(at, s.as_str());
                at += s.chars();
            }
        }
    }
    Ok(())
}
