//! `GET /ws`: refuses tokens in the URL, checks a header token before the
//! upgrade, and hands the connection to a new session actor through the
//! [`WsSocket`] adapter.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, ProtocolError};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::StreamExt;
use huddle_actors::protocol::{CloseCode, ErrorCode, WireError};
use huddle_actors::registry::Register;
use huddle_actors::session::socket::{Inbound, Socket, SocketClosed};
use huddle_actors::session::SessionStarter;

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
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => return HttpResponse::from_error(e),
    };
    let starter = SessionStarter::<WsSocket>::default();
    if let Some(identity) = &identity {
        let registered = state
            .deps
            .registry
            .send(Register {
                user_id: identity.user_id.clone(),
                session_id: starter.id(),
                control: starter.control(),
            })
            .await;
        match registered.map_err(WireError::from).and_then(|r| r) {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::LimitExceeded => {
                return error_response(&e, Some(StatusCode::TOO_MANY_REQUESTS))
            }
            Err(e) => return error_response(&e, None),
        }
    }
    let max = state.deps.settings.max_frame_bytes;
    let inbound = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max)
        .map(inbound);
    starter.start(state.deps.clone(), WsSocket(session), inbound, identity);
    response
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

/// actix-ws as the session's socket.
#[derive(Clone)]
pub struct WsSocket(actix_ws::Session);

impl Socket for WsSocket {
    async fn text(&mut self, frame: ByteString) -> Result<(), SocketClosed> {
        self.0.text(frame).await.map_err(|_| SocketClosed)
    }

    async fn ping(&mut self) -> Result<(), SocketClosed> {
        self.0.ping(b"").await.map_err(|_| SocketClosed)
    }

    async fn pong(&mut self, payload: Bytes) -> Result<(), SocketClosed> {
        self.0.pong(&payload).await.map_err(|_| SocketClosed)
    }

    async fn close(self, code: CloseCode) {
        let reason = actix_ws::CloseReason {
            code: actix_ws::CloseCode::from(code.code()),
            description: Some(code.reason().to_owned()),
        };
        let _ = self.0.close(Some(reason)).await;
    }
}
