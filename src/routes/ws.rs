//! `GET /ws`: refuses tokens in the URL, checks a header token before the
//! upgrade, and hands the connection to a new session actor: actix-ws's
//! message stream feeds it, and its outlet becomes the response body
//! ([`OutletBody`]).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, ProtocolError};
use futures_util::StreamExt;
use huddle_actors::protocol::WireError;
use huddle_actors::session::socket::Inbound;
use huddle_actors::session::SessionStarter;

use crate::routes::outlet_body::OutletBody;
use crate::routes::{bearer, error_response, AppState};

pub async fn upgrade(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    if has_token_parameter(req.query_string()) {
        let e = WireError::invalid(
            "token",
            "tokens are not accepted in the URL (URLs end up in logs): send `Authorization: Bearer <jwt>` \
             or a first frame {\"event\":\"auth\",\"data\":{\"token\":\"<jwt>\"}}",
        );
        return error_response(&e, Some(StatusCode::BAD_REQUEST));
    }
    let identity = match bearer(&req) {
        None => None,
        Some(token) => match state.deps.verifier.verify(token) {
            Ok(identity) => Some(identity),
            Err(f) => return error_response(&WireError::from(f), Some(StatusCode::UNAUTHORIZED)),
        },
    };
    // actix-ws's Session is not used: the session's outlet is written by
    // OutletBody instead of actix-ws's channel.
    let (response, _, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => return HttpResponse::from_error(e),
    };
    let starter = SessionStarter::default();
    if let Some(identity) = &identity {
        // Refusals answer with their code's status: 429 past the per-user
        // limit, 503 while shutting down.
        if let Err(e) = starter.register(&state.deps.registry, identity).await {
            return error_response(&e, None);
        }
    }
    let max = state.deps.settings.max_frame_bytes;
    let inbound = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max)
        .map(inbound);
    let (_, outlet) = starter.start(state.deps.clone(), inbound, identity);
    let (head, stream_guard) = response.into_parts();
    head.set_body(OutletBody::new(outlet, stream_guard)).map_into_boxed_body()
}

/// Whether the query string carries `token` (even empty).
fn has_token_parameter(query: &str) -> bool {
    match web::Query::<Vec<(String, String)>>::from_query(query) {
        Ok(pairs) => pairs.iter().any(|(k, _)| k == "token"),
        // An unparsable query cannot be checked; refuse it if it mentions
        // a token at all.
        Err(_) => query.contains("token"),
    }
}

fn inbound(item: Result<AggregatedMessage, ProtocolError>) -> Inbound {
    match item {
        Ok(AggregatedMessage::Text(text)) => Inbound::Text(text),
        Ok(AggregatedMessage::Binary(_)) => Inbound::Binary,
        Ok(AggregatedMessage::Ping(payload)) => Inbound::Ping(payload),
        Ok(AggregatedMessage::Pong(_)) => Inbound::Pong,
        Ok(AggregatedMessage::Close(_)) => Inbound::Close,
        Err(ProtocolError::Overflow) => Inbound::TooLarge,
        Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => Inbound::InvalidUtf8,
        Err(ProtocolError::Io(e)) if e.to_string().contains("maximum continuation size") => Inbound::TooLarge,
        Err(e) => Inbound::Broken(e.to_string()),
    }
}
