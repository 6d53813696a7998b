//! `huddle serve --demo`: the demo page at `/` (files embedded in the
//! binary) and `POST /demo/token`, which hands anyone a token. Insecure by
//! design; the server logs a warning when it is on, and without `--demo`
//! neither route exists.

use actix_web::{web, HttpResponse};
use huddle_actors::document::{DocumentRoom, ShareDocument};
use huddle_actors::ids::{DocumentId, UserId};
use huddle_actors::model::{Grant, Role};
use huddle_actors::protocol::fields::{self, Fields};
use huddle_actors::protocol::{ErrorCode, WireError};
use huddle_actors::registry::call_room;
use serde_json::{json, Map, Value};

use crate::routes::api::ApiError;
use crate::routes::AppState;

const INDEX: &str = include_str!("../../clients/demo/index.html");
const APP_JS: &str = include_str!("../../clients/demo/app.js");
const CLIENT_JS: &str = include_str!("../../clients/demo/huddle.js");
const STYLE: &str = include_str!("../../clients/demo/style.css");

/// The document the page opens unless it asks for another.
const DEMO_DOCUMENT: &str = "demo";
/// Owner of documents the demo creates, so that no visitor can lock the
/// others out.
const DEMO_OWNER: &str = "huddle-demo";
/// Demo tokens are short-lived; the page fetches new ones as needed.
const TOKEN_TTL_S: i64 = 3600;
const MAX_NAME_CHARS: usize = 40;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| async { file(INDEX, "text/html; charset=utf-8") }))
        .route("/app.js", web::get().to(|| async { file(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/huddle.js", web::get().to(|| async { file(CLIENT_JS, "text/javascript; charset=utf-8") }))
        .route("/style.css", web::get().to(|| async { file(STYLE, "text/css; charset=utf-8") }))
        .route("/demo/token", web::post().to(token));
}

fn file(body: &'static str, content_type: &str) -> HttpResponse {
    HttpResponse::Ok().content_type(content_type).insert_header(("cache-control", "no-cache")).body(body)
}

/// A user id from a display name: lower-case letters, digits and dashes,
/// so that the same name is the same user (two windows, one person).
fn user_id_for(name: &str) -> Option<String> {
    let mut id = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('-') && !id.is_empty() {
            id.push('-');
        }
    }
    let id = id.trim_end_matches('-').to_owned();
    (!id.is_empty()).then_some(id)
}

/// `{name, document_id?}` → `{token, user_id}`; the user may edit the
/// document (created on first use).
async fn token(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let map: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ApiError(WireError::new(ErrorCode::InvalidInput, "send {\"name\": \"...\"}"))),
    };
    fields::refuse_nul(&map)?;
    let f = Fields(&map);
    let name = f.str("name")?.trim().to_owned();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError(WireError::invalid("name", "name must be at most 40 characters")));
    }
    let user = user_id_for(&name)
        .and_then(|u| UserId::parse(&u).ok())
        .ok_or_else(|| ApiError(WireError::invalid("name", "name needs at least one letter or digit")))?;
    let document = match f.opt_str("document_id")? {
        Some(_) => f.document_id()?,
        None => DocumentId::parse(DEMO_DOCUMENT).map_err(|e| ApiError(WireError::invalid("document_id", e.to_string())))?,
    };
    let owner = UserId::parse(DEMO_OWNER).map_err(|e| ApiError(WireError::invalid("name", e.to_string())))?;
    let doc = document.clone();
    let created = state.deps.db.run(move |s| s.create_document(&doc, "Shared notes", "", &owner)).await;
    match created {
        Ok(_) => {}
        Err(e) if e.code == ErrorCode::AlreadyExists => {}
        Err(e) => return Err(ApiError(e)),
    }
    let share = ShareDocument { by: None, requester: None, user_id: user.clone(), grant: Grant::Role(Role::Editor) };
    call_room::<DocumentRoom, _>(&state.deps.registry, document, share).await??;
    let token = crate::auth::mint(&state.jwt, user.as_str(), Some(&name), TOKEN_TTL_S)
        .map_err(|e| ApiError(WireError::new(ErrorCode::InternalError, e)))?;
    Ok(HttpResponse::Ok().json(json!({ "token": token, "user_id": user })))
}

#[cfg(test)]
mod tests {
    use super::user_id_for;

    #[test]
    fn names_become_stable_user_ids() {
        assert_eq!(user_id_for("Alice").as_deref(), Some("alice"));
        assert_eq!(user_id_for("  Mary Ann O'Neil ").as_deref(), Some("mary-ann-o-neil"));
        assert_eq!(user_id_for("Zoë").as_deref(), Some("zoë"));
        assert_eq!(user_id_for("!!!"), None);
    }
}
