//! Which messages a `chat:join` returns (docs/protocol.md, "Recovery after
//! a reconnect").
//! Pure: the store executes the plan inside its read.

use crate::ids::Seq;

/// Messages returned by a join without recovery, and after a failed one.
pub const JOIN_PAGE: i64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Every message with seq > `after` (up to `last_seq`): `recovered: true`.
    After(Seq),
    /// The newest `JOIN_PAGE` messages: `recovered: false`.
    Newest,
}

impl Plan {
    pub fn recovered(self) -> bool {
        matches!(self, Plan::After(_))
    }
}

/// Decides the join's messages from the client's `since_seq`, the chat's
/// `last_seq` and `max_recovery`.
pub fn plan(since: Option<Seq>, last_seq: Seq, max_recovery: u32) -> Plan {
    match since {
        // A since_seq above last_seq means the store was reset: the client's
        // view is from another history, so answer as a fresh join.
        Some(s) if s <= last_seq && last_seq.0 - s.0 <= i64::from(max_recovery) => Plan::After(s),
        _ => Plan::Newest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_plans() {
        assert_eq!(plan(None, Seq(10), 1000), Plan::Newest);
        assert_eq!(plan(Some(Seq(4)), Seq(10), 1000), Plan::After(Seq(4)));
        assert_eq!(plan(Some(Seq(10)), Seq(10), 1000), Plan::After(Seq(10)));
        assert_eq!(plan(Some(Seq(0)), Seq(0), 1000), Plan::After(Seq(0)));
        // exactly max_recovery missed: still recovered
        assert_eq!(plan(Some(Seq(0)), Seq(1000), 1000), Plan::After(Seq(0)));
        assert_eq!(plan(Some(Seq(0)), Seq(1001), 1000), Plan::Newest);
        assert_eq!(plan(Some(Seq(11)), Seq(10), 1000), Plan::Newest);
    }
}
