//! `GET /metrics`: Prometheus text format; open unless
//! `HUDDLE_METRICS_TOKEN` is set.

use actix_web::{web, HttpRequest, HttpResponse};
use huddle_actors::protocol::{ErrorCode, WireError};
use huddle_actors::registry::Stats;
use subtle::ConstantTimeEq;

use crate::routes::{bearer, error_response, AppState};

pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Some(token) = &state.metrics_token {
        let ok = bearer(&req).is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())));
        if !ok {
            let e = WireError::new(ErrorCode::Unauthenticated, "send Authorization: Bearer <metrics token>");
            return error_response(&e, None);
        }
    }
    let stats = match state.deps.registry.send(Stats).await {
        Ok(s) => s,
        Err(e) => return error_response(&WireError::from(e), None),
    };
    if let Some(link) = &state.cluster {
        state.metrics.set_peers(link.peers().len());
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(stats))
}
