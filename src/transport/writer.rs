//! The write half of a connection: a future that drains the session's
//! outbound queue ([`Outlet`]) into the socket until it has sent a Close,
//! the session is gone, or the socket fails.
//!
//! Each wake takes every frame waiting in the queue (up to
//! [`FRAMES_PER_WRITE`]) and hands them to the kernel in one vectored
//! write: each frame's header, computed on the stack, and its payload,
//! which is the text every member of a room shares (never copied here).
//! When the socket takes only part of a batch, the rest waits in the batch
//! for writability and nothing more is taken from the queue, so a client
//! that stops reading fills its queue and is dropped as a slow consumer:
//! the queue, bounded by `max_outbound_queue`, is the only backlog. While
//! the queue is empty the writer holds no buffer.
//!
//! After its Close (or an abort) the writer sends FIN and waits, for at
//! most [`LINGER`], until the reader has read the client's Close or the end
//! of its stream: the session (and its reader) live until then, so the
//! socket is not closed with unread input, which makes the kernel answer
//! with a reset that can cost the client the Close frame and fails its
//! pending sends. RFC 6455 has the server close the TCP connection first,
//! once the close handshake is done, and this does.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use std::time::Duration;

use bytes::{Buf, Bytes};
use huddle_actors::protocol::CloseCode;
use huddle_actors::peer::Outbound;
use huddle_actors::queue::FrameQueue;
use huddle_actors::session::socket::Outlet;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::conn::Conn;
use super::codec::{server_header, CLOSE, MAX_SERVER_HEADER, PING, PONG, TEXT};

/// Frames taken from the queue per wake, and written per `writev`: two
/// iovecs each, well under the kernel's 1024 (`IOV_MAX`). A publisher with
/// 16 messages in flight makes ~16 frames wait per connection.
pub const FRAMES_PER_WRITE: usize = 64;

/// Batches written in one poll before the writer lets the other
/// connections of its thread run: producers on other threads can keep a
/// fast client's queue from ever running dry.
const BATCHES_PER_POLL: usize = 16;

/// How long a closing connection waits for the client's Close (or the end
/// of its stream) after sending its own: actix-http's
/// `client_disconnect_timeout` under HttpServer, which the engine used.
pub const LINGER: Duration = Duration::from_secs(1);

/// A frame's header, plus the status code of a Close (its reason follows as
/// the payload).
const HEAD: usize = MAX_SERVER_HEADER + 2;

pub struct Writer {
    conn: Rc<Conn>,
    /// Dropped once the Close is written: producers see it closed.
    queue: Option<FrameQueue>,
    /// Dropped once it has fired.
    abort: Option<oneshot::Receiver<CloseCode>>,
    /// Dropped with the writer, which stops the session.
    _finished: oneshot::Sender<()>,
    /// Set once the Close is written: the deadline for the client's end.
    lingering: Option<Pin<Box<Sleep>>>,
    /// Bytes that go before any frame: the 101 response. It is written at
    /// once, before the session runs: the session's silence clock
    /// (heartbeat) has started, and the client's must not start later.
    preamble: Bytes,
    /// Frames taken from the queue; `batch[first..]` are not wholly
    /// written yet, and `offset` bytes of `batch[first]` are.
    batch: Vec<Outbound>,
    first: usize,
    offset: usize,
    /// The batch ends with a Close: after it, nothing.
    closing: bool,
}

impl Writer {
    pub fn new(conn: Rc<Conn>, outlet: Outlet, preamble: Bytes) -> Writer {
        Writer {
            conn,
            queue: Some(outlet.queue),
            abort: Some(outlet.abort),
            _finished: outlet.finished,
            lingering: None,
            preamble,
            batch: Vec::new(),
            first: 0,
            offset: 0,
            closing: false,
        }
    }

    fn idle(&self) -> bool {
        self.preamble.is_empty() && self.first == self.batch.len()
    }

