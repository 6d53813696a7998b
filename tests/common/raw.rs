//! A bare WebSocket client over TCP, for what a normal client library does
//! for you: it never answers Pings by itself, and it can stop reading.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// RFC 6455's opcodes; the framing below is this client's own.
#[allow(unused_imports)] // each test file uses a few
pub use huddle::transport::codec::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};

pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades with `Authorization: Bearer <token>`.
    pub async fn connect(addr: SocketAddr, token: &str) -> RawWs {
        Self::handshake(addr, &format!("Authorization: Bearer {token}\r\n")).await
    }

    /// Upgrades without a token: the first frame must authenticate.
    pub async fn open(addr: SocketAddr) -> RawWs {
        Self::handshake(addr, "").await
    }

    async fn handshake(addr: SocketAddr, extra_headers: &str) -> RawWs {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             {extra_headers}\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buf.drain(..end);
        RawWs { stream, buf }
    }

    /// The next frame (opcode, payload), or `None` if the connection ended
    /// or nothing came within `wait`.
    pub async fn frame(&mut self, wait: Duration) -> Option<(u8, Vec<u8>)> {
        tokio::time::timeout(wait, self.read_frame()).await.ok().flatten()
    }

    async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((opcode, payload, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some((opcode, payload));
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_fragment(true, opcode, payload).await;
    }

    /// Sends one masked frame, final or not.
    pub async fn send_fragment(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mut f = header(fin, opcode, payload.len() as u64);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        self.stream.write_all(&f).await.expect("write frame");
    }

    /// Sends only the header of a masked frame announcing `len` bytes.
    pub async fn send_header(&mut self, opcode: u8, len: u64) {
        self.stream.write_all(&header(true, opcode, len)).await.expect("write header");
    }

    /// Sends bytes as they are; `false` if the server has closed.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads until the server's Close: the codes of the `error` frames
    /// before it, and the close code (`None` if the connection ended
    /// without a Close, or nothing came within `wait`).
    pub async fn errors_then_close(&mut self, wait: Duration) -> (Vec<String>, Option<u16>) {
        let mut errors = Vec::new();
        loop {
            match self.frame(wait).await {
                Some((CLOSE, payload)) => return (errors, Some(close_code(&payload))),
                Some((TEXT, payload)) => {
                    let frame: serde_json::Value = serde_json::from_slice(&payload).expect("JSON frame");
                    if frame["event"] == "error" {
                        errors.push(frame["data"]["code"].as_str().unwrap_or_default().to_owned());
                    }
                }
                Some(_) => {}
                None => return (errors, None),
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(TEXT, text.as_bytes()).await;
    }
}

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A client frame's header (masked with [`MASK`]).
fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&n.to_be_bytes());
        }
    }
    f.extend_from_slice(&MASK);
    f
}

/// Parses one unmasked server frame from the front of `buf`.
fn parse(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4;
    }
    if buf.len() < at + len {
        return None;
    }
    Some((opcode, buf[at..at + len].to_vec(), at + len))
}

/// The close code of a Close frame's payload.
pub fn close_code(payload: &[u8]) -> u16 {
    if payload.len() >= 2 {
        u16::from_be_bytes([payload[0], payload[1]])
    } else {
        1005
    }
}
