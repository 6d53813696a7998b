//! Client-to-server frames: the envelope, the `ref` rule, and the typed
//! [`ClientRequest`] every frame is decoded into exactly once. Every way a
//! frame can be wrong ends here as an `INVALID_INPUT` (or
//! `PAYLOAD_TOO_LARGE`) naming the field; nothing past this module sees JSON.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::ids::{ChatId, DocumentId, RoomName, Seq, UserId, Version};
use crate::model::Grant;
use crate::ot::Operation;
use crate::protocol::error::{ErrorCode, WireError};
use crate::protocol::fields::{self, Fields};
use crate::protocol::tree::{self, TreeError};

/// Largest integer a JSON number can carry without loss in every client
/// (2^53 - 1): the bound on integer `ref`s, versions and seqs.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Longest string `ref`, in characters.
pub const MAX_REF_CHARS: usize = 64;
/// `chat:history` page size bounds and default (docs/protocol.md, "History").
pub const HISTORY_LIMIT_MAX: i64 = 100;
pub const HISTORY_LIMIT_DEFAULT: i64 = 50;
/// `presence:list` page size bounds and default (docs/protocol.md, "Large
/// rooms"): a page of 1,000 members is about 60 KB of JSON, well inside a
/// frame and quick to walk.
pub const PRESENCE_LIMIT_MAX: i64 = 1000;
pub const PRESENCE_LIMIT_DEFAULT: i64 = 100;
/// `documents:history` page size bounds and default (docs/protocol.md,
/// "Operations").
pub const DOCUMENT_HISTORY_LIMIT_MAX: i64 = 1000;
pub const DOCUMENT_HISTORY_LIMIT_DEFAULT: i64 = 100;

/// The request correlation id, echoed on the one response to the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Ref {
    Str(String),
    Int(u64),
}

/// A connection's awareness state in a room: a JSON object chosen by the
/// client, kept as the compact JSON text it was validated as. It is parsed
/// once, here, and embedded in every frame that carries it as is; rooms
/// only hold and share it (a clone is one reference count).
#[derive(Clone)]
pub struct AwarenessState(Arc<RawValue>);

impl AwarenessState {
    /// The state as JSON text (compact, keys sorted).
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// A state another node validated and pushed (cluster mode): kept as
    /// it came, to be listed in join acks.
    pub fn from_trusted(raw: Box<RawValue>) -> AwarenessState {
        AwarenessState(Arc::from(raw))
    }
}

impl fmt::Debug for AwarenessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AwarenessState({})", self.json())
    }
}

impl PartialEq for AwarenessState {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Serialize for AwarenessState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl AwarenessState {
    /// Validates a state: serialized compactly it must fit in `max_bytes`
    /// (`PAYLOAD_TOO_LARGE` otherwise, field `state`, as for the other
    /// sizes of the protocol).
    pub(super) fn from_object(object: &Map<String, Value>, max_bytes: usize) -> Result<AwarenessState, WireError> {
        let raw = serde_json::value::to_raw_value(object)
            .map_err(|e| WireError::invalid("state", format!("state cannot be encoded: {e}")))?;
        let len = raw.get().len();
        if len > max_bytes {
            let mut e = WireError::new(
                ErrorCode::PayloadTooLarge,
                format!("state is {len} bytes as serialized; max_awareness_bytes is {max_bytes}"),
            );
            e.details.field = Some("state".into());
            return Err(e);
        }
        Ok(AwarenessState(Arc::from(raw)))
    }
}

/// Limits that decide whether a well-formed value is acceptable.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub max_document_bytes: usize,
    pub max_message_chars: usize,
    pub max_awareness_bytes: usize,
}

/// A decoded frame.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub r#ref: Option<Ref>,
    pub body: ClientRequest,
}

