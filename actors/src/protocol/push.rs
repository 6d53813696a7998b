//! Server pushes: what a room tells its members without being asked. Every
//! push event and its data are declared in [`Push`], as every request is
//! in [`crate::protocol::ClientRequest`]. A room encodes a push once per
//! event ([`Push::encode`]) and offers the same bytes to every member.

use bytestring::ByteString;
use serde::Serialize;

use crate::awareness::Update;
use crate::ids::{DocumentId, RoomName, UserId, Version};
use crate::model::{DocumentView, Message};
use crate::ot::Operation;
use crate::presence::diff::JoinedUser;
use crate::protocol::error::WireError;
use crate::protocol::frames;

/// A push about a room. Serialized as its frame's `data`; the event name
/// comes from [`Push::event`].
#[derive(Serialize)]
#[serde(untagged)]
pub enum Push<'a> {
    /// `chat:message`: a message was stored; to every member, the sender
    /// included.
    ChatMessage { message: &'a Message },
    /// `documents:updated`: a new version; to every member but its author's
    /// connection.
    DocumentsUpdated { document: DocumentView<'a>, user_id: &'a UserId },
    /// `documents:op`: a new version made by an operation, as applied; to
    /// every member but its author's connection.
    DocumentsOp { document_id: &'a DocumentId, version: Version, ops: &'a Operation, user_id: &'a UserId },
    /// `user:joined`: the first connection of a user joined.
    UserJoined {
        user_id: &'a UserId,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
    },
    /// `user:left`: the last connection of a user left.
    UserLeft { user_id: &'a UserId },
    /// `presence:diff`: in a large room, the users who joined and left
    /// since the last one, and how many are present now.
    PresenceDiff {
        joined: &'a [JoinedUser<'a>],
        left: &'a [&'a UserId],
        member_count: usize,
        /// The diff would have been long: it names nobody, and a member
        /// that keeps a list pages `presence:list` again.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    /// `awareness`: a connection's state changed (`null`: cleared, or the
    /// connection left).
    Awareness(&'a Update),
    /// `error` about the room, answering no request: the member lost access
    /// and was removed from the room.
    Error(&'a WireError),
}

impl Push<'_> {
    pub fn event(&self) -> &'static str {
        match self {
            Push::ChatMessage { .. } => "chat:message",
            Push::DocumentsUpdated { .. } => "documents:updated",
            Push::DocumentsOp { .. } => "documents:op",
            Push::UserJoined { .. } => "user:joined",
            Push::UserLeft { .. } => "user:left",
            Push::PresenceDiff { .. } => "presence:diff",
            Push::Awareness(_) => "awareness",
            Push::Error(_) => "error",
        }
    }

    /// The frame `{"event", "room", "data"}`, to be shared by every member.
    pub fn encode(&self, room: &RoomName) -> ByteString {
        frames::encode(self.event(), None, Some(room), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChatId, DocumentId, Seq, Version};
    use crate::model::{Document, Timestamp};
    use crate::protocol::error::ErrorCode;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    // The frames clients read today, byte for byte (field order included).
    #[test]
    fn pushes_encode_as_event_room_data() {
        let chat = RoomName::Chat(ChatId::parse("general").unwrap());
        let bob = user("bob");
        let f = Push::UserJoined { user_id: &bob, name: Some("Bob") }.encode(&chat);
        assert_eq!(&*f, r#"{"event":"user:joined","room":"chat:general","data":{"user_id":"bob","name":"Bob"}}"#);
        let f = Push::UserJoined { user_id: &bob, name: None }.encode(&chat);
        assert_eq!(&*f, r#"{"event":"user:joined","room":"chat:general","data":{"user_id":"bob"}}"#);
        let f = Push::UserLeft { user_id: &bob }.encode(&chat);
        assert_eq!(&*f, r#"{"event":"user:left","room":"chat:general","data":{"user_id":"bob"}}"#);
        let carol = user("carol");
        let joined = [JoinedUser { user_id: &bob, name: Some("Bob") }, JoinedUser { user_id: &carol, name: None }];
        let f = Push::PresenceDiff { joined: &joined, left: &[&carol], member_count: 101, truncated: false }.encode(&chat);
        assert_eq!(
            &*f,
            r#"{"event":"presence:diff","room":"chat:general","data":{"joined":[{"user_id":"bob","name":"Bob"},{"user_id":"carol"}],"left":["carol"],"member_count":101}}"#
        );
        let f = Push::PresenceDiff { joined: &[], left: &[], member_count: 5000, truncated: true }.encode(&chat);
        assert_eq!(
            &*f,
            r#"{"event":"presence:diff","room":"chat:general","data":{"joined":[],"left":[],"member_count":5000,"truncated":true}}"#
        );

        let message = Message {
            id: "m1".into(),
            chat_id: ChatId::parse("general").unwrap(),
            seq: Seq(3),
            user_id: bob.clone(),
            content: "hi".into(),
            created_at: Timestamp(0),
            client_msg_id: None,
        };
        let f = Push::ChatMessage { message: &message }.encode(&chat);
        assert_eq!(
            &*f,
            r#"{"event":"chat:message","room":"chat:general","data":{"message":{"id":"m1","chat_id":"general","seq":3,"user_id":"bob","content":"hi","created_at":"1970-01-01T00:00:00.000Z"}}}"#
        );

        let doc = DocumentId::parse("plan").unwrap();
        let room = RoomName::Document(doc.clone());
        let document = Document {
            id: doc,
            title: "Plan".into(),
            content: "x".into(),
            version: Version(2),
            updated_at: Timestamp(0),
            updated_by: bob.clone(),
        };
        let f = Push::DocumentsUpdated { document: (&document).into(), user_id: &bob }.encode(&room);
        assert_eq!(
            &*f,
            r#"{"event":"documents:updated","room":"document:plan","data":{"document":{"id":"plan","title":"Plan","content":"x","version":2,"updated_at":"1970-01-01T00:00:00.000Z","updated_by":"bob"},"user_id":"bob"}}"#
        );

        let ops = Operation::from_json(&serde_json::json!([5, " world", {"d": 2}])).unwrap();
        let f = Push::DocumentsOp { document_id: &document.id, version: Version(3), ops: &ops, user_id: &bob }.encode(&room);
        assert_eq!(
            &*f,
            r#"{"event":"documents:op","room":"document:plan","data":{"document_id":"plan","version":3,"ops":[5," world",{"d":2}],"user_id":"bob"}}"#
        );

        let denied = WireError::new(ErrorCode::PermissionDenied, "access to document:plan was revoked");
        let f = Push::Error(&denied).encode(&room);
        assert_eq!(
            &*f,
            r#"{"event":"error","room":"document:plan","data":{"code":"PERMISSION_DENIED","message":"access to document:plan was revoked","details":{}}}"#
        );
    }
}