    /// Takes what the queue holds; `Ready(false)` when it is closed.
    fn take(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        self.batch.clear();
        self.first = 0;
        self.offset = 0;
        let Some(queue) = &mut self.queue else { return Poll::Ready(false) };
        match queue.poll_recv_many(cx, &mut self.batch, FRAMES_PER_WRITE) {
            Poll::Ready(0) => Poll::Ready(false),
            Poll::Ready(_) => {
                if let Some(at) = self.batch.iter().position(|o| matches!(o, Outbound::Close(_))) {
                    self.batch.truncate(at + 1);
                    self.closing = true;
                }
                Poll::Ready(true)
            }
            Poll::Pending => {
                // Nothing is held between bursts.
                self.batch = Vec::new();
                Poll::Pending
            }
        }
    }

    /// Writes as much of what is in hand as the socket takes now:
    /// `Ok(())` once all of it is written.
    fn write(&mut self) -> io::Result<()> {
        while !self.idle() {
            let mut heads = [[0u8; HEAD]; FRAMES_PER_WRITE];
            let mut bodies: [&[u8]; FRAMES_PER_WRITE] = [&[]; FRAMES_PER_WRITE];
            let mut lens = [0usize; FRAMES_PER_WRITE];
            let frames = &self.batch[self.first..(self.first + FRAMES_PER_WRITE).min(self.batch.len())];
            for (i, out) in frames.iter().enumerate() {
                let (len, body) = encode(out, &mut heads[i]);
                lens[i] = len;
                bodies[i] = body;
            }
            let mut slices = [IoSlice::new(&[]); 1 + 2 * FRAMES_PER_WRITE];
            let mut n = 0;
            if !self.preamble.is_empty() {
                slices[n] = IoSlice::new(&self.preamble);
                n += 1;
            }
            for i in 0..frames.len() {
                let skip = if i == 0 { self.offset } else { 0 };
                if skip < lens[i] {
                    slices[n] = IoSlice::new(&heads[i][skip..lens[i]]);
                    n += 1;
                }
                let body = &bodies[i][skip.saturating_sub(lens[i])..];
                if !body.is_empty() {
                    slices[n] = IoSlice::new(body);
                    n += 1;
                }
            }
            let written = self.conn.stream.try_write_vectored(&slices[..n])?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(written);
        }
        Ok(())
    }

    fn advance(&mut self, mut n: usize) {
        if !self.preamble.is_empty() {
            let p = n.min(self.preamble.len());
            self.preamble.advance(p);
            n -= p;
            if self.preamble.is_empty() {
                // An empty view still holds the whole allocation.
                self.preamble = Bytes::new();
            }
        }
        while n > 0 {
            let left = wire_len(&self.batch[self.first]) - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.first += 1;
            self.offset = 0;
        }
    }

    /// The session gave up on this client (a slow consumer): drop what is
    /// queued and try once, without waiting, to send the Close. A frame
    /// already partly on the wire is finished first: the Close cannot cut
    /// into it.
    fn abort(&mut self, code: CloseCode) {
        let started = (self.offset > 0).then(|| self.batch.swap_remove(self.first));
        self.batch.clear();
        self.first = 0;
        self.batch.extend(started);
        self.batch.push(Outbound::Close(code));
        if let Err(e) = self.write() {
            log::debug!("close {} not sent: {e}", code.code());
        }
    }

    /// The Close is on its way: no more frames, FIN after it.
    fn start_lingering(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.queue = None;
        self.batch = Vec::new();
        if let Err(e) = socket2::SockRef::from(&self.conn.stream).shutdown(std::net::Shutdown::Write) {
            log::debug!("websocket shutdown failed: {e}");
            return Poll::Ready(());
        }
        self.lingering = Some(Box::pin(tokio::time::sleep(LINGER)));
        self.linger(cx)
    }