/// Every request a client can make, with its data already validated.
#[derive(Debug, PartialEq)]
pub enum ClientRequest {
    Auth {
        token: String,
    },
    AuthRefresh {
        token: String,
    },
    Ping,
    DocumentsCreate {
        document_id: DocumentId,
        title: String,
        content: String,
    },
    DocumentsJoin {
        document_id: DocumentId,
        /// Recover the changes after this version, if the room still can.
        since_version: Option<Version>,
    },
    DocumentsUpdate {
        document_id: DocumentId,
        content: String,
        version: Version,
    },
    DocumentsOp {
        document_id: DocumentId,
        /// The version the operation was made on.
        base_version: Version,
        ops: Operation,
        op_id: Option<String>,
    },
    DocumentsHistory {
        document_id: DocumentId,
        after_version: Version,
        limit: i64,
    },
    DocumentsSnapshot {
        document_id: DocumentId,
        version: Version,
    },
    DocumentsLeave {
        document_id: DocumentId,
    },
    DocumentsShare {
        document_id: DocumentId,
        user_id: UserId,
        grant: Grant,
    },
    ChatCreate {
        chat_id: ChatId,
        private: bool,
        members: Vec<UserId>,
    },
    ChatJoin {
        chat_id: ChatId,
        since_seq: Option<Seq>,
    },
    ChatMessage {
        chat_id: ChatId,
        content: String,
        client_msg_id: Option<String>,
    },
    ChatHistory {
        chat_id: ChatId,
        before_seq: Option<Seq>,
        limit: i64,
    },
    ChatLeave {
        chat_id: ChatId,
    },
    PresenceList {
        room: RoomName,
        after_user_id: Option<UserId>,
        limit: usize,
    },
    /// `state: None` clears the connection's state.
    AwarenessSet {
        room: RoomName,
        state: Option<AwarenessState>,
    },
}

impl ClientRequest {
    /// The wire name of the event, for logs and metrics.
    pub fn event(&self) -> &'static str {
        match self {
            ClientRequest::Auth { .. } => "auth",
            ClientRequest::AuthRefresh { .. } => "auth:refresh",
            ClientRequest::Ping => "ping",
            ClientRequest::DocumentsCreate { .. } => "documents:create",
            ClientRequest::DocumentsJoin { .. } => "documents:join",
            ClientRequest::DocumentsUpdate { .. } => "documents:update",
            ClientRequest::DocumentsOp { .. } => "documents:op",
            ClientRequest::DocumentsHistory { .. } => "documents:history",
            ClientRequest::DocumentsSnapshot { .. } => "documents:snapshot",
            ClientRequest::DocumentsLeave { .. } => "documents:leave",
            ClientRequest::DocumentsShare { .. } => "documents:share",
            ClientRequest::ChatCreate { .. } => "chat:create",
            ClientRequest::ChatJoin { .. } => "chat:join",
            ClientRequest::ChatMessage { .. } => "chat:message",
            ClientRequest::ChatHistory { .. } => "chat:history",
            ClientRequest::ChatLeave { .. } => "chat:leave",
            ClientRequest::PresenceList { .. } => "presence:list",
            ClientRequest::AwarenessSet { .. } => "awareness:set",
        }
    }
}

/// A frame that could not be decoded: the error to send, and the frame's
/// `ref` when a valid one could be read from it.
#[derive(Debug, PartialEq)]
pub struct DecodeError {
    pub r#ref: Option<Ref>,
    pub error: WireError,
}

