//! Why an operation was refused. The protocol layer maps [`OpError::TooLarge`]
//! to `PAYLOAD_TOO_LARGE` and every other variant to `INVALID_INPUT` with
//! `details.field: "ops"` (docs/protocol.md, "Operations").

use std::fmt;

/// What is wrong with one component of a decoded operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentProblem {
    /// A number that is zero, negative, fractional or written as a float
    /// (`5.0`, `1e3`): counts are positive integer literals.
    NotPositiveInteger,
    /// A count, or the running total of counts, above [`super::MAX_COUNT`].
    CountTooLarge,
    /// `""`: an insert must insert something.
    EmptyInsert,
    /// U+0000 in inserted text (refused in every client string).
    Nul,
    /// Anything but a number, a string or `{"d": n}`.
    Shape,
}

impl ComponentProblem {
    fn describe(self) -> &'static str {
        match self {
            ComponentProblem::NotPositiveInteger => "a keep or delete count must be a positive integer",
            ComponentProblem::CountTooLarge => "counts add up to more than 2^53 - 1 characters",
            ComponentProblem::EmptyInsert => "an insert must not be empty",
            ComponentProblem::Nul => "inserted text must not contain U+0000",
            ComponentProblem::Shape => "a component is a positive integer (keep), a non-empty string (insert) or {\"d\": n} (delete)",
        }
    }
}

/// An operation that cannot be decoded or applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    /// `ops` is not a JSON array.
    NotAList,
    /// Component `index` (0-based) is malformed.
    Component { index: usize, problem: ComponentProblem },
    /// It keeps and deletes `needed` characters of a text that has `actual`.
    BaseTooShort { needed: usize, actual: usize },
    /// The result would be above `max` UTF-8 bytes (`max_document_bytes`).
    TooLarge { max: usize },
}

impl OpError {
    /// True for the one variant the protocol answers with `PAYLOAD_TOO_LARGE`.
    pub fn is_too_large(&self) -> bool {
        matches!(self, OpError::TooLarge { .. })
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::NotAList => f.write_str("ops must be a list of components"),
            OpError::Component { index, problem } => write!(f, "ops[{index}]: {}", problem.describe()),
            OpError::BaseTooShort { needed, actual } => write!(
                f,
                "ops keep and delete {needed} characters but the document has {actual}"
            ),
            OpError::TooLarge { max } => write!(f, "the result would be above max_document_bytes ({max} bytes)"),
        }
    }
}

impl std::error::Error for OpError {}
