//! Server-to-client frames. Every frame the engine writes is encoded here,
//! so the `ref` echo rule and the envelope live in one place: answers
//! (`ack`, `error`) and session events are built here, room pushes in
//! [`crate::protocol::push`].

use bytestring::ByteString;
use serde::Serialize;

use crate::awareness;
use crate::ids::{DocumentId, RoomName, Seq, SessionId, UserId, Version};
use crate::model::{Change, Chat, Document, Grant, Message, Role, Timestamp};
use crate::ot::Operation;
use crate::presence::Listing;
use crate::protocol::error::WireError;
use crate::protocol::request::Ref;

#[derive(Serialize)]
struct Frame<'a, D> {
    event: &'a str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    r#ref: Option<&'a Ref>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a RoomName>,
    data: D,
}

pub(super) fn encode<D: Serialize>(event: &str, r#ref: Option<&Ref>, room: Option<&RoomName>, data: D) -> ByteString {
    match serde_json::to_string(&Frame { event, r#ref, room, data }) {
        Ok(s) => ByteString::from(s),
        // Our data types have string keys only, so this cannot happen; if it
        // ever does, the client still gets exactly one well-formed answer.
        Err(e) => {
            log::error!("encoding a {event} frame failed: {e}");
            ByteString::from_static(
                r#"{"event":"error","data":{"code":"INTERNAL_ERROR","message":"response encoding failed","details":{}}}"#,
            )
        }
    }
}

/// The `ack` answering a request with `ref`.
pub fn ack<D: Serialize>(r#ref: &Ref, data: D) -> ByteString {
    encode("ack", Some(r#ref), None, data)
}

/// An `error`, answering a request (`ref`) or about a room (`room`).
pub fn error(r#ref: Option<&Ref>, room: Option<&RoomName>, e: &WireError) -> ByteString {
    encode("error", r#ref, room, e)
}

/// A push that concerns the connection, not a room (`connect`, `session_update`).
pub fn session_event<D: Serialize>(event: &str, r#ref: Option<&Ref>, data: D) -> ByteString {
    encode(event, r#ref, None, data)
}

// ---- data of the frames ------------------------------------------------

#[derive(Serialize)]
pub struct Connect<'a> {
    pub session_id: SessionId,
    pub user_id: &'a UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub expires_at: Timestamp,
    pub heartbeat_ms: u64,
    pub protocol: u8,
}

#[derive(Serialize)]
pub struct SessionUpdate<'a> {
    pub user_id: &'a UserId,
    pub expires_at: Timestamp,
    pub rooms: Vec<&'a RoomName>,
}

#[derive(Serialize)]
pub struct Pong {
    pub server_time: Timestamp,
}

#[derive(Serialize)]
pub struct Refreshed {
    pub expires_at: Timestamp,
}

#[derive(Serialize)]
pub struct DocumentCreated<'a> {
    pub document: &'a Document,
}

/// What a join ack shows of the room: the first `presence_max_listed`
/// users (`members`), how many there are, and the other connections'
/// awareness states.
#[derive(Serialize)]
pub struct PresenceSnapshot<'a> {
    pub members: Listing<'a>,
    pub member_count: usize,
    pub awareness: awareness::Listing<'a>,
}

/// The ack of `presence:list`.
#[derive(Serialize)]
pub struct PresencePage<'a> {
    pub members: Listing<'a>,
    pub has_more: bool,
    pub member_count: usize,
}

/// An ack with nothing to say: `{}`.
#[derive(Serialize)]
pub struct Empty {}

#[derive(Serialize)]
pub struct DocumentJoined<'a> {
    pub room: &'a RoomName,
    pub role: Role,
    /// A [`Document`], encoded by the room (once per version).
    pub document: &'a serde_json::value::RawValue,
    #[serde(flatten)]
    pub presence: PresenceSnapshot<'a>,
    /// With `since_version` only: the changes after it, ascending, when
    /// `recovered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<&'a Change>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

/// The ack of `documents:op`: the version it created and the operation as
/// applied (after transformation).
#[derive(Serialize)]
pub struct OpApplied<'a> {
    pub document_id: &'a DocumentId,
    pub version: Version,
    pub ops: &'a Operation,
}

/// The ack of `documents:history`.
#[derive(Serialize)]
pub struct Changes<'a> {
    pub changes: &'a [Change],
    pub has_more: bool,
}

#[derive(Serialize)]
pub struct DocumentUpdatedAck<'a> {
    pub document_id: &'a DocumentId,
    pub version: Version,
}

#[derive(Serialize)]
pub struct Shared<'a> {
    pub document_id: &'a DocumentId,
    pub user_id: &'a UserId,
    pub role: Grant,
}

#[derive(Serialize)]
pub struct RoomOnly<'a> {
    pub room: &'a RoomName,
}

#[derive(Serialize)]
pub struct ChatCreated<'a> {
    pub chat: &'a Chat,
}

#[derive(Serialize)]
pub struct ChatJoined<'a> {
    pub room: &'a RoomName,
    #[serde(flatten)]
    pub presence: PresenceSnapshot<'a>,
    pub last_seq: Seq,
    pub messages: &'a [Message],
    pub recovered: bool,
}

#[derive(Serialize)]
pub struct OneMessage<'a> {
    pub message: &'a Message,
}

#[derive(Serialize)]
pub struct History<'a> {
    pub messages: &'a [Message],
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChatId;
    use crate::protocol::error::ErrorCode;

    #[test]
    fn ack_echoes_the_ref_as_the_same_json_value() {
        let f = ack(&Ref::Int(7), Pong { server_time: Timestamp(0) });
        assert_eq!(&*f, r#"{"event":"ack","ref":7,"data":{"server_time":"1970-01-01T00:00:00.000Z"}}"#);
        let f = ack(&Ref::Str("7".into()), RoomOnly { room: &RoomName::Chat(ChatId::parse("a").unwrap()) });
        assert_eq!(&*f, r#"{"event":"ack","ref":"7","data":{"room":"chat:a"}}"#);
    }

    #[test]
    fn errors_carry_code_message_details() {
        let mut e = WireError::new(ErrorCode::VersionConflict, "document d is at version 7");
        e.details.current_version = Some(7);
        let f = error(Some(&Ref::Str("17".into())), None, &e);
        assert_eq!(
            &*f,
            r#"{"event":"error","ref":"17","data":{"code":"VERSION_CONFLICT","message":"document d is at version 7","details":{"current_version":7}}}"#
        );
    }
}
