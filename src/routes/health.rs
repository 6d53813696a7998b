//! Liveness and readiness probes (no authentication).

use actix_web::{web, HttpResponse};
use huddle_actors::protocol::WireError;

use crate::routes::{error_response, AppState};

/// The process is up.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The database takes writes (and, in cluster mode, the Redis link is
/// up): 200, or 503 `SERVER_BUSY` with `details.reason` while a condition
/// of the machine lasts (see `db::health`), or `redis_unreachable`.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = state.deps.db.run(|s| s.ping()).await {
        return error_response(&e, None);
    }
    if let Some(link) = &state.cluster {
        if !link.is_up() {
            let mut e = WireError::busy("Redis is unreachable: this node cannot hear the others; retry shortly");
            e.details.reason = Some("redis_unreachable");
            return error_response(&e, None);
        }
    }
    HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
}
