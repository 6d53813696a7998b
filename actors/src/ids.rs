//! Newtype identifiers. Each id is validated once, where it enters the
//! engine (frame decoding, JWT claims, database rows), so a `ChatId` in hand is
//! always well formed and a `Version` can never be passed where a `Seq` goes.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// Longest document or chat id, in characters (docs/protocol.md, "Documents").
pub const MAX_ROOM_ID_CHARS: usize = 128;
/// Longest user id (the token's `sub`), in characters: the same bound as
/// room ids.
pub const MAX_USER_ID_CHARS: usize = 128;

/// Why a string was refused as an id; the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId(pub &'static str);

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn is_room_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

fn check_room_id(s: &str) -> Result<(), InvalidId> {
    // The alphabet is ASCII, so bytes == characters here.
    if s.is_empty() || s.len() > MAX_ROOM_ID_CHARS || !s.chars().all(is_room_id_char) {
        return Err(InvalidId("must be 1 to 128 characters of A-Za-z0-9_.:-"));
    }
    Ok(())
}

macro_rules! room_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                check_room_id(s)?;
                Ok(Self(Arc::from(s)))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

room_id!(
    /// A document's id: 1 to 128 characters of `A-Za-z0-9_.:-`.
    DocumentId
);
room_id!(
    /// A chat's id: same alphabet as documents.
    ChatId
);

/// A user id: the JWT `sub`, 1 to 128 characters of any kind but U+0000.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let n = s.chars().count();
        if n == 0 || n > MAX_USER_ID_CHARS {
            return Err(InvalidId("must be 1 to 128 characters"));
        }
        // PostgreSQL cannot store it; refused on every database alike.
        if s.contains('\0') {
            return Err(InvalidId("must not contain U+0000 (NUL)"));
        }
        Ok(Self(Arc::from(s)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({:?})", &*self.0)
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One WebSocket connection. Random, so it can be shown to clients and logged
/// without revealing anything.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(uuid::Uuid);

impl SessionId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionId {
    /// A session id as shown on the wire (32 hex digits), from another
    /// node's frame.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        uuid::Uuid::try_parse(s).map(Self).map_err(|_| InvalidId("must be a session id (32 hex digits)"))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The short form is enough to tell sessions apart in logs.
        write!(f, "{}", self.0.simple())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Longest node id, in characters: node ids go into Redis channel and key
/// names and into the header of every message between nodes.
pub const MAX_NODE_ID_CHARS: usize = 64;

/// A node of a cluster: 1 to 64 characters of `A-Za-z0-9_.-` (no space,
/// no glob character: it is a word in headers and a part of key names).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NODE_ID_CHARS
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(InvalidId("must be 1 to 64 characters of A-Za-z0-9_.-"));
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:?})", &*self.0)
    }
}

/// A document's version: 0 when created, +1 per accepted update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Version(pub i64);

impl Version {
    pub fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

/// A chat message's position in its chat: gapless, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Seq(pub i64);

/// A room, as named on the wire: `document:<id>` or `chat:<id>`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum RoomName {
    Document(DocumentId),
    Chat(ChatId),
}

impl RoomName {
    /// A room's wire name, `document:<id>` or `chat:<id>`; the reason it is
    /// not one otherwise (the caller names the field).
    pub fn parse(s: &str) -> Result<RoomName, InvalidId> {
        const WHAT: &str = "must be a room name: document:<document_id> or chat:<chat_id>";
        let room = match s.split_once(':') {
            Some(("document", id)) => DocumentId::parse(id).map(RoomName::Document),
            Some(("chat", id)) => ChatId::parse(id).map(RoomName::Chat),
            _ => return Err(InvalidId(WHAT)),
        };
        room.map_err(|_| InvalidId(WHAT))
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomName::Document(id) => write!(f, "document:{id}"),
            RoomName::Chat(id) => write!(f, "chat:{id}"),
        }
    }
}

impl Serialize for RoomName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_accept_their_alphabet_only() {
        assert!(DocumentId::parse("doc-1_a.b:c").is_ok());
        assert!(DocumentId::parse(&"x".repeat(128)).is_ok());
        assert!(DocumentId::parse(&"x".repeat(129)).is_err());
        assert!(DocumentId::parse("").is_err());
        assert!(ChatId::parse("with space").is_err());
        assert!(ChatId::parse("é").is_err());
        assert!(ChatId::parse("a/b").is_err());
    }

    #[test]
    fn user_ids_count_characters_not_bytes() {
        assert!(UserId::parse(&"é".repeat(128)).is_ok());
        assert!(UserId::parse(&"é".repeat(129)).is_err());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("a\0b").is_err());
    }

    #[test]
    fn room_names_render_as_on_the_wire() {
        let chat = RoomName::Chat(ChatId::parse("general").unwrap());
        assert_eq!(chat.to_string(), "chat:general");
        let doc = RoomName::Document(DocumentId::parse("d1").unwrap());
        assert_eq!(serde_json::to_string(&doc).unwrap(), "\"document:d1\"");
    }

    #[test]
    fn room_names_parse_from_their_wire_form_only() {
        assert_eq!(RoomName::parse("chat:general").unwrap(), RoomName::Chat(ChatId::parse("general").unwrap()));
        // Ids may contain colons themselves.
        assert_eq!(RoomName::parse("document:a:b").unwrap(), RoomName::Document(DocumentId::parse("a:b").unwrap()));
        for bad in ["general", "chat:", "chat", "Chat:general", "documents:plan", "chat:with space", ""] {
            assert!(RoomName::parse(bad).is_err(), "{bad}");
        }
    }
}
