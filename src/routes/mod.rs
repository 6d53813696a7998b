//! HTTP routes: the WebSocket endpoint, health and readiness, and (when
//! enabled) the server-to-server API, metrics and the demo.

pub mod api;
mod demo;
mod health;
mod metrics;
pub mod ws;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use huddle_actors::protocol::{Details, ErrorCode, WireError};
use huddle_actors::session::SessionDeps;
use serde::Serialize;

use crate::auth::JwtConfig;
use crate::metrics::Metrics;

/// What every route can reach.
#[derive(Clone)]
pub struct AppState {
    pub deps: SessionDeps,
    pub jwt: Arc<JwtConfig>,
    pub api_key: Option<Arc<str>>,
    pub metrics_token: Option<Arc<str>>,
    pub demo: bool,
    pub metrics: Arc<Metrics>,
}

/// All routes; the demo ones only when `demo` is on.
pub fn configure(cfg: &mut web::ServiceConfig, demo: bool) {
    if demo {
        cfg.configure(demo::configure);
    }
    cfg.route(ws::PATH, web::get().to(ws::not_upgraded))
        .route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(metrics::metrics))
        .configure(api::configure);
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(req: &actix_web::HttpRequest) -> Option<&str> {
    bearer_token(req.headers())
}

pub fn bearer_token(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    let value = headers.get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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

/// An error as an HTTP response: `{code, message, details?}` with the
/// code's status (or `status` when given).
pub fn error_response(e: &WireError, status: Option<StatusCode>) -> HttpResponse {
    let status = status
        .or_else(|| StatusCode::from_u16(e.code.http_status()).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(HttpError { code: e.code, message: &e.message, details: &e.details })
}
