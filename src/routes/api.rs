//! The server-to-server HTTP API under `/api`, for backends that create
//! documents and chats, change access and publish messages. Writes go
//! through the same room actors as WebSocket requests, so live rooms see
//! them in the same order and with the same pushes.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::{ready, Ready};
use huddle_actors::chat::{ChatRoom, PostMessage};
use huddle_actors::document::{DocumentRoom, ShareDocument};
use huddle_actors::ids::{ChatId, DocumentId, RoomName, Seq, UserId, Version};
use huddle_actors::members::PresenceQuery;
use huddle_actors::protocol::fields::Fields;
use huddle_actors::protocol::request::{
    DOCUMENT_HISTORY_LIMIT_DEFAULT, DOCUMENT_HISTORY_LIMIT_MAX, HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, MAX_SAFE_INTEGER,
    PRESENCE_LIMIT_DEFAULT, PRESENCE_LIMIT_MAX,
};
use huddle_actors::protocol::{ErrorCode, WireError};
use huddle_actors::registry::{call_room, DisconnectUser};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::routes::body::{BodyLimit, JsonObject};
pub use crate::routes::errors::ApiError;
use crate::routes::{bearer, AppState};

pub fn configure(cfg: &mut web::ServiceConfig, limit: BodyLimit) {
    // Resources with method routes, so that another method on a known path
    // is a 405 with `Allow`; unknown paths fall to the app's JSON 404.
    cfg.service(
        web::scope("/api")
            .app_data(limit.json_config())
            .service(web::resource("/documents").post(create_document))
            .service(web::resource("/documents/{id}").get(get_document))
            .service(web::resource("/documents/{id}/access/{user_id}").put(set_access))
            .service(web::resource("/documents/{id}/history").get(document_history))
            .service(web::resource("/chats").post(create_chat))
            .service(web::resource("/chats/{id}/messages").post(publish).get(history))
            .service(web::resource("/users/{user_id}/connections").delete(disconnect_user))
            .service(web::resource("/rooms/{room}/presence").get(room_presence)),
    );
}

type ApiResult = Result<HttpResponse, ApiError>;

/// A request that carried the API key. Every handler takes it first: its
/// refusal comes before any other extractor reads the body, so a client
/// without the key never makes the server hold a body.
struct Authorized;

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Authorized, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.app_data::<web::Data<AppState>>() {
            Some(state) => authorize(state, req).map(|()| Authorized),
            None => Err(ApiError(WireError::internal("api", &"no AppState"))),
        })
    }
}

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

fn path_id<T>(raw: &str, field: &'static str, parse: fn(&str) -> Result<T, huddle_actors::ids::InvalidId>) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError(WireError::invalid(field, format!("{field} {e}"))))
}

async fn create_document(_: Authorized, state: web::Data<AppState>, JsonObject(map): JsonObject) -> ApiResult {
    let f = Fields(&map);
    let limits = state.deps.settings.decode_limits();
    let (id, owner) = (f.document_id()?, f.user_id("owner")?);
    let title = f.opt_str("title")?.unwrap_or_default().to_owned();
    let content = f.document_content(false, &limits)?;
    let document = state.deps.db.run(move |s| s.create_document(&id, &title, &content, &owner)).await?;
    Ok(HttpResponse::Created().json(json!({ "document": document })))
}

async fn get_document(_: Authorized, state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let id = path_id(&path, "document_id", DocumentId::parse)?;
    let document = state.deps.db.run(move |s| s.document(&id)).await?;
    Ok(HttpResponse::Ok().json(json!({ "document": document })))
}

async fn set_access(
    _: Authorized,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    JsonObject(map): JsonObject,
) -> ApiResult {
    let (raw_id, raw_user) = path.into_inner();
    let id = path_id(&raw_id, "document_id", DocumentId::parse)?;
    let user_id = path_id(&raw_user, "user_id", UserId::parse)?;
    let grant = Fields(&map).grant()?;
    let share = ShareDocument { by: None, requester: None, user_id: user_id.clone(), grant };
    call_room::<DocumentRoom, _>(&state.deps.registry, id.clone(), share).await??;
    Ok(HttpResponse::Ok().json(json!({ "document_id": id, "user_id": user_id, "role": grant })))
}

