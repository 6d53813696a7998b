//! Every HTTP error is JSON `{code, message, details?}`, whichever layer
//! produces it. This module is the one place that says how:
//! - [`ApiError`] and [`error_response`]: a [`WireError`] as a response,
//!   with the status of its code;
//! - [`json_error`], [`query_config`], [`path_config`]: actix-web's
//!   extractor failures (a body above its limit, malformed JSON, a bad
//!   query string or path) as wire errors;
//! - [`not_found`]: the default service, a JSON 404 for any unknown route;
//! - [`json_errors`]: a middleware for the rest. actix-web answers a known
//!   path asked with another method by an empty 405 (with `Allow`); that
//!   becomes JSON here, `Allow` kept, and so does any other error response
//!   that left a layer as something else than JSON (its text, or the reason
//!   phrase it set, becomes the message).

use actix_web::body::{to_bytes_limited, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::web::{PathConfig, QueryConfig};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use huddle_actors::protocol::{Details, ErrorCode, WireError};
use serde::Serialize;

use crate::routes::body::BodyLimit;

/// The longest client-sent text (a path, a content type) echoed in a
/// message: enough to recognise it, not a way to make errors large.
const ECHO_MAX_CHARS: usize = 120;
/// The most of a non-JSON error body read to become a message; error
/// bodies of the framework are one line.
const FOREIGN_BODY_MAX_BYTES: usize = 1024;

/// An HTTP failure, rendered as `{code, message, details?}`.
#[derive(Debug)]
pub struct ApiError(pub WireError);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.0.code)
    }
    fn error_response(&self) -> HttpResponse {
        error_response(&self.0, None)
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError(e)
    }
}

#[derive(Serialize)]
struct HttpError<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    details: &'a Details,
}

fn is_empty(d: &&Details) -> bool {
    **d == Details::default()
}

fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An error as an HTTP response: `{code, message, details?}` with the
/// code's status (or `status` when given).
pub fn error_response(e: &WireError, status: Option<StatusCode>) -> HttpResponse {
    HttpResponse::build(status.unwrap_or_else(|| status_of(e.code))).json(HttpError {
        code: e.code,
        message: &e.message,
        details: &e.details,
    })
}

/// At most [`ECHO_MAX_CHARS`] of something the client sent.
fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_MAX_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// A body sent with a content type that is not JSON.
pub fn wrong_content_type(given: &str) -> WireError {
    let hint = if given.starts_with("application/x-www-form-urlencoded") {
        " (curl -d sends that type: add -H 'Content-Type: application/json', or use curl --json)"
    } else {
        ""
    };
    WireError::new(
        ErrorCode::InvalidInput,
        format!(
            "the body must be JSON sent as Content-Type: application/json; this request has Content-Type: {}{hint}",
            echo(given)
        ),
    )
}

/// A JSON body extractor's failure, for a route whose body limit is
/// `limit`.
pub fn json_error(e: &JsonPayloadError, limit: &BodyLimit) -> WireError {
    match e {
        JsonPayloadError::OverflowKnownLength { length, .. } => limit.refusal(Some(*length)),
        JsonPayloadError::Overflow { .. } => limit.refusal(None),
        // JsonObject checks the type itself (it accepts none at all).
        JsonPayloadError::ContentType => {
            WireError::new(ErrorCode::InvalidInput, "the body must be JSON sent as Content-Type: application/json")
        }
        // The handlers read bodies as JSON objects, so a body that parses
        // but does not fit is one that is not an object.
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            WireError::new(ErrorCode::InvalidInput, "the body must be a JSON object")
        }
        JsonPayloadError::Deserialize(e) => {
            WireError::new(ErrorCode::InvalidInput, format!("the body is not valid JSON: {e}"))
        }
        JsonPayloadError::Payload(e) => {
            WireError::new(ErrorCode::InvalidInput, format!("the body could not be read: {e}"))
        }
        other => WireError::new(ErrorCode::InvalidInput, format!("the body could not be used: {other}")),
    }
}

/// `web::Query` extractors: a query string that does not decode.
pub fn query_config() -> QueryConfig {
    QueryConfig::default().error_handler(|e: QueryPayloadError, _| {
        ApiError(WireError::new(ErrorCode::InvalidInput, format!("bad query string: {e}"))).into()
    })
}

/// `web::Path` extractors: a path segment that does not decode (a
/// percent-encoding that is not UTF-8, for instance).
pub fn path_config() -> PathConfig {
    PathConfig::default().error_handler(|e: PathError, _| {
        ApiError(WireError::new(ErrorCode::InvalidInput, format!("bad path: {e}"))).into()
    })
}

/// The default service: no route matches the path.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let e = WireError::new(
        ErrorCode::NotFound,
        format!("no route {} {} (GET / says what this server offers)", req.method(), echo(req.path())),
    );
    error_response(&e, None)
}

/// The middleware that makes every remaining error response JSON.
pub fn json_errors<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(ensure_json)
}

fn ensure_json<B: MessageBody + 'static>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (req, res) = res.into_parts();
    let status = res.status();
    let allow = res.headers().get(ALLOW).cloned();
    // A custom reason phrase is how actix-ws explains a refused handshake.
    let reason = res.head().reason;
    let body = res.into_body();
    Ok(ErrorHandlerResponse::Future(Box::pin(async move {
        let text = match to_bytes_limited(body, FOREIGN_BODY_MAX_BYTES).await {
            Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim().to_owned(),
            _ => String::new(),
        };
        let text = if text.is_empty() { reason.unwrap_or_default().to_owned() } else { text };
        let e = foreign_error(&req, status, allow.as_ref(), &text);
        let mut json = error_response(&e, Some(status));
        if let Some(allow) = allow {
            json.headers_mut().insert(ALLOW, allow);
        }
        Ok(ServiceResponse::new(req, json).map_into_right_body())
    })))
}

/// The wire error for an error response some layer made without us.
fn foreign_error(req: &HttpRequest, status: StatusCode, allow: Option<&HeaderValue>, text: &str) -> WireError {
    let path = echo(req.path());
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = allow.and_then(|a| a.to_str().ok()).filter(|a| !a.is_empty()).unwrap_or("none");
        // No wire code says "method": the request is malformed for this
        // path, and the status and `Allow` say the rest.
        return WireError::new(
            ErrorCode::InvalidInput,
            format!("{} is not allowed on {path}; allowed: {allowed}", req.method()),
        );
    }
    if status.is_server_error() {
        return WireError::internal(&format!("{} {path}", req.method()), &format!("{status}: {text}"));
    }
    let code = match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorCode::PermissionDenied,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        _ => ErrorCode::InvalidInput,
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("refused").to_owned() } else { echo(text) };
    WireError::new(code, message)
}
