//! A stand-in server for the `ceiling` scenario: it measures the harness
//! alone. It accepts WebSocket upgrades, sends each connection a `connect`
//! frame, and on the go signal writes the same stream of `chat:message`
//! pushes to every connection as fast as the sockets take them. It encodes
//! each batch of frames once and writes it to every connection, like a room
//! does, so that it costs far less per delivery than the harness's reading.
//!
//! It runs on its own thread (and, with `cpu`, its own core), with a tokio
//! runtime of its own.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Frames per write: one encoding of this many messages goes to each socket.
const BATCH: u64 = 256;

pub struct FakeServer {
    pub addr: SocketAddr,
    /// The serving thread's id, for its CPU time in /proc.
    pub tid: u32,
    go: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl FakeServer {
    /// Serves `connections` connections `messages` pushes each.
    pub fn start(connections: usize, messages: u64, cpu: Option<usize>) -> Result<FakeServer, String> {
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("fake-server".into())
            .spawn(move || -> Result<(), String> {
                if let Some(cpu) = cpu {
                    pin_this_thread(cpu)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("fake server runtime: {e}"))?;
                rt.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("fake server bind: {e}"))?;
                    let addr = listener.local_addr().map_err(|e| e.to_string())?;
                    // SAFETY: gettid has no preconditions.
                    let tid = unsafe { libc::gettid() } as u32;
                    let _ = ready_tx.send((addr, tid));
                    let mut socks = Vec::with_capacity(connections);
                    while socks.len() < connections {
                        let (s, _) = listener.accept().await.map_err(|e| format!("fake server accept: {e}"))?;
                        socks.push(handshake(s).await?);
                    }
                    if go_rx.await.is_err() {
                        return Ok(()); // the harness gave up
                    }
                    stream(&mut socks, messages).await
                })
            })
            .map_err(|e| format!("cannot start the fake server thread: {e}"))?;
        let (addr, tid) = ready_rx.recv().map_err(|_| "the fake server thread failed to start".to_string())?;
        Ok(FakeServer { addr, tid, go: Some(go_tx), thread: Some(thread) })
    }

    pub fn go(&mut self) {
        if let Some(g) = self.go.take() {
            let _ = g.send(());
        }
    }

    /// Waits for the server thread; its error, if any.
    pub fn join(mut self) -> Result<(), String> {
        self.go.take();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the fake server thread panicked".into()),
            None => Ok(()),
        }
    }
}

fn pin_this_thread(cpu: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes in it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("cannot pin the fake server to CPU {cpu}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

async fn handshake(mut s: TcpStream) -> Result<TcpStream, String> {
    let _ = s.set_nodelay(true);
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.map_err(|e| format!("fake server read: {e}"))?;
        if n == 0 {
            return Err("client closed during the handshake".into());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req);
    let key = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("sec-websocket-key").then(|| v.trim().to_owned())
        })
        .ok_or("no Sec-WebSocket-Key in the upgrade request")?;
    let accept = actix_http::ws::hash_key(key.as_bytes());
    let accept = String::from_utf8_lossy(&accept);
    let mut resp = Vec::new();
    let _ = write!(
        resp,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    push_frame(&mut resp, br#"{"event":"connect","data":{"session_id":"fake","user_id":"u","protocol":1}}"#);
    s.write_all(&resp).await.map_err(|e| format!("fake server write: {e}"))?;
    Ok(s)
}

/// An unmasked server text frame.
fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81);
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= 0xFFFF {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

async fn stream(socks: &mut [TcpStream], messages: u64) -> Result<(), String> {
    let mut batch = Vec::with_capacity(BATCH as usize * 256);
    let mut payload = Vec::with_capacity(256);
    let mut seq = 1;
    while seq <= messages {
        batch.clear();
        let sent = crate::stats::now_ns();
        for s in seq..(seq + BATCH).min(messages + 1) {
            payload.clear();
            let _ = write!(
                payload,
                r#"{{"event":"chat:message","room":"chat:ceiling","data":{{"message":{{"id":"00000000-0000-4000-8000-000000000000","chat_id":"ceiling","seq":{s},"user_id":"publisher","content":"t{sent}","created_at":"2026-01-01T00:00:00.000Z"}}}}}}"#
            );
            push_frame(&mut batch, &payload);
        }
        seq += BATCH;
        for s in socks.iter_mut() {
            s.write_all(&batch).await.map_err(|e| format!("fake server write: {e}"))?;
        }
    }
    // Closing first could reset connections whose last frames are still
    // unread: wait for each client to close (or for the harness to stop).
    let mut sink = [0u8; 4096];
    for s in socks.iter_mut() {
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    }
    Ok(())
}
