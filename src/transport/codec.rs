//! RFC 6455 framing, server side: decoding what a client sends into
//! [`Inbound`] items, and the headers of the frames the server sends.
//!
//! The decoder refuses a frame from its header alone: a data frame whose
//! announced length (added to the fragments of its message so far) passes
//! the limit is [`Inbound::TooLarge`] before a byte of its payload is read,
//! so what a connection makes the server buffer is bounded by the limit,
//! never by what a client announces. Client frames must be masked, with
//! the reserved bits clear; control frames must be whole and at most 125
//! bytes; a text message must be UTF-8. Anything else ends the connection.

use bytes::{Buf, BytesMut};
use bytestring::ByteString;
use huddle_actors::session::socket::Inbound;

/// The longest header a client frame can have: 2 bytes, a 64-bit length,
/// the mask.
pub const MAX_CLIENT_HEADER: usize = 2 + 8 + 4;
/// The longest header of a frame the server sends (unmasked).
pub const MAX_SERVER_HEADER: usize = 2 + 8;
/// RFC 6455 section 5.5: control frames carry at most 125 bytes.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// What the decoder wants next.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// A message, a control frame, or the end of the connection's input
    /// ([`is_final`]).
    Item(Inbound),
    /// Nothing can be decoded until the buffer holds this many bytes.
    Need(usize),
}

/// Whether nothing may be read after this item: the client closed, or its
/// input was refused.
pub fn is_final(item: &Inbound) -> bool {
    matches!(item, Inbound::Close | Inbound::TooLarge | Inbound::InvalidUtf8 | Inbound::Broken(_))
}

/// Decodes a client's byte stream one message at a time. It keeps only a
/// fragmented message in progress; the bytes themselves stay in the
/// caller's buffer until a whole frame is there.
#[derive(Default)]
pub struct Decoder {
    partial: Option<Partial>,
}

/// A fragmented message whose last fragment has not come yet.
struct Partial {
    text: bool,
    data: BytesMut,
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Payload length as announced.
    len: u64,
    /// Bytes of the header itself.
    size: usize,
}

impl Decoder {
    /// Takes the next item off the front of `buf`. A data frame above
    /// `limit` (counting the earlier fragments of its message) is refused
    /// from its header. After an item for which [`is_final`] holds, the
    /// caller must not decode again.
    pub fn decode(&mut self, buf: &mut BytesMut, limit: usize) -> Step {
        loop {
            let header = match parse_header(buf) {
                Ok(Ok(h)) => h,
                Ok(Err(need)) => return Step::Need(need),
                Err(why) => return broken(why),
            };
            let data = match header.opcode {
                CONTINUATION | TEXT | BINARY => true,
                CLOSE | PING | PONG => false,
                other => return broken(format!("unknown opcode {other:#x}")),
            };
            let so_far = match (&self.partial, header.opcode) {
                (None, CONTINUATION) => return broken("a continuation frame without a message to continue"),
                (Some(_), TEXT | BINARY) => return broken("a new message inside a fragmented one"),
                (Some(p), CONTINUATION) => p.data.len(),
                _ => 0,
            };
            if !data && (!header.fin || header.len > MAX_CONTROL_PAYLOAD as u64) {
                return broken("a control frame must be whole and at most 125 bytes");
            }
            // Announced lengths are checked before any arithmetic on them.
            if data && header.len > limit.saturating_sub(so_far) as u64 {
                return Step::Item(Inbound::TooLarge);
            }
            let len = header.len as usize;
            let total = header.size.saturating_add(len);
            if buf.len() < total {
                return Step::Need(total);
            }
            buf.advance(header.size);
            let mut payload = buf.split_to(len);
            unmask(&mut payload, header.mask);
            let (text, message) = match header.opcode {
                PING => return Step::Item(Inbound::Ping(payload.freeze())),
                PONG => return Step::Item(Inbound::Pong),
                CLOSE if len == 1 => return broken("a close frame with a one-byte payload"),
                CLOSE => return Step::Item(Inbound::Close),
                CONTINUATION => match self.partial.take() {
                    Some(mut p) => {
                        p.data.extend_from_slice(&payload);
                        (p.text, p.data)
                    }
                    None => return broken("a continuation frame without a message to continue"),
                },
                opcode => (opcode == TEXT, payload),
            };
            if !header.fin {
                self.partial = Some(Partial { text, data: message });
                continue;
            }
            if !text {
                return Step::Item(Inbound::Binary);
            }
            return match ByteString::try_from(message.freeze()) {
                Ok(s) => Step::Item(Inbound::Text(s)),
                Err(_) => Step::Item(Inbound::InvalidUtf8),
            };
        }
    }
}

