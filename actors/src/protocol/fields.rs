//! Typed, validated reads of a JSON object's fields, shared by the frame
//! decoder and the HTTP API so that both name the offending field the same
//! way; and the one U+0000 rule ([`refuse_nul`]) both apply first.

use serde_json::{Map, Value};

use crate::ids::{ChatId, DocumentId, InvalidId, RoomName, UserId};
use crate::model::{Grant, Role};
use crate::ot::Operation;
use crate::protocol::error::{ErrorCode, WireError};
use crate::protocol::request::{AwarenessState, DecodeLimits};

/// Longest `client_msg_id`, in characters.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;
/// Longest `op_id`, in characters (the same rule as `client_msg_id`).
pub const MAX_OP_ID_CHARS: usize = 64;

/// Longest field name shown back in an error about a field the engine does
/// not know (the name is the client's, and could be a megabyte long).
const MAX_SHOWN_NAME_CHARS: usize = 64;

/// Refuses U+0000 (NUL) anywhere in `data`: in any string, at any depth,
/// in keys too, known fields or not. PostgreSQL cannot store NUL in text,
/// so the rule is decided here, once, and is the same on every database;
/// nothing past the edge ever sees a NUL from a client. The error names
/// the top-level field that holds it. Recursion is bounded by serde_json's
/// nesting limit (128).
pub fn refuse_nul(data: &Map<String, Value>) -> Result<(), WireError> {
    for (name, value) in data {
        if name.contains('\0') || has_nul(value) {
            let shown: String = name.chars().filter(|c| *c != '\0').take(MAX_SHOWN_NAME_CHARS).collect();
            return Err(WireError::invalid(shown.clone(), format!("{shown} must not contain U+0000 (NUL)")));
        }
    }
    Ok(())
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Typed access to the fields of `data`. A `null` optional field counts as
/// absent; a `null` required field as missing.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &'static str) -> Result<&'a str, WireError> {
        self.opt_str(name)?
            .ok_or_else(|| WireError::invalid(name, format!("{name} is required")))
    }

    pub fn opt_str(&self, name: &'static str) -> Result<Option<&'a str>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(WireError::invalid(name, format!("{name} must be a string"))),
        }
    }

    pub fn opt_bool(&self, name: &'static str) -> Result<Option<bool>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(WireError::invalid(name, format!("{name} must be true or false"))),
        }
    }

    /// An integer literal in `min..=max` (`5.0` is not an integer literal).
    pub fn opt_int(&self, name: &'static str, min: u64, max: u64) -> Result<Option<i64>, WireError> {
        let out_of_range = || WireError::invalid(name, format!("{name} must be an integer from {min} to {max}"));
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) if !n.is_f64() => match n.as_u64() {
                Some(i) if (min..=max).contains(&i) => Ok(Some(i as i64)),
                _ => Err(out_of_range()),
            },
            Some(_) => Err(out_of_range()),
        }
    }

    pub fn token(&self) -> Result<String, WireError> {
        let t = self.str("token")?;
        if t.is_empty() {
            return Err(WireError::invalid("token", "token must not be empty"));
        }
        Ok(t.to_owned())
    }

    pub fn id<T>(&self, name: &'static str, parse: fn(&str) -> Result<T, InvalidId>) -> Result<T, WireError> {
        let s = self.str(name)?;
        parse(s).map_err(|e| WireError::invalid(name, format!("{name} {e}")))
    }

    pub fn document_id(&self) -> Result<DocumentId, WireError> {
        self.id("document_id", DocumentId::parse)
    }

    pub fn chat_id(&self) -> Result<ChatId, WireError> {
        self.id("chat_id", ChatId::parse)
    }

    pub fn user_id(&self, name: &'static str) -> Result<UserId, WireError> {
        self.id(name, UserId::parse)
    }

    pub fn opt_user_id(&self, name: &'static str) -> Result<Option<UserId>, WireError> {
        if self.get(name).is_none() {
            return Ok(None);
        }
        self.user_id(name).map(Some)
    }

    /// `room`: a room's full name, `chat:<id>` or `document:<id>`.
    pub fn room(&self) -> Result<RoomName, WireError> {
        self.id("room", RoomName::parse)
    }

    /// `state`: a JSON object within `max_awareness_bytes`, or `null`
    /// (clear). Unlike other optional fields, leaving it out is an error:
    /// `null` says "clear" on purpose.
    pub fn awareness_state(&self, limits: &DecodeLimits) -> Result<Option<AwarenessState>, WireError> {
        match self.0.get("state") {
            None => Err(WireError::invalid("state", "state is required: a JSON object, or null to clear")),
            Some(Value::Null) => Ok(None),
            Some(Value::Object(object)) => AwarenessState::from_object(object, limits.max_awareness_bytes).map(Some),
            Some(_) => Err(WireError::invalid("state", "state must be a JSON object, or null to clear")),
        }
    }

    pub fn user_ids(&self, name: &'static str) -> Result<Vec<UserId>, WireError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                let mut ids = Vec::with_capacity(items.len());
                for item in items {
                    let id = item
                        .as_str()
                        .and_then(|s| UserId::parse(s).ok())
                        .ok_or_else(|| {
                            WireError::invalid(name, format!("{name} must be a list of user ids (1 to 128 characters)"))
                        })?;
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                Ok(ids)
            }
            Some(_) => Err(WireError::invalid(name, format!("{name} must be a list of user ids"))),
        }
    }

    /// A document's `content` within `max_document_bytes` (UTF-8 bytes).
    pub fn document_content(&self, required: bool, limits: &DecodeLimits) -> Result<String, WireError> {
        let content = if required { self.str("content")? } else { self.opt_str("content")?.unwrap_or_default() };
        if content.len() > limits.max_document_bytes {
            let mut e = WireError::new(
                ErrorCode::PayloadTooLarge,
                format!("content is {} bytes; max_document_bytes is {}", content.len(), limits.max_document_bytes),
            );
            e.details.field = Some("content".into());
            return Err(e);
        }
        Ok(content.to_owned())
    }

    /// A chat message's `content`: 1 to `max_message_chars` characters.
    pub fn message_content(&self, limits: &DecodeLimits) -> Result<String, WireError> {
        let content = self.str("content")?;
        let chars = content.chars().count();
        if chars == 0 {
            return Err(WireError::invalid("content", "content must not be empty"));
        }
        if chars > limits.max_message_chars {
            let mut e = WireError::new(
                ErrorCode::PayloadTooLarge,
                format!("content has {chars} characters; max_message_chars is {}", limits.max_message_chars),
            );
            e.details.field = Some("content".into());
            return Err(e);
        }
        Ok(content.to_owned())
    }

    /// An optional `client_msg_id` of 1 to 64 characters.
    pub fn client_msg_id(&self) -> Result<Option<String>, WireError> {
        self.idempotency_key("client_msg_id", MAX_CLIENT_MSG_ID_CHARS)
    }

    /// An optional `op_id` of 1 to 64 characters.
    pub fn op_id(&self) -> Result<Option<String>, WireError> {
        self.idempotency_key("op_id", MAX_OP_ID_CHARS)
    }

    fn idempotency_key(&self, name: &'static str, max: usize) -> Result<Option<String>, WireError> {
        let Some(id) = self.opt_str(name)? else { return Ok(None) };
        let n = id.chars().count();
        if n == 0 || n > max {
            return Err(WireError::invalid(name, format!("{name} must be 1 to {max} characters")));
        }
        Ok(Some(id.to_owned()))
    }

    /// The `ops` of `documents:op`, decoded and normalised. Text it inserts
    /// beyond `max_document_bytes` can never fit a document: refused here,
    /// before anything holds it.
    pub fn ops(&self, limits: &DecodeLimits) -> Result<Operation, WireError> {
        let value = self.get("ops").ok_or_else(|| WireError::invalid("ops", "ops is required"))?;
        let op = Operation::from_json(value)?;
        if op.inserted_bytes() > limits.max_document_bytes {
            return Err(crate::ot::OpError::TooLarge { max: limits.max_document_bytes }.into());
        }
        Ok(op)
    }

    /// `role`: owner, editor, viewer, or none (revoke).
    pub fn grant(&self) -> Result<Grant, WireError> {
        match self.str("role")? {
            "none" => Ok(Grant::Revoke),
            other => Role::parse(other)
                .map(Grant::Role)
                .ok_or_else(|| WireError::invalid("role", "role must be owner, editor, viewer or none")),
        }
    }
}
