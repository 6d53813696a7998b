//! The server-to-server HTTP API under `/api`, for backends that create
//! documents and chats, change access and publish messages. Writes go
//! through the same room actors as WebSocket requests, so live rooms see
//! them in the same order and with the same pushes.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use huddle_actors::chat::{ChatRoom, PostMessage};
use huddle_actors::document::{DocumentRoom, ShareDocument};
use huddle_actors::ids::{ChatId, DocumentId, Seq, UserId};
use huddle_actors::protocol::fields::Fields;
use huddle_actors::protocol::request::{HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, MAX_SAFE_INTEGER};
use huddle_actors::protocol::{ErrorCode, WireError};
use huddle_actors::registry::call_room;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

use crate::routes::{bearer, error_response, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route("/documents", web::post().to(create_document))
            .route("/documents/{id}", web::get().to(get_document))
            .route("/documents/{id}/access/{user_id}", web::put().to(set_access))
            .route("/chats", web::post().to(create_chat))
            .route("/chats/{id}/messages", web::post().to(publish))
            .route("/chats/{id}/messages", web::get().to(history))
            .default_service(web::to(|| async {
                ApiError(WireError::new(ErrorCode::NotFound, "no such API route")).error_response()
            })),
    );
}

/// An API failure, rendered as `{code, message, details?}`.
#[derive(Debug)]
pub struct ApiError(pub WireError);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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

type ApiResult = Result<HttpResponse, ApiError>;

/// Checks `Authorization: Bearer <api key>` in constant time.
fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(key) = &state.api_key else {
        return Err(ApiError(WireError::new(
            ErrorCode::Unauthenticated,
            "the HTTP API is disabled: start the server with HUDDLE_API_KEY (or --api-key) set to enable it",
        )));
    };
    match bearer(req) {
        Some(given) if bool::from(given.as_bytes().ct_eq(key.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError(WireError::new(ErrorCode::Unauthenticated, "wrong API key"))),
        None => Err(ApiError(WireError::new(ErrorCode::Unauthenticated, "send Authorization: Bearer <api key>"))),
    }
}

/// The request body as a JSON object.
fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError(WireError::new(ErrorCode::InvalidInput, "the body must be a JSON object"))),
        Err(e) => Err(ApiError(WireError::new(ErrorCode::InvalidInput, format!("the body is not valid JSON: {e}")))),
    }
}

fn path_id<T>(raw: &str, field: &'static str, parse: fn(&str) -> Result<T, huddle_actors::ids::InvalidId>) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError(WireError::invalid(field, format!("{field} {e}"))))
}

async fn create_document(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> ApiResult {
    authorize(&state, &req)?;
    let map = object(&body)?;
    let f = Fields(&map);
    let limits = state.deps.settings.decode_limits();
    let (id, owner) = (f.document_id()?, f.user_id("owner")?);
    let title = f.opt_str("title")?.unwrap_or_default().to_owned();
    let content = f.document_content(false, &limits)?;
    let document = state.deps.db.run(move |s| s.create_document(&id, &title, &content, &owner)).await?;
    Ok(HttpResponse::Created().json(json!({ "document": document })))
}

async fn get_document(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> ApiResult {
    authorize(&state, &req)?;
    let id = path_id(&path, "document_id", DocumentId::parse)?;
    let document = state.deps.db.run(move |s| s.document(&id)).await?;
    Ok(HttpResponse::Ok().json(json!({ "document": document })))
}

async fn set_access(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> ApiResult {
    authorize(&state, &req)?;
    let (raw_id, raw_user) = path.into_inner();
    let id = path_id(&raw_id, "document_id", DocumentId::parse)?;
    let user_id = path_id(&raw_user, "user_id", UserId::parse)?;
    let map = object(&body)?;
    let grant = Fields(&map).grant()?;
    let share = ShareDocument { by: None, requester: None, user_id: user_id.clone(), grant };
    call_room::<DocumentRoom, _>(&state.deps.registry, id.clone(), share).await??;
    Ok(HttpResponse::Ok().json(json!({ "document_id": id, "user_id": user_id, "role": grant })))
}

async fn create_chat(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> ApiResult {
    authorize(&state, &req)?;
    let map = object(&body)?;
    let f = Fields(&map);
    let id = f.chat_id()?;
    let private = f.opt_bool("private")?.unwrap_or(false);
    let members = f.user_ids("members")?;
    let chat = state.deps.db.run(move |s| s.create_chat(&id, private, &members, None)).await?;
    Ok(HttpResponse::Created().json(json!({ "chat": chat })))
}

async fn publish(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> ApiResult {
    authorize(&state, &req)?;
    let id = path_id(&path, "chat_id", ChatId::parse)?;
    let map = object(&body)?;
    let f = Fields(&map);
    let limits = state.deps.settings.decode_limits();
    let post = PostMessage {
        author: f.user_id("user_id")?,
        requester: None,
        content: f.message_content(&limits)?.into(),
        client_msg_id: f.client_msg_id()?,
    };
    let appended = call_room::<ChatRoom, _>(&state.deps.registry, id, post).await??;
    // A retried idempotent publish answers 200 with the stored message.
    let status = if appended.fresh { StatusCode::CREATED } else { StatusCode::OK };
    Ok(HttpResponse::build(status).json(json!({ "message": appended.message })))
}

async fn history(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> ApiResult {
    authorize(&state, &req)?;
    let id = path_id(&path, "chat_id", ChatId::parse)?;
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError(WireError::new(ErrorCode::InvalidInput, format!("bad query string: {e}"))))?;
    let int = |name: &'static str, min: i64, max: i64| -> Result<Option<i64>, ApiError> {
        match query.iter().rev().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) if v.is_empty() => Ok(None),
            Some((_, v)) => match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError(WireError::invalid(name, format!("{name} must be an integer from {min} to {max}")))),
            },
        }
    };
    let before = int("before_seq", 1, MAX_SAFE_INTEGER as i64)?.map(Seq);
    let limit = int("limit", 1, HISTORY_LIMIT_MAX)?.unwrap_or(HISTORY_LIMIT_DEFAULT);
    let page = state.deps.db.run(move |s| s.history(&id, None, before, limit)).await?;
    Ok(HttpResponse::Ok().json(json!({ "messages": page.messages, "has_more": page.has_more })))
}
