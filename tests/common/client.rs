//! A protocol client for tests: sends requests with fresh `ref`s, waits for
//! their one response, and keeps every other frame for `expect_push`.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected frame may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames received while waiting for something else.
    kept: VecDeque<Value>,
    next_ref: u64,
    pub closed: Option<(u16, String)>,
    pub connect: Value,
}

impl Client {
    /// Opens a WebSocket without authenticating.
    pub async fn open(url: &str) -> Client {
        Self::open_with(url, None).await.expect("upgrade")
    }

    /// Opens a WebSocket, with an `Authorization` header when `bearer` is
    /// given; returns the HTTP status and body on refusal.
    pub async fn open_with(url: &str, bearer: Option<&str>) -> Result<Client, (u16, Value)> {
        let mut request = url.into_client_request().expect("request");
        if let Some(t) = bearer {
            request.headers_mut().insert("Authorization", format!("Bearer {t}").parse().expect("header"));
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Client { ws, kept: VecDeque::new(), next_ref: 1, closed: None, connect: Value::Null }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.body().as_ref().map(|b| serde_json::from_slice(b).unwrap_or(Value::Null)).unwrap_or(Value::Null);
                Err((status, body))
            }
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    /// Wraps an already upgraded stream.
    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client { ws, kept: VecDeque::new(), next_ref: 1, closed: None, connect: Value::Null }
    }