async fn create_chat(_: Authorized, state: web::Data<AppState>, JsonObject(map): JsonObject) -> ApiResult {
    let f = Fields(&map);
    let id = f.chat_id()?;
    let private = f.opt_bool("private")?.unwrap_or(false);
    let members = f.user_ids("members")?;
    let chat = state.deps.db.run(move |s| s.create_chat(&id, private, &members, None)).await?;
    Ok(HttpResponse::Created().json(json!({ "chat": chat })))
}

async fn publish(
    _: Authorized,
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonObject(map): JsonObject,
) -> ApiResult {
    let id = path_id(&path, "chat_id", ChatId::parse)?;
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

/// A query parameter (the last one given; empty is absent).
fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// An integer query parameter within `min..=max`.
fn int_param(query: &[(String, String)], name: &'static str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
    match param(query, name).map(str::parse::<i64>) {
        None => Ok(None),
        Some(Ok(n)) if (min..=max).contains(&n) => Ok(Some(n)),
        Some(_) => Err(ApiError(WireError::invalid(name, format!("{name} must be an integer from {min} to {max}")))),
    }
}

async fn history(
    _: Authorized,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> ApiResult {
    let id = path_id(&path, "chat_id", ChatId::parse)?;
    let before = int_param(&query, "before_seq", 1, MAX_SAFE_INTEGER as i64)?.map(Seq);
    let limit = int_param(&query, "limit", 1, HISTORY_LIMIT_MAX)?.unwrap_or(HISTORY_LIMIT_DEFAULT);
    let page = state.deps.db.read(move |s| s.history(&id, None, before, limit)).await?;
    Ok(HttpResponse::Ok().json(json!({ "messages": page.messages, "has_more": page.has_more })))
}

/// Closes every connection of the user, on every node, with 4003. `closed`
/// counts this node's and those of the nodes that answered in time (see
/// `cluster::node::DISCONNECT_WAIT`).
async fn disconnect_user(_: Authorized, state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let user_id = path_id(&path, "user_id", UserId::parse)?;
    let elsewhere = async {
        match &state.cluster {
            Some(link) => link.disconnect_user(&user_id).await,
            None => 0,
        }
    };
    let here = state.deps.registry.send(DisconnectUser { user_id: user_id.clone() });
    let (here, elsewhere) = tokio::join!(here, elsewhere);
    let closed = here.map_err(WireError::from)? + elsewhere;
    Ok(HttpResponse::Ok().json(json!({ "closed": closed })))
}

/// `{members, has_more, member_count}`: a page of the users present in the
/// room (ascending `user_id`, after `after_user_id`), on every node. The
/// room's actor on this node answers (started for the question if it was
/// not open: in cluster mode it reads the other nodes' presence as it
/// starts); a room nobody is in answers an empty page, whether or not it
/// exists.
async fn room_presence(
    _: Authorized,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> ApiResult {
    let room = path_id(&path, "room", RoomName::parse)?;
    let after_user_id = param(&query, "after_user_id")
        .map(|u| UserId::parse(u).map_err(|e| ApiError(WireError::invalid("after_user_id", format!("after_user_id {e}")))))
        .transpose()?;
    let limit = int_param(&query, "limit", 1, PRESENCE_LIMIT_MAX)?.unwrap_or(PRESENCE_LIMIT_DEFAULT) as usize;
    let ask = PresenceQuery { after_user_id, limit };
    let registry = &state.deps.registry;
    let reply = match room {
        RoomName::Chat(id) => call_room::<ChatRoom, _>(registry, id, ask).await?,
        RoomName::Document(id) => call_room::<DocumentRoom, _>(registry, id, ask).await?,
    };
    Ok(HttpResponse::Ok().json(reply))
}

/// `GET /api/documents/{id}/history?after_version=&limit=`: as
/// `documents:history`, read as the server.
async fn document_history(
    _: Authorized,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> ApiResult {
    let id = path_id(&path, "document_id", DocumentId::parse)?;
    let after = Version(int_param(&query, "after_version", 0, MAX_SAFE_INTEGER as i64)?.unwrap_or(0));
    let limit = int_param(&query, "limit", 1, DOCUMENT_HISTORY_LIMIT_MAX)?.unwrap_or(DOCUMENT_HISTORY_LIMIT_DEFAULT);
    let page = state.deps.db.read(move |s| s.document_history(&id, None, after, limit)).await?;
    Ok(HttpResponse::Ok().json(json!({ "changes": page.changes, "has_more": page.has_more })))
}
