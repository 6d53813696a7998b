//! HTTP routes: the WebSocket endpoint, health and readiness, and (when
//! enabled) the server-to-server API, metrics and the demo.

pub mod api;
mod body;
mod demo;
pub mod errors;
mod health;
mod home;
mod metrics;
pub mod ws;

use std::sync::Arc;

use actix_web::web;
use huddle_actors::session::SessionDeps;

use crate::auth::JwtConfig;
use crate::cluster::Link;
use crate::metrics::Metrics;
use crate::routes::body::BodyLimit;
pub use crate::routes::demo::NameBook;
pub use crate::routes::errors::error_response;

/// What every route can reach.
#[derive(Clone)]
pub struct AppState {
    pub deps: SessionDeps,
    pub jwt: Arc<JwtConfig>,
    pub api_key: Option<Arc<str>>,
    pub metrics_token: Option<Arc<str>>,
    /// Set with `--demo`: the names of the people the demo gave tokens to.
    pub demo: Option<Arc<NameBook>>,
    pub metrics: Arc<Metrics>,
    /// Cluster mode only: the link to the other nodes.
    pub cluster: Option<Link>,
}

/// All routes (the demo's only when `demo` is on), the extractor
/// configurations whose failures are JSON errors, and the JSON 404 for
/// everything else. The app must also be wrapped in
/// [`errors::json_errors`].
pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.app_data(BodyLimit::small().json_config())
        .app_data(errors::query_config())
        .app_data(errors::path_config());
    if state.demo.is_some() {
        cfg.configure(demo::configure);
    } else {
        cfg.configure(home::configure);
    }
    // Resources with method routes, so that another method on a known path
    // is a 405 with `Allow` rather than a 404.
    cfg.service(web::resource(ws::PATH).get(ws::not_upgraded))
        .service(web::resource("/health").get(health::health))
        .service(web::resource("/ready").get(health::ready))
        .service(web::resource("/metrics").get(metrics::metrics))
        .configure(|cfg| api::configure(cfg, BodyLimit::api(&state.deps.settings)))
        .default_service(web::to(errors::not_found));
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
