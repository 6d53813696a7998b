//! Reading server frames without parsing them.
//!
//! The harness must stay far cheaper per delivery than the server, so it
//! never builds a JSON tree for a frame it only counts. It looks at the
//! event name (the server writes `event` first, so that is a prefix check),
//! then finds the one or two keys it needs (`"seq":`, the send time the
//! harness put in `content`) with a precompiled substring search, and reads
//! the digits after them. Nothing here allocates.
//!
//! The keys are chosen so that they cannot match inside another key:
//! `"seq":` does not occur in `"last_seq":` (the byte before `seq` there is
//! `_`, not `"`), and `"version":` does not occur in `"current_version":`.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// What a frame is, as far as the harness cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Connect,
    Ack,
    Error,
    ChatMessage,
    DocumentUpdated,
    DocumentOp,
    UserJoined,
    UserLeft,
    Other,
}

macro_rules! finder {
    ($name:ident, $text:expr) => {
        static $name: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new($text));
    };
}

finder!(EVENT_KEY, b"\"event\":\"");
finder!(SEQ, b"\"seq\":");
finder!(LAST_SEQ, b"\"last_seq\":");
finder!(VERSION, b"\"version\":");
finder!(CURRENT_VERSION, b"\"current_version\":");
finder!(SENT, b"\"content\":\"t");
finder!(CONNECTIONS, b"\"connections\":");
finder!(REF, b"\"ref\":");
finder!(CODE, b"\"code\":\"");
finder!(RECOVERED_TRUE, b"\"recovered\":true");
finder!(MESSAGES, b"\"messages\":[");
finder!(OPS, b"\"ops\":[");
finder!(INSERT_T, b"\"t");

/// The event of a frame. The fast path is the server's own layout
/// (`{"event":"NAME",...`); any other layout is searched for.
pub fn event(frame: &[u8]) -> Event {
    const PREFIX: &[u8] = b"{\"event\":\"";
    let rest = if let Some(rest) = frame.strip_prefix(PREFIX) {
        rest
    } else {
        match EVENT_KEY.find(frame) {
            Some(i) => &frame[i + EVENT_KEY.needle().len()..],
            None => return Event::Other,
        }
    };
    let name = match memchr::memchr(b'"', rest) {
        Some(end) => &rest[..end],
        None => return Event::Other,
    };
    match name {
        b"chat:message" => Event::ChatMessage,
        b"ack" => Event::Ack,
        b"documents:updated" => Event::DocumentUpdated,
        b"documents:op" => Event::DocumentOp,
        b"error" => Event::Error,
        b"connect" => Event::Connect,
        b"user:joined" => Event::UserJoined,
        b"user:left" => Event::UserLeft,
        _ => Event::Other,
    }
}

/// The unsigned integer right after the first match of `key`.
fn u64_after(frame: &[u8], key: &Finder<'_>) -> Option<u64> {
    let at = key.find(frame)? + key.needle().len();
    digits(&frame[at..]).map(|(v, _)| v)
}

/// Parses leading ASCII digits; returns the value and how many bytes it took.
fn digits(s: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// `seq` of a chat message push or of a `chat:message` ack.
pub fn seq(frame: &[u8]) -> Option<u64> {
    u64_after(frame, &SEQ)
}

/// `last_seq` of a `chat:join` ack.
pub fn last_seq(frame: &[u8]) -> Option<u64> {
    u64_after(frame, &LAST_SEQ)
}

/// `version` of a `documents:update` ack or a `documents:updated` push.
pub fn version(frame: &[u8]) -> Option<u64> {
    u64_after(frame, &VERSION)
}

/// `details.current_version` of a `VERSION_CONFLICT` error.
pub fn current_version(frame: &[u8]) -> Option<u64> {
    u64_after(frame, &CURRENT_VERSION)
}

/// The send time (nanoseconds since the Unix epoch) the harness wrote as
/// the content `t<nanos>`.
pub fn sent_ns(frame: &[u8]) -> Option<u64> {
    u64_after(frame, &SENT)
}

/// The send time the harness wrote as the inserted text `t<nanos>` of a
/// `documents:op` push (the only string in its `ops`).
pub fn op_sent_ns(frame: &[u8]) -> Option<u64> {
    let ops = &frame[OPS.find(frame)? + OPS.needle().len()..];
    u64_after(ops, &INSERT_T)
}

/// How many members a join ack lists (each member has `connections`).
pub fn member_count(frame: &[u8]) -> usize {
    CONNECTIONS.find_iter(frame).count()
}

/// Whether a join ack says `recovered: true`.
pub fn recovered(frame: &[u8]) -> bool {
    RECOVERED_TRUE.find(frame).is_some()
}

/// Calls `f(seq, sent_ns)` for each message of a join ack's `messages`, in
/// the order listed. The ack lists `members` before `messages`, and members
/// carry no `seq`, so every `"seq":` after `"messages":[` belongs to a
/// message.
pub fn each_message(frame: &[u8], mut f: impl FnMut(u64, Option<u64>)) {
    let Some(start) = MESSAGES.find(frame) else { return };
    let list = &frame[start..];
    let mut at = 0;
    while let Some(i) = SEQ.find(&list[at..]) {
        let from = at + i + SEQ.needle().len();
        let Some((seq, used)) = digits(&list[from..]) else { break };
        at = from + used;
        // The content follows the seq inside the same message object.
        let next_seq = SEQ.find(&list[at..]).map_or(list.len(), |j| at + j);
        let sent = u64_after(&list[at..next_seq], &SENT);
        f(seq, sent);
    }
}

/// The `ref` of an ack or error.
#[derive(Debug, PartialEq, Eq)]
pub enum Ref<'a> {
    Int(u64),
    Str(&'a [u8]),
    None,
}

pub fn reference(frame: &[u8]) -> Ref<'_> {
    let Some(i) = REF.find(frame) else { return Ref::None };
    let rest = &frame[i + REF.needle().len()..];
    match rest.first() {
        Some(b'"') => {
            let body = &rest[1..];
            match memchr::memchr(b'"', body) {
                Some(end) => Ref::Str(&body[..end]),
                None => Ref::None,
            }
        }
        Some(_) => digits(rest).map_or(Ref::None, |(v, _)| Ref::Int(v)),
        None => Ref::None,
    }
}

