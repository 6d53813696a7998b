//! What `/` answers when the demo is off: a short text for whoever opens
//! the server's address in a browser, saying what it is and where the demo
//! and the docs are. `/favicon.ico` answers 204 (no content): the browser
//! that shows that text asks for it, and a 404 would only add noise to its
//! console.

use actix_web::{web, HttpResponse};

const HOME: &str = "\
Huddle: a realtime engine for collaborative documents and chat.

Clients connect over WebSocket at /ws and authenticate with a JWT
(mint one on the server's machine with `huddle token --sub alice`).

  GET /health    the process is up
  GET /ready     the database answers
  GET /metrics   Prometheus metrics
  /api/...       the server-to-server HTTP API (needs HUDDLE_API_KEY)

The demo page (two people, one document, one chat) is served here when
the server runs with --demo (or HUDDLE_DEMO=1); it hands anyone a token,
so use it only to try Huddle.

Docs: README.md (set-up, configuration, HTTP API) and docs/protocol.md
(the WebSocket protocol, with real frames) in Huddle's source tree.
";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").get(|| async { HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(HOME) }))
        .service(web::resource("/favicon.ico").get(HttpResponse::NoContent));
}
