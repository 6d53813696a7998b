//! `huddle serve --demo`: the demo page at `/` (files embedded in the
//! binary), `POST /demo/token`, which hands anyone a token, and `GET
//! /demo/names`, the display names those tokens were given, so the page can
//! name people who have left. Insecure by design; the server logs a warning
//! when it is on, and without `--demo` none of these routes exists.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::{web, HttpResponse};
use huddle_actors::document::{DocumentRoom, ShareDocument};
use huddle_actors::ids::{DocumentId, UserId};
use huddle_actors::model::{Grant, Role};
use huddle_actors::protocol::fields::Fields;
use huddle_actors::protocol::{ErrorCode, WireError};
use huddle_actors::registry::call_room;
use serde_json::json;

use crate::routes::body::JsonObject;
use crate::routes::errors::ApiError;
use crate::routes::AppState;

const INDEX: &str = include_str!("../../clients/demo/index.html");
const APP_JS: &str = include_str!("../../clients/demo/app.js");
const EDITOR_JS: &str = include_str!("../../clients/demo/editor.js");
const CLIENT_JS: &str = include_str!("../../clients/demo/huddle.js");
const STYLE: &str = include_str!("../../clients/demo/style.css");
const FAVICON: &str = include_str!("../../clients/demo/favicon.svg");

/// The document the page opens unless it asks for another.
const DEMO_DOCUMENT: &str = "demo";
/// Owner of documents the demo creates, so that no visitor can lock the
/// others out.
const DEMO_OWNER: &str = "huddle-demo";
/// Demo tokens are short-lived; the page fetches new ones as needed.
const TOKEN_TTL_S: i64 = 3600;
const MAX_NAME_CHARS: usize = 40;
/// Names the server remembers for `/demo/names`: every visitor of a busy
/// demo, at about 100 bytes each. Past it, new names are not remembered
/// and the page shows those users by id.
const NAME_BOOK_CAPACITY: usize = 10_000;
/// User ids one `/demo/names` request may ask about (the page asks about
/// the authors of a join's messages, at most 50).
const NAMES_PER_REQUEST: usize = 100;

/// The display name of each user id the demo handed a token to, kept in
/// memory: a restart forgets them.
#[derive(Default)]
pub struct NameBook(Mutex<HashMap<String, String>>);

impl NameBook {
    fn remember(&self, user_id: &str, name: &str) {
        let mut book = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if book.len() < NAME_BOOK_CAPACITY || book.contains_key(user_id) {
            book.insert(user_id.to_owned(), name.to_owned());
        }
    }

    fn names<'a>(&self, user_ids: impl Iterator<Item = &'a str>) -> HashMap<String, String> {
        let book = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        user_ids.filter_map(|id| book.get(id).map(|name| (id.to_owned(), name.clone()))).collect()
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let asset = |path: &str, body: &'static str, content_type: &'static str| {
        web::resource(path.to_owned()).get(move || async move { file(body, content_type) })
    };
    cfg.service(asset("/", INDEX, "text/html; charset=utf-8"))
        .service(asset("/app.js", APP_JS, "text/javascript; charset=utf-8"))
        .service(asset("/editor.js", EDITOR_JS, "text/javascript; charset=utf-8"))
        .service(asset("/huddle.js", CLIENT_JS, "text/javascript; charset=utf-8"))
        .service(asset("/style.css", STYLE, "text/css; charset=utf-8"))
        // The page names /favicon.svg; browsers ask for /favicon.ico anyway.
        .service(asset("/favicon.svg", FAVICON, "image/svg+xml"))
        .service(asset("/favicon.ico", FAVICON, "image/svg+xml"))
        .service(web::resource("/demo/token").post(token))
        .service(web::resource("/demo/names").get(names));
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
async fn token(state: web::Data<AppState>, JsonObject(map): JsonObject) -> Result<HttpResponse, ApiError> {
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
    if let Some(book) = &state.demo {
        book.remember(user.as_str(), &name);
    }
    Ok(HttpResponse::Ok().json(json!({ "token": token, "user_id": user })))
}

/// `?user_id=a&user_id=b` → `{names: {a: "Ada"}}`: the names known for
/// those ids (unknown ones are left out).
async fn names(state: web::Data<AppState>, query: web::Query<Vec<(String, String)>>) -> Result<HttpResponse, ApiError> {
    let ids: Vec<&str> = query.iter().filter(|(k, _)| k == "user_id").map(|(_, v)| v.as_str()).collect();
    if ids.len() > NAMES_PER_REQUEST {
        return Err(ApiError(WireError::invalid("user_id", format!("ask about at most {NAMES_PER_REQUEST} user ids at once"))));
    }
    let names = state.demo.as_ref().map(|book| book.names(ids.into_iter())).unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({ "names": names })))
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