/// The `code` of an error frame, e.g. `VERSION_CONFLICT`.
pub fn error_code(frame: &[u8]) -> &[u8] {
    let Some(i) = CODE.find(frame) else { return b"" };
    let rest = &frame[i + CODE.needle().len()..];
    match memchr::memchr(b'"', rest) {
        Some(end) => &rest[..end],
        None => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &[u8] = br#"{"event":"chat:message","room":"chat:r1","data":{"message":{"id":"0b6c","chat_id":"r1","seq":42,"user_id":"u-1","content":"t1700000000123456789","created_at":"2026-01-01T00:00:00.000Z"}}}"#;

    #[test]
    fn reads_a_chat_push() {
        assert_eq!(event(PUSH), Event::ChatMessage);
        assert_eq!(seq(PUSH), Some(42));
        assert_eq!(sent_ns(PUSH), Some(1_700_000_000_123_456_789));
    }

    #[test]
    fn event_found_in_another_key_order() {
        let f = br#"{"room":"chat:r1","event":"user:joined","data":{"user_id":"x"}}"#;
        assert_eq!(event(f), Event::UserJoined);
        assert_eq!(event(b"not json"), Event::Other);
    }

    #[test]
    fn last_seq_is_not_seq_and_current_version_is_not_version() {
        let join = br#"{"event":"ack","ref":"j","data":{"room":"chat:r","members":[{"user_id":"a","connections":1},{"user_id":"b","connections":2}],"last_seq":7,"messages":[],"recovered":false}}"#;
        assert_eq!(seq(join), None);
        assert_eq!(last_seq(join), Some(7));
        assert_eq!(member_count(join), 2);
        assert!(!recovered(join));
        let conflict = br#"{"event":"error","ref":3,"data":{"code":"VERSION_CONFLICT","message":"m","details":{"current_version":9}}}"#;
        assert_eq!(version(conflict), None);
        assert_eq!(current_version(conflict), Some(9));
        assert_eq!(error_code(conflict), b"VERSION_CONFLICT");
        assert_eq!(reference(conflict), Ref::Int(3));
        assert_eq!(reference(join), Ref::Str(b"j"));
    }

    #[test]
    fn lists_recovered_messages_in_order() {
        let join = br#"{"event":"ack","ref":"j","data":{"room":"chat:r","members":[],"last_seq":9,"messages":[{"id":"a","chat_id":"r","seq":8,"user_id":"p","content":"t100","created_at":"x"},{"id":"b","chat_id":"r","seq":9,"user_id":"p","content":"hello","created_at":"x"}],"recovered":true}}"#;
        let mut seen = Vec::new();
        each_message(join, |s, t| seen.push((s, t)));
        assert_eq!(seen, vec![(8, Some(100)), (9, None)]);
        assert!(recovered(join));
    }

    #[test]
    fn reads_an_operation_push() {
        let f = br#"{"event":"documents:op","room":"document:d","data":{"document_id":"d","version":12,"ops":[40,"t1700000000123456789",{"d":20}],"user_id":"u"}}"#;
        assert_eq!(event(f), Event::DocumentOp);
        assert_eq!(version(f), Some(12));
        assert_eq!(op_sent_ns(f), Some(1_700_000_000_123_456_789));
        assert_eq!(op_sent_ns(br#"{"event":"documents:op","data":{"ops":[]}}"#), None);
    }

    #[test]
    fn overflowing_digits_are_not_a_number() {
        assert_eq!(digits(b"99999999999999999999999"), None);
        assert_eq!(digits(b"x"), None);
        assert_eq!(digits(b"12,"), Some((12, 2)));
    }
}