/// Decodes one text frame.
pub fn decode(text: &str, limits: &DecodeLimits) -> Result<Request, DecodeError> {
    let no_ref = |error| DecodeError { r#ref: None, error };
    let value = tree::parse(text, tree::MAX_FRAME_VALUES).map_err(|e| match e {
        TreeError::Json(e) => no_ref(WireError::new(ErrorCode::InvalidInput, format!("frame is not valid JSON: {e}"))),
        e @ TreeError::TooManyValues(_) => no_ref(WireError::new(ErrorCode::PayloadTooLarge, e.to_string())),
    })?;
    let Value::Object(envelope) = value else {
        return Err(no_ref(WireError::new(
            ErrorCode::InvalidInput,
            "a frame must be a JSON object",
        )));
    };
    let r#ref = parse_ref(envelope.get("ref")).map_err(no_ref)?;
    let body = decode_body(&envelope, limits).map_err(|error| DecodeError {
        r#ref: r#ref.clone(),
        error,
    })?;
    Ok(Request { r#ref, body })
}

fn parse_ref(v: Option<&Value>) -> Result<Option<Ref>, WireError> {
    const WHAT: &str = "ref must be a string of 1 to 64 characters or an integer from 0 to 2^53 - 1";
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.contains('\0') => Err(WireError::invalid("ref", "ref must not contain U+0000 (NUL)")),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if (1..=MAX_REF_CHARS).contains(&n) {
                Ok(Some(Ref::Str(s.clone())))
            } else {
                Err(WireError::invalid("ref", WHAT))
            }
        }
        // `is_f64` catches `5.0` and `1e3`, which are not integer literals.
        Some(Value::Number(n)) if !n.is_f64() => match n.as_u64() {
            Some(i) if i <= MAX_SAFE_INTEGER => Ok(Some(Ref::Int(i))),
            _ => Err(WireError::invalid("ref", WHAT)),
        },
        Some(_) => Err(WireError::invalid("ref", WHAT)),
    }
}

fn decode_body(envelope: &Map<String, Value>, limits: &DecodeLimits) -> Result<ClientRequest, WireError> {
    let event = match envelope.get("event") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => return Err(WireError::invalid("event", "event is required")),
        Some(_) => return Err(WireError::invalid("event", "event must be a string")),
    };
    let data = match envelope.get("data") {
        Some(Value::Object(m)) => {
            fields::refuse_nul(m)?;
            Fields(m)
        }
        None | Some(Value::Null) => {
            return Err(WireError::invalid("data", "data is required (send {} when empty)"))
        }
        Some(_) => return Err(WireError::invalid("data", "data must be an object")),
    };
    let request = match event {
        "auth" => ClientRequest::Auth { token: data.token()? },
        "auth:refresh" => ClientRequest::AuthRefresh { token: data.token()? },
        "ping" => ClientRequest::Ping,
        "documents:create" => ClientRequest::DocumentsCreate {
            document_id: data.document_id()?,
            title: data.opt_str("title")?.unwrap_or_default().to_owned(),
            content: data.document_content(false, limits)?,
        },
        "documents:join" => ClientRequest::DocumentsJoin {
            document_id: data.document_id()?,
            since_version: data.opt_int("since_version", 0, MAX_SAFE_INTEGER)?.map(Version),
        },
        "documents:op" => ClientRequest::DocumentsOp {
            document_id: data.document_id()?,
            base_version: Version(
                data.opt_int("base_version", 0, MAX_SAFE_INTEGER)?
                    .ok_or_else(|| WireError::invalid("base_version", "base_version is required"))?,
            ),
            ops: data.ops(limits)?,
            op_id: data.op_id()?,
        },
        "documents:history" => ClientRequest::DocumentsHistory {
            document_id: data.document_id()?,
            after_version: Version(data.opt_int("after_version", 0, MAX_SAFE_INTEGER)?.unwrap_or(0)),
            limit: data
                .opt_int("limit", 1, DOCUMENT_HISTORY_LIMIT_MAX as u64)?
                .unwrap_or(DOCUMENT_HISTORY_LIMIT_DEFAULT),
        },
        "documents:snapshot" => ClientRequest::DocumentsSnapshot {
            document_id: data.document_id()?,
            version: Version(
                data.opt_int("version", 0, MAX_SAFE_INTEGER)?
                    .ok_or_else(|| WireError::invalid("version", "version is required"))?,
            ),
        },
        "documents:update" => ClientRequest::DocumentsUpdate {
            document_id: data.document_id()?,
            content: data.document_content(true, limits)?,
            version: Version(
                data.opt_int("version", 1, MAX_SAFE_INTEGER)?
                    .ok_or_else(|| WireError::invalid("version", "version is required"))?,
            ),
        },
        "documents:leave" => ClientRequest::DocumentsLeave { document_id: data.document_id()? },
        "documents:share" => ClientRequest::DocumentsShare {
            document_id: data.document_id()?,
            user_id: data.user_id("user_id")?,
            grant: data.grant()?,
        },
        "chat:create" => ClientRequest::ChatCreate {
            chat_id: data.chat_id()?,
            private: data.opt_bool("private")?.unwrap_or(false),
            members: data.user_ids("members")?,
        },
        "chat:join" => ClientRequest::ChatJoin {
            chat_id: data.chat_id()?,
            since_seq: data.opt_int("since_seq", 0, MAX_SAFE_INTEGER)?.map(Seq),
        },
        "chat:message" => ClientRequest::ChatMessage {
            chat_id: data.chat_id()?,
            content: data.message_content(limits)?,
            client_msg_id: data.client_msg_id()?,
        },
        "chat:history" => ClientRequest::ChatHistory {
            chat_id: data.chat_id()?,
            before_seq: data.opt_int("before_seq", 1, MAX_SAFE_INTEGER)?.map(Seq),
            limit: data
                .opt_int("limit", 1, HISTORY_LIMIT_MAX as u64)?
                .unwrap_or(HISTORY_LIMIT_DEFAULT),
        },
        "chat:leave" => ClientRequest::ChatLeave { chat_id: data.chat_id()? },
        "presence:list" => ClientRequest::PresenceList {
            room: data.room()?,
            after_user_id: data.opt_user_id("after_user_id")?,
            limit: data
                .opt_int("limit", 1, PRESENCE_LIMIT_MAX as u64)?
                .unwrap_or(PRESENCE_LIMIT_DEFAULT) as usize,
        },
        "awareness:set" => ClientRequest::AwarenessSet { room: data.room()?, state: data.awareness_state(limits)? },
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err(WireError::invalid("event", format!("unknown event \"{shown}\"")));
        }
    };
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_document_bytes: 16,
        max_message_chars: 5,
        max_awareness_bytes: 24,
    };

    fn field_of(frame: &str) -> (Option<Ref>, ErrorCode, Option<String>) {
        let e = decode(frame, &LIMITS).expect_err("frame should be refused");
        (e.r#ref, e.error.code, e.error.details.field)
    }

    #[test]
    fn decodes_a_chat_message_with_its_ref() {
        let r = decode(
            r#"{"event":"chat:message","data":{"chat_id":"general","content":"hi","extra":1},"ref":"17","x":0}"#,
            &LIMITS,
        )
        .unwrap();
        assert_eq!(r.r#ref, Some(Ref::Str("17".into())));
        assert_eq!(
            r.body,
            ClientRequest::ChatMessage {
                chat_id: ChatId::parse("general").unwrap(),
                content: "hi".into(),
                client_msg_id: None
            }
        );
    }

    #[test]
    fn ref_rules() {
        let ok = |r: &str| decode(&format!(r#"{{"event":"ping","data":{{}},"ref":{r}}}"#), &LIMITS).map(|q| q.r#ref);
        assert_eq!(ok("null").unwrap(), None);
        assert_eq!(ok("0").unwrap(), Some(Ref::Int(0)));
        assert_eq!(ok("9007199254740991").unwrap(), Some(Ref::Int(MAX_SAFE_INTEGER)));
        for bad in ["9007199254740992", "5.0", "1e3", "-1", "\"\"", "true", "[]", "{}"] {
            let e = ok(bad).unwrap_err();
            assert_eq!(e.r#ref, None, "{bad}");
            assert_eq!(e.error.details.field.as_deref(), Some("ref"), "{bad}");
        }
        assert!(ok(&format!("\"{}\"", "é".repeat(64))).is_ok());
        assert!(ok(&format!("\"{}\"", "x".repeat(65))).is_err());
    }

    #[test]
    fn malformed_frames_name_the_field_and_keep_the_ref() {
        assert_eq!(field_of("nope"), (None, ErrorCode::InvalidInput, None));
        assert_eq!(field_of("[1]"), (None, ErrorCode::InvalidInput, None));
        assert_eq!(
            field_of(r#"{"event":"nope","data":{},"ref":3}"#),
            (Some(Ref::Int(3)), ErrorCode::InvalidInput, Some("event".into()))
        );
        assert_eq!(field_of(r#"{"event":"ping"}"#).2.as_deref(), Some("data"));
        assert_eq!(field_of(r#"{"event":"ping","data":[]}"#).2.as_deref(), Some("data"));
        assert_eq!(field_of(r#"{"event":5,"data":{}}"#).2.as_deref(), Some("event"));
        assert_eq!(
            field_of(r#"{"event":"documents:update","data":{"document_id":"d","content":"","version":0}}"#).2.as_deref(),
            Some("version")
        );
        assert_eq!(
            field_of(r#"{"event":"documents:update","data":{"document_id":"d","content":"","version":1.0}}"#).2.as_deref(),
            Some("version")
        );
        assert_eq!(
            field_of(r#"{"event":"chat:join","data":{"chat_id":"bad id"}}"#).2.as_deref(),
            Some("chat_id")
        );
        assert_eq!(
            field_of(r#"{"event":"chat:message","data":{"chat_id":"c","content":""}}"#).2.as_deref(),
            Some("content")
        );
        assert_eq!(
            field_of(r#"{"event":"chat:history","data":{"chat_id":"c","limit":101}}"#).2.as_deref(),
            Some("limit")
        );
        assert_eq!(
            field_of(r#"{"event":"chat:history","data":{"chat_id":"c","before_seq":0}}"#).2.as_deref(),
            Some("before_seq")
        );
        assert_eq!(
            field_of(r#"{"event":"documents:share","data":{"document_id":"d","user_id":"u","role":"god"}}"#).2.as_deref(),
            Some("role")
        );
    }

    #[test]
    fn operations_history_and_snapshots_decode_within_their_bounds() {
        let r = decode(
            r#"{"event":"documents:op","data":{"document_id":"d","base_version":3,"ops":[1,"a",{"d":1}],"op_id":"o1"},"ref":1}"#,
            &LIMITS,
        )
        .unwrap();
        let ClientRequest::DocumentsOp { base_version, ops, op_id, .. } = r.body else { panic!("{:?}", r.body) };
        assert_eq!((base_version, op_id.as_deref()), (Version(3), Some("o1")));
        assert_eq!(ops.to_json(), serde_json::json!([1, "a", {"d": 1}]));
        for (frame, code, field) in [
            (r#"{"event":"documents:op","data":{"document_id":"d","ops":[]}}"#, ErrorCode::InvalidInput, "base_version"),
            (r#"{"event":"documents:op","data":{"document_id":"d","base_version":-1,"ops":[]}}"#, ErrorCode::InvalidInput, "base_version"),
            (r#"{"event":"documents:op","data":{"document_id":"d","base_version":0}}"#, ErrorCode::InvalidInput, "ops"),
            (r#"{"event":"documents:op","data":{"document_id":"d","base_version":0,"ops":[0]}}"#, ErrorCode::InvalidInput, "ops"),
            (r#"{"event":"documents:op","data":{"document_id":"d","base_version":0,"ops":{"d":1}}}"#, ErrorCode::InvalidInput, "ops"),
            (r#"{"event":"documents:op","data":{"document_id":"d","base_version":0,"ops":["a\u0000"]}}"#, ErrorCode::InvalidInput, "ops"),
            (r#"{"event":"documents:op","data":{"document_id":"d","base_version":0,"ops":[],"op_id":""}}"#, ErrorCode::InvalidInput, "op_id"),
            (r#"{"event":"documents:op","data":{"document_id":"d","base_version":0,"ops":[],"op_id":"\u0000"}}"#, ErrorCode::InvalidInput, "op_id"),
            // 17 bytes inserted never fit a 16-byte document.
            (r#"{"event":"documents:op","data":{"document_id":"d","base_version":0,"ops":["0123456789abcdefg"]}}"#, ErrorCode::PayloadTooLarge, "ops"),
            (r#"{"event":"documents:history","data":{"document_id":"d","limit":1001}}"#, ErrorCode::InvalidInput, "limit"),
            (r#"{"event":"documents:history","data":{"document_id":"d","limit":0}}"#, ErrorCode::InvalidInput, "limit"),
            (r#"{"event":"documents:history","data":{"document_id":"d","after_version":-1}}"#, ErrorCode::InvalidInput, "after_version"),
            (r#"{"event":"documents:snapshot","data":{"document_id":"d"}}"#, ErrorCode::InvalidInput, "version"),
            (r#"{"event":"documents:join","data":{"document_id":"d","since_version":1.5}}"#, ErrorCode::InvalidInput, "since_version"),
        ] {
            let (_, got, name) = field_of(frame);
            assert_eq!((got, name.as_deref()), (code, Some(field)), "{frame}");
        }
        let op_id = format!(r#"{{"event":"documents:op","data":{{"document_id":"d","base_version":0,"ops":[],"op_id":"{}"}}}}"#, "é".repeat(64));
        assert!(decode(&op_id, &LIMITS).is_ok());
        let r = decode(r#"{"event":"documents:history","data":{"document_id":"d"}}"#, &LIMITS).unwrap();
        assert!(matches!(r.body, ClientRequest::DocumentsHistory { after_version: Version(0), limit: 100, .. }));
        let r = decode(r#"{"event":"documents:history","data":{"document_id":"d","after_version":5,"limit":1000}}"#, &LIMITS).unwrap();
        assert!(matches!(r.body, ClientRequest::DocumentsHistory { after_version: Version(5), limit: 1000, .. }));
        let r = decode(r#"{"event":"documents:snapshot","data":{"document_id":"d","version":0}}"#, &LIMITS).unwrap();
        assert!(matches!(r.body, ClientRequest::DocumentsSnapshot { version: Version(0), .. }));
    }

    #[test]
    fn nul_is_refused_anywhere_naming_the_field() {
        for (frame, field) in [
            (r#"{"event":"chat:message","data":{"chat_id":"c","content":"a\u0000b"}}"#, "content"),
            (r#"{"event":"chat:message","data":{"chat_id":"c","content":"a","client_msg_id":"\u0000"}}"#, "client_msg_id"),
            (r#"{"event":"documents:create","data":{"document_id":"d","title":"t\u0000"}}"#, "title"),
            (r#"{"event":"chat:create","data":{"chat_id":"c","members":["ok","b\u0000d"]}}"#, "members"),
            (r#"{"event":"documents:share","data":{"document_id":"d","user_id":"\u0000","role":"viewer"}}"#, "user_id"),
            (r#"{"event":"ping","data":{"extra":{"deep":["\u0000"]}}}"#, "extra"),
            (r#"{"event":"ping","data":{"ke\u0000y":1}}"#, "key"),
            (r#"{"event":"auth:refresh","data":{"token":"a.b\u0000.c"}}"#, "token"),
            (r#"{"event":"ping","data":{},"ref":"r\u0000"}"#, "ref"),
        ] {
            let (_, code, got) = field_of(frame);
            assert_eq!((code, got.as_deref()), (ErrorCode::InvalidInput, Some(field)), "{frame}");
        }
        // An escaped backslash followed by "u0000" is not a NUL.
        assert!(decode(r#"{"event":"documents:create","data":{"document_id":"d","content":"\\u0000"}}"#, &LIMITS).is_ok());
    }

    #[test]
    fn sizes_are_payload_too_large() {
        let (_, code, field) = field_of(r#"{"event":"chat:message","data":{"chat_id":"c","content":"éééééé"}}"#);
        assert_eq!((code, field.as_deref()), (ErrorCode::PayloadTooLarge, Some("content")));
        // Five characters is the limit, counted as characters not bytes.
        assert!(decode(r#"{"event":"chat:message","data":{"chat_id":"c","content":"ééééé"}}"#, &LIMITS).is_ok());
        let (_, code, _) = field_of(r#"{"event":"documents:create","data":{"document_id":"d","content":"0123456789abcdefg"}}"#);
        assert_eq!(code, ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn presence_and_awareness_name_the_room_in_full() {
        let r = decode(r#"{"event":"presence:list","data":{"room":"chat:general","after_user_id":"bob","limit":2}}"#, &LIMITS)
            .unwrap();
        assert_eq!(
            r.body,
            ClientRequest::PresenceList {
                room: RoomName::Chat(ChatId::parse("general").unwrap()),
                after_user_id: Some(UserId::parse("bob").unwrap()),
                limit: 2
            }
        );
        let r = decode(r#"{"event":"presence:list","data":{"room":"document:plan"}}"#, &LIMITS).unwrap();
        assert!(matches!(r.body, ClientRequest::PresenceList { limit: 100, after_user_id: None, .. }));
        for (frame, field) in [
            (r#"{"event":"presence:list","data":{"room":"general"}}"#, "room"),
            (r#"{"event":"presence:list","data":{"chat_id":"general"}}"#, "room"),
            (r#"{"event":"presence:list","data":{"room":"chat:g","limit":0}}"#, "limit"),
            (r#"{"event":"presence:list","data":{"room":"chat:g","limit":1001}}"#, "limit"),
            (r#"{"event":"presence:list","data":{"room":"chat:g","after_user_id":""}}"#, "after_user_id"),
            (r#"{"event":"awareness:set","data":{"room":"plan","state":null}}"#, "room"),
            (r#"{"event":"awareness:set","data":{"room":"document:plan"}}"#, "state"),
            (r#"{"event":"awareness:set","data":{"room":"document:plan","state":[1]}}"#, "state"),
            (r#"{"event":"awareness:set","data":{"room":"document:plan","state":"x"}}"#, "state"),
        ] {
            let (_, code, got) = field_of(frame);
            assert_eq!((code, got.as_deref()), (ErrorCode::InvalidInput, Some(field)), "{frame}");
        }
    }

    #[test]
    fn awareness_states_are_kept_as_compact_json_within_the_limit() {
        let r = decode(r#"{"event":"awareness:set","data":{"room":"chat:c","state":{ "b" : [1, 2], "a": "é" }}}"#, &LIMITS)
            .unwrap();
        let ClientRequest::AwarenessSet { state: Some(state), .. } = r.body else { panic!("{:?}", r.body) };
        assert_eq!(state.json(), r#"{"a":"é","b":[1,2]}"#);
        assert_eq!(serde_json::to_string(&state).unwrap(), state.json());
        let r = decode(r#"{"event":"awareness:set","data":{"room":"chat:c","state":null}}"#, &LIMITS).unwrap();
        assert!(matches!(r.body, ClientRequest::AwarenessSet { state: None, .. }));
        // 24 bytes is the limit, counted on the compact form, not as sent.
        let fits = r#"{"event":"awareness:set","data":{"room":"chat:c","state":{"k":   "0123456789abcdef"}}}"#;
        assert!(decode(fits, &LIMITS).is_ok());
        let (_, code, field) = field_of(r#"{"event":"awareness:set","data":{"room":"chat:c","state":{"k":"0123456789abcdefg"}}}"#);
        assert_eq!((code, field.as_deref()), (ErrorCode::PayloadTooLarge, Some("state")));
        let (_, code, field) = field_of(r#"{"event":"awareness:set","data":{"room":"chat:c","state":{"k":"a\u0000"}}}"#);
        assert_eq!((code, field.as_deref()), (ErrorCode::InvalidInput, Some("state")));
    }

    #[test]
    fn hostile_input_never_panics() {
        let deep = "[".repeat(10_000);
        let inputs = [
            deep.as_str(),
            "{\"event\":\"ping\",\"data\":{},\"data\":5}",
            "{\"ref\":1e999}",
            "\u{0}",
            "{\"event\":\"chat:create\",\"data\":{\"chat_id\":\"c\",\"members\":[1,2]}}",
        ];
        for i in inputs {
            let _ = decode(i, &LIMITS);
        }
    }
}
