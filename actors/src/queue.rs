//! A session's outbound queue: bounded, many producers (the session, the
//! rooms it is in, on their own threads), one consumer (the transport's
//! writer).
//!
//! It does what a bounded tokio channel did, for less: an idle queue holds
//! no buffer (a tokio channel keeps a 32-slot block, ~1.3 KB, for each
//! connection), and a producer wakes the consumer only when the consumer
//! is waiting, so a burst of frames costs one wake, and the consumer takes
//! the whole burst at once under one lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::peer::Outbound;

/// Why a frame was not queued; the frame comes back.
#[derive(Debug)]
pub enum TrySendError<T> {
    /// `capacity` frames, or `max_bytes` bytes, are waiting already: a
    /// slow consumer.
    Full(T),
    /// The consumer is gone.
    Closed(T),
}

/// A queue of at most `capacity` frames and `max_bytes` bytes of them;
/// one frame is always taken when nothing waits, however large, so a
/// frame above `max_bytes` still goes out to a connection that reads.
/// Counting frames alone let a connection that stops reading keep
/// `capacity` of the largest frames (whole documents, each up to
/// megabytes) in memory.
pub fn queue(capacity: usize, max_bytes: usize) -> (FrameSender, FrameQueue) {
    let shared = Arc::new(Shared {
        capacity: capacity.max(1),
        max_bytes,
        state: Mutex::new(State { frames: VecDeque::new(), bytes: 0, waiting: None, senders: 1, closed: false }),
    });
    (FrameSender { shared: shared.clone() }, FrameQueue { shared })
}

struct Shared {
    capacity: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

/// Bytes a frame holds while it waits.
fn weight(frame: &Outbound) -> usize {
    match frame {
        Outbound::Frame(text) => text.len(),
        Outbound::Pong(payload) => payload.len(),
        Outbound::Ping | Outbound::Close(_) => 0,
    }
}

struct State {
    frames: VecDeque<Outbound>,
    /// Sum of the waiting frames' [`weight`]s.
    bytes: usize,
    /// The consumer, while it waits for a frame.
    waiting: Option<Waker>,
    senders: usize,
    /// The consumer is gone.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock but an allocation failure;
        // the state is consistent after any of its operations.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A producer's handle.
pub struct FrameSender {
    shared: Arc<Shared>,
}

impl FrameSender {
    /// Queues `frame` without waiting.
    pub fn try_send(&self, frame: Outbound) -> Result<(), TrySendError<Outbound>> {
        let waiting = {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(TrySendError::Closed(frame));
            }
            let bytes = weight(&frame);
            let over = !state.frames.is_empty() && state.bytes.saturating_add(bytes) > self.shared.max_bytes;
            if state.frames.len() >= self.shared.capacity || over {
                return Err(TrySendError::Full(frame));
            }
            state.bytes += bytes;
            state.frames.push_back(frame);
            state.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
        Ok(())
    }

    /// Whether the consumer is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

impl Clone for FrameSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        FrameSender { shared: self.shared.clone() }
    }
}

impl Drop for FrameSender {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.waiting.take()
        };
        // The last producer is gone: the consumer sees the end.
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}

/// The consumer's handle.
pub struct FrameQueue {
    shared: Arc<Shared>,
}

impl FrameQueue {
    /// Moves up to `limit` waiting frames, in order, to the end of `into`.
    /// `Ready(0)` once every producer is gone and nothing is left.
    pub fn poll_recv_many(&mut self, cx: &mut Context<'_>, into: &mut Vec<Outbound>, limit: usize) -> Poll<usize> {
        let mut state = self.shared.lock();
        let n = state.frames.len().min(limit);
        if n > 0 {
            into.reserve_exact(n);
            let start = into.len();
            into.extend(state.frames.drain(..n));
            let taken: usize = into[start..].iter().map(weight).sum();
            state.bytes = state.bytes.saturating_sub(taken);
            if state.frames.is_empty() {
                // Nothing is held between bursts.
                state.frames = VecDeque::new();
            }
            return Poll::Ready(n);
        }
        if state.senders == 0 {
            return Poll::Ready(0);
        }
        match &mut state.waiting {
            Some(w) if w.will_wake(cx.waker()) => {}
            waiting => *waiting = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for FrameQueue {
    fn drop(&mut self) {
        let frames = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.frames)
        };
        drop(frames);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use bytestring::ByteString;

    use super::*;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<Counter>, Waker) {
        let wakes = Arc::new(Counter(AtomicUsize::new(0)));
        (wakes.clone(), Waker::from(wakes))
    }

    fn frame(s: &str) -> Outbound {
        Outbound::Frame(ByteString::from(s.to_owned()))
    }

    fn texts(frames: &[Outbound]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Outbound::Frame(t) => t.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn bounded_in_order_and_one_wake_per_burst() {
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = queue(3, usize::MAX);
        let mut got = Vec::new();
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 10), Poll::Pending);
        for s in ["a", "b", "c"] {
            tx.try_send(frame(s)).unwrap();
        }
        assert!(matches!(tx.try_send(frame("d")), Err(TrySendError::Full(_))));
        // Three frames, one wake: the consumer was waiting only once.
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 2), Poll::Ready(2));
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 2), Poll::Ready(1));
        assert_eq!(texts(&got), ["a", "b", "c"]);
        // Room again once taken.
        tx.try_send(frame("d")).unwrap();
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 10), Poll::Ready(1));
    }

    /// Bytes bound the queue as frames do, but a frame too large for the
    /// bound alone still goes into an empty queue.
    #[test]
    fn bounded_in_bytes_and_a_large_frame_still_goes_alone() {
        let (_, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = queue(100, 10);
        let mut got = Vec::new();
        tx.try_send(frame("twelve bytes")).unwrap();
        assert!(matches!(tx.try_send(frame("x")), Err(TrySendError::Full(_))), "over 10 bytes waiting");
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 10), Poll::Ready(1));
        for s in ["1234", "5678"] {
            tx.try_send(frame(s)).unwrap();
        }
        assert!(matches!(tx.try_send(frame("abc")), Err(TrySendError::Full(_))), "8 + 3 bytes");
        tx.try_send(frame("ab")).unwrap();
        // Pings count as frames, not bytes.
        tx.try_send(Outbound::Ping).unwrap();
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 2), Poll::Ready(2));
        tx.try_send(frame("abcdefgh")).unwrap();
        assert!(matches!(tx.try_send(frame("i")), Err(TrySendError::Full(_))), "2 + 8 bytes waiting");
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 10), Poll::Ready(3));
        assert_eq!(texts(&got), ["twelve bytes", "1234", "5678", "ab", "Ping", "abcdefgh"]);
    }

    #[test]
    fn the_consumer_sees_the_end_after_the_last_producer() {
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = queue(8, usize::MAX);
        let tx2 = tx.clone();
        tx.try_send(frame("last words")).unwrap();
        drop(tx);
        drop(tx2);
        let mut got = Vec::new();
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 8), Poll::Ready(1));
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 8), Poll::Ready(0));

        let (tx, mut rx) = queue(8, usize::MAX);
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 8), Poll::Pending);
        drop(tx);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_recv_many(&mut cx, &mut got, 8), Poll::Ready(0));
    }

    #[test]
    fn producers_see_the_consumer_leave() {
        let (tx, rx) = queue(8, usize::MAX);
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(frame("x")), Err(TrySendError::Closed(_))));
    }
}