fn broken(why: impl Into<String>) -> Step {
    Step::Item(Inbound::Broken(why.into()))
}

/// The header at the front of `buf`: `Ok(Err(n))` when it needs `n` bytes
/// to be complete.
fn parse_header(buf: &[u8]) -> Result<Result<Header, usize>, &'static str> {
    let [b0, b1, ..] = *buf else { return Ok(Err(2)) };
    if b0 & 0x70 != 0 {
        return Err("reserved bits set (no extension was negotiated)");
    }
    if b1 & 0x80 == 0 {
        return Err("an unmasked client frame");
    }
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let size = 2 + ext + 4;
    if buf.len() < size {
        return Ok(Err(size));
    }
    let len = match ext {
        2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err("a 64-bit length with its top bit set");
            }
            len
        }
        _ => (b1 & 0x7f) as u64,
    };
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[2 + ext..size]);
    Ok(Ok(Header { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, mask, len, size }))
}

/// XORs `data` with the client's mask, eight bytes at a time.
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Chunks are multiples of 4 long, so the rest starts at mask index 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Writes the header of a whole, unmasked frame into `out` (at least
/// [`MAX_SERVER_HEADER`] long); returns its length.
pub fn server_header(opcode: u8, len: usize, out: &mut [u8]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const LIMIT: usize = 1 << 20;

    /// A client frame as a browser would send it.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn decode_all(bytes: &[u8], limit: usize) -> Vec<Inbound> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Step::Item(item) = d.decode(&mut buf, limit) {
            let stop = is_final(&item);
            out.push(item);
            if stop {
                break;
            }
        }
        out
    }

    fn text(s: &str) -> Inbound {
        Inbound::Text(ByteString::from(s))
    }

    #[test]
    fn whole_frames_of_each_kind() {
        let mut bytes = frame(true, TEXT, b"{\"event\":\"ping\"}", MASK);
        bytes.extend(frame(true, PING, b"hb", MASK));
        bytes.extend(frame(true, PONG, b"", MASK));
        bytes.extend(frame(true, BINARY, &[0, 1, 2], MASK));
        bytes.extend(frame(true, TEXT, &vec![b'x'; 300], MASK));
        bytes.extend(frame(true, TEXT, &vec![b'y'; 70_000], MASK));
        bytes.extend(frame(true, CLOSE, &1000u16.to_be_bytes(), MASK));
        bytes.extend(frame(true, TEXT, b"after the close", MASK));
        assert_eq!(
            decode_all(&bytes, LIMIT),
            vec![
                text("{\"event\":\"ping\"}"),
                Inbound::Ping(Bytes::from_static(b"hb")),
                Inbound::Pong,
                Inbound::Binary,
                text(&"x".repeat(300)),
                text(&"y".repeat(70_000)),
                Inbound::Close,
            ]
        );
    }

    #[test]
    fn asks_for_exactly_the_bytes_of_the_next_step() {
        let mut d = Decoder::default();
        let bytes = frame(true, TEXT, &[b'a'; 200], MASK);
        let mut buf = BytesMut::from(&bytes[..1]);
        assert_eq!(d.decode(&mut buf, LIMIT), Step::Need(2));
        buf = BytesMut::from(&bytes[..2]);
        assert_eq!(d.decode(&mut buf, LIMIT), Step::Need(8));
        buf = BytesMut::from(&bytes[..8]);
        assert_eq!(d.decode(&mut buf, LIMIT), Step::Need(208));
        buf = BytesMut::from(&bytes[..207]);
        assert_eq!(d.decode(&mut buf, LIMIT), Step::Need(208));
        buf = BytesMut::from(&bytes[..]);
        assert_eq!(d.decode(&mut buf, LIMIT), Step::Item(text(&"a".repeat(200))));
        assert!(buf.is_empty());
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        // A header announcing 1 GiB and not one byte of payload.
        let mut head = vec![0x80 | TEXT, 0x80 | 127];
        head.extend_from_slice(&(1u64 << 30).to_be_bytes());
        head.extend_from_slice(&MASK);
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&head[..]);
        assert_eq!(d.decode(&mut buf, 64 * 1024), Step::Item(Inbound::TooLarge));
        // Right at the limit is fine; one byte more is not.
        assert_eq!(decode_all(&frame(true, TEXT, &[b'a'; 100], MASK), 100), vec![text(&"a".repeat(100))]);
        assert_eq!(decode_all(&frame(true, TEXT, &[b'a'; 101], MASK), 100), vec![Inbound::TooLarge]);
        // The largest length the format allows overflows nothing, even
        // under a limit that lets it through.
        let mut head = vec![0x80 | BINARY, 0x80 | 127];
        head.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        head.extend_from_slice(&MASK);
        let mut buf = BytesMut::from(&head[..]);
        assert_eq!(Decoder::default().decode(&mut buf, usize::MAX), Step::Need(MAX_CLIENT_HEADER + (u64::MAX >> 1) as usize));
    }

    #[test]
    fn fragments_are_joined_and_limited_by_their_total() {
        let mut bytes = frame(false, TEXT, b"{\"event\":", MASK);
        bytes.extend(frame(true, PING, b"", MASK)); // control frames may come in between
        bytes.extend(frame(false, CONTINUATION, b"\"ping\",", MASK));
        bytes.extend(frame(true, CONTINUATION, b"\"data\":{}}", MASK));
        assert_eq!(
            decode_all(&bytes, LIMIT),
            vec![Inbound::Ping(Bytes::new()), text("{\"event\":\"ping\",\"data\":{}}")]
        );
        // Three fragments of 40 bytes pass a limit of 100 only together.
        let mut bytes = Vec::new();
        for (fin, op) in [(false, TEXT), (false, CONTINUATION), (true, CONTINUATION)] {
            bytes.extend(frame(fin, op, &[b'a'; 40], MASK));
        }
        assert_eq!(decode_all(&bytes, 100), vec![Inbound::TooLarge]);
        assert_eq!(decode_all(&bytes, 120), vec![text(&"a".repeat(120))]);
    }

    #[test]
    fn utf8_is_checked_on_the_whole_message() {
        // "é" split between two fragments is fine.
        let mut bytes = frame(false, TEXT, &[0xc3], MASK);
        bytes.extend(frame(true, CONTINUATION, &[0xa9], MASK));
        assert_eq!(decode_all(&bytes, LIMIT), vec![text("é")]);
        assert_eq!(decode_all(&frame(true, TEXT, &[0xff, 0xfe], MASK), LIMIT), vec![Inbound::InvalidUtf8]);
        // Binary frames are not text.
        assert_eq!(decode_all(&frame(true, BINARY, &[0xff], MASK), LIMIT), vec![Inbound::Binary]);
    }

    #[test]
    fn protocol_violations_end_the_input() {
        let unmasked = {
            let mut f = frame(true, TEXT, b"hi", MASK);
            f[1] &= 0x7f;
            f.drain(2..6);
            f
        };
        let reserved = {
            let mut f = frame(true, TEXT, b"hi", MASK);
            f[0] |= 0x40;
            f
        };
        let long_ping = frame(true, PING, &[0; 126], MASK);
        let fragmented_ping = frame(false, PING, b"", MASK);
        let orphan = frame(true, CONTINUATION, b"x", MASK);
        let mut nested = frame(false, TEXT, b"x", MASK);
        nested.extend(frame(true, TEXT, b"y", MASK));
        let opcode = frame(true, 0x3, b"", MASK);
        let close1 = frame(true, CLOSE, b"x", MASK);
        let top_bit = {
            let mut f = vec![0x80 | TEXT, 0x80 | 127];
            f.extend_from_slice(&(1u64 << 63).to_be_bytes());
            f.extend_from_slice(&MASK);
            f
        };
        for bytes in [unmasked, reserved, long_ping, fragmented_ping, orphan, nested, opcode, close1, top_bit] {
            let items = decode_all(&bytes, LIMIT);
            assert!(matches!(items.as_slice(), [Inbound::Broken(_)]), "{bytes:?}: {items:?}");
        }
    }

    #[test]
    fn server_headers() {
        let mut h = [0u8; MAX_SERVER_HEADER];
        assert_eq!((server_header(TEXT, 5, &mut h), &h[..2]), (2, &[0x81, 5][..]));
        assert_eq!((server_header(TEXT, 126, &mut h), &h[..4]), (4, &[0x81, 126, 0, 126][..]));
        assert_eq!((server_header(CLOSE, 65_536, &mut h), &h[..10]), (10, &[0x88, 127, 0, 0, 0, 0, 0, 1, 0, 0][..]));
    }

    #[test]
    fn unmasking_matches_the_byte_at_a_time_definition() {
        for n in 0..40 {
            let original: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(31)).collect();
            let mut data = original.clone();
            unmask(&mut data, MASK);
            let expected: Vec<u8> = original.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]).collect();
            assert_eq!(data, expected);
        }
    }

    /// A message, and how a client might cut it into frames.
    fn message() -> impl Strategy<Value = (bool, Vec<u8>, Vec<usize>, [u8; 4])> {
        (
            any::<bool>(),
            prop_oneof![
                "[ -~é€😀]{0,300}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..300),
            ],
            proptest::collection::vec(0usize..300, 0..4),
            any::<[u8; 4]>(),
        )
    }

    proptest! {
        /// Whatever the cut into frames and into reads, the decoder yields
        /// each message as sent, never asks for more than a frame needs,
        /// and never for more than the limit allows.
        #[test]
        fn messages_survive_any_fragmentation_and_any_reads(
            messages in proptest::collection::vec(message(), 1..8),
            reads in proptest::collection::vec(1usize..64, 1..64),
            limit in 0usize..400,
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (is_text, payload, cuts, mask) in &messages {
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
                cuts.sort_unstable();
                let mut bounds = vec![0];
                bounds.extend(cuts);
                bounds.push(payload.len());
                let pieces = bounds.len() - 1;
                for i in 0..pieces {
                    let op = if i > 0 { CONTINUATION } else if *is_text { TEXT } else { BINARY };
                    wire.extend(frame(i + 1 == pieces, op, &payload[bounds[i]..bounds[i + 1]], *mask));
                }
                let item = if payload.len() > limit {
                    Inbound::TooLarge
                } else if !is_text {
                    Inbound::Binary
                } else {
                    match std::str::from_utf8(payload) {
                        Ok(s) => text(s),
                        Err(_) => Inbound::InvalidUtf8,
                    }
                };
                let stop = is_final(&item);
                expected.push(item);
                if stop {
                    break;
                }
            }
            let mut d = Decoder::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            let mut r = reads.iter().cycle();
            'feed: loop {
                loop {
                    match d.decode(&mut buf, limit) {
                        Step::Item(item) => {
                            let stop = is_final(&item);
                            got.push(item);
                            if stop {
                                break 'feed;
                            }
                        }
                        Step::Need(n) => {
                            prop_assert!(n > buf.len());
                            prop_assert!(n <= MAX_CLIENT_HEADER + limit);
                            break;
                        }
                    }
                }
                if at == wire.len() {
                    break;
                }
                let step = (*r.next().unwrap()).min(wire.len() - at);
                buf.extend_from_slice(&wire[at..at + step]);
                at += step;
            }
            prop_assert_eq!(got, expected);
        }

        /// Arbitrary bytes: no panic, and the decoder never asks to buffer
        /// more than one frame within the limit (or one control frame).
        #[test]
        fn hostile_bytes_cost_at_most_the_limit(bytes in proptest::collection::vec(any::<u8>(), 0..200), limit in 0usize..1000) {
            let mut d = Decoder::default();
            let mut buf = BytesMut::from(&bytes[..]);
            loop {
                match d.decode(&mut buf, limit) {
                    Step::Item(Inbound::Text(s)) => prop_assert!(s.len() <= limit),
                    Step::Item(item) if is_final(&item) => break,
                    Step::Item(_) => {}
                    Step::Need(n) => {
                        prop_assert!(n <= MAX_CLIENT_HEADER + limit.max(MAX_CONTROL_PAYLOAD));
                        break;
                    }
                }
            }
        }
    }
}
