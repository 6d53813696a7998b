//! `GET /ws`: the WebSocket handshake. The HTTP server hands every request
//! that asks for `Upgrade: websocket` to [`upgrade`] with its raw
//! connection; this module refuses tokens in the URL, checks a header token
//! and the per-user limit before answering 101, then gives the connection
//! to the transport ([`crate::transport`]) for as long as it lasts. Every
//! refusal is a JSON error, and the connection closes after it.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_codec::Framed;
use actix_http::body::{BoxBody, MessageBody};
use actix_http::h1::{self, SendResponse};
use actix_http::header::{HeaderMap, SEC_WEBSOCKET_KEY};
use actix_http::{ws, ConnectionType, Request, Response};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use huddle_actors::auth::Identity;
use huddle_actors::protocol::{ErrorCode, WireError};
use huddle_actors::session::SessionStarter;
use tokio::net::TcpStream;

use crate::routes::{bearer_token, error_response, AppState};
use crate::transport::{self, Writer};

/// The one path that upgrades.
pub const PATH: &str = "/ws";

/// Serves one upgrade request, and then its connection until it closes.
pub fn upgrade(req: Request, framed: Framed<TcpStream, h1::Codec>, state: AppState) -> Upgrade {
    Upgrade::Handshake(Box::pin(handshake(req, framed, state)))
}

/// The future the HTTP server keeps for an upgraded connection, inside its
/// own per-connection task, for as long as the connection lasts: small,
/// because only the writer is left in it once the handshake is done (the
/// handshake's state, with the request and the HTTP codec, is boxed and
/// freed).
pub enum Upgrade {
    Handshake(Pin<Box<dyn Future<Output = Option<Writer>>>>),
    Open(Writer),
}

impl Future for Upgrade {
    type Output = Result<(), actix_http::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match this {
                Upgrade::Handshake(handshake) => match ready!(handshake.as_mut().poll(cx)) {
                    Some(writer) => *this = Upgrade::Open(writer),
                    None => return Poll::Ready(Ok(())),
                },
                Upgrade::Open(writer) => {
                    ready!(Pin::new(writer).poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// The handshake: a refusal is answered here (`None`); on success the
/// session is started and its writer returned.
async fn handshake(req: Request, framed: Framed<TcpStream, h1::Codec>, state: AppState) -> Option<Writer> {
    let (starter, identity, preamble) = match accept(&req, &state).await {
        Ok(accepted) => accepted,
        Err(refusal) => {
            let (mut head, body) = Response::<BoxBody>::from(refusal).into_parts();
            head.head_mut().set_connection_type(ConnectionType::Close);
            // Our error bodies are whole JSON documents.
            let body = body.try_into_bytes().unwrap_or_default();
            if let Err(e) = SendResponse::new(framed, head.set_body(body)).await {
                log::debug!("refused upgrade not sent: {e}");
            }
            return None;
        }
    };
    // The HTTP codec's buffers go with the rest; the bytes the client sent
    // behind its request are copied out.
    let parts = framed.into_parts();
    Some(transport::connect(parts.io, &parts.read_buf, preamble, starter, state.deps.clone(), identity))
}

/// Checks the request; on success the connection is registered for its
/// user (when the token came in the header) and the 101 response is ready.
async fn accept(req: &Request, state: &AppState) -> Result<(SessionStarter, Option<Identity>, Bytes), HttpResponse> {
    if req.path() != PATH {
        let e = WireError::new(ErrorCode::NotFound, format!("no WebSocket endpoint at {}; it is {PATH}", req.path()));
        return Err(error_response(&e, Some(StatusCode::NOT_FOUND)));
    }
    if let Err(e) = ws::verify_handshake(req.head()) {
        return Err(bad_handshake(e));
    }
    check_query(req.uri().query().unwrap_or_default())?;
    let identity = verify_header_token(&req.head().headers, state)?;
    let starter = SessionStarter::default();
    if let Some(identity) = &identity {
        // Refusals answer with their code's status: 429 past the per-user
        // limit, 503 while shutting down.
        starter.register(&state.deps.registry, identity).await.map_err(|e| error_response(&e, None))?;
    }
    Ok((starter, identity, switching_protocols(&req.head().headers)))
}

/// A plain `GET /ws`, without the upgrade headers (those go to [`upgrade`]).
pub async fn not_upgraded(req: HttpRequest) -> HttpResponse {
    if let Err(refusal) = check_query(req.query_string()) {
        return refusal;
    }
    let e = WireError::new(
        ErrorCode::InvalidInput,
        "this is the WebSocket endpoint: send an upgrade request (Upgrade: websocket, Connection: Upgrade)",
    );
    error_response(&e, Some(StatusCode::BAD_REQUEST))
}

/// Tokens are never taken from the URL (URLs end up in logs).
fn check_query(query: &str) -> Result<(), HttpResponse> {
    if !has_token_parameter(query) {
        return Ok(());
    }
    let e = WireError::invalid(
        "token",
        "tokens are not accepted in the URL (URLs end up in logs): send `Authorization: Bearer <jwt>` \
         or a first frame {\"event\":\"auth\",\"data\":{\"token\":\"<jwt>\"}}",
    );
    Err(error_response(&e, Some(StatusCode::BAD_REQUEST)))
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

fn verify_header_token(headers: &HeaderMap, state: &AppState) -> Result<Option<Identity>, HttpResponse> {
    match bearer_token(headers) {
        None => Ok(None),
        Some(token) => match state.deps.verifier.verify(token) {
            Ok(identity) => Ok(Some(identity)),
            Err(f) => Err(error_response(&WireError::from(f), Some(StatusCode::UNAUTHORIZED))),
        },
    }
}

/// actix-http's verdict on a malformed handshake (its status and headers:
/// 405 with `Allow`, 426 with the supported version), with a JSON body.
fn bad_handshake(e: ws::HandshakeError) -> HttpResponse {
    let verdict: Response<BoxBody> = e.into();
    let error = WireError::new(ErrorCode::InvalidInput, format!("not a WebSocket handshake: {e}"));
    let mut response = error_response(&error, Some(verdict.status()));
    for (name, value) in verdict.headers() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// The 101 response. The handshake was verified, so the key is there.
fn switching_protocols(headers: &HeaderMap) -> Bytes {
    let key = headers.get(SEC_WEBSOCKET_KEY).map(|k| k.as_bytes()).unwrap_or_default();
    let accept = ws::hash_key(key);
    let mut response = Vec::with_capacity(128);
    response.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: ");
    response.extend_from_slice(&accept);
    response.extend_from_slice(b"\r\n\r\n");
    Bytes::from(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTTP server stores this future inline in every connection's
    /// task for the connection's whole life; what the handshake needs must
    /// stay in its box (it once kept 2.3 KB per connection there).
    #[test]
    fn the_long_lived_future_stays_small() {
        let size = std::mem::size_of::<Upgrade>();
        assert!(size <= 256, "Upgrade is {size} bytes");
    }
}
