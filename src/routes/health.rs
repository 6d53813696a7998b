//! Liveness and readiness probes (no authentication).

use actix_web::{web, HttpResponse};

use crate::routes::{error_response, AppState};

/// The process is up.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The database takes writes: 200, or 503 `SERVER_BUSY` with
/// `details.reason` while a condition of the machine lasts (see
/// `db::health`).
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.deps.db.run(|s| s.ping()).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(e) => error_response(&e, None),
    }
}
