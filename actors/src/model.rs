//! The domain records that rooms, the store and the wire share: documents,
//! roles, chats, messages and timestamps. Plain data, no behaviour beyond
//! formatting.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use ropey::Rope;
use serde::{Serialize, Serializer};

use crate::ids::{ChatId, DocumentId, Seq, UserId, Version};
use crate::ot::Operation;

/// Milliseconds since the Unix epoch, UTC. Stored as an integer so that the
/// schema is the same on SQLite and PostgreSQL; shown as RFC 3339 with
/// milliseconds and a `Z`, as the protocol requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    pub fn from_unix_seconds(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    pub fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Out-of-range values (only reachable through a hand-edited database)
        // show as the epoch rather than failing a whole response.
        let t = DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default();
        f.write_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A user's rights on a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Editor,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn can_edit(self) -> bool {
        matches!(self, Role::Owner | Role::Editor)
    }
}

/// What `documents:share` asks for: a role, or `none` to revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Role(Role),
    Revoke,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Role(r) => r.as_str(),
            Grant::Revoke => "none",
        }
    }
}

impl Serialize for Grant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document {
    pub id: DocumentId,
    pub title: String,
    pub content: String,
    pub version: Version,
    pub updated_at: Timestamp,
    pub updated_by: UserId,
}

/// A [`Document`] to encode, its content borrowed from wherever it is
/// held (a room's rope, an update's text) rather than copied into a
/// `String` first. Serializes as the `Document` does (a test holds the two
/// to the same JSON).
#[derive(Clone, Copy, Serialize)]
pub struct DocumentView<'a> {
    pub id: &'a DocumentId,
    pub title: &'a str,
    pub content: Text<'a>,
    pub version: Version,
    pub updated_at: Timestamp,
    pub updated_by: &'a UserId,
}

/// A document's text, serialized as one JSON string.
#[derive(Clone, Copy)]
pub enum Text<'a> {
    Str(&'a str),
    /// Written chunk by chunk: serde_json escapes each as it comes.
    Rope(&'a Rope),
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Text::Str(text) => s.serialize_str(text),
            Text::Rope(rope) => s.collect_str(rope),
        }
    }
}

impl<'a> From<&'a Document> for DocumentView<'a> {
    fn from(d: &'a Document) -> Self {
        DocumentView {
            id: &d.id,
            title: &d.title,
            content: Text::Str(&d.content),
            version: d.version,
            updated_at: d.updated_at,
            updated_by: &d.updated_by,
        }
    }
}

/// One accepted change of a document, as its history keeps it: the
/// operation that made `version` from the version before (a whole-content
/// update is kept as [`Operation::replace_all`]). On the wire (history,
/// recovery) `op_id` and `kind` are left out: the first is its author's
/// idempotency key, and every change is an operation there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub version: Version,
    pub ops: Operation,
    pub user_id: UserId,
    pub created_at: Timestamp,
    #[serde(skip)]
    pub op_id: Option<String>,
    #[serde(skip)]
    pub kind: ChangeKind,
}

/// What a change was asked as, which says how members hear of it: an
/// operation as `documents:op`, a whole-content update as
/// `documents:updated` (also when it reaches them late: read back from the
/// history, or from another node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChangeKind {
    #[default]
    Op,
    Update,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chat {
    pub id: ChatId,
    pub private: bool,
    pub created_at: Timestamp,
    /// `None` for chats created over the HTTP API.
    pub created_by: Option<UserId>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    pub id: String,
    pub chat_id: ChatId,
    pub seq: Seq,
    pub user_id: UserId,
    pub content: String,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_314_208_123).to_string(),
            "2026-11-22T02:23:28.123Z"
        );
    }
}