    /// Done once the reader has seen the client's Close or end, or once
    /// [`LINGER`] is up.
    fn linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = &mut self.lingering else { return Poll::Ready(()) };
        if self.conn.poll_client_done(cx).is_ready() || deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Future for Writer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(abort) = &mut this.abort {
            match Pin::new(abort).poll(cx) {
                Poll::Ready(Ok(code)) => {
                    this.abort = None;
                    if this.lingering.is_none() {
                        this.abort(code);
                        return this.start_lingering(cx);
                    }
                }
                // The session is gone: nobody is left to serve this client.
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {}
            }
        }
        if this.lingering.is_some() {
            return this.linger(cx);
        }
        let mut batches = 0;
        loop {
            if this.idle() {
                if this.closing {
                    return this.start_lingering(cx);
                }
                if batches == BATCHES_PER_POLL {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                batches += 1;
                match this.take(cx) {
                    Poll::Ready(true) => {}
                    Poll::Ready(false) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
            match this.write() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match this.conn.stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return failed(&e),
                    Poll::Pending => return Poll::Pending,
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return failed(&e),
            }
        }
    }
}

fn failed(e: &io::Error) -> Poll<()> {
    log::debug!("websocket write failed: {e}");
    Poll::Ready(())
}

/// The frame's header (and a Close's status code) into `head`, and its
/// payload.
fn encode<'a>(out: &'a Outbound, head: &mut [u8; HEAD]) -> (usize, &'a [u8]) {
    match out {
        Outbound::Frame(text) => (server_header(TEXT, text.len(), head), text.as_bytes()),
        Outbound::Ping => (server_header(PING, 0, head), &[]),
        Outbound::Pong(payload) => (server_header(PONG, payload.len(), head), payload),
        Outbound::Close(code) => {
            let reason = code.reason().as_bytes();
            let n = server_header(CLOSE, 2 + reason.len(), head);
            head[n..n + 2].copy_from_slice(&code.code().to_be_bytes());
            (n + 2, reason)
        }
    }
}

