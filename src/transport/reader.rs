//! The read half of a connection: a stream of [`Inbound`] items that the
//! session consumes in its own context (`add_stream`). It reads from the
//! socket only when the session asks for its next item, so a session that
//! is busy (waiting on the registry during `auth`) reads nothing, and it
//! applies the session's [`FrameLimit`] as it stands at each frame.
//!
//! The buffer starts empty, grows only while a frame needs it (never past
//! the limit, and only as fast as bytes arrive, not as fast as a header
//! announces them), and is released whenever it is empty: an idle
//! connection holds no read buffer at all.
//!
//! Once the client's Close is read the reader stops and tells the writer
//! (which closes the socket when it has sent its own Close). Once input
//! was refused it reads on only to discard, until the client's side ends,
//! so that the socket is not closed with unread input (which makes the
//! kernel answer with a reset that can cost the client the Close frame).

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::Stream;
use huddle_actors::ids::SessionId;
use huddle_actors::session::socket::{FrameLimit, Inbound};

use super::codec::{is_final, Decoder, Step};
use super::conn::Conn;

/// What one read asks the kernel for when frames are small: a few dozen
/// requests of a typical size (~100 bytes) at once, without holding much.
const READ_CHUNK: usize = 1024;
/// Reads in one poll that yield no item before the reader lets the other
/// connections of its thread run (a client streaming empty fragments would
/// otherwise keep it reading forever).
const READS_PER_POLL: usize = 16;

pub struct Reader {
    conn: Rc<Conn>,
    buf: BytesMut,
    decoder: Decoder,
    limit: FrameLimit,
    session: SessionId,
    state: State,
}

#[derive(PartialEq)]
enum State {
    Reading,
    /// Input was refused: read only to discard, until the client's end.
    Discarding,
    /// Nothing more to read; the session closes the connection its way.
    Done,
}

impl Reader {
    /// `early`: bytes the client sent right behind its upgrade request.
    pub fn new(conn: Rc<Conn>, early: &[u8], limit: FrameLimit, session: SessionId) -> Reader {
        Reader { conn, buf: BytesMut::from(early), decoder: Decoder::default(), limit, session, state: State::Reading }
    }

    fn done(&mut self) -> Poll<Option<Inbound>> {
        self.state = State::Done;
        self.conn.set_client_done();
        // Never woken again: the session ends the connection.
        Poll::Pending
    }

    fn discard(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let mut scratch = [0u8; READ_CHUNK];
        for _ in 0..READS_PER_POLL {
            match self.conn.stream.try_read(&mut scratch) {
                Ok(0) => return self.done(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match self.conn.stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return self.done(),
                    Poll::Pending => return Poll::Pending,
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.done(),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Makes room for the next read: a chunk for small frames; for a frame
    /// that needs more, at most as much again as already arrived, so the
    /// buffer follows the bytes actually sent.
    fn reserve(&mut self, need: usize) {
        let want = need.saturating_sub(self.buf.len());
        let spare = self.buf.capacity() - self.buf.len();
        if spare >= want.min(READ_CHUNK) {
            return;
        }
        self.buf.reserve(want.clamp(READ_CHUNK, self.buf.len().max(READ_CHUNK)));
    }
}

impl Stream for Reader {
    type Item = Inbound;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let this = self.get_mut();
        match this.state {
            State::Reading => {}
            State::Discarding => return this.discard(cx),
            State::Done => return Poll::Pending,
        }
        let mut reads = 0;
        loop {
            let limit = this.limit.get();
            let need = match this.decoder.decode(&mut this.buf, limit) {
                Step::Item(item) => {
                    if is_final(&item) {
                        this.buf = BytesMut::new();
                        if item == Inbound::Close {
                            this.state = State::Done;
                            this.conn.set_client_done();
                        } else {
                            this.state = State::Discarding;
                        }
                        if item == Inbound::TooLarge {
                            log::info!("session {}: refused a frame above {limit} bytes from its header", this.session);
                        }
                    }
                    return Poll::Ready(Some(item));
                }
                Step::Need(n) => n,
            };
            if reads == READS_PER_POLL {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            reads += 1;
            this.reserve(need);
            match this.conn.stream.try_read_buf(&mut this.buf) {
                // The client is gone (or half-closed: it cannot send a
                // request any more, so there is nothing left to serve).
                Ok(0) => {
                    this.conn.set_client_done();
                    return Poll::Ready(None);
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if this.buf.is_empty() {
                        this.buf = BytesMut::new();
                    }
                    match this.conn.stream.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return this.failed(&e),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return this.failed(&e),
            }
        }
    }
}

impl Reader {
    fn failed(&mut self, e: &io::Error) -> Poll<Option<Inbound>> {
        log::debug!("session {}: read failed: {e}", self.session);
        self.conn.set_client_done();
        Poll::Ready(None)
    }
}