    /// Reads (and discards) everything until the connection ends; returns
    /// the close code (1006 when it ended without a Close frame).
    pub async fn drain_until_closed(&mut self) -> u16 {
        self.kept.clear();
        let deadline = tokio::time::Instant::now() + WAIT * 3;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.read_one()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => panic!("the connection did not end"),
            }
        }
        self.closed.as_ref().map(|c| c.0).unwrap_or(1006)
    }

    /// Opens and authenticates with a first frame; waits for `connect`.
    pub async fn authenticated(url: &str, token: &str) -> Client {
        let mut c = Self::open(url).await;
        c.send(json!({"event": "auth", "data": {"token": token}})).await;
        let connect = c.expect_event("connect").await;
        c.connect = connect;
        c
    }

    pub fn user_id(&self) -> &str {
        self.connect["data"]["user_id"].as_str().unwrap_or_default()
    }

    pub fn session_id(&self) -> &str {
        self.connect["data"]["session_id"].as_str().unwrap_or_default()
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::Text(frame.to_string().into())).await.expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.to_owned().into())).await.expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).await.expect("send");
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// Sends a request with a fresh integer `ref` and returns that ref.
    pub async fn send_request(&mut self, event: &str, data: Value) -> u64 {
        let r = self.next_ref;
        self.next_ref += 1;
        self.send(json!({"event": event, "data": data, "ref": r})).await;
        r
    }

    /// Sends several requests in one write, with fresh `ref`s (returned in
    /// order): the server finds them all in one read, as from a client
    /// that pipelines.
    pub async fn send_together(&mut self, requests: &[(&str, Value)]) -> Vec<u64> {
        let mut refs = Vec::new();
        for (event, data) in requests {
            let r = self.next_ref;
            self.next_ref += 1;
            let frame = json!({"event": event, "data": data, "ref": r});
            self.ws.feed(Message::Text(frame.to_string().into())).await.expect("send");
            refs.push(r);
        }
        self.ws.flush().await.expect("send");
        refs
    }

    /// Like `send_request`, but `None` if the connection is gone.
    pub async fn try_send_request(&mut self, event: &str, data: Value) -> Option<u64> {
        let r = self.next_ref;
        self.next_ref += 1;
        let frame = json!({"event": event, "data": data, "ref": r});
        self.ws.send(Message::Text(frame.to_string().into())).await.ok().map(|_| r)
    }

    /// Sends a request and waits for its response: `Ok(ack data)` or
    /// `Err(error data)`.
    pub async fn request(&mut self, event: &str, data: Value) -> Result<Value, Value> {
        let r = self.send_request(event, data).await;
        self.response(r).await
    }

    /// The response to `ref` r.
    pub async fn response(&mut self, r: u64) -> Result<Value, Value> {
        let frame = self.take(|f| f["ref"] == json!(r), &format!("response to ref {r}")).await;
        match frame["event"].as_str() {
            Some("ack") => Ok(frame["data"].clone()),
            Some("error") => Err(frame["data"].clone()),
            _ => panic!("unexpected response to ref {r}: {frame}"),
        }
    }

    /// The response to `ref` r, or `None` if the connection ends first.
    pub async fn try_response(&mut self, r: u64) -> Option<Result<Value, Value>> {
        if let Some(i) = self.kept.iter().position(|f| f["ref"] == json!(r)) {
            let f = self.kept.remove(i)?;
            return Some(if f["event"] == "ack" { Ok(f["data"].clone()) } else { Err(f["data"].clone()) });
        }
        loop {
            match tokio::time::timeout(WAIT, self.read_one()).await {
                Ok(Some(f)) if f["ref"] == json!(r) => {
                    return Some(if f["event"] == "ack" { Ok(f["data"].clone()) } else { Err(f["data"].clone()) })
                }
                Ok(Some(f)) => self.kept.push_back(f),
                Ok(None) => return None,
                Err(_) => panic!("no response to ref {r} within {WAIT:?}"),
            }
        }
    }

    /// A request that must succeed.
    pub async fn ok(&mut self, event: &str, data: Value) -> Value {
        match self.request(event, data.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{event} {data} failed: {e}"),
        }
    }

    /// A request that must fail with `code`; returns the error data.
    pub async fn fails(&mut self, event: &str, data: Value, code: &str) -> Value {
        match self.request(event, data.clone()).await {
            Ok(v) => panic!("{event} {data} should fail with {code}, got ack {v}"),
            Err(e) => {
                assert_eq!(e["code"], code, "{event} {data}: {e}");
                e
            }
        }
    }

    /// The next frame with this `event` (others are kept).
    pub async fn expect_event(&mut self, event: &str) -> Value {
        self.take(|f| f["event"] == event, event).await
    }

    /// The data of the next push `event` about `room`.
    pub async fn expect_push(&mut self, event: &str, room: &str) -> Value {
        let f = self.take(|f| f["event"] == event && f["room"] == room, &format!("{event} in {room}")).await;
        f["data"].clone()
    }

    /// The next frame, whatever it is.
    pub async fn next(&mut self) -> Value {
        self.take(|_| true, "any frame").await
    }

    /// Waits for the server's Close; returns its code.
    pub async fn expect_close(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.read_one()).await {
                Ok(Some(f)) => self.kept.push_back(f),
                Ok(None) => break,
                Err(_) => panic!("no close within {WAIT:?}; kept: {:?}", self.kept),
            }
        }
        self.closed.as_ref().map(|c| c.0).unwrap_or(1006)
    }

    /// Every frame kept or still to come, until the connection ends
    /// (within `WAIT`); the close code is then in `closed`.
    pub async fn until_closed(&mut self) -> Vec<Value> {
        let mut frames: Vec<Value> = self.kept.drain(..).collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.read_one()).await {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => panic!("the connection did not end within {WAIT:?}"),
            }
        }
        frames
    }

    /// Frames kept so far that match.
    pub fn kept(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.kept.iter().filter(|f| pred(f)).cloned().collect()
    }

    /// Closes normally and waits for the server's answering Close.
    pub async fn close(mut self) {
        let _ = self.ws.close(Some(CloseFrame { code: 1000.into(), reason: "bye".into() })).await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }

    /// Drops the TCP connection without a Close (a network failure).
    pub fn drop_connection(self) {
        drop(self.ws);
    }

    async fn take(&mut self, pred: impl Fn(&Value) -> bool, what: &str) -> Value {
        if let Some(i) = self.kept.iter().position(&pred) {
            return self.kept.remove(i).expect("kept");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.read_one()).await {
                Ok(Some(f)) if pred(&f) => return f,
                Ok(Some(f)) => self.kept.push_back(f),
                Ok(None) => panic!("connection closed ({:?}) while waiting for {what}; kept: {:?}", self.closed, self.kept),
                Err(_) => panic!("no {what} within {WAIT:?}; kept: {:?}", self.kept),
            }
        }
    }

    /// Reads one JSON frame; `None` once the connection is closed.
    async fn read_one(&mut self) -> Option<Value> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(&t).unwrap_or_else(|e| panic!("server sent non-JSON {t:?}: {e}")))
                }
                Some(Ok(Message::Close(frame))) => {
                    self.closed = Some(frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new())));
                    return None;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    if self.closed.is_none() {
                        self.closed = Some((1006, "dropped".into()));
                    }
                    return None;
                }
            }
        }
    }
}