/// Bytes the frame takes on the wire.
fn wire_len(out: &Outbound) -> usize {
    let mut head = [0u8; HEAD];
    let (len, body) = encode(out, &mut head);
    len + body.len()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytestring::ByteString;
    use huddle_actors::protocol::CloseCode;
    use huddle_actors::queue::{queue, FrameSender};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket};
    use tokio::sync::oneshot;

    use super::*;

    /// A writer on a socket with a small send buffer, so that writes are
    /// partial; the shared socket (where a reader would say the client is
    /// done); the peer's end; the queue; the abort trigger.
    async fn setup(
        preamble: &'static [u8],
    ) -> (Writer, Rc<Conn>, tokio::net::TcpStream, FrameSender, oneshot::Sender<CloseCode>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(4096).unwrap();
        let stream = socket.connect(listener.local_addr().unwrap()).await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        let (tx, rx) = queue(1024, usize::MAX);
        let (abort, abort_rx) = oneshot::channel();
        let (finished, _) = oneshot::channel();
        let outlet = Outlet { queue: rx, abort: abort_rx, finished };
        let conn = Conn::new(stream);
        (Writer::new(conn.clone(), outlet, Bytes::from_static(preamble)), conn, peer, tx, abort)
    }

    /// Server frames (opcode, payload) from the front of `bytes`, and
    /// whether a torn frame is left at the end.
    fn parse(mut bytes: &[u8]) -> (Vec<(u8, Vec<u8>)>, bool) {
        let mut frames = Vec::new();
        while bytes.len() >= 2 {
            assert_eq!(bytes[0] & 0xf0, 0x80, "FIN set, no reserved bits");
            assert_eq!(bytes[1] & 0x80, 0, "unmasked");
            let (len, at) = match bytes[1] {
                126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 if bytes.len() >= 10 => (u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize, 10),
                126 | 127 => return (frames, true),
                n => (n as usize, 2),
            };
            if bytes.len() < at + len {
                return (frames, true);
            }
            frames.push((bytes[0] & 0x0f, bytes[at..at + len].to_vec()));
            bytes = &bytes[at + len..];
        }
        (frames, !bytes.is_empty())
    }

    fn text(i: usize) -> String {
        // Sizes that take each header form: 7-bit, 16-bit and 64-bit.
        let len = [3, 200, 70_000][i % 3] + i;
        format!("{i:06}").repeat(len / 6 + 1)[..len].to_owned()
    }

    #[tokio::test]
    async fn partial_writes_keep_every_frame_whole_and_in_order() {
        let preamble = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        let (writer, conn, mut peer, tx, _abort) = setup(preamble).await;
        for i in 0..150 {
            tx.try_send(Outbound::Frame(ByteString::from(text(i)))).unwrap();
            if i % 50 == 0 {
                tx.try_send(Outbound::Ping).unwrap();
            }
        }
        tx.try_send(Outbound::Pong(Bytes::from_static(b"hb"))).unwrap();
        tx.try_send(Outbound::Close(CloseCode::GoingAway)).unwrap();
        tx.try_send(Outbound::Frame(ByteString::from("after the close"))).unwrap();
        let reading = async {
            let mut all = Vec::new();
            // Slow reads, so the sender's buffer fills again and again.
            let mut chunk = [0u8; 3000];
            loop {
                match peer.read(&mut chunk).await.unwrap() {
                    // The writer's FIN; the client answers (what the
                    // connection's reader would report), which ends the
                    // writer's wait.
                    0 => {
                        conn.set_client_done();
                        return all;
                    }
                    n => all.extend_from_slice(&chunk[..n]),
                }
                tokio::task::yield_now().await;
            }
        };
        let ((), all) = tokio::join!(writer, reading);
        assert_eq!(&all[..preamble.len()], preamble);
        let (frames, torn) = parse(&all[preamble.len()..]);
        assert!(!torn);
        let mut expected = Vec::new();
        for i in 0..150 {
            expected.push((TEXT, text(i).into_bytes()));
            if i % 50 == 0 {
                expected.push((PING, Vec::new()));
            }
        }
        expected.push((PONG, b"hb".to_vec()));
        let mut close = 1001u16.to_be_bytes().to_vec();
        close.extend_from_slice(CloseCode::GoingAway.reason().as_bytes());
        expected.push((CLOSE, close));
        assert_eq!(frames.len(), expected.len());
        assert!(frames == expected, "frames differ");
    }

    #[tokio::test]
    async fn an_abort_drops_what_is_queued_and_ends_the_stream() {
        let (writer, conn, mut peer, tx, abort) = setup(b"").await;
        let mut writer = Box::pin(writer);
        // Far more than the socket buffers hold: the writer must wait.
        for i in 0..300 {
            tx.try_send(Outbound::Frame(ByteString::from(text(i)))).unwrap();
        }
        assert!(tokio::time::timeout(Duration::from_millis(200), &mut writer).await.is_err(), "the writer waits");
        abort.send(CloseCode::SlowConsumer).unwrap();
        // The client now finds the end of the stream (FIN) after what was
        // already on its way; once it closes too, the writer is done.
        let reading = async {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            conn.set_client_done();
            all
        };
        let ((), all) = tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(writer, reading) })
            .await
            .expect("the abort ends the stream");
        // Whole frames, in order, then maybe the Close (best effort).
        let (frames, _) = parse(&all);
        for (i, (op, payload)) in frames.iter().enumerate() {
            if *op == CLOSE {
                assert_eq!(i, frames.len() - 1);
                assert_eq!(&payload[..2], &4008u16.to_be_bytes());
            } else {
                assert_eq!((*op, payload.as_slice()), (TEXT, text(i).as_bytes()));
            }
        }
        assert!(frames.len() < 300, "queued frames were dropped");
    }
}
