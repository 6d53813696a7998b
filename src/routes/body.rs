//! Request bodies: what a route accepts as a JSON body (its content type,
//! its size) and [`JsonObject`], the extractor every handler with a body
//! uses. Refusals are mapped in [`crate::routes::errors`].
//!
//! Content type: `application/json` (or any `+json` type), or none at all,
//! for clients that send a bare body. Anything else, `text/plain` and the
//! `application/x-www-form-urlencoded` that `curl -d` sends included, is 400
//! `INVALID_INPUT` naming the type expected.
//!
//! Size: the body is read up to its route's limit, then refused with 413
//! `PAYLOAD_TOO_LARGE`. The limits are chosen so that every request the
//! field checks would accept fits: a document slightly above
//! `max_document_bytes` gets the field's own refusal (`details.field:
//! "content"`), not the body's.

use actix_web::dev::Payload;
use actix_web::mime;
use actix_web::web::{Json, JsonConfig};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::{ready, Either, FutureExt, Map as MapFuture, Ready};
use huddle_actors::config::Settings;
use huddle_actors::protocol::fields::refuse_nul;
use huddle_actors::protocol::{ErrorCode, WireError};
use serde_json::{Map, Value};

use crate::routes::errors::{json_error, wrong_content_type, ApiError};

/// JSON may escape one byte of content as six (`\u0001`): a document of
/// `max_document_bytes` can need six times that in a request body.
const JSON_BYTES_PER_CONTENT_BYTE: usize = 6;
/// Chat messages are counted in characters, and one character may be
/// escaped as a surrogate pair (`\ud83d\ude00`): twelve bytes.
const JSON_BYTES_PER_MESSAGE_CHAR: usize = 12;
/// Room for everything in an `/api` body besides its one large field: ids
/// (at most 128 characters, escaped too), a title, a member list, the JSON
/// around them.
const API_BODY_ALLOWANCE: usize = 64 * 1024;
/// Bodies outside `/api` are small: the demo's sign-in carries a name of at
/// most 40 characters and a document id.
pub const SMALL_BODY_LIMIT: usize = 4 * 1024;

/// A route's body limit, and what to tell a client above it.
#[derive(Clone, Debug)]
pub struct BodyLimit {
    pub bytes: usize,
    /// The setting the limit follows, with how it follows it.
    pub follows: Option<(&'static str, &'static str)>,
}

impl BodyLimit {
    /// The limit of every `/api` route: the largest document or message
    /// the settings allow, fully escaped, plus the rest of the request.
    /// With the defaults (1 MiB documents) that is 6 MiB + 64 KiB, held
    /// only for requests that carry the API key.
    pub fn api(settings: &Settings) -> BodyLimit {
        let document = settings.max_document_bytes.saturating_mul(JSON_BYTES_PER_CONTENT_BYTE);
        let message = settings.max_message_chars.saturating_mul(JSON_BYTES_PER_MESSAGE_CHAR);
        let follows = if document >= message {
            ("max_document_bytes", "6 bytes of JSON per byte of content, plus 64 KiB")
        } else {
            ("max_message_chars", "12 bytes of JSON per character, plus 64 KiB")
        };
        BodyLimit { bytes: document.max(message).saturating_add(API_BODY_ALLOWANCE), follows: Some(follows) }
    }

    pub fn small() -> BodyLimit {
        BodyLimit { bytes: SMALL_BODY_LIMIT, follows: None }
    }

    /// The extractor configuration for routes with this limit.
    pub fn json_config(self) -> JsonConfig {
        JsonConfig::default()
            .limit(self.bytes)
            // Checked by JsonObject, which accepts a missing Content-Type.
            .content_type_required(false)
            .error_handler(move |e, _| ApiError(json_error(&e, &self)).into())
    }

    /// The 413 for a body of `length` bytes (unknown when chunked).
    pub fn refusal(&self, length: Option<usize>) -> WireError {
        let size = length.map_or_else(|| "the request body".to_owned(), |n| format!("the request body ({n} bytes)"));
        let limit = format!("{size} is above this route's limit of {} bytes", self.bytes);
        let Some((setting, rule)) = self.follows else {
            return WireError::new(ErrorCode::PayloadTooLarge, limit);
        };
        let mut e = WireError::new(ErrorCode::PayloadTooLarge, format!("{limit}, which follows {setting} ({rule})"));
        e.details.limit = Some(setting);
        e
    }
}

/// A request body that is a JSON object, read within the route's limit,
/// with no U+0000 anywhere in it (the rule WebSocket frames follow).
pub struct JsonObject(pub Map<String, Value>);

type Parsed = Result<Json<Map<String, Value>>, actix_web::Error>;
type ObjectFuture = MapFuture<<Json<Map<String, Value>> as FromRequest>::Future, fn(Parsed) -> Result<JsonObject, actix_web::Error>>;

impl FromRequest for JsonObject {
    type Error = actix_web::Error;
    type Future = Either<Ready<Result<JsonObject, actix_web::Error>>, ObjectFuture>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if let Err(e) = json_content_type(req) {
            return Either::Left(ready(Err(ApiError(e).into())));
        }
        let into: fn(Parsed) -> Result<JsonObject, actix_web::Error> = |parsed| {
            let map = parsed?.into_inner();
            refuse_nul(&map).map_err(ApiError)?;
            Ok(JsonObject(map))
        };
        Either::Right(Json::<Map<String, Value>>::from_request(req, payload).map(into))
    }
}

fn json_content_type(req: &HttpRequest) -> Result<(), WireError> {
    match req.mime_type() {
        // No type at all: taken as JSON, as the body is parsed anyway.
        Ok(None) => Ok(()),
        Ok(Some(m)) if m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON) => Ok(()),
        _ => {
            let given = req.headers().get(actix_web::http::header::CONTENT_TYPE);
            Err(wrong_content_type(&String::from_utf8_lossy(given.map_or(&b""[..], |v| v.as_bytes()))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_limit_holds_the_largest_escaped_document() {
        let settings = Settings { max_document_bytes: 1_048_576, max_message_chars: 4000, ..Settings::default() };
        let limit = BodyLimit::api(&settings);
        let content = "\u{1}".repeat(settings.max_document_bytes);
        let body = serde_json::json!({ "document_id": "d".repeat(128), "owner": "o".repeat(128), "content": content });
        assert!(body.to_string().len() <= limit.bytes);
        assert_eq!(limit.follows.map(|f| f.0), Some("max_document_bytes"));
    }

    #[test]
    fn a_long_message_limit_raises_the_api_limit() {
        let settings = Settings { max_document_bytes: 100, max_message_chars: 100_000, ..Settings::default() };
        let limit = BodyLimit::api(&settings);
        let body = serde_json::json!({ "user_id": "u", "content": "\u{1F600}".repeat(100_000) });
        let escaped = body.to_string().replace('\u{1F600}', "\\ud83d\\ude00");
        assert!(escaped.len() <= limit.bytes);
        assert_eq!(limit.follows.map(|f| f.0), Some("max_message_chars"));
    }
}
