//! The upgraded socket, shared by a connection's reader and writer on its
//! worker thread, and what the reader tells the writer about the end of
//! the client's input.

use std::cell::Cell;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tokio::net::TcpStream;

pub struct Conn {
    pub stream: TcpStream,
    /// The client will send nothing more worth reading: its Close frame was
    /// read, or its side of the stream ended.
    client_done: Cell<bool>,
    /// The writer, while it waits for that.
    writer: Cell<Option<Waker>>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Rc<Conn> {
        Rc::new(Conn { stream, client_done: Cell::new(false), writer: Cell::new(None) })
    }

    pub fn set_client_done(&self) {
        self.client_done.set(true);
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    pub fn poll_client_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.client_done.get() {
            return Poll::Ready(());
        }
        self.writer.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}
